"""The profile of a run, assembled from what its steps measured: per model its configurations
(batch latencies, peak memory, fitted service-time model, serving overhead), cold starts and
preprocessing, and the run's ``settings`` (how everything was measured, for the reader).

Units follow the profile schema (:mod:`simscale.profiler.schema`): latencies in ms, cold starts
in s, memory in MiB.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from simscale.profiler.fingerprint import machine_fingerprint
from simscale.profiler.fit import fit_service_time
from simscale.profiler.measure import MAX_STORED_SAMPLES, Timings, latency_stats
from simscale.profiler.plan import Config, RunPlan
from simscale.profiler.schema import (
    SCHEMA,
    ColdStart,
    ConfigProfile,
    ModelProfile,
    Preprocessing,
    Profile,
    SpeedScore,
)
from simscale.profiler.steps import SERVING_GAP_S, SERVING_GAPS_S, serving_overhead
from simscale.profiler.zoo import MODELS, TrainedModel

#: ``({gap_s: (roundtrip_ms, predict_ms)}, loop_ms)`` of one serving replica (see
#: ``measure_serving``)
Served = tuple[dict[float, tuple[list[float], list[float]]], list[float]]


@dataclass
class Measurements:
    """What the steps of a run measured.

    ``trained``: per model, what was built; ``preprocessing``: ResNet50's, when measured;
    ``timings``: per configuration, its batch timings; ``retried``: per ``model/device/threads``
    timed twice, the two run-queue wait shares; ``memory``: per (configuration, batch size),
    peak MiB; ``cold``: per model, one cold start per device; ``served``: per configuration,
    its serving replica's round trips.
    """

    trained: dict[str, TrainedModel]
    preprocessing: Preprocessing | None
    timings: dict[Config, Timings]
    retried: dict[str, list[float]]
    memory: dict[tuple[Config, int], float]
    cold: dict[str, list[ColdStart]]
    served: dict[Config, Served]


def config_profile(cfg: Config, m: Measurements) -> ConfigProfile:
    """The profile of configuration ``cfg``: its batches' latency statistics (with peak
    memory and the median of each timing round), the service-time model fitted to them and its
    serving overhead. The statistics and the fit use the pooled samples of all rounds scaled to
    the median of the rounds' medians (:meth:`~simscale.profiler.measure.Timings.
    profile_samples_ms`)."""
    timings = m.timings[cfg]
    samples = timings.profile_samples_ms()
    fit = fit_service_time(samples)
    return ConfigProfile(
        device=cfg.device,
        threads=cfg.threads,
        batches=[latency_stats(b, samples[b], m.memory.get((cfg, b)),
                               round_p50_ms=timings.round_p50_ms(b)) for b in sorted(samples)],
        fit=fit,
        serving=serving_overhead(m.served[cfg][0], loop_ms=m.served[cfg][1]),
    )


def model_profiles(
    models: Sequence[str], configs: Sequence[Config], m: Measurements
) -> dict[str, ModelProfile]:
    """Per model of ``models``, its :class:`ModelProfile` (configurations in the order of
    ``configs``); fits the service-time models."""
    out = {}
    for name in models:
        cfg_profiles = [config_profile(cfg, m) for cfg in configs if cfg.model == name]
        tm = m.trained[name]
        out[name] = ModelProfile(
            name=name,
            description=f"{MODELS[name].description}; weights: {tm.weights}",
            framework=MODELS[name].framework,
            quality=tm.quality,
            n_parameters=tm.n_parameters,
            model_size_mb=round(tm.model_size_mb, 4),
            input_shape=tm.input_shape,
            preprocessing=m.preprocessing if name == "resnet50" else None,
            cold_start=m.cold[name],
            configs=cfg_profiles,
        )
    return out


def timing_settings(plan: RunPlan, configs: Sequence[Config], m: Measurements) -> dict[str, Any]:
    """The ``settings.timing`` section: how batches were timed, the plans, and per
    configuration how much other processes disturbed its timing."""
    return {
        "method": "timing rounds that take turns across the configurations (round r of every "
        "configuration, then round r of every serving replica, then round r+1 in the reverse "
        "order of configurations); within a round, passes over all batch sizes (random order "
        "per pass); perf_counter_ns around one predict call, after a warm-up per batch size "
        "(and, before each later round, the smallest batch size for rewarm_s); per batch size "
        "p50_ms is the median of the rounds' medians (round_p50_ms), and the statistics and "
        "the fit use the samples of all rounds scaled to that median",
        "timing_rounds": max(plan.timing_for(c).timing_rounds for c in configs),
        "tabular": asdict(plan.tabular),
        "resnet50_cpu": asdict(plan.resnet_cpu),
        **({"resnet50_cuda": asdict(plan.resnet_cuda)}
           if any(c.device == "cuda" for c in configs) else {}),
        "stored_samples_max": MAX_STORED_SAMPLES,
        "run_queue_wait": "subtracted: each sample is the call's wall time less the longest "
        "run-queue wait (kernel schedstat) of a thread of the process during it",
        "contention": {
            f"{c.model}/{c.device}/{c.threads}": m.timings[c].contention() for c in configs
        },
        "retimed_wait_shares": m.retried,
    }


def run_settings(
    *,
    quick: bool,
    models: Sequence[str],
    configs: Sequence[Config],
    skipped: Sequence[str],
    plan: RunPlan,
    measured: Measurements,
    cold_threads: Mapping[tuple[str, str], int],
    weights: Path | None,
    load_before: list[float] | None,
    load_after: list[float] | None,
    phases_s: Mapping[str, float],
    wall_t0: float,
) -> dict[str, Any]:
    """The profile's ``settings``: what was measured and how. ``cold_threads``: threads of
    the cold-start replicas per (model, device); ``phases_s``: seconds per phase of the run;
    ``wall_t0``: ``time.perf_counter()`` at the start of the run (for ``wall_time_s``)."""
    return {
        "quick": quick,
        "models": list(models),
        "configs": [
            {"model": c.model, "device": c.device, "threads": c.threads,
             "batch_sizes": list(c.batch_sizes)}
            for c in configs
        ],
        "skipped": list(skipped),
        "timing": timing_settings(plan, configs, measured),
        "memory_method": "peak RSS (VmHWM) of a fresh replica process per (model, device, "
        "threads, batch size) while it serves 3 batches of that size, the mark reset after "
        "loading the model (so the figure is the loaded replica plus that batch); on CUDA "
        "torch.cuda.max_memory_reserved",
        "cold_start": {
            "samples": plan.cold_start_samples,
            "threads": {f"{m}/{d}": t for (m, d), t in cold_threads.items()},
            "method": "Popen of 'python -m simscale.profiler.replica --probe' to its line after "
            "the first prediction of one item, less the replica's run-queue wait (time other "
            "processes held the CPU) and the time it spent making that item's input",
        },
        "serving": {
            "batches_per_gap": plan.serving_batches,
            "idle_gaps_s": list(SERVING_GAPS_S),
            "reference_gap_s": SERVING_GAP_S,
            "method": "a 'python -m simscale.profiler.replica --serve' per (model, device, "
            "threads), sent batches of one item after each idle gap (in random order), a share "
            "of them after each timing round (see timing.method); round "
            "trip = write the batch to its stdin .. read its answer; per gap, the overhead = "
            "median round trip less the replica's own tight-loop predict median (one reused "
            "input, back to back, interleaved with the round trips; x fit_scale); "
            "the simulator adds the overhead of each batch's actual idle time",
        },
        "weights_path": str(weights) if weights is not None else None,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "phases_s": dict(phases_s),
        "wall_time_s": round(time.perf_counter() - wall_t0, 1),
    }


def build_profile(
    quick: bool, settings: dict[str, Any], models: Mapping[str, ModelProfile],
    speed: SpeedScore | None = None,
) -> Profile:
    """The validated :class:`Profile` of a run on this machine, stamped now (UTC); ``speed``:
    the machine's speed score during the run (:func:`simscale.profiler.speed.profile_speed`)."""
    machine = machine_fingerprint(include_libraries=True).model_copy(update={"speed": speed})
    return Profile.model_validate(
        {
            "schema": SCHEMA,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "settings": settings,
            "machine": machine,
            "models": dict(models),
        }
    )
