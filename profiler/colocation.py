"""Co-location slowdown: how much longer a batch takes while other replicas on the same host
are busy too (issue #15 item 2).

For one (model, device, threads) the profiler starts replica processes (``python -m
simscale.profiler.replica --serve``, :class:`ReplicaServer`) and, for ``k = 1`` up to the
host's cores, keeps ``k`` of them busy at once, each running batches of one batch size back to
back (two batches outstanding per replica, so that it never waits for this process). One
*step* is one round of one ``k``:

1. every replica runs :attr:`~simscale.profiler.plan.ColocationPlan.warmup_batches` first;
2. the *busy window* runs from the latest start of a replica's first batch after its warm-up
   to the earliest end of a replica's last batch (the first replica to stop): inside it all
   ``k`` are busy;
3. only batches that started and ended inside the window count (:func:`in_window`); the
   step's median is the median of those batches' service times, all replicas pooled.

A batch's service time is the replica's own time around ``predict`` (ms). Its start and end,
for the window, are as this process sees them: the end when its answer is read, the start
when the line asking for it was written or, when the replica was still busy then, when the
answer before it was read.

The steps take turns across ``k`` (:func:`~simscale.profiler.rounds.round_order`: round ``r``
of ``k = 1, 2, ...``, then round ``r + 1`` in the reverse order), so that a drift of the
machine's speed reaches every ``k`` alike; per ``k`` the profile keeps the median of the
rounds' medians, and ``slowdown_by_others[n] = p50(n + 1 busy) / p50(1 busy)``
(:class:`~simscale.profiler.colocation_schema.Colocation`). Nothing is clamped: a factor
below 1 is stored as measured.

This process reads every answer, which costs it a small share of a core for the fast tabular
models; it is the router's share of a real host.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from simscale.profiler.colocation_schema import Colocation
from simscale.profiler.plan import ColocationPlan, Config
from simscale.profiler.rounds import round_order
from simscale.profiler.steps import ProfilerError, ServingReplica

#: batches each replica has asked for and not yet answered (one in service, one waiting)
OUTSTANDING = 2
#: seconds between two checks of whether a step has enough (drivers also wake it early on)
POLL_S = 0.05
#: rough ms of one batch of the representative size, per model (for the progress bar only)
BATCH_WEIGHT_MS = {"linear_regression": 0.2, "xgboost": 0.3, "resnet50": 300.0}
#: rough seconds to start one replica process and load its model (progress bar only)
SPAWN_WEIGHT_S = {"linear_regression": 1.2, "xgboost": 1.3, "resnet50": 3.0}


class BatchServer(Protocol):
    """A replica that serves batches back to back: :meth:`send` asks for a batch,
    :meth:`receive` blocks until the oldest batch asked for is done and returns its service
    time (ms); :meth:`kill` stops it at once (a blocked :meth:`receive` then raises)."""

    def send(self, batch_size: int) -> None: ...

    def receive(self) -> float: ...

    def kill(self) -> None: ...


class BusyRecord(NamedTuple):
    """One batch of a step: ``start`` and ``end`` on the step's clock (seconds), and the
    replica's own ``service_ms``."""

    start: float
    end: float
    service_ms: float


class ReplicaServer(ServingReplica):
    """A real serving replica process as a :class:`BatchServer` (``with`` starts it and waits
    until it has loaded the model; it never outlives the block)."""

    def __init__(self, model: str, device: str, threads: int, artifact: Path,
                 seed: int = 0) -> None:
        super().__init__(model, device, threads, artifact, gaps_s=(0.0,), seed=seed)

    def send(self, batch_size: int) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        proc.stdin.write(f"{batch_size}\n")
        proc.stdin.flush()

    def receive(self) -> float:
        # (no watchdog thread per answer, as ServingReplica._reply arms: a step reads
        # thousands of answers of the tabular models, and max_step_s bounds it)
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        return float(self._parse(proc.stdout.readline(), "co-location")["service_ms"])

    def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()


# -- one step: k replicas busy at once ----------------------------------------------------------


def busy_window(records: Sequence[Sequence[BusyRecord]], warmup: int = 1
                ) -> tuple[float, float] | None:
    """``(start, end)`` of the time all replicas were busy after their warm-up: the latest
    start of a replica's batch number ``warmup`` (0-based: its first after the warm-up) and
    the earliest end of a replica's last batch; ``None`` when some replica has no batch after
    its warm-up."""
    if not records or any(len(r) <= warmup for r in records):
        return None
    return max(r[warmup].start for r in records), min(r[-1].end for r in records)


