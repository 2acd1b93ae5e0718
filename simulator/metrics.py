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
from simscale.simulator.requestplane import (
    DROP_CRASH,
    DROP_NONE,
    DROP_QUEUE_FULL,
    DROP_REASONS,
    DROP_TIMEOUT,
)

__all__ = ["busy_cumulative", "busy_per_bin", "grouped_quantile", "run_figures"]

_TS_COLUMNS = [
    "arrival_rate_rps", "throughput_rps", "dropped_rps", "queue_length", "in_flight",
    "replicas_pending", "replicas_starting", "replicas_ready", "replicas_draining", "threads",
    "utilization", "cost_rate_usd_per_h", "latency_p95_ms",
]


def busy_cumulative(start: np.ndarray, end: np.ndarray, weight: np.ndarray,
                    edges: np.ndarray) -> np.ndarray:
    """``B(x) = sum_j weight_j * clip(x - start_j, 0, end_j - start_j)`` at each edge ``x``."""
    out = np.zeros(len(edges))
    for times, sign in ((start, 1.0), (end, -1.0)):
        order = np.argsort(times, kind="stable")
        ts = times[order]
        ws = weight[order]
        cw = np.concatenate(([0.0], np.cumsum(ws)))
        cwt = np.concatenate(([0.0], np.cumsum(ws * ts)))
        k = np.searchsorted(ts, edges, side="right")
        out += sign * (cw[k] * edges - cwt[k])
    return out


def busy_per_bin(start: np.ndarray, end: np.ndarray, weight: np.ndarray, n_bins: int
                 ) -> np.ndarray:
    """``sum_j weight_j * |[start_j, end_j) & [k, k+1)|`` for each 1 s bin ``k`` (O(n), no
    sort); intervals must lie within ``[0, n_bins]``."""
    fs = np.floor(start).astype(np.int64)
    fe = np.floor(end).astype(np.int64)
    out = np.zeros(n_bins + 1)
    same = fs == fe
    out += np.bincount(fs[same], weights=(end[same] - start[same]) * weight[same],
                       minlength=n_bins + 1)[: n_bins + 1]
    d = ~same
    if d.any():
        s, e, w, a, b = start[d], end[d], weight[d], fs[d], fe[d]
        out += np.bincount(a, weights=(a + 1 - s) * w, minlength=n_bins + 1)[: n_bins + 1]
        out += np.bincount(b, weights=(e - b) * w, minlength=n_bins + 1)[: n_bins + 1]
        full = np.bincount(a + 1, weights=w, minlength=n_bins + 2)[: n_bins + 2]
        full -= np.bincount(b, weights=w, minlength=n_bins + 2)[: n_bins + 2]
        out += np.cumsum(full)[: n_bins + 1]
    return out[:n_bins]


def _count_le(times: np.ndarray, n_bins: int) -> np.ndarray:
    """How many of ``times`` are <= each bin end ``k + 1`` (O(n), inf ignored)."""
    t = times[np.isfinite(times)]
    idx = np.maximum(np.ceil(t).astype(np.int64) - 1, 0)
    idx = idx[idx < n_bins]
    return np.cumsum(np.bincount(idx, minlength=n_bins)[:n_bins])


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
    key = groups.astype(np.float64)
    if span > 0:
        key += (values - vmin) * (0.5 / span)
    order = np.argsort(key)
    g = groups[order]
    v = values[order]
    counts = np.bincount(g, minlength=n_groups)[:n_groups]
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    pos = q * (counts[has] - 1)
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    base = offsets[has]
    hi = np.minimum(lo + 1, counts[has] - 1)
    out[has] = v[base + lo] + frac * (v[base + hi] - v[base + lo])
    return out


