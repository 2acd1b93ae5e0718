"""The service-time model: batch service times (seconds) drawn from a profile's figures.

:meth:`simscale.profiler.schema.Profile.service_model` builds one per (model, device, threads)
of a profile (:mod:`simscale.profiler.schema`, the file format).

Service-time model
------------------
For each (model, device, threads) the profile stores a fit of the *median* batch latency
``t50(b) = alpha_ms + beta_ms * b`` and a multiplicative noise distribution ``X`` with median 1,
fitted to the pooled ratios ``sample / median(b)``. A batch of ``b`` items then takes
``t50(b) * X`` milliseconds. Where the straight line misses a measured median by more than the
profile's tolerance, ``knots`` (measured batch size, median) are stored and the median is
interpolated piecewise-linearly between them (and extrapolated with the line beyond them).

Where the *spread* of the noise depends on the batch size (a 50 us tabular batch is relatively
far noisier than a 2 s ResNet batch), ``noise_scale`` stores a factor ``s(b)`` per measured batch
size and a batch takes ``t50(b) * (1 + s(b) * (X - 1))``: the median stays ``t50(b)`` and the
spread around it is scaled by ``s(b)``. Without ``noise_scale``, ``s = 1`` and this is
``t50(b) * X``.

Serving overhead
----------------
The fit describes ``predict`` timed in a tight loop. A serving replica also reads the batch
from its router, builds its inputs and writes the answer back, and how long it was idle before
the batch matters: threads that slept take time to wake (an XGBoost call with two threads takes
0.5 ms back to back and ~15 ms after 50 ms idle here). ``serving`` stores what a router sees of a
real replica process (``python -m simscale.profiler.replica --serve``) serving batches of one
item after several idle gaps ``g`` (0: back to back), interleaved: the median round trip
``rt(g)`` and, in the same process, interleaved with them, the median ``predict`` time ``p0`` of
one reused input in a tight loop (``loop_predict_ms_p50``: the way the fit was timed). What
serving adds is measured against that ``p0`` rather than against the fit, so that the machine's
speed drifting between the profiler's phases (several per cent within minutes on a shared
machine) is not taken for an overhead; and against the tight loop rather than the served
batches' own predict (``backtoback_predict_ms_p50``, a fresh input each), so that a batch of one
is simulated at its measured round trip: what a fresh input costs predict is part of what
serving adds. (Profiles made before 2026-12-04 have no ``loop_predict_ms_p50`` and were measured
against ``backtoback_predict_ms_p50``, which left their batches of one 1.6-6.5% below the round
trip.)

- ``fit_scale = min(1, min_g rt(g) / p0)``: below 1 only when a call after some idle gap is
  faster than the tight loop: a speed, so it scales the fit;
- ``idle_overhead_ms``: per gap, ``rt(g) - fit_scale * p0`` (never negative): pipe, input
  building, a fresh input's cache misses, waking threads: fixed costs taken not to grow with the
  batch.

A batch that starts after its replica was idle for ``g`` takes ``overhead(g) + fit_scale *
t50(b) * (1 + s(b) * (X - 1))``, with ``overhead`` interpolated linearly between the measured
gaps and constant beyond them. ``overhead_ms`` is the overhead at ``gap_ms`` (used by latency
statistics that know no idle time). Profiles without ``serving`` (older files) have no overhead
and ``fit_scale = 1``; a ``serving`` without ``idle_overhead_ms`` adds ``overhead_ms`` to every
batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from simscale.profiler.schema import ServiceTimeFit


class ServiceTimeModel:
    """Draws batch service times (seconds) from a :class:`ServiceTimeFit`.

    All methods are vectorised over ``batch_size``. Sampling is by inverse CDF from uniforms
    supplied by the caller, so that simulations of different strategies can share the same
    random numbers (common random numbers). For a serving replica (see the module docstring)
    the fit's times are multiplied by ``fit_scale`` and ``overhead_ms`` is added to every
    batch's time and to every statistic.
    """

    def __init__(self, fit: ServiceTimeFit, max_measured_batch: int | None = None,
                 overhead_ms: float = 0.0, fit_scale: float = 1.0,
                 idle_overhead_ms: list[tuple[float, float]] | None = None):
        self.fit = fit
        self.max_measured_batch = max_measured_batch
        self.overhead_s = float(overhead_ms) / 1000.0
        self.fit_scale = float(fit_scale)
        #: ``(idle gaps s, overheads s)`` or None (see the module docstring)
        self.idle_overhead_s: tuple[list[float], list[float]] | None = None
        if idle_overhead_ms:
            pts = sorted(idle_overhead_ms)
            self.idle_overhead_s = ([g / 1000.0 for g, _ in pts], [o / 1000.0 for _, o in pts])
        self._noise = fit.noise.distribution
        with np.errstate(all="ignore"):  # (a family without a mean or variance: NaN)
            self._noise_mean, self._noise_var = float(self._noise.mean()), float(self._noise.var())
        if fit.knots:
            kb, km = zip(*sorted(fit.knots), strict=True)
            self._knot_b = np.asarray(kb, dtype=float)
            self._knot_ms = np.asarray(km, dtype=float)
        else:
            self._knot_b = None
            self._knot_ms = None
        if fit.noise_scale:
            sb, ss = zip(*sorted(fit.noise_scale), strict=True)
            self._scale_logb = np.log(np.asarray(sb, dtype=float))
            self._scale = np.asarray(ss, dtype=float)
        else:
            self._scale_logb = None
            self._scale = None
        # Floor of the unit noise X so that 1 + s*(X - 1) >= 1e-3 for every s(b) of this fit:
        # service times stay positive and affine in X (see affine_s).
        s_max = 1.0 if self._scale is None else max(float(self._scale.max()), 1e-12)
        self._x_floor = 1.0 - (1.0 - 1e-3) / s_max

    def median_s(self, batch_size: Any) -> np.ndarray:
        """Median service time (s) of a batch of ``batch_size`` items."""
        return self._t50_s(batch_size) + self.overhead_s

    def overhead_after_idle_s(self, idle_s: Any) -> np.ndarray:
        """The serving overhead (s) of a batch that starts after the replica was idle for
        ``idle_s`` seconds (``overhead_ms`` whatever the idle time without a measured curve)."""
        idle = np.asarray(idle_s, dtype=float)
        if self.idle_overhead_s is None:
            return np.full_like(idle, self.overhead_s)
        return np.interp(idle, *self.idle_overhead_s)

    def _t50_s(self, batch_size: Any) -> np.ndarray:
        """The fit's median (s) at ``batch_size`` times ``fit_scale``, without the overhead."""
        b = np.asarray(batch_size, dtype=float)
        line_ms = self.fit.alpha_ms + self.fit.beta_ms * b
        if self._knot_b is not None:
            inside = (b >= self._knot_b[0]) & (b <= self._knot_b[-1])
            line_ms = np.where(inside, np.interp(b, self._knot_b, self._knot_ms), line_ms)
        return np.maximum(line_ms, 1e-6) * (self.fit_scale / 1000.0)

    def noise_scale(self, batch_size: Any) -> np.ndarray:
        """Spread factor ``s(b)`` of the noise at ``batch_size`` (1 without ``noise_scale``)."""
        b = np.asarray(batch_size, dtype=float)
        if self._scale is None:
            return np.ones_like(b)
        return np.interp(np.log(np.maximum(b, 1e-12)), self._scale_logb, self._scale)

    def mean_s(self, batch_size: Any) -> np.ndarray:
        """Mean service time (s) of a batch of ``batch_size`` items."""
        s = self.noise_scale(batch_size)
        return self._t50_s(batch_size) * (1.0 + s * (self._noise_mean - 1.0)) + self.overhead_s

    def quantile_s(self, batch_size: Any, q: float) -> np.ndarray:
        """The ``q`` quantile (0..1) of the service time (s) of a batch of ``batch_size``."""
        s = self.noise_scale(batch_size)
        x = np.maximum(1.0 + s * (float(self._noise.ppf(q)) - 1.0), 1e-3)
        return self._t50_s(batch_size) * x + self.overhead_s

    def sample_s(self, batch_size: Any, u: np.ndarray) -> np.ndarray:
        """Service times (s) for batches of ``batch_size`` from uniforms ``u`` in (0, 1)."""
        offset_s, scale_s = self.affine_s(batch_size)
        return offset_s + scale_s * self.unit_noise(u)

    def unit_noise(self, u: np.ndarray) -> np.ndarray:
        """The noise draw ``X`` (median 1) for uniforms ``u`` in (0, 1), by inverse CDF.

        The simulator keeps one per request (common random numbers) and turns it into a batch's
        time with :meth:`affine_s`."""
        x = self._noise.ppf(np.clip(u, 1e-12, 1 - 1e-12))
        return np.maximum(x, self._x_floor)

    def affine_s(self, batch_size: Any, *, overhead: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(offset_s, scale_s)`` with service time ``offset_s + scale_s * X`` for a batch of
        ``batch_size`` whose noise draw is ``X`` (:meth:`unit_noise`): the serving overhead
        (left out with ``overhead=False``, for a caller that adds
        :meth:`overhead_after_idle_s` itself) plus the fit's median times
        ``1 + s(b) * (X - 1)``."""
        med = self._t50_s(batch_size)
        s = self.noise_scale(batch_size)
        return med * (1.0 - s) + (self.overhead_s if overhead else 0.0), med * s

    @property
    def scv(self) -> float:
        """Squared coefficient of variation of the noise ``X`` (var / mean**2).

        This is the pooled noise (``s = 1``, no serving overhead); for a batch's service time use
        :meth:`scv_at`.
        """
        return self._noise_var / self._noise_mean**2

    def scv_at(self, batch_size: Any) -> np.ndarray:
        """Squared coefficient of variation of the service time at ``batch_size`` (the serving
        overhead adds to the mean, not to the variance)."""
        s = self.noise_scale(batch_size)
        med = self._t50_s(batch_size)
        return (s * med) ** 2 * self._noise_var / self.mean_s(batch_size) ** 2
