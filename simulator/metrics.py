"""Figures of one run (one strategy on one service), computed vectorised after the run.

Definitions follow ``simulator/RESULTS.md``; times in seconds, latencies in milliseconds.
Percentiles use numpy's default (linear interpolation) over all requests, no sketch. Choices
RESULTS.md leaves open:

- ``completed``: served requests whose end is at or before ``duration_s``; a request whose
  batch ends after the run is ``in_flight_at_end`` (its ``end_s`` is NaN in the requests table,
  its ``start_s`` is kept). A crashed batch's requests keep their ``start_s`` too.
- ``queue_wait_ms`` is over the same requests as ``latency_ms`` (completed, arrived at or after
  ``warmup_s``).
- ``utilization``: busy time (a batch of ``b`` counts once, not ``b`` times) over the time
  replicas were ready or draining; per bin in the time series, NaN when no replica served.
- ``threads`` (time series): threads per replica of the size new replicas get, at the bin end.
- ``max_replicas``: most replicas existing (starting, ready or draining) at once.
- bins are ``[k, k + 1)``; the last one ends at ``duration_s`` and rates divide by its width.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from simscale.simulator.engine import ReplicaRecord, ServiceRun
from simscale.simulator.observations import busy_cumulative, percentiles_linear
from simscale.simulator.requestplane import (
    DROP_CRASH,
    DROP_NONE,
    DROP_QUEUE_FULL,
    DROP_REASONS,
    DROP_TIMEOUT,
)

__all__ = ["busy_cumulative", "busy_per_bin", "grouped_quantile", "run_figures"]

def busy_per_bin(start: np.ndarray, end: np.ndarray, weight: np.ndarray | None, n_bins: int
                 ) -> np.ndarray:
    """``sum_j weight_j * |[start_j, end_j) & [k, k+1)|`` for each 1 s bin ``k`` (O(n), no
    sort); intervals must lie within ``[0, n_bins]``; ``weight=None``: all ones."""
    if len(start) and start.min() >= 0:  # floor by truncation (times before 0 do not occur)
        fs = start.astype(np.int64)
        fe = end.astype(np.int64)
    else:
        fs = np.floor(start).astype(np.int64)
        fe = np.floor(end).astype(np.int64)
    d = np.flatnonzero(fs != fe)
    b = fe[d]
    del fe
    # pieces within one bin; the others add 0.0 to their bin, which changes no sum
    wts = end - start
    if weight is not None:
        wts *= weight
    wts[d] = 0.0
    out = np.bincount(fs, weights=wts, minlength=n_bins + 1)[: n_bins + 1]
    del wts
    if len(d):
        s, e, a = start[d], end[d], fs[d]
        w = np.ones(len(d)) if weight is None else weight[d]
        out += np.bincount(a, weights=(a + 1 - s) * w, minlength=n_bins + 1)[: n_bins + 1]
        out += np.bincount(b, weights=(e - b) * w, minlength=n_bins + 1)[: n_bins + 1]
        full = np.bincount(a + 1, weights=w, minlength=n_bins + 2)[: n_bins + 2]
        full -= np.bincount(b, weights=w, minlength=n_bins + 2)[: n_bins + 2]
        out += np.cumsum(full)[: n_bins + 1]
    return out[:n_bins]


def _is_sorted(x: np.ndarray) -> bool:
    return len(x) < 2 or bool(np.all(x[1:] >= x[:-1]))


def _per_bin(times: np.ndarray, n_bins: int) -> np.ndarray:
    """How many of ``times`` (>= 0) fall in each bin ``[k, k + 1)``, the last bin taking
    everything from ``n_bins - 1`` on."""
    if len(times) and times[0] >= 0 and _is_sorted(times):
        lo = np.searchsorted(times, np.arange(n_bins, dtype=np.float64), side="left")
        return np.diff(np.append(lo, len(times)))
    return np.bincount(np.minimum(times.astype(np.int64), n_bins - 1), minlength=n_bins)[:n_bins]


def _count_le(times: np.ndarray, n_bins: int, floor: np.ndarray | None = None) -> np.ndarray:
    """How many of ``times`` are <= each bin end ``k + 1`` (inf ignored; NaN not allowed).
    ``floor``: ``times`` as int64 when the caller has it (times >= 0)."""
    n = len(times)
    if n == 0:
        return np.zeros(n_bins, dtype=np.int64)
    if floor is None and math.isfinite(times[0]) and _is_sorted(times):
        return np.searchsorted(times, np.arange(1, n_bins + 1, dtype=np.float64),
                               side="right").astype(np.int64)
    if floor is None:
        t = times[np.isfinite(times)]
        if len(t) == 0:
            return np.zeros(n_bins, dtype=np.int64)
        if t.min() < 0:  # (times before 0 do not occur in simulations)
            idx = np.maximum(np.ceil(t).astype(np.int64) - 1, 0)
            idx = idx[idx < n_bins]
            return np.cumsum(np.bincount(idx, minlength=n_bins)[:n_bins])
        floor = t.astype(np.int64)
    else:
        t = times
    # t <= k + 1  <=>  floor(t) <= k, or t is the integer k + 1
    out = np.cumsum(np.bincount(np.minimum(floor, n_bins), minlength=n_bins + 1)[:n_bins])
    ints = floor[floor == t]
    ints = ints[(ints >= 1) & (ints <= n_bins)] - 1
    if len(ints):
        out += np.bincount(ints, minlength=n_bins)[:n_bins]
    return out


def grouped_quantile(groups: np.ndarray, values: np.ndarray, q: float, n_groups: int
                     ) -> np.ndarray:
    """The ``q`` quantile (numpy's linear method) of ``values`` within each integer group
    ``0..n_groups-1``; NaN for empty groups."""
    out = np.full(n_groups, np.nan)
    if len(values) == 0:
        return out
    # one sort on (group, value): the value is scaled into [0, 0.5) and added to the group;
    # near-equal values may swap (by < 1e-9 of the value range), never across groups
    vmin = float(values.min())
    span = float(values.max()) - vmin
    if span > 0:
        key = values - vmin
        key *= 0.5 / span
        key += groups
    else:
        key = groups.astype(np.float64)
    order = np.argsort(key)
    del key
    counts = np.bincount(groups, minlength=n_groups)[:n_groups]
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    pos = q * (counts[has] - 1)
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    base = offsets[has]
    hi = np.minimum(lo + 1, counts[has] - 1)
    v_lo = values[order[base + lo]]
    v_hi = values[order[base + hi]]
    out[has] = v_lo + frac * (v_hi - v_lo)
    return out


def _stats_ms(ms: np.ndarray, with_max: bool) -> dict[str, float]:
    """Mean, percentiles (and max) of ``ms`` (milliseconds), which is reordered in place."""
    keys = ["mean", "p50", "p95", "p99"] + (["max"] if with_max else [])
    if len(ms) == 0:
        return {k: math.nan for k in keys}
    out = {"mean": float(ms.mean())}
    mx = float(ms.max()) if with_max else 0.0
    p50, p95, p99 = percentiles_linear(ms, (50, 95, 99))
    out.update({"p50": p50, "p95": p95, "p99": p99})
    if with_max:
        out["max"] = mx
    return out


def _intervals(recs: list[ReplicaRecord]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """[from, to) of each replica in each state (inf = still in it at the end)."""
    inf = math.inf

    def nz(x: float) -> float:
        return inf if math.isnan(x) else x

    out: dict[str, tuple[list[float], list[float]]] = {
        k: ([], []) for k in ("pending", "starting", "ready", "draining", "exists", "serving")}
    for r in recs:
        stop = nz(r.stop_s) if r.state == "stopped" else inf
        placed, ready, drain = nz(r.placed_s), nz(r.ready_s), nz(r.drain_s)
        spans = {
            "pending": (r.requested_s, min(placed, stop)),
            "starting": (placed, min(ready, stop)),
            "ready": (ready, min(drain, stop)),
            "draining": (drain, stop),
            "exists": (placed, stop),
            "serving": (ready, stop),
        }
        for k, (a, b) in spans.items():
            if a < b:
                out[k][0].append(a)
                out[k][1].append(b)
    return {k: (np.asarray(a, dtype=float), np.asarray(b, dtype=float))
            for k, (a, b) in out.items()}


def _count_at(iv: tuple[np.ndarray, np.ndarray], t: np.ndarray) -> np.ndarray:
    a = np.sort(iv[0])
    b = np.sort(iv[1])
    return (np.searchsorted(a, t, side="right") - np.searchsorted(b, t, side="right")
            ).astype(np.int64)


def _overlap_per_bin(iv: tuple[np.ndarray, np.ndarray], edges: np.ndarray) -> np.ndarray:
    a, b = iv
    if len(a) == 0:
        return np.zeros(len(edges) - 1)
    cum = busy_cumulative(a, np.minimum(b, edges[-1]), np.ones(len(a)), edges)
    return np.diff(cum)


def _outcomes(drop: np.ndarray, end: np.ndarray, D: float
              ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """``(dropped_mask, n_dropped, completed_mask, by_reason)``: which requests were dropped
    and how many, which completed by ``D`` (s; served and not dropped) and the drops per
    reason code."""
    # Few full-length temporaries: every new array of this size costs page faults too.
    dropped_mask = drop != DROP_NONE
    n_dropped = int(np.count_nonzero(dropped_mask))
    completed_mask = end <= D  # NaN compares False
    if n_dropped:
        completed_mask &= ~dropped_mask
        by_reason = np.bincount(drop[dropped_mask], minlength=4)
    else:
        by_reason = np.zeros(4, dtype=np.int64)
    return dropped_mask, n_dropped, completed_mask, by_reason


def _latencies(arr: np.ndarray, st: np.ndarray, end: np.ndarray, completed_mask: np.ndarray,
               dropped_mask: np.ndarray, n_dropped: int, warmup_s: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float], int]:
    """Latencies of the completed requests and their queue waits.

    Returns ``(comp_end, lat_all_ms, lat_ms, wait_stats, n_fin)``: end times (s) and latencies
    (ms) of all completed requests, in request order; the latencies (ms) of those that arrived
    at or after ``warmup_s`` (a view of ``lat_all_ms`` when the arrivals are sorted); the
    statistics of their queue waits (ms); and how many requests that arrived at or after
    ``warmup_s`` finished (completed or dropped), the SLO attainment's denominator."""
    comp_end = end[completed_mask]
    comp_arr = arr[completed_mask]
    lat_all_ms = comp_end - comp_arr  # latencies of all completed requests (ms)
    lat_all_ms *= 1000.0
    # after the warm-up: a suffix of the (sorted) arrivals, so of the completed ones too
    if _is_sorted(arr):
        i_w = int(np.searchsorted(arr, warmup_s, side="left"))
        j_w = int(np.count_nonzero(completed_mask[:i_w]))
        lat_ms = lat_all_ms[j_w:]
        wait_ms = st[i_w:][completed_mask[i_w:]]
        wait_ms -= comp_arr[j_w:]
        n_fin = len(lat_ms) + (int(np.count_nonzero(dropped_mask[i_w:])) if n_dropped else 0)
    else:
        post = arr >= warmup_s
        cm = completed_mask & post
        lat_ms = lat_all_ms[post[completed_mask]]
        wait_ms = st[cm] - arr[cm]
        n_fin = int(np.count_nonzero((completed_mask | dropped_mask) & post))
    del comp_arr
    wait_ms *= 1000.0
    return comp_end, lat_all_ms, lat_ms, _stats_ms(wait_ms, False), n_fin


def _max_existing(ex_a: np.ndarray, ex_b: np.ndarray, D: float) -> int:
    """Most replicas existing at once, from their ``[ex_a, ex_b)`` intervals clipped to ``D``."""
    if len(ex_a):
        times = np.concatenate([ex_a, np.minimum(ex_b, D)])
        steps = np.concatenate([np.ones(len(ex_a)), -np.ones(len(ex_b))])
        order = np.lexsort((steps, times))  # stops before starts at equal times
        return int(np.max(np.cumsum(steps[order]))) if len(order) else 0
    return 0


def _busy(st: np.ndarray, end: np.ndarray, batch_size: np.ndarray, D: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float]:
    """Busy time of the started requests: ``(started, s_st, s_end, w, busy_total)``, which
    started, their starts and ends (s, clipped to ``D``), their weights ``1 / batch size`` (a
    batch counts once; ``None``: all 1) and the total busy replica-seconds."""
    started = ~np.isnan(st)
    if started.all():
        s_st, s_end, bs = st, np.minimum(end, D), batch_size
    else:
        s_st, s_end, bs = st[started], np.minimum(end[started], D), batch_size[started]
    w = None if len(bs) == 0 or bs.max() <= 1 else 1.0 / np.maximum(bs, 1)  # None: all 1
    dur = s_end - s_st
    if w is not None or (len(dur) and not dur.min() >= 0):
        dur = np.clip(dur, 0.0, None)
        if w is not None:
            dur *= w
    return started, s_st, s_end, w, float(np.sum(dur))


def _requests_table(run: ServiceRun, completed_mask: np.ndarray) -> pd.DataFrame:
    """One row per request: arrival, start and end (s; end NaN unless completed), batch size,
    replica and drop reason."""
    pl = run.plane
    end_out = np.where(completed_mask, pl.end_s, np.nan)
    return pd.DataFrame({
        "arrival_s": pl.arrival_s,
        "start_s": pl.start_s,
        "end_s": end_out,
        "batch_size": pl.batch_size,
        "replica": pl.replica,
        "drop_reason": pd.Categorical.from_codes(pl.drop.astype(np.int8),
                                                 categories=list(DROP_REASONS)),
    })


def run_figures(run: ServiceRun, warmup_s: float, *, keep_requests: bool = False
                ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame | None]:
    """Summary figures, the 1 s time series and (optionally) the requests table of one run.

    Returns ``(summary, timeseries, requests)``; the identifying columns (strategy, label,
    service, replication) are added by the caller."""
    pl = run.plane
    D = float(run.duration_s)
    arr = pl.arrival_s
    st = pl.start_s
    end = pl.end_s
    n = len(arr)
    dropped_mask, n_dropped, completed_mask, by_reason = _outcomes(pl.drop, end, D)
    n_completed = int(np.count_nonzero(completed_mask))
    svc = run.service
    comp_end, lat_all_ms, lat_ms, wait_stats, n_fin = _latencies(
        arr, st, end, completed_mask, dropped_mask, n_dropped, warmup_s)
    slo_ok = int(np.count_nonzero(lat_ms <= svc.slo_ms))
    ivs = _intervals(run.replicas)
    ex_a, ex_b = ivs["exists"]
    replica_seconds = float(np.sum(np.minimum(ex_b, D) - np.minimum(ex_a, D)))
    max_rep = _max_existing(ex_a, ex_b, D)
    # cost: every placed replica's pieces of life at its size's price
    pieces = _price_pieces(run.replicas, run.price_per_thread_hour, D)
    cost = float(sum((b - a) * p for a, b, p in pieces) / 3600.0)
    started, s_st, s_end, w, busy_total = _busy(st, end, pl.batch_size, D)
    sv_a, sv_b = ivs["serving"]
    serve_total = float(np.sum(np.clip(np.minimum(sv_b, D) - sv_a, 0.0, None)))
    events = run.events
    summary = {
        "arrivals": int(n),
        "completed": n_completed,
        "dropped": n_dropped,
        "in_flight_at_end": int(n - n_completed - n_dropped),
        "dropped_by_reason": {"queue_full": int(by_reason[DROP_QUEUE_FULL]),
                              "timeout": int(by_reason[DROP_TIMEOUT]),
                              "crash": int(by_reason[DROP_CRASH])},
        "latency_ms": None,
        "queue_wait_ms": None,
        "slo_ms": float(svc.slo_ms),
        "slo_attainment": slo_ok / n_fin if n_fin else math.nan,
        "replica_seconds": replica_seconds,
        "mean_replicas": replica_seconds / D,
        "max_replicas": max_rep,
        "scale_events": sum(e["action"] in ("scale_up", "scale_down", "resize") for e in events),
        "cost_usd": cost,
        "utilization": busy_total / serve_total if serve_total > 0 else math.nan,
        "events": list(events),
        "info": dict(run.info),
    }
    ts = _timeseries(run, ivs, pieces, completed_mask, dropped_mask, n_dropped, comp_end,
                     lat_all_ms, started, s_st, s_end, w)
    del comp_end
    # (after the time series, which reads the latencies in their order)
    summary["latency_ms"] = _stats_ms(lat_ms, True)
    summary["queue_wait_ms"] = wait_stats
    req = _requests_table(run, completed_mask) if keep_requests else None
    return summary, ts, req


def _price_pieces(recs: list[ReplicaRecord], price_per_thread_hour: float, D: float
                  ) -> list[tuple[float, float, float]]:
    """(from, to, USD per hour) pieces of every placed replica's life, clipped to the run."""
    out = []
    for r in recs:
        if math.isnan(r.placed_s):
            continue
        stop = r.stop_s if r.state == "stopped" and not math.isnan(r.stop_s) else D
        stop = min(stop, D)
        sizes = r.sizes or [(r.placed_s, r.threads)]
        for j, (t0, th) in enumerate(sizes):
            t1 = sizes[j + 1][0] if j + 1 < len(sizes) else stop
            a, b = max(t0, r.placed_s), min(t1, stop)
            if b > a:
                out.append((a, b, price_per_thread_hour * th))
    return out


def _timeseries(run: ServiceRun, ivs: dict[str, tuple[np.ndarray, np.ndarray]],
                pieces: list[tuple[float, float, float]], completed_mask: np.ndarray,
                dropped_mask: np.ndarray, n_dropped: int, comp_end: np.ndarray,
                lat_ms: np.ndarray, started: np.ndarray, s_st: np.ndarray, s_end: np.ndarray,
                w: np.ndarray | None) -> pd.DataFrame:
    """The 1 s time series; ``comp_end``/``lat_ms``: end times and latencies of the completed
    requests, ``s_st``/``s_end``/``w``: starts, ends (clipped to the run) and weights of the
    started ones (``w=None``: all 1)."""
    pl = run.plane
    D = float(run.duration_s)
    nb = int(math.ceil(D))
    starts = np.arange(nb, dtype=np.float64)
    ends = np.minimum(starts + 1.0, D)
    width = ends - starts
    edges = np.concatenate([starts, [D]])
    arr, st, end, drop = pl.arrival_s, pl.start_s, pl.end_s, pl.drop

    arrivals = _per_bin(arr, nb)
    nonneg = len(comp_end) == 0 or comp_end.min() >= 0
    fc = comp_end.astype(np.int64)  # (truncation, as a bin index)
    arr_le = np.searchsorted(arr, ends, side="right")
    # in flight: arrived and not yet finished (completed, or dropped)
    fin_le = _count_le(comp_end, nb, fc if nonneg else None)
    groups = np.minimum(fc, nb - 1, out=fc)
    thr = np.bincount(groups, minlength=nb)[:nb]
    # queue: from arrival to start (served) or drop time (dropped while waiting)
    if n_dropped:
        dropped = end[dropped_mask]
        drp = _per_bin(dropped, nb)
        fin_le += _count_le(dropped, nb)
        qf = drop == DROP_QUEUE_FULL
        q_le = _count_le(st[started & ~qf], nb)
        q_le += _count_le(end[~started & dropped_mask & ~qf], nb)
        q_le += _count_le(arr[qf], nb)
    else:
        drp = np.zeros(nb, dtype=np.int64)
        q_le = _count_le(s_st, nb)
    q = arr_le - q_le
    infl = arr_le - fin_le
    busy = busy_per_bin(s_st, s_end, w, nb)
    serve = _overlap_per_bin(ivs["serving"], edges)
    util = np.divide(busy, serve, out=np.full(nb, np.nan), where=serve > 0)
    # threads of the size new replicas get, at each bin end
    tl_t = np.asarray([t for t, _ in run.size_timeline])
    tl_v = np.asarray([v for _, v in run.size_timeline])
    threads = tl_v[np.maximum(np.searchsorted(tl_t, ends, side="right") - 1, 0)]
    # cost rate at each bin end
    cost_rate = np.zeros(nb)
    for a, b, p in pieces:
        lo = np.searchsorted(ends, a, side="left")
        hi = np.searchsorted(ends, b, side="left")
        if b >= D:
            hi = nb
        cost_rate[lo:hi] += p
    p95 = grouped_quantile(groups, lat_ms, 0.95, nb)
    return pd.DataFrame({
        "time_s": starts,
        "arrival_rate_rps": arrivals / width,
        "throughput_rps": thr / width,
        "dropped_rps": drp / width,
        "queue_length": q.astype(np.int64),
        "in_flight": infl.astype(np.int64),
        "replicas_pending": _count_at(ivs["pending"], ends),
        "replicas_starting": _count_at(ivs["starting"], ends),
        "replicas_ready": _count_at(ivs["ready"], ends),
        "replicas_draining": _count_at(ivs["draining"], ends),
        "threads": threads.astype(np.int64),
        "utilization": util,
        "cost_rate_usd_per_h": cost_rate,
        "latency_p95_ms": p95,
    })
