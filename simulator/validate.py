"""``simscale validate``: run a scenario on real replicas here and compare it with the simulation.

The steps, all on this machine:

1. **Profile**: a quick profile of only the models (and thread counts) the scenario uses
   (:func:`simscale.profiler.run_profile`), so the simulation uses service times measured just
   before the real run, serving overhead included (skipped when a profile file is given).
2. **Real run** (:mod:`simscale.simulator.realcluster`): real replica processes, real cold
   starts, the scenario's arrivals (the *same timestamps* the simulation uses for this seed)
   replayed in real time, and the *same strategy class* deciding from measured metrics.
3. **Simulation** of the same scenario, seed and strategy with that profile
   (:func:`simscale.simulator.runner.run_scenario`) *calibrated* to the machine's speed at the
   start of the run, saved to ``OUTDIR/simulated``: the real cluster's warm-up (seconds before
   ``t = 0``) times isolated batches of one item on the real replicas (~50 ms apart, as the
   profiler's serving measurement does), and a factor on the profile's tight-loop fit makes the
   simulated predict time there equal theirs (:func:`calibrate`; the serving overhead is
   kept). A shared machine's speed drifts by several
   per cent within a minute, and queueing multiplies a service-time error several times in the
   tail; the calibration uses nothing measured after ``t = 0``. The simulation with the profile
   as measured is kept too (``OUTDIR/simulated_uncalibrated``, ``uncalibrated`` in
   ``fidelity.json``).
4. **Fidelity**: per service, real vs simulated p50/p95/p99 latency, SLO attainment, completed,
   dropped, mean replicas and scale events, with relative errors, printed and written to
   ``OUTDIR/fidelity.json``; the real run's ``summary.json``, ``requests.parquet``,
   ``timeseries.parquet`` (the simulator's own figure code computes them), ``replicas.csv``
   and ``decisions.json`` to ``OUTDIR/real``; overlay figures to ``OUTDIR/report.html``.
   A ``diagnosis`` per service says where the difference comes from (service times the
   replicas showed vs the profile, per-batch overhead in the run vs the profile's and vs the
   warm-up's, co-location slowdown, queueing) and an
   *a posteriori* simulation fed the run's own service-time ratio and overhead separates the
   error of the inputs from the error of the queueing/scaling model. The CPU time other
   processes used during the run is measured; above a quarter of the cores the run is flagged
   ``"representative": false``.

``fidelity.json``: ``{"services": {NAME: {"real": {...}, "simulated": {...}, "error": {...},
"abs_error": {...}, "within_target": {...}, "uncalibrated": {"simulated": {...}, "error": {...}},
"diagnosis": {...}}}, "calibration": {NAME: {...}}, "load_average": [1, 5, 15 min],
"cpu_cores_busy": {...}, "representative": bool, "overhead": {...}, "warmup": {...},
"cold_start_s": {...}, "notes": [...], ...}`` with the figures named as in ``summary.json``
(dotted: ``latency_ms.p50``). Relative error is ``(simulated - real) / |real|`` (NaN when
``real`` is 0 or missing); ``abs_error`` is ``simulated - real``. Targets: p50 and p95 within
10 % (relative), mean replicas within 0.25 (absolute).

Run directly with ``python -m simscale.simulator.validate SCENARIO [--strategy NAME]
[--duration-s N] [-o OUTDIR] [--profile PATH]``.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from simscale.errors import UserError
from simscale.io import write_json_atomic, write_with_atomic
from simscale.simulator.realcluster import (
    RealCluster,
    RealRunResult,
    RealServiceRecord,
    RealServiceSpec,
)
from simscale.simulator.scenario import Scenario, Service, StrategySpec, load_scenario
from simscale.simulator.serving import select_strategies, service_context
from simscale.strategies import BUILTINS
from simscale.strategies.base import StrategyFailed, call_strategy

__all__ = [
    "FIGURES",
    "TARGETS",
    "fidelity",
    "overlay_figures",
    "summarize_real",
    "validate",
    "validate_command",
]

#: Figures compared (dotted names of a ``summary.json`` run).
FIGURES: tuple[str, ...] = (
    "latency_ms.p50", "latency_ms.p95", "latency_ms.p99", "slo_attainment", "completed",
    "dropped", "mean_replicas", "scale_events",
)
#: Short names of :data:`FIGURES` for tables.
SHORT: dict[str, str] = {
    "latency_ms.p50": "p50 ms", "latency_ms.p95": "p95 ms", "latency_ms.p99": "p99 ms",
    "slo_attainment": "SLO", "completed": "completed", "dropped": "dropped",
    "mean_replicas": "replicas", "scale_events": "events",
}
#: Fidelity targets: |relative error| for latencies, absolute difference for mean replicas.
TARGETS: dict[str, tuple[str, float]] = {
    "latency_ms.p50": ("rel", 0.10),
    "latency_ms.p95": ("rel", 0.10),
    "mean_replicas": ("abs", 0.25),
}


# --------------------------------------------------------------------------- entry points
def validate_command(scenario_path: str | Path, strategy: str | None = None,
                     duration_s: float | None = None, outdir: Path | str = Path("validate"),
                     *, profile: str | Path | None = None) -> dict[str, Any]:
    """The CLI command: validate, print the fidelity table (rich) and return ``fidelity.json``'s
    content. Bad input raises :class:`UserError`; a replica crash raises
    :class:`~simscale.simulator.realcluster.ReplicaCrashError` (a ``UserError``)."""
    from rich.console import Console

    console = Console(highlight=False)
    scenario = load_scenario(scenario_path)

    def progress(msg: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')} {msg}[/dim]")

    result = validate(scenario, strategy=strategy, duration_s=duration_s, outdir=Path(outdir),
                      profile=profile, progress=progress)
    print_fidelity(result, console)
    console.print(f"[dim]results: {outdir}/fidelity.json, real/, simulated/, report.html; "
                  f"wall {result['wall_s']:.1f} s[/dim]")
    return result


def validate(
    scenario: Scenario,
    *,
    strategy: str | None = None,
    duration_s: float | None = None,
    outdir: Path,
    profile: Any = None,
    on_crash: str = "abort",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Validate ``scenario`` (see the module docstring) and return the fidelity document.

    ``strategy`` is a strategy name or label of the scenario (default: its first); it may also
    be a built-in name not in the scenario (default parameters). ``duration_s`` cuts the
    scenario. ``profile``: ``None`` measures a quick profile now; a path or a
    :class:`~simscale.profiler.schema.Profile` is used as is. ``on_crash``: see
    :class:`~simscale.simulator.realcluster.RealCluster`.
    """
    wall0 = time.perf_counter()
    say = progress or (lambda msg: None)
    outdir = Path(outdir)
    original = scenario
    scenario, spec = prepare_scenario(scenario, strategy, duration_s)
    for note in _notes(original, None):
        say(f"note: {note}")
    outdir.mkdir(parents=True, exist_ok=True)

    # 1. profile
    t = time.perf_counter()
    prof, profile_source = _get_profile(scenario, profile, outdir, say)
    profile_s = time.perf_counter() - t

    # 2. the real run
    load_before = list(os.getloadavg())
    cores = os.cpu_count() or 1
    if load_before[0] > 0.5 * cores:
        say(f"warning: this machine is busy (load average {load_before[0]:.1f} on {cores} "
            "cores): other processes will compete with the replicas and the real latencies "
            "will show it; the simulation does not model them")
    with tempfile.TemporaryDirectory(prefix="simscale-validate-") as art_dir:
        artifacts = model_artifacts(scenario, prof, Path(art_dir))
        say(f"real run: {scenario.duration_s:g} s of '{scenario.name}' with "
            f"{spec.display_label}")
        specs = [_real_spec(scenario, i, svc, spec, prof, artifacts.get(svc.model))
                 for i, svc in enumerate(scenario.services)]
        cluster = RealCluster(specs, scenario.duration_s, metric_lag_s=scenario.metrics.lag_s,
                              history_s=scenario.metrics.history_s, seed=scenario.seed,
                              on_crash=on_crash, progress=say)
        real = cluster.run()
    from simscale.simulator.results import SimulationResult

    real_summary, real_ts, real_req = summarize_real(scenario, spec, real)
    real_result = SimulationResult(real_summary, real_ts, real_req)
    _save_real(outdir / "real", real, real_result)

    # 3. the simulation
    say("simulating the same scenario with the measured profile")
    calibration = calibrate(prof, scenario, real.warmup)
    calibrated = profile_adjusted(prof, scenario, None,
                                  {n: c["factor"] for n, c in calibration.items()})
    sim = _simulate(scenario, spec, calibrated)
    sim.save(outdir / "simulated", save_requests=True)
    sim_raw = _simulate(scenario, spec, prof)
    sim_raw.save(outdir / "simulated_uncalibrated", save_requests=False)

    # 4. compare
    doc = fidelity(real_summary, sim.summary, label=spec.display_label)
    doc_raw = fidelity(real_summary, sim_raw.summary, label=spec.display_label)
    for name, svc_doc in doc["services"].items():
        raw = doc_raw["services"][name]
        svc_doc["uncalibrated"] = {"simulated": raw["simulated"], "error": raw["error"],
                                   "within_target": raw["within_target"]}
        svc_doc["diagnosis"] = diagnose(scenario, name, calibrated, real, real_summary, sim)
    # a posteriori (a diagnosis, not a prediction): the simulator fed the predict times and
    # per-batch overheads the replicas showed during the run; what is left of the error is
    # the queueing, batching, routing and scaling model's
    scale = {n: d["diagnosis"].get("service_time_ratio", 1.0) for n, d in doc["services"].items()}
    extra = {n: d["diagnosis"].get("overhead_ms_per_batch_mean", 0.0)
             for n, d in doc["services"].items()}
    sim_ap = _simulate(scenario, spec, profile_adjusted(calibrated, scenario, extra, scale))
    doc_ap = fidelity(real_summary, sim_ap.summary, label=spec.display_label)
    for name, svc_doc in doc["services"].items():
        svc_doc["diagnosis"]["a_posteriori"] = {
            "what": "simulation with the run's own predict-time ratio and per-batch overhead",
            "service_time_scale": scale[name], "overhead_ms_per_batch": extra[name],
            "simulated": doc_ap["services"][name]["simulated"],
            "error": doc_ap["services"][name]["error"],
        }
    doc.update({
        "scenario": scenario.name,
        "strategy": spec.name,
        "label": spec.display_label,
        "seed": scenario.seed,
        "duration_s": scenario.duration_s,
        "warmup_s": scenario.warmup_s,
        "profile": profile_source,
        "profile_s": profile_s,
        "real_wall_s": real.wall_s,
        "load_average": list(real.load_avg),
        "load_average_before": load_before,
        "cpu_cores_busy": real.cpu_usage,
        "representative": _representative(real.cpu_usage),
        "cores": os.cpu_count(),
        "overhead": {k: v.overhead for k, v in real.services.items()},
        "generator_lag_ms": real.generator_lag,
        "warmup": real.warmup,
        "cold_start_s": _cold_starts(real),
        "targets": {k: {"kind": kind, "limit": lim} for k, (kind, lim) in TARGETS.items()},
        "calibration": calibration,
        "notes": _notes(original, real),
    })
    doc["wall_s"] = time.perf_counter() - wall0
    write_json_atomic(outdir / "fidelity.json", doc)
    try:
        write_report(outdir, doc, scenario, real_result, sim)
    except Exception as exc:  # the report is a convenience: never lose the results for it
        say(f"report.html not written: {type(exc).__name__}: {exc}")
    return doc


