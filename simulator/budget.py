"""What a simulation will cost before it starts: an estimate of its memory and wall time.

A few bytes of YAML can ask for weeks of simulated time, a billion-request batch, a million
replicas or a decision every microsecond. :func:`estimate` adds up, from the scenario alone (no
arrival is drawn), what each of these costs, and :func:`check_budget` refuses a run whose peak
memory would exceed half of the memory available now, or whose wall time would exceed
:data:`MAX_WALL_S`, with one line naming the field that costs most and the estimate
(``--force`` goes on anyway).

The cost model (constants measured on the 2-core reference machine with the engine as it is;
they are deliberately on the high side, since the point is to refuse what cannot finish, not to
predict to the second):

- **requests**: ``E[N]`` per service (:func:`~simscale.simulator.workloads.expected_arrivals`)
  times :data:`BYTES_PER_REQUEST` while a replication runs (inputs, outputs and the figures'
  temporaries), or :data:`BYTES_PER_REQUEST_STREAMING` for a service that streams (2 million
  requests or more, requests not kept) plus its exact latencies (at most 4 million, 16 bytes
  each), plus :data:`REQUEST_TABLE_BYTES` per request and run when requests are kept;
  :data:`SECONDS_PER_REQUEST` of wall time per request and run;
- **simulated seconds**: the observations and time series keep 1-second bins:
  :data:`BYTES_PER_BIN` per service while a run is simulated, :data:`KEPT_BYTES_PER_BIN` per
  service and run for the time series kept, and :data:`SECONDS_PER_BIN` per bin and run;
- **decisions**: ``duration_s / sync_period_s`` per service and run, each
  :data:`SECONDS_PER_DECISION` plus the strategy's own ``decision_cost_s`` (the queueing
  strategies' solver) plus :data:`SECONDS_PER_REPLICA_DECISION` per replica that may exist
  (``replicas.max``);
- **replicas**: each live replica keeps its service-time factors for every batch size up to
  ``max_batch_size`` (:data:`BYTES_PER_BATCH_SLOT` each) and a record
  (:data:`BYTES_PER_REPLICA`); at most ``replicas.max`` live at once; draining or removing one
  scans the others, :data:`SECONDS_PER_REPLICA_PAIR` per pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from simscale.errors import UserError
from simscale.strategies.base import sync_period_of

__all__ = ["Budget", "Cost", "MAX_WALL_S", "check_budget", "decision_wall_s", "estimate"]

#: bytes per request of one service while a replication is simulated, keeping every request
BYTES_PER_REQUEST = 200
#: the same for a streaming service (:mod:`simscale.simulator.streaming`): its inputs only
#: (arrival and service draw, 16 bytes, plus the temporaries of making them; 25 measured on a
#: 21-day trace); the requests' results are folded into figures as the run goes
BYTES_PER_REQUEST_STREAMING = 28
#: bytes per latency kept for exact percentiles (latency and queue wait), up to
#: :data:`~simscale.simulator.sketch.EXACT_LIMIT` of them per run
BYTES_PER_EXACT_LATENCY = 16
#: bytes per request and run of a kept requests table
REQUEST_TABLE_BYTES = 60
#: bytes per 1-second bin of one service while a run is simulated (observation windows,
#: figures' temporaries)
BYTES_PER_BIN = 500
#: bytes per bin of one service and run in the kept time series (bins of
#: ``metrics.timeseries_bin_s``: wider than 1 s for runs longer than a day)
KEPT_BYTES_PER_BIN = 150
#: bytes per batch-size slot of a live replica (service-time factor lists)
BYTES_PER_BATCH_SLOT = 100
#: bytes per replica record
BYTES_PER_REPLICA = 2_000
#: wall seconds per request and run
SECONDS_PER_REQUEST = 1e-6
#: the same for a co-located run (its joint Python event loop: 75,000 to 175,000 requests per
#: second measured, 3 services on 4 nodes)
SECONDS_PER_REQUEST_COLOCATED = 1.3e-5
#: wall seconds per 1-second bin of one service and run
SECONDS_PER_BIN = 1e-5
#: wall seconds per decision, plus per replica that may exist
SECONDS_PER_DECISION = 2e-4
SECONDS_PER_REPLICA_DECISION = 5e-6
#: wall seconds per pair of replicas per run: draining or removing one replica scans the others
#: (a run that scales up to n replicas and back costs about n**2 of these)
SECONDS_PER_REPLICA_PAIR = 1e-7
#: longest estimated wall time run without --force, seconds
MAX_WALL_S = 1800.0
#: share of the memory available now a run may take without --force
MAX_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Cost:
    """One item of an estimate: what it is, the field it comes from, bytes and wall seconds."""

    field: str
    what: str
    bytes: float = 0.0
    wall_s: float = 0.0


@dataclass
class Budget:
    """An estimate: its items, and their totals (peak bytes, wall seconds, expected requests)."""

    items: list[Cost] = field(default_factory=list)
    requests: float = 0.0

    @property
    def bytes(self) -> float:
        return sum(c.bytes for c in self.items)

    @property
    def wall_s(self) -> float:
        return sum(c.wall_s for c in self.items)

    def summary(self) -> str:
        """``about 1.2 M requests, 0.3 GiB, 4 s`` (for ``scenarios check``)."""
        return (f"about {_count(self.requests)} requests, {_gib(self.bytes)} of memory, "
                f"{_duration(self.wall_s)} to simulate")


def estimate(scenario: Any, strategies: list[tuple[str, Any]], replications: int = 1, *,
             keep_requests: bool = False, workers: int = 1) -> Budget:
    """Estimate the peak memory and wall time of simulating ``strategies`` (``(label, built
    strategy object)`` pairs, one per strategy entry) on ``scenario`` for ``replications``
    seeds, ``workers`` runs at a time (each in its own process: memory of a run times the runs
    in flight, wall time divided by them)."""
    from simscale.simulator.accumulate import timeseries_bin_s
    from simscale.simulator.sketch import EXACT_LIMIT
    from simscale.simulator.streaming import streams
    from simscale.simulator.workloads import expected_arrivals

    # a co-located run (simulator/colocation.py) keeps every request and runs its Python loop
    colocated = bool(getattr(getattr(scenario, "cluster", None), "colocated", False))
    per_request_s = SECONDS_PER_REQUEST_COLOCATED if colocated else SECONDS_PER_REQUEST
    n_runs = max(1, len(strategies)) * replications
    par = max(1, min(int(workers), n_runs))
    duration = float(scenario.duration_s)
    bins = math.ceil(duration)
    b = Budget()
    src = scenario.source or f"scenario '{scenario.name}'"
    for k, svc in enumerate(scenario.services):
        try:
            n = float(expected_arrivals(svc.workload, duration, base_dir=scenario.base_dir))
        except UserError as err:
            raise UserError(err.format(), source=src, field=f"services.{k}.workload") from None
        b.requests += n
        if keep_requests or colocated or not streams(None, int(n)):
            per_run = BYTES_PER_REQUEST * n
        else:
            per_run = BYTES_PER_REQUEST_STREAMING * n + BYTES_PER_EXACT_LATENCY * min(
                n, EXACT_LIMIT)
        b.items.append(Cost(
            "duration_s", f"{_count(n)} requests of {svc.name} in {duration:g} s"
            + (" (co-located: every request kept, Python loop)" if colocated else ""),
            per_run * par + (REQUEST_TABLE_BYTES * n * n_runs if keep_requests else 0),
            n * per_request_s * n_runs / par))
        kept = math.ceil(duration / timeseries_bin_s(duration,
                                                     scenario.metrics.timeseries_bin_s))
        b.items.append(Cost(
            "duration_s", f"{_count(bins)} one-second bins of {svc.name} × {n_runs} runs",
            bins * BYTES_PER_BIN * par + kept * KEPT_BYTES_PER_BIN * n_runs,
            bins * SECONDS_PER_BIN * n_runs / par))
        slots = svc.batching.max_batch_size + 1
        b.items.append(Cost(
            f"services.{k}.batching.max_batch_size",
            f"batch sizes up to {svc.batching.max_batch_size:,} on up to "
            f"{svc.replicas.max:,} replicas of {svc.name}",
            svc.replicas.max * slots * BYTES_PER_BATCH_SLOT, 0.0))
        n_max = svc.replicas.max
        b.items.append(Cost(
            f"services.{k}.replicas.max", f"scaling through up to {n_max:,} replicas of "
            f"{svc.name}", n_max * BYTES_PER_REPLICA,
            n_runs / par * (svc.replicas.initial * 20 * SECONDS_PER_REPLICA_DECISION
                            + n_max**2 * SECONDS_PER_REPLICA_PAIR)))
        for label, strat in strategies:
            period = sync_period_of(strat)
            decisions = duration / period
            per_replica = svc.replicas.max * SECONDS_PER_REPLICA_DECISION
            if period < 1.0:
                at_fault = f"strategies.{label}.sync_period_s"
            elif per_replica > SECONDS_PER_DECISION:
                at_fault = f"services.{k}.replicas.max"
            else:
                at_fault = "duration_s"
            b.items.append(Cost(
                at_fault, f"{_count(decisions)} decisions of {label} on {svc.name} every "
                f"{period:g} s with up to {svc.replicas.max:,} replicas",
                0.0, replications * decisions * (decision_wall_s(strat) + per_replica) / par))
    return b


def decision_wall_s(strategy: Any) -> float:
    """Estimated wall seconds of one decision of ``strategy``: :data:`SECONDS_PER_DECISION`
    plus the strategy's own ``decision_cost_s`` (0 when it has none or it is not a
    non-negative number)."""
    extra = getattr(strategy, "decision_cost_s", 0.0)
    ok = isinstance(extra, int | float) and not isinstance(extra, bool) and 0 <= extra < math.inf
    return SECONDS_PER_DECISION + (float(extra) if ok else 0.0)


def check_budget(budget: Budget, *, source: str, force: bool = False,
                 available_bytes: float | None = None) -> None:
    """Raise :class:`UserError` naming the costliest field when ``budget`` needs more than half
    of the memory available now or more than :data:`MAX_WALL_S` of wall time, unless
    ``force``."""
    if force:
        return
    if available_bytes is None:
        available_bytes = _available_bytes()
    if available_bytes is not None and budget.bytes > MAX_MEMORY_SHARE * available_bytes:
        worst = max(budget.items, key=lambda c: c.bytes)
        raise UserError(
            f"simulating needs about {_gib(budget.bytes)} of memory ({worst.what}), more than "
            f"half of the {_gib(available_bytes)} available; reduce it, or pass --force",
            source=source, field=worst.field)
    if budget.wall_s > MAX_WALL_S:
        worst = max(budget.items, key=lambda c: c.wall_s)
        raise UserError(
            f"simulating would take about {_duration(budget.wall_s)} ({worst.what}), over the "
            f"limit of {_duration(MAX_WALL_S)}; reduce it, or pass --force",
            source=source, field=worst.field)


def _available_bytes() -> float | None:
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil: do not guess
        return None


def _gib(n: float) -> str:
    if n >= 2**40:
        return f"{n / 2**40:,.1f} TiB"
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def _count(n: float) -> str:
    for div, unit in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if n >= div:
            return f"{n / div:,.1f}{unit}"
    return f"{n:.0f}"


def _duration(s: float) -> str:
    if s >= 86_400:
        return f"{s / 86_400:,.1f} days"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s" if s >= 1 else "under 1 s"
