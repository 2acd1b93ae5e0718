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
    BatchTimer,
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
#: back-to-back predicts on one reused input per pass of a serving round (``loop_ms``): at
#: least this many, after one untimed call, and at least LOOP_MS_PER_PASS ms of them (a
#: sub-millisecond model needs tens of calls to reach the timing loop's steady state)
LOOP_CALLS_PER_PASS = 3
LOOP_MS_PER_PASS = 20.0


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


class ServingReplica:
    """A real serving replica process (``python -m simscale.profiler.replica --serve``) of one
    (model, device, threads), timed as a router sees it, a round at a time.

    :meth:`spawn` starts its process and :meth:`ready` waits until it has loaded the model (a
    ``with`` block does both, and :meth:`close` at its end: the replica never outlives it). Each
    :meth:`run_round` first sends one untimed batch (past the costs of the idle time before the
    round), then ``batches`` passes, each a batch of one item after every idle gap of ``gaps_s``
    (0: back to back) in a fresh random order, so that drift spreads over all the gaps.
    :attr:`by_gap` holds ``{gap_s: (roundtrip_ms, predict_ms)}``: per batch, the time from
    writing the batch to the replica's stdin to reading its answer, and the replica's own time
    around ``predict``. Each pass also asks the replica for back-to-back predicts of one
    reused input (:attr:`loop_ms`; :data:`LOOP_CALLS_PER_PASS`, :data:`LOOP_MS_PER_PASS`):
    the profiler's tight-loop timing, in the same process and interleaved with the round trips,
    so the two differ by what serving adds, not by the machine's speed drifting between them.
    """

    def __init__(self, model: str, device: str, threads: int, artifact: Path,
                 gaps_s: Sequence[float] = SERVING_GAPS_S, seed: int = 0) -> None:
        import random

        from simscale.profiler.replica import replica_command

        self.threads = threads
        self.cmd = replica_command(model, threads, device, artifact, mode=("--serve",))
        self.by_gap: dict[float, tuple[list[float], list[float]]] = {
            float(g): ([], []) for g in gaps_s}
        #: predict times (ms) of one reused input, back to back (see the class docstring)
        self.loop_ms: list[float] = []
        self._rng = random.Random(seed)
        self._proc: subprocess.Popen[str] | None = None
        self._err: Any = None
        self._watchdog: threading.Timer | None = None

    def spawn(self) -> ServingReplica:
        """Start the replica's process (without waiting for it: see :meth:`ready`)."""
        if self._proc is None:
            self._err = tempfile.TemporaryFile(mode="w+")
            self._proc = subprocess.Popen(
                self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                env=thread_env(self.threads), text=True, bufsize=1)
        return self

    def ready(self) -> ServingReplica:
        """Wait for the replica's ready line (loaded, first prediction done)."""
        try:
            self._reply()
        except BaseException:
            self.close(kill=True)
            raise
        return self

    def __enter__(self) -> ServingReplica:
        return self.spawn().ready() if self._proc is None else self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(kill=exc_type is not None)

    def _reply(self) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        self._arm()
        try:
            line = proc.stdout.readline()
        finally:
            self._disarm()
        return self._parse(line)

    def _parse(self, line: str, what: str = "serving") -> dict[str, Any]:
        """The replica's answer ``line`` as a dict; a replica that died (no JSON) is reaped and
        a :class:`ProfilerError` quotes its last lines of stderr; an ``error`` event is a
        :class:`UserError`."""
        proc = self._proc
        assert proc is not None
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            proc.kill()
            proc.wait()
            tail = ""
            if self._err is not None:
                self._err.seek(0)
                tail = " | ".join(self._err.read().strip().splitlines()[-3:])
            raise ProfilerError(f"{what} replica failed (exit {proc.returncode}): "
                                f"{' '.join(self.cmd[2:])}: {tail}") from None
        if msg.get("event") == "error":
            raise UserError(msg.get("message", "replica failed"))
        return msg

    def _arm(self) -> None:
        """A replica that does not answer within :data:`PROBE_TIMEOUT_S` is killed."""
        assert self._proc is not None
        self._watchdog = threading.Timer(PROBE_TIMEOUT_S, self._proc.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _one(self) -> tuple[float, float]:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        t0 = time.perf_counter()
        proc.stdin.write("1\n")
        proc.stdin.flush()
        done = self._reply()
        return (time.perf_counter() - t0) * 1000.0, float(done["service_ms"])

    def _loop(self, calls: int) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        from simscale.profiler.replica import LOOP_COMMAND

        proc.stdin.write(f"{LOOP_COMMAND} {calls} {LOOP_MS_PER_PASS}\n")
        proc.stdin.flush()
        self.loop_ms.extend(float(t) for t in self._reply()["predict_ms"])

    def run_round(self, batches: int) -> None:
        """One untimed batch, then ``batches`` timed rounds over the idle gaps."""
        if batches < 1:
            return
        self._one()  # past the first call's costs, and the idle time before this round
        for _ in range(batches):
            self._loop(LOOP_CALLS_PER_PASS)
            order = list(self.by_gap)
            self._rng.shuffle(order)
            for gap in order:
                if gap > 0:
                    time.sleep(gap)
                rt, pred = self._one()
                self.by_gap[gap][0].append(rt)
                self.by_gap[gap][1].append(pred)

    def close(self, kill: bool = False) -> None:
        """Stop the replica (end of its input; killed when it has not exited 30 s later, or at
        once with ``kill``) and reap it."""
        self._disarm()
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if not kill:
                    proc.stdin.close()  # type: ignore[union-attr]
                    proc.wait(timeout=30.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
            finally:  # never leave a replica behind (timeout, Ctrl-C)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                for pipe in (proc.stdin, proc.stdout):
                    try:
                        pipe.close()  # type: ignore[union-attr]
                    except OSError:
                        pass
        if self._err is not None:
            self._err.close()
            self._err = None


def measure_serving(
    model: str, device: str, threads: int, artifact: Path, batches: int,
    gaps_s: Sequence[float] = SERVING_GAPS_S, seed: int = 0,
) -> tuple[dict[float, tuple[list[float], list[float]]], list[float]]:
    """Time batches of one item through a real serving replica process after each idle gap of
    ``gaps_s`` (0: back to back), ``batches`` per gap, in one round of a
    :class:`ServingReplica`; returns its ``(by_gap, loop_ms)``."""
    with ServingReplica(model, device, threads, artifact, gaps_s, seed) as replica:
        replica.run_round(batches)
    return replica.by_gap, replica.loop_ms


def serving_overhead(by_gap: Mapping[float, tuple[Sequence[float], Sequence[float]]],
                     reference_gap_s: float = SERVING_GAP_S,
                     loop_ms: Sequence[float] | None = None) -> ServingOverhead:
    """The :class:`ServingOverhead` of round trips and predict times (ms) measured after idle
    gaps (``{gap_s: (roundtrip_ms, predict_ms)}``, see :func:`measure_serving`): each gap's
    overhead is its median round trip less the reference predict time, scaled by
    ``fit_scale`` when some gap's round trip is faster than that (see the profile schema). The
    reference is the median of ``loop_ms`` (the replica's tight-loop predicts of one reused
    input, the way the fit was timed) or, without them, the back-to-back predict median (the
    smallest gap's)."""
    gaps = sorted(by_gap)
    rt50 = {g: float(np.median(np.asarray(by_gap[g][0], dtype=float))) for g in gaps}
    p0 = float(np.median(np.asarray(by_gap[gaps[0]][1], dtype=float)))
    loop = float(np.median(np.asarray(loop_ms, dtype=float))) if loop_ms else None
    p_ref = p0 if loop is None else loop
    scale = min(1.0, min(rt50.values()) / p_ref) if p_ref > 0 else 1.0
    over = {g: max(0.0, rt50[g] - scale * p_ref) for g in gaps}
    ref = min(gaps, key=lambda g: abs(g - reference_gap_s))
    rt_ref = np.asarray(by_gap[ref][0], dtype=float)
    return ServingOverhead(
        batches=len(rt_ref), gap_ms=round(ref * 1000.0, 3), roundtrip_ms_p50=rt50[ref],
        roundtrip_ms_p95=float(np.percentile(rt_ref, 95)),
        predict_ms_p50=float(np.median(np.asarray(by_gap[ref][1], dtype=float))),
        overhead_ms=over[ref], fit_scale=scale, backtoback_predict_ms_p50=p0,
        loop_predict_ms_p50=loop,
        idle_overhead_ms=[(round(g * 1000.0, 3), over[g]) for g in gaps] if len(gaps) > 1
        else None,
        idle_roundtrip_ms_p50=[(round(g * 1000.0, 3), rt50[g]) for g in gaps],
    )


def config_timer(cfg: Config, artifact: Path, plan: TimingPlan, seed: int = 0) -> BatchTimer:
    """Load ``cfg.model`` in this process and return a :class:`BatchTimer` of its batches that
    sets ``cfg.threads`` (process-wide) before each of its rounds."""
    from simscale.profiler.zoo import load_model, set_threads

    model = load_model(cfg.model, cfg.threads, cfg.device, artifact)
    batches = {b: model.make_inputs(b) for b in cfg.batch_sizes}
    return BatchTimer(model.predict, batches, plan, seed=seed,
                      activate=lambda: set_threads(cfg.threads))


def measure_config(
    cfg: Config, artifact: Path, plan: TimingPlan, on_round: Callable[[float], None] | None
) -> Timings:
    """Load ``cfg.model`` in this process with ``cfg.threads`` threads and time its batches
    (every timing round back to back)."""
    timer = config_timer(cfg, artifact, plan)
    for _ in range(timer.rounds):
        timer.run_round(on_round)
    return timer.timings()
