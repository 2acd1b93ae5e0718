"""Timing batches, and turning latency samples into the profile's statistics.

A batch is timed with :func:`time.perf_counter_ns` around one call of the model's ``predict`` (for
CUDA the predict function copies its result back to the host, which synchronises).

The batch sizes of one (model, device, threads) are timed *interleaved*: after a warm-up of each,
the timing proceeds in passes, and every pass runs every batch size (in a fresh random order)
``reps(b)`` times, ``reps(b)`` chosen so that each batch size gets about the same time per pass.
Interference that comes and goes on a shared machine (other processes, frequency changes) is so
spread over all batch sizes instead of spoiling whichever one happened to be measured at that
moment, and consecutive batches of different sizes are what a server with dynamic batching sees.

The passes are grouped into ``TimingPlan.timing_rounds`` *timing rounds* (:class:`BatchTimer`
runs one round at a time), so that the rounds of several configurations, and the serving
measurements, can take turns (:mod:`simscale.profiler.rounds`). Per batch size the profile keeps
the median of the rounds' medians (:meth:`Timings.p50_ms`): a change of the machine's speed
that lasts less than half of the rounds does not move it, and one that lasts longer reaches
every configuration alike instead of only those measured after it began.

What other processes still take -- the CPU itself, when they hold it while a call is runnable --
is measured by the kernel (run-queue wait per thread, ``schedstat``) and taken out of each call's
time, so that a profile measured on a shared machine describes the model and the machine, not the
neighbours. How much was taken out is reported (:meth:`Timings.contention`).
"""

from __future__ import annotations

import gc
import math
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
    done (at most ``warmup_max_runs`` runs). Timing: ``timing_rounds`` rounds, each of
    ``budget_s / timing_rounds`` seconds and at least ``round(min_rounds / timing_rounds)``
    passes (at least one) over the batch sizes, at most ``ceil(max_runs / timing_rounds)`` runs
    of a batch size per round (so ``min_rounds`` is about the number of passes in all; the name
    predates the timing rounds). On a machine so busy that a round's passes take longer than
    ``hard_limit_s / timing_rounds``, the round stops there as soon as every batch size has
    ``ceil(hard_min_runs / timing_rounds)`` samples in it. Before each round but the first, the
    smallest batch size runs untimed for ``rewarm_s`` seconds (at least once): another
    configuration may have run in between.
    """

    warmup_min_runs: int = 1
    warmup_s: float = 0.3
    warmup_max_runs: int = 500
    min_rounds: int = 8
    budget_s: float = 10.0
    max_runs: int = 2000
    hard_limit_s: float | None = None
    hard_min_runs: int = 3
    timing_rounds: int = 1
    rewarm_s: float = 0.02


def warm_up(predict: Callable[[Any], Any], batch: Any, plan: TimingPlan, *,
            timer: Callable[[], float] = time.perf_counter) -> float:
    """Run ``predict(batch)`` per the plan's warm-up; return the median warm run time (s)."""
    times: list[float] = []
    start = timer()
    while len(times) < plan.warmup_min_runs or (
        timer() - start < plan.warmup_s and len(times) < plan.warmup_max_runs
    ):
        t0 = timer()
        predict(batch)
        times.append(timer() - t0)
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
    """What a :class:`BatchTimer` measured, per batch size (ms per batch, in time order).

    ``samples_ms`` are the service times: the wall time of each call less the longest
    run-queue wait of any of this process's threads during it -- the time the call spent
    runnable but with no CPU because *other* processes had it -- but never less than the fastest
    wall time observed for that batch size. ``wall_ms`` are the raw wall times. On a quiet machine
    the two are the same; with a multi-threaded replica on a machine whose other cores are busy
    the correction is large and approximate (``contention()`` says how large). ``round_of``: the
    timing round (0, 1, ...) of each sample (``None``: all in one round).
    """

    samples_ms: dict[int, np.ndarray]
    wall_ms: dict[int, np.ndarray]
    round_of: dict[int, np.ndarray] | None = None

    def contention(self) -> dict[str, float]:
        """Share of calls that waited for a CPU, and the waits' share of all wall time."""
        wall = np.concatenate(list(self.wall_ms.values()))
        svc = np.concatenate(list(self.samples_ms.values()))
        return {
            "calls_waited_fraction": round(float(np.mean(wall - svc > 1e-6)), 4),
            "wait_share_of_wall_time": round(float(1.0 - svc.sum() / wall.sum()), 4),
        }

    def round_p50_ms(self, batch_size: int) -> np.ndarray:
        """The median service time (ms) of ``batch_size`` in each timing round, in round order
        (rounds without a sample of it are skipped)."""
        x = np.asarray(self.samples_ms[batch_size], dtype=float)
        if self.round_of is None:
            return np.array([float(np.median(x))])
        rounds = np.asarray(self.round_of[batch_size])
        return np.array([float(np.median(x[rounds == r])) for r in np.unique(rounds)])

    def p50_ms(self, batch_size: int) -> float:
        """The profile's median (ms) of ``batch_size``: the median of its rounds' medians."""
        return float(np.median(self.round_p50_ms(batch_size)))

    def profile_samples_ms(self) -> dict[int, np.ndarray]:
        """Per batch size, the pooled samples of all rounds scaled so that their median is
        :meth:`p50_ms`: what the profile stores and fits (every percentile, the noise). On a
        steady machine the factor is about 1; the spread between rounds stays in the samples."""
        out = {}
        for b, x in self.samples_ms.items():
            x = np.asarray(x, dtype=float)
            pooled = float(np.median(x))
            out[b] = x * (self.p50_ms(b) / pooled) if pooled > 0 else x
        return out


