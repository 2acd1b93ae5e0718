"""Where a sweep's jobs run: a local process pool (:func:`run_local`) or Ray (:func:`run_ray`).

Both call ``on_done(job, record)`` in the sweep's own process, once per job, as each job
finishes (in whatever order), with the record :func:`~simscale.sweeps.store.execute_job`
returned or, when the job's worker was lost, an error record. A job that kills its worker
costs only that job: the pool retries it once alone, Ray retries its task once. No pool
worker outlives the sweep's process, however it ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from simscale.errors import UserError
from simscale.sweeps.plan import Job
from simscale.sweeps.store import error_text, execute_job, lost_record

__all__ = ["PARENT_POLL_S", "OnDone", "cpu_count", "ray_session", "run_local", "run_ray"]

#: ``on_done(job, record)``: called in the sweep's process as each job finishes.
OnDone = Callable[[Job, dict[str, Any]], None]

#: Seconds between a pool worker's checks that the sweep process is still its parent.
PARENT_POLL_S = 0.5


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------- process pool
def _pool_worker_init(parent_pid: int) -> None:
    """Initializer of every pool worker: exit when the sweep process ``parent_pid`` dies.

    On Linux the kernel kills the worker at once (``prctl(PR_SET_PDEATHSIG, SIGKILL)``; it fires
    when the *thread* that started the worker ends, which is the thread running the sweep: it
    outlives every job). Everywhere, a daemon thread checks every :data:`PARENT_POLL_S` seconds
    that ``parent_pid`` is still the parent (an orphan is adopted by another process) and ends
    the worker with ``os._exit(1)`` when it is not; a worker whose parent died before this ran
    exits at once. Never raises (a failing initializer would break the pool).
    """
    import signal
    import threading

    try:
        if sys.platform.startswith("linux"):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no libc or no prctl: the thread below still works
        pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    try:
        threading.Thread(target=watch, name="simscale-parent-watch", daemon=True).start()
    except RuntimeError:  # pragma: no cover - no thread can be started
        pass


#: The error of a job whose worker died twice (in the shared pool, then alone).
WORKER_DIED = ("WorkerDied: the worker process running this job died (killed, out of memory "
               "or crashed; if every job fails so, guard the script calling run_sweep with "
               "if __name__ == '__main__')")


def run_local(jobs: list[Job], workers: int, on_done: OnDone,
              execute: Callable[[Any], dict[str, Any]] = execute_job) -> None:
    """Run ``jobs`` on a spawn-context process pool of ``workers`` processes.

    Each job is ``execute(job)`` in a worker (default: a sweep job); a job needs ``key``,
    ``label`` and ``seed`` attributes (its identity in error records), and ``execute`` must be
    a module-level function (it is pickled by reference).

    At most ``workers`` jobs are in flight, so when a worker dies (killed, out of memory, a
    crash in native code) only those jobs are lost. Each is retried once, alone in a process of
    its own (so the job that kills its worker cannot take others with it), and recorded as
    failed if that process dies too; the other jobs go on in a fresh pool.

    No worker outlives this process, however it ends (even ``kill -9``): each worker runs
    :func:`_pool_worker_init`, which makes it exit when this process is gone. Multiprocessing's
    resource tracker then exits too (it stops at the end of its pipe, whose last writers are this
    process and the workers).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    queue: deque[Job] = deque(jobs)
    strikes: dict[str, int] = {}
    pools: list[ProcessPoolExecutor] = []

    def new_pool(n: int) -> ProcessPoolExecutor:
        # the workers are started by this thread (submit), which waits for all of their jobs
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_pool_worker_init,
                                   initargs=(os.getpid(),))
        pools.append(pool)
        return pool

    main = new_pool(max(1, min(workers, len(jobs))))
    inflight: dict[Future[dict[str, Any]], tuple[Job, ProcessPoolExecutor, bool]] = {}
    interrupted = False
    try:
        while queue or inflight:
            while queue and len(inflight) < workers:
                job = queue.popleft()
                alone = strikes.get(job.key, 0) >= 1
                pool = new_pool(1) if alone else main
                try:
                    inflight[pool.submit(execute, job)] = (job, pool, alone)
                except BrokenProcessPool:  # it broke before we saw a failed future
                    queue.appendleft(job)
                    main.shutdown(wait=False, cancel_futures=True)
                    main = new_pool(max(1, min(workers, len(queue) + len(inflight))))
                    break
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in done:
                job, pool, alone = inflight.pop(fut)
                try:
                    record = fut.result()
                except BrokenProcessPool:
                    if alone:
                        on_done(job, lost_record(job, WORKER_DIED))
                    else:
                        strikes[job.key] = strikes.get(job.key, 0) + 1
                        queue.appendleft(job)
                        if pool is main:  # replace the broken pool once
                            main.shutdown(wait=False, cancel_futures=True)
                            main = new_pool(max(1, min(workers, len(queue) + len(inflight))))
                    continue
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - e.g. a result that cannot be
                    # pickled, or a SystemExit that escaped execute_job: the job failed
                    record = lost_record(job, error_text(exc))
                on_done(job, record)
                if alone:
                    pool.shutdown(wait=False)
    except BaseException:
        interrupted = True
        raise
    finally:
        # no waiting for the idle workers to exit (about a second: interpreter teardown)
        for pool in pools:
            if interrupted:
                _terminate_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)


def _terminate_workers(pool: Any) -> None:
    """Stop a pool's worker processes now (Ctrl-C): no job is left running in the background."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass


# ---------------------------------------------------------------------------- Ray
@contextmanager
def ray_session(workers: int, address: str | None) -> Iterator[Any]:
    """Yield the ``ray`` module, connected: to the cluster at ``address``, to the Ray instance
    this process already uses, or to a new local instance of ``workers`` CPUs (stopped on
    exit)."""
    import logging

    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'simscale[ray]'",
                        source="--executor") from None

    started = False
    if not ray.is_initialized():
        try:
            if address:
                _check_reachable(address)
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                # local workers see the modules the driver sees (custom strategies), as the
                # spawned workers of the process pool do
                paths = [p for p in sys.path if p and os.path.isdir(p)]
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING,
                         runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}})
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"cannot start or reach Ray: {exc}",
                            source="--address" if address else "--executor") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast with a :class:`UserError` when ``host:port`` (or ``ray://host:port``) does not
    accept a TCP connection within ``timeout_s`` seconds (Ray itself retries for minutes).
    Other forms (``auto``, ``local``) are left to Ray."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}",
                        source="--address") from None


def run_ray(ray: Any, jobs: list[Job], on_done: OnDone,
            execute: Callable[[Any], dict[str, Any]] = execute_job) -> None:
    """Run ``jobs`` as Ray tasks of one CPU each (see :func:`ray_session`), each
    ``execute(job)`` (see :func:`run_local`). A task whose worker dies is retried once by Ray,
    then recorded as failed."""
    remote = ray.remote(num_cpus=1, max_retries=1)(execute)
    refs = {remote.remote(job): job for job in jobs}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=min(len(pending), 8), timeout=0.2)
            for ref in done:
                job = refs[ref]
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    record = lost_record(job, error_text(exc))
                on_done(job, record)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
