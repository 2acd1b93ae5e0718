"""``run_profile``: measure the real models on this machine and build a :class:`Profile`.

The order of work:

1. validate every argument (bad ones raise :class:`UserError` before anything runs;
   :mod:`simscale.profiler.plan`);
2. train/build each model once and save its artifact (what a replica loads) in a temporary
   folder; time ResNet50's image preprocessing per image;
3. per (model, device, threads): load the model in this process, and start a serving replica
   (``replica --serve``); then timing rounds that take turns
   (:mod:`simscale.profiler.rounds`): round ``r`` of every configuration's batch sizes
   (interleaved, with its thread count set: :class:`~simscale.profiler.measure.BatchTimer`),
   then round ``r`` of every serving replica (isolated batches of one item after idle gaps,
   timed as a router sees them: :class:`~simscale.profiler.steps.ServingReplica`), then round
   ``r + 1`` in the reverse order of configurations; a drift of the machine's speed so reaches
   every configuration and both measurements alike;
   then, unless turned off, the co-location slowdown of every CPU configuration: k replicas
   of it busy at once, k = 1 up to the host's cores (:mod:`simscale.profiler.colocation`);
4. peak memory per (model, device, threads, batch size), each in a fresh replica process
   (``replica --memory-batch B``), two at a time on CPU;
5. cold start per (model, device): fresh replica processes (``replica --probe``) one after
   another, timed from ``Popen`` to the line printed after the first prediction;
6. fit the service-time model of every (model, device, threads) and write the profile atomically
   (:mod:`simscale.profiler.assemble`), with the machine's speed score measured before step 2
   and after step 6 (:mod:`simscale.profiler.speed`; ``machine.speed``: the median round of
   both runs and each run's score; the score is also cached for later commands' checks).

The measurement steps themselves are in :mod:`simscale.profiler.steps`; the names other modules
and tests import from here (``run_profile``, ``save_profile``, ``measure_serving``, ...) stay
importable from here.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from simscale.errors import UserError
from simscale.profiler.assemble import (
    Measurements,
    Served,
    build_profile,
    model_profiles,
    run_settings,
)
from simscale.profiler.colocation import (
    colocation_weight,
    describe_method,
    max_replicas,
    measure_colocation,
)
from simscale.profiler.colocation_schema import Colocation
from simscale.profiler.measure import Timings
from simscale.profiler.plan import (
    DEVICES,
    REQUIRED_MODULES,
    Config,
    RunPlan,
    check_dependencies,
    check_output,
    plan_configs,
)
from simscale.profiler.plan import cuda_available as _cuda_available
from simscale.profiler.progress import (
    PREPROCESSING_WEIGHT_S,
    PROBE_WEIGHT_S,
    TRAIN_WEIGHT_S,
    ProgressBar,
    serve_weight,
    timing_weight,
    total_weight,
)
from simscale.profiler.rounds import time_in_rounds
from simscale.profiler.schema import ColdStart, ModelProfile, Preprocessing, Profile
from simscale.profiler.speed import measure_speed, profile_speed, remember_speed
from simscale.profiler.steps import (
    PROBE_TIMEOUT_S,
    SERVING_GAP_S,
    SERVING_GAPS_S,
    ProfilerError,
    ServingReplica,
    config_timer,
    measure_cold_start,
    measure_config,
    measure_memory,
    measure_preprocessing,
    measure_serving,
    serving_overhead,
)
from simscale.profiler.zoo import TrainedModel

__all__ = [
    "DEVICES",
    "PROBE_TIMEOUT_S",
    "REQUIRED_MODULES",
    "SERVING_GAPS_S",
    "SERVING_GAP_S",
    "ProfilerError",
    "RunPlan",
    "check_dependencies",
    "measure_cold_start",
    "measure_config",
    "measure_memory",
    "measure_preprocessing",
    "measure_serving",
    "plan_configs",
    "profile_to_json",
    "run_profile",
    "save_profile",
    "serving_overhead",
]


@contextmanager
def _artifact_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="simscale-profile-") as tmp:
        yield Path(tmp)


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class _PhaseClock:
    """Seconds per phase of a run: :meth:`phase` closes the phase that ran since the last call
    (or since the clock was made) under ``name``."""

    def __init__(self) -> None:
        self.phases_s: dict[str, float] = {}
        self._t = time.perf_counter()

    def phase(self, name: str) -> None:
        now = time.perf_counter()
        self.phases_s[name] = round(now - self._t, 2)
        self._t = now


# -- the phases of a run ----------------------------------------------------------------------


def _build(
    models: Sequence[str], configs: Sequence[Config], plan: RunPlan, art_dir: Path,
    weights: Path | None, bar: ProgressBar,
) -> tuple[dict[str, TrainedModel], Preprocessing | None]:
    """Build every model (artifacts in ``art_dir``) and, with ResNet50, time its image
    preprocessing at the fewest threads of any configuration."""
    from simscale.profiler.zoo import train_model

    trained = {}
    for name in models:
        bar.step(f"building {name}")
        trained[name] = train_model(name, art_dir, weights if name == "resnet50" else None)
        bar.step(advance=TRAIN_WEIGHT_S[name])
    pre = None
    if "resnet50" in models:
        bar.step("resnet50 preprocessing")
        pre = measure_preprocessing(plan.preprocessing_samples, min(c.threads for c in configs))
        bar.step(advance=PREPROCESSING_WEIGHT_S)
    return trained, pre


def _label(cfg: Config) -> str:
    return f"{cfg.model} {cfg.device} {cfg.threads}t"


def _serving_batches(plan: RunPlan, rounds: int, r: int) -> int:
    """Batches per idle gap of serving round ``r`` of ``rounds``: ``plan.serving_batches`` in
    all, spread evenly."""
    n = plan.serving_batches
    return n * (r + 1) // rounds - n * r // rounds


def _timing_and_serving(
    configs: Sequence[Config], trained: Mapping[str, TrainedModel], plan: RunPlan,
    bar: ProgressBar, wall_t0: float,
) -> tuple[dict[Config, Timings], dict[str, list[float]], dict[Config, Served]]:
    """Time every configuration's batches in this process and its serving replica, in timing
    rounds that take turns (:func:`~simscale.profiler.rounds.time_in_rounds`): round ``r`` of
    every configuration, then round ``r`` of every serving replica, then round ``r + 1``.
    Returns the timings, per configuration timed twice its two run-queue wait shares, and the
    serving round trips.

    A configuration that other processes disturbed (their run-queue wait was more than
    ``plan.retry_wait_share`` of its wall time) is timed once more (all its rounds, taking
    turns with the other disturbed ones), while the time budget (``plan.retry_until_s`` from
    ``wall_t0``) lasts; the less disturbed of the two is kept.
    """
    arts = {c: trained[c.model].artifact for c in configs}
    bar.step("loading the models and starting a serving replica per configuration")
    timers = [config_timer(c, arts[c], plan.timing_for(c), seed=i) for i, c in enumerate(configs)]
    rounds = max(t.rounds for t in timers)
    weights = [timing_weight(plan, c) / timers[i].rounds for i, c in enumerate(configs)]
    pending = [0.0]

    def on_step(c: int, r: int) -> None:
        bar.step(f"timing round {r + 1}/{rounds}: {_label(configs[c])} "
                 f"b={list(configs[c].batch_sizes)}", advance=pending[0])
        pending[0] = weights[c]

    with ExitStack() as stack:
        replicas = [stack.enter_context(ServingReplica(c.model, c.device, c.threads, arts[c],
                                                       seed=i).spawn())
                    for i, c in enumerate(configs)]
        for rep in replicas:
            rep.ready()

        def after_round(r: int) -> None:
            bar.step(advance=pending[0])
            pending[0] = 0.0
            for c, rep in zip(configs, replicas, strict=True):
                bar.step(f"serving round {r + 1}/{rounds}: {_label(c)}")
                rep.run_round(_serving_batches(plan, rounds, r))
                bar.step(advance=serve_weight(plan, c) / rounds)

        found = time_in_rounds(timers, after_round=after_round, on_step=on_step)
        served = {c: (rep.by_gap, rep.loop_ms) for c, rep in zip(configs, replicas, strict=True)}
    timings = dict(zip(configs, found, strict=True))
    retried: dict[str, list[float]] = {}
    busy = [i for i, c in enumerate(configs)
            if plan.retry_wait_share is not None
            and timings[c].contention()["wait_share_of_wall_time"] > plan.retry_wait_share]
    if busy and time.perf_counter() - wall_t0 <= plan.retry_until_s:
        bar.step("re-timing " + ", ".join(_label(configs[i]) for i in busy)
                 + " (the machine was busy)")
        again = time_in_rounds([timers[i].fresh() for i in busy])
        for i, t2 in zip(busy, again, strict=True):
            cfg = configs[i]
            share = timings[cfg].contention()["wait_share_of_wall_time"]
            share2 = t2.contention()["wait_share_of_wall_time"]
            retried[f"{cfg.model}/{cfg.device}/{cfg.threads}"] = [share, share2]
            if share2 < share:
                timings[cfg] = t2
    return timings, retried, served


def _measure_colocation_all(
    configs: Sequence[Config], trained: Mapping[str, TrainedModel], plan: RunPlan,
    bar: ProgressBar,
) -> dict[Config, Colocation]:
    """The co-location slowdown of every CPU configuration of ``configs`` (CUDA ones share a
    GPU, not the host's cores, and are left out), one configuration after another."""
    out: dict[Config, Colocation] = {}
    for cfg in configs:
        if cfg.device != "cpu":
            continue
        per_step = colocation_weight(plan.colocation, cfg) / (
            plan.colocation.rounds * max_replicas(plan.colocation))

        def on_step(k: int, r: int, cfg: Config = cfg, per_step: float = per_step) -> None:
            bar.step(f"co-location {_label(cfg)}: {k} busy, round {r + 1}/"
                     f"{plan.colocation.rounds}", advance=per_step)

        bar.step(f"co-location {_label(cfg)}: starting replicas")
        out[cfg] = measure_colocation(cfg, trained[cfg.model].artifact, plan.colocation,
                                      on_step=on_step)
    return out


def _with_colocation(profiles: Mapping[str, ModelProfile], configs: Sequence[Config],
                     colocation: Mapping[Config, Colocation]) -> dict[str, ModelProfile]:
    """``profiles`` with each configuration's measured co-location set (configurations in
    the order of ``configs``, as :func:`~simscale.profiler.assemble.model_profiles` makes
    them)."""
    out = {}
    for name, mp in profiles.items():
        cfgs = [c for c in configs if c.model == name]
        updated = [cp.model_copy(update={"colocation": colocation.get(c)})
                   for c, cp in zip(cfgs, mp.configs, strict=True)]
        out[name] = mp.model_copy(update={"configs": updated})
    return out


def _measure_memory_all(
    jobs: Sequence[tuple[Config, int]], trained: Mapping[str, TrainedModel], plan: RunPlan,
    bar: ProgressBar,
) -> dict[tuple[Config, int], float]:
    """Peak memory (MiB) per (configuration, batch size) of ``jobs``, each in a fresh replica,
    ``plan.memory_parallel`` at a time."""
    bar.step("peak memory (fresh replicas)")
    memory: dict[tuple[Config, int], float] = {}

    def mem_job(job: tuple[Config, int]) -> tuple[tuple[Config, int], float]:
        cfg, b = job
        return job, measure_memory(cfg.model, cfg.device, cfg.threads,
                                   trained[cfg.model].artifact, b)

    with ThreadPoolExecutor(max_workers=max(1, plan.memory_parallel)) as pool:
        for job, mb in pool.map(mem_job, jobs):
            memory[job] = mb
            bar.step(advance=PROBE_WEIGHT_S[job[0].model] / max(1, plan.memory_parallel))
    return memory


def _measure_cold_starts(
    models: Sequence[str], cold_threads: Mapping[tuple[str, str], int],
    trained: Mapping[str, TrainedModel], plan: RunPlan, bar: ProgressBar,
) -> dict[str, list[ColdStart]]:
    """Per model, one cold start per device, with the threads of ``cold_threads``."""
    cold: dict[str, list[ColdStart]] = {m: [] for m in models}
    for (name, dev), t in cold_threads.items():
        bar.step(f"cold start {name} {dev} ({plan.cold_start_samples} fresh replicas)")
        cold[name].append(
            measure_cold_start(name, dev, t, trained[name].artifact, plan.cold_start_samples)
        )
        bar.step(advance=PROBE_WEIGHT_S[name] * plan.cold_start_samples)
    return cold


# -- the whole run ----------------------------------------------------------------------------


def run_profile(
    models: Sequence[str] | str | None = None,
    devices: Sequence[str] | str | None = None,
    threads: Sequence[int] | int | str | None = None,
    batch_sizes: Sequence[int] | Mapping[str, Sequence[int]] | int | str | None = None,
    quick: bool = False,
    output: str | Path | None = None,
    weights_path: str | Path | None = None,
    progress: bool = True,
    console: Any = None,
    colocation: bool | None = None,
) -> Profile:
    """Measure the models on this machine and return the profile (also written to ``output``).

    Parameters
    ----------
    models:
        Names from :data:`~simscale.profiler.zoo.MODEL_NAMES` (default: all three).
    devices:
        ``"cpu"`` and/or ``"cuda"`` (default ``["cpu"]``); ``cuda`` needs a GPU.
    threads:
        Intra-op threads per replica (default ``[1, 2]`` on CPU, ``[1]`` with ``quick`` or CUDA).
    batch_sizes:
        Batch sizes for every model, or ``{model: sizes}`` (default: per model and device).
    quick:
        A short run (well under a minute on 2 cores): fewer batch sizes, repeats and probes.
    output:
        Where to write the profile JSON (atomically); ``None`` writes nothing.
    weights_path:
        A torchvision ResNet50 state dict to use instead of random weights.
    progress:
        Show a rich progress bar (on stderr, or on ``console``).
    colocation:
        Measure the co-location slowdown of every CPU configuration (k replicas busy at once,
        k = 1 up to the host's cores); ``None``: yes, except with ``quick``.

    Raises :class:`UserError` for bad arguments before anything is measured or written.
    """
    wall_t0 = time.perf_counter()
    check_dependencies()
    model_list, configs, skipped = plan_configs(
        models, devices, threads, batch_sizes, quick, has_cuda=_cuda_available
    )
    out_path = check_output(output)
    weights = Path(weights_path) if weights_path is not None else None
    if weights is not None and not weights.is_file():
        raise UserError("weights file not found", source=weights)
    plan = RunPlan.quick() if quick else RunPlan.full()
    with_colocation = (not quick) if colocation is None else bool(colocation)
    coloc_configs = [c for c in configs if c.device == "cpu"] if with_colocation else []
    load_before = _loadavg()
    cold_threads = {(c.model, c.device): c.threads for c in reversed(configs)}  # the smallest
    mem_jobs = [(c, b) for c in configs for b in c.batch_sizes]
    total = total_weight(plan, model_list, configs, mem_jobs, list(cold_threads)) + sum(
        colocation_weight(plan.colocation, c) for c in coloc_configs)

    clock = _PhaseClock()
    speed_start = measure_speed()  # the machine's speed score at the start and at the end
    with _artifact_dir() as art_dir, ProgressBar(progress, total, console) as bar:
        trained, pre = _build(model_list, configs, plan, art_dir, weights, bar)
        clock.phase("build_and_preprocessing")
        timings, retried, served = _timing_and_serving(configs, trained, plan, bar, wall_t0)
        clock.phase("timing_and_serving")
        coloc = _measure_colocation_all(coloc_configs, trained, plan, bar)
        if coloc_configs:
            clock.phase("colocation")
        memory = _measure_memory_all(mem_jobs, trained, plan, bar)
        clock.phase("memory")
        cold = _measure_cold_starts(model_list, cold_threads, trained, plan, bar)
        clock.phase("cold_start")
        bar.step("fitting service-time models")
        measured = Measurements(trained=trained, preprocessing=pre, timings=timings,
                                retried=retried, memory=memory, cold=cold, served=served)
        profiles = _with_colocation(model_profiles(model_list, configs, measured), configs,
                                    coloc)
        clock.phase("fit")
        bar.step("done")

    settings = run_settings(
        quick=quick, models=model_list, configs=configs, skipped=skipped, plan=plan,
        measured=measured, cold_threads=cold_threads, weights=weights, load_before=load_before,
        load_after=_loadavg(), phases_s=clock.phases_s, wall_t0=wall_t0,
    )
    settings["colocation"] = {"measured": with_colocation, **(
        {"plan": asdict(plan.colocation), "method": describe_method(plan.colocation)}
        if with_colocation else {})}
    speed = profile_speed(speed_start, measure_speed())
    remember_speed(speed.score)  # this machine's score now, for the checks of later commands
    profile = build_profile(quick, settings, profiles, speed)
    if out_path is not None:
        save_profile(profile, out_path)
    return profile


def profile_to_json(profile: Profile) -> dict[str, Any]:
    """The JSON document of ``profile`` (``schema`` key, no ``source``)."""
    return profile.model_dump(mode="json", by_alias=True)


def save_profile(profile: Profile, path: str | Path) -> None:
    """Write ``profile`` as JSON to ``path`` atomically (temporary file + rename): an error
    while writing leaves a previous file at ``path`` as it was."""
    from simscale.io import write_with_atomic

    doc = profile_to_json(profile)

    def writer(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, allow_nan=False)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a profile is an ordinary file

    write_with_atomic(path, writer)
