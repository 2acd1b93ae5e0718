"""A real serving cluster on this machine, driven like the simulated one.

Each replica is its own OS process: the profiler's replica (``python -m
simscale.profiler.replica --serve``), which loads the model with the profiler's own code
(:func:`simscale.profiler.zoo.load_model`, same threads, same inputs) and then runs one batch per
line it reads on stdin, answering with the batch's service time. The parent process holds
everything else, as the simulator does:

* a **router** per service: a shared FIFO queue (``shared_queue``) or one queue per replica
  (``round_robin``, ``least_outstanding``, ``power_of_two``, ``random``), with the scenario's
  queue capacity and timeout;
* a **dispatcher thread** per replica applying the scenario's batching rule (take up to
  ``max_batch_size`` queued requests; when fewer are waiting, wait until the oldest has waited
  ``max_wait_ms`` or the batch fills);
* a **load generator** thread replaying given arrival timestamps in real time;
* a **control loop** (the calling thread) that builds
  :class:`~simscale.strategies.base.Observation` values from what was *measured* on the real
  cluster, calls the strategy's ``decide`` every ``sync_period_s`` seconds and starts or drains
  replica processes. Cold starts are real: a replica counts as ready when it reports its first
  inference done (the replica's ``ready`` line).

Times are seconds from the start of the run (``t = 0`` when the load generator starts, after
the initial replicas are ready). A request's latency is ``end - arrival`` where ``arrival`` is
its *scheduled* timestamp (so generator lateness counts against the real cluster, and is
reported), ``start`` is when its batch was written to the replica's pipe and ``end`` when the
replica's answer was read. IPC overhead per batch (pipe round trip minus the replica's own
service time) is measured for every batch and reported.

No orphans: replica processes run in their own session (a Ctrl-C in the terminal reaches only
the parent, which stops them in order); every process is tracked and killed in ``finally``, by
an ``atexit`` hook and on ``SIGTERM``; a replica whose parent dies reads EOF on stdin and exits.
Every wait has a timeout; a replica that dies or hangs is detected and reported.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from simscale.errors import UserError
from simscale.simulator.serving import (
    build_observation,
    make_routing,
    percentiles_or_nan,
    scale_down_victims,
)
from simscale.strategies.base import (
    Decision,
    Observation,
    ReplicaCounts,
    ServiceContext,
    SizeOption,
    StrategyFailed,
    call_strategy,
    normalize_decision,
)

__all__ = [
    "DROP_REASONS",
    "RealCluster",
    "RealServiceRecord",
    "RealRunResult",
    "RealServiceSpec",
    "ReplicaCrashError",
    "kill_tracked_processes",
    "tracked_pids",
]

#: drop reasons by code (the simulator's request-plane codes)
DROP_REASONS: tuple[str, ...] = ("", "queue_full", "timeout", "crash")

#: seconds a replica may take from spawn to its ``ready`` line before it counts as failed
READY_TIMEOUT_S = 120.0
#: seconds a draining replica gets to exit after its stdin is closed, before it is killed
EXIT_TIMEOUT_S = 5.0
#: a batch that takes longer than this many seconds is a hung replica
BATCH_TIMEOUT_S = 60.0


class ReplicaCrashError(UserError):
    """A replica process died (or hung) while the real cluster was serving."""


# --------------------------------------------------------------------------- process tracking
_TRACKED: dict[int, subprocess.Popen[bytes]] = {}
_TRACK_LOCK = threading.Lock()


def tracked_pids() -> list[int]:
    """PIDs of the replica processes started by this module that may still be alive."""
    with _TRACK_LOCK:
        return [pid for pid, p in _TRACKED.items() if p.poll() is None]


def kill_tracked_processes(timeout_s: float = 3.0) -> None:
    """Terminate (then kill) every replica process this module started and reap it.

    Only processes started here are touched (by their pid / process group, which each replica
    leads). Safe to call many times, from ``finally`` blocks, ``atexit`` and signal handlers.
    """
    with _TRACK_LOCK:
        procs = list(_TRACKED.values())
    for p in procs:
        if p.poll() is None:
            _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        if p.poll() is None:
            _signal_group(p, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=2.0)
    with _TRACK_LOCK:
        for pid in [pid for pid, p in _TRACKED.items() if p.poll() is not None]:
            del _TRACKED[pid]


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to replica ``p``'s process group (it leads its own session)."""
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, sig)


atexit.register(kill_tracked_processes)


# --------------------------------------------------------------------------- specs and results
@dataclass(frozen=True)
class RealServiceSpec:
    """What the real cluster needs to serve one service.

    ``arrivals_s`` are the scheduled arrival timestamps (seconds from the start, sorted);
    ``strategy`` is an object with ``decide(obs) -> Decision`` (already ``setup`` with
    ``context``); ``size`` is the profile's size option of the service's replicas (what the
    observation reports as ``current_size``).
    """

    name: str
    model: str
    device: str
    threads: int
    slo_ms: float
    max_batch_size: int
    max_wait_ms: float
    queue_capacity: int | None
    queue_timeout_ms: float | None
    routing: str
    initial_replicas: int
    min_replicas: int
    max_replicas: int
    cost_per_replica_hour: float
    arrivals_s: np.ndarray
    strategy: Any
    context: ServiceContext | None
    size: SizeOption
    size_options: tuple[SizeOption, ...] = ()
    weights_path: str | None = None


