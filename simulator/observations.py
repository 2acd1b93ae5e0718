"""What the autoscaler sees: lagged observations built from the request plane's arrays.

:class:`Monitor` keeps, per service and run, per-second histories (arrivals, completions, busy
time, serving time) finalized once per second bin, when the bin lies wholly before the (lagged)
observation time, and pointers into the request arrays so that each observation reads only the
requests it has not read before. The figures go through
:func:`simscale.simulator.serving.build_observation`, the one definition shared with the real
cluster. Also the two array kernels the figures of a run reuse: :func:`busy_cumulative` and
:func:`percentiles_linear`.

Semantics (times in seconds): histories are whole seconds ending at ``t - metrics.lag_s`` (at
most ``metrics.history_s`` of them); queue length, in-flight and latency percentiles are taken at
``t - lag_s``; replica counts are the controller's current ones (not lagged).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simscale.simulator.requestplane import DROP_NONE, DROP_QUEUE_FULL
from simscale.simulator.scenario import Scenario
from simscale.simulator.serving import build_observation
from simscale.strategies.base import Observation

__all__ = ["Monitor", "busy_cumulative", "percentiles_linear"]


class Monitor:
    """Builds lagged :class:`Observation` values from the request plane's arrays.

    Per-second histories are accumulated once per second bin, when the bin lies wholly before
    the (lagged) observation time; everything about it is then final."""

    def __init__(self, sim: Any, scenario: Scenario) -> None:
        """``sim``: the engine's per-service simulation (its plane, records, service, size)."""
        self.sim = sim
        self.lag_s = scenario.metrics.lag_s
        self.history_s = int(scenario.metrics.history_s)
        self.n_bins = int(math.ceil(scenario.duration_s))
        arr = sim.plane.arrival_s  # sorted, >= 0: arrivals per bin [k, k + 1) by bisection
        cuts = np.searchsorted(arr, np.arange(self.n_bins + 1, dtype=np.float64), side="left")
        self.arr_bins = np.diff(cuts).astype(np.float64)
        self.comp_bins = np.zeros(self.n_bins)
        self.busy_bins = np.zeros(self.n_bins)
        self.serve_bins = np.zeros(self.n_bins)
        self.fin = 0
        self.p_hist = 0
        self.p_win = 0  # all requests before it finished before t_obs - latency window
        self.p_1s = 0  # ... before t_obs - 1 s
        self.p_now = 0  # ... before t_obs

    def _pointer(self, p: int, hi: int, bound: float) -> int:
        if hi <= p:
            return p
        done = self.sim.plane.end_s[p:hi] < bound
        if done.all():
            return hi
        return p + int(np.argmin(done))

    def _finalize(self, t_obs: float) -> None:
        new = min(int(math.floor(t_obs)), self.n_bins)
        old = self.fin
        if new <= old:
            return
        pl = self.sim.plane
        arr = pl.arrival_s
        hi = int(np.searchsorted(arr, float(new), side="left"))
        p = self.p_hist
        if hi > p:
            end = pl.end_s[p:hi]
            ok = (pl.drop[p:hi] == DROP_NONE) & (end >= old) & (end < new)
            if ok.any():
                self.comp_bins[old:new] += np.bincount(end[ok].astype(np.int64) - old,
                                                       minlength=new - old)[: new - old]
            st = pl.start_s[p:hi]
            started = ~np.isnan(st)
            if started.all():
                s, e, bs = st, end, pl.batch_size[p:hi]
            elif started.any():
                s, e, bs = st[started], end[started], pl.batch_size[p:hi][started]
            else:
                bs = None
            if bs is not None:
                edges = np.arange(old, new + 1, dtype=np.float64)
                unit = bool(bs.min() == 1 and bs.max() == 1)
                w = None if unit else 1.0 / bs
                cum = busy_cumulative(s, e, w, edges)
                self.busy_bins[old:new] += np.diff(cum)
        self.p_hist = self._pointer(p, hi, float(new))
        # serving time per bin: each ready-or-draining span clipped to the bins, added replica
        # by replica (in record order)
        spans = []
        for rec in self.sim.records:
            if math.isnan(rec.ready_s) or rec.ready_s >= new:
                continue
            stop = rec.stop_s if rec.state == "stopped" else math.inf
            if stop <= old:
                continue
            spans.append((rec.ready_s, stop))
        if spans:
            edges = np.arange(old, new + 1, dtype=np.float64)
            sp = np.asarray(spans)
            cov = np.diff(np.clip(edges, sp[:, :1], sp[:, 1:]), axis=1)
            acc = self.serve_bins[old:new]
            for row in cov:
                acc += row
        self.fin = new

    def observe(self, t_s: float) -> Observation:
        sim = self.sim
        pl = sim.plane
        t_obs = max(t_s - self.lag_s, 0.0)
        self._finalize(t_obs)
        kb1 = self.fin
        kb0 = max(0, kb1 - self.history_s)
        window_s = float(getattr(sim.strategy, "latency_window_s", 60.0) or 60.0)
        hi = int(np.searchsorted(pl.arrival_s, t_obs, side="left"))
        self.p_win = self._pointer(self.p_win, hi, t_obs - window_s)
        self.p_now = self._pointer(max(self.p_now, self.p_win), hi, t_obs)
        self.p_1s = self._pointer(max(self.p_1s, self.p_win), hi, t_obs - 1.0)
        # queued / in flight at t_obs: only requests not finished before t_obs
        p = self.p_now
        st = pl.start_s[p:hi]
        end = pl.end_s[p:hi]
        drop = pl.drop[p:hi]
        keep = drop != DROP_QUEUE_FULL
        leave = np.where(np.isnan(st), np.where(drop != DROP_NONE, end, np.inf), st)
        qlen = int(np.count_nonzero((leave > t_obs) & keep))
        infl = int(np.count_nonzero(~(end <= t_obs) & keep))
        # latency percentiles of the requests completed in the window
        p = self.p_win
        end = pl.end_s[p:hi]
        comp = (pl.drop[p:hi] == DROP_NONE) & (end >= t_obs - window_s) & (end < t_obs)
        if comp.any():
            lat_ms = (end[comp] - pl.arrival_s[p:hi][comp]) * 1000.0
            p50, p95, p99 = percentiles_linear(lat_ms, (50, 95, 99))
        else:
            p50 = p95 = p99 = math.nan
        # per-replica busy time over the last second
        # per-replica busy fraction over the last second
        ready = [r for r in sim.records if r.state == "ready"]
        per_rep = []
        if ready:
            p = self.p_1s
            st = pl.start_s[p:hi]
            started = ~np.isnan(st)
            s, e = st[started], pl.end_s[p:hi][started]
            w = 1.0 / pl.batch_size[p:hi][started]
            rep = pl.replica[p:hi][started]
            a, b = t_obs - 1.0, t_obs
            ov = np.clip(np.minimum(e, b) - np.maximum(s, a), 0.0, None) * w
            busy_by = np.bincount(rep, weights=ov, minlength=sim._next_rid)
            for rec in ready:
                busy = float(busy_by[rec.rid]) if rec.rid < len(busy_by) else 0.0
                per_rep.append((busy, b - max(a, rec.ready_s)))
        return build_observation(
            t_s=t_s, lag_s=self.lag_s, service=sim.svc.name, slo_ms=sim.svc.slo_ms,
            min_replicas=sim.svc.replicas.min, max_replicas=sim.svc.replicas.max, size=sim.size,
            size_options=sim.options, counts=sim.counts(),
            arrivals_per_s=self.arr_bins[kb0:kb1].copy(),
            completions_per_s=self.comp_bins[kb0:kb1].copy(),
            busy_per_s=self.busy_bins[kb0:kb1], serving_per_s=self.serve_bins[kb0:kb1],
            replica_busy_last_s=per_rep, queue_length=qlen, in_flight=infl,
            latency_window_s=window_s, latency_percentiles_ms=(p50, p95, p99),
            max_wait_ms=sim.max_wait_s * 1000.0)


