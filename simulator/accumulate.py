"""The per-request figures of a run, folded in chunk by chunk (a stream of requests).

:class:`RequestFigures` takes the request plane's results a chunk of consecutive requests at a
time, in arrival order, once each request's outcome is final, and keeps only what the figures
need: exact counts, per-second bins of the run (arrivals, completions, drops, busy time, and
counts "at or before each bin's end" that become queue length and in-flight), the latency and
queue-wait summaries (:class:`~simscale.simulator.sketch.LatencySummary`: exact below
:data:`~simscale.simulator.sketch.EXACT_LIMIT` requests, a sketch with a stated relative error
above) and the latencies of the completion seconds that may still receive requests. Its
memory therefore depends on the run's length in seconds and on the requests in the system at
once, not on the number of requests. Definitions: ``simulator/metrics.py`` and
``simulator/RESULTS.md``; the figures equal those computed over the whole arrays at once
(counts exactly; sums of busy time to the last bits of floating point).
"""

from __future__ import annotations

import math

import numpy as np

from simscale.simulator.requestplane import DROP_NONE, DROP_QUEUE_FULL
from simscale.simulator.sketch import EXACT_LIMIT, LatencySummary

__all__ = ["CHUNK_REQUESTS", "RequestFigures", "fold", "timeseries_bin_s"]

#: requests folded in at a time (bounds the temporaries of the computation)
CHUNK_REQUESTS = 1 << 20


#: most time-series bins per run with the automatic bin width, and the widths it picks from
MAX_AUTO_BINS = 86_400
AUTO_BIN_WIDTHS_S = (1, 10, 60, 300, 900, 3600)


def timeseries_bin_s(duration_s: float, configured: int | None = None) -> int:
    """Width (whole seconds) of a run's time-series bins: ``configured`` (the scenario's
    ``metrics.timeseries_bin_s``), else the smallest of :data:`AUTO_BIN_WIDTHS_S` that keeps a
    run at most :data:`MAX_AUTO_BINS` bins."""
    if configured is not None:
        return int(configured)
    for w in AUTO_BIN_WIDTHS_S:
        if math.ceil(duration_s / w) <= MAX_AUTO_BINS:
            return w
    return AUTO_BIN_WIDTHS_S[-1]


def _add_counts(hist: np.ndarray, idx: np.ndarray) -> None:
    """``hist[k] += count of k in idx`` for ``0 <= idx < len(hist)`` (others ignored), in time
    proportional to ``len(idx)`` plus the span of ``idx``, not to ``len(hist)``."""
    idx = idx[(idx >= 0) & (idx < len(hist))]
    if len(idx):
        lo = int(idx.min())
        c = np.bincount(idx - lo)
        hist[lo:lo + len(c)] += c


