"""``run_profile``: measure the real models on this machine and build a :class:`Profile`.

The order of work:

1. validate every argument (bad ones raise :class:`UserError` before anything runs);
2. train/build each model once and save its artifact (what a replica loads) in a temporary
   folder; time ResNet50's image preprocessing per image;
3. per (model, device, threads): load the model in this process with that thread count and time
   all its batch sizes interleaved (:func:`~simscale.profiler.measure.time_interleaved`);
4. peak memory per (model, device, threads, batch size), each in a fresh replica process
   (``replica --memory-batch B``), two at a time on CPU;
5. cold start per (model, device): fresh replica processes (``replica --probe``) one after
   another, timed from ``Popen`` to the line printed after the first prediction;
6. serving overhead per (model, device, threads): a fresh serving replica (``replica --serve``)
   sent isolated batches of one item, timed as a router sees them (:func:`measure_serving`);
7. fit the service-time model of every (model, device, threads) and write the profile atomically.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simscale.errors import UserError
from simscale.profiler.fingerprint import machine_fingerprint
from simscale.profiler.fit import fit_service_time
from simscale.profiler.measure import (
    MAX_STORED_SAMPLES,
    TimingPlan,
    Timings,
    latency_stats,
    subsample,
)
from simscale.profiler.schema import (
    SCHEMA,
    ColdStart,
    ConfigProfile,
    ModelProfile,
    Preprocessing,
    Profile,
    ServingOverhead,
)
from simscale.profiler.zoo import MODEL_NAMES, MODELS, check_model_name, thread_env

DEVICES = ("cpu", "cuda")
REQUIRED_MODULES = ("torch", "torchvision", "xgboost", "sklearn", "threadpoolctl", "PIL")
#: Seconds a replica probe may take before it is killed.
PROBE_TIMEOUT_S = 600.0


#: mean idle gap (s) between the isolated batches that measure a serving replica; the real
#: cluster's warm-up (``simscale validate``) uses the same, so both measure the same thing
SERVING_GAP_S = 0.05
#: idle gaps (s) after which the profiler times a serving replica (0: back to back)
SERVING_GAPS_S = (0.0, 0.002, 0.01, 0.05, 0.2)


class ProfilerError(RuntimeError):
    """A measurement failed for a reason that is not the user's input (e.g. a probe crashed)."""


@dataclass(frozen=True)
class RunPlan:
    """How much to measure: timing plans per model kind and the number of fresh-process probes.

    ``retry_wait_share``: a configuration whose timing lost more than this share of its wall time
    to other processes is timed again (once, and only within ``retry_until_s`` of the start).
    """

    tabular: TimingPlan
    resnet_cpu: TimingPlan
    resnet_cuda: TimingPlan
    cold_start_samples: int
    preprocessing_samples: int
    memory_parallel: int
    serving_batches: int = 20  # per idle gap
    retry_wait_share: float | None = None
    retry_until_s: float = 0.0

    @classmethod
    def full(cls) -> RunPlan:
        return cls(
            tabular=TimingPlan(warmup_s=0.1, min_rounds=20, budget_s=2.0, max_runs=2000),
            resnet_cpu=TimingPlan(warmup_s=1.0, min_rounds=8, budget_s=30.0, max_runs=2000,
                                  hard_limit_s=240.0),
            resnet_cuda=TimingPlan(warmup_s=2.0, min_rounds=10, budget_s=15.0, max_runs=2000),
            cold_start_samples=5,
            preprocessing_samples=100,
            memory_parallel=2,
            serving_batches=20,
            retry_wait_share=0.10,
            retry_until_s=300.0,
        )

    @classmethod
    def quick(cls) -> RunPlan:
        return cls(
            tabular=TimingPlan(warmup_s=0.05, min_rounds=10, budget_s=0.3, max_runs=1000),
            resnet_cpu=TimingPlan(warmup_s=0.3, min_rounds=5, budget_s=2.5, max_runs=500,
                                  hard_limit_s=15.0),
            resnet_cuda=TimingPlan(warmup_s=1.0, min_rounds=5, budget_s=3.0, max_runs=500),
            cold_start_samples=2,
            preprocessing_samples=20,
            memory_parallel=2,
            serving_batches=8,
        )


@dataclass(frozen=True)
class _Config:
    model: str
    device: str
    threads: int
    batch_sizes: tuple[int, ...]


# -- argument validation ----------------------------------------------------------------------


def _as_list(value: Any, what: str) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, int | float):
        items = [value]
    else:
        try:
            items = list(value)
        except TypeError:
            raise UserError(f"expected a list, got {value!r}", field=what) from None
    if not items:
        raise UserError("must not be empty", field=what)
    return items


