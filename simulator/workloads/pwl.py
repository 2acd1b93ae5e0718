"""Poisson arrivals for a piecewise-linear rate, exactly, by inverting the cumulative rate.

Shared by every kind whose rate is (or is majorised by) a piecewise-linear function of time: the
rate patterns, the diurnal majorant, an MMPP's drawn path, and count traces.

With rate ``lambda(t)`` linear on each piece, the cumulative rate ``Lambda(t)`` is piecewise
quadratic. :func:`pwl_arrivals` draws ``N ~ Poisson(Lambda(T))``, then ``N`` sorted uniforms on
``[0, Lambda(T))`` (normalised cumulative sums of exponentials, no sort needed) and maps each back
through the closed-form ``Lambda^{-1}``: the time-change theorem for non-homogeneous Poisson
processes, exact in distribution. Times in seconds, rates in requests per second.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from simscale.simulator.workloads.base import EMPTY

__all__ = ["Pwl", "invert_counted", "pwl_arrival_chunks", "pwl_arrivals",
           "sorted_uniforms_scaled"]


@dataclass(frozen=True)
class Pwl:
    """A piecewise-linear rate. On ``[knots[i], knots[i+1])`` the rate goes linearly from
    ``start_rps[i]`` to ``end_rps[i]``; from ``knots[-1]`` on it is ``final_rps``; before 0 it is
    0. ``knots`` starts at 0 and is non-decreasing (zero-length pieces make jumps)."""

    knots: np.ndarray
    start_rps: np.ndarray
    end_rps: np.ndarray
    final_rps: float

    @staticmethod
    def build(knots: list[float], start: list[float], end: list[float], final: float) -> Pwl:
        """A rate from plain lists (see the class docstring)."""
        return Pwl(np.asarray(knots, dtype=np.float64), np.asarray(start, dtype=np.float64),
                   np.asarray(end, dtype=np.float64), float(final))

    def segments(self, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pieces ``(t0, t1, r0, r1)`` that tile ``[0, duration]`` (empty pieces dropped)."""
        t0 = np.append(self.knots[:-1], self.knots[-1])
        t1 = np.append(self.knots[1:], np.inf)
        r0 = np.append(self.start_rps, self.final_rps)
        r1 = np.append(self.end_rps, self.final_rps)
        keep = (t0 < duration) & (t1 > t0)
        t0, t1, r0, r1 = t0[keep], t1[keep], r0[keep], r1[keep]
        cut = (t1 > duration) & np.isfinite(t1)
        if cut.any():  # a linear piece cut by the horizon ends at its rate there
            frac = np.divide(duration - t0, t1 - t0, out=np.ones_like(t0), where=cut)
            r1 = np.where(cut, r0 + (r1 - r0) * frac, r1)
        t1 = np.minimum(t1, duration)
        return t0, t1, r0, r1

    def rate(self, t: np.ndarray) -> np.ndarray:
        """The rate at times ``t`` (seconds), in requests per second."""
        t = np.asarray(t, dtype=np.float64)
        k = len(self.start_rps)
        idx = np.searchsorted(self.knots, t, side="right") - 1
        inside = (idx >= 0) & (idx < k)
        i = np.clip(idx, 0, max(k - 1, 0))
        if k:
            length = self.knots[i + 1] - self.knots[i]
            frac = np.divide(t - self.knots[i], length, out=np.zeros_like(length),
                             where=inside & (length > 0))
            np.clip(frac, 0.0, 1.0, out=frac)
            piece = self.start_rps[i] + (self.end_rps[i] - self.start_rps[i]) * frac
        else:
            piece = np.zeros_like(t)
        return np.where(idx < 0, 0.0, np.where(inside, piece, self.final_rps))

    def integral(self, duration: float) -> float:
        """``Lambda(duration)``: the expected number of arrivals in ``[0, duration)``."""
        t0, t1, r0, r1 = self.segments(duration)
        return float(np.sum(0.5 * (r0 + r1) * (t1 - t0)))




