"""What the autoscaler sees: lagged observations, maintained incrementally.

:class:`Monitor` keeps, per service and run, per-second bins (arrivals, completions, busy time,
serving time) and a window of recent latencies, and brings them forward at each observation by
the slab of time since the previous one: only the requests that arrived or were still unfinished
since then are read (a cursor into the request plane's arrays), each slab once; the per-second
figures of the history are never recomputed. The latency percentiles are selected from the
latencies held for the window (numpy), or read from sorted bands around their ranks by the
compiled twin (:mod:`simscale.simulator._kernels_monitor`, used when the request plane runs
compiled or the process has loaded it), whose cost does not grow with the window; either way
only when a strategy reads them (the observation computes them on first read, from a snapshot
of the window that later observations do not change). The figures go through
:func:`simscale.simulator.serving.build_observation`, the one definition shared with the real
cluster. Also :func:`percentiles_linear`, which the figures of a run reuse.

Semantics (times in seconds): histories are whole seconds ending at ``t - metrics.lag_s`` (at
most ``metrics.history_s`` of them); queue length, in-flight and latency percentiles are taken at
``t - lag_s``; replica counts are the controller's current ones (not lagged).

Why a slab can be read once: everything the bins, the latency window and the per-replica busy
time need about ``[a, b)`` is final once the request plane has been advanced to ``b`` (an end
time before ``b`` never changes; a crash later than ``b`` only cuts an end time, and the busy
time of the plane's seconds, from a time at or after ``b``; a replica's readiness or stop
before ``b`` is known by then), so the values do not depend on when the slab is read.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from simscale.simulator.requestplane import DROP_NONE, resolve_kernels
from simscale.simulator.scenario import Scenario
from simscale.simulator.serving import build_observation, utilization_per_s
from simscale.strategies.base import Observation, ReplicaCounts, latency_window_of

__all__ = ["Monitor", "Requests", "percentiles_linear"]

_QS = (50, 95, 99)


class Monitor:
    """Builds lagged :class:`Observation` values from the request plane's arrays, incrementally.

    State: the per-second bins (final for ``[0, fin)``; the bin holding ``t_done`` is partly
    filled) with the utilization of the final ones, ``t_done`` (every contribution before it is
    in the bins, or in a slab still to read) and the replica records not stopped. The busy
    time per second is the request plane's own (:attr:`RequestPlane.busy_s
    <simscale.simulator.requestplane.RequestPlane.busy_s>`: each batch's service time, added
    when the batch starts), final below the time the plane has been advanced to. What is read
    request by request (queue, in flight, per-replica busy time at each observation;
    completions and latencies slab by slab) is kept by :attr:`requests`: :class:`Requests`
    (numpy), or its compiled twin when the request plane runs compiled loops (``kernels``:
    ``"compiled"`` or ``"python"``; default: the plane's, see :func:`_monitor_kernels`).

    The slabs are read lazily, each as it would have been read at its observation, oldest
    first: each observation queues its slab ``[a, b)`` twice, in ``requests.pending`` (with its
    window start) for the completions and latencies, read when a strategy first reads
    ``completions_per_s`` or a latency percentile of any observation, or when ``requests.p_done``
    (a streaming run) is read; and in :attr:`pending_util` for the serving time and the
    utilization of the seconds it makes final, read when a strategy first reads
    ``utilization_per_s``. So the same floats come out, a strategy that reads none of them
    (``hpa``, ``kpa``) does not pay for either, and one that reads only the utilization
    (``threshold``) never reads the requests."""

    def __init__(self, sim: Any, scenario: Scenario, kernels: str | None = None) -> None:
        """``sim``: the engine's per-service simulation (its plane, records, service, size)."""
        self.sim = sim
        self.lag_s = scenario.metrics.lag_s
        self.history_s = int(scenario.metrics.history_s)
        self.n_bins = int(math.ceil(scenario.duration_s))
        self.arr_bins = sim.plane.arrivals_per_s(self.n_bins)
        #: busy seconds per second, kept by the request plane as its batches start
        self._busy = sim.plane.track_busy(self.n_bins + 2)
        # rows: completions, serving, utilization per second; bins up to
        # floor(t_obs) <= n_bins are written (the last one partly)
        self._bins = np.zeros((3, self.n_bins + 2))
        #: slabs whose serving time and utilization are still to add: ``(a, b, fin0, fin1)``
        self.pending_util: list[tuple[float, float, int, int]] = []
        self.fin = 0
        self.t_done = 0.0
        self._live: list[Any] = []  # replica records not stopped (at the last observation)
        #: the serving changes not yet added (a heap), how many of the engine's were taken,
        #: and how many replicas served at the end of the last slab read
        self._changes: list[tuple[float, int]] = []
        self._n_changes = 0
        self._serving = 0
        self._n_recs = 0  # records of sim.records seen
        self._counts_key: tuple[int, int, int, int] | None = None
        self._counts = ReplicaCounts()
        self._gen = 0  # observations made
        #: the serving-time and utilization steps (numpy, or their compiled ports)
        self._span, self._util_step = _add_span, _utilization_step
        if (kernels or _monitor_kernels(sim.plane)) == "compiled":
            from simscale.simulator import _kernels_monitor as km

            self.requests: Requests = km.CompiledRequests()
            self._span, self._util_step = km.add_span, km.utilization_step
        else:
            self.requests = Requests()
        self.requests.flush = self.flush

    @property
    def comp_bins(self) -> np.ndarray:
        """Completions per second (the pending slabs read first)."""
        self.flush()
        return self._bins[0]

    @property
    def busy_bins(self) -> np.ndarray:
        """Busy time per second (s; the request plane's, final below ``fin``)."""
        return self._busy

    @property
    def serve_bins(self) -> np.ndarray:
        """Time replicas were ready or draining per second (s; the pending slabs read
        first)."""
        self.flush_util()
        return self._bins[1]

    @property
    def util_bins(self) -> np.ndarray:
        """Utilization of each final second (the pending slabs read first)."""
        self.flush_util()
        return self._bins[2]

    def flush(self) -> None:
        """Read the pending slabs' requests, oldest first; each fills its ticket with its
        latency snapshot."""
        req = self.requests
        pending = req.pending
        if not pending:
            return
        req.pending = []
        pl = self.sim.plane
        comp = self._bins[0]
        for a, b, hi, lo, ticket in pending:
            ticket.append(req.slab(pl, a, b, hi, comp, lo))

    def flush_util(self) -> None:
        """Add the pending slabs' serving time, oldest first, and the utilization of the
        seconds each made final (port: ``serving.utilization_per_s``)."""
        pending = self.pending_util
        if not pending:
            return
        self.pending_util = []
        busy = self._busy
        serve = self._bins[1]
        util = self._bins[2]
        step = self._util_step
        for a, b, fin0, fin1 in pending:
            if b > a:
                self._serve(a, b)
            step(busy, serve, util, fin0, fin1)

    def observe(self, t_s: float) -> Observation:
        sim = self.sim
        pl = sim.plane
        t_obs = t_s - self.lag_s
        if t_obs < 0.0:
            t_obs = 0.0
        recs = sim.records
        if len(recs) > self._n_recs:
            self._live.extend(recs[self._n_recs:])
            self._n_recs = len(recs)
        a = self.t_done
        fin0 = self.fin
        if t_obs > a:  # the slab [a, t_obs) (its serving time is added when it is read)
            self.t_done = t_obs
            fin = int(t_obs)
            self.fin = fin if fin < self.n_bins else self.n_bins
        window_s = latency_window_of(sim.strategy)
        # counts of the records by state; per-replica busy fraction over the last second
        pending = starting = draining = stopped = 0
        ready = []
        for rec in self._live:
            state = rec.state
            if state == "ready":
                ready.append(rec)
            elif state == "starting":
                starting += 1
            elif state == "pending":
                pending += 1
            elif state == "draining":
                draining += 1
            else:
                stopped += 1
        if stopped:
            self._live = [rec for rec in self._live if rec.state != "stopped"]
        key = (pending, starting, len(ready), draining)
        if key != self._counts_key:  # (the same counts: the same immutable value)
            self._counts_key = key
            self._counts = ReplicaCounts(*key)
        req = self.requests
        hi, qlen, infl, busy_by = req.now(pl, t_obs, sim._next_rid if ready else 0)
        ticket: list[Any] = []
        req.pending.append((a, t_obs, hi, t_obs - window_s, ticket))
        self.pending_util.append((a, t_obs, fin0, self.fin))
        self._gen = gen = self._gen + 1
        per_rep = []
        if ready:
            n_busy = len(busy_by)
            a1 = t_obs - 1.0
            for rec in ready:
                rid = rec.rid
                r = rec.ready_s
                per_rep.append((busy_by.item(rid) if rid < n_busy else 0.0,
                                t_obs - (r if r > a1 else a1)))
        kb1 = self.fin
        kb0 = kb1 - self.history_s if kb1 > self.history_s else 0
        svc = sim.svc
        bins = self._bins

        def latency() -> tuple[float, float, float]:
            if not ticket:
                self.flush()
            return req.latency(ticket[0], gen == self._gen)

        def completions() -> tuple[np.ndarray]:
            self.flush()
            return (bins[0, kb0:kb1].copy(),)

        def utilization() -> tuple[np.ndarray]:
            self.flush_util()
            return (bins[2, kb0:kb1].copy(),)

        arr_bins = self.arr_bins
        return build_observation(
            t_s=t_s, lag_s=self.lag_s, service=svc.name, slo_ms=svc.slo_ms,
            min_replicas=svc.replicas.min, max_replicas=svc.replicas.max, size=sim.size,
            size_options=sim.options, counts=self._counts,
            arrivals_per_s=lambda: (arr_bins[kb0:kb1].copy(),),
            completions_per_s=completions, utilization=utilization,
            replica_busy_last_s=per_rep, queue_length=qlen, in_flight=infl,
            latency_window_s=window_s, latency_percentiles_ms=latency,
            max_wait_ms=sim.max_wait_s * 1000.0)

    def _serve(self, a: float, b: float) -> None:
        """Add the time replicas were ready or draining in ``[a, b)`` to the serving bins, from
        the engine's ``serving_changes`` (when the slab is read: by then every change before
        ``b`` is known, and the slabs read before ended at or before ``a``)."""
        changes = self.sim.serving_changes
        heap = self._changes
        while self._n_changes < len(changes):  # (learnt out of time order: kept in a heap)
            heapq.heappush(heap, changes[self._n_changes])
            self._n_changes += 1
        serve = self._bins[1]
        span = self._span
        n = self._serving
        t = a
        while heap and heap[0][0] < b:
            te, d = heapq.heappop(heap)
            if te > t:
                span(serve, t, te, n)
                t = te
            n += d
        span(serve, t, b, n)
        self._serving = n


def _monitor_kernels(plane: Any) -> str:
    """The loops a monitor uses by default: its plane's, or the compiled ones when the plane
    runs Python loops only because it is small (``kernels`` auto) while another plane of the
    process already loaded them (nothing to import or compile then; the same observations)."""
    kernels = getattr(plane, "kernels", "python")
    if (kernels == "python" and "simscale.simulator._kernels_monitor" in sys.modules
            and resolve_kernels("auto") == "compiled"):
        return "compiled"
    return kernels


def _nothing() -> None:
    """No pending slabs to read (a monitor sets its own)."""


class Requests:
    """What the monitor reads request by request, on numpy arrays: the specification of
    :class:`~simscale.simulator._kernels_monitor.CompiledRequests`, which gives the same
    results. Cursors: every request before ``p_done`` ended before the last slab read, every
    one before ``p_1s`` ended before the last ``t - 1`` asked, every one before ``p_now`` ended
    at or before the last ``t`` asked. ``pending``: the slabs the monitor has yet to read
    (``(a, b, hi, lo, ticket)``), ``flush`` reads them."""

    def __init__(self) -> None:
        self._p_done = 0
        self.p_1s = 0
        self.p_now = 0
        self.latency_window = _LatencyWindow()
        self.pending: list[tuple[float, float, int, float, list[Any]]] = []
        self.flush: Callable[[], None] = _nothing

    @property
    def p_done(self) -> int:
        """Every request before it ended before the last slab read (the pending slabs are
        read first: a streaming run may then forget the requests before it)."""
        self.flush()
        return self._p_done

    def shift(self, k: int) -> None:
        """The request plane forgot its first ``k`` requests (``k`` at most ``p_done`` and
        ``p_1s``): the cursors, and the slabs still to read, move with its arrays."""
        self._p_done -= k
        self.p_1s -= k
        self.p_now -= k
        self.pending = [(a, b, hi - k, *rest) for a, b, hi, *rest in self.pending]

    def now(self, pl: Any, t: float, n_rid: int) -> tuple[int, int, int, np.ndarray | None]:
        """At ``t`` (the request plane advanced to it at least): ``(hi, queued, in flight,
        busy time per replica id in [t - 1, t) or None when n_rid is 0)``; ``hi``: the first
        request arriving at or after ``t``. Queued and in flight: only requests that did not
        end by ``t`` can be (queue-full drops ended at their arrival)."""
        hi = int(pl.arrival_s.searchsorted(t))
        self.p_now = p = _pointer(pl.end_s, self.p_now, hi, math.nextafter(t, math.inf))
        if hi <= p:
            qlen = infl = 0
        else:
            ended = pl.end_s[p:hi] <= t
            infl = hi - p - int(np.count_nonzero(ended))
            ended |= pl.start_s[p:hi] <= t
            qlen = hi - p - int(np.count_nonzero(ended))
        self.p_1s = _pointer(pl.end_s, self.p_1s, hi, t - 1.0)
        return hi, qlen, infl, self.replica_busy(pl, t, hi, n_rid) if n_rid else None

    def slab(self, pl: Any, a: float, b: float, hi: int, comp_bins: np.ndarray, lo: float
             ) -> tuple[Any, ...]:
        """Read the slab ``[a, b)`` of an observation at ``b`` (``hi``: the first arrival at
        or after ``b``; nothing when ``b <= a``): its completions into ``comp_bins`` (per
        second), and move the latency window to ``[lo, b)``; returns the window's snapshot for
        :meth:`latency`."""
        if b > a:
            self.advance(pl, a, b, hi, comp_bins)
        if lo < self.latency_window.kept_from:
            self._refill(pl, lo, b, hi)
        return self.latency_window.snapshot(lo)

    @staticmethod
    def latency(snap: tuple[Any, ...], latest: bool) -> tuple[float, float, float]:
        """p50, p95, p99 (ms) of the latencies a :meth:`slab`'s snapshot holds (NaN when
        none), whenever it is read."""
        return _percentiles_or_nan(*snap)

    def advance(self, pl: Any, a: float, b: float, hi: int, comp_bins: np.ndarray) -> None:
        """Add the slab ``[a, b)`` (``b > a``; ``hi``: the first arrival at or after ``b``):
        completions to the bins, latencies to the window."""
        p = self._p_done
        ka = int(a)
        if hi <= p:
            return
        end = pl.end_s[p:hi]
        done = end < b
        ok = end >= a
        ok &= done
        ok &= pl.drop[p:hi] == DROP_NONE
        idx = np.flatnonzero(ok)
        if len(idx):  # completed in [a, b): completions per bin, latencies
            ec = end[idx]
            self.latency_window.push(ec, (ec - pl.arrival_s[p:hi][idx]) * 1000.0, a, b)
            if int(b) == ka or int(ec.max()) == ka:
                comp_bins[ka] += len(idx)
            else:
                cnt = np.bincount(ec.astype(np.int64) - ka)
                comp_bins[ka:ka + len(cnt)] += cnt
        if done.all():
            self._p_done = hi
        else:
            self._p_done = p + int(done.argmin())

    def _refill(self, pl: Any, lo: float, t: float, hi: int) -> None:
        """The window reaches before what is kept (a strategy widened its
        ``latency_window_s``): read the completions in ``[lo, t)`` again, from the start."""
        end = pl.end_s[:hi]
        ok = (end >= lo) & (end < t) & (pl.drop[:hi] == DROP_NONE)
        idx = np.flatnonzero(ok)
        ec = end[idx]
        self.latency_window = _LatencyWindow()
        self.latency_window.push(ec, (ec - pl.arrival_s[idx]) * 1000.0, lo, t)
        self.latency_window.kept_from = lo

    def replica_busy(self, pl: Any, t: float, hi: int, n_rid: int) -> np.ndarray:
        """Busy time of each replica id in ``[t - 1, t)``, from the requests that did not end
        before ``t - 1`` (the others would add 0.0, which changes no sum)."""
        a1 = t - 1.0
        p = self.p_1s
        st = pl.start_s[p:hi]
        started = ~np.isnan(st)
        s, e = st[started], pl.end_s[p:hi][started]
        w = 1.0 / pl.batch_size[p:hi][started]
        rep = pl.replica[p:hi][started]
        ov = np.clip(np.minimum(e, t) - np.maximum(s, a1), 0.0, None) * w
        return np.bincount(rep, weights=ov, minlength=n_rid)


def _pointer(end_s: np.ndarray, p: int, hi: int, bound: float) -> int:
    """The first index from ``p`` whose request did not end before ``bound`` (``hi`` if all
    did); every request before ``p`` must have ended before ``bound``."""
    if hi <= p:
        return p
    done = end_s[p:hi] < bound
    if done.all():
        return hi
    return p + int(done.argmin())


def _utilization_step(busy: np.ndarray, serve: np.ndarray, util: np.ndarray, fin0: int,
                      fin1: int) -> None:
    """The utilization of the seconds ``fin0..fin1-1`` (``serving.utilization_per_s``)."""
    if fin1 > fin0:
        util[fin0:fin1] = utilization_per_s(busy[fin0:fin1], serve[fin0:fin1])


def _add_span(bins: np.ndarray, lo: float, hi: float, times: int) -> None:
    """``bins[k] += times * |[lo, hi) & [k, k + 1)|`` (``0 <= lo <= hi``)."""
    if not hi > lo:
        return
    k0 = int(lo)
    k1 = math.ceil(hi) - 1
    if k0 >= k1:
        bins[k0] += (hi - lo) * times
        return
    bins[k0] += (k0 + 1 - lo) * times
    if k1 > k0 + 1:
        bins[k0 + 1:k1] += times
    bins[k1] += (hi - k1) * times


class _LatencyWindow:
    """Latencies (ms) of completed requests with their end times, oldest slab first: a
    queue in two growing arrays. Entries come in slabs ``[a, b)`` of end times (within a slab
    in request order); :meth:`since` drops whole slabs that ended before the window and masks
    the one it starts in."""

    def __init__(self) -> None:
        self.end = np.empty(1024)
        self.ms = np.empty(1024)
        self.head = 0
        self.tail = 0
        #: (first index, a, b) of each slab still held, oldest first
        self.slabs: deque[tuple[int, float, float]] = deque()
        #: every completion with an end at or after this is held (from the last ``since``)
        self.kept_from = -math.inf

    def push(self, end: np.ndarray, ms: np.ndarray, a: float, b: float) -> None:
        k = len(end)
        if not k:
            return
        if self.tail + k > len(self.end):
            self._make_room(k)
        t = self.tail
        self.end[t:t + k] = end
        self.ms[t:t + k] = ms
        self.slabs.append((t, a, b))
        self.tail = t + k

    def _make_room(self, k: int) -> None:
        n = self.tail - self.head
        size = len(self.end)
        while n + k > size // 2:
            size *= 2
        end = np.empty(size)
        ms = np.empty(size)
        end[:n] = self.end[self.head:self.tail]
        ms[:n] = self.ms[self.head:self.tail]
        shift = self.head
        self.end, self.ms = end, ms
        self.head, self.tail = 0, n
        self.slabs = deque((i - shift, a, b) for i, a, b in self.slabs)

    def snapshot(self, lo: float) -> tuple[np.ndarray, np.ndarray, int, int, float, bool]:
        """Drop the completions that ended before ``lo`` (``lo`` must not decrease below
        :attr:`kept_from`) and return what selects the ones held: ``(end, ms, first, tail, lo,
        whole)``, the latencies ``ms[first:tail]`` whose ``end`` is at or after ``lo`` (all of
        them when ``whole``). The entries ``first..tail-1`` of these arrays are never written
        again (new entries go after them, a compaction makes new arrays), so the snapshot stays
        valid as the window moves on."""
        slabs = self.slabs
        while slabs and slabs[0][2] <= lo:
            slabs.popleft()
        self.kept_from = max(self.kept_from, lo)
        if not slabs:
            self.head = self.tail
            return self.end, self.ms, self.tail, self.tail, lo, True
        first, a, _ = slabs[0]
        self.head = first
        return self.end, self.ms, first, self.tail, lo, a >= lo

    def since(self, lo: float) -> np.ndarray:
        """A new array of the latencies of the completions that ended at or after ``lo`` (the
        ones before it are dropped: ``lo`` must not decrease below :attr:`kept_from`)."""
        return _held(*self.snapshot(lo))


def _held(end: np.ndarray, ms: np.ndarray, first: int, tail: int, lo: float,
          whole: bool) -> np.ndarray:
    """A new array of the latencies a :meth:`_LatencyWindow.snapshot` holds (in their order)."""
    if whole:
        return ms[first:tail].copy()
    return ms[first:tail][end[first:tail] >= lo]


def _percentiles_or_nan(*snap: Any) -> tuple[float, float, float]:
    """p50, p95, p99 (ms) of the latencies a :meth:`_LatencyWindow.snapshot` holds; NaN when
    it holds none."""
    lat = _held(*snap)
    if not len(lat):
        return math.nan, math.nan, math.nan
    p50, p95, p99 = percentiles_linear(lat, _QS)
    return p50, p95, p99


def _percentile_ranks(n: int, qs: tuple[float, ...]
                      ) -> tuple[list[int], list[int], list[float]]:
    """numpy's index arithmetic of the linear percentile method for ``n`` values, in Python
    floats (the same IEEE operations, without the cost of numpy calls on three-element arrays):
    per ``q``, the ranks of the two order statistics it lies between and the weight."""
    prev: list[int] = []
    nxt: list[int] = []
    gamma: list[float] = []
    for q in qs:
        virt = (n - 1) * (q / 100)
        if virt >= n - 1:
            prev.append(n - 1)
            nxt.append(n - 1)
            gamma.append(virt + 1)  # as numpy computes it (where it does not matter)
        else:
            k = math.floor(virt)
            prev.append(k)
            nxt.append(k + 1)
            gamma.append(virt - k)
    return prev, nxt, gamma


def _interpolate(lo: list[float], hi: list[float], gamma: list[float]) -> list[float]:
    """numpy's interpolation between the order statistics ``lo`` and ``hi`` (floats)."""
    out = []
    for a, b, g in zip(lo, hi, gamma, strict=True):
        diff = b - a
        out.append(b - diff * (1 - g) if g >= 0.5 else a + diff * g)
    return out


def percentiles_linear(x: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(x, qs)`` (the default linear method) of a 1-d float array without NaN,
    bit for bit, as floats; ``x`` is reordered in place.

    One single-``kth`` partition per order statistic needed (numpy's partition with several
    ``kth`` at once is several times slower), then numpy's own interpolation arithmetic."""
    n = len(x)
    prev, nxt, gamma = _percentile_ranks(n, qs)
    vals: dict[int, float] = {}
    ks = sorted(set(prev) | set(nxt))
    # numpy's partition is very slow when many values equal the minimum (waits of 0): those
    # order statistics are the minimum, the others come from the values above it
    off = 0
    if n > 64:
        xmin = x.min()
        c0 = int(np.count_nonzero(x == xmin))
        if c0 * 16 > n:
            for k in ks:
                if k < c0:
                    vals[k] = xmin
            ks = [k - c0 for k in ks if k >= c0]
            off = c0
            if ks:
                x = x[x > xmin]
    lo = 0  # x[lo:] holds the order statistics lo, lo + 1, ... (of x)
    last = -2
    for k in ks:
        if k == last + 1:
            vals[k + off] = x[lo:].min()
        else:
            x[lo:].partition(k - lo)
            vals[k + off] = x[k]
            lo = k + 1
            last = k
    return _interpolate([float(vals[k]) for k in prev], [float(vals[k]) for k in nxt], gamma)