# --------------------------------------------------------------------------- preparation
def prepare_scenario(scenario: Scenario, strategy: str | None, duration_s: float | None
                     ) -> tuple[Scenario, StrategySpec]:
    """The scenario as validated: cut to ``duration_s``, one strategy (by name or label),
    service and cold-start times from the profile, and the chosen strategy spec."""
    if strategy is None:
        spec = scenario.strategies[0]
    elif strategy in BUILTINS and not any(strategy in (s.display_label, s.name)
                                          for s in scenario.strategies):
        spec = StrategySpec(name=strategy)  # a built-in with its defaults
    else:  # the one rule of simulate and sweep: labels first, then names
        spec = select_strategies(scenario, [strategy], source="--strategy")[0]
    update: dict[str, Any] = {"strategies": [spec]}
    if duration_s is not None:
        if duration_s <= 0:
            raise UserError("must be positive", source="--duration-s")
        update["duration_s"] = float(duration_s)
        if scenario.warmup_s >= duration_s:
            update["warmup_s"] = 0.0
    services = []
    for svc in scenario.services:
        if svc.device != "cpu":
            import importlib.util

            if importlib.util.find_spec("torch") is None:
                raise UserError(f"service '{svc.name}' runs on {svc.device}; validation needs "
                                "torch with that device", source=scenario.name)
        # the simulation must use what was measured here: service and cold-start times from
        # the profile (a scenario's own distributions describe no real replica)
        services.append(svc.model_copy(update={"service_time": "profile",
                                               "cold_start_s": "profile"}))
    update["services"] = services
    # what the real run does not reproduce is left out of the simulation too, so that both
    # run the same scenario: injected faults, and the cluster's placement limits (the real
    # replicas share this machine however many there are)
    update["faults"] = None
    update["cluster"] = None
    return scenario.model_copy(update=update), spec