def _stats_ms(x_s: np.ndarray, with_max: bool) -> dict[str, float]:
    keys = ["mean", "p50", "p95", "p99"] + (["max"] if with_max else [])
    if len(x_s) == 0:
        return {k: math.nan for k in keys}
    ms = x_s * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    out = {"mean": float(ms.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99)}
    if with_max:
        out["max"] = float(ms.max())
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
    drop = pl.drop
    n = len(arr)
    dropped_mask = drop != DROP_NONE
    completed_mask = (~dropped_mask) & (end <= D)  # NaN compares False
    n_completed = int(np.count_nonzero(completed_mask))
    n_dropped = int(np.count_nonzero(dropped_mask))
    by_reason = np.bincount(drop, minlength=4)
    svc = run.service
    post = arr >= warmup_s
    cm = completed_mask & post
    lat = end[cm] - arr[cm]
    wait = st[cm] - arr[cm]
    finished = (completed_mask | dropped_mask) & post
    n_fin = int(np.count_nonzero(finished))
    slo_ok = int(np.count_nonzero(lat * 1000.0 <= svc.slo_ms))
    ivs = _intervals(run.replicas)
    ex_a, ex_b = ivs["exists"]
    replica_seconds = float(np.sum(np.minimum(ex_b, D) - np.minimum(ex_a, D)))
    # max replicas existing at once
    if len(ex_a):
        times = np.concatenate([ex_a, np.minimum(ex_b, D)])
        steps = np.concatenate([np.ones(len(ex_a)), -np.ones(len(ex_b))])
        order = np.lexsort((steps, times))  # stops before starts at equal times
        max_rep = int(np.max(np.cumsum(steps[order]))) if len(order) else 0
    else:
        max_rep = 0
    # cost: every placed replica's pieces of life at its size's price
    pieces = _price_pieces(run.replicas, run.price_per_thread_hour, D)
    cost = float(sum((b - a) * p for a, b, p in pieces) / 3600.0)
    started = ~np.isnan(st)
    s_st = st[started]
    s_end = np.minimum(end[started], D)
    w = 1.0 / np.maximum(pl.batch_size[started], 1)
    busy_total = float(np.sum(np.clip(s_end - s_st, 0.0, None) * w))
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
        "latency_ms": _stats_ms(lat, True),
        "queue_wait_ms": _stats_ms(wait, False),
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
    ts = _timeseries(run, ivs, pieces, completed_mask, dropped_mask)
    req = None
    if keep_requests:
        end_out = np.where(completed_mask, end, np.nan)
        req = pd.DataFrame({
            "arrival_s": arr,
            "start_s": st,
            "end_s": end_out,
            "batch_size": pl.batch_size,
            "replica": pl.replica,
            "drop_reason": pd.Categorical.from_codes(drop.astype(np.int8),
                                                     categories=list(DROP_REASONS)),
        })
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
                dropped_mask: np.ndarray) -> pd.DataFrame:
    pl = run.plane
    D = float(run.duration_s)
    nb = int(math.ceil(D))
    starts = np.arange(nb, dtype=np.float64)
    ends = np.minimum(starts + 1.0, D)
    width = ends - starts
    edges = np.concatenate([starts, [D]])
    arr, st, end, drop = pl.arrival_s, pl.start_s, pl.end_s, pl.drop

    def per_bin(times: np.ndarray) -> np.ndarray:
        return np.bincount(np.minimum(times.astype(np.int64), nb - 1), minlength=nb)[:nb]

    arrivals = per_bin(arr)
    comp_end = end[completed_mask]
    thr = per_bin(comp_end)
    drp = per_bin(end[dropped_mask])
    # queue: from arrival to start (served) or drop time (dropped while waiting)
    leave = np.where(~np.isnan(st), st, np.where(dropped_mask, end, np.inf))
    leave = np.where(drop == DROP_QUEUE_FULL, arr, leave)
    finish = np.where(completed_mask | dropped_mask, end, np.inf)
    arr_le = np.searchsorted(arr, ends, side="right")
    q = arr_le - _count_le(leave, nb)
    infl = arr_le - _count_le(finish, nb)
    started = ~np.isnan(st)
    w = 1.0 / np.maximum(pl.batch_size[started], 1)
    busy = busy_per_bin(st[started], np.minimum(end[started], D), w, nb)
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
    lat_ms = (comp_end - arr[completed_mask]) * 1000.0
    p95 = grouped_quantile(np.minimum(comp_end.astype(np.int64), nb - 1), lat_ms, 0.95, nb)
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
