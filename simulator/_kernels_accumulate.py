"""Compiled fold of a chunk of requests into the run's figures (numba, cached on disk).

:func:`fold_chunk` is one pass over a chunk doing what
:meth:`~simscale.simulator.accumulate.RequestFigures.add` does with numpy (the specification):
the same counts, the same per-request floating-point operations (latency ``(end - arrival) *
1000``, busy pieces ``(min(end, cut) - start) * (1 / batch size)``), written into the same
arrays. Counts are identical; sums (busy time per bin and in all) add the same terms in another
order, so they agree to the last bits of floating point (``tests/test_sketch.py`` and the
property tests compare both).
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import njit

__all__ = ["fold_chunk", "grouped_quantile", "warm_up"]

# indices of the ``counts`` array
COMPLETED, N_FIN, SLO_OK, N_LAT, N_PEND = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def _count_le(hist, t: float) -> None:  # noqa: ANN001
    """Count ``t`` in the first bin whose end ``k + 1`` is at or after it (bin 0 for ``t <=
    1``; not at all past the last bin): ``accumulate._le_index`` then ``_add_counts``."""
    k = int(math.ceil(t)) - 1
    if k < 0:
        k = 0
    if k < hist.shape[0]:
        hist[k] += 1


@njit(cache=True, nogil=True)
def _count_in(hist, t: float) -> None:  # noqa: ANN001
    """Count ``t`` (>= 0) in its bin ``[k, k + 1)``, the last bin taking everything after it:
    ``accumulate._bin_of`` then ``_add_counts``."""
    k = int(t)
    last = hist.shape[0] - 1
    hist[k if k < last else last] += 1


@njit(cache=True, nogil=True)
def fold_chunk(arr, st, end, drop, bs, D, warmup_s, slo_ms, bin_w, n_out,  # noqa: ANN001
               by_reason, counts, busy_total, arr_bins, thr_bins, drp_bins, busy_bins,
               arr_le, fin_le, q_le, lat_out, wait_out, pend_g, pend_l):
    """Fold ``arr[i], st[i], end[i], drop[i], bs[i]`` (one chunk, arrival order) in; see the
    module docstring. ``lat_out``/``wait_out`` receive the latencies and queue waits (ms) of
    the completed requests that arrived at or after ``warmup_s`` (``counts[N_LAT]`` of them),
    ``pend_g``/``pend_l`` the completion bin (of ``bin_w`` s) and latency of every completed
    request (``counts[N_PEND]``)."""
    n = arr.shape[0]
    nl = 0
    npd = 0
    total = 0.0
    for i in range(n):
        a = arr[i]
        s = st[i]
        e = end[i]
        d = drop[i]
        _count_in(arr_bins, a)
        _count_le(arr_le, a)
        post = a >= warmup_s
        if d != 0:
            by_reason[d] += 1
            _count_in(drp_bins, e)
            _count_le(fin_le, e)
            if post:
                counts[N_FIN] += 1
        elif e <= D:  # completed (NaN compares False)
            counts[COMPLETED] += 1
            _count_in(thr_bins, e)
            _count_le(fin_le, e)
            lat = (e - a) * 1000.0
            g = int(e) if bin_w == 1 else int(e / bin_w)
            pend_g[npd] = g if g < n_out - 1 else n_out - 1
            pend_l[npd] = lat
            npd += 1
            if post:
                lat_out[nl] = lat
                wait_out[nl] = (s - a) * 1000.0
                nl += 1
                counts[N_FIN] += 1
                if lat <= slo_ms:
                    counts[SLO_OK] += 1
        if s == s:  # started (not NaN)
            se = e if e < D else D
            w = 1.0 / (bs[i] if bs[i] > 1 else 1)
            dur = se - s
            if dur < 0.0:
                dur = 0.0
            total += dur * w
            if se > s:  # its pieces of busy time, one per second it spans
                lo = s
                while True:
                    js = int(lo)
                    cut = js + 1.0
                    busy_bins[js] += ((se if se < cut else cut) - lo) * w
                    if not se > cut:
                        break
                    lo = cut
            if d != 1:
                _count_le(q_le, s)
        elif d == 1:  # queue full: left the queue at its arrival
            _count_le(q_le, a)
        elif d != 0:  # dropped while waiting: left the queue at its drop time
            _count_le(q_le, e)
    counts[N_LAT] = nl
    counts[N_PEND] = npd
    busy_total[0] += total


@njit(cache=True, nogil=True)
def grouped_quantile(groups, values, q: float, n_groups: int):  # noqa: ANN001, ANN201
    """The ``q`` quantile (numpy's linear method) of ``values`` within each integer group
    ``0..n_groups-1`` (NaN for empty groups), exactly as
    :func:`simscale.simulator.metrics.grouped_quantile` computes it: the values are gathered
    group by group (a counting sort) and each group's two order statistics around
    ``q * (count - 1)`` are selected (``np.partition``), so nothing is sorted whole."""
    n = values.shape[0]
    start = np.zeros(n_groups + 1, dtype=np.int64)
    for i in range(n):
        start[groups[i] + 1] += 1
    for g in range(n_groups):
        start[g + 1] += start[g]
    fill = start[:n_groups].copy()
    buf = np.empty(n, dtype=np.float64)
    for i in range(n):
        g = groups[i]
        buf[fill[g]] = values[i]
        fill[g] += 1
    out = np.full(n_groups, np.nan)
    for g in range(n_groups):
        a = start[g]
        m = start[g + 1] - a
        if m == 0:
            continue
        pos = q * (m - 1)
        lo = int(math.floor(pos))
        frac = pos - lo
        hi = lo + 1 if lo + 1 < m else m - 1
        part = np.partition(buf[a:a + m], lo)
        v_lo = part[lo]
        v_hi = v_lo
        if hi != lo:
            v_hi = part[hi]
            for j in range(hi + 1, m):  # the smallest value above rank lo
                if part[j] < v_hi:
                    v_hi = part[j]
        out[g] = v_lo + frac * (v_hi - v_lo)
    return out


def warm_up() -> tuple[float, bool]:
    """Compile (or load from the cache) :func:`fold_chunk` on a tiny input; returns
    ``(seconds, compiled)`` (``compiled``: numba had to compile rather than load its cache)."""
    t0 = time.perf_counter()
    n = 3
    arr = np.array([0.1, 0.5, 1.2])
    st = np.array([0.1, 0.6, np.nan])
    end = np.array([0.3, 1.7, 1.3])
    drop = np.array([0, 0, 2], dtype=np.int8)
    bs = np.array([1, 2, 0], dtype=np.int32)
    nb = 2
    fold_chunk(arr, st, end, drop, bs, 2.0, 0.0, 100.0, 1, nb,
               np.zeros(4, dtype=np.int64), np.zeros(5, dtype=np.int64), np.zeros(1),
               np.zeros(nb, dtype=np.int64), np.zeros(nb, dtype=np.int64),
               np.zeros(nb, dtype=np.int64), np.zeros(nb + 1), np.zeros(nb, dtype=np.int64),
               np.zeros(nb, dtype=np.int64), np.zeros(nb, dtype=np.int64), np.zeros(n),
               np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n))
    grouped_quantile(np.array([0, 1, 0], dtype=np.int64), np.array([1.0, 2.0, 3.0]), 0.95, 2)
    return time.perf_counter() - t0, bool(fold_chunk.stats.cache_misses
                                          or grouped_quantile.stats.cache_misses)