@dataclass
class RealServiceRecord:
    """What the real run measured for one service.

    Request arrays follow the simulator's request plane (index = position in the arrivals):
    ``arrival_s`` scheduled arrival; ``start_s`` when its batch was sent to a replica (NaN if
    never; kept for a batch lost in a crash); ``end_s`` when the answer was read, or the drop
    time for a dropped request (NaN while queued or in service at the end; may exceed the
    duration for a batch that finished after it); ``drop`` the code of
    :data:`DROP_REASONS`; ``enqueue_s`` when the load generator actually handed it to the
    router (NaN if never). ``replicas``: one dict per replica process (times in s from the
    start; ``cold_start_s`` = spawn to ready). ``overhead``: measured IPC overhead per batch
    (ms) and the replicas' own mean service time. ``batches``: one row per served batch
    (``start_s, end_s, batch_size, service_ms, replica``; ``service_ms`` is the time the
    replica measured around ``predict``, the rest of ``end_s - start_s`` is overhead: pipe,
    JSON, input building, scheduling).
    """

    name: str
    threads: int
    arrival_s: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    drop: np.ndarray
    batch_size: np.ndarray
    replica: np.ndarray
    enqueue_s: np.ndarray
    replicas: list[dict[str, Any]]
    events: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    batches: pd.DataFrame
    overhead: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def requests(self) -> pd.DataFrame:
        """RESULTS.md ``requests.parquet`` columns (without the run's identifying columns),
        plus ``enqueue_s``; ``end_s`` is NaN unless completed."""
        done = (self.drop == 0) & np.isfinite(self.end_s)
        return pd.DataFrame({
            "service": self.name, "arrival_s": self.arrival_s, "start_s": self.start_s,
            "end_s": np.where(done, self.end_s, np.nan), "batch_size": self.batch_size,
            "replica": self.replica,
            "drop_reason": pd.Categorical.from_codes(self.drop.astype(np.int8),
                                                     categories=list(DROP_REASONS)),
            "enqueue_s": self.enqueue_s,
        })


@dataclass
class RealRunResult:
    """A real run: per service records, the warm-up measurements (IPC overhead of batches of
    one before ``t = 0``), the load generator's lateness (ms behind schedule), the wall time,
    the load average at the end (1, 5, 15 min) and any replica crashes."""

    duration_s: float
    services: dict[str, RealServiceRecord]
    warmup: dict[str, dict[str, float]]
    generator_lag: dict[str, float]
    wall_s: float
    load_avg: tuple[float, float, float]
    crashes: list[str]
    #: mean cores busy during the run: all, ours, others, steal (see :func:`_cpu_usage`)
    cpu_usage: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> pd.DataFrame:
        """All services' requests (see :meth:`RealServiceRecord.requests`)."""
        frames = [s.requests() for s in self.services.values()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def replicas(self) -> pd.DataFrame:
        """One row per replica process of every service."""
        rows = [{"service": s.name, **r} for s in self.services.values() for r in s.replicas]
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------- replicas
class _Replica:
    """One replica process and the parent's bookkeeping of it.

    States: ``starting`` (spawned, model loading) -> ``ready`` (serving) -> ``draining`` (takes
    no new batch, exits after the current one and its own queue) -> ``stopped``; ``removed``
    (scaled down while starting: killed); or ``crashed`` from any state.
    """

    def __init__(self, service: _Service, index: int, now_s: float) -> None:
        self.service = service
        self.index = index
        self.state = "starting"
        self.spawn_s = now_s
        self.ready_s: float | None = None
        self.stop_s: float | None = None
        self.drain_s: float | None = None
        self.initial_cold_start_s: float | None = None
        self.exit_code: int | None = None
        self.error: str | None = None
        self.replies: collections.deque[dict[str, Any] | None] = collections.deque()
        self.reply_event = threading.Event()
        self.own_queue: collections.deque[int] = collections.deque()
        self.idle_since = math.inf
        self.busy: list[tuple[float, float]] = []
        self.current: tuple[float, list[int]] | None = None
        self.cold_start_info: dict[str, float] = {}
        spec = service.spec
        from simscale.profiler.replica import replica_command

        cmd = replica_command(spec.model, spec.threads, spec.device, spec.weights_path,
                              mode=("--serve",))
        cmd[0] = service.cluster.python
        env = _thread_env(spec.threads)
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # own process group: Ctrl-C reaches only the parent
            close_fds=True,
        )
        with _TRACK_LOCK:
            _TRACKED[self.proc.pid] = self.proc
        self.pid = self.proc.pid
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._reader = threading.Thread(target=self._read, name=f"read-{spec.name}-{index}",
                                        daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stderr, name=f"err-{spec.name}-{index}",
                         daemon=True).start()
        self._dispatcher: threading.Thread | None = None

    # -- pipes ------------------------------------------------------------------------------
    def _read(self) -> None:
        """Read the replica's JSON lines until EOF; ``ready`` makes it serve, ``done`` answers
        the pending batch; EOF means the process is gone."""
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            event = msg.get("event")
            if event == "ready":
                self.cold_start_info = {k: float(v) for k, v in msg.items()
                                        if isinstance(v, int | float) and k != "pid"}
                self.service.on_ready(self)
            elif event == "done":
                self.replies.append(msg)
                self.reply_event.set()
            elif event == "error":
                self.error = str(msg.get("message"))
        self.replies.append(None)
        self.reply_event.set()
        self.service.on_exit(self)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

    def send(self, batch_size: int) -> None:
        """Ask the replica to run one batch of ``batch_size`` items."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{batch_size}\n".encode())
        self.proc.stdin.flush()

    def wait_reply(self, timeout_s: float) -> dict[str, Any] | None:
        """The replica's next ``done`` message; ``None`` when it exited; raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while not self.replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.reply_event.wait(min(left, 0.5))
            self.reply_event.clear()
        return self.replies.popleft()

    def close_stdin(self) -> None:
        """An empty line and EOF: the replica finishes and exits."""
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()

    def stop(self, timeout_s: float = EXIT_TIMEOUT_S) -> None:
        """Close stdin, wait up to ``timeout_s`` for the exit, then kill the process group."""
        self.close_stdin()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2.0)
        with _TRACK_LOCK:
            _TRACKED.pop(self.pid, None)

    def kill(self) -> None:
        """Kill the process group now and reap it."""
        _signal_group(self.proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2.0)
        with _TRACK_LOCK:
            _TRACKED.pop(self.pid, None)

    def busy_until(self, t: float) -> list[tuple[float, float]]:
        """Busy intervals (start, end) up to ``t``, the batch in progress cut at ``t``."""
        out = list(self.busy)
        cur = self.current
        if cur is not None and cur[0] < t:
            out.append((cur[0], t))
        return out

    def describe(self) -> str:
        return f"replica {self.index} of service '{self.service.spec.name}' (pid {self.pid})"