class BatchTimer:
    """Times ``predict`` on each batch of ``batches`` (batch size -> input) one timing round at a
    time (:meth:`run_round`), interleaved in passes within the round (see the module docstring).

    ``activate()`` is called before each round (e.g. to set this configuration's thread count,
    which is process-wide). ``clock`` (ns) times everything, warm-ups and budgets included; with
    ``subtract_run_queue_wait`` the run-queue wait of the process's threads during a call is taken
    out of its time (see :class:`Timings`). Tests pass a fake ``predict`` and ``clock``.
    """

    def __init__(self, predict: Callable[[Any], Any], batches: Mapping[int, Any],
                 plan: TimingPlan, *, seed: int = 0, activate: Callable[[], None] | None = None,
                 clock: Callable[[], int] = time.perf_counter_ns,
                 subtract_run_queue_wait: bool = True) -> None:
        self.predict = predict
        self.batches = dict(batches)
        self.plan = plan
        self.sizes = sorted(self.batches)
        self.rounds_done = 0
        self._activate = activate
        self._clock = clock
        self._seed = seed
        self._subtract = subtract_run_queue_wait
        self._rng = np.random.default_rng(seed)
        self._reps: dict[int, int] = {}
        self._wall: dict[int, list[int]] = {b: [] for b in self.sizes}
        self._wait: dict[int, list[int]] = {b: [] for b in self.sizes}
        self._round: dict[int, list[int]] = {b: [] for b in self.sizes}

    def fresh(self) -> BatchTimer:
        """A timer of the same model, batches and plan with nothing measured yet."""
        return BatchTimer(self.predict, self.batches, self.plan, seed=self._seed + 1,
                          activate=self._activate, clock=self._clock,
                          subtract_run_queue_wait=self._subtract)

    @property
    def rounds(self) -> int:
        return max(1, self.plan.timing_rounds)

    def _seconds(self) -> float:
        return self._clock() / 1e9

    def _share_s(self) -> float:
        """Seconds each batch size gets per pass."""
        passes = max(1, round(self.plan.min_rounds / self.rounds))
        return self.plan.budget_s / self.rounds / (passes * len(self.sizes))

    def _warm(self) -> None:
        """The first round: warm up every batch size (and estimate its time); later rounds:
        run the smallest batch size for ``rewarm_s``."""
        if not self._reps:
            share_s = self._share_s()
            for b in self.sizes:
                est = max(warm_up(self.predict, self.batches[b], self.plan,
                                  timer=self._seconds), 1e-7)
                self._reps[b] = int(min(max(1, share_s // est), self.plan.max_runs))
            return
        small = self.batches[self.sizes[0]]
        t0 = self._clock()
        self.predict(small)
        while self._clock() - t0 < self.plan.rewarm_s * 1e9:
            self.predict(small)

    def run_round(self, on_pass: Callable[[float], None] | None = None) -> None:
        """Run the next timing round; ``on_pass(fraction of this timer's rounds done)`` is
        called after each pass (for progress bars)."""
        plan, r = self.plan, self.rounds_done
        if self._activate is not None:
            self._activate()
        # a full collection (0.4 s with torch loaded) before the first round; the young
        # generations (microseconds) before the others
        gc.collect(2 if r == 0 else 1)
        self._warm()
        passes_min = max(1, round(plan.min_rounds / self.rounds))
        budget_ns = plan.budget_s / self.rounds * 1e9
        max_runs = math.ceil(plan.max_runs / self.rounds)
        hard_ns = plan.hard_limit_s / self.rounds * 1e9 if plan.hard_limit_s else None
        hard_min = math.ceil(plan.hard_min_runs / self.rounds)
        rq = RunQueueWait() if self._subtract else None
        count = dict.fromkeys(self.sizes, 0)
        start_ns, passes = self._clock(), 0
        try:
            while True:
                active = [b for b in self.sizes if count[b] < max_runs]
                if not active:
                    break
                if rq is not None:
                    rq.refresh()
                for i in self._rng.permutation(len(active)):
                    b = active[i]
                    n = min(self._reps[b], max_runs - count[b])
                    self._time_calls(b, n, rq)
                    count[b] += n
                passes += 1
                self._reestimate(active)
                elapsed_ns = self._clock() - start_ns
                if on_pass is not None:
                    done = min(1.0, max(passes / passes_min, elapsed_ns / budget_ns))
                    on_pass((r + done) / self.rounds)
                if passes >= passes_min and elapsed_ns >= budget_ns:
                    break
                if hard_ns is not None and elapsed_ns >= hard_ns and all(
                        count[b] >= hard_min for b in self.sizes):
                    break
        finally:
            if rq is not None:
                rq.close()
        for b in self.sizes:
            self._round[b] += [r] * count[b]
        self.rounds_done += 1

    def _time_calls(self, b: int, n: int, rq: RunQueueWait | None) -> None:
        """Time ``n`` calls of batch size ``b``, recording wall times and run-queue waits."""
        batch, clock, predict = self.batches[b], self._clock, self.predict
        out, out_wait = self._wall[b], self._wait[b]
        for _ in range(n):
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

    def _reestimate(self, active: list[int]) -> None:
        """Re-estimate each batch's time from what was measured (the warm-up may have been
        disturbed), so that every batch size keeps its share of the passes."""
        share_s = self._share_s()
        for b in active:
            recent = (np.asarray(self._wall[b][-50:], dtype=float)
                      - np.asarray(self._wait[b][-50:]))
            est = max(float(np.median(recent)) / 1e9, 1e-7)
            self._reps[b] = int(min(max(1, share_s // est), self.plan.max_runs))

    def timings(self) -> Timings:
        """What was measured so far (every batch size needs a sample)."""
        wall_ms = {b: np.asarray(self._wall[b], dtype=float) / 1e6 for b in self.sizes}
        svc_ms = {}
        for b in self.sizes:
            corrected = wall_ms[b] - np.asarray(self._wait[b], dtype=float) / 1e6
            # a wait that began before the call (a worker thread already queued) can be taken
            # out in full; no call is credited with less than the fastest call actually observed
            svc_ms[b] = np.maximum(corrected, wall_ms[b].min())
        rounds = {b: np.asarray(self._round[b], dtype=int) for b in self.sizes}
        return Timings(samples_ms=svc_ms, wall_ms=wall_ms, round_of=rounds)


def time_interleaved(
    predict: Callable[[Any], Any],
    batches: Mapping[int, Any],
    plan: TimingPlan,
    *,
    seed: int = 0,
    on_round: Callable[[float], None] | None = None,
    subtract_run_queue_wait: bool = True,
) -> Timings:
    """Time ``predict`` on each batch of ``batches`` (batch size -> input): all the plan's timing
    rounds of this one configuration, back to back (:class:`BatchTimer`).

    ``on_round(fraction_done)`` is called after each pass (for progress bars).
    """
    timer = BatchTimer(predict, batches, plan, seed=seed,
                       subtract_run_queue_wait=subtract_run_queue_wait)
    for _ in range(timer.rounds):
        timer.run_round(on_round)
    return timer.timings()


def latency_stats(
    batch_size: int,
    samples_ms: np.ndarray,
    peak_memory_mb: float | None = None,
    max_stored: int = MAX_STORED_SAMPLES,
    round_p50_ms: np.ndarray | None = None,
) -> LatencyStats:
    """Statistics of one batch size's latencies (ms per batch).

    Percentiles are ``numpy.percentile`` (linear interpolation) of all samples; ``std_ms`` is the
    sample standard deviation (ddof=1); ``items_per_s`` is ``batch_size / mean``. At most
    ``max_stored`` samples are stored: every k-th in time order, so drift stays visible.
    ``round_p50_ms``: the median of each timing round, stored as given.
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
        round_p50_ms=None if round_p50_ms is None
        else [round(float(v), 5) for v in round_p50_ms],
    )


def subsample(x: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` elements of ``x``, evenly spaced in order (all of ``x`` if it is short)."""
    if len(x) <= n:
        return x
    idx = np.round(np.linspace(0, len(x) - 1, n)).astype(int)
    return x[idx]
