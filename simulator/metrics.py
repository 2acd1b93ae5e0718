"""Figures of one run (one strategy on one service).

Definitions follow ``simulator/RESULTS.md``; times in seconds, latencies in milliseconds. The
requests are folded in a chunk at a time (:mod:`simscale.simulator.accumulate`), so the
computation's temporaries do not grow with the run. Percentiles are numpy's default (linear
interpolation) over all requests up to :data:`~simscale.simulator.sketch.EXACT_LIMIT` latencies,
and from a log-bucketed sketch within a relative 0.5% above (``percentile_rel_error`` says
which). Choices RESULTS.md leaves open:

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

from simscale.simulator.accumulate import CHUNK_REQUESTS, RequestFigures, fold
from simscale.simulator.engine import ReplicaRecord, ServiceRun
from simscale.simulator.requestplane import (
    DROP_CRASH,
    DROP_QUEUE_FULL,
    DROP_TIMEOUT,
)
from simscale.simulator.requesttable import request_frame
from simscale.simulator.schema import TIMESERIES_COLUMN_NAMES

__all__ = ["CHUNK_REQUESTS", "busy_cumulative", "grouped_quantile", "request_figures",
           "run_figures"]

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


def grouped_quantile(groups: np.ndarray, values: np.ndarray, q: float, n_groups: int, *,
                     compiled: bool = False) -> np.ndarray:
    """The ``q`` quantile (numpy's linear method) of ``values`` within each integer group
    ``0..n_groups-1`` (``groups``: int64); NaN for empty groups. Exact: each group's two order
    statistics around ``q * (count - 1)``, interpolated as ``np.quantile`` does. With
    ``compiled``, :func:`simscale.simulator._kernels_accumulate.grouped_quantile` selects them
    without sorting (the same numbers)."""
    if compiled:
        from simscale.simulator._kernels_accumulate import grouped_quantile as kernel

        return kernel(np.ascontiguousarray(groups, dtype=np.int64),
                      np.ascontiguousarray(values, dtype=np.float64), float(q), int(n_groups))
    out = np.full(n_groups, np.nan)
    if len(values) == 0:
        return out
    order = np.lexsort((values, groups))  # by group, then value
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


def _max_existing(ex_a: np.ndarray, ex_b: np.ndarray, D: float) -> int:
    """Most replicas existing at once, from their ``[ex_a, ex_b)`` intervals clipped to ``D``."""
    if len(ex_a):
        times = np.concatenate([ex_a, np.minimum(ex_b, D)])
        steps = np.concatenate([np.ones(len(ex_a)), -np.ones(len(ex_b))])
        order = np.lexsort((steps, times))  # stops before starts at equal times
        return int(np.max(np.cumsum(steps[order]))) if len(order) else 0
    return 0


def _requests_table(run: ServiceRun) -> pd.DataFrame:
    """One row per request (:func:`~simscale.simulator.requesttable.request_frame`)."""
    if run.figures is not None:
        raise ValueError("a streaming run keeps no requests table (its RequestWriter wrote it)")
    return request_frame(run.plane, 0, len(run.plane.arrival_s), run.duration_s)


def request_figures(run: ServiceRun, warmup_s: float, chunk: int = CHUNK_REQUESTS,
                    bin_s: int = 1, compiled: bool | None = None) -> RequestFigures:
    """The figures of the run's requests (time series in bins of ``bin_s``): those the engine
    folded in as it ran (a streaming run), or the plane's arrays folded in now, ``chunk`` at a
    time, with the compiled fold when ``compiled`` (``None``: when the plane ran compiled)."""
    if run.figures is not None:
        return run.figures
    pl = run.plane
    acc = RequestFigures(run.duration_s, warmup_s, run.service.slo_ms, bin_s=bin_s,
                         compiled=compiled if compiled is not None
                         else getattr(pl, "kernels", "python") == "compiled")
    fold(acc, pl, len(pl.arrival_s), chunk)
    acc.close()
    return acc


def run_figures(run: ServiceRun, warmup_s: float, *, keep_requests: bool = False,
                chunk: int = CHUNK_REQUESTS, bin_s: int = 1
                ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame | None]:
    """Summary figures, the 1 s time series and (optionally) the requests table of one run.

    The requests' figures come from :func:`request_figures`; the replica figures
    come from the replica records. Returns ``(summary, timeseries, requests)``; the
    identifying columns (strategy, label, service, replication) are added by the caller."""
    D = float(run.duration_s)
    svc = run.service
    acc = request_figures(run, warmup_s, chunk, bin_s)
    rq = acc.summary()
    by_reason = rq["by_reason"]
    ivs = _intervals(run.replicas)
    ex_a, ex_b = ivs["exists"]
    replica_seconds = float(np.sum(np.minimum(ex_b, D) - np.minimum(ex_a, D)))
    max_rep = _max_existing(ex_a, ex_b, D)
    # cost: every placed replica's pieces of life at its size's price
    pieces = _price_pieces(run.replicas, run.price_per_thread_hour, D)
    cost = float(sum((b - a) * p for a, b, p in pieces) / 3600.0)
    sv_a, sv_b = ivs["serving"]
    serve_total = float(np.sum(np.clip(np.minimum(sv_b, D) - sv_a, 0.0, None)))
    events = run.events
    summary = {
        "arrivals": rq["arrivals"],
        "completed": rq["completed"],
        "dropped": rq["dropped"],
        "in_flight_at_end": rq["in_flight_at_end"],
        "dropped_by_reason": {"queue_full": int(by_reason[DROP_QUEUE_FULL]),
                              "timeout": int(by_reason[DROP_TIMEOUT]),
                              "crash": int(by_reason[DROP_CRASH])},
        "latency_ms": rq["latency_ms"],
        "queue_wait_ms": rq["queue_wait_ms"],
        "percentile_rel_error": rq["percentile_rel_error"],
        "slo_ms": float(svc.slo_ms),
        "slo_attainment": rq["slo_attainment"],
        "replica_seconds": replica_seconds,
        "mean_replicas": replica_seconds / D,
        "max_replicas": max_rep,
        "scale_events": sum(e["action"] in ("scale_up", "scale_down", "resize") for e in events),
        "cost_usd": cost,
        "utilization": rq["busy_total"] / serve_total if serve_total > 0 else math.nan,
        "events": list(events),
        "info": dict(run.info),
    }
    ts = _timeseries(run, ivs, pieces, acc.timeseries(), acc.bin_s)
    req = _requests_table(run) if keep_requests else None
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
                pieces: list[tuple[float, float, float]], cols: dict[str, np.ndarray],
                bin_s: int) -> pd.DataFrame:
    """The time series in bins of ``bin_s`` seconds: the request columns ``cols``
    (:meth:`RequestFigures.timeseries`) with the replicas, threads, utilization and cost rate
    of each bin."""
    D = float(run.duration_s)
    nb = int(math.ceil(D / bin_s))
    starts = np.arange(nb, dtype=np.float64) * bin_s
    ends = np.minimum(starts + bin_s, D)
    width = ends - starts
    edges = np.concatenate([starts, [D]])
    busy = cols["busy_s"]
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
    frame = pd.DataFrame({
        "time_s": starts,
        "arrival_rate_rps": cols["arrivals"] / width,
        "throughput_rps": cols["completions"] / width,
        "dropped_rps": cols["dropped"] / width,
        "queue_length": cols["queue_length"].astype(np.int64),
        "in_flight": cols["in_flight"].astype(np.int64),
        "replicas_pending": _count_at(ivs["pending"], ends),
        "replicas_starting": _count_at(ivs["starting"], ends),
        "replicas_ready": _count_at(ivs["ready"], ends),
        "replicas_draining": _count_at(ivs["draining"], ends),
        "threads": threads.astype(np.int64),
        "utilization": util,
        "cost_rate_usd_per_h": cost_rate,
        "latency_p95_ms": cols["latency_p95_ms"],
    })
    assert tuple(frame.columns) == TIMESERIES_COLUMN_NAMES  # (simulator/schema.py)
    return frame