def sorted_uniforms_scaled(n: int, total: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted uniforms on ``[0, total]``: the first ``n`` of ``n+1`` cumulative
    exponential spacings, normalised (the order statistics of ``n`` uniforms, no sort)."""
    e = rng.standard_exponential(n + 1)
    np.cumsum(e, out=e)
    s = e[:n]
    s *= total / e[n]
    return s


def pwl_arrivals(pwl: Pwl, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrivals with rate ``pwl`` on ``[0, duration)`` by inversion of ``Lambda``."""
    return _invert(*pwl.segments(duration), duration, rng)


def _invert(t0: np.ndarray, t1: np.ndarray, r0: np.ndarray, r1: np.ndarray, duration: float,
            rng: np.random.Generator) -> np.ndarray:
    """Arrivals of the NHPP whose rate is linear on each piece ``[t0[k], t1[k])`` (tiling
    ``[0, duration]``), going from ``r0[k]`` to ``r1[k]``."""
    return invert_counted(t0, t1, r0, r1, duration, rng)[0]


def invert_counted(t0: np.ndarray, t1: np.ndarray, r0: np.ndarray, r1: np.ndarray,
                   duration: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`_invert`, also returning how many arrivals each piece got."""
    none = np.zeros(len(t0), dtype=np.int64)
    inv = _Inversion(t0, t1, r0, r1, duration)
    if not inv.total > 0:
        return EMPTY.copy(), none
    n = int(rng.poisson(inv.total))
    if n == 0:
        return EMPTY.copy(), none
    s = sorted_uniforms_scaled(n, inv.total, rng)
    edge = np.searchsorted(s, inv.bounds, side="left")
    counts = np.diff(edge)
    out = inv.times(s, n, edge)
    if out.size > 1 and np.any(out[1:] < out[:-1]):  # only ever from rounding
        out.sort()
    return out, counts


def pwl_arrival_chunks(pwl: Pwl, duration: float, rng: np.random.Generator,
                       chunk: int = 1 << 20) -> Iterator[np.ndarray]:
    """:func:`pwl_arrivals`'s arrivals, at most ``chunk`` at a time, in order, with memory that
    does not grow with their number; ``rng`` ends in the same state.

    The same numbers: the count is drawn first, then the exponential spacings are drawn twice
    from the same generator state, once for their total (the normaliser) and once chunk by
    chunk, their cumulative sums carried from chunk to chunk (a cumulative sum is sequential,
    so the sums are the same bits), and each point is mapped through ``Lambda^{-1}`` by the same
    elementwise formulas. One exception, from rounding alone: where the whole array would need
    re-sorting because two neighbouring times rounded out of order across a chunk boundary, the
    chunk's first time is raised to the previous one (an ulp-sized difference)."""
    inv = _Inversion(*pwl.segments(duration), duration)
    if not inv.total > 0:
        return
    n = int(rng.poisson(inv.total))
    if n == 0:
        return
    state = rng.bit_generator.state
    carry = 0.0
    buf = np.empty(min(chunk, n + 1) + 1)  # (one buffer for pass 1: no fresh pages a chunk)
    for i in range(0, n + 1, chunk):  # pass 1: the total of the n + 1 spacings
        k = min(chunk, n + 1 - i)
        buf[0] = carry
        rng.standard_exponential(out=buf[1:k + 1])
        carry = float(np.cumsum(buf[:k + 1], out=buf[:k + 1])[-1])
    del buf
    scale = inv.total / carry
    rng.bit_generator.state = state
    carry = 0.0
    prev = -np.inf
    for i in range(0, n, chunk):  # pass 2: the points, chunk by chunk
        k = min(chunk, n - i)
        e = np.empty(k + 1)
        e[0] = carry
        rng.standard_exponential(out=e[1:])
        np.cumsum(e, out=e)
        carry = float(e[-1])
        s = e[1:]
        s *= scale
        out = inv.times(s, n, np.searchsorted(s, inv.bounds, side="left"))
        if out.size > 1 and np.any(out[1:] < out[:-1]):
            out.sort()
        if out[0] < prev:
            np.maximum(out, prev, out=out)
        prev = float(out[-1])
        yield out
    rng.standard_exponential(1)  # the last spacing (the normaliser's), as the whole draw


#: points inverted at a time on the many-pieces path
_BLOCK = 1 << 20


class _Inversion:
    """``Lambda^{-1}`` of the NHPP whose rate is linear on each piece ``[t0[k], t1[k])``
    (tiling ``[0, duration]``), from ``r0[k]`` to ``r1[k]``: :meth:`times` maps sorted points
    of the ``Lambda`` axis to arrival times, elementwise (so any run of points maps the same
    whether alone or inside a longer array)."""

    def __init__(self, t0: np.ndarray, t1: np.ndarray, r0: np.ndarray, r1: np.ndarray,
                 duration: float) -> None:
        self.t0, self.t1, self.r0 = t0, t1, r0
        lam = 0.5 * (r0 + r1) * (t1 - t0)
        self.cum = np.concatenate(([0.0], np.cumsum(lam)))
        self.total = float(self.cum[-1])
        self.last = np.nextafter(duration, 0.0)
        self.bounds = self.cum.copy()
        self.bounds[-1] = np.inf  # rounding: anything at or past the total is the last piece
        length = t1 - t0
        with np.errstate(over="ignore"):  # a subnormal piece: slope inf, tau 0, harmless
            self.slope = np.divide(r1 - r0, length, out=np.zeros_like(length),
                                   where=length > 0)
        self.n_pieces = len(lam)

    def times(self, s: np.ndarray, n: int, edge: np.ndarray) -> np.ndarray:
        """Map the sorted points ``s`` (a chunk of the ``n`` points of the run;
        ``edge = searchsorted(s, bounds, "left")``) to times, in place; returns ``s``."""
        if self.n_pieces <= max(64, n // 2000):
            # few pieces: work in place on each piece's contiguous slice (no gathers)
            for k in np.flatnonzero(edge[1:] > edge[:-1]):
                _invert_piece(s[edge[k]:edge[k + 1]], self.cum[k], self.t0[k], self.t1[k],
                              self.r0[k], self.slope[k])
        else:
            # many pieces: vectorised over blocks of about _BLOCK points, in place (the
            # temporaries do not grow with n)
            for lo in range(0, len(s), _BLOCK):
                blk = s[lo:lo + _BLOCK]
                seg = np.searchsorted(self.bounds, blk, side="right") - 1
                _invert_block(blk, seg, self.cum, self.t0, self.t1, self.r0, self.slope)
        np.minimum(s, self.last, out=s)
        return s


def _invert_block(blk: np.ndarray, seg: np.ndarray, cum: np.ndarray, t0: np.ndarray,
                  t1: np.ndarray, r0: np.ndarray, slope: np.ndarray) -> None:
    """Map the points ``blk`` of the Lambda axis, in pieces ``seg``, to times, in place."""
    ds = blk - cum[seg]
    a = r0[seg]
    sl = slope[seg]
    # r0*tau + slope*tau^2/2 = ds, in the cancellation-free form
    den = np.sqrt(np.maximum(a * a + 2.0 * sl * ds, 0.0))
    den += a
    tau = np.divide(2.0 * ds, den, out=np.zeros_like(ds), where=den > 0)
    np.add(t0[seg], tau, out=blk)
    np.clip(blk, t0[seg], t1[seg], out=blk)


def _invert_piece(s: np.ndarray, cum0: float, t0: float, t1: float, r0: float, slope: float
                  ) -> None:
    """Map points ``s`` of the Lambda axis inside one linear piece to times, in place."""
    s -= cum0
    if slope == 0.0:
        s *= 1.0 / r0  # a piece holding points has r0 > 0
    else:
        den = s * (2.0 * slope)
        den += r0 * r0
        np.maximum(den, 0.0, out=den)
        np.sqrt(den, out=den)
        den += r0
        s *= 2.0
        np.divide(s, den, out=s, where=den > 0)
        s[den <= 0] = 0.0
    s += t0
    np.clip(s, t0, t1, out=s)