def _positive_ints(values: Sequence[Any], what: str) -> list[int]:
    out = []
    for v in values:
        try:
            if isinstance(v, bool) or float(v) != int(float(v)):
                raise ValueError
            n = int(float(v))
        except (TypeError, ValueError):
            raise UserError(f"{v!r} is not a whole number", field=what) from None
        if n < 1:
            raise UserError(f"must be at least 1 (got {n})", field=what)
        out.append(n)
    return sorted(set(out))


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_dependencies() -> None:
    """Raise :class:`UserError` when a library the profiler needs is not installed."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            "profiling needs the profile extra (pip install 'simscale[profile]'); missing: "
            + ", ".join(missing)
        )


def plan_configs(
    models: Sequence[str] | str | None = None,
    devices: Sequence[str] | str | None = None,
    threads: Sequence[int] | int | str | None = None,
    batch_sizes: Sequence[int] | Mapping[str, Sequence[int]] | int | str | None = None,
    quick: bool = False,
) -> tuple[list[str], list[_Config], list[str]]:
    """Validate the arguments; return (models, configs to measure, notes on skipped ones)."""
    model_list = _as_list(models, "models") or list(MODEL_NAMES)
    for name in model_list:
        check_model_name(str(name))
    model_list = list(dict.fromkeys(str(m) for m in model_list))
    device_list = _as_list(devices, "device") or ["cpu"]
    for dev in device_list:
        if dev not in DEVICES:
            raise UserError(f"unknown device '{dev}' (valid: cpu, cuda)", field="device")
    device_list = list(dict.fromkeys(device_list))
    if "cuda" in device_list and not _cuda_available():
        raise UserError(
            "cuda was requested but no GPU is available (torch.cuda.is_available() is false)",
            field="device",
        )
    thread_list = _as_list(threads, "threads")
    threads_given = _positive_ints(thread_list, "threads") if thread_list is not None else None
    per_model: dict[str, list[int]] | None = None
    common: list[int] | None = None
    if isinstance(batch_sizes, Mapping):
        per_model = {}
        for name, sizes in batch_sizes.items():
            check_model_name(str(name))
            per_model[str(name)] = _positive_ints(
                _as_list(sizes, "batch_sizes") or [], "batch_sizes"
            )
    elif batch_sizes is not None:
        common = _positive_ints(_as_list(batch_sizes, "batch_sizes") or [], "batch_sizes")

    configs: list[_Config] = []
    skipped: list[str] = []
    for name in model_list:
        spec = MODELS[name]
        for dev in device_list:
            if dev not in spec.devices:
                runs_on = ", ".join(spec.devices)
                skipped.append(f"{name} on {dev}: {spec.framework} runs on {runs_on}")
                continue
            if per_model is not None and name in per_model:
                sizes = per_model[name]
            elif common is not None:
                sizes = common
            elif quick:
                sizes = list(spec.batch_sizes_quick)
            else:
                sizes = list(spec.batch_sizes_cpu if dev == "cpu" else spec.batch_sizes_cuda)
            if threads_given is not None:
                thread_counts = threads_given
            else:
                thread_counts = [1] if (quick or dev == "cuda") else [1, 2]
            for t in thread_counts:
                configs.append(_Config(name, dev, t, tuple(sizes)))
    if not configs:
        raise UserError("nothing to measure: " + "; ".join(skipped), field="device")
    return model_list, configs, skipped


def _check_output(output: str | Path | None) -> Path | None:
    if output is None:
        return None
    path = Path(output)
    if path.is_dir():
        raise UserError("is a directory, expected a file path", source=path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"'{parent}' is not a directory", source=path)
            if not os.access(parent, os.W_OK):
                raise UserError(f"folder '{parent}' is not writable", source=path)
            break
    return path


# -- progress ---------------------------------------------------------------------------------


class _Progress:
    """A rich progress bar that only redraws when told to (never during a timed call)."""

    def __init__(self, enabled: bool, total: float, console: Any = None):
        self._bar = None
        self._last = 0.0
        self.done = 0.0
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]profile[/]"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console or Console(stderr=True),
            auto_refresh=False,
            transient=False,
        )
        self._task = self._bar.add_task("starting", total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()

    def step(self, description: str | None = None, advance: float = 0.0) -> None:
        self.done += advance
        if self._bar is None:
            return
        self._bar.update(self._task, completed=self.done, description=description or None)
        now = time.monotonic()
        if advance or description or now - self._last > 0.25:
            self._last = now
            self._bar.refresh()

    def partial(self, base: float, weight: float) -> Callable[[float], None]:
        """A callback showing ``fraction`` of a step of ``weight`` that started at ``base``."""

        def show(fraction: float) -> None:
            if self._bar is None:
                return
            now = time.monotonic()
            if now - self._last < 0.25:
                return
            self._last = now
            self._bar.update(self._task, completed=base + weight * fraction)
            self._bar.refresh()

        return show


# -- measurement steps ------------------------------------------------------------------------


def _stats_s(samples: Sequence[float]) -> tuple[float, float, float]:
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
    cfg: _Config, artifact: Path, plan: TimingPlan, on_round: Callable[[float], None] | None
) -> Timings:
    """Load ``cfg.model`` in this process with ``cfg.threads`` threads and time its batches."""
    from simscale.profiler.measure import time_interleaved
    from simscale.profiler.zoo import load_model

    model = load_model(cfg.model, cfg.threads, cfg.device, artifact)
    batches = {b: model.make_inputs(b) for b in cfg.batch_sizes}
    return time_interleaved(model.predict, batches, plan, on_round=on_round)


@contextmanager
def _artifact_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="simscale-profile-") as tmp:
        yield Path(tmp)


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


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

    Raises :class:`UserError` for bad arguments before anything is measured or written.
    """
    wall_t0 = time.perf_counter()
    check_dependencies()
    model_list, configs, skipped = plan_configs(models, devices, threads, batch_sizes, quick)
    out_path = _check_output(output)
    weights = Path(weights_path) if weights_path is not None else None
    if weights is not None and not weights.is_file():
        raise UserError("weights file not found", source=weights)
    plan = RunPlan.quick() if quick else RunPlan.full()
    load_before = _loadavg()
    cold_threads = {(c.model, c.device): c.threads for c in reversed(configs)}  # the smallest

    def timing_plan(cfg: _Config) -> TimingPlan:
        if cfg.model != "resnet50":
            return plan.tabular
        return plan.resnet_cpu if cfg.device == "cpu" else plan.resnet_cuda

    # progress weights: rough seconds per step, so that the bar moves evenly
    w_train = {"linear_regression": 0.5, "xgboost": 1.0, "resnet50": 3.0}
    w_probe = {"linear_regression": 1.2, "xgboost": 1.3, "resnet50": 3.0}
    w_serve = {"linear_regression": 0.001, "xgboost": 0.002, "resnet50": 0.1}  # s per batch

    def serve_weight(cfg: _Config) -> float:  # a replica start, then every gap and batch
        return w_probe[cfg.model] + plan.serving_batches * (
            sum(SERVING_GAPS_S) + len(SERVING_GAPS_S) * w_serve[cfg.model])

    mem_jobs = [(c, b) for c in configs for b in c.batch_sizes]
    total = (
        sum(w_train[m] for m in model_list)
        + (2.0 if "resnet50" in model_list else 0.0)
        + sum(
            timing_plan(c).budget_s * (2.0 if c.model == "resnet50" else 1.5) for c in configs
        )
        + sum(w_probe[c.model] for c, _ in mem_jobs) / max(1, plan.memory_parallel)
        + sum(w_probe[m] * plan.cold_start_samples for m, _ in cold_threads)
        + sum(serve_weight(c) for c in configs)
    )

    from simscale.profiler.zoo import train_model

    phases_s: dict[str, float] = {}
    t_phase = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t_phase
        now = time.perf_counter()
        phases_s[name] = round(now - t_phase, 2)
        t_phase = now

    with _artifact_dir() as art_dir, _Progress(progress, total, console) as bar:
        trained = {}
        for name in model_list:
            bar.step(f"building {name}")
            trained[name] = train_model(name, art_dir, weights if name == "resnet50" else None)
            bar.step(advance=w_train[name])
        pre = None
        if "resnet50" in model_list:
            bar.step("resnet50 preprocessing")
            pre = measure_preprocessing(plan.preprocessing_samples, min(c.threads for c in configs))
            bar.step(advance=2.0)
        phase("build_and_preprocessing")

        timings: dict[_Config, Timings] = {}
        for cfg in configs:
            weight = timing_plan(cfg).budget_s * (2.0 if cfg.model == "resnet50" else 1.5)
            bar.step(f"timing {cfg.model} {cfg.device} {cfg.threads}t b={list(cfg.batch_sizes)}")
            timings[cfg] = measure_config(
                cfg, trained[cfg.model].artifact, timing_plan(cfg), bar.partial(bar.done, weight)
            )
            bar.step(advance=weight)
        # a configuration that other processes disturbed (their run-queue wait was more than
        # plan.retry_wait_share of its wall time) is timed once more, while the time budget
        # lasts; the less disturbed of the two measurements is kept
        retried: dict[str, list[float]] = {}
        for cfg in configs:
            share = timings[cfg].contention()["wait_share_of_wall_time"]
            if (
                plan.retry_wait_share is None
                or share <= plan.retry_wait_share
                or time.perf_counter() - wall_t0 > plan.retry_until_s
            ):
                continue
            bar.step(f"re-timing {cfg.model} {cfg.device} {cfg.threads}t (machine was busy)")
            again = measure_config(cfg, trained[cfg.model].artifact, timing_plan(cfg), None)
            share2 = again.contention()["wait_share_of_wall_time"]
            retried[f"{cfg.model}/{cfg.device}/{cfg.threads}"] = [share, share2]
            if share2 < share:
                timings[cfg] = again
        phase("timing")

        bar.step("peak memory (fresh replicas)")
        memory: dict[tuple[_Config, int], float] = {}

        def mem_job(job: tuple[_Config, int]) -> tuple[tuple[_Config, int], float]:
            cfg, b = job
            return job, measure_memory(cfg.model, cfg.device, cfg.threads,
                                       trained[cfg.model].artifact, b)

        with ThreadPoolExecutor(max_workers=max(1, plan.memory_parallel)) as pool:
            for job, mb in pool.map(mem_job, mem_jobs):
                memory[job] = mb
                bar.step(advance=w_probe[job[0].model] / max(1, plan.memory_parallel))
        phase("memory")

        cold: dict[str, list[ColdStart]] = {m: [] for m in model_list}
        for (name, dev), t in cold_threads.items():
            bar.step(f"cold start {name} {dev} ({plan.cold_start_samples} fresh replicas)")
            cold[name].append(
                measure_cold_start(name, dev, t, trained[name].artifact, plan.cold_start_samples)
            )
            bar.step(advance=w_probe[name] * plan.cold_start_samples)
        phase("cold_start")

        served: dict[_Config, tuple[list[float], list[float]]] = {}
        for cfg in configs:
            bar.step(f"serving {cfg.model} {cfg.device} {cfg.threads}t "
                     f"({plan.serving_batches} batches after each idle gap)")
            served[cfg] = measure_serving(cfg.model, cfg.device, cfg.threads,
                                          trained[cfg.model].artifact, plan.serving_batches)
            bar.step(advance=serve_weight(cfg))
        phase("serving")

        bar.step("fitting service-time models")
        model_profiles = {}
        for name in model_list:
            cfg_profiles = []
            for cfg in (c for c in configs if c.model == name):
                samples = timings[cfg].samples_ms
                fit = fit_service_time(samples)
                cfg_profiles.append(
                    ConfigProfile(
                        device=cfg.device,
                        threads=cfg.threads,
                        batches=[
                            latency_stats(b, samples[b], memory.get((cfg, b)))
                            for b in sorted(samples)
                        ],
                        fit=fit,
                        serving=serving_overhead(served[cfg]),
                    )
                )
            tm = trained[name]
            model_profiles[name] = ModelProfile(
                name=name,
                description=f"{MODELS[name].description}; weights: {tm.weights}",
                framework=MODELS[name].framework,
                quality=tm.quality,
                n_parameters=tm.n_parameters,
                model_size_mb=round(tm.model_size_mb, 4),
                input_shape=tm.input_shape,
                preprocessing=pre if name == "resnet50" else None,
                cold_start=cold[name],
                configs=cfg_profiles,
            )
        phase("fit")
        bar.step("done")

    settings = {
        "quick": quick,
        "models": model_list,
        "configs": [
            {"model": c.model, "device": c.device, "threads": c.threads,
             "batch_sizes": list(c.batch_sizes)}
            for c in configs
        ],
        "skipped": skipped,
        "timing": {
            "method": "interleaved rounds of all batch sizes (random order per round), "
            "perf_counter_ns around one predict call, after a warm-up per batch size",
            "tabular": asdict(plan.tabular),
            "resnet50_cpu": asdict(plan.resnet_cpu),
            **({"resnet50_cuda": asdict(plan.resnet_cuda)}
               if any(c.device == "cuda" for c in configs) else {}),
            "stored_samples_max": MAX_STORED_SAMPLES,
            "run_queue_wait": "subtracted: each sample is the call's wall time less the longest "
            "run-queue wait (kernel schedstat) of a thread of the process during it",
            "contention": {
                f"{c.model}/{c.device}/{c.threads}": timings[c].contention() for c in configs
            },
            "retimed_wait_shares": retried,
        },
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
            "method": "a fresh 'python -m simscale.profiler.replica --serve' per (model, device, "
            "threads), sent batches of one item after each idle gap (interleaved rounds); round "
            "trip = write the batch to its stdin .. read its answer; per gap, the overhead = "
            "median round trip less the replica's own back-to-back predict median (x fit_scale); "
            "the simulator adds the overhead of each batch's actual idle time",
        },
        "weights_path": str(weights) if weights is not None else None,
        "load_average_before": load_before,
        "load_average_after": _loadavg(),
        "phases_s": phases_s,
        "wall_time_s": round(time.perf_counter() - wall_t0, 1),
    }
    profile = Profile.model_validate(
        {
            "schema": SCHEMA,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "settings": settings,
            "machine": machine_fingerprint(include_libraries=True),
            "models": model_profiles,
        }
    )
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
