"""What a real run is given and what it measured, and that run in the simulator's format.

- :class:`RealServiceSpec`: one service as the real cluster serves it (the scenario's service,
  its arrivals and its strategy object);
- :class:`RealServiceRecord`, :class:`RealRunResult`: what the real run measured, request by
  request (the simulator's request-plane arrays and drop codes, :data:`DROP_REASONS`), replica
  by replica and batch by batch;
- :func:`summarize_real`: the real run as the simulator's results (RESULTS.md), its figures
  computed by the simulator's own :func:`~simscale.simulator.metrics.run_figures`, so real and
  simulated figures have one definition; :func:`save_real` writes it as a result folder.
- :class:`Rollout`, :func:`rollout_notes`: a rolling update (resize) of a service's replicas
  on the real cluster (:mod:`simscale.validation.router`), and how it compares with the
  simulator's in-place resize.

Times are seconds from the start of the run (``t = 0`` when the load generator starts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from simscale.io import write_json_atomic, write_with_atomic
from simscale.simulator.accumulate import timeseries_bin_s
from simscale.simulator.scenario import Scenario, Service, StrategySpec
from simscale.strategies.base import ServiceContext, SizeOption

__all__ = [
    "DROP_REASONS",
    "RealRunResult",
    "RealServiceRecord",
    "RealServiceSpec",
    "Rollout",
    "cold_starts",
    "real_service_run",
    "rollout_notes",
    "save_real",
    "summarize_real",
]


#: drop reasons by code (the simulator's request-plane codes)
DROP_REASONS: tuple[str, ...] = ("", "queue_full", "timeout", "crash")


@dataclass
class Rollout:
    """One rolling update (resize) of a service. Times in seconds from the start of the run.

    ``sim_delay_s``: the decision's ``resize_delay_s`` (what the simulator waits before it
    resizes in place; the real cluster does not wait it). ``replaced``: old replicas drained
    for a ready surge; ``last_drain_s``: when the last of them was; ``done_s``: when no replica
    of another size counted any more; ``ended``: ``""`` while running, then ``done``,
    ``superseded`` (another resize came first), ``failed`` (a surge replica crashed) or
    ``unfinished`` (the run ended first).
    """

    decided_s: float
    from_threads: int
    to_threads: int
    from_device: str
    to_device: str
    sim_delay_s: float
    replaced: int = 0
    last_drain_s: float | None = None
    done_s: float | None = None
    ended: str = ""


def rollout_notes(rollouts: list[Rollout], replicas: list[dict[str, Any]] | None = None,
                  duration_s: float = math.nan) -> list[str]:
    """One line per rolling update of a service: what the real cluster did, and how that
    differs from the simulator's in-place resize (every replica switches size
    ``resize_delay_s`` after the decision, with no replica added), quantitatively: how long
    after its decision the real rollout was done, against that delay, and (given the replica
    records, :attr:`RealServiceRecord.replicas`, and the run's ``duration_s``) how many
    replica-seconds each replacement existed beside the replica it replaced (spawn to the old
    one's exit), which the simulation has not: its share of the mean replica count."""
    out = []
    by = {int(r["replica"]): r for r in replicas or []}
    for j, ro in enumerate(rollouts):
        until = rollouts[j + 1].decided_s if j + 1 < len(rollouts) else math.inf
        extra_s = sum(min(float(by[r["replaces"]]["stop_s"]), duration_s) - float(r["spawn_s"])
                      for r in by.values() if int(r.get("replaces", -1)) in by
                      and ro.decided_s <= float(r["spawn_s"]) < until)
        head = (f"t={ro.decided_s:.1f} s: resize {ro.from_threads} -> {ro.to_threads} "
                "thread(s) by a rolling restart (maxSurge 1, maxUnavailable 0)")
        sim = (f"the simulator resizes every replica in place {ro.sim_delay_s:g} s after its "
               "decision, with no replacement replica")
        if extra_s > 0 and math.isfinite(extra_s) and duration_s > 0:
            sim += (f" (the replacements overlapped the replicas they replaced for "
                    f"{extra_s:.1f} replica-s: +{extra_s / duration_s:.2f} mean replicas)")
        if ro.ended == "done" and ro.done_s is not None:
            took = ro.done_s - ro.decided_s
            out.append(f"{head}: {ro.replaced} replica(s) replaced, done {took:.1f} s after "
                       f"the decision ({took - ro.sim_delay_s:+.1f} s against the simulation's "
                       f"in-place delay); {sim}")
        else:
            why = {"superseded": "superseded by the next resize",
                   "failed": "stopped: a surge replica crashed",
                   "unfinished": "not finished when the run ended"}.get(ro.ended, ro.ended)
            out.append(f"{head}: {ro.replaced} replica(s) replaced, {why}; {sim}")
    return out


@dataclass(frozen=True)
class RealServiceSpec:
    """What the real cluster needs to serve one service.

    ``arrivals_s`` are the scheduled arrival timestamps (seconds from the start, sorted);
    ``strategy`` is an object with ``decide(obs) -> Decision`` (already ``setup`` with
    ``context``); ``size`` is the profile's size option of the service's replicas (what the
    observation reports as ``current_size``).
    """

    name: str
    model: str
    device: str
    threads: int
    slo_ms: float
    max_batch_size: int
    max_wait_ms: float
    queue_capacity: int | None
    queue_timeout_ms: float | None
    routing: str
    initial_replicas: int
    min_replicas: int
    max_replicas: int
    cost_per_replica_hour: float
    arrivals_s: np.ndarray
    strategy: Any
    context: ServiceContext | None
    size: SizeOption
    size_options: tuple[SizeOption, ...] = ()
    weights_path: str | None = None


@dataclass
class RealServiceRecord:
    """What the real run measured for one service.

    Request arrays follow the simulator's request plane (index = position in the arrivals):
    ``arrival_s`` scheduled arrival; ``start_s`` when its batch was sent to a replica (NaN if
    never; kept for a batch lost in a crash); ``end_s`` when the answer was read, or the drop
    time for a dropped request (NaN while queued or in service at the end; may exceed the
    duration for a batch that finished after it); ``drop`` the code of
    :data:`DROP_REASONS`; ``enqueue_s`` when the load generator actually handed it to the
    router (NaN if never). ``replicas``: one dict per replica process (times in s from the
    start; ``cold_start_s`` = spawn to ready; ``threads`` and ``device``: its size, fixed for
    its life; ``replaces``: the replica it replaced in a rolling update, -1 if none).
    ``size_timeline``: ``(time_s, threads)`` of the size new replicas get, from ``t = 0`` (a
    resize decision adds one); ``rollouts``: the rolling updates. ``overhead``: measured IPC
    overhead per batch
    (ms) and the replicas' own mean service time. ``batches``: one row per served batch
    (``start_s, end_s, batch_size, service_ms, replica``; ``service_ms`` is the time the
    replica measured around ``predict``, the rest of ``end_s - start_s`` is overhead: pipe,
    JSON, input building, scheduling).
    """

    name: str
    threads: int
    arrival_s: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    drop: np.ndarray
    batch_size: np.ndarray
    replica: np.ndarray
    enqueue_s: np.ndarray
    replicas: list[dict[str, Any]]
    events: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    batches: pd.DataFrame
    overhead: dict[str, float]
    notes: list[str] = field(default_factory=list)
    size_timeline: list[tuple[float, int]] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)

    def requests(self) -> pd.DataFrame:
        """RESULTS.md ``requests.parquet`` columns (without the run's identifying columns),
        plus ``enqueue_s``; ``end_s`` is NaN unless completed."""
        done = (self.drop == 0) & np.isfinite(self.end_s)
        return pd.DataFrame({
            "service": self.name, "arrival_s": self.arrival_s, "start_s": self.start_s,
            "end_s": np.where(done, self.end_s, np.nan), "batch_size": self.batch_size,
            "replica": self.replica,
            "drop_reason": pd.Categorical.from_codes(self.drop.astype(np.int8),
                                                     categories=list(DROP_REASONS)),
            "enqueue_s": self.enqueue_s,
        })


@dataclass
class RealRunResult:
    """A real run: per service records, the warm-up measurements (IPC overhead of batches of
    one before ``t = 0``), the load generator's lateness (ms behind schedule), the wall time,
    the load average at the end (1, 5, 15 min) and any replica crashes."""

    duration_s: float
    services: dict[str, RealServiceRecord]
    warmup: dict[str, dict[str, float]]
    generator_lag: dict[str, float]
    wall_s: float
    load_avg: tuple[float, float, float]
    crashes: list[str]
    #: mean cores busy during the run: all, ours, others, steal (see
    #: :func:`simscale.validation.cluster._cpu_usage`)
    cpu_usage: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> pd.DataFrame:
        """All services' requests (see :meth:`RealServiceRecord.requests`)."""
        frames = [s.requests() for s in self.services.values()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def replicas(self) -> pd.DataFrame:
        """One row per replica process of every service."""
        rows = [{"service": s.name, **r} for s in self.services.values() for r in s.replicas]
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------- real summary
def real_service_run(svc: Service, rec: RealServiceRecord, duration_s: float) -> Any:
    """The real run of one service as the engine's ``ServiceRun``, so that the simulator's own
    :func:`~simscale.simulator.metrics.run_figures` computes its figures (same definitions).
    Each replica is billed at its own threads (``cost_per_replica_hour * threads /
    service.threads``, the simulator's rule) for every second it exists."""
    from simscale.simulator.engine import ReplicaRecord, ServiceRun

    records = []
    for r in rec.replicas:
        placed = max(0.0, float(r["spawn_s"]))
        stop = float(r["stop_s"])
        threads = int(r.get("threads", rec.threads))
        rr = ReplicaRecord(rid=int(r["replica"]), requested_s=placed, threads=threads,
                           cores=float(threads), placed_s=placed,
                           ready_s=float(r["ready_s"]), drain_s=float(r["drain_s"]),
                           stop_s=stop, state="stopped" if stop == stop else str(r["state"]),
                           crashed=bool(r["crashed"]))
        rr.sizes = [(placed, threads)]
        records.append(rr)
    plane = SimpleNamespace(arrival_s=rec.arrival_s, start_s=rec.start_s, end_s=rec.end_s,
                            drop=rec.drop, batch_size=np.maximum(rec.batch_size, 0),
                            replica=rec.replica)
    info_sum: dict[str, list[float]] = {}
    for d in rec.decisions:
        for k, v in (d.get("info") or {}).items():
            try:
                fv = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(fv):
                info_sum.setdefault(k, []).append(fv)
    info = {k: float(np.mean(v)) for k, v in info_sum.items()}
    return ServiceRun(svc, plane, records, rec.events, info,
                      list(rec.size_timeline) or [(0.0, rec.threads)], duration_s,
                      svc.cost_per_replica_hour / svc.threads)


def summarize_real(scenario: Scenario, spec: StrategySpec, real: RealRunResult
                   ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """``(summary, timeseries, requests)`` of the real run in the simulator's result format
    (RESULTS.md), figures computed by the simulator's own ``run_figures``."""
    from simscale.simulator.metrics import run_figures

    runs = []
    ts_frames = []
    req_frames = []
    ids = {"strategy": spec.name, "label": spec.display_label}
    for svc in scenario.services:
        rec = real.services[svc.name]
        figs, ts, req = run_figures(real_service_run(svc, rec, real.duration_s),
                                    scenario.warmup_s, keep_requests=True,
                                    bin_s=timeseries_bin_s(real.duration_s,
                                                           scenario.metrics.timeseries_bin_s))
        runs.append({**ids, "service": svc.name, "replication": 0, "seed": scenario.seed,
                     **figs, "wall_s": real.wall_s})
        for frame, out in ((ts, ts_frames), (req, req_frames)):
            if frame is None:
                continue
            frame = frame.copy()
            for j, (k, v) in enumerate([*ids.items(), ("service", svc.name),
                                        ("replication", 0)]):
                frame.insert(j, k, v)
            out.append(frame)
        if req_frames:
            req_frames[-1]["enqueue_s"] = rec.enqueue_s
    from simscale.simulator.runner import services_summary

    summary = {
        "scenario": scenario.name, "description": scenario.description, "seed": scenario.seed,
        "duration_s": scenario.duration_s, "warmup_s": scenario.warmup_s,
        "simscale_version": _version(), "replications": 1, "wall_s": real.wall_s,
        "profile": {"source": "real run on this machine", "machine": {}, "created_at": ""},
        "services": services_summary(scenario),
        "runs": runs,
        "aggregate": [],
    }
    ts_all = pd.concat(ts_frames, ignore_index=True) if ts_frames else pd.DataFrame()
    req_all = pd.concat(req_frames, ignore_index=True) if req_frames else pd.DataFrame()
    return summary, ts_all, req_all


def _version() -> str:
    """The installed simscale version (``"unknown"`` if it cannot be read)."""
    try:
        from simscale import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def cold_starts(real: RealRunResult) -> dict[str, dict[str, list[float]]]:
    """Measured cold starts (s, spawn to ready): of the replicas started during the run, and
    of the initial replicas (before ``t = 0``; the simulation has them warm)."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, rec in real.services.items():
        out[name] = {
            "during_run": [float(r["cold_start_s"]) for r in rec.replicas
                           if r["cold_start_s"] == r["cold_start_s"]],
            "initial": [float(r["initial_cold_start_s"]) for r in rec.replicas
                        if r["initial_cold_start_s"] == r["initial_cold_start_s"]],
        }
    return out


def save_real(folder: Path, real: RealRunResult, result: Any) -> None:
    """The real run as a result folder (``summary.json``, ``timeseries.parquet``,
    ``requests.parquet``) plus ``replicas.csv`` and ``decisions.json``."""
    result.save(folder, save_requests=True)
    reps = real.replicas
    write_with_atomic(folder / "replicas.csv", lambda p: reps.to_csv(p, index=False))
    write_json_atomic(folder / "decisions.json",
                      {k: v.decisions for k, v in real.services.items()})