def in_window(records: Sequence[Sequence[BusyRecord]], warmup: int = 1) -> list[list[float]]:
    """Per replica, the service times (ms) of its batches that started and ended inside the
    :func:`busy_window` (empty lists when there is no window)."""
    window = busy_window(records, warmup)
    if window is None:
        return [[] for _ in records]
    lo, hi = window
    return [[b.service_ms for b in r if b.start >= lo and b.end <= hi] for r in records]


def _enough(records: Sequence[list[BusyRecord]], plan: ColocationPlan, now: float) -> bool:
    """Whether every replica ran ``plan.min_batches`` batches since the window opened and
    the window has been open ``plan.min_window_s`` (up to ``now``)."""
    warmup = plan.warmup_batches
    if any(len(r) <= warmup for r in records):
        return False
    lo = max(r[warmup].start for r in records)
    if now - lo < plan.min_window_s:
        return False
    return all(len(r) - bisect.bisect_left(r, lo, key=lambda b: b.start) >= plan.min_batches
               for r in records)


def _drive(server: BatchServer, batch_size: int, clock: Callable[[], float],
           stop: threading.Event, records: list[BusyRecord], cond: threading.Condition,
           errors: list[BaseException], wake_until: int) -> None:
    """Keep ``server`` busy with :data:`OUTSTANDING` batches asked for until ``stop``, then
    take the answers of those still outstanding; append a record per batch."""
    written: deque[float] = deque()
    last_end: float | None = None
    try:
        for _ in range(OUTSTANDING):
            written.append(clock())
            server.send(batch_size)
        while written:
            service_ms = server.receive()
            end = clock()
            asked = written.popleft()
            start = asked if last_end is None else max(asked, last_end)
            last_end = end
            with cond:
                records.append(BusyRecord(start, end, service_ms))
                if len(records) <= wake_until:
                    cond.notify_all()
            if not stop.is_set():
                written.append(clock())
                server.send(batch_size)
    except BaseException as exc:  # noqa: BLE001 -- handed to the coordinating thread
        with cond:
            errors.append(exc)
            stop.set()
            cond.notify_all()