#: a run is flagged as not representative when other processes kept more than this share
#: of the machine's cores busy on average during it
MAX_OTHERS_SHARE = 0.25


def _representative(cpu: dict[str, float]) -> bool | None:
    """Whether other processes left the machine to the validation (``None``: not measured):
    they used at most :data:`MAX_OTHERS_SHARE` of the cores on average during the run."""
    others = cpu.get("others_cores")
    if others is None or not math.isfinite(others):
        return None
    return bool(others <= MAX_OTHERS_SHARE * (os.cpu_count() or 1))


def _notes(original: Scenario, real: RealRunResult | None) -> list[str]:
    """What the validation changed or could not reproduce (printed and saved)."""
    notes = []
    if original.faults is not None:
        notes.append("the scenario's faults are not injected (real or simulated)")
    if original.cluster is not None:
        notes.append("the scenario's cluster limits are ignored (real and simulated): the "
                     "replicas share this machine")
    if any(s.service_time != "profile" or s.cold_start_s != "profile"
           for s in original.services):
        notes.append("service and cold-start times come from the profile measured here, not "
                     "from the scenario's distributions")
    if real is not None:
        for rec in real.services.values():
            notes += [f"{rec.name}: {n}" for n in rec.notes]
        notes += [f"crash: {c}" for c in real.crashes]
    return notes


def _get_profile(scenario: Scenario, profile: Any, outdir: Path, say: Callable[[str], None]
                 ) -> tuple[Any, str]:
    from simscale.profiler.schema import Profile, load_profile

    if isinstance(profile, Profile):
        return profile, profile.source or "given"
    if profile is not None:
        return load_profile(profile, warn=False), str(profile)
    from simscale.profiler import run_profile

    models = sorted({s.model for s in scenario.services})
    threads = sorted({s.threads for s in scenario.services})
    devices = sorted({s.device for s in scenario.services})
    say(f"quick profile of {', '.join(models)} (threads {threads}) on this machine")
    prof = run_profile(models=models, quick=True, threads=threads, devices=devices)
    path = outdir / "profile.json"
    write_json_atomic(path, prof.model_dump(mode="json", by_alias=True))
    return prof, str(path)


def _real_spec(scenario: Scenario, index: int, svc: Service, spec: StrategySpec, prof: Any,
               artifact: str | None) -> RealServiceSpec:
    from simscale.strategies import make_strategy

    inputs = service_inputs_of(scenario, index, scenario.seed, prof)
    size, options = _size_options(prof, svc)
    strategy = make_strategy(spec.name, spec.params, source=scenario.name)
    ctx = service_context(scenario, svc, size, options, inputs.true_rate_rps)
    if callable(getattr(strategy, "setup", None)):
        try:
            call_strategy(strategy, "setup", ctx)
        except StrategyFailed as exc:
            raise UserError(f"strategy '{spec.display_label}' failed: {exc.message}",
                            source=scenario.source, field="strategies") from None
    arrivals = np.asarray(inputs.arrival_s, dtype=float)
    return RealServiceSpec(
        name=svc.name, model=svc.model, device=svc.device, threads=svc.threads,
        slo_ms=svc.slo_ms, max_batch_size=svc.batching.max_batch_size,
        max_wait_ms=svc.batching.max_wait_ms, queue_capacity=svc.queue.capacity,
        queue_timeout_ms=svc.queue.timeout_ms, routing=svc.routing,
        initial_replicas=svc.replicas.initial, min_replicas=svc.replicas.min,
        max_replicas=svc.replicas.max, cost_per_replica_hour=svc.cost_per_replica_hour,
        arrivals_s=arrivals, strategy=strategy, context=ctx, size=size, size_options=options,
        weights_path=artifact,
    )