def _thread_env(threads: int) -> dict[str, str]:
    try:
        from simscale.profiler.zoo import thread_env
    except ImportError:  # pragma: no cover - the profiler is a dependency of validation
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
        return env
    return thread_env(threads)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


# --------------------------------------------------------------------------- services
class _Service:
    """One service on the real cluster: router, queues, replicas, metrics."""

    def __init__(self, cluster: RealCluster, spec: RealServiceSpec, seed: int) -> None:
        self.cluster = cluster
        self.spec = spec
        self.cond = threading.Condition()
        self.backlog: collections.deque[int] = collections.deque()
        self.replicas: list[_Replica] = []
        self.next_index = 0
        self.max_batch_size = spec.max_batch_size
        self.rng = random.Random(seed)
        self.routing = make_routing(spec.routing)
        n = len(spec.arrivals_s)
        self.arrival_s = np.asarray(spec.arrivals_s, dtype=float)
        self.enqueue_s = np.full(n, np.nan)
        self.start_s = np.full(n, np.nan)
        self.end_s = np.full(n, np.nan)
        self.batch_size = np.zeros(n, dtype=np.int64)
        self.replica = np.full(n, -1, dtype=np.int64)
        self.drop_reason = np.full(n, "", dtype=object)
        self.drop_s = np.full(n, np.nan)
        self.arrived = 0
        self.events: list[dict[str, Any]] = []
        self.decisions: list[dict[str, Any]] = []
        self.overhead_ms: list[float] = []
        self.service_ms: list[float] = []
        #: (start_s, end_s, batch size, service_ms measured by the replica, replica index)
        self.batches: list[tuple[float, float, int, float, int]] = []
        self.stopping = False
        #: what the real cluster could not do as asked (reported with the results)
        self.notes: list[str] = []

    # -- life cycle -------------------------------------------------------------------------
    def spawn(self, now_s: float) -> _Replica:
        rep = _Replica(self, self.next_index, now_s)
        self.next_index += 1
        with self.cond:
            self.replicas.append(rep)
        return rep

    def on_ready(self, rep: _Replica) -> None:
        now = self.cluster.now()
        with self.cond:
            if rep.state != "starting":
                return
            rep.state = "ready"
            rep.ready_s = now
            rep.idle_since = now
            if self.cluster.started:
                self.start_dispatcher(rep)
            self.cond.notify_all()

    def start_dispatcher(self, rep: _Replica) -> None:
        """Start the serving thread of ready replica ``rep``."""
        rep._dispatcher = threading.Thread(target=self._dispatch, args=(rep,),
                                           name=f"dispatch-{self.spec.name}-{rep.index}",
                                           daemon=True)
        rep._dispatcher.start()

    def on_exit(self, rep: _Replica) -> None:
        """The replica's stdout reached EOF: a planned stop, or a crash."""
        try:
            code = rep.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rep.kill()
            code = rep.proc.returncode
        now = self.cluster.now()
        with self.cond:
            rep.exit_code = code
            if rep.stop_s is None:
                rep.stop_s = now
            if rep.state in ("stopped", "removed"):
                return
            planned = rep.state == "draining" or self.stopping or self.cluster.closing
            old_state = rep.state
            rep.state = "stopped" if planned else "crashed"
            if planned:
                return
            # a crash: the batch in progress and the replica's own queue are lost
            if rep.current is not None:
                for i in rep.current[1]:
                    self._drop(i, "crash", now)
                rep.current = None
            while rep.own_queue:
                self._drop(rep.own_queue.popleft(), "crash", now)
            before = self._desired_locked() + 1
            self.events.append({
                "time_s": now, "action": "crash", "from_replicas": before,
                "to_replicas": before - 1, "threads": self.spec.threads,
                "reason": f"{_exit_text(code)} while {old_state}"
                + (f": {rep.error}" if rep.error else ""),
            })
            self.cond.notify_all()
        tail = " | ".join(list(rep.stderr_tail)[-3:])
        self.cluster.report_crash(
            f"{rep.describe()} died ({_exit_text(code)}) at t={now:.1f} s while {old_state}"
            + (f": {rep.error}" if rep.error else "") + (f" [stderr: {tail}]" if tail else "")
        )

    # -- router -----------------------------------------------------------------------------
    def arrive(self, i: int, now_s: float) -> None:
        """Request ``i`` (scheduled at ``arrival_s[i]``) reaches the router at ``now_s``."""
        spec = self.spec
        with self.cond:
            self.enqueue_s[i] = now_s
            self.arrived = i + 1
            queued = self._queued_locked()
            if spec.queue_capacity is not None and queued >= spec.queue_capacity:
                self._drop(i, "queue_full", now_s)
                return
            target = self._route_locked()
            (target.own_queue if target is not None else self.backlog).append(i)
            self.cond.notify_all()

    def _route_locked(self) -> _Replica | None:
        """The replica a new request joins, by the scenario's routing policy (the one the
        simulator uses, :mod:`simscale.simulator.serving`); ``None``: the shared backlog."""
        policy = self.routing
        if policy.shared:
            return None
        ready = {r.index: r for r in self.replicas if r.state == "ready"}
        if not ready:
            return None
        u = [self.rng.random() for _ in range(policy.draws)]
        pick = policy.route(sorted(ready), lambda i: _outstanding(ready[i]),
                            u[0] if len(u) == 1 else (tuple(u) or None))
        return ready[pick]

    def _queued_locked(self) -> int:
        return len(self.backlog) + sum(len(r.own_queue) for r in self.replicas)

    def _drop(self, i: int, reason: str, at_s: float) -> None:
        self.drop_reason[i] = reason
        self.drop_s[i] = at_s

    def expire_locked(self, now_s: float) -> None:
        """Drop queued requests that waited longer than the queue timeout (as of ``now_s``)."""
        timeout_ms = self.spec.queue_timeout_ms
        if timeout_ms is None:
            return
        limit = timeout_ms / 1000.0
        for q in [self.backlog, *[r.own_queue for r in self.replicas]]:
            while q and now_s - self.arrival_s[q[0]] > limit:
                i = q.popleft()
                self._drop(i, "timeout", self.arrival_s[i] + limit)

    # -- batching and serving ---------------------------------------------------------------
    def _take_batch(self, rep: _Replica) -> list[int] | None:
        """Block until a batch for ``rep`` is due (the batching rule) and take it; ``None`` when
        the replica should stop (a draining replica first empties its own queue).

        With a shared queue, when several replicas are idle the one idle the longest takes the
        work (ties: the lowest replica index), as in the simulator's request plane.
        """
        wait_s = self.spec.max_wait_ms / 1000.0
        with self.cond:
            while True:
                if self.stopping or rep.state not in ("ready", "draining"):
                    return None
                if rep.state == "draining" and not rep.own_queue:
                    return None
                now = self.cluster.now()
                self.expire_locked(now)
                if rep.own_queue:
                    q = rep.own_queue
                elif rep.state == "ready" and self._first_idle_locked() is rep:
                    q = self.backlog
                else:
                    q = None
                if q:
                    b = self.max_batch_size
                    due = self.arrival_s[q[0]] + wait_s
                    if len(q) >= b or now >= due:
                        batch = [q.popleft() for _ in range(min(b, len(q)))]
                        rep.current = (now, batch)
                        self.cond.notify_all()
                        return batch
                    self.cond.wait(timeout=min(due - now, 0.5))
                else:
                    self.cond.wait(timeout=0.5)

    def _first_idle_locked(self) -> _Replica | None:
        idle = [r for r in self.replicas if r.state == "ready" and r.current is None]
        if not idle:
            return None
        return min(idle, key=lambda r: (r.idle_since, r.index))

    def _dispatch(self, rep: _Replica) -> None:
        """A ready replica's serving loop (runs in its own thread)."""
        try:
            while True:
                batch = self._take_batch(rep)
                if batch is None:
                    break
                start = rep.current[0] if rep.current else self.cluster.now()
                t_send = time.perf_counter()
                try:
                    rep.send(len(batch))
                    reply = rep.wait_reply(BATCH_TIMEOUT_S)
                except (OSError, ValueError):
                    reply = None
                except TimeoutError:
                    rep.error = f"no answer to a batch of {len(batch)} within {BATCH_TIMEOUT_S} s"
                    rep.kill()
                    return
                roundtrip_ms = (time.perf_counter() - t_send) * 1000.0
                if reply is None:
                    return  # the reader reports the exit (on_exit drops the batch)
                end = self.cluster.now()
                svc_ms = float(reply.get("service_ms", math.nan))
                with self.cond:
                    for i in batch:
                        self.start_s[i] = start
                        self.end_s[i] = end
                        self.batch_size[i] = len(batch)
                        self.replica[i] = rep.index
                    rep.busy.append((start, end))
                    rep.current = None
                    rep.idle_since = end
                    self.overhead_ms.append(roundtrip_ms - svc_ms)
                    self.service_ms.append(svc_ms)
                    self.batches.append((start, end, len(batch), svc_ms, rep.index))
                    self.cond.notify_all()
        finally:
            with self.cond:
                leaving = rep.state in ("draining",) or self.stopping or self.cluster.closing
            if leaving:
                rep.close_stdin()

    # -- scaling ----------------------------------------------------------------------------
    def _desired_locked(self) -> int:
        return sum(1 for r in self.replicas if r.state in ("starting", "ready"))

    def counts_locked(self) -> ReplicaCounts:
        c = collections.Counter(r.state for r in self.replicas)
        return ReplicaCounts(pending=0, starting=c["starting"], ready=c["ready"],
                             draining=c["draining"])

    def apply(self, decision: Decision, now_s: float, reason: str) -> None:
        """Scale to ``decision.replicas`` (clamped to the bounds): start new replica processes,
        or stop starting ones (newest first), then drain ready ones (fewest outstanding
        requests first, ties: newest), as the simulator's control plane does."""
        spec = self.spec
        if decision.max_batch_size is not None:
            with self.cond:
                self.max_batch_size = max(1, int(decision.max_batch_size))
        wants_size = ((decision.threads is not None and decision.threads != spec.threads)
                      or (decision.device is not None and decision.device != spec.device))
        if wants_size and not self.notes:
            self.notes.append(f"t={now_s:.1f} s: the strategy asked for replicas of another "
                              "size (threads/device); the real cluster keeps the scenario's "
                              "size (in-place resizing is not implemented)")
        target = min(max(int(decision.replicas), spec.min_replicas), spec.max_replicas)
        with self.cond:
            current = self._desired_locked()
        if target == current:
            return
        action = "scale_up" if target > current else "scale_down"
        self.events.append({"time_s": now_s, "action": action, "from_replicas": current,
                            "to_replicas": target, "threads": spec.threads, "reason": reason})
        if target > current:
            for _ in range(target - current):
                self.spawn(now_s)
            return
        with self.cond:
            by_index = {r.index: r for r in self.replicas}
            live = [(r.index, r.state, _outstanding(r) if r.state == "ready" else 0)
                    for r in self.replicas if r.state in ("starting", "ready")]
            victims = [by_index[i] for i in scale_down_victims(current - target, live)]
            for r in victims:
                if r.state == "starting":
                    r.state = "removed"
                    r.stop_s = now_s
                else:  # its dispatcher finishes the batch (and own queue), then closes stdin
                    r.state = "draining"
                    r.drain_s = now_s
                    r.stop_s = None
            self.cond.notify_all()
        for r in victims:
            if r.state == "removed":
                r.kill()

    # -- metrics ----------------------------------------------------------------------------
    def observation(self, t: float, lag_s: float, history_s: int, window_s: float) -> Observation:
        """An :class:`Observation` at ``t`` built only from what was measured on the cluster."""
        spec = self.spec
        t_obs = max(0.0, t - lag_s)
        k = int(math.floor(t_obs + 1e-9))
        lo = max(0, k - history_s)
        edges = np.arange(lo, k + 1, dtype=float)
        per_replica: list[tuple[float, float]] = []
        with self.cond:
            n = self.arrived
            arr = self.arrival_s[:n]
            end = self.end_s[:n].copy()
            lat_ms = (end - arr) * 1000.0
            reps = [(r, r.busy_until(t_obs), r.ready_s, r.stop_s, r.state)
                    for r in self.replicas]
            # the engine's per-replica metric: busy time over [t_obs - 1, t_obs]
            for _r, intervals, ready_s, _, state in reps:
                if state == "ready" and ready_s is not None:
                    a = max(t_obs - 1.0, ready_s)
                    span = t_obs - a
                    b = _binned(intervals, np.array([a, t_obs]))[0] if span > 0 else 0.0
                    per_replica.append((float(b), span))
            counts = self.counts_locked()
        arrivals = np.histogram(arr, bins=edges)[0].astype(float) if k > lo else np.zeros(0)
        done = end[np.isfinite(end)]
        completions = (np.histogram(done, bins=edges)[0].astype(float) if k > lo
                       else np.zeros(0))
        busy = np.zeros(max(0, k - lo))
        ready_time = np.zeros(max(0, k - lo))
        for _r, intervals, ready_s, stop_s, _state in reps:
            if ready_s is None:
                continue
            b = _binned(intervals, edges)
            busy += b
            r_end = stop_s if stop_s is not None else t_obs
            ready_time += _binned([(ready_s, r_end)], edges)
        sel = np.isfinite(end) & (end >= t_obs - window_s) & (end < t_obs)
        # queue length and in-flight at t_obs, from the request times (as the engine does):
        # queued from arrival until start or drop; in flight until end or drop
        with self.cond:
            self.expire_locked(self.cluster.now())
            st = self.start_s[:n]
            drop_s = self.drop_s[:n]
            reason = self.drop_reason[:n]
        not_full = reason != "queue_full"
        leave = np.where(np.isfinite(st), st, np.where(np.isfinite(drop_s), drop_s, np.inf))
        finish = np.where(np.isfinite(end), end, np.where(np.isfinite(drop_s), drop_s, np.inf))
        upto = arr <= t_obs
        qlen = int(np.count_nonzero(upto & not_full & (leave > t_obs)))
        infl = int(np.count_nonzero(upto & not_full & (finish > t_obs)))
        return build_observation(
            t_s=t, lag_s=lag_s, service=spec.name, slo_ms=spec.slo_ms,
            min_replicas=spec.min_replicas, max_replicas=spec.max_replicas, size=spec.size,
            size_options=spec.size_options, counts=counts, arrivals_per_s=arrivals,
            completions_per_s=completions, busy_per_s=busy, serving_per_s=ready_time,
            replica_busy_last_s=per_replica, queue_length=qlen, in_flight=infl,
            latency_window_s=window_s,
            latency_percentiles_ms=percentiles_or_nan(lat_ms[sel]),  # type: ignore[arg-type]
            max_wait_ms=spec.max_wait_ms)


