"""A real serving cluster on this machine, driven like the simulated one.

:class:`RealCluster` serves a set of services (each a
:class:`~simscale.validation.records.RealServiceSpec`) with real replica processes
(:mod:`simscale.validation.replica`), each service behind its own router
(:mod:`simscale.validation.router`), and holds:

* a **load generator** thread replaying the given arrival timestamps in real time;
* a **control loop** (the calling thread) that builds
  :class:`~simscale.strategies.base.Observation` values from what was *measured* on the real
  cluster, calls the strategy's ``decide`` every ``sync_period_s`` seconds (the decision
  normalised by :func:`simscale.strategies.base.normalize_decision`, as in the simulator),
  starts or drains replica processes, and carries on rolling updates (resizes: replicas
  restarted at the new size one at a time, see :mod:`simscale.validation.router`) between
  ticks;
* a **warm-up** before ``t = 0``: isolated batches of one item on each initial replica measure
  the IPC overhead, the round trip and the predict time (ms) just before the run.

Times are seconds from the start of the run (``t = 0`` when the load generator starts, after
the initial replicas are ready). A request's latency is ``end - arrival`` where ``arrival`` is
its *scheduled* timestamp (so generator lateness counts against the real cluster, and is
reported, in ms). Every replica is stopped when the run ends, also on errors, Ctrl-C and
``SIGTERM``; every wait has a timeout, and a replica that dies or hangs is reported.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from simscale.errors import UserError
from simscale.interrupts import sigterm_as_interrupt
from simscale.strategies.base import (
    StrategyFailed,
    call_strategy,
    latency_window_of,
    normalize_decision,
    sync_period_of,
)
from simscale.validation.records import (
    DROP_REASONS,
    RealRunResult,
    RealServiceRecord,
    RealServiceSpec,
    rollout_notes,
)
from simscale.validation.replica import (
    BATCH_TIMEOUT_S,
    EXIT_TIMEOUT_S,
    READY_TIMEOUT_S,
    ReplicaCrashError,
    kill_tracked_processes,
)
from simscale.validation.router import _Service

__all__ = ["RealCluster"]


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

    def wake(self) -> None:
        """Wake the control loop now (a surge replica is ready: the rolling update goes on);
        the crash check reads :attr:`crashes`, not the event."""
        self._crash_event.set()

    def report_crash(self, message: str) -> None:
        """Record a replica crash (``message`` names it) and wake the control loop."""
        self.crashes.append(message)
        self._crash_event.set()

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> RealRunResult:
        """Start the initial replicas, replay the arrivals, let the strategies scale, stop
        everything (always, also on errors and Ctrl-C) and return what was measured."""
        wall0 = time.perf_counter()
        graceful = False
        with sigterm_as_interrupt():
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
        ticks = [sync_period_of(svc.spec.strategy) for svc in self.services]
        next_tick = list(ticks)
        cpu0 = self._cpu_snapshot()
        self.progress("serving")
        while True:
            self._raise_on_crash()
            self._watchdog()
            now = self.now()
            if now >= self.duration_s:
                break
            for svc in self.services:
                svc.roll(now)  # rolling updates go on between ticks
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

        busy, steal = machine_cpu_s()
        ours = own_cpu_s()
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
        """The control tick at ``t`` (s) of ``svc``: observe, ask its strategy, record the
        decision and scale to it. A failing strategy raises :class:`UserError`."""
        strategy = svc.spec.strategy
        window = latency_window_of(strategy)
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
                for ro in svc.rollouts:
                    ro.ended = ro.ended or "unfinished"

    # -- results ----------------------------------------------------------------------------
    def _result(self, warm: dict[str, dict[str, float]], wall_s: float,
                load: tuple[float, float, float]) -> RealRunResult:
        """What was measured, as a :class:`RealRunResult`: drops after ``duration_s`` are not
        drops yet, a dropped request keeps its start only when a crash lost its batch."""
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
                    "replica": r.index, "pid": r.pid, "state": r.state, "threads": r.threads,
                    "device": r.device, "replaces": -1 if r.replaces is None else r.replaces,
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
                events=list(svc.events), decisions=list(svc.decisions),
                notes=[*svc.notes, *rollout_notes(svc.rollouts, replicas, T)],
                size_timeline=list(svc.size_timeline), rollouts=list(svc.rollouts),
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
    """``v`` as a float, NaN for ``None`` (a time that never came)."""
    return math.nan if v is None else float(v)


def machine_cpu_s() -> tuple[float, float]:
    """``(busy, steal)``: CPU seconds the whole machine has been busy (guests excluded) and
    stolen by the hypervisor, since boot."""
    import psutil

    sys_t = psutil.cpu_times()
    idle = sys_t.idle + getattr(sys_t, "iowait", 0.0)
    steal = getattr(sys_t, "steal", 0.0)
    busy = sum(sys_t) - idle - steal - getattr(sys_t, "guest", 0.0) \
        - getattr(sys_t, "guest_nice", 0.0)
    return busy, steal


def own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def others_busy_cores(window_s: float = 1.0) -> float:
    """Mean cores that processes other than this one (and its children) keep busy over the
    next ``window_s`` seconds: what would compete with a run started now. (The load average
    would count this process's own recent work, e.g. the quick profile just before.)"""
    b0, o0, t0 = machine_cpu_s()[0], own_cpu_s(), time.monotonic()
    time.sleep(window_s)
    b1, o1, t1 = machine_cpu_s()[0], own_cpu_s(), time.monotonic()
    return max(0.0, (b1 - b0) - (o1 - o0)) / max(t1 - t0, 1e-9)


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
    """The ``q``-th percentile (0-100) of the finite ``values``; NaN if there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if len(v) else math.nan


def _mean(values: Sequence[float]) -> float:
    """The mean of the finite ``values``; NaN if there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan
