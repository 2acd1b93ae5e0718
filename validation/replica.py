"""One real replica process of the validation cluster, and the parent's hold on it.

Each replica is its own OS process: the profiler's replica (``python -m
simscale.profiler.replica --serve``), which loads the model with the profiler's own code
(:func:`simscale.profiler.zoo.load_model`, same threads, same inputs) and then runs one batch per
line it reads on stdin, answering with the batch's service time (a JSON line). A replica counts
as ready when it reports its first inference done (its ``ready`` line): cold starts are real.

No orphans: replica processes run in their own session (a Ctrl-C in the terminal reaches only
the parent, which stops them in order); every process is tracked here and killed in ``finally``
(by :class:`~simscale.validation.cluster.RealCluster`), by an ``atexit`` hook and on
``SIGTERM`` (:func:`simscale.interrupts.sigterm_as_interrupt`); a replica whose parent dies
reads EOF on stdin and exits. Every wait has a timeout; a replica that dies or hangs is
detected and reported.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import math
import os
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from simscale.errors import UserError

if TYPE_CHECKING:
    from simscale.validation.router import _Service

__all__ = [
    "BATCH_TIMEOUT_S",
    "EXIT_TIMEOUT_S",
    "READY_TIMEOUT_S",
    "ReplicaCrashError",
    "exit_text",
    "kill_tracked_processes",
    "tracked_pids",
]


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


# --------------------------------------------------------------------------- replicas
class _Replica:
    """One replica process and the parent's bookkeeping of it.

    States: ``starting`` (spawned, model loading) -> ``ready`` (serving) -> ``draining`` (takes
    no new batch, exits after the current one and its own queue) -> ``stopped``; ``removed``
    (scaled down while starting: killed); or ``crashed`` from any state.

    ``threads`` and ``device`` are the replica's size, fixed for its life (its thread pools are
    sized when the process starts: the process gets ``--threads`` and the thread-pool
    environment variables); ``None`` takes the service's size now. ``surge``: spawned by a
    rolling update as the replacement of a replica of the old size (it does not count towards
    the desired replicas until it is ready and the replica it replaces drains); ``replaces``:
    the index of the replica it replaced (set when that one was drained), ``None`` otherwise.
    """

    def __init__(self, service: _Service, index: int, now_s: float, *,
                 threads: int | None = None, device: str | None = None,
                 surge: bool = False) -> None:
        self.service = service
        self.index = index
        self.threads = int(service.threads if threads is None else threads)
        self.device = str(service.device if device is None else device)
        self.surge = surge
        self.replaces: int | None = None
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

        cmd = replica_command(spec.model, self.threads, self.device, spec.weights_path,
                              mode=("--serve",))
        cmd[0] = service.cluster.python
        env = _thread_env(self.threads)
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
        """Keep the last lines of the replica's stderr (shown when it crashes)."""
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
        """Name the replica in messages: index, service, size and pid."""
        return (f"replica {self.index} of service '{self.service.spec.name}' "
                f"({self.threads} thread(s), pid {self.pid})")


def _thread_env(threads: int) -> dict[str, str]:
    """The environment of a replica with ``threads`` threads: the profiler's own (thread pool
    variables set), so the replica runs as it was profiled."""
    try:
        from simscale.profiler.zoo import thread_env
    except ImportError:  # pragma: no cover - the profiler is a dependency of validation
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
        return env
    return thread_env(threads)


def exit_text(code: int | None) -> str:
    """A process's exit status as words (``None``: still running; negative: the signal)."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


