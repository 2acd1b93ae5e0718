"""A model replica as its own process: ``python -m simscale.profiler.replica``.

The profiler starts this module in fresh processes to measure what only a fresh process can show:

* ``--probe``: cold start. The process imports its libraries, loads the model artifact, runs one
  prediction of one item and prints a ``ready`` line. The parent times Popen -> that line.
* ``--memory-batch B``: peak memory. The process loads the model, resets its peak-RSS mark, runs
  batches of ``B`` items three times and prints its peak resident set size while serving (and,
  on CUDA, the peak GPU memory).
* ``--serve``: a minimal serving loop for real-replica runs: after the ``ready`` line it reads one
  batch size per line from stdin, runs a batch of that size (its input made fresh, as a request
  brings one) and prints its service time; ``loop N MIN_MS`` instead times back-to-back
  predicts of one item on one input made once and reused (after one untimed call; at least
  ``N`` and at least ``MIN_MS`` in all) (the profiler's tight-loop timing, in the
  serving process: the reference of the serving overhead); an empty line or EOF stops it.

Every reply is one JSON object on one line of stdout. The model is built by
:func:`simscale.profiler.zoo.load_model`, the same code the profiler times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODULE = "simscale.profiler.replica"
#: the ``--serve`` command that times back-to-back predicts on one reused input
LOOP_COMMAND = "loop"
#: most timed predicts one ``loop N MIN_MS`` runs
LOOP_MAX_CALLS = 1000


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Read from ``VmHWM`` in ``/proc/self/status``: it belongs to the process's own address space,
    which ``exec`` creates afresh. (``ru_maxrss`` is only the fallback: on Linux it also keeps
    the high-water mark of the address space replaced by ``exec``, which for a ``vfork``-ed child
    is its parent's, so a child of a big process would report the parent's peak.)
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024.0


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS; false where Linux does
    not allow it (``/proc/self/clear_refs``, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_queue_wait_s() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU since it started (kernel
    ``schedstat``; 0.0 where unavailable). For the main thread of a fresh process that is the
    time other processes took from its start-up."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def current_rss_mb() -> float:
    """Current resident set size of this process in MiB (``VmRSS``)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def replica_command(
    model: str,
    threads: int,
    device: str = "cpu",
    weights_path: Path | str | None = None,
    *,
    mode: Sequence[str] = ("--probe",),
) -> list[str]:
    """The argv that starts a replica process of ``model`` with this Python interpreter."""
    cmd = [sys.executable, "-m", MODULE, "--model", model, "--threads", str(threads)]
    cmd += ["--device", device]
    if weights_path is not None:
        cmd += ["--weights", str(weights_path)]
    return cmd + list(mode)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _memory_probe(model: Any, batch_size: int, cuda: bool) -> dict[str, Any]:
    """Peak memory of the loaded ``model`` serving batches of ``batch_size`` (see module doc)."""
    import gc

    gc.collect()
    load_peak = peak_rss_mb()
    rss_loaded = current_rss_mb()
    reset = reset_peak_rss()  # the peak while serving, not the transient of loading
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    batch = model.make_inputs(batch_size)
    for _ in range(3):
        model.predict(batch)
    out: dict[str, Any] = {
        "event": "memory",
        "batch_size": batch_size,
        "peak_rss_mb": peak_rss_mb(),
        "peak_includes_loading": not reset,
        "load_peak_rss_mb": load_peak,
        "rss_after_load_mb": rss_loaded,
    }
    if cuda:
        torch.cuda.synchronize()
        out["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def _loop(model: Any, batch: Any, line: str) -> list[float]:
    """The times (ms) of back-to-back predicts of ``batch`` after one untimed one (``line``
    is ``loop N [MIN_MS]``): at least ``N`` and until they add up to ``MIN_MS``, at most
    :data:`LOOP_MAX_CALLS`. A sub-millisecond model thus reaches the steady state that the
    profiler's timing loop measures; a slow one costs only ``N`` calls."""
    parts = line.split()
    try:
        n = max(1, int(parts[1]))
        min_ms = float(parts[2]) if len(parts) > 2 else 0.0
    except (IndexError, ValueError):
        n, min_ms = 1, 0.0
    model.predict(batch)
    out: list[float] = []
    total_ms = 0.0
    while len(out) < LOOP_MAX_CALLS and (len(out) < n or total_ms < min_ms):
        t_start = time.perf_counter_ns()
        model.predict(batch)
        out.append((time.perf_counter_ns() - t_start) / 1e6)
        total_ms += out[-1]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a replica process; returns the exit status."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--weights", type=Path, default=None, help="model artifact to load")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--probe", action="store_true", help="print 'ready' after one prediction")
    mode.add_argument("--memory-batch", type=int, metavar="B", help="report peak memory at B")
    mode.add_argument("--serve", action="store_true", help="serve batch sizes read from stdin")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    from simscale.errors import UserError
    from simscale.profiler.zoo import load_model

    try:
        model = load_model(args.model, args.threads, args.device, args.weights)
    except UserError as exc:
        _emit({"event": "error", "message": exc.format()})
        return 2
    t_loaded = time.perf_counter()

    if args.memory_batch is not None:
        _emit(_memory_probe(model, args.memory_batch, args.device == "cuda"))
        return 0

    # cold start: the first request arrives once the model is loaded; building its input is the
    # request's work, not the replica's, so it is reported (inputs_s) and taken out by the parent.
    t_in = time.perf_counter()
    batch = model.make_inputs(1)
    inputs_s = time.perf_counter() - t_in
    t_pred = time.perf_counter()
    model.predict(batch)
    t_done = time.perf_counter()
    _emit(
        {
            "event": "ready",
            "pid": os.getpid(),
            "import_and_load_s": t_loaded - t0,
            "inputs_s": inputs_s,
            "first_predict_s": t_done - t_pred,
            "run_queue_wait_s": run_queue_wait_s(),
        }
    )
    if not args.serve:
        return 0
    loop_batch: Any = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            break
        if line.startswith(LOOP_COMMAND):
            # the profiler's way of timing: one input, made once and reused, back to back
            if loop_batch is None:
                loop_batch = model.make_inputs(1)
            _emit({"event": "loop", "predict_ms": _loop(model, loop_batch, line)})
            continue
        try:
            batch_size = int(line)
            if batch_size < 1:
                raise ValueError
        except ValueError:
            _emit({"event": "error", "message": f"not a batch size: {line!r}"})
            continue
        batch = model.make_inputs(batch_size)
        t_start = time.perf_counter_ns()
        model.predict(batch)
        service_ms = (time.perf_counter_ns() - t_start) / 1e6
        _emit({"event": "done", "batch_size": batch_size, "service_ms": service_ms})
    return 0


if __name__ == "__main__":
    sys.exit(main())
