"""Keep CPU cores busy, to run the tests or a benchmark on a loaded machine.

Starts ``--cores`` worker processes (default: one per core this process may use), each a pure
Python spin loop, and stops them all after ``--seconds`` seconds (default 3600), on SIGTERM or
SIGINT (Ctrl-C), or when the process that started this script dies. Nothing outlives it:

- each worker exits by itself when this script's process is gone (on Linux the kernel kills it
  at once through ``prctl(PR_SET_PDEATHSIG)``; everywhere it checks its parent's pid between
  slices of spinning, about every 10 ms) or when its own deadline passes;
- this script stops (and reaps) its workers on SIGTERM, SIGINT, its deadline, or the death of its
  own parent (checked every ``POLL_S`` seconds; on Linux also signalled by the kernel).

The workers are plain ``subprocess`` children (no multiprocessing, so no resource tracker or
other helper process is started). Examples::

    python benchmarks/cpu_load.py                    # every core, for an hour at most
    python benchmarks/cpu_load.py --cores 1 --seconds 600 &
    pytest -q; kill %1                               # the suite with one core taken

It prints one line on stderr when the workers run and one when they are stopped; exit status 0
(stopped by deadline, signal or parent death), 1 when a worker died on its own.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType

#: Seconds between two checks of the deadline and of the parent (in the controlling process).
POLL_S = 0.2
#: Additions per slice of the workers' spin loop (about 5-20 ms of one core): the worker looks
#: at its deadline and its parent between slices.
SLICE = 200_000
#: Seconds the workers get to exit after SIGTERM before they are killed.
TERM_GRACE_S = 5.0
#: The signals that stop the load.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def die_with_parent(sig: int) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only; a no-op
    elsewhere or when prctl is unavailable)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def spin(seconds: float, parent_pid: int) -> int:
    """A worker: spin (pure Python additions) for ``seconds`` seconds, or until ``parent_pid``
    is no longer this process's parent. Returns the exit status (0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C in a terminal: die quietly
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):  # the parent blocked them while starting us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    die_with_parent(signal.SIGKILL)
    deadline = time.monotonic() + seconds
    total = 0
    while os.getppid() == parent_pid and time.monotonic() < deadline:
        for i in range(SLICE):
            total += i
    return 0


class _Stop(Exception):
    """Raised by the signal handlers to leave the waiting loop."""


def run(cores: int, seconds: float) -> int:
    """The controlling process: start ``cores`` workers, wait, stop them; see the module
    docstring. Returns the exit status."""
    own_parent = os.getppid()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    die_with_parent(signal.SIGTERM)
    workers: list[subprocess.Popen[bytes]] = []
    why = "deadline"
    status = 0
    try:
        if os.getppid() != own_parent:  # the parent died before prctl took effect
            raise _Stop("parent died")
        deadline = time.monotonic() + seconds
        cmd = [sys.executable, os.path.abspath(__file__), "--_spin", str(seconds),
               "--_parent", str(os.getpid())]
        # a signal in the middle of Popen could leave a worker that is not in the list
        block = hasattr(signal, "pthread_sigmask")
        if block:
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            for _ in range(cores):
                workers.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
        finally:
            if block:  # a signal that came meanwhile is handled here
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        print(f"cpu_load: {cores} busy process(es) for at most {seconds:g} s "
              f"(pid {os.getpid()}; workers {' '.join(str(w.pid) for w in workers)})",
              file=sys.stderr, flush=True)
        while time.monotonic() < deadline:
            if os.getppid() != own_parent:
                why = "parent died"
                break
            dead = [w for w in workers if w.poll() is not None]
            if dead:
                why = f"worker {dead[0].pid} exited with status {dead[0].returncode}"
                status = 1
                break
            time.sleep(POLL_S)
    except _Stop as stop:
        why = str(stop)
    finally:
        # no second signal may interrupt the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_workers(workers)
    print(f"cpu_load: stopped ({why})", file=sys.stderr, flush=True)
    return status


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every live worker, wait up to ``TERM_GRACE_S`` seconds, SIGKILL the rest, and
    reap them all."""
    for w in workers:
        if w.poll() is None:
            w.terminate()
    end = time.monotonic() + TERM_GRACE_S
    for w in workers:
        try:
            w.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=None,
                        help="busy processes to run (default: one per usable core)")
    parser.add_argument("--seconds", type=float, default=3600.0,
                        help="stop after this many seconds (default 3600)")
    parser.add_argument("--_spin", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_parent", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._spin is not None:
        return spin(args._spin, args._parent if args._parent is not None else os.getppid())
    cores = args.cores if args.cores is not None else cpu_count()
    if cores < 1:
        parser.error("--cores must be at least 1")
    if not args.seconds > 0:
        parser.error("--seconds must be positive")
    return run(cores, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