def model_artifacts(scenario: Scenario, prof: Any, folder: Path) -> dict[str, str]:
    """Train/build each model of the scenario once with the profiler's code and save the
    artifact a replica loads (as the profiler does before it measures cold starts), so that a
    real replica's cold start is the profiled one: load an artifact, not train a model.
    ResNet50 uses the profile's ``weights_path`` when it names an existing file."""
    from simscale.profiler.zoo import train_model

    weights = (getattr(prof, "settings", {}) or {}).get("weights_path")
    out = {}
    for model in sorted({s.model for s in scenario.services}):
        w = Path(weights) if model == "resnet50" and weights and Path(weights).is_file() \
            else None
        out[model] = str(train_model(model, folder, weights_path=w).artifact)
    return out


# --------------------------------------------------------------------------- engine hooks
def service_inputs_of(scenario: Scenario, index: int, seed: int, profile: Any) -> Any:
    """The inputs of service ``index`` for ``seed`` (replication 0): exactly those the
    simulation uses, arrivals and the true rate of their realization (the oracle's) included.
    The runner spawns one ``SeedSequence`` child per service from the seed and
    :func:`~simscale.simulator.runner.service_inputs` draws that service's inputs from it; the
    same functions are called here (the arrivals are checked against the simulation's requests
    after the run: ``arrivals_match`` in ``fidelity.json``)."""
    from simscale.simulator.runner import service_inputs, service_seed_sequences

    children = service_seed_sequences(scenario, seed)
    return service_inputs(scenario.services[index], scenario, children[index], profile)


def _size_options(prof: Any, svc: Service) -> tuple[Any, tuple[Any, ...]]:
    """The size of ``svc``'s replicas and all sizes the profile measured, exactly as the
    engine builds them (:func:`~simscale.simulator.engine.size_options`)."""
    from simscale.simulator.engine import size_options

    options = size_options(svc, prof, svc.batching.max_batch_size)
    size = next((o for o in options if o.threads == svc.threads and o.device == svc.device),
                None)
    if size is None:
        prof.config(svc.model, svc.device, svc.threads)  # raises the UserError naming it
        size = options[0]
    return size, options


def _simulate(scenario: Scenario, spec: StrategySpec, prof: Any) -> Any:
    from simscale.simulator.runner import run_scenario

    return run_scenario(scenario, strategies=[spec.display_label], seed=scenario.seed,
                        replications=1, profile=prof, keep_requests=True)


# --------------------------------------------------------------------------- real summary
def real_service_run(svc: Service, rec: RealServiceRecord, duration_s: float) -> Any:
    """The real run of one service as the engine's ``ServiceRun``, so that the simulator's own
    :func:`~simscale.simulator.metrics.run_figures` computes its figures (same definitions)."""
    from simscale.simulator.engine import ReplicaRecord, ServiceRun

    records = []
    for r in rec.replicas:
        placed = max(0.0, float(r["spawn_s"]))
        stop = float(r["stop_s"])
        rr = ReplicaRecord(rid=int(r["replica"]), requested_s=placed, threads=rec.threads,
                           cores=float(rec.threads), placed_s=placed,
                           ready_s=float(r["ready_s"]), drain_s=float(r["drain_s"]),
                           stop_s=stop, state="stopped" if stop == stop else str(r["state"]),
                           crashed=bool(r["crashed"]))
        rr.sizes = [(placed, rec.threads)]
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
    return ServiceRun(svc, plane, records, rec.events, info, [(0.0, rec.threads)], duration_s,
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
                                    scenario.warmup_s, keep_requests=True)
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
    try:
        from simscale import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def _cold_starts(real: RealRunResult) -> dict[str, dict[str, list[float]]]:
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


def _save_real(folder: Path, real: RealRunResult, result: Any) -> None:
    """The real run as a result folder (``summary.json``, ``timeseries.parquet``,
    ``requests.parquet``) plus ``replicas.csv`` and ``decisions.json``."""
    result.save(folder, save_requests=True)
    reps = real.replicas
    write_with_atomic(folder / "replicas.csv", lambda p: reps.to_csv(p, index=False))
    write_json_atomic(folder / "decisions.json",
                      {k: v.decisions for k, v in real.services.items()})