def _outstanding(r: _Replica) -> int:
    """Requests queued at replica ``r`` or in its batch in service."""
    return len(r.own_queue) + (len(r.current[1]) if r.current else 0)


def _binned(intervals: Sequence[tuple[float, float]], edges: np.ndarray) -> np.ndarray:
    """Time (s) each interval list covers in each bin ``[edges[j], edges[j+1])``."""
    if len(edges) < 2:
        return np.zeros(0)
    if not intervals:
        return np.zeros(len(edges) - 1)
    iv = np.asarray(intervals, dtype=float)
    s, e = iv[:, 0], np.maximum(iv[:, 1], iv[:, 0])
    cum = np.clip(edges[:, None] - s[None, :], 0.0, (e - s)[None, :]).sum(axis=1)
    return np.diff(cum)


# --------------------------------------------------------------------------- the cluster
class RealCluster:
    """Serve a set of services with real replica processes and real strategies.

    ``duration_s`` is the run's length; ``metric_lag_s``, ``history_s`` the scenario's metrics
    settings; ``seed`` seeds the routers' random choices. ``on_crash`` is ``"abort"`` (a replica
    that dies ends the run with :class:`ReplicaCrashError`) or ``"continue"`` (the crash is
    recorded as an event, its batch dropped with reason ``crash``, and the strategy decides
    what to do). ``warmup_batches`` batches of one item, ``warmup_gap_s`` apart on average, are
    run on each initial replica before ``t = 0`` to measure the IPC overhead, the round trip of
    an isolated batch and the replica's predict time (the profiler's serving measurement,
    :func:`simscale.profiler.runner.measure_serving`, repeated here seconds before the run).
    """

    def __init__(
        self,
        services: Sequence[RealServiceSpec],
        duration_s: float,
        *,
        metric_lag_s: float = 0.0,
        history_s: int = 900,
        seed: int = 0,
        on_crash: str = "abort",
        warmup_batches: int = 20,
        warmup_gap_s: float = 0.05,  # simscale.profiler.runner.SERVING_GAP_S
        python: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        import sys

        self.duration_s = float(duration_s)
        self.metric_lag_s = float(metric_lag_s)
        self.history_s = int(history_s)
        self.on_crash = on_crash
        self.warmup_batches = warmup_batches
        self.warmup_gap_s = warmup_gap_s
        self.python = python or sys.executable
        self.progress = progress or (lambda msg: None)
        self.services = [_Service(self, s, seed + 1000 * j) for j, s in enumerate(services)]
        self.t0 = time.perf_counter()
        self.closing = False
        self.crashes: list[str] = []
        self._crash_event = threading.Event()
        self.generator_lag_ms: list[float] = []

    def now(self) -> float:
        """Seconds since ``t = 0`` of the run (negative during the warm-up)."""
        return time.perf_counter() - self.t0

    def report_crash(self, message: str) -> None:
        self.crashes.append(message)
        self._crash_event.set()

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> RealRunResult:
        """Start the initial replicas, replay the arrivals, let the strategies scale, stop
        everything (always, also on errors and Ctrl-C) and return what was measured."""
        wall0 = time.perf_counter()
        graceful = False
        with _sigterm_as_interrupt():
            try:
                warm = self._start_initial()
                self.t0 = time.perf_counter()
                for svc in self.services:
                    for r in svc.replicas:  # warm initial replicas, as in the simulator
                        if r.ready_s is not None:
                            r.initial_cold_start_s = r.ready_s - r.spawn_s
                        r.spawn_s = 0.0
                        r.ready_s = 0.0
                        r.idle_since = 0.0
                self.started = True
                for svc in self.services:
                    for r in svc.replicas:
                        svc.start_dispatcher(r)
                self._serve()
                graceful = True
            finally:
                self._shutdown(graceful)
        load = os.getloadavg()
        return self._result(warm, time.perf_counter() - wall0, load)

    started = False

    def _start_initial(self) -> dict[str, dict[str, float]]:
        """Spawn every service's initial replicas, wait until all are ready (bounded), and run
        ``warmup_batches`` batches of one item on each to measure the pipe round-trip overhead
        (round trip in the parent minus the service time the replica measured)."""
        for svc in self.services:
            for _ in range(svc.spec.initial_replicas):
                svc.spawn(self.now())
        self.progress("starting initial replicas")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            self._raise_on_crash()
            starting = [r for s in self.services for r in s.replicas if r.state == "starting"]
            if not starting:
                break
            if time.monotonic() > deadline:
                raise ReplicaCrashError(
                    f"{starting[0].describe()} was not ready within {READY_TIMEOUT_S:.0f} s",
                    source="validate")
            self._crash_event.wait(0.05)
        warm: dict[str, dict[str, float]] = {}
        gap = random.Random(0)
        for svc in self.services:
            overheads: list[float] = []
            services_ms: list[float] = []
            roundtrips: list[float] = []
            for r in svc.replicas:
                for _ in range(self.warmup_batches):
                    # isolated batches, as in serving at a modest rate (not back to back)
                    self._crash_event.wait(gap.uniform(0.5, 1.5) * self.warmup_gap_s)
                    t_send = time.perf_counter()
                    try:
                        r.send(1)
                        reply = r.wait_reply(BATCH_TIMEOUT_S)
                    except (OSError, ValueError, TimeoutError):
                        reply = None
                    if reply is None:
                        self._raise_on_crash(wait_s=2.0)
                        raise ReplicaCrashError(f"{r.describe()} failed during the warm-up",
                                                source="validate")
                    rt = (time.perf_counter() - t_send) * 1000.0
                    overheads.append(rt - float(reply["service_ms"]))
                    services_ms.append(float(reply["service_ms"]))
                    roundtrips.append(rt)
            cold = [r.cold_start_info for r in svc.replicas]
            warm[svc.spec.name] = {
                "batches": float(len(overheads)),
                "ipc_overhead_ms_median": _q(overheads, 50),
                "ipc_overhead_ms_p95": _q(overheads, 95),
                "service_ms_median_batch1": _q(services_ms, 50),
                "service_ms_p95_batch1": _q(services_ms, 95),
                "roundtrip_ms_median_batch1": _q(roundtrips, 50),
                "replica_import_and_load_s_mean": _mean(
                    [c.get("import_and_load_s", math.nan) for c in cold]),
            }
        return warm

    def _serve(self) -> None:
        """The load generator runs in a thread; this (main) thread samples metrics, calls the
        strategies and watches the replicas until ``duration_s``. Waits are short, so Ctrl-C is
        handled promptly."""
        gen = threading.Thread(target=self._generate, name="load-generator", daemon=True)
        gen.start()
        ticks = []
        for svc in self.services:
            period = float(getattr(svc.spec.strategy, "sync_period_s", 15.0))
            ticks.append(period)
        next_tick = list(ticks)
        cpu0 = self._cpu_snapshot()
        self.progress("serving")
        while True:
            self._raise_on_crash()
            self._watchdog()
            now = self.now()
            if now >= self.duration_s:
                break
            upcoming = min([*next_tick, self.duration_s])
            if now < upcoming:
                self._crash_event.wait(min(upcoming - now, 0.25))
                continue
            for j, svc in enumerate(self.services):
                if now >= next_tick[j]:
                    t_tick = next_tick[j]
                    next_tick[j] += ticks[j]
                    self._decide(svc, t_tick)
        self._stop_generator = True
        gen.join(timeout=2.0)
        self.cpu_usage = _cpu_usage(cpu0, self._cpu_snapshot(), self.duration_s)

    cpu_usage: dict[str, float] = {}

    def _cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds so far: the whole machine's busy and steal time, and ours (this
        process, its reaped children, and the live replicas)."""
        import psutil

        sys_t = psutil.cpu_times()
        idle = sys_t.idle + getattr(sys_t, "iowait", 0.0)
        steal = getattr(sys_t, "steal", 0.0)
        busy = sum(sys_t) - idle - steal - getattr(sys_t, "guest", 0.0) \
            - getattr(sys_t, "guest_nice", 0.0)
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        for svc in self.services:
            for r in list(svc.replicas):
                try:
                    c = psutil.Process(r.pid).cpu_times()
                    if r.proc.returncode is None:
                        ours += c.user + c.system
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
        return {"busy": busy, "steal": steal, "ours": ours}

    def _decide(self, svc: _Service, t: float) -> None:
        strategy = svc.spec.strategy
        window = float(getattr(strategy, "latency_window_s", 60.0))
        obs = svc.observation(t, self.metric_lag_s, self.history_s, window)
        try:
            decision = normalize_decision(call_strategy(strategy, "decide", obs),
                                          max_batch_size=svc.spec.max_batch_size)
        except StrategyFailed as exc:
            raise UserError(f"strategy failed: {exc.message} (service {svc.spec.name}, at "
                            f"t = {t:g} s)", field="strategies") from None
        svc.decisions.append({"time_s": t, "replicas": int(decision.replicas),
                              "observed_rate_rps": obs.rate_rps(10),
                              "observed_utilization": obs.utilization(10),
                              "observed_p95_ms": obs.latency_p95_ms,
                              "info": dict(decision.info)})
        svc.apply(decision, self.now(), reason=getattr(strategy, "name", "strategy"))

    _stop_generator = False

    def _generate(self) -> None:
        """Replay every service's arrivals in real time (merged, in timestamp order)."""
        times = np.concatenate([s.arrival_s for s in self.services]) if self.services else []
        which = np.concatenate([np.full(len(s.arrival_s), j) for j, s in
                                enumerate(self.services)]) if self.services else []
        idx = np.concatenate([np.arange(len(s.arrival_s)) for s in self.services]) \
            if self.services else []
        order = np.argsort(times, kind="stable")
        lags = self.generator_lag_ms
        for o in order:
            if self._stop_generator or self.closing:
                return
            t = float(times[o])
            while True:
                delay = t - self.now()
                if delay <= 0:
                    break
                time.sleep(min(delay, 0.2))
                if self._stop_generator or self.closing:
                    return
            now = self.now()
            if now >= self.duration_s:
                return
            lags.append((now - t) * 1000.0)
            self.services[int(which[o])].arrive(int(idx[o]), now)

    def _raise_on_crash(self, wait_s: float = 0.0) -> None:
        """Raise :class:`ReplicaCrashError` for the first crash (``on_crash="abort"``)."""
        if wait_s:
            self._crash_event.wait(wait_s)
        if self.crashes and self.on_crash == "abort":
            raise ReplicaCrashError(self.crashes[0], source="validate")
        self._crash_event.clear()

    def _watchdog(self) -> None:
        """Replicas that exited without their reader noticing, or that are not ready within
        :data:`READY_TIMEOUT_S`, are killed and reported as crashed."""
        now = self.now()
        for svc in self.services:
            for r in list(svc.replicas):
                if r.state == "starting" and now - r.spawn_s > READY_TIMEOUT_S:
                    r.error = f"not ready within {READY_TIMEOUT_S:.0f} s"
                    r.kill()  # the reader sees EOF and reports the crash
                elif r.state in ("ready", "starting") and r.proc.poll() is not None \
                        and not r._reader.is_alive():
                    svc.on_exit(r)

    def _shutdown(self, graceful: bool) -> None:
        """Stop the generator and every replica. ``graceful``: batches in service finish
        (bounded wait) and replicas exit on EOF; otherwise (error, Ctrl-C) they are killed at
        once. Either way no process is left behind."""
        self._stop_generator = True
        end = self.now()
        self.closing = True
        for svc in self.services:
            with svc.cond:
                svc.stopping = True
                svc.cond.notify_all()
        if graceful:
            deadline = time.monotonic() + BATCH_TIMEOUT_S / 4
            for svc in self.services:
                for r in list(svc.replicas):
                    t = r._dispatcher
                    if t is not None and t.is_alive():
                        t.join(timeout=max(0.1, deadline - time.monotonic()))
            for svc in self.services:
                for r in list(svc.replicas):
                    if r.proc.poll() is None:
                        r.stop(timeout_s=max(0.5, min(EXIT_TIMEOUT_S,
                                                      deadline - time.monotonic())))
        kill_tracked_processes(timeout_s=1.0 if graceful else 0.5)
        for svc in self.services:
            with svc.cond:
                for r in svc.replicas:
                    if r.stop_s is None:
                        r.stop_s = max(end, self.duration_s) if graceful else end

    # -- results ----------------------------------------------------------------------------
    def _result(self, warm: dict[str, dict[str, float]], wall_s: float,
                load: tuple[float, float, float]) -> RealRunResult:
        T = self.duration_s
        out: dict[str, RealServiceRecord] = {}
        for svc in self.services:
            name = svc.spec.name
            n = len(svc.arrival_s)
            reason = svc.drop_reason.copy()
            reason[~(svc.drop_s <= T)] = ""  # drops after the end are not drops yet
            codes = np.zeros(n, dtype=np.int8)
            for code, r in enumerate(DROP_REASONS):
                if r:
                    codes[reason == r] = code
            end = np.where(codes != 0, svc.drop_s, svc.end_s)
            start = svc.start_s.copy()
            start[(codes != 0) & (reason != "crash")] = np.nan
            replicas = []
            for r in svc.replicas:
                replicas.append({
                    "replica": r.index, "pid": r.pid, "state": r.state,
                    "spawn_s": r.spawn_s, "ready_s": _nan(r.ready_s), "drain_s": _nan(r.drain_s),
                    "stop_s": _nan(r.stop_s), "crashed": r.state == "crashed",
                    "exit_code": r.exit_code if r.exit_code is not None else r.proc.returncode,
                    "cold_start_s": (r.ready_s - r.spawn_s)
                    if r.ready_s is not None and r.initial_cold_start_s is None else math.nan,
                    "initial_cold_start_s": _nan(r.initial_cold_start_s),
                    **{f"replica_{k}": v for k, v in r.cold_start_info.items()},
                })
            out[name] = RealServiceRecord(
                name=name, threads=svc.spec.threads, arrival_s=svc.arrival_s.copy(),
                start_s=start, end_s=end, drop=codes, batch_size=svc.batch_size.copy(),
                replica=svc.replica.copy(), enqueue_s=svc.enqueue_s.copy(), replicas=replicas,
                events=list(svc.events), decisions=list(svc.decisions), notes=list(svc.notes),
                batches=pd.DataFrame(svc.batches, columns=["start_s", "end_s", "batch_size",
                                                           "service_ms", "replica"]),
                overhead={
                    "batches": float(len(svc.overhead_ms)),
                    "ipc_overhead_ms_mean": _mean(svc.overhead_ms),
                    "ipc_overhead_ms_median": _q(svc.overhead_ms, 50),
                    "ipc_overhead_ms_p95": _q(svc.overhead_ms, 95),
                    "replica_service_ms_mean": _mean(svc.service_ms),
                    "requests_not_sent": float(np.count_nonzero(~np.isfinite(svc.enqueue_s))),
                },
            )
        lag = self.generator_lag_ms
        gen = {"median_ms": _q(lag, 50), "p99_ms": _q(lag, 99),
               "max_ms": float(np.max(lag)) if lag else math.nan}
        return RealRunResult(T, out, warm, gen, wall_s, load, list(self.crashes),
                             dict(self.cpu_usage))


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _cpu_usage(a: dict[str, float], b: dict[str, float], seconds: float) -> dict[str, float]:
    """Mean cores busy over a run of ``seconds``: all processes, ours (the parent and the
    replicas), the others (``busy - ours``: what competed with the replicas), and steal (time
    the hypervisor gave to other machines)."""
    if seconds <= 0:
        return {}
    busy = (b["busy"] - a["busy"]) / seconds
    ours = (b["ours"] - a["ours"]) / seconds
    return {"all_cores": busy, "ours_cores": ours, "others_cores": max(0.0, busy - ours),
            "steal_cores": (b["steal"] - a["steal"]) / seconds}


def _q(values: Sequence[float], q: float) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if len(v) else math.nan


def _mean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt in the main thread (so ``finally``
    blocks stop the replicas); outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
