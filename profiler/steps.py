"""The measurement steps of a profile run, each on its own: in this process (a
configuration's batch timings, ResNet50's image preprocessing) or in fresh replica processes
(peak memory, cold start, a serving replica's round trips).

Times are per the function: ``_ms`` milliseconds, ``_s`` seconds; memory in MiB. A replica
process that fails raises :class:`ProfilerError` (or :class:`~simscale.errors.UserError` when
it reports a user-caused error); none outlives the call that started it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simscale.errors import UserError
from simscale.profiler.measure import (
    MAX_STORED_SAMPLES,
    TimingPlan,
    Timings,
    subsample,
)
from simscale.profiler.plan import Config
from simscale.profiler.schema import ColdStart, Preprocessing, ServingOverhead
from simscale.profiler.zoo import thread_env

#: Seconds a replica probe may take before it is killed.
PROBE_TIMEOUT_S = 600.0


#: mean idle gap (s) between the isolated batches that measure a serving replica; the real
#: cluster's warm-up (``simscale validate``) uses the same, so both measure the same thing
SERVING_GAP_S = 0.05
#: idle gaps (s) after which the profiler times a serving replica (0: back to back)
SERVING_GAPS_S = (0.0, 0.002, 0.01, 0.05, 0.2)


class ProfilerError(RuntimeError):
    """A measurement failed for a reason that is not the user's input (e.g. a probe crashed)."""


def _stats_s(samples: Sequence[float]) -> tuple[float, float, float]:
    """Mean, median and 95th percentile of ``samples`` (in their own unit)."""
    x = np.asarray(samples, dtype=float)
    p50, p95 = np.percentile(x, [50, 95])
    return float(x.mean()), float(p50), float(p95)


def measure_preprocessing(n_images: int, threads: int = 1) -> Preprocessing:
    """Time decode + resize 256 + centre crop 224 + to tensor + normalize, per image (ms)."""
    from simscale.profiler.zoo import (
        image_transform,
        preprocess_jpeg,
        sample_image_bytes,
        set_threads,
    )

    set_threads(threads)
    images = sample_image_bytes()
    transform = image_transform()
    for data in images * 2:  # warm-up
        preprocess_jpeg(data, transform)
    samples = []
    for i in range(n_images):
        data = images[i % len(images)]
        t0 = time.perf_counter_ns()
        preprocess_jpeg(data, transform)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    x = np.asarray(samples)
    mean, p50, p95 = _stats_s(x)
    return Preprocessing(
        description="per image: PIL JPEG decode of the bundled sample images (china.jpg, "
        "flower.jpg), resize 256, centre crop 224, to tensor, ImageNet normalize "
        f"({threads} thread)",
        samples_ms=[round(float(v), 5) for v in subsample(x, MAX_STORED_SAMPLES)],
        mean_ms=mean,
        p50_ms=p50,
        p95_ms=p95,
    )


