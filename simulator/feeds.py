"""Where a streaming request plane reads its inputs from, a chunk at a time.

Two feeds give the same numbers in the same order (the inputs a service's seeds make):

- :class:`~simscale.simulator.spool.SpoolReader` reads them back from an
  :class:`~simscale.simulator.spool.InputSpool` on disk, drawn once per replication and read by
  every strategy's run (for several consumers, reading costs less than drawing again);
- :class:`LiveFeed` draws them as the plane asks for them (:class:`LiveSource`), for inputs
  with one consumer: a single strategy's run, where a spool would be written and read once.
  Nothing is written, and no page of memory is touched beyond a chunk and the plane's window
  (on a virtual machine first-touched pages cost as much as the simulation itself).

A live source records, when a pass over its inputs ends, the number of requests and the range
of the noise uniforms (:class:`~simscale.simulator.inputs.ServiceInputs` needs them for the
bounds), and calls its :attr:`LiveSource.taps` with every chunk a feed draws, so one more pass
over the inputs (the lower bound's) costs no second draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from simscale.simulator.background import Background

__all__ = ["DRAW_AHEAD", "InputFeed", "LiveFeed", "LiveSource", "seconds_counted"]

#: one chunk of drawn inputs: arrival times (s), the configured size's noise draws, the
#: routing uniforms (``None`` without routing draws) and the noise uniforms they came from (a
#: buffer the next chunk's draw reuses: read them before asking for it)
Chunk = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]

#: a live feed draws each next chunk in a thread of its own while the plane serves the one
#: before (``False``: when the plane asks for it; the same numbers either way)
DRAW_AHEAD = True


def seconds_counted(arrival_s: np.ndarray) -> tuple[int, np.ndarray]:
    """``(s0, counts)``: how many of the sorted, non-negative, non-empty ``arrival_s`` fall in
    each second ``[s0 + j, s0 + j + 1)`` from the first arrival's to the last's, by bisection
    (cost that grows with the seconds spanned, not the arrivals)."""
    s0, s1 = int(arrival_s[0]), int(arrival_s[-1])  # (>= 0: truncation is the floor)
    cuts = np.searchsorted(arrival_s, np.arange(s0 + 1, s1 + 1, dtype=np.float64), side="left")
    return s0, np.diff(cuts, prepend=0, append=len(arrival_s))


class InputFeed(Protocol):
    """What a request plane reads its inputs from (see the module's docstring)."""

    #: requests in the run (a live feed's expected count until a pass has ended)
    n: int
    #: requests read so far
    pos: int
    #: routing uniforms per request
    draws: int

    @property
    def done(self) -> bool: ...

    def next_count(self, k: int | None = None) -> int: ...

    def read_into(self, arrival_s: np.ndarray, unit_service: np.ndarray,
                  route_u: np.ndarray | None = None) -> None: ...

    def arrivals_per_s(self, n_bins: int) -> np.ndarray: ...


class LiveSource:
    """The per-request inputs of one service and replication, drawn afresh on every pass.

    ``draw(paths)`` starts a pass: an iterator of :data:`Chunk` (appending the MMPP rate paths it
    draws to ``paths``); ``rate(paths)`` makes the true rate function from those paths;
    ``expected_n``: the expected number of requests; ``duration_s``: the run's length."""

    def __init__(self, draw: Callable[[list[Any]], Iterator[Chunk]],
                 rate: Callable[[list[Any]], Callable[[np.ndarray], np.ndarray]],
                 expected_n: int, draws: int, duration_s: float) -> None:
        self._draw = draw
        self._rate = rate
        self.expected_n = int(expected_n)
        self.draws = int(draws)
        self.duration_s = float(duration_s)
        #: called with ``(arrival_s, unit_service)`` of every chunk a :class:`LiveFeed` draws
        self.taps: list[Callable[[np.ndarray, np.ndarray], None]] = []
        #: ``(requests, (smallest, largest noise uniform) or None)`` once a pass has ended
        self.realized: tuple[int, tuple[float, float] | None] | None = None
        self._paths: list[Any] | None = None
        self._true_rate: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def n(self) -> int:
        """Requests in the run: counted once a pass has ended, expected until then."""
        return self.realized[0] if self.realized is not None else self.expected_n

    def chunks(self, *, tapped: bool = False) -> Iterator[Chunk]:
        """One pass over the inputs, a chunk at a time (``tapped``: through :attr:`taps`)."""
        paths: list[Any] = []
        n, lo, hi = 0, math.inf, -math.inf
        for i, chunk in enumerate(self._draw(paths)):
            if i == 0 and self._paths is None:
                self._paths = paths  # (every MMPP's path is drawn before its first arrival)
            a, unit, _, u = chunk
            n += len(a)
            if len(u):
                lo, hi = min(lo, float(u.min())), max(hi, float(u.max()))
            if tapped:
                for tap in self.taps:
                    tap(a, unit)
            yield chunk
        if self._paths is None:
            self._paths = paths
        self.realized = (n, (lo, hi) if hi >= lo else None)

    def feed(self) -> LiveFeed:
        """A new feed from the first request (a new pass: the same numbers each time)."""
        return LiveFeed(self, ahead=DRAW_AHEAD)

    def true_rate(self, t: np.ndarray) -> np.ndarray:
        """The true arrival rate (requests/s) at times ``t`` of this realization: an MMPP's is
        the path drawn, known once a pass has begun (a plane's feed draws its first chunk when
        made, before any decision)."""
        if self._true_rate is None:
            if self._paths is None:
                raise RuntimeError("the true rate of live inputs is known once a pass begins")
            self._true_rate = self._rate(self._paths)
        return self._true_rate(t)


class LiveFeed:
    """A request plane's feed that draws the inputs as it reads them (:class:`InputFeed`).

    The first chunk is drawn when the feed is made; each next one, with ``ahead``, by a
    thread of its own while the plane serves the one before (drawing is numpy work that
    releases the interpreter's lock, the plane's loops are compiled or numpy too, so on two
    cores the draw costs almost no wall time; the chunks are drawn one after the other from
    the same generators, so the numbers are the same). Arrivals are counted per second as
    each chunk is taken, into the array :meth:`arrivals_per_s` returns (filled in place:
    complete for every second before the latest arrival read)."""

    def __init__(self, source: LiveSource, *, ahead: bool = True) -> None:
        self.source = source
        self.n = source.n
        self.draws = source.draws
        self.pos = 0
        self._it = source.chunks(tapped=True)
        self._ahead_on = bool(ahead)
        self._ahead: Background | None = None
        self._per_s = np.zeros(int(math.ceil(source.duration_s)) + 1)
        self._chunk: Chunk | None = None
        self._off = 0
        self._pull()

    def _pull(self) -> None:
        if self._ahead is not None:
            chunk, self._ahead = self._ahead.result(), None
        else:
            chunk = next(self._it, None)
        self._chunk, self._off = chunk, 0
        if chunk is not None:
            if len(chunk[0]):
                lo, per_s = seconds_counted(chunk[0])
                self._per_s[lo:lo + len(per_s)] += per_s
            if self._ahead_on:
                self._ahead = Background(next, self._it, None, name="simscale-draw")

    @property
    def done(self) -> bool:
        """Every request has been read."""
        return self._chunk is None

    def next_count(self, k: int | None = None) -> int:
        """How many requests the next read should take: the rest of the chunk drawn (at most
        ``k``)."""
        if self._chunk is None:
            return 0
        left = len(self._chunk[0]) - self._off
        return left if k is None else max(0, min(int(k), left))

    def read_into(self, arrival_s: np.ndarray, unit_service: np.ndarray,
                  route_u: np.ndarray | None = None) -> None:
        """Copy the next ``len(arrival_s)`` requests' inputs into the given arrays (as
        :meth:`~simscale.simulator.spool.SpoolReader.read_into`), drawing chunks as needed."""
        k, got = len(arrival_s), 0
        while got < k:
            if self._chunk is None:
                raise ValueError(f"only {got} requests left to read, not {k}")
            a, unit, ru, _ = self._chunk
            take = min(k - got, len(a) - self._off)
            sl = slice(self._off, self._off + take)
            arrival_s[got:got + take] = a[sl]
            unit_service[got:got + take] = unit[sl]
            if self.draws:
                route_u[got:got + take] = ru[sl]  # type: ignore[index]
            got += take
            self._off += take
            if self._off == len(a):
                self._pull()
        self.pos += k

    def arrivals_per_s(self, n_bins: int) -> np.ndarray:
        """Arrivals in each second ``[k, k + 1)``, ``k < n_bins`` (float64), an array filled in
        place as chunks are drawn."""
        if n_bins > len(self._per_s):
            grown = np.zeros(n_bins)
            grown[:len(self._per_s)] = self._per_s
            self._per_s = grown
        return self._per_s[:n_bins]
