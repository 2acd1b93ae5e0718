"""Compiled loops of the observation monitor (numba, cached on disk).

:class:`CompiledRequests` does what :class:`~simscale.simulator.observations.Requests` does, with
the same results (``tests/test_observations_incremental.py`` checks it on randomized
scenarios), in one compiled call per observation (:func:`now_step`: queue, in flight, busy time
per replica) and one per slab when it is read (:func:`slab_step`), each a port of the numpy
step that performs the same floating-point operations in the same order (completions and
per-replica busy time summed request by request). The monitor uses it when the request plane
runs its compiled loops (numba is imported then anyway).

The latency window is kept differently, for speed, with the same percentiles (order statistics
of the same latencies): the completions of each slab in a queue with their end times, the
number held, and, around the ranks the percentiles need, sorted *bands* of the held latencies
(every held latency within a band's value bounds) with the number held below each band. A new
or expired latency is compared with the bands' bounds and, when it falls inside one, inserted
into or removed from that band's sorted values; an order statistic is read from the band that
holds its rank. When a rank is in no band (the distribution moved) or a band is full, the bands
are rebuilt from the queue (one sort, in numpy): about once in tens of observations when the
latencies are steady.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from simscale.simulator.observations import _interpolate, _percentile_ranks, percentiles_linear

#: the latency window's state (int64 array): how many latencies it holds, how many bands there
#: are (0: none, to be built when the percentiles are read), the queue's first and next entry,
#: the first and next slab, and the queue's first entry not yet counted into the bands
N, BANDS, F_HEAD, F_TAIL, S_HEAD, S_TAIL, SYNCED = range(7)
_QS = (50.0, 95.0, 99.0)


@njit(cache=True, nogil=True)
def _slab(arr, en, drop, p, hi, a, b, comp, out_end, out_ms, at):  # noqa: ANN001, ANN202
    """Port of ``Requests.advance``: the slab ``[a, b)`` of requests ``p..hi-1`` into the
    completion bins; the completions' (end, latency ms), in request order, into
    ``out_end``/``out_ms`` from ``at``. Returns ``(p_done, completions)``. A bin's running
    count stays in a register while the requests stay in it (counts are exact in any order)."""
    nc = 0
    p_done = hi
    blocked = False
    ck = -1  # the completion bin counted in cn
    cn = 0
    for i in range(p, hi):
        e = en[i]
        if e < b:
            if e >= a and drop[i] == 0:
                k = int(e)
                if k != ck:
                    if cn:
                        comp[ck] += cn
                    ck = k
                    cn = 0
                cn += 1
                out_end[at + nc] = e
                out_ms[at + nc] = (e - arr[i]) * 1000.0
                nc += 1
        elif not blocked:
            p_done = i
            blocked = True
    if cn:
        comp[ck] += cn
    return p_done, nc


@njit(cache=True, nogil=True)
def _bands_update(xs, i0, i1, sign, ws, b_lo, b_hi, b_n, b_below, b_vals):  # noqa: ANN001, ANN202
    """Count the latencies ``xs[i0:i1]`` in (``sign`` 1) or out (-1) of the window's bands
    (ordered, disjoint): one more or fewer below every band above a latency; those a band's
    bounds hold merged into (or out of) its sorted values, in one pass per band. False when a
    band would overflow or does not hold a latency to remove (the bands must be rebuilt)."""
    nb = ws[BANDS]
    if nb == 0 or i1 <= i0:
        return True
    # per latency: the gap (0..nb: below band 0, between bands, above the last) or the band
    gap = np.zeros(nb + 1, dtype=np.int64)
    inside = np.empty(i1 - i0, dtype=np.int64)
    n_in = np.zeros(nb, dtype=np.int64)
    for i in range(i0, i1):
        x = xs[i]
        j = 0
        band = -1
        while j < nb:
            if x < b_lo[j]:
                break
            j += 1
            if x <= b_hi[j - 1]:
                band = j - 1
                break
        inside[i - i0] = band
        if band < 0:
            gap[j] += 1
        else:
            n_in[band] += 1
    below = 0
    for j in range(nb):
        below += gap[j]
        b_below[j] += sign * below
        below += n_in[j]
    for j in range(nb):
        k = n_in[j]
        if k == 0:
            continue
        vals = np.empty(k)
        m = 0
        for i in range(i0, i1):
            if inside[i - i0] == j:
                vals[m] = xs[i]
                m += 1
        vals.sort()
        band = b_vals[j]
        n = b_n[j]
        if sign > 0:
            if n + k > len(band):
                return False
            # merge from the top down, in place
            r = n - 1
            q = k - 1
            for w in range(n + k - 1, -1, -1):
                if q < 0:
                    break
                if r >= 0 and band[r] > vals[q]:
                    band[w] = band[r]
                    r -= 1
                else:
                    band[w] = vals[q]
                    q -= 1
            b_n[j] = n + k
        else:
            # drop one held copy of each, from the bottom up, in place
            q = 0
            w = 0
            for r in range(n):
                if q < k and band[r] == vals[q]:
                    q += 1
                else:
                    band[w] = band[r]
                    w += 1
            if q < k:
                return False
            b_n[j] = w
    return True


@njit(cache=True, nogil=True)
def _expire(ws, f_end, f_ms, s_start, s_a, s_b, lo, lo_prev, b_lo, b_hi, b_n, b_below, b_vals):  # noqa: ANN001, ANN202
    """Take the completions that ended in ``[lo_prev, lo)`` (held until now: every one before
    ``lo_prev`` left before) out of the window: whole slabs that ended by ``lo``, and the
    entries before ``lo`` of the slab it falls in, which stay in the queue, dead (an end
    before the window's start). The entries are never written, so a snapshot of the queue
    stays valid. Those counted into the bands (before ``SYNCED``) leave them too, when there
    are bands. Returns False when the bands must be rebuilt."""
    ok = True
    s = ws[S_HEAD]
    removed = 0
    nb = ws[BANDS]
    synced = ws[SYNCED]
    while s < ws[S_TAIL] and s_a[s] < lo:
        whole = s_b[s] <= lo
        first = s_start[s]
        stop = s_start[s + 1] if s + 1 < ws[S_TAIL] else ws[F_TAIL]
        if whole and s_a[s] >= lo_prev and (nb == 0 or first >= synced):
            removed += stop - first  # all held, all leave, none in the bands
        else:
            gone = np.empty(stop - first if nb else 0)
            k = 0
            for j in range(first, stop):
                e = f_end[j]
                if lo_prev <= e < lo:
                    removed += 1
                    if nb and j < synced:
                        gone[k] = f_ms[j]
                        k += 1
            if ok and k:
                ok = _bands_update(gone, 0, k, -1, ws, b_lo, b_hi, b_n, b_below, b_vals)
        if not whole:
            break
        s += 1
    ws[N] -= removed
    ws[S_HEAD] = s
    ws[F_HEAD] = s_start[s] if s < ws[S_TAIL] else ws[F_TAIL]
    return ok


@njit(cache=True, nogil=True)
def _order_stats(ws, b_n, b_below, b_vals, stats):  # noqa: ANN001, ANN202
    """Port of ``observations._percentile_ranks`` for p50, p95, p99: ``stats[i]`` and
    ``stats[3 + i]`` the two order statistics percentile ``i`` lies between, read from the
    bands, and ``stats[6 + i]`` the percentile; False when a rank is in no band."""
    n = ws[N]
    for i in range(6):
        virt = (n - 1) * (_QS[i % 3] / 100.0)
        if virt >= n - 1:
            k = n - 1
        else:
            k = int(np.floor(virt)) + (i >= 3)
        found = False
        for j in range(ws[BANDS]):
            if b_below[j] <= k < b_below[j] + b_n[j]:
                stats[i] = b_vals[j, k - b_below[j]]
                found = True
                break
        if not found:
            return False
    # port of observations._interpolate (numpy's interpolation arithmetic): stats[6 + i]
    for i in range(3):
        virt = (n - 1) * (_QS[i] / 100.0)
        g = virt + 1.0 if virt >= n - 1 else virt - np.floor(virt)
        lo = stats[i]
        diff = stats[3 + i] - lo
        stats[6 + i] = stats[3 + i] - diff * (1 - g) if g >= 0.5 else lo + diff * g
    return True


@njit(cache=True, nogil=True)
def slab_step(arr, en, drop, hi, a, b, comp, cur, lo, lo_prev, ws, f_end, f_ms, s_start,  # noqa: ANN001, ANN201
              s_a, s_b, b_lo, b_hi, b_n, b_below, b_vals):
    """Port of ``Requests.slab`` (see there), but for the latency percentiles, which
    :func:`latency_stats` reads when asked: returns ``(first, next entry of the latency
    queue)``. ``comp``: completions per second. The slab's latencies join the queue (not the
    bands); those that ended in ``[lo_prev, lo)`` leave the window. ``cur[0]``: ``p_done``.
    When the queue has no room for ``hi - p_done`` more latencies or the slab list for one
    more slab, nothing is done and the first entry is -1 (make room, then call again)."""
    if b > a:
        if (ws[F_TAIL] + max(0, hi - cur[0]) > len(f_end)
                or ws[S_TAIL] + 1 > len(s_start)):
            return -1, 0
        at = ws[F_TAIL]
        p_done, nc = _slab(arr, en, drop, cur[0], hi, a, b, comp, f_end, f_ms, at)
        cur[0] = p_done
        if nc:
            s = ws[S_TAIL]
            s_start[s] = at
            s_a[s] = a
            s_b[s] = b
            ws[S_TAIL] = s + 1
            ws[F_TAIL] = at + nc
            ws[N] += nc
    # the latency window: the completions before lo out
    if not _expire(ws, f_end, f_ms, s_start, s_a, s_b, lo, lo_prev, b_lo, b_hi, b_n, b_below,
                   b_vals):
        ws[BANDS] = 0
    return ws[F_HEAD], ws[F_TAIL]


@njit(cache=True, nogil=True)
def now_step(arr, st, en, bs, rep, t, cur, rep_out, n_rid):  # noqa: ANN001, ANN201
    """Port of ``Requests.now``: returns ``(hi, queued, in flight)`` at ``t`` (``hi``: the
    first request arriving at or after ``t``) and, when ``n_rid`` > 0, the busy time of each
    replica id in ``[t - 1, t)`` in ``rep_out[:n_rid]``. ``cur[1]``, ``cur[2]``: the cursors
    ``p_1s`` and ``p_now`` (moved on here)."""
    hi = np.searchsorted(arr, t)
    # queued and in flight at t: only requests that did not end by t can be
    p = cur[2]
    while p < hi and en[p] <= t:
        p += 1
    cur[2] = p
    queued = 0
    flight = 0
    for i in range(p, hi):
        if not en[i] <= t:
            flight += 1
            if not st[i] <= t:
                queued += 1
    # busy time per replica in [t - 1, t): only requests that did not end before t - 1 can
    # have some (the others would add 0.0, which changes no sum)
    a1 = t - 1.0
    p = cur[1]
    while p < hi and en[p] < a1:
        p += 1
    cur[1] = p
    if n_rid:
        for r in range(n_rid):
            rep_out[r] = 0.0
        for i in range(p, hi):
            s0 = st[i]
            if s0 == s0:
                e = en[i]
                v = (e if e < t else t) - (s0 if s0 > a1 else a1)
                if v > 0.0:
                    rep_out[rep[i]] += v * (1.0 / bs[i])
    return hi, queued, flight


@njit(cache=True, nogil=True)
def latency_stats(ws, f_end, f_ms, lo, b_lo, b_hi, b_n, b_below, b_vals, stats):  # noqa: ANN001, ANN201
    """The order statistics of the percentiles into ``stats`` (see :func:`_order_stats`) from
    the bands, once the latencies that joined the queue since the last call (those still held:
    an end at or after ``lo``) are counted in (nothing when the window is empty); False when
    there are no bands or they must be rebuilt."""
    if ws[BANDS] == 0:
        return False
    t = ws[F_TAIL]
    p = max(ws[SYNCED], ws[F_HEAD])
    vals = np.empty(t - p)
    k = 0
    for j in range(p, t):
        if f_end[j] >= lo:
            vals[k] = f_ms[j]
            k += 1
    ws[SYNCED] = t
    if not _bands_update(vals, 0, k, 1, ws, b_lo, b_hi, b_n, b_below, b_vals):
        ws[BANDS] = 0
        return False
    return ws[N] == 0 or _order_stats(ws, b_n, b_below, b_vals, stats)


class CompiledRequests:
    """:class:`~simscale.simulator.observations.Requests` on compiled loops (same results).

    The latency percentiles are read when a strategy first asks (:meth:`latency`): from the
    bands when it asks before the next observation (then kept up to date for the next one too),
    else from a snapshot of the queue. A strategy that does not read them at one observation
    lets the bands go; they are rebuilt (one sort) when it reads them again."""

    def __init__(self, capacity: int = 4096) -> None:
        self.cur = np.zeros(3, dtype=np.int64)  # p_done, p_1s, p_now
        self.ws = np.zeros(7, dtype=np.int64)
        self.f_end = np.empty(capacity)
        self.f_ms = np.empty(capacity)
        self.s_start = np.zeros(256, dtype=np.int64)
        self.s_a = np.empty(256)
        self.s_b = np.empty(256)
        self.b_lo = np.empty(3)
        self.b_hi = np.empty(3)
        self.b_n = np.zeros(3, dtype=np.int64)
        self.b_below = np.zeros(3, dtype=np.int64)
        self.b_vals = np.empty((3, 0))
        self.stats = np.empty(9)  # order statistics (2 per percentile), the percentiles
        #: every completion with an end at or after this is held
        self.kept_from = -np.inf
        self._rep = np.zeros(64)  # busy time per replica id (reused)
        self._read = False  # the latest observation's percentiles were read
        #: observations whose slab is not read yet (see ``Monitor``), and what reads them
        self.pending: list[tuple[float, float, int, float, list[Any]]] = []
        self.flush: Callable[[], None] = _nothing

    @property
    def p_done(self) -> int:
        """Every request before it ended before the last slab read (the pending slabs are
        read first: a streaming run may then forget the requests before it)."""
        self.flush()
        return int(self.cur[0])

    @property
    def p_1s(self) -> int:
        return int(self.cur[1])

    def shift(self, k: int) -> None:
        """See :meth:`~simscale.simulator.observations.Requests.shift`."""
        self.cur -= k
        self.pending = [(a, b, hi - k, *rest) for a, b, hi, *rest in self.pending]

    def _room(self, k: int) -> None:
        """Room for ``k`` more latencies and one more slab in the queue: its dead head dropped,
        and arrays twice as large when that is not enough (new arrays: a snapshot handed out
        keeps the old ones)."""
        ws = self.ws
        if ws[F_TAIL] + k <= len(self.f_end) and ws[S_TAIL] + 1 <= len(self.s_start):
            return
        h, t = int(ws[F_HEAD]), int(ws[F_TAIL])
        sh, stl = int(ws[S_HEAD]), int(ws[S_TAIL])
        size = len(self.f_end)
        while (t - h) + k > size // 2:
            size *= 2
        f_end, f_ms = np.empty(size), np.empty(size)
        f_end[:t - h] = self.f_end[h:t]
        f_ms[:t - h] = self.f_ms[h:t]
        self.f_end, self.f_ms = f_end, f_ms
        slabs = max(256, 2 * (stl - sh + 1))
        s_start, s_a, s_b = np.zeros(slabs, dtype=np.int64), np.empty(slabs), np.empty(slabs)
        s_start[:stl - sh] = self.s_start[sh:stl] - h
        s_a[:stl - sh] = self.s_a[sh:stl]
        s_b[:stl - sh] = self.s_b[sh:stl]
        self.s_start, self.s_a, self.s_b = s_start, s_a, s_b
        ws[F_HEAD], ws[F_TAIL], ws[S_HEAD], ws[S_TAIL] = 0, t - h, 0, stl - sh
        ws[SYNCED] = max(0, int(ws[SYNCED]) - h)

    def now(self, pl, t: float, n_rid: int) -> tuple[int, int, int, np.ndarray | None]:  # noqa: ANN001
        """See :meth:`~simscale.simulator.observations.Requests.now` (the busy times are in an
        array reused at the next call)."""
        rep = self._rep
        if n_rid > len(rep):
            rep = self._rep = np.zeros(2 * n_rid)
        hi, queued, flight = now_step(pl.arrival_s, pl.start_s, pl.end_s, pl.batch_size,
                                      pl.replica, t, self.cur, rep, n_rid)
        return hi, queued, flight, rep if n_rid else None

    def slab(self, pl, a: float, b: float, hi: int, comp: np.ndarray,  # noqa: ANN001
             lo: float) -> tuple[Any, ...]:
        """See :meth:`~simscale.simulator.observations.Requests.slab`."""
        ws = self.ws
        if not self._read:
            ws[BANDS] = 0  # nobody reads them: not kept up to date
        kept = self.kept_from
        while True:
            head, tail = slab_step(
                pl.arrival_s, pl.end_s, pl.drop, hi, a, b, comp, self.cur,
                lo if lo > kept else kept, kept, ws, self.f_end, self.f_ms, self.s_start,
                self.s_a, self.s_b, self.b_lo, self.b_hi, self.b_n, self.b_below, self.b_vals)
            if head >= 0:
                break
            self._room(max(0, hi - int(self.cur[0])))
        if lo < kept:  # a widened window: read [lo, b) again, from the start
            self._refill(pl, lo, b, hi)
            head, tail = 0, int(ws[F_TAIL])
        elif lo > kept:
            self.kept_from = lo
        self._read = False
        return self.f_end, self.f_ms, head, tail, self.kept_from

    def latency(self, snap: tuple[Any, ...], latest: bool) -> tuple[float, float, float]:
        """p50, p95, p99 (ms) of the window a :meth:`slab` left: from the bands when it is the
        ``latest`` (the window held now), else from its snapshot."""
        if latest:
            return self._percentiles_now()
        return _snapshot_percentiles(*snap)

    def _percentiles_now(self) -> tuple[float, float, float]:
        """p50, p95, p99 (ms) of the window held now, from the bands (rebuilt when needed)."""
        self._read = True
        ws = self.ws
        if latency_stats(ws, self.f_end, self.f_ms, self.kept_from, self.b_lo, self.b_hi,
                         self.b_n, self.b_below, self.b_vals, self.stats):
            n = int(ws[N])
        else:
            n = self._rebuild()
        if not n:
            return math.nan, math.nan, math.nan
        p50, p95, p99 = self.stats[6:].tolist()
        return p50, p95, p99

    def _refill(self, pl, lo: float, t: float, hi: int) -> None:  # noqa: ANN001
        """Hold the completions in ``[lo, t)`` (read from the request arrays) as one slab, in
        new arrays (a snapshot handed out keeps the old ones)."""
        end = pl.end_s[:hi]
        ok = (end >= lo) & (end < t) & (pl.drop[:hi] == 0)
        ec = end[ok]
        k = len(ec)
        self.ws[:] = 0
        self.f_end = np.empty(max(4096, 2 * k))
        self.f_ms = np.empty(len(self.f_end))
        self.f_end[:k] = ec
        self.f_ms[:k] = (ec - pl.arrival_s[:hi][ok]) * 1000.0
        self.s_start[0], self.s_a[0], self.s_b[0] = 0, lo, t
        self.ws[F_TAIL], self.ws[S_TAIL], self.ws[N] = k, 1, k
        self.kept_from = lo

    def _rebuild(self) -> int:
        """New bands around the ranks the percentiles need, from the queue (one sort), and the
        order statistics; returns the number of latencies held."""
        ws = self.ws
        h, t = int(ws[F_HEAD]), int(ws[F_TAIL])
        vals = self.f_ms[h:t][self.f_end[h:t] >= self.kept_from]
        vals.sort()
        n = len(vals)
        ws[N] = n
        ws[BANDS] = 0
        ws[SYNCED] = t
        if not n:
            return 0
        prev, nxt, gamma = _percentile_ranks(n, (50, 95, 99))
        self.stats[:3] = vals[prev]
        self.stats[3:6] = vals[nxt]
        self.stats[6:] = _interpolate(vals[prev].tolist(), vals[nxt].tolist(), gamma)
        margin = 48 + n // 256
        spans: list[list[int]] = []  # [first, last index] of each band, in vals
        for k in sorted(set(prev) | set(nxt)):
            i0 = int(np.searchsorted(vals, vals[max(0, k - margin)], side="left"))
            i1 = int(np.searchsorted(vals, vals[min(n - 1, k + margin)], side="right")) - 1
            if spans and i0 <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], i1)
            else:
                spans.append([i0, i1])
        size = max(i1 - i0 + 1 for i0, i1 in spans) + 2 * margin
        if self.b_vals.shape[1] < size:
            self.b_vals = np.empty((3, 2 * size))
        for j, (i0, i1) in enumerate(spans):
            self.b_lo[j] = vals[i0]
            self.b_hi[j] = vals[i1]
            self.b_n[j] = i1 - i0 + 1
            self.b_below[j] = i0
            self.b_vals[j, :i1 - i0 + 1] = vals[i0:i1 + 1]
        ws[BANDS] = len(spans)
        return n


def _nothing() -> None:
    """No pending slabs to read (a monitor sets its own)."""


def _snapshot_percentiles(f_end: np.ndarray, f_ms: np.ndarray, h: int, t: int,
                          lo: float) -> tuple[float, float, float]:
    """p50, p95, p99 (ms) of the latencies a snapshot of the queue held (entries ``h..t-1``
    with an end at or after ``lo``), NaN when none: the order statistics the bands give."""
    vals = f_ms[h:t][f_end[h:t] >= lo]
    if not len(vals):
        return math.nan, math.nan, math.nan
    p50, p95, p99 = percentiles_linear(vals, (50, 95, 99))
    return p50, p95, p99


@njit(cache=True, nogil=True)
def add_span(bins, lo, hi, times):  # noqa: ANN001, ANN201
    """Port of ``observations._add_span``: ``bins[k] += times * |[lo, hi) & [k, k + 1)|``."""
    if not hi > lo:
        return
    k0 = int(lo)
    k1 = math.ceil(hi) - 1
    if k0 >= k1:
        bins[k0] += (hi - lo) * times
        return
    bins[k0] += (k0 + 1 - lo) * times
    for k in range(k0 + 1, k1):
        bins[k] += times
    bins[k1] += (hi - k1) * times


@njit(cache=True, nogil=True)
def utilization_step(busy, serve, util, fin0, fin1):  # noqa: ANN001, ANN201
    """Port of ``observations._utilization_step`` (``serving.utilization_per_s`` of the
    seconds ``fin0..fin1-1``)."""
    for k in range(fin0, fin1):
        u = busy[k] / serve[k] if serve[k] > 0 else 0.0
        util[k] = u if u < 1.0 else 1.0


def warm_up() -> tuple[float, bool]:
    """Compile (or load from the cache) every kernel on a tiny input; returns ``(seconds,
    compiled)`` (``compiled``: numba had to compile rather than load its cache)."""
    t0 = time.perf_counter()
    req = CompiledRequests(capacity=4)

    class _Plane:
        arrival_s = np.array([0.1, 0.2, 0.3])
        start_s = np.array([0.1, 0.25, np.nan])
        end_s = np.array([0.15, 1.4, np.nan])
        drop = np.zeros(3, dtype=np.int8)
        batch_size = np.array([1, 2, 0], dtype=np.int32)
        replica = np.array([0, 0, -1], dtype=np.int32)

    comp = np.zeros(4)
    for a, b, lo in ((0.0, 1.5, -1.0), (1.5, 2.0, -2.0)):
        hi = req.now(_Plane, b, 1)[0]
        req.latency(req.slab(_Plane, a, b, hi, comp, lo), True)
    add_span(comp, 0.5, 2.5, 2)
    utilization_step(comp, comp, comp, 0, 2)
    kernels = (slab_step, now_step, latency_stats, add_span, utilization_step)
    return time.perf_counter() - t0, any(k.stats.cache_misses for k in kernels)


__all__ = ["CompiledRequests", "add_span", "latency_stats", "now_step", "slab_step",
           "utilization_step", "warm_up"]
