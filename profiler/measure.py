"""Timing batches, and turning latency samples into the profile's statistics.

A batch is timed with :func:`time.perf_counter_ns` around one call of the model's ``predict`` (for
CUDA the predict function copies its result back to the host, which synchronises).

The batch sizes of one (model, device, threads) are timed *interleaved*: after a warm-up of each,
the run proceeds in rounds, and every round runs every batch size (in a fresh random order)
``reps(b)`` times, ``reps(b)`` chosen so that each batch size gets about the same time per round.
Interference that comes and goes on a shared machine (other processes, frequency changes) is so
spread over all batch sizes instead of spoiling whichever one happened to be measured at that
moment, and consecutive batches of different sizes are what a server with dynamic batching sees.

What other processes still take -- the CPU itself, when they hold it while a call is runnable --
is measured by the kernel (run-queue wait per thread, ``schedstat``) and taken out of each call's
time, so that a profile measured on a shared machine describes the model and the machine, not the
neighbours. How much was taken out is reported (:meth:`Timings.contention`).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simscale.profiler.schema import LatencyStats

#: At most this many samples per batch size are stored in a profile (statistics use all).
MAX_STORED_SAMPLES = 200


@dataclass(frozen=True)
class TimingPlan:
    """How long to time the batch sizes of one (model, device, threads).

    Warm-up: each batch size runs until ``warmup_min_runs`` runs *and* ``warmup_s`` seconds are
    done (at most ``warmup_max_runs`` runs). Timing: rounds run until ``min_rounds`` rounds *and*
    ``budget_s`` seconds are done, or every batch size has ``max_runs`` samples. On a machine so
    busy that ``min_rounds`` take longer than ``hard_limit_s``, timing stops there as soon as every
    batch size has ``hard_min_runs`` samples.
    """

    warmup_min_runs: int = 1
    warmup_s: float = 0.3
    warmup_max_runs: int = 500
    min_rounds: int = 8
    budget_s: float = 10.0
    max_runs: int = 2000
    hard_limit_s: float | None = None
    hard_min_runs: int = 3


def warm_up(predict: Callable[[Any], Any], batch: Any, plan: TimingPlan) -> float:
    """Run ``predict(batch)`` per the plan's warm-up; return the median warm run time (s)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < plan.warmup_min_runs or (
        time.perf_counter() - start < plan.warmup_s and len(times) < plan.warmup_max_runs
    ):
        t0 = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - t0)
    warm = times[len(times) // 2 :] or times  # the later half: past the first-call costs
    return float(np.median(warm))


class RunQueueWait:
    """How long this process's threads waited for a CPU (run-queue wait, from the kernel's
    ``/proc/self/task/*/schedstat``); a no-op where the file does not exist."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        self.available = os.path.exists("/proc/thread-self/schedstat")
        self.refresh()

    def refresh(self) -> None:
        """(Re)open the files of the threads that exist now (intra-op pools start lazily)."""
        self.close()
        if not self.available:
            return
        try:
            tids = os.listdir("/proc/self/task")
        except OSError:
            return
        for tid in tids:
            try:
                self._fds.append(os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY))
            except OSError:
                continue

    def read_ns(self) -> list[int]:
        """Cumulative run-queue wait (ns) of each thread, in a fixed order."""
        out = []
        for fd in self._fds:
            try:
                out.append(int(os.pread(fd, 64, 0).split()[1]))
            except (OSError, ValueError, IndexError):
                out.append(0)
        return out

    def close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []


@dataclass
class Timings:
    """What :func:`time_interleaved` measured, per batch size (ms per batch, in time order).

    ``samples_ms`` are the service times: the wall time of each call less the longest
    run-queue wait of any of this process's threads during it -- the time the call spent
    runnable but with no CPU because *other* processes had it -- but never less than the fastest
    wall time observed for that batch size. ``wall_ms`` are the raw wall times. On a quiet machine
    the two are the same; with a multi-threaded replica on a machine whose other cores are busy
    the correction is large and approximate (``contention()`` says how large).
    """

    samples_ms: dict[int, np.ndarray]
    wall_ms: dict[int, np.ndarray]

    def contention(self) -> dict[str, float]:
        """Share of calls that waited for a CPU, and the waits' share of all wall time."""
        wall = np.concatenate(list(self.wall_ms.values()))
        svc = np.concatenate(list(self.samples_ms.values()))
        return {
            "calls_waited_fraction": round(float(np.mean(wall - svc > 1e-6)), 4),
            "wait_share_of_wall_time": round(float(1.0 - svc.sum() / wall.sum()), 4),
        }


def time_interleaved(
    predict: Callable[[Any], Any],
    batches: Mapping[int, Any],
    plan: TimingPlan,
    *,
    seed: int = 0,
    on_round: Callable[[float], None] | None = None,
    subtract_run_queue_wait: bool = True,
) -> Timings:
    """Time ``predict`` on each batch of ``batches`` (batch size -> input), interleaved in rounds.

    ``on_round(fraction_done)`` is called after each round (for progress bars). With
    ``subtract_run_queue_wait`` the run-queue wait of the process's threads during a call is
    taken out of its time (see :class:`Timings`).
    """
    sizes = sorted(batches)
    gc.collect()
    est_s = {b: max(warm_up(predict, batches[b], plan), 1e-7) for b in sizes}
    share_s = plan.budget_s / (plan.min_rounds * len(sizes))
    reps = {b: int(min(max(1, share_s // est_s[b]), plan.max_runs)) for b in sizes}
    wall: dict[int, list[int]] = {b: [] for b in sizes}
    waits: dict[int, list[int]] = {b: [] for b in sizes}
    rq = RunQueueWait() if subtract_run_queue_wait else None
    rng = np.random.default_rng(seed)
    clock = time.perf_counter_ns
    budget_ns = int(plan.budget_s * 1e9)
    start_ns = clock()
    rounds = 0
    try:
        while True:
            active = [b for b in sizes if len(wall[b]) < plan.max_runs]
            if not active:
                break
            if rq is not None:
                rq.refresh()
            for i in rng.permutation(len(active)):
                b = active[i]
                batch = batches[b]
                out, out_wait = wall[b], waits[b]
                for _ in range(min(reps[b], plan.max_runs - len(out))):
                    w0 = rq.read_ns() if rq is not None else None
                    t0 = clock()
                    predict(batch)
                    t1 = clock()
                    out.append(t1 - t0)
                    if w0 is not None:
                        w1 = rq.read_ns()  # type: ignore[union-attr]
                        wait = max((a - z for a, z in zip(w1, w0, strict=True)), default=0)
                        out_wait.append(max(0, min(wait, t1 - t0)))
                    else:
                        out_wait.append(0)
            rounds += 1
            # re-estimate each batch's time from what was measured (the warm-up may have been
            # disturbed), so that every batch size keeps its share of the rounds
            for b in active:
                recent = np.asarray(wall[b][-50:], dtype=float) - np.asarray(waits[b][-50:])
                est = max(float(np.median(recent)) / 1e9, 1e-7)
                reps[b] = int(min(max(1, share_s // est), plan.max_runs))
            elapsed_ns = clock() - start_ns
            if on_round is not None:
                on_round(min(1.0, max(rounds / plan.min_rounds, elapsed_ns / budget_ns)))
            if rounds >= plan.min_rounds and elapsed_ns >= budget_ns:
                break
            if (
                plan.hard_limit_s is not None
                and elapsed_ns >= plan.hard_limit_s * 1e9
                and all(len(v) >= plan.hard_min_runs for v in wall.values())
            ):
                break
    finally:
        if rq is not None:
            rq.close()
    wall_ms = {b: np.asarray(wall[b], dtype=float) / 1e6 for b in sizes}
    svc_ms = {}
    for b in sizes:
        corrected = wall_ms[b] - np.asarray(waits[b], dtype=float) / 1e6
        # a wait that began before the call (a worker thread already queued) can be taken out
        # in full; no call is credited with less than the fastest call actually observed
        svc_ms[b] = np.maximum(corrected, wall_ms[b].min())
    return Timings(samples_ms=svc_ms, wall_ms=wall_ms)


def latency_stats(
    batch_size: int,
    samples_ms: np.ndarray,
    peak_memory_mb: float | None = None,
    max_stored: int = MAX_STORED_SAMPLES,
) -> LatencyStats:
    """Statistics of one batch size's latencies (ms per batch).

    Percentiles are ``numpy.percentile`` (linear interpolation) of all samples; ``std_ms`` is the
    sample standard deviation (ddof=1); ``items_per_s`` is ``batch_size / mean``. At most
    ``max_stored`` samples are stored: every k-th in time order, so drift stays visible.
    """
    x = np.asarray(samples_ms, dtype=float)
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    mean = float(x.mean())
    return LatencyStats(
        batch_size=batch_size,
        samples_ms=[round(float(v), 5) for v in subsample(x, max_stored)],
        mean_ms=mean,
        std_ms=float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        p50_ms=float(p50),
        p95_ms=float(p95),
        p99_ms=float(p99),
        items_per_s=batch_size / (mean / 1000.0),
        peak_memory_mb=peak_memory_mb,
    )


def subsample(x: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` elements of ``x``, evenly spaced in order (all of ``x`` if it is short)."""
    if len(x) <= n:
        return x
    idx = np.round(np.linspace(0, len(x) - 1, n)).astype(int)
    return x[idx]
