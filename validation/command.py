"""``simscale validate``: run a scenario on real replicas here and compare it with the simulation.

The steps, all on this machine:

1. **Profile**: a quick profile of only the models (and thread counts) the scenario uses
   (:func:`simscale.profiler.run_profile`), so the simulation uses service times measured just
   before the real run, serving overhead included (skipped when a profile file is given).
2. **Real run** (:class:`simscale.validation.cluster.RealCluster`): real replica processes,
   real cold starts, the scenario's arrivals (the *same timestamps* the simulation uses for
   this seed) replayed in real time, and the *same strategy class* deciding from measured
   metrics.
3. **Simulation** of the same scenario, seed and strategy with that profile
   (:func:`simscale.simulator.runner.run_scenario`) *calibrated* to the machine's speed at the
   start of the run, saved to ``OUTDIR/simulated``: the real cluster's warm-up (seconds before
   ``t = 0``) times isolated batches of one item on the real replicas (~50 ms apart, as the
   profiler's serving measurement does), and a factor on the profile's tight-loop fit makes the
   simulated predict time there equal theirs (:func:`simscale.validation.fidelity.calibrate`;
   the serving overhead is kept). A shared machine's speed drifts by several
   per cent within a minute, and queueing multiplies a service-time error several times in the
   tail; the calibration uses nothing measured after ``t = 0``. The simulation with the profile
   as measured is kept too (``OUTDIR/simulated_uncalibrated``, ``uncalibrated`` in
   ``fidelity.json``).
4. **Fidelity** (:mod:`simscale.validation.fidelity`): per service, real vs simulated
   p50/p95/p99 latency, SLO attainment, completed, dropped, mean replicas and scale events,
   with relative errors, printed and written to ``OUTDIR/fidelity.json``; the real run's
   ``summary.json``, ``requests.parquet``, ``timeseries.parquet`` (the simulator's own figure
   code computes them), ``replicas.csv`` and ``decisions.json`` to ``OUTDIR/real``; overlay
   figures to ``OUTDIR/report.html`` (:mod:`simscale.validation.report`).
   A ``diagnosis`` per service says where the difference comes from (service times the
   replicas showed vs the profile, per-batch overhead in the run vs the profile's and vs the
   warm-up's, co-location slowdown, queueing) and an
   *a posteriori* simulation fed the run's own service-time ratio and overhead separates the
   error of the inputs from the error of the queueing/scaling model. The CPU time other
   processes used during the run is measured; above a quarter of the cores the run is flagged
   ``"representative": false``.

``fidelity.json``: ``{"services": {NAME: {"real": {...}, "simulated": {...}, "error": {...},
"abs_error": {...}, "within_target": {...}, "uncalibrated": {"simulated", "error",
"abs_error", "within_target"}, "colocation_off": {the same, with ``--colocation``},
"diagnosis": {...}}}, "calibration": {NAME: {...}}, "colocation": {the simulated host} | null,
"load_average": [1, 5, 15 min],
"cpu_cores_busy": {...}, "representative": bool, "overhead": {...}, "warmup": {...},
"cold_start_s": {...}, "notes": [...], ...}`` with the figures named as in ``summary.json``
(dotted: ``latency_ms.p50``). Relative error is ``(simulated - real) / |real|`` (NaN when
``real`` is 0 or missing); ``abs_error`` is ``simulated - real``. Targets: p50 and p95 within
10 % (relative), mean replicas within 0.25 (absolute).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simscale.errors import UserError
from simscale.io import write_json_atomic
from simscale.simulator.scenario import (
    Cluster,
    Scenario,
    Service,
    StrategySpec,
    load_scenario,
)
from simscale.simulator.serving import select_strategies, service_context
from simscale.strategies import BUILTINS
from simscale.strategies.base import StrategyFailed, call_strategy
from simscale.validation.cluster import RealCluster, others_busy_cores
from simscale.validation.fidelity import (
    TARGETS,
    calibrate,
    compare,
    profile_adjusted,
    simulate,
)
from simscale.validation.records import (
    RealRunResult,
    RealServiceSpec,
    cold_starts,
    save_real,
    summarize_real,
)
from simscale.validation.report import print_fidelity, write_report

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile
    from simscale.simulator.inputs import ServiceInputs
    from simscale.strategies.base import SizeOption

__all__ = [
    "model_artifacts",
    "prepare_scenario",
    "service_inputs_of",
    "validate",
    "validate_command",
]


# --------------------------------------------------------------------------- entry points
def validate_command(scenario_path: str | Path, strategy: str | None = None,
                     duration_s: float | None = None, outdir: Path | str = Path("validate"),
                     *, profile: str | Path | None = None, colocation: bool = True
                     ) -> dict[str, Any]:
    """The CLI command: validate, print the fidelity table (rich) and return ``fidelity.json``'s
    content. Bad input raises :class:`UserError`; a replica crash raises
    :class:`~simscale.validation.replica.ReplicaCrashError` (a ``UserError``)."""
    from simscale.console import make_console

    console = make_console()
    scenario = load_scenario(scenario_path)

    def progress(msg: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')} {msg}[/dim]")

    result = validate(scenario, strategy=strategy, duration_s=duration_s, outdir=Path(outdir),
                      profile=profile, progress=progress, colocation=colocation)
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
    profile: Profile | str | Path | None = None,
    on_crash: str = "abort",
    progress: Callable[[str], None] | None = None,
    colocation: bool = True,
) -> dict[str, Any]:
    """Validate ``scenario`` (see the module docstring) and return the fidelity document.

    ``colocation``: simulate this machine as one host on which the replicas' batches slow each
    other (:func:`this_host`; the profile's measured co-location factors), and also simulate
    without it (``colocation_off`` per service in the document) to show what it changes.

    ``strategy`` is a strategy name or label of the scenario (default: its first); it may also
    be a built-in name not in the scenario (default parameters). ``duration_s`` cuts the
    scenario. ``profile``: ``None`` measures a quick profile now; a path or a
    :class:`~simscale.profiler.schema.Profile` is used as is. ``on_crash``: see
    :class:`~simscale.validation.cluster.RealCluster`.
    """
    wall0 = time.perf_counter()
    say = progress or (lambda msg: None)
    outdir = Path(outdir)
    original = scenario
    scenario, spec = prepare_scenario(scenario, strategy, duration_s, colocation=colocation)
    for note in _notes(original, None):
        say(f"note: {note}")
    outdir.mkdir(parents=True, exist_ok=True)

    # 1. profile
    t = time.perf_counter()
    prof, profile_source = _get_profile(scenario, profile, outdir, say, colocation=colocation)
    profile_s = time.perf_counter() - t

    # 2. the real run
    real, load_before = _run_real(scenario, spec, prof, on_crash, say)
    from simscale.simulator.results import SimulationResult

    real_summary, real_ts, real_req = summarize_real(scenario, spec, real)
    real_result = SimulationResult(real_summary, real_ts, real_req)
    save_real(outdir / "real", real, real_result)

    # 3. the simulation
    say("simulating the same scenario with the measured profile")
    calibration = calibrate(prof, scenario, real.warmup)
    calibrated = profile_adjusted(prof, scenario, None,
                                  {n: c["factor"] for n, c in calibration.items()})
    sim = simulate(scenario, spec, calibrated)
    sim.save(outdir / "simulated", save_requests=True)
    sim_raw = simulate(scenario, spec, prof)
    sim_raw.save(outdir / "simulated_uncalibrated", save_requests=False)
    sim_off = None
    if colocation:  # the same without co-location: what modelling it changes
        sim_off = simulate(scenario.model_copy(update={"cluster": None}), spec, calibrated)
        sim_off.save(outdir / "simulated_no_colocation", save_requests=False)

    # 4. compare
    doc = compare(scenario, spec, real, real_summary, calibrated, sim, sim_raw, sim_off)
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
        "cold_start_s": cold_starts(real),
        "targets": {k: {"kind": kind, "limit": lim} for k, (kind, lim) in TARGETS.items()},
        "calibration": calibration,
        "colocation": None if scenario.cluster is None else scenario.cluster.model_dump(
            mode="json", exclude_none=True),
        "notes": _notes(original, real),
    })
    doc["wall_s"] = time.perf_counter() - wall0
    write_json_atomic(outdir / "fidelity.json", doc)
    try:
        write_report(outdir, doc, scenario, real_result, sim)
    except Exception as exc:  # the report is a convenience: never lose the results for it
        say(f"report.html not written: {type(exc).__name__}: {exc}")
    return doc


# --------------------------------------------------------------------------- the real run
def _run_real(scenario: Scenario, spec: StrategySpec, prof: Profile, on_crash: str,
              say: Callable[[str], None]) -> tuple[RealRunResult, list[float]]:
    """Step 2: the real run of the validated ``scenario`` with strategy ``spec`` (models built
    once with the profiler's code, in a temporary folder), and the machine's load average
    (1, 5, 15 min) just before it. Warns when the machine is busy already."""
    load_before = list(os.getloadavg())
    others = others_busy_cores()
    if _representative({"others_cores": others}) is False:
        say(f"warning: this machine is busy (other processes keep {others:.1f} of "
            f"{os.cpu_count() or 1} cores busy): they will compete with the replicas and the "
            "real latencies will show it; the simulation does not model them")
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
    return real, load_before


# --------------------------------------------------------------------------- preparation
def prepare_scenario(scenario: Scenario, strategy: str | None, duration_s: float | None,
                     *, colocation: bool = False) -> tuple[Scenario, StrategySpec]:
    """The scenario as validated: cut to ``duration_s``, one strategy (by name or label),
    service and cold-start times from the profile, the scenario's cluster replaced by this
    machine as one host with co-location (``colocation``; :func:`this_host`) or by none, and
    the chosen strategy spec."""
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
    update["cluster"] = this_host(services) if colocation else None
    return scenario.model_copy(update=update), spec


def this_host(services: list[Service]) -> Cluster:
    """This machine as the simulation's one host (the cluster's host form with co-location):
    every replica of every service is placed on it, as the real run starts them all here
    (its cores as the replicas' threads at their most, so that placement never waits: the real
    run does not either), and a batch is slowed by the profile's measured factor for the
    number of other batches in service at the moment, whichever service's."""
    cores = sum(s.threads * s.replicas.max for s in services)
    return Cluster(nodes=1, cores_per_node=float(max(cores, os.cpu_count() or 1)),
                   memory_per_node_mb=1e12, colocation=True)  # (room is not validated)


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
        notes.append("the scenario's cluster is replaced (real and simulated): the replicas "
                     "share this machine, simulated as one host")
    if any(s.service_time != "profile" or s.cold_start_s != "profile"
           for s in original.services):
        notes.append("service and cold-start times come from the profile measured here, not "
                     "from the scenario's distributions")
    if real is not None:
        for rec in real.services.values():
            notes += [f"{rec.name}: {n}" for n in rec.notes]
        notes += [f"crash: {c}" for c in real.crashes]
    return notes


def _get_profile(scenario: Scenario, profile: Profile | str | Path | None, outdir: Path,
                 say: Callable[[str], None], *, colocation: bool = False
                 ) -> tuple[Profile, str]:
    """Step 1: ``(profile, its source)``. A :class:`~simscale.profiler.schema.Profile` or a
    path is used as given; ``None`` measures a quick profile of the scenario's models, threads
    and devices now (their co-location factors too with ``colocation``) and saves it to
    ``OUTDIR/profile.json``."""
    from simscale.profiler.schema import Profile, load_profile

    if isinstance(profile, Profile):
        return profile, profile.source or "given"
    if profile is not None:
        return load_profile(profile, warn=False), str(profile)
    from simscale.profiler import run_profile

    models = sorted({s.model for s in scenario.services})
    threads = sorted({s.threads for s in scenario.services})
    devices = sorted({s.device for s in scenario.services})
    say(f"quick profile of {', '.join(models)} (threads {threads}"
        f"{', co-location' if colocation else ''}) on this machine")
    prof = run_profile(models=models, quick=True, threads=threads, devices=devices,
                       colocation=colocation)
    path = outdir / "profile.json"
    write_json_atomic(path, prof.model_dump(mode="json", by_alias=True))
    return prof, str(path)


def _real_spec(scenario: Scenario, index: int, svc: Service, spec: StrategySpec, prof: Profile,
               artifact: str | None) -> RealServiceSpec:
    """Service ``svc`` (number ``index`` of ``scenario``) as the real cluster serves it: the
    simulation's arrivals for the scenario's seed, a new strategy object of ``spec`` set up with
    the simulator's service context, the profile's replica sizes, and the model ``artifact``
    (a file path) its replicas load."""
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


def model_artifacts(scenario: Scenario, prof: Profile, folder: Path) -> dict[str, str]:
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
def service_inputs_of(scenario: Scenario, index: int, seed: int, profile: Profile | None
                      ) -> ServiceInputs:
    """The inputs of service ``index`` for ``seed`` (replication 0): exactly those the
    simulation uses, arrivals and the true rate of their realization (the oracle's) included.
    The runner spawns one ``SeedSequence`` child per service from the seed and
    :func:`~simscale.simulator.inputs.service_inputs` draws that service's inputs from it; the
    same functions are called here (the arrivals are checked against the simulation's requests
    after the run: ``arrivals_match`` in ``fidelity.json``)."""
    from simscale.simulator.inputs import service_inputs, service_seed_sequences

    children = service_seed_sequences(scenario, seed)
    return service_inputs(scenario.services[index], scenario, children[index], profile)


def _size_options(prof: Profile, svc: Service) -> tuple[SizeOption, tuple[SizeOption, ...]]:
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