# --------------------------------------------------------------------------- diagnosis
def diagnose(scenario: Scenario, name: str, prof: Any, real: RealRunResult,
             real_summary: dict[str, Any], sim: Any) -> dict[str, Any]:
    """Where the real run and the simulation differ, for one service.

    - ``arrivals_match``: the real run replayed exactly the simulation's arrival timestamps.
    - ``service_ms_real_mean`` / ``service_ms_profile_mean``: mean batch time the replicas
      measured around ``predict`` during the run, and the simulation's (the serving model less
      its per-batch overhead) for the same batch sizes; ``service_time_ratio`` = real / profile
      (> 1: the replicas' predict ran slower than simulated, e.g. CPU contention).
    - ``batch_ms_real_mean`` / ``batch_ms_simulated_mean``: mean batch time as the router saw it
      (write to answer) and in the simulation (its batches, serving overhead included);
      ``batch_time_ratio`` = simulated / real.
    - ``overhead_ms_per_batch_*``: batch time seen by the router minus the replica's own
      predict time (pipe, JSON, input building, scheduling); ``overhead_ms_profile``: the
      profile's serving overhead (which also holds an isolated predict's slowness);
      ``overhead_ms_warmup_median``: isolated round trip in the warm-up (before ``t = 0``) less
      the profile's tight-loop median of one item, the profile's measurement repeated on the
      real cluster.
    - ``queue_wait_ms_p50`` real and simulated; ``batch_size_mean`` real and simulated.
    """
    svc = next(s for s in scenario.services if s.name == name)
    rec = real.services[name]
    out: dict[str, Any] = {}
    sim_batch_ms = math.nan
    sim_req = getattr(sim, "requests", None)
    if sim_req is not None and len(sim_req):
        sim_arr = np.sort(sim_req.loc[sim_req["service"] == name, "arrival_s"].to_numpy(float))
        out["arrivals_match"] = bool(len(sim_arr) == len(rec.arrival_s)
                                     and np.allclose(sim_arr, np.sort(rec.arrival_s),
                                                     rtol=0, atol=1e-9))
        served = sim_req[(sim_req["service"] == name) & sim_req["start_s"].notna()
                         & sim_req["end_s"].notna()]
        out["batch_size_mean_simulated"] = float(served["batch_size"].mean()) \
            if len(served) else math.nan
        heads = served.drop_duplicates(["replica", "start_s"])
        sim_batch_ms = float(((heads["end_s"] - heads["start_s"]) * 1000.0).mean()) \
            if len(heads) else math.nan
    b = rec.batches
    if len(b):
        bare = prof.service_model(svc.model, svc.device, svc.threads, serving=False)
        serving = prof.service_model(svc.model, svc.device, svc.threads)
        sizes = b["batch_size"].to_numpy(float)
        # the simulated predict: the serving model less its per-batch overhead (the fit,
        # scaled by the serving fit_scale)
        predicted = (serving.mean_s(sizes) - serving.overhead_s) * 1000.0
        real_ms = b["service_ms"].to_numpy(float)
        batch_ms = (b["end_s"] - b["start_s"]).to_numpy(float) * 1000.0
        over = batch_ms - real_ms
        out.update({
            "batches": int(len(b)),
            "batch_size_mean_real": float(b["batch_size"].mean()),
            "service_ms_real_mean": float(np.mean(real_ms)),
            "service_ms_real_median": float(np.median(real_ms)),
            "service_ms_profile_mean": float(np.mean(predicted)),
            "service_time_ratio": float(np.mean(real_ms) / np.mean(predicted)),
            "batch_ms_real_mean": float(np.mean(batch_ms)),
            "batch_ms_simulated_mean": sim_batch_ms,
            "batch_time_ratio": sim_batch_ms / float(np.mean(batch_ms)),
            "overhead_ms_per_batch_median": float(np.median(over)),
            "overhead_ms_per_batch_mean": float(np.mean(over)),
            "overhead_ms_per_batch_p95": float(np.percentile(over, 95)),
            "overhead_ms_profile": float(prof.config(svc.model, svc.device,
                                                     svc.threads).overhead_ms),
            "overhead_ms_warmup_median": serving_overhead_ms(prof, svc,
                                                             real.warmup.get(name, {})),
            "contention": _contention(real, name, b, bare),
        })
    for which, summary in (("real", real_summary), ("simulated", sim.summary)):
        run = next((r for r in summary["runs"] if r["service"] == name), None)
        if run is not None:
            out[f"queue_wait_ms_p50_{which}"] = float(run["queue_wait_ms"]["p50"])
    return out


def _contention(real: RealRunResult, name: str, b: pd.DataFrame, stm: Any) -> dict[str, Any]:
    """How this service's batch service times (as the replica measured them, over the
    profile's median for that batch size) vary with what else ran on the machine meanwhile:
    by the number of other batches in service at the batch's midpoint (any service), and for
    batches that overlapped another replica's cold start (process start and model load)."""
    mid = ((b["start_s"] + b["end_s"]) / 2).to_numpy(float)
    ratio = b["service_ms"].to_numpy(float) / (stm.median_s(b["batch_size"].to_numpy(float))
                                                * 1000.0)
    others = np.zeros(len(b), dtype=int)
    starting = np.zeros(len(b), dtype=bool)
    for other_name, rec in real.services.items():
        ob = rec.batches
        if len(ob):
            s0 = ob["start_s"].to_numpy(float)
            e0 = ob["end_s"].to_numpy(float)
            order = np.argsort(s0)
            s_sorted, e_sorted = s0[order], np.sort(e0)
            n_active = (np.searchsorted(s_sorted, mid, side="right")
                        - np.searchsorted(e_sorted, mid, side="right"))
            if other_name == name:  # not the batch itself
                n_active = n_active - 1
            others += n_active
        for r in rec.replicas:
            cs = r["cold_start_s"]
            if cs == cs:  # started during the run: spawn -> ready
                ready = float(r["ready_s"])
                starting |= (mid >= ready - cs) & (mid < ready)
    by_level: dict[str, dict[str, float]] = {}
    for level in sorted(set(others.tolist())):
        sel = (others == level) & ~starting
        if sel.any():
            by_level[str(level)] = {"batches": int(sel.sum()),
                                    "service_over_profile_median": float(np.median(ratio[sel]))}
    out: dict[str, Any] = {"by_other_batches_in_service": by_level}
    if starting.any():
        out["during_cold_start"] = {"batches": int(starting.sum()),
                                    "service_over_profile_median":
                                    float(np.median(ratio[starting]))}
    return out


#: calibration factors are kept within these bounds (a ratio outside them is a broken
#: measurement, not a machine's drift)
CALIBRATION_BOUNDS = (0.5, 2.0)