def _bin_of(times: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin ``[k, k + 1)`` of each time (>= 0), the last bin taking everything after it."""
    return np.minimum(times.astype(np.int64), n_bins - 1)


def _le_index(times: np.ndarray) -> np.ndarray:
    """The first bin whose end ``k + 1`` is at or after each time: ``t <= k + 1`` exactly when
    ``k >= ceil(t) - 1`` (times before 1 s count from bin 0)."""
    return np.maximum(np.ceil(times).astype(np.int64) - 1, 0)


class RequestFigures:
    """Figures of a run's requests, fed in arrival order by :meth:`add`, read by
    :meth:`summary` and :meth:`timeseries` after :meth:`close`.

    ``duration_s``: the run's length (completed means ended at or before it); ``warmup_s``:
    requests that arrived before it are left out of the latency figures and the SLO
    attainment; ``slo_ms``: the latency objective; ``exact_limit``: latencies kept exactly up
    to this many (see :mod:`simscale.simulator.sketch`)."""

    def __init__(self, duration_s: float, warmup_s: float, slo_ms: float,
                 exact_limit: int = EXACT_LIMIT, bin_s: int = 1,
                 compiled: bool = False) -> None:
        self.D = float(duration_s)
        self.warmup_s = float(warmup_s)
        self.slo_ms = float(slo_ms)
        nb = int(math.ceil(self.D))
        self.n_bins = nb
        #: the time series' bin width (s): the per-second bins are summed into bins this wide
        self.bin_s = int(bin_s)
        self.n_out = int(math.ceil(self.D / self.bin_s))
        self.arrivals = 0
        self.completed = 0
        self.by_reason = np.zeros(4, dtype=np.int64)
        self.n_fin = 0  # finished (completed or dropped) after the warm-up
        self.slo_ok = 0
        self.busy_total = 0.0
        self.latency = LatencySummary(exact_limit)
        self.queue_wait = LatencySummary(exact_limit)
        self.arr_bins = np.zeros(nb, dtype=np.int64)
        self.thr_bins = np.zeros(nb, dtype=np.int64)
        self.drp_bins = np.zeros(nb, dtype=np.int64)
        self.busy_bins = np.zeros(nb + 1)
        # counts of times at or before each bin end (cumulated in timeseries())
        self.arr_le = np.zeros(nb, dtype=np.int64)
        self.fin_le = np.zeros(nb, dtype=np.int64)
        self.q_le = np.zeros(nb, dtype=np.int64)
        self.p95 = np.full(self.n_out, np.nan)  # per bin of bin_s
        # (completion bin, latency ms) of completions in bins that may still receive some
        self._pend_g: list[np.ndarray] = []
        self._pend_l: list[np.ndarray] = []
        self._closed = 0  # bins below this have their p95 written
        #: fold each chunk with the compiled pass (:mod:`simscale.simulator._kernels_accumulate`)
        self.compiled = compiled
        self._counts = np.zeros(5, dtype=np.int64)
        self._busy_total = np.zeros(1)
        #: the compiled pass's latency and queue-wait buffers, reused from chunk to chunk
        self._lat_wait = (np.empty(0), np.empty(0))

    def add(self, arrival_s: np.ndarray, start_s: np.ndarray, end_s: np.ndarray,
            drop: np.ndarray, batch_size: np.ndarray, next_arrival_s: float = math.inf
            ) -> None:
        """Fold in the next chunk of requests (arrival order; sorted arrivals), whose outcomes
        are final. ``next_arrival_s``: the arrival of the first request not yet added (every
        later request ends at or after it), which closes the completion bins before it."""
        if self.compiled:
            self._add_compiled(arrival_s, start_s, end_s, drop, batch_size)
        else:
            self._add_numpy(arrival_s, start_s, end_s, drop, batch_size)
        if math.isfinite(next_arrival_s):
            self._close(min(int(next_arrival_s / self.bin_s), self.n_out - 1))

    def _add_compiled(self, arr: np.ndarray, st: np.ndarray, end: np.ndarray, drop: np.ndarray,
                      bs: np.ndarray) -> None:
        """:meth:`_add_numpy` in one compiled pass (same results; sums to rounding)."""
        from simscale.simulator._kernels_accumulate import N_LAT, N_PEND, fold_chunk

        n = len(arr)
        self.arrivals += n
        if len(self._lat_wait[0]) < n:  # (the summaries copy what they keep: reused)
            self._lat_wait = (np.empty(n), np.empty(n))
        lat, wait = self._lat_wait
        pend_g, pend_l = np.empty(n, dtype=np.int64), np.empty(n)
        c = self._counts
        c[:] = 0
        self._busy_total[0] = 0.0
        fold_chunk(arr, st, end, drop, bs, self.D, self.warmup_s, self.slo_ms, self.bin_s,
                   self.n_out, self.by_reason, c, self._busy_total, self.arr_bins,
                   self.thr_bins, self.drp_bins, self.busy_bins, self.arr_le, self.fin_le,
                   self.q_le, lat, wait, pend_g, pend_l)
        self.completed += int(c[0])
        self.n_fin += int(c[1])
        self.slo_ok += int(c[2])
        self.busy_total += float(self._busy_total[0])
        k, m = int(c[N_LAT]), int(c[N_PEND])
        self.latency.add(lat[:k])
        self.queue_wait.add(wait[:k])
        if m:
            self._pend_g.append(pend_g[:m])
            self._pend_l.append(pend_l[:m])

    def _add_numpy(self, arrival_s: np.ndarray, start_s: np.ndarray, end_s: np.ndarray,
                   drop: np.ndarray, batch_size: np.ndarray) -> None:
        """The specification of the fold (numpy), as RESULTS.md defines the figures."""
        D, nb = self.D, self.n_bins
        arr, st, end = arrival_s, start_s, end_s
        self.arrivals += len(arr)
        dropped = drop != DROP_NONE
        completed = end <= D  # NaN compares False
        completed &= ~dropped
        if dropped.any():
            self.by_reason += np.bincount(drop[dropped], minlength=4)
        self.completed += int(np.count_nonzero(completed))
        post = arr >= self.warmup_s
        comp_end = end[completed]
        lat_all_ms = comp_end - arr[completed]
        lat_all_ms *= 1000.0
        cp = completed & post
        lat_ms = lat_all_ms[post[completed]]
        self.latency.add(lat_ms)
        wait_ms = st[cp] - arr[cp]
        wait_ms *= 1000.0
        self.queue_wait.add(wait_ms)
        self.n_fin += len(lat_ms) + int(np.count_nonzero(dropped & post))
        self.slo_ok += int(np.count_nonzero(lat_ms <= self.slo_ms))
        # busy time: a batch of b counts 1/b per request
        started = ~np.isnan(st)
        s_st = st[started]
        s_end = np.minimum(end[started], D)
        w = 1.0 / np.maximum(batch_size[started], 1)
        dur = np.clip(s_end - s_st, 0.0, None)
        dur *= w
        self.busy_total += float(np.sum(dur))
        on = np.flatnonzero(s_end > s_st)
        if len(on):
            s = s_st[on]
            k0 = max(int(s.min()), 0)
            _add_busy(self.busy_bins, s, s_end[on], w[on], k0)
        # per-second counts
        _add_counts(self.arr_bins, _bin_of(arr, nb))
        _add_counts(self.thr_bins, _bin_of(comp_end, nb))
        _add_counts(self.arr_le, _le_index(arr))
        _add_counts(self.fin_le, _le_index(comp_end))
        if dropped.any():
            d_end = end[dropped]
            _add_counts(self.drp_bins, _bin_of(d_end, nb))
            _add_counts(self.fin_le, _le_index(d_end))
        # queue: from arrival to start (served) or drop (dropped while waiting)
        qf = drop == DROP_QUEUE_FULL
        _add_counts(self.q_le, _le_index(st[started & ~qf]))
        if dropped.any():
            _add_counts(self.q_le, _le_index(end[~started & dropped & ~qf]))
            _add_counts(self.q_le, _le_index(arr[qf]))
        # latencies by completion bin (of bin_s), until the bin can receive no more
        w, no = self.bin_s, self.n_out
        if len(comp_end):
            self._pend_g.append(_bin_of(comp_end if w == 1 else comp_end / w, no))
            self._pend_l.append(lat_all_ms)

    def _close(self, upto: int) -> None:
        """Write the p95 of the completion bins below ``upto``."""
        if upto <= self._closed or not self._pend_g:
            return
        from simscale.simulator.metrics import grouped_quantile

        g = np.concatenate(self._pend_g) if len(self._pend_g) > 1 else self._pend_g[0]
        lat = np.concatenate(self._pend_l) if len(self._pend_l) > 1 else self._pend_l[0]
        done = g < upto
        if done.any():
            gd = g[done]
            g0 = int(gd.min())
            self.p95[g0:upto] = grouped_quantile(gd - g0, lat[done], 0.95, upto - g0,
                                                 compiled=self.compiled)
            keep = ~done
            g, lat = g[keep], lat[keep]
        self._pend_g, self._pend_l = ([g], [lat]) if len(g) else ([], [])
        self._closed = upto

    def close(self) -> None:
        """Every request has been added: write the p95 of the remaining bins."""
        self._close(self.n_out)
        self._lat_wait = (np.empty(0), np.empty(0))

    def summary(self) -> dict[str, object]:
        """The request figures of ``summary.json`` (see ``simulator/schema.py``)."""
        n_dropped = int(self.by_reason[1:].sum())
        return {
            "arrivals": self.arrivals,
            "completed": self.completed,
            "dropped": n_dropped,
            "in_flight_at_end": self.arrivals - self.completed - n_dropped,
            "by_reason": self.by_reason,
            "latency_ms": self.latency.stats(True),
            "queue_wait_ms": self.queue_wait.stats(False),
            "percentile_rel_error": max(self.latency.rel_error, self.queue_wait.rel_error),
            "slo_attainment": self.slo_ok / self.n_fin if self.n_fin else math.nan,
            "busy_total": self.busy_total,
        }

    def timeseries(self) -> dict[str, np.ndarray]:
        """Request columns per bin of :attr:`bin_s`: arrivals, completions and drops per bin
        (counts), queue length and in flight at each bin's end, busy replica-seconds and the
        latency p95 (ms) of the completions of each bin."""
        arr_le = np.cumsum(self.arr_le)
        cols = {
            "arrivals": self.arr_bins,
            "completions": self.thr_bins,
            "dropped": self.drp_bins,
            "queue_length": arr_le - np.cumsum(self.q_le),
            "in_flight": arr_le - np.cumsum(self.fin_le),
            "busy_s": self.busy_bins[:self.n_bins],
        }
        if self.bin_s > 1:
            first = np.arange(0, self.n_bins, self.bin_s)
            last = np.minimum(first + self.bin_s, self.n_bins) - 1
            for key in ("arrivals", "completions", "dropped", "busy_s"):
                cols[key] = np.add.reduceat(cols[key], first)
            for key in ("queue_length", "in_flight"):  # (at the bin's end)
                cols[key] = cols[key][last]
        cols["latency_p95_ms"] = self.p95
        return cols


def fold(acc: RequestFigures, plane: object, k: int, chunk: int = CHUNK_REQUESTS) -> None:
    """Fold the first ``k`` requests of ``plane``'s arrays (a request plane, or anything with
    its ``arrival_s``, ``start_s``, ``end_s``, ``drop`` and ``batch_size`` arrays) into
    ``acc``, ``chunk`` at a time; their outcomes must be final."""
    arr = plane.arrival_s  # type: ignore[attr-defined]
    n = len(arr)
    for i in range(0, k, chunk):
        j = min(i + chunk, k)
        acc.add(arr[i:j], plane.start_s[i:j], plane.end_s[i:j],  # type: ignore[attr-defined]
                plane.drop[i:j], plane.batch_size[i:j],  # type: ignore[attr-defined]
                float(arr[j]) if j < n else math.inf)


def _add_busy(bins: np.ndarray, s: np.ndarray, e: np.ndarray, w: np.ndarray, k0: int) -> None:
    """``bins[k] += sum_j w_j * |[s_j, e_j) & [k, k + 1)|`` (``s >= k0 >= 0``, ``e > s``): the
    piece of each interval in its first bin, then, for the intervals that go on, the same
    from the next whole second."""
    while True:
        js = s.astype(np.int64)
        cut = js + 1.0
        first = np.minimum(e, cut)
        first -= s
        first *= w
        part = np.bincount(js - k0, weights=first)
        bins[k0:k0 + len(part)] += part
        on = np.flatnonzero(e > cut)
        if not len(on):
            return
        s = cut[on]
        e = e[on]
        w = w[on]