def busy_cumulative(start: np.ndarray, end: np.ndarray, weight: np.ndarray | None,
                     edges: np.ndarray) -> np.ndarray:
    """``B(x) = sum_j weight_j * clip(x - start_j, 0, end_j - start_j)`` at each edge ``x``
    (busy time accumulated up to ``x``), by sorting instead of an n x m matrix.

    ``weight=None`` means all ones: then the sorted times alone (not a stable argsort) give
    the same cumulative sums, and sorted starts (FIFO) are not sorted again."""
    out = np.zeros(len(edges))
    for times, sign in ((start, 1.0), (end, -1.0)):
        if weight is None:
            if len(times) > 1 and not bool(np.all(times[1:] >= times[:-1])):
                times = np.sort(times)
            cw = np.arange(len(times) + 1, dtype=np.float64)
            cwt = np.empty(len(times) + 1)
            cwt[0] = 0.0
            np.cumsum(times, out=cwt[1:])
            k = np.searchsorted(times, edges, side="right")
        else:
            order = np.argsort(times, kind="stable")
            ts = times[order]
            ws = weight[order]
            cw = np.concatenate(([0.0], np.cumsum(ws)))
            cwt = np.concatenate(([0.0], np.cumsum(ws * ts)))
            k = np.searchsorted(ts, edges, side="right")
        out += sign * (cw[k] * edges - cwt[k])
    return out


def percentiles_linear(x: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(x, qs)`` (the default linear method) of a 1-d float array without NaN,
    bit for bit, as floats; ``x`` is reordered in place.

    One single-``kth`` partition per order statistic needed (numpy's partition with several
    ``kth`` at once is several times slower), then numpy's own interpolation arithmetic."""
    n = len(x)
    virt = (n - 1) * np.true_divide(np.asarray(qs), 100)
    prev = np.floor(virt).astype(np.intp)
    nxt = prev + 1
    above = virt >= n - 1
    prev[above] = -1
    nxt[above] = -1
    gamma = virt - prev  # as numpy computes it (-1 above the bounds, where it does not matter)
    prev[above] = n - 1
    nxt[above] = n - 1
    vals: dict[int, float] = {}
    ks = sorted(set(prev.tolist()) | set(nxt.tolist()))
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
    a = np.array([vals[k] for k in prev.tolist()])
    b = np.array([vals[k] for k in nxt.tolist()])
    diff = b - a
    res = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=res, where=gamma >= 0.5)
    return res.tolist()