def _run_probe(cmd: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """Start a replica, wait for its JSON line; return (line, seconds from Popen to the line)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, text=True,
    )
    watchdog = threading.Timer(PROBE_TIMEOUT_S, proc.kill)  # a hung probe is killed
    watchdog.daemon = True
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        t_line = time.perf_counter() - t0
        _, err = proc.communicate(timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ProfilerError(f"replica probe timed out: {' '.join(cmd[2:])}") from None
    finally:  # never leave a probe behind (timeout, Ctrl-C)
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        reply = json.loads(line)
    except json.JSONDecodeError:
        tail = " | ".join((err or "").strip().splitlines()[-3:])
        raise ProfilerError(
            f"replica probe failed (exit {proc.returncode}): {' '.join(cmd[2:])}: {tail}"
        ) from None
    if reply.get("event") == "error":
        raise UserError(reply.get("message", "replica failed"))
    return reply, t_line


def measure_cold_start(
    model: str, device: str, threads: int, artifact: Path, samples: int
) -> ColdStart:
    """Spawn-to-first-prediction time (s) of ``samples`` fresh replica processes, one at a time.

    Each is timed from ``Popen`` to the line the replica prints after its first prediction (of one
    item), less the time the replica spent making that item's input (the request's work) and
    less the time its main thread waited for a CPU held by other processes (run-queue wait).
    """
    from simscale.profiler.replica import replica_command

    cmd = replica_command(model, threads, device, artifact, mode=("--probe",))
    env = thread_env(threads)
    times = []
    for _ in range(samples):
        reply, t_line = _run_probe(cmd, env)
        wait_s = min(float(reply.get("run_queue_wait_s", 0.0)), 0.9 * t_line)
        times.append(t_line - float(reply.get("inputs_s", 0.0)) - wait_s)
    mean, p50, p95 = _stats_s(times)
    return ColdStart(device=device, samples_s=times, mean_s=mean, p50_s=p50, p95_s=p95)


def measure_memory(
    model: str, device: str, threads: int, artifact: Path, batch_size: int
) -> float:
    """Peak memory (MiB) of a fresh replica that loaded ``model`` and ran batches of
    ``batch_size``: peak RSS on CPU, peak GPU memory reserved by torch on CUDA."""
    from simscale.profiler.replica import replica_command

    cmd = replica_command(
        model, threads, device, artifact, mode=("--memory-batch", str(batch_size))
    )
    reply, _ = _run_probe(cmd, thread_env(threads))
    if device == "cuda" and "gpu_peak_reserved_mb" in reply:
        return float(reply["gpu_peak_reserved_mb"])
    return float(reply["peak_rss_mb"])


def measure_serving(
    model: str, device: str, threads: int, artifact: Path, batches: int,
    gaps_s: Sequence[float] = SERVING_GAPS_S, seed: int = 0,
) -> dict[float, tuple[list[float], list[float]]]:
    """Time batches of one item through a real serving replica process (``python -m
    simscale.profiler.replica --serve``) after each idle gap of ``gaps_s`` (0: back to back),
    ``batches`` per gap, as a router sees them. The gaps are interleaved: every round sends one
    batch after each gap, in a fresh random order, so that drift spreads over all of them.

    Returns ``{gap_s: (roundtrip_ms, predict_ms)}``: per batch, the time from writing the batch
    to the replica's stdin to reading its answer, and the replica's own time around ``predict``.
    """
    import random

    from simscale.profiler.replica import replica_command

    cmd = replica_command(model, threads, device, artifact, mode=("--serve",))
    rng = random.Random(seed)
    out: dict[float, tuple[list[float], list[float]]] = {float(g): ([], []) for g in gaps_s}
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                env=thread_env(threads), text=True, bufsize=1)
        watchdog = threading.Timer(PROBE_TIMEOUT_S, proc.kill)  # a hung replica is killed
        watchdog.daemon = True
        watchdog.start()
        assert proc.stdin is not None and proc.stdout is not None

        def reply() -> dict[str, Any]:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                proc.kill()
                proc.wait()
                err.seek(0)
                tail = " | ".join(err.read().strip().splitlines()[-3:])
                raise ProfilerError(f"serving replica failed (exit {proc.returncode}): "
                                    f"{' '.join(cmd[2:])}: {tail}") from None
            if msg.get("event") == "error":
                raise UserError(msg.get("message", "replica failed"))
            return msg

        def one() -> tuple[float, float]:
            t0 = time.perf_counter()
            proc.stdin.write("1\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            done = reply()
            return (time.perf_counter() - t0) * 1000.0, float(done["service_ms"])

        try:
            reply()  # ready: loaded, first prediction done
            one()  # past the first call's costs
            for _ in range(batches):
                order = list(out)
                rng.shuffle(order)
                for gap in order:
                    if gap > 0:
                        time.sleep(gap)
                    rt, pred = one()
                    out[gap][0].append(rt)
                    out[gap][1].append(pred)
            proc.stdin.close()
            proc.wait(timeout=30.0)
        finally:  # never leave a replica behind (timeout, Ctrl-C)
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


def serving_overhead(by_gap: Mapping[float, tuple[Sequence[float], Sequence[float]]],
                     reference_gap_s: float = SERVING_GAP_S) -> ServingOverhead:
    """The :class:`ServingOverhead` of round trips and predict times (ms) measured after idle
    gaps (``{gap_s: (roundtrip_ms, predict_ms)}``, see :func:`measure_serving`): each gap's
    overhead is its median round trip less the replica's own back-to-back predict median (the
    smallest gap's), scaled by ``fit_scale`` when some gap's round trip is faster than that
    (see the profile schema)."""
    gaps = sorted(by_gap)
    rt50 = {g: float(np.median(np.asarray(by_gap[g][0], dtype=float))) for g in gaps}
    p0 = float(np.median(np.asarray(by_gap[gaps[0]][1], dtype=float)))
    scale = min(1.0, min(rt50.values()) / p0) if p0 > 0 else 1.0
    over = {g: max(0.0, rt50[g] - scale * p0) for g in gaps}
    ref = min(gaps, key=lambda g: abs(g - reference_gap_s))
    rt_ref = np.asarray(by_gap[ref][0], dtype=float)
    return ServingOverhead(
        batches=len(rt_ref), gap_ms=round(ref * 1000.0, 3), roundtrip_ms_p50=rt50[ref],
        roundtrip_ms_p95=float(np.percentile(rt_ref, 95)),
        predict_ms_p50=float(np.median(np.asarray(by_gap[ref][1], dtype=float))),
        overhead_ms=over[ref], fit_scale=scale, backtoback_predict_ms_p50=p0,
        idle_overhead_ms=[(round(g * 1000.0, 3), over[g]) for g in gaps] if len(gaps) > 1
        else None,
        idle_roundtrip_ms_p50=[(round(g * 1000.0, 3), rt50[g]) for g in gaps],
    )


def measure_config(
    cfg: Config, artifact: Path, plan: TimingPlan, on_round: Callable[[float], None] | None
) -> Timings:
    """Load ``cfg.model`` in this process with ``cfg.threads`` threads and time its batches."""
    from simscale.profiler.measure import time_interleaved
    from simscale.profiler.zoo import load_model

    model = load_model(cfg.model, cfg.threads, cfg.device, artifact)
    batches = {b: model.make_inputs(b) for b in cfg.batch_sizes}
    return time_interleaved(model.predict, batches, plan, on_round=on_round)