def calibrate(prof: Any, scenario: Scenario, warmup: dict[str, dict[str, float]]
              ) -> dict[str, dict[str, float]]:
    """Per service, the factor on the profile's fit that makes the simulated predict time of
    one item after ~``gap_ms`` idle equal the replicas' median over the warm-up's isolated
    batches, seconds before the run (the machine's speed then, relative to the profile).

    The simulated predict there is ``fit_scale * t50(1)`` plus the part of the serving
    overhead that is predict (``predict_ms_p50 - fit_scale * backtoback_predict_ms_p50``); the
    factor scales the first part only. 1 when the warm-up measured nothing; kept within
    :data:`CALIBRATION_BOUNDS`."""
    out: dict[str, dict[str, float]] = {}
    for svc in scenario.services:
        cfg = prof.config(svc.model, svc.device, svc.threads)
        bare = prof.service_model(svc.model, svc.device, svc.threads, serving=False)
        fit_ms = cfg.fit_scale * float(bare.median_s(1)) * 1000.0
        sv = cfg.serving
        extra_ms = 0.0
        if sv is not None and None not in (sv.backtoback_predict_ms_p50, sv.predict_ms_p50):
            extra_ms = max(0.0, float(sv.predict_ms_p50)
                           - cfg.fit_scale * float(sv.backtoback_predict_ms_p50))
        warm_ms = float((warmup.get(svc.name) or {}).get("service_ms_median_batch1", math.nan))
        factor = 1.0
        if math.isfinite(warm_ms) and warm_ms > 0 and fit_ms > 0:
            lo, hi = CALIBRATION_BOUNDS
            factor = min(hi, max(lo, (warm_ms - extra_ms) / fit_ms))
        out[svc.name] = {"factor": factor, "warmup_predict_ms_p50": warm_ms,
                         "profile_predict_ms_p50": fit_ms + extra_ms}
    return out


def serving_overhead_ms(prof: Any, svc: Service, warm: dict[str, float]) -> float:
    """Per-batch overhead (ms) of serving ``svc`` on the real cluster, measured before the run:
    the median round trip of an isolated batch of one (warm-up) minus the profile's tight-loop
    median for one item; never negative. (The profile's ``serving.overhead_ms`` is measured
    against the serving replica's own back-to-back predict instead: the two agree when the fit
    and that predict do.)"""
    stm = prof.service_model(svc.model, svc.device, svc.threads, serving=False)
    rt = float(warm.get("roundtrip_ms_median_batch1", math.nan))
    if not math.isfinite(rt):
        return 0.0
    return max(0.0, rt - float(stm.median_s(1)) * 1000.0)


def profile_adjusted(prof: Any, scenario: Scenario, overhead_ms: dict[str, float] | None,
                     scale: dict[str, float] | None = None) -> Any:
    """A copy of ``prof`` whose tight-loop medians of each service's (model, device, threads)
    are multiplied by ``scale[service]`` (default 1; ``alpha_ms``, ``beta_ms`` and every knot)
    and, unless ``overhead_ms`` is None, whose serving overhead is ``overhead_ms[service]`` per
    batch whatever the idle time, instead of the measured one; the noise is kept. Used for the
    calibration and the a posteriori simulation of the diagnosis."""
    from simscale.profiler.schema import ServingOverhead

    models = dict(prof.models)
    for svc in scenario.services:
        extra = float(overhead_ms.get(svc.name, 0.0)) if overhead_ms is not None else 0.0
        factor = float((scale or {}).get(svc.name, 1.0))
        if not math.isfinite(extra) or extra < 0:
            extra = 0.0
        if not math.isfinite(factor) or factor <= 0:
            factor = 1.0
        mp = models[svc.model]
        configs = []
        for cfg in mp.configs:
            if cfg.device == svc.device and cfg.threads == svc.threads:
                fit = cfg.fit
                knots = [(b, m * factor) for b, m in fit.knots] if fit.knots else fit.knots
                serving = cfg.serving
                if overhead_ms is not None:
                    serving = (serving or ServingOverhead(
                        batches=1, gap_ms=0.0, roundtrip_ms_p50=None,
                        roundtrip_ms_p95=None, predict_ms_p50=None, overhead_ms=0.0)
                    ).model_copy(update={"overhead_ms": extra, "idle_overhead_ms": None})
                cfg = cfg.model_copy(update={
                    "fit": fit.model_copy(update={"alpha_ms": fit.alpha_ms * factor,
                                                  "beta_ms": fit.beta_ms * factor,
                                                  "knots": knots}),
                    "serving": serving})
            configs.append(cfg)
        models[svc.model] = mp.model_copy(update={"configs": configs})
    return prof.model_copy(update={"models": models})


# --------------------------------------------------------------------------- fidelity
def _get(run: dict[str, Any], dotted: str) -> float:
    node: Any = run
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    try:
        return float(node)
    except (TypeError, ValueError):
        return math.nan


def fidelity(real_summary: dict[str, Any], sim_summary: dict[str, Any], *, label: str
             ) -> dict[str, Any]:
    """Per service: ``{"real": {...}, "simulated": {...}, "error": {...}}`` over
    :data:`FIGURES` (dotted summary names), plus ``abs_error`` and ``within_target``."""
    services: dict[str, Any] = {}
    sim_runs = [r for r in sim_summary.get("runs", []) if r.get("label") in (label, None)
                and r.get("replication", 0) == 0] or sim_summary.get("runs", [])
    for real_run in real_summary["runs"]:
        name = real_run["service"]
        sim_run = next((r for r in sim_runs if r.get("service") == name), {})
        real_vals = {f: _get(real_run, f) for f in FIGURES}
        sim_vals = {f: _get(sim_run, f) for f in FIGURES}
        rel = {}
        absd = {}
        for f in FIGURES:
            r, s = real_vals[f], sim_vals[f]
            rel[f] = (s - r) / abs(r) if r == r and s == s and r != 0 else math.nan
            absd[f] = s - r if r == r and s == s else math.nan
        within = {}
        for f, (kind, limit) in TARGETS.items():
            v = rel[f] if kind == "rel" else absd[f]
            within[f] = bool(v == v and abs(v) <= limit)
        services[name] = {"real": real_vals, "simulated": sim_vals, "error": rel,
                          "abs_error": absd, "within_target": within}
    return {"services": services}