def run_busy_step(servers: Sequence[BatchServer], batch_size: int, plan: ColocationPlan,
                  clock: Callable[[], float] = time.perf_counter) -> list[list[BusyRecord]]:
    """Keep every server of ``servers`` busy at once with back-to-back batches of
    ``batch_size`` until each ran ``plan.min_batches`` batches in the busy window and the
    window lasted ``plan.min_window_s`` (``clock`` seconds), or ``plan.max_step_s`` (wall
    seconds) passed; return every batch's record, per server.

    A server that fails (or does not answer within ``plan.max_step_s`` of the stop, and is
    then killed) raises its error here; no thread outlives the call.
    """
    records: list[list[BusyRecord]] = [[] for _ in servers]
    cond = threading.Condition()
    stop = threading.Event()
    errors: list[BaseException] = []
    wake_until = plan.warmup_batches + plan.min_batches + 1
    threads = [threading.Thread(target=_drive, daemon=True, name=f"colocation-{i}",
                                args=(s, batch_size, clock, stop, records[i], cond, errors,
                                      wake_until))
               for i, s in enumerate(servers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + plan.max_step_s
    with cond:
        while not errors and not _enough(records, plan, clock()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cond.wait(min(left, POLL_S))
    stop.set()
    for server, t in zip(servers, threads, strict=True):
        t.join(plan.max_step_s)
        if t.is_alive():
            server.kill()
            t.join()
            errors.insert(0, ProfilerError(f"a co-location replica did not answer within "
                                           f"{plan.max_step_s:g} s"))
    if errors:
        raise errors[0]
    return records


# -- all steps of one configuration --------------------------------------------------------------


def representative_batch_size(batch_sizes: Sequence[int], max_batch_size: int = 4) -> int:
    """The largest of ``batch_sizes`` up to ``max_batch_size``, or the smallest of them when
    every one is larger."""
    small = [b for b in batch_sizes if b <= max_batch_size]
    return max(small) if small else min(batch_sizes)


def build_colocation(round_p50_ms: Sequence[Sequence[float]], samples: Sequence[int],
                     batch_size: int, host_cores: int) -> Colocation:
    """The :class:`Colocation` of per ``k`` (index ``k - 1``) its rounds' medians (ms) and its
    number of batches counted: ``p50_ms`` the median of the rounds' medians,
    ``slowdown_by_others`` each over the first (``[0]`` exactly 1.0)."""
    p50 = [float(np.median(np.asarray(r, dtype=float))) for r in round_p50_ms]
    slowdown = [1.0] + [v / p50[0] for v in p50[1:]]
    return Colocation(batch_size=batch_size, host_cores=host_cores, slowdown_by_others=slowdown,
                      p50_ms=p50, round_p50_ms=[[float(v) for v in r] for r in round_p50_ms],
                      samples=list(samples))


def measure_colocation_with(
    servers: Sequence[BatchServer], batch_size: int, plan: ColocationPlan, *,
    host_cores: int | None = None, on_step: Callable[[int, int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Colocation:
    """Measure the co-location slowdown with ``servers`` (``k`` runs from 1 to their number;
    step ``(k, r)`` uses the first ``k``), ``plan.rounds`` rounds per ``k`` taking turns
    (:func:`~simscale.profiler.rounds.round_order`). ``on_step(k, round)`` is called before
    each step (0-based round). ``host_cores``: stored in the result (default
    ``os.cpu_count()``). Raises :class:`ProfilerError` when a step has no batch that ran while
    all its replicas were busy."""
    n = len(servers)
    if n < 1 or plan.rounds < 1:
        raise ValueError("co-location needs at least one server and one round")
    rounds_p50: list[list[float]] = [[] for _ in range(n)]
    counted = [0] * n
    for c, r in round_order([plan.rounds] * n):
        k = c + 1
        if on_step is not None:
            on_step(k, r)
        got = in_window(run_busy_step(servers[:k], batch_size, plan, clock),
                        plan.warmup_batches)
        pooled = [v for per in got for v in per]
        if not pooled:
            raise ProfilerError(f"co-location with {k} replicas: no batch ran while all "
                                f"{k} were busy (within {plan.max_step_s:g} s)")
        rounds_p50[c].append(float(np.median(np.asarray(pooled, dtype=float))))
        counted[c] += len(pooled)
    cores = host_cores if host_cores is not None else (os.cpu_count() or 1)
    return build_colocation(rounds_p50, counted, batch_size, cores)


def max_replicas(plan: ColocationPlan) -> int:
    """The most replicas busy at once: ``plan.max_replicas`` or the host's cores."""
    return max(1, plan.max_replicas or os.cpu_count() or 1)


def measure_colocation(
    cfg: Config, artifact: Path, plan: ColocationPlan, *,
    on_step: Callable[[int, int], None] | None = None,
) -> Colocation:
    """Measure the co-location slowdown of ``cfg`` with real replica processes loading
    ``artifact``: :func:`max_replicas` of them are started (all loaded before the first step)
    and stopped at the end, batches of :func:`representative_batch_size`."""
    n = max_replicas(plan)
    batch = representative_batch_size(cfg.batch_sizes, plan.max_batch_size)
    with ExitStack() as stack:
        servers = [stack.enter_context(
            ReplicaServer(cfg.model, cfg.device, cfg.threads, artifact, seed=i).spawn())
            for i in range(n)]
        for s in servers:
            s.ready()
        return measure_colocation_with(servers, batch, plan, host_cores=os.cpu_count() or 1,
                                       on_step=on_step)


def colocation_weight(plan: ColocationPlan, cfg: Config) -> float:
    """Rough seconds of :func:`measure_colocation` for ``cfg`` (for a progress bar)."""
    n = max_replicas(plan)
    batch_s = BATCH_WEIGHT_MS.get(cfg.model, 1.0) / 1000.0 * representative_batch_size(
        cfg.batch_sizes, plan.max_batch_size)
    per_step = max(plan.min_window_s, batch_s * plan.min_batches) + batch_s * (
        plan.warmup_batches + OUTSTANDING)
    return SPAWN_WEIGHT_S.get(cfg.model, 2.0) * n + per_step * 2.0 * n * plan.rounds


def describe_method(plan: ColocationPlan) -> str:
    """The ``settings.colocation.method`` line of a profile."""
    return (
        "per cpu configuration, k = 1..max_replicas replica processes ('python -m "
        "simscale.profiler.replica --serve') busy at once, each running batches of batch_size "
        f"back to back ({OUTSTANDING} asked for at a time); per step, {plan.warmup_batches} "
        "warm-up batch(es) per replica, then only batches that started after all k were busy "
        "and ended before the first replica stopped count; the replica's own time around "
        "predict, all replicas pooled; rounds take turns across k (reversed every other "
        "round); per k the median of the rounds' medians; slowdown_by_others[n] = p50 with "
        "n + 1 busy / p50 alone, not clamped"
    )
