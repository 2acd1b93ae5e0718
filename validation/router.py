"""One service on the real cluster: its router, queues, batching, scaling and metrics.

The parent process holds everything but the inference, as the simulator does:

* a **router** per service: a shared FIFO queue (``shared_queue``) or one queue per replica
  (``round_robin``, ``least_outstanding``, ``power_of_two``, ``random``), with the scenario's
  queue capacity and timeout; the policy is the simulator's own
  (:func:`simscale.simulator.serving.make_routing`);
* a **dispatcher thread** per replica applying the scenario's batching rule (take up to
  ``max_batch_size`` queued requests; when fewer are waiting, wait until the oldest has waited
  ``max_wait_ms`` or the batch fills);
* **scaling** to a strategy's decision: new replica processes, or the simulator's scale-down
  order (:func:`simscale.simulator.serving.scale_down_victims`);
* **resizing** by a **rolling restart**, as a Kubernetes Deployment does when its pod's CPU
  changes (a torch/BLAS thread pool is sized when its process starts). The size a decision asks
  for (resolved as the simulator does: the nearest measured thread count) becomes the service's
  at once: new replicas get it. Each replica of another size is then replaced one at a time
  (maxSurge 1, maxUnavailable 0): a *surge* replica of the new size starts; when it is ready,
  the old replica with the fewest outstanding requests drains (as in a scale-down) and the next
  surge starts; an old replica still starting is replaced at once. A surge replica counts
  (towards the decision and in the observation) only once ready; a scale-down during a rollout
  takes old-size replicas first. Events ``resize`` (decided), ``resize_done`` (the last old
  replica drains) and ``resize_failed`` (a surge crashed), with ``from_threads`` and
  ``to_threads``. ``resize_delay_s`` (the simulator's in-place delay) is not waited:
  :func:`~simscale.validation.records.rollout_notes` compares it with the real rollout;
* **metrics**: an :class:`~simscale.strategies.base.Observation` built only from what was
  measured on the real cluster, by the simulator's own
  :func:`simscale.simulator.serving.build_observation`.

Times are seconds from the start of the run (``t = 0`` when the load generator starts). A
request's ``start`` is when its batch was written to the replica's pipe and its ``end`` when
the replica's answer was read; IPC overhead per batch (pipe round trip minus the replica's own
service time, ms) is measured for every batch.

Package-internal: :class:`_Service` is driven by
:class:`~simscale.validation.cluster.RealCluster`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from simscale.simulator.serving import (
    build_observation,
    make_routing,
    percentiles_or_nan,
    scale_down_victims,
)
from simscale.strategies.base import Decision, Observation, ReplicaCounts, SizeOption
from simscale.validation.records import Rollout
from simscale.validation.replica import BATCH_TIMEOUT_S, EXIT_TIMEOUT_S, _Replica, exit_text

if TYPE_CHECKING:
    from simscale.validation.cluster import RealCluster
    from simscale.validation.records import RealServiceSpec


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
        #: the size of the replicas spawned from now on (the service's desired size)
        self.threads = spec.threads
        self.device = spec.device
        self.size: SizeOption = spec.size
        #: (time_s, threads) of the size new replicas get, from t = 0
        self.size_timeline: list[tuple[float, int]] = [(0.0, spec.threads)]
        self.rollouts: list[Rollout] = []
        self._noted: set[str] = set()

    # -- life cycle -------------------------------------------------------------------------
    def spawn(self, now_s: float, surge: bool = False) -> _Replica:
        """Start a new replica process (state ``starting``) of the service's current size,
        spawned at ``now_s`` (s); ``surge``: a rolling update's replacement (not counted until
        ready)."""
        rep = _Replica(self, self.next_index, now_s, surge=surge)
        self.next_index += 1
        with self.cond:
            self.replicas.append(rep)
        return rep

    def on_ready(self, rep: _Replica) -> None:
        """``rep`` reported its first inference done: it serves from now on (its dispatcher
        starts at once once the run has started; the initial replicas' start at ``t = 0``)."""
        now = self.cluster.now()
        with self.cond:
            if rep.state != "starting":
                return
            rep.state = "ready"
            rep.ready_s = now
            rep.idle_since = now
            surge, stale = rep.surge, rep.surge and not self._current(rep)
            if stale:  # a surge of a size superseded meanwhile: not needed any more
                rep.surge = False
                rep.state = "draining"
                rep.drain_s = now
            else:
                if surge:
                    self._replace_locked(rep, now)
                if self.cluster.started:
                    self.start_dispatcher(rep)
            self.cond.notify_all()
        if stale:
            rep.close_stdin()
        if surge:
            self.cluster.wake()  # the control loop spawns the next surge

    def _current(self, rep: _Replica) -> bool:
        """Whether ``rep`` has the service's current size."""
        return (rep.threads, rep.device) == (self.threads, self.device)

    def _replace_locked(self, rep: _Replica, now_s: float) -> None:
        """Surge replica ``rep`` is ready: it counts from now on, and the ready replica of
        another size with the fewest outstanding requests (ties: newest) drains. With none
        left (they crashed meanwhile), ``rep`` stays as their replacement."""
        rep.surge = False
        old = [(r.index, r.state, _outstanding(r)) for r in self.replicas
               if r.state == "ready" and not self._current(r)]
        if not old:
            return
        victim = next(r for r in self.replicas if r.index == scale_down_victims(1, old)[0])
        victim.state = "draining"
        victim.drain_s = now_s
        rep.replaces = victim.index
        ro = self.rollouts[-1]
        ro.replaced += 1
        ro.last_drain_s = now_s

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
            after = self._desired_locked()
            self.events.append({
                "time_s": now, "action": "crash",
                "from_replicas": after + (0 if rep.surge else 1), "to_replicas": after,
                "threads": rep.threads, "reason": f"{exit_text(code)} while {old_state}"
                + (f": {rep.error}" if rep.error else ""),
            })
            ro = self.rollouts[-1] if self.rollouts else None
            if rep.surge and ro is not None and not ro.ended:
                ro.ended = "failed"
                self.events.append({**self._resize_event(ro, now, "resize_failed"),
                                    "reason": f"surge replica {rep.index} crashed"})
            self.cond.notify_all()
        tail = " | ".join(list(rep.stderr_tail)[-3:])
        self.cluster.report_crash(
            f"{rep.describe()} died ({exit_text(code)}) at t={now:.1f} s while {old_state}"
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
        """Requests waiting in the shared backlog and every replica's own queue."""
        return len(self.backlog) + sum(len(r.own_queue) for r in self.replicas)

    def _drop(self, i: int, reason: str, at_s: float) -> None:
        """Record request ``i`` as dropped for ``reason`` (a
        :data:`~simscale.validation.records.DROP_REASONS` name) at
        ``at_s`` (s)."""
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
        """The ready replica idle the longest (ties: lowest index); ``None`` if all are busy."""
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
        """Replicas counted towards the decision: starting or ready (not draining), surge
        replicas of a rolling update not counted until ready."""
        return sum(1 for r in self.replicas if r.state in ("starting", "ready") and not r.surge)

    def counts_locked(self) -> ReplicaCounts:
        """Replicas by state, as the observation reports them (none is ever pending here; a
        starting surge replica is the rollout's, not counted)."""
        c = collections.Counter(r.state for r in self.replicas if not r.surge)
        return ReplicaCounts(pending=0, starting=c["starting"], ready=c["ready"],
                             draining=c["draining"])

    def apply(self, decision: Decision, now_s: float, reason: str) -> None:
        """Carry out ``decision`` at ``now_s`` (s), in the simulator's order: the size first
        (a rolling update, see the module docstring), then the count: scale to
        ``decision.replicas`` (clamped to the bounds) by starting new replica processes, or by
        stopping starting ones (newest first), then draining ready ones (fewest outstanding
        requests first, ties: newest), as the simulator's control plane does; during a
        rollout, replicas of the old size go first."""
        spec = self.spec
        size = self._resolve_size(decision, now_s)
        with self.cond:
            if decision.max_batch_size is not None:
                self.max_batch_size = max(1, int(decision.max_batch_size))
            if size is not None and (size.threads, size.device) != (self.threads, self.device):
                self._start_rollout_locked(size, decision, now_s, reason)
            self.size = dataclasses.replace(size or self.size,
                                            max_batch_size=self.max_batch_size)
            current = self._desired_locked()
        target = min(max(int(decision.replicas), spec.min_replicas), spec.max_replicas)
        if target != current:
            self._scale(current, target, now_s, reason)
        self.roll(now_s)

    def _scale(self, current: int, target: int, now_s: float, reason: str) -> None:
        """Scale from ``current`` counted replicas to ``target`` at ``now_s`` (s)."""
        action = "scale_up" if target > current else "scale_down"
        self.events.append({"time_s": now_s, "action": action, "from_replicas": current,
                            "to_replicas": target, "threads": self.threads, "reason": reason})
        if target > current:
            for _ in range(target - current):
                self.spawn(now_s)
            return
        with self.cond:
            by_index = {r.index: r for r in self.replicas}
            k = current - target
            victims = []
            for old in (False, True):  # the old size first, then the current one
                live = [(r.index, r.state, _outstanding(r) if r.state == "ready" else 0)
                        for r in self.replicas if r.state in ("starting", "ready")
                        and not r.surge and self._current(r) is old]
                victims += [by_index[i] for i in scale_down_victims(k - len(victims), live)]
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

    def _resolve_size(self, decision: Decision, now_s: float) -> SizeOption | None:
        """The size ``decision`` asks for, resolved as the simulator does: on a device the
        profile measured, the nearest measured thread count (ties: fewer). Without profile
        sizes (``spec.size_options`` empty) any thread count on the service's device. ``None``
        when it asks for no size, or for one that cannot be had (noted)."""
        if decision.threads is None and decision.device is None:
            return None
        device = decision.device or self.device
        threads = int(decision.threads if decision.threads is not None else self.threads)
        options = self.spec.size_options
        if not options:
            if device != self.spec.device:
                self._note_once("device", f"t={now_s:.1f} s: the strategy asked for device "
                                f"{device}, which the profile did not measure; the replicas "
                                "keep theirs")
                return None
            per_thread = self.spec.size.price_per_hour_usd / max(1, self.spec.threads)
            return dataclasses.replace(self.size, threads=threads,
                                       price_per_hour_usd=per_thread * threads)
        same = [o for o in options if o.device == device]
        if not same:
            self._note_once("device", f"t={now_s:.1f} s: the strategy asked for device "
                            f"{device}, which the profile did not measure; the replicas keep "
                            "theirs (as in the simulation)")
            return None
        opt = min(same, key=lambda o: (abs(o.threads - threads), o.threads))
        if opt.threads != threads:
            self._note_once(f"threads {threads}", f"t={now_s:.1f} s: the strategy asked for "
                            f"{threads} threads; the profile measured "
                            f"{sorted(o.threads for o in same)}, so {opt.threads} was used "
                            "(as in the simulation)")
        return opt

    def _note_once(self, key: str, text: str) -> None:
        """Add note ``text`` unless a note of the same ``key`` was made (no repeats per tick)."""
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(text)

    def _start_rollout_locked(self, size: SizeOption, decision: Decision, now_s: float,
                              reason: str) -> None:
        """Make ``size`` the service's size and start its rolling update (a running one of
        another size is superseded: its surge replica goes, its replicas are old now)."""
        if self.rollouts and not self.rollouts[-1].ended:
            self.rollouts[-1].ended = "superseded"
        ro = Rollout(now_s, self.threads, size.threads, self.device, size.device,
                      float(decision.resize_delay_s or 0.0))
        self.rollouts.append(ro)
        self.events.append({**self._resize_event(ro, now_s, "resize"), "reason": reason})
        self.threads, self.device = size.threads, size.device
        self.size_timeline.append((now_s, size.threads))

    def _resize_event(self, ro: Rollout, t_s: float, action: str) -> dict[str, Any]:
        """An event of rollout ``ro`` at ``t_s`` (s); ``threads`` is the new size, as in the
        simulator's ``resize`` event."""
        n = self._desired_locked()
        return {"time_s": t_s, "action": action, "from_replicas": n, "to_replicas": n,
                "threads": ro.to_threads, "from_threads": ro.from_threads,
                "to_threads": ro.to_threads, "reason": "rolling restart"}

    def roll(self, now_s: float) -> None:
        """One step of the running rolling update at ``now_s`` (s); called by the control
        thread only (after each decision and on every pass of its loop), so that at most one
        surge replica is ever starting. Old-size replicas still starting are replaced at once;
        with an old-size replica ready and no surge starting, a surge is spawned; with none
        left, the rollout is done (``resize_done`` at the last old replica's drain)."""
        kill: list[_Replica] = []
        plain = 0
        surge = False
        with self.cond:
            ro = self.rollouts[-1] if self.rollouts else None
            if ro is None or ro.ended or self.stopping:
                return
            live = [r for r in self.replicas if r.state in ("starting", "ready")]
            for r in live:
                if r.state == "starting" and not self._current(r):
                    r.state = "removed"
                    r.stop_s = now_s
                    kill.append(r)
                    plain += 0 if r.surge else 1
            old_ready = any(r.state == "ready" and not self._current(r) for r in live)
            surging = [r for r in live if r.surge and r.state == "starting"]
            if not old_ready:
                for r in surging:  # nothing left to replace (scaled down or crashed)
                    r.state = "removed"
                    r.stop_s = now_s
                    kill.append(r)
                ro.ended = "done"
                ro.done_s = ro.last_drain_s if ro.last_drain_s is not None else now_s
                self.events.append({**self._resize_event(ro, ro.done_s, "resize_done"),
                                    "replaced": ro.replaced,
                                    "duration_s": ro.done_s - ro.decided_s})
            elif not surging:
                surge = True
            self.cond.notify_all()
        for r in kill:
            r.kill()
        for _ in range(plain):
            self.spawn(now_s)
        if surge:
            self.spawn(now_s, surge=True)

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
            min_replicas=spec.min_replicas, max_replicas=spec.max_replicas, size=self.size,
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