def print_fidelity(doc: dict[str, Any], console: Any) -> None:
    """Print the fidelity table with rich (one row per figure, per service; the headline
    ``simulated`` column, then the simulation with the profile as measured, uncalibrated), and
    one line of calibration and diagnosis per service."""
    from rich.table import Table

    load = doc.get("load_average") or [math.nan] * 3
    table = Table(title=f"fidelity — {doc.get('scenario')} · {doc.get('label')} · "
                  f"{doc.get('duration_s', 0):g} s · load {load[0]:.2f}/{load[1]:.2f} on "
                  f"{doc.get('cores')} cores", title_justify="left")
    for col in ("service", "figure", "real", "sim", "error", "target", "uncal.", "error "):
        table.add_column(col, justify="left" if col in ("service", "figure") else "right")
    for name, svc in doc["services"].items():
        for f in FIGURES:
            r, s, e = svc["real"][f], svc["simulated"][f], svc["error"][f]
            unc = svc.get("uncalibrated") or {}
            so = (unc.get("simulated") or {}).get(f, math.nan)
            eo = (unc.get("error") or {}).get(f, math.nan)
            target = ""
            if f in svc.get("within_target", {}):
                target = "[green]ok[/green]" if svc["within_target"][f] else "[red]off[/red]"
            if f in TARGETS and TARGETS[f][0] == "abs":
                e_txt = f"{svc['abs_error'][f]:+.2f}"
                eo_txt = f"{so - r:+.2f}" if so == so and r == r else "—"
            else:
                e_txt, eo_txt = _pct(e), _pct(eo)
            table.add_row(name, SHORT.get(f, f), _fmt(f, r), _fmt(f, s), e_txt, target,
                          _fmt(f, so), eo_txt)
        table.add_section()
    table.caption = ("error: relative (simulated - real) / real; replicas: absolute. "
                     "target: p50, p95 within 10 %, mean replicas within 0.25. "
                     "sim: the profile calibrated to the machine's speed in the warm-up, before "
                     "t = 0; uncal.: the profile as measured.")
    console.print(table)
    for name, svc in doc["services"].items():
        d = svc.get("diagnosis") or {}
        w = (doc.get("warmup") or {}).get(name, {})
        cold = ", ".join(f"{c:.2f}" for c in
                         (doc.get("cold_start_s") or {}).get(name, {}).get("during_run", []))
        over = d.get("overhead_ms_per_batch_median", math.nan)
        cal = (doc.get("calibration") or {}).get(name, {})
        ap = (d.get("a_posteriori") or {}).get("error", {})
        console.print(
            f"[dim]{name}: calibration x{cal.get('factor', math.nan):.3f} (isolated predict "
            f"{cal.get('warmup_predict_ms_p50', math.nan):.2f} ms in the warm-up, "
            f"{cal.get('profile_predict_ms_p50', math.nan):.2f} ms in the profile); batches "
            f"took {d.get('batch_ms_real_mean', math.nan):.2f} ms on "
            f"average as the router saw them, simulated "
            f"{d.get('batch_ms_simulated_mean', math.nan):.2f} ms; predict ran "
            f"{d.get('service_time_ratio', math.nan):.2f}x the simulated fit (the rest is "
            f"serving overhead); serving "
            f"overhead {d.get('overhead_ms_profile', math.nan):.2f} ms in the profile, "
            f"{d.get('overhead_ms_warmup_median', math.nan):.2f} ms in the warm-up; pipe "
            f"{over:.2f} ms per batch in the run "
            f"({w.get('ipc_overhead_ms_median', math.nan):.2f} ms in the warm-up); cold starts "
            f"in the run: {cold or 'none'} s; a posteriori (the run's own predict times and "
            f"overhead) p50/p95 error {_pct(ap.get('latency_ms.p50', math.nan))}/"
            f"{_pct(ap.get('latency_ms.p95', math.nan))}; arrivals identical: "
            f"{d.get('arrivals_match')}[/dim]")
    cpu = doc.get("cpu_cores_busy") or {}
    if cpu:
        console.print(f"[dim]cores busy during the run (of {doc.get('cores')}): all "
                      f"{cpu.get('all_cores', math.nan):.2f}, this validation "
                      f"{cpu.get('ours_cores', math.nan):.2f}, other processes "
                      f"{cpu.get('others_cores', math.nan):.2f}[/dim]")
    if doc.get("representative") is False:
        console.print(f"[yellow]warning: other processes kept "
                      f"{cpu.get('others_cores', math.nan):.2f} of the {doc.get('cores')} cores "
                      "busy during the run: the real latencies include that interference, "
                      "which no simulation models; rerun on a quiet machine[/yellow]")
    lag = doc.get("generator_lag_ms") or {}
    if lag:
        console.print(f"[dim]load generator lag: median {lag.get('median_ms', math.nan):.2f} ms,"
                      f" p99 {lag.get('p99_ms', math.nan):.2f} ms, max "
                      f"{lag.get('max_ms', math.nan):.2f} ms[/dim]")


def _fmt(f: str, v: float | None) -> str:
    if v is None or v != v:  # NaN (None once written to JSON)
        return "—"
    if f == "slo_attainment":
        return f"{100 * v:.1f}%"
    if f in ("completed", "dropped", "scale_events"):
        return f"{v:.0f}"
    if f == "mean_replicas":
        return f"{v:.2f}"
    return f"{v:.1f}"


def _pct(v: float | None) -> str:
    return "—" if v is None or v != v else f"{100 * v:+.1f}%"


