"""The control plane: SimPy drives autoscaler ticks, replica life cycles and faults.

Each service has a :class:`~simscale.simulator.requestplane.RequestPlane` for its requests; the
control plane only schedules control events and, before acting at time ``t``, advances the
service's request plane exactly to ``t``. One :func:`run_strategy` call simulates one strategy
on all services of a scenario (one strategy object per service).

Semantics (times in seconds):

- Replica life cycle: ``pending`` (fits no node of the cluster: ``threads`` cores and the
  profiled peak memory on one node; first fit in request order over all services, the node
  by ``placement``: :mod:`~simscale.simulator.cluster`) ->
  ``starting`` (cold start) -> ``ready`` -> ``draining`` -> stopped. The ``initial`` replicas
  are warm: ready at time 0 (when they fit). Billing covers every second a replica exists
  (starting, ready, draining), at ``cost_per_replica_hour * threads / service.threads``.
- The autoscaler calls ``strategy.decide(obs)`` every ``strategy.sync_period_s`` (default 15 s),
  first at ``sync_period_s``. The requested count is clamped to the service's
  ``replicas.min..max``. Scaling down cancels pending replicas first, then starting ones (newest
  first), then drains the ready replicas with the fewest outstanding requests (ties: newest).
- What ``decide`` returns is checked by :func:`~simscale.strategies.base.normalize_decision`
  (a ``Decision`` or a whole number of replicas; a strategy that raises, exits or returns
  anything else fails the run with :class:`~simscale.strategies.base.StrategyFailed`);
  ``Decision.max_batch_size`` is capped at the service's ``batching.max_batch_size``.
- ``Decision.threads``/``device``/``max_batch_size``: applied in place to every live replica
  after ``resize_delay_s`` (default 0); a batch in service keeps its time. Thread counts the
  profile has not measured are replaced by the nearest measured one. With a distribution as
  service time, only the service's own size exists. A resize to more cores or memory than its
  node has free is deferred until room is released (KEP 1287).
- Co-location (a cluster of hosts with ``colocation``, :mod:`~simscale.simulator.colocation`):
  a batch progresses at ``1 / s(n)``, ``n`` the other batches in service on its node, so its
  end moves whenever a neighbour's batch starts or ends; all services advance together.
- Observations (:mod:`simscale.simulator.observations`, semantics there): lagged by
  ``metrics.lag_s`` but for the replica counts; ``utilization`` = busy time / serving time of
  replicas that are ready or draining (``serving_changes`` records the latter as it changes).
- Faults: each serving replica crashes after an exponential time with mean ``crash_mtbf_s``;
  a crashed replica disappears (the strategy's next decision replaces it). Each new replica is a
  straggler with probability ``straggler_fraction`` (service times x ``straggler_slowdown``).
- Service times with ``service_time: profile``: the profile's serving overhead (for the time
  the replica was idle before the batch, when the profile measured it by idle time) plus the
  (serving-scaled) median line of the replica's size times the noise of the replica's size:
  one uniform per request, the same for every size and strategy (common random numbers), made
  each size's own fitted noise (:meth:`ServiceInputs.size_noise`); see the profile schema.
- ``Decision.info``: the run's ``info`` holds the mean over decisions of each reported figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from simscale.simulator.accumulate import RequestFigures, timeseries_bin_s
from simscale.simulator.cluster import ClusterRoom
from simscale.simulator.colocation import ColocatedPlane, HostLoop, slowdown_table
from simscale.simulator.inputs import ServiceInputs
from simscale.simulator.observations import Monitor
from simscale.simulator.requestplane import RequestPlane
from simscale.simulator.scenario import Distribution, Scenario, Service
from simscale.simulator.serving import scale_down_victims, service_context
from simscale.simulator.sizes import size_options
from simscale.simulator.streaming import STREAM_CHUNK, RequestStream, streams
from simscale.strategies.base import (
    Decision,
    ReplicaCounts,
    SizeOption,
    StrategyFailed,
    call_strategy,
    latency_window_of,
    normalize_decision,
    sync_period_of,
)

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile
    from simscale.simulator.requesttable import RequestWriter

__all__ = ["ReplicaRecord", "ServiceInputs", "ServiceRun", "run_strategy", "size_options"]

#: a plane's (factors, offsets, idle curve, noise column key) of one replica size
_Factors = tuple[list[float], list[float], tuple[list[float], list[float]] | None,
                 tuple[str, int] | None]
_POLL_S = 1e-3
#: how many times a run with a progress callback pauses to report
PROGRESS_STEPS = 100


@dataclass(slots=True)
class ReplicaRecord:
    """One replica's life (times in seconds; NaN = did not happen). Slotted: a run that scales
    often keeps hundreds of thousands of them."""

    rid: int
    requested_s: float
    threads: int
    slowdown: float = 1.0
    cores: float = 1.0
    memory_mb: float = 0.0
    placed_s: float = math.nan
    ready_s: float = math.nan
    drain_s: float = math.nan
    stop_s: float = math.nan
    state: str = "pending"
    crashed: bool = False
    #: the cluster node it is placed on (-1: not placed, or no cluster)
    node: int = -1
    #: an initial replica, ready at once when placed at time 0
    warm: bool = False
    #: (time_s, threads) from placement on
    sizes: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class ServiceRun:
    """Raw outcome of one strategy on one service, turned into figures by ``metrics``."""

    service: Service
    plane: RequestPlane
    replicas: list[ReplicaRecord]
    events: list[dict[str, Any]]
    info: dict[str, float]
    #: (time_s, threads) of the size new replicas get
    size_timeline: list[tuple[float, int]]
    duration_s: float
    price_per_thread_hour: float
    #: the requests' figures, folded in during a streaming run (``None``: the plane kept every
    #: request and ``metrics`` reads them from its arrays)
    figures: RequestFigures | None = None
    #: a streaming run's request table, written as it ran (with ``requests_dir``)
    requests_file: Path | None = None


# ============================================================================ one service
class _ServiceSim:
    def __init__(self, env: simpy.Environment, scenario: Scenario, svc: Service,
                 strategy: Any, inputs: ServiceInputs, profile: Profile | None,
                 cluster: ClusterRoom | None, stream: bool | None = None,
                 requests_file: Path | None = None, hosts: HostLoop | None = None) -> None:
        self.env = env
        self.svc = svc
        self.scenario = scenario
        self.strategy = strategy
        self.profile = profile
        self.cluster = cluster
        self.duration_s = scenario.duration_s
        self.rng_cold = np.random.default_rng(inputs.cold_start_seq)
        self.rng_fault = np.random.default_rng(inputs.fault_seq)
        self.faults = scenario.faults
        self.maxb = svc.batching.max_batch_size
        self.max_wait_s = svc.batching.max_wait_ms / 1000.0
        #: the joint loop of a co-located run (its planes keep every request: no streaming)
        self.hosts = hosts
        spooled = inputs.streamed and stream is not False and hosts is None
        if spooled:
            arrival_s = unit_service = np.empty(0)
            route_u = None
        else:  # (a run told not to stream reads (or draws) streamed inputs whole)
            arrival_s, unit_service, route_u = inputs.arrays()
        plane_kw: dict[str, Any] = dict(
            routing=svc.routing,
            max_batch_size=self.maxb, max_wait_s=self.max_wait_s,
            capacity=svc.queue.capacity,
            timeout_s=None if svc.queue.timeout_ms is None else svc.queue.timeout_ms / 1000.0,
            route_u=route_u, size_noise=inputs.size_noise)
        #: the size whose noise the inputs hold (``None``: the service has one size)
        self._noise_base = inputs.base_size if inputs.size_transform is not None else None
        if hosts is not None:
            self.plane: RequestPlane = ColocatedPlane(hosts, arrival_s, unit_service, **plane_kw)
        else:
            self.plane = RequestPlane(
                arrival_s, unit_service, **plane_kw,
                window=STREAM_CHUNK if spooled or streams(stream, inputs.n_requests) else None,
                feed=inputs.feed() if spooled else None)
        writer: RequestWriter | None = None
        if requests_file is not None and self.plane.windowed:
            from simscale.simulator.requesttable import RequestWriter

            writer = RequestWriter(requests_file, self.duration_s)
        #: a streaming run's requests, folded into figures as the run goes
        self.stream = (RequestStream(RequestFigures(
            scenario.duration_s, scenario.warmup_s, svc.slo_ms, bin_s=timeseries_bin_s(
                scenario.duration_s, scenario.metrics.timeseries_bin_s),
            compiled=self.plane.kernels == "compiled"), writer)
            if self.plane.windowed else None)
        self.options = size_options(svc, profile, self.maxb)
        self.size = self._option(svc.device, svc.threads) or self.options[0]
        self._stm_cache: dict[tuple[str, int], Any] = {}
        self._factor_cache: dict[tuple[str, int, float, int], Any] = {}
        self.records: list[ReplicaRecord] = []
        #: ``(time s, +1 | -1)`` as replicas become ready or stop serving (as learnt, not sorted)
        self.serving_changes: list[tuple[float, int]] = []
        #: the records not stopped, by id (in creation order): what every decision scans
        #: (the run's whole history would make each decision slower as the run goes on)
        self.live: dict[int, ReplicaRecord] = {}
        self.events: list[dict[str, Any]] = []
        self.info_sum: dict[str, float] = {}
        self.info_n: dict[str, int] = {}
        self.size_timeline: list[tuple[float, int]] = [(0.0, self.size.threads)]
        self.monitor = Monitor(self, scenario)
        self._next_rid = 0

    # -- sizes ------------------------------------------------------------------------------
    def _option(self, device: str, threads: int) -> SizeOption | None:
        same = [o for o in self.options if o.device == device]
        if not same:
            return None
        return min(same, key=lambda o: (abs(o.threads - threads), o.threads))

    def _factors(self, size: SizeOption, slowdown: float, maxb: int) -> _Factors:
        """Per batch size b = 0..maxb, the (factors, offsets) of the request plane, its idle
        curve and its noise column: a batch whose first request drew ``X`` (in the column of
        ``size``: ``None`` for the inputs' own size) takes ``offsets[b] + factors[b] * X``
        seconds plus the serving overhead of the replica's idle time before it (when the
        profile measured one; otherwise that overhead is a constant in ``offsets``). Made once
        per (size, slowdown, batch limit): replicas of the same size share the lists."""
        key = (size.device, size.threads, slowdown, maxb)
        got = self._factor_cache.get(key)
        if got is None:
            got = self._factor_cache[key] = self._make_factors(size, slowdown, maxb)
        return got

    def _make_factors(self, size: SizeOption, slowdown: float, maxb: int) -> _Factors:
        b = np.arange(0, maxb + 1)
        slowdown = slowdown / self.svc.cpu_speed
        if isinstance(self.svc.service_time, Distribution):
            return [slowdown] * (maxb + 1), [0.0] * (maxb + 1), None, None
        key = (size.device, size.threads)
        stm = self._stm_cache.get(key)
        if stm is None:
            stm = self.profile.service_model(self.svc.model, size.device, size.threads)
            self._stm_cache[key] = stm
        curve = stm.idle_overhead_s
        offset_s, scale_s = stm.affine_s(np.maximum(b, 1), overhead=curve is None)
        idle = None if curve is None else (curve[0], [o * slowdown for o in curve[1]])
        noise = None if self._noise_base in (None, key) else key
        return (scale_s * slowdown).tolist(), (offset_s * slowdown).tolist(), idle, noise

    def _memory_mb(self, size: SizeOption) -> float:
        if self.profile is None or self.svc.model not in self.profile.models:
            return 0.0
        try:
            return float(self.profile.memory_mb(self.svc.model, size.device, size.threads,
                                                self.maxb))
        except Exception:  # noqa: BLE001 - no measurement of that size: memory unknown
            return 0.0

    def _cold_start_s(self) -> float:
        cs = self.svc.cold_start_s
        if cs == "profile":
            samples = self.profile.cold_start(self.svc.model, self.svc.device).samples_s
            return float(samples[int(self.rng_cold.integers(len(samples)))])
        if isinstance(cs, Distribution):
            from simscale.simulator.distributions import duration_sampler

            return float(duration_sampler(cs)(self.rng_cold.random(1))[0])
        return float(cs)

    # -- life cycle -------------------------------------------------------------------------
    def sync(self) -> None:
        """Advance the request plane to now and stop draining replicas that finished."""
        now = self.env.now
        self.plane.advance(now)
        if self.plane.stopped:
            for rid, t in list(self.plane.stopped.items()):
                rec = self.records[rid]
                if rec.state == "draining":
                    self._stop(rec, t)

    def counts(self) -> ReplicaCounts:
        c = {"pending": 0, "starting": 0, "ready": 0, "draining": 0}
        for r in self.live.values():
            if r.state in c:
                c[r.state] += 1
        return ReplicaCounts(**c)

    def _new_replica(self, warm: bool) -> None:
        f = self.faults
        straggler = bool(f and f.straggler_fraction > 0
                         and self.rng_fault.random() < f.straggler_fraction)
        rec = ReplicaRecord(rid=self._next_rid, requested_s=self.env.now,
                            threads=self.size.threads,
                            slowdown=f.straggler_slowdown if (straggler and f) else 1.0,
                            cores=float(self.size.threads), memory_mb=self._memory_mb(self.size))
        self._next_rid += 1
        self.records.append(rec)
        self.live[rec.rid] = rec
        rec.warm = warm
        if self.cluster is None or (not self.cluster.pending and self.cluster.fits(rec)):
            if self.cluster is not None:
                self.cluster.take(rec)
            self._placed(rec)
        else:
            self.cluster.pending.append((self, rec))

    def _placed(self, rec: ReplicaRecord) -> None:
        now = self.env.now
        rec.placed_s = now
        rec.sizes.append((now, rec.threads))
        if rec.warm and now == 0.0:
            self._ready(rec)
        else:
            rec.state = "starting"
            self.env.process(self._cold_start(rec, self._cold_start_s()))

    def _cold_start(self, rec: ReplicaRecord, delay_s: float):  # noqa: ANN202 - generator
        yield self.env.timeout(delay_s)
        if rec.state == "starting":
            self.sync()
            self._ready(rec)

    def _ready(self, rec: ReplicaRecord) -> None:
        now = self.env.now
        rec.state = "ready"
        rec.ready_s = now
        self.serving_changes.append((now, 1))
        if self.hosts is not None:
            self._set_host(rec)
        self.plane.add_replica(rec.rid, now, *self._factors(self.size_of(rec), rec.slowdown,
                                                            self.maxb))
        f = self.faults
        if f is not None and f.crash_mtbf_s is not None:
            self.env.process(self._crash_after(rec, float(self.rng_fault.exponential(
                f.crash_mtbf_s))))

    def size_of(self, rec: ReplicaRecord) -> SizeOption:
        return self._option(self.size.device, rec.threads) or self.size

    def _set_host(self, rec: ReplicaRecord) -> None:
        """A co-located run: the plane learns ``rec``'s node and its size's factor table."""
        size = self.size_of(rec)
        self.plane.set_host(rec.rid, rec.node, slowdown_table(  # type: ignore[attr-defined]
            self.scenario.cluster, self.svc, self.profile, size.device, size.threads))

    def _crash_after(self, rec: ReplicaRecord, delay_s: float):  # noqa: ANN202
        yield self.env.timeout(delay_s)
        if rec.state in ("ready", "draining"):
            self.sync()
            if rec.state not in ("ready", "draining"):
                return
            before = self.counts().desired_total
            n = self.plane.crash(rec.rid, self.env.now)
            rec.crashed = True
            self._stop(rec, self.env.now, remove=False)
            self.events.append(self._event("crash", before, self.counts().desired_total,
                                           f"crash (dropped {n})"))

    def _stop(self, rec: ReplicaRecord, t_s: float, remove: bool = True) -> None:
        was_placed = not math.isnan(rec.placed_s)
        rec.state = "stopped"
        rec.stop_s = t_s
        if rec.ready_s == rec.ready_s:  # (it had served: not NaN)
            self.serving_changes.append((t_s, -1))
        self.live.pop(rec.rid, None)
        if remove:
            self.plane.remove(rec.rid)
        if self.cluster is not None and was_placed:
            self.cluster.release(rec)

    def _drain(self, rec: ReplicaRecord) -> None:
        now = self.env.now
        rec.state = "draining"
        rec.drain_s = now
        stop = self.plane.drain(rec.rid, now)
        if stop is not None and stop <= now:
            self._stop(rec, now)
        else:
            self.env.process(self._await_stop(rec, stop))

    def _await_stop(self, rec: ReplicaRecord, stop_s: float | None):  # noqa: ANN202
        if stop_s is not None:
            while True:
                yield self.env.timeout(stop_s - self.env.now)
                if rec.state != "draining":
                    return
                self.sync()
                if rec.state != "draining":
                    return
                # co-located: the last batch's end is a projection that neighbours may have
                # moved later (earlier ends stop it in sync)
                f = self.plane.free_at.get(rec.rid, stop_s)
                if f <= self.env.now:
                    break
                stop_s = f
            self._stop(rec, stop_s)
            return
        while rec.state == "draining":
            f = self.plane.free_at.get(rec.rid, self.env.now)
            dt = f - self.env.now if f > self.env.now else max(self.max_wait_s, _POLL_S)
            yield self.env.timeout(dt)
            if rec.state == "draining":
                self.sync()

    # -- decisions --------------------------------------------------------------------------
    def _event(self, action: str, before: int, after: int, reason: str) -> dict[str, Any]:
        return {"time_s": float(self.env.now), "action": action, "from_replicas": int(before),
                "to_replicas": int(after), "threads": int(self.size.threads), "reason": reason}

    def start(self) -> None:
        for _ in range(self.svc.replicas.initial):
            self._new_replica(warm=True)
        self.env.process(self._autoscaler())
        if self.stream is not None:
            self.env.process(self._streamer())

    def _streamer(self):  # noqa: ANN202 - generator
        """Advance the plane and fold its final requests every so often (a streaming run)."""
        step_s = RequestStream.step_s(self.plane.n, self.duration_s)
        while True:
            yield self.env.timeout(step_s)
            self.sync()
            self.stream.fold(self.plane, self.monitor.requests, self.env.now,
                             self.monitor.lag_s, latency_window_of(self.strategy))

    def _autoscaler(self):  # noqa: ANN202
        period = sync_period_of(self.strategy)
        while True:
            yield self.env.timeout(period)
            self.sync()
            obs = self.monitor.observe(self.env.now)
            try:
                decision = normalize_decision(call_strategy(self.strategy, "decide", obs),
                                              max_batch_size=self.svc.batching.max_batch_size)
            except StrategyFailed as exc:
                raise StrategyFailed(f"{exc.message} (service {self.svc.name}, at "
                                     f"t = {self.env.now:g} s)") from None
            self.apply(decision, obs.replicas)

    def apply(self, d: Decision, counts: ReplicaCounts | None = None) -> None:
        """Carry out ``d`` now. ``counts``: the replica counts now when the caller has them
        (the observation ``d`` was decided on, made at this instant: nothing ran between)."""
        counts = self.counts() if counts is None else counts
        for k, v in (getattr(d, "info", None) or {}).items():
            try:
                fv = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(fv):
                self.info_sum[k] = self.info_sum.get(k, 0.0) + fv
                self.info_n[k] = self.info_n.get(k, 0) + 1
        # size / batching
        new_size = self.size
        if d.threads is not None or d.device is not None:
            dev = d.device or self.size.device
            opt = self._option(dev, d.threads if d.threads is not None else self.size.threads)
            if opt is not None:
                new_size = opt
        new_maxb = self.maxb if d.max_batch_size is None else max(1, int(d.max_batch_size))
        if (new_size.threads, new_size.device) != (self.size.threads, self.size.device) \
                or new_maxb != self.maxb:
            n = counts.desired_total
            ev = self._event("resize", n, n, "strategy")
            ev["threads"] = int(new_size.threads)
            self.events.append(ev)
            delay = float(d.resize_delay_s or 0.0)
            if delay > 0:
                self.env.process(self._resize_later(delay, new_size, new_maxb))
            else:
                self._resize(new_size, new_maxb)
                counts = self.counts()  # (freed room may have placed pending replicas)
        # count
        want = min(max(int(d.replicas), self.svc.replicas.min), self.svc.replicas.max)
        have = counts.desired_total
        if want > have:
            for _ in range(want - have):
                self._new_replica(warm=False)
            self.events.append(self._event("scale_up", have, want, "strategy"))
        elif want < have:
            self._scale_down(have - want)
            self.events.append(self._event("scale_down", have, want, "strategy"))

    def _resize_later(self, delay_s: float, size: SizeOption, maxb: int):  # noqa: ANN202
        yield self.env.timeout(delay_s)
        self.sync()
        self._resize(size, maxb)

    def _resize(self, size: SizeOption, maxb: int) -> None:
        now = self.env.now
        self.size = SizeOption(**{**size.__dict__, "max_batch_size": maxb})
        self.maxb = maxb
        self.plane.set_batching(maxb, self.max_wait_s)
        self.options = tuple(SizeOption(**{**o.__dict__, "max_batch_size": maxb})
                             for o in self.options)
        self.size_timeline.append((now, size.threads))
        waiting = sum(not self._resize_replica(rec) for rec in list(self.live.values()))
        if waiting:
            n = self.counts().desired_total
            self.events.append(self._event(
                "resize_deferred", n, n, f"{waiting} replica(s) wait for room on the cluster"))

    def _resize_replica(self, rec: ReplicaRecord) -> bool:
        """Bring ``rec`` to the service's size now (:attr:`size`, :attr:`maxb`). A placed
        replica that needs more cores or memory than the cluster has free keeps its old size
        (its batches take the new batch limit) and waits in the cluster's deferred resizes;
        returns whether it was resized (or needed none)."""
        size = self.size
        now = self.env.now
        mem = self._memory_mb(size)
        placed = not math.isnan(rec.placed_s)
        ok = True
        if rec.threads != size.threads or rec.memory_mb != mem:
            cl = self.cluster
            d_cores, d_mb = float(size.threads) - rec.cores, mem - rec.memory_mb
            if cl is not None and placed and not cl.has_room(rec.node, d_cores, d_mb):
                cl.deferred[(id(self), rec.rid)] = (self, rec)
                ok = False
            else:
                if cl is not None:
                    cl.deferred.pop((id(self), rec.rid), None)
                if cl is not None and placed:
                    cl.grow(rec, d_cores, d_mb)
                if placed and rec.threads != size.threads:
                    rec.sizes.append((now, size.threads))
                rec.cores = float(size.threads)
                rec.threads = size.threads
                rec.memory_mb = mem
                if cl is not None and placed and (d_cores < 0 or d_mb < 0):
                    cl.place_pending()  # a smaller size frees room
        if rec.state in ("ready", "draining"):
            if self.plane.now < now:  # (resized when another service released room)
                self.plane.advance(now)
            self.plane.set_factors(rec.rid, *self._factors(self.size_of(rec), rec.slowdown,
                                                           self.maxb))
            if self.hosts is not None:
                self._set_host(rec)
        return ok

    def _scale_down(self, k: int) -> None:
        """Remove ``k`` replicas in the shared order (:func:`scale_down_victims`): pending and
        starting ones stop at once, ready ones drain."""
        live = [(r.rid, r.state, self.plane.outstanding(r.rid) if r.state == "ready" else 0)
                for r in self.live.values() if r.state in ("pending", "starting", "ready")]
        for rid in scale_down_victims(k, live):
            rec = self.records[rid]
            if rec.state == "ready":
                self._drain(rec)
            else:
                self._stop(rec, self.env.now, remove=False)

    def result(self) -> ServiceRun:
        info = {k: self.info_sum[k] / self.info_n[k] for k in self.info_sum}
        figures = self.stream.finish(self.plane) if self.stream is not None else None
        writer = self.stream.writer if self.stream is not None else None
        return ServiceRun(self.svc, self.plane, self.records, self.events, info,
                          self.size_timeline, self.duration_s,
                          self.svc.cost_per_replica_hour / self.svc.threads, figures,
                          None if writer is None else writer.path)


# ============================================================================ one run
def run_strategy(
    scenario: Scenario,
    strategies: dict[str, Any],
    inputs: dict[str, ServiceInputs],
    profile: Profile | None,
    on_progress: Callable[[float], None] | None = None,
    stream: bool | None = None,
    requests_dir: Path | None = None,
) -> list[ServiceRun]:
    """Simulate one strategy (one object per service, keyed by service name) over the whole
    scenario; returns one :class:`ServiceRun` per service, in the scenario's order.

    ``stream``: whether services stream (:mod:`simscale.simulator.streaming`; ``None``: those
    with :data:`~simscale.simulator.streaming.STREAM_MIN_REQUESTS` requests or more); a
    streaming run's plane holds only a window of requests. ``requests_dir``: a folder where
    each streaming service writes its request table as it goes (``<k>-<service>.parquet``,
    ``ServiceRun.requests_file``); the others keep every request in their plane.

    ``on_progress(dt_s)``: called with each further stretch of simulated seconds done (the run
    pauses :data:`PROGRESS_STEPS` times; pausing SimPy changes no event's order)."""
    env = simpy.Environment()
    cluster = ClusterRoom.of(scenario.cluster) if scenario.cluster is not None else None
    hosts = HostLoop() if scenario.cluster is not None and scenario.cluster.colocated else None
    sims = []
    for svc in scenario.services:
        strat = strategies[svc.name]
        sim = _ServiceSim(env, scenario, svc, strat, inputs[svc.name], profile, cluster,
                          stream, None if requests_dir is None
                          else Path(requests_dir) / f"{len(sims)}-{svc.name}.parquet", hosts)
        ctx = service_context(scenario, svc, sim.size, sim.options,
                              inputs[svc.name].true_rate_rps)
        if callable(getattr(strat, "setup", None)):
            call_strategy(strat, "setup", ctx)
        sims.append(sim)
    for sim in sims:
        sim.start()
    if on_progress is None:
        env.run(until=scenario.duration_s)
    else:
        done = 0.0
        for t in np.linspace(0.0, scenario.duration_s, PROGRESS_STEPS + 1)[1:].tolist():
            env.run(until=t)
            on_progress(t - done)
            done = t
    for sim in sims:
        sim.sync()  # env.now == duration_s: the plane is advanced to the end
    return [sim.result() for sim in sims]