# --------------------------------------------------------------------------- figures
def overlay_figures(real_ts: pd.DataFrame, sim_ts: pd.DataFrame, *, service: str,
                    slo_ms: float | None = None, real_requests: pd.DataFrame | None = None,
                    sim_requests: pd.DataFrame | None = None) -> list[Any]:
    """Plotly figures of one service, real vs simulated: replica counts (ready and starting)
    over time with the arrival rate, and windowed p95 latency over time.

    The frames are ``timeseries.parquet`` (and optionally ``requests.parquet``) rows; only
    ``service``'s rows are used, relabelled ``real`` and ``simulated``.
    """
    from simscale.reports import figures as F

    def pick(df: pd.DataFrame | None, label: str) -> pd.DataFrame | None:
        if df is None or not len(df):
            return None
        out = df[df["service"] == service].copy()
        if "replication" in out:
            out = out[out["replication"] == out["replication"].min()]
        out["label"] = label
        out["replication"] = 0
        return out

    ts = pd.concat([x for x in (pick(real_ts, "real"), pick(sim_ts, "simulated"))
                    if x is not None], ignore_index=True)
    colors = {"real": "#111827", "simulated": "#2563eb"}
    reqs = None
    if real_requests is not None and sim_requests is not None:
        rr, sr = pick(real_requests, "real"), pick(sim_requests, "simulated")
        if rr is not None and sr is not None:
            cols = ["label", "replication", "arrival_s", "end_s", "drop_reason"]
            both = pd.concat([rr[cols], sr[cols]], ignore_index=True)
            both["drop_reason"] = both["drop_reason"].astype(str)
            reqs = both
    return [
        F.replicas_figure(ts, colors=colors, title=f"{service}: replicas, real vs simulated"),
        F.latency_figure(ts, slo_ms=slo_ms, requests=reqs, colors=colors,
                         title=f"{service}: p95 latency, real vs simulated"),
    ]


def write_report(outdir: Path, doc: dict[str, Any], scenario: Scenario, real: Any, sim: Any
                 ) -> Path:
    """``OUTDIR/report.html``: the fidelity table, the overlay figures per service and the
    measured overheads. ``real`` and ``sim`` are results with ``timeseries`` and ``requests``
    frames."""
    from simscale.io import write_text_atomic
    from simscale.reports.html import Wide, assemble_page
    from simscale.reports.tables import frame_table_html, key_value_table_html

    rows = []
    for name, svc in doc["services"].items():
        ap = (svc.get("diagnosis") or {}).get("a_posteriori") or {}
        for f in FIGURES:
            rows.append({
                "service": name, "figure": f, "real": _fmt(f, svc["real"][f]),
                "simulated": _fmt(f, svc["simulated"][f]),
                "relative error": (f"{svc['abs_error'][f]:+.2f} (absolute)"
                                   if TARGETS.get(f, ("rel",))[0] == "abs"
                                   else _pct(svc["error"][f])),
                "target": ("" if f not in svc.get("within_target", {})
                           else "ok" if svc["within_target"][f] else "off"),
                "uncalibrated": _fmt(f, ((svc.get("uncalibrated") or {}).get("simulated")
                                         or {}).get(f, math.nan)),
                "relative error ": _pct(((svc.get("uncalibrated") or {}).get("error")
                                         or {}).get(f, math.nan)),
                "a posteriori (diagnosis)": _fmt(f, (ap.get("simulated") or {}).get(f, math.nan)),
            })
    sections: list[tuple[str, list[Any]]] = [("Fidelity", [frame_table_html(pd.DataFrame(rows))])]
    for svc in scenario.services:
        figs = overlay_figures(real.timeseries, sim.timeseries, service=svc.name,
                               slo_ms=svc.slo_ms, real_requests=real.requests,
                               sim_requests=getattr(sim, "requests", None))
        sections.append((svc.name, [Wide(f) for f in figs]))
    facts = []
    for name, c in (doc.get("calibration") or {}).items():
        for k, v in c.items():
            facts.append((f"{name}: calibration {k}", f"{v:.3f}"))
    for name, o in doc.get("overhead", {}).items():
        for k, v in o.items():
            facts.append((f"{name}: {k}", f"{v:.3f}"))
    for name, w in doc.get("warmup", {}).items():
        for k, v in w.items():
            facts.append((f"{name}: warm-up {k}", f"{v:.3f}"))
    for k, v in (doc.get("generator_lag_ms") or {}).items():
        facts.append((f"load generator lag {k}", f"{v:.3f}"))
    for name, cs in doc.get("cold_start_s", {}).items():
        for when, values in cs.items():
            facts.append((f"{name}: cold starts, {when.replace('_', ' ')} (s)",
                          ", ".join(f"{c:.2f}" for c in values) or "none"))
    for name, svc in doc["services"].items():
        d = svc.get("diagnosis") or {}
        for k, v in d.items():
            if isinstance(v, int | float | bool):
                facts.append((f"{name}: {k}", f"{v:.3f}" if isinstance(v, float) else str(v)))
        for level, c in ((d.get("contention") or {}).get("by_other_batches_in_service")
                         or {}).items():
            facts.append((f"{name}: service / profile median with {level} other batches "
                          "in service", f"{c['service_over_profile_median']:.2f} "
                          f"({c['batches']} batches)"))
    sections.append(("Measured overheads and diagnosis", [key_value_table_html(facts)]))
    load = doc.get("load_average") or [math.nan] * 3
    others = (doc.get("cpu_cores_busy") or {}).get("others_cores", math.nan)
    header = [("scenario", scenario.name), ("strategy", str(doc.get("label"))),
              ("duration", f"{scenario.duration_s:g} s"), ("seed", str(scenario.seed)),
              ("load average", f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"),
              ("cores used by others", f"{others:.2f}"
               + (" (not representative)" if doc.get("representative") is False else "")),
              ("cores", str(doc.get("cores"))), ("profile", str(doc.get("profile")))]
    page = assemble_page(f"Validation: {scenario.name}", header, sections,
                         kicker="simscale validate",
                         description="The simulation against a real run of the same arrivals "
                         "on this machine.")
    path = outdir / "report.html"
    write_text_atomic(path, page)
    return path
