"""The serving model shared by the simulator and the real cluster of ``simscale validate``.

One definition of each rule a serving system applies, used by both sides so that they cannot
drift apart:

- **Routing** (:class:`RoutingPolicy`, registered in :data:`ROUTING_POLICIES` by name): which
  ready replica takes a new request. A policy is a small object with one hook, ``choose``
  (the shape of SimPy's ``_do_get``/``_do_put`` hooks or Ciw's routing objects); the request
  plane's fused loops and the real router both call :meth:`RoutingPolicy.route`. Policies that
  need randomness say how many uniforms per request they take (``draws``); the simulator draws
  them from the routing stream (common random numbers), the real router from its own generator.
- **Scale-down order** (:func:`scale_down_victims`): which replicas go when a strategy asks for
  fewer.
- **Observations** (:func:`build_observation`): the figures a strategy sees, from what each side
  measured (per-second bins, per-replica busy time, the latencies in the window).
- **The service context** (:func:`service_context`) given to a strategy before the run, and
  **strategy selection** by name or label (:func:`select_strategies`): one rule.
- What ``decide`` may return is :func:`simscale.strategies.base.normalize_decision`.

To add a routing policy: a subclass of :class:`RoutingPolicy` with ``name``, ``draws`` and
``choose``, and one line in :data:`ROUTING_POLICIES` (its name then validates in scenarios).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from simscale.errors import UserError
from simscale.strategies.base import Observation, ReplicaCounts, ServiceContext, SizeOption

__all__ = [
    "ROUTING_POLICIES",
    "RoutingPolicy",
    "build_observation",
    "make_routing",
    "scale_down_victims",
    "select_strategies",
    "service_context",
    "utilization_per_s",
]


# ============================================================================ routing
class RoutingPolicy:
    """Chooses the replica a new request joins. One instance per service and run (a policy may
    keep state, e.g. a round-robin pointer).

    ``shared``: one queue for all replicas, served by whichever is free (no choice per request).
    ``draws``: uniforms in [0, 1) the policy takes per request (0, 1 or 2).
    """

    name: ClassVar[str] = ""
    shared: ClassVar[bool] = False
    draws: ClassVar[int] = 0

    def route(self, candidates: Sequence[int], outstanding: Callable[[int], int],
              u: Any = None) -> int:
        """The replica (one of ``candidates``, ready replica ids in ascending order, at least
        one) that takes the request; ``outstanding(r)`` is the number of requests queued at
        ``r`` or in its batch in service; ``u`` the request's uniforms (``draws`` of them: a
        float for one, a pair for two). With one candidate it is that one, and the policy's
        state does not move."""
        if len(candidates) == 1:
            return candidates[0]
        return self.choose(candidates, outstanding, u)

    def choose(self, candidates: Sequence[int], outstanding: Callable[[int], int],
               u: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class SharedQueue(RoutingPolicy):
    """One FIFO queue; a free replica takes the next batch from it."""

    name = "shared_queue"
    shared = True

    def choose(self, candidates: Sequence[int], outstanding: Callable[[int], int],
               u: Any) -> int:
        return candidates[0]  # never asked: the queue is shared


class RoundRobin(RoutingPolicy):
    """Each request to the next ready replica in turn (a pointer over the ready list)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[int], outstanding: Callable[[int], int],
               u: Any) -> int:
        r = candidates[self._next % len(candidates)]
        self._next += 1
        return r


class Random(RoutingPolicy):
    """A uniformly random ready replica."""

    name = "random"
    draws = 1

    def choose(self, candidates: Sequence[int], outstanding: Callable[[int], int],
               u: Any) -> int:
        m = len(candidates)
        return candidates[min(int(u * m), m - 1)]


class PowerOfTwo(RoutingPolicy):
    """Two distinct random ready replicas; the one with fewer outstanding requests (ties: the
    first drawn)."""

    name = "power_of_two"
    draws = 2

    def choose(self, candidates: Sequence[int], outstanding: Callable[[int], int],
               u: Any) -> int:
        m = len(candidates)
        u1, u2 = u
        j1 = min(int(u1 * m), m - 1)
        j2 = min(int(u2 * (m - 1)), m - 2)
        if j2 >= j1:
            j2 += 1
        r1, r2 = candidates[j1], candidates[j2]
        return r2 if outstanding(r2) < outstanding(r1) else r1


class LeastOutstanding(RoutingPolicy):
    """The ready replica with the fewest outstanding requests (ties: the lowest id)."""

    name = "least_outstanding"

    def choose(self, candidates: Sequence[int], outstanding: Callable[[int], int],
               u: Any) -> int:
        best = candidates[0]
        bo = outstanding(best)
        for r in candidates:
            o = outstanding(r)
            if o < bo:
                best, bo = r, o
        return best


class JoinIdleQueue(RoutingPolicy):
    """Join-idle-queue (Lu et al., 2011): an idle replica when there is one (nothing queued or
    in service; the lowest id), else a uniformly random ready replica. Cheap for a router that
    only learns which replicas went idle, close to least_outstanding at moderate load."""

    name = "join_idle_queue"
    draws = 1

    def choose(self, candidates: Sequence[int], outstanding: Callable[[int], int],
               u: Any) -> int:
        for r in candidates:
            if outstanding(r) == 0:
                return r
        m = len(candidates)
        return candidates[min(int(u * m), m - 1)]


#: routing policy name -> class (a new policy is one class and one line here)
ROUTING_POLICIES: dict[str, type[RoutingPolicy]] = {
    cls.name: cls
    for cls in (SharedQueue, RoundRobin, LeastOutstanding, PowerOfTwo, Random, JoinIdleQueue)
}


def make_routing(name: str) -> RoutingPolicy:
    """A fresh policy object of the registered routing ``name``."""
    try:
        return ROUTING_POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown routing {name!r} (known: {', '.join(ROUTING_POLICIES)})"
                         ) from None


# ============================================================================ scale-down
def scale_down_victims(k: int, replicas: Iterable[tuple[int, str, int]]) -> list[int]:
    """The ids of the ``k`` replicas to remove when a strategy asks for ``k`` fewer.

    ``replicas`` are ``(id, state, outstanding)`` with ids increasing in creation order. Pending
    replicas go first, then starting ones (newest first in each: they have cost the least and
    serve nothing), then ready ones with the fewest outstanding requests (ties: newest), which
    drain. Draining and stopped replicas are not counted.
    """
    reps = list(replicas)
    order = [rid for state in ("pending", "starting")
             for rid, _, _ in sorted((r for r in reps if r[1] == state), key=lambda r: -r[0])]
    ready = sorted((r for r in reps if r[1] == "ready"), key=lambda r: (r[2], -r[0]))
    order += [rid for rid, _, _ in ready]
    return order[:max(0, k)]


# ============================================================================ observations
def utilization_per_s(busy_per_s: np.ndarray, serving_per_s: np.ndarray) -> np.ndarray:
    """Per whole second, busy time over serving time (0 where nothing served), at most 1: the
    rule of :attr:`Observation.utilization_per_s` (a new array)."""
    util = np.divide(busy_per_s, serving_per_s, out=np.zeros(len(serving_per_s)),
                     where=serving_per_s > 0)
    return np.minimum(util, 1.0, out=util)


def build_observation(
    *, t_s: float, lag_s: float, service: str, slo_ms: float, min_replicas: int,
    max_replicas: int, size: SizeOption,
    size_options: tuple[SizeOption, ...], counts: ReplicaCounts,
    arrivals_per_s: np.ndarray | Callable[[], tuple[np.ndarray]],
    completions_per_s: np.ndarray | Callable[[], tuple[np.ndarray]],
    busy_per_s: np.ndarray | None = None, serving_per_s: np.ndarray | None = None,
    replica_busy_last_s: Sequence[tuple[float, float]],
    queue_length: int, in_flight: int, latency_window_s: float,
    latency_percentiles_ms: tuple[float, float, float] | Callable[[], tuple[float, float, float]],
    max_wait_ms: float,
    utilization: np.ndarray | Callable[[], tuple[np.ndarray]] | None = None,
) -> Observation:
    """The :class:`Observation` a strategy sees, from the same measurements on either side.

    ``busy_per_s`` and ``serving_per_s`` are, per whole second of history, the replicas' busy
    time (a batch of ``b`` counts ``1/b`` per request) and the time replicas were ready or
    draining: ``utilization_per_s`` is their ratio (0 where nothing served), at most 1
    (:func:`utilization_per_s`; a caller that keeps that ratio per second already passes it as
    ``utilization`` instead). ``replica_busy_last_s`` is ``(busy seconds, seconds ready)`` of
    each ready replica over the last second before the (lagged) observation time; each becomes a
    busy fraction at most 1. ``latency_percentiles_ms`` are p50, p95 and p99 of the requests
    completed in the last ``latency_window_s`` (NaN when none), or a function that gives them
    when a strategy first reads one (:meth:`Observation.with_lazy`). ``arrivals_per_s``,
    ``completions_per_s`` and ``utilization`` may likewise be functions giving ``(array,)``
    when first read (each must give the same values whenever it is called).
    """
    if utilization is None:
        utilization = utilization_per_s(busy_per_s, serving_per_s)
    # min(busy / span, 1.0) when span > 0, else 0.0 (busy >= 0: busy < span means span > 0,
    # and busy >= span > 0 means a ratio of at least 1)
    per_rep = tuple([(busy / span) if busy < span else (1.0 if span > 0 else 0.0)
                     for busy, span in replica_busy_last_s])
    values = {
        "time_s": float(t_s), "service": service, "slo_ms": slo_ms, "metric_lag_s": lag_s,
        "arrivals_per_s": arrivals_per_s, "completions_per_s": completions_per_s,
        "utilization_per_s": utilization, "utilization_per_replica": per_rep,
        "queue_length": int(queue_length), "in_flight": int(in_flight),
        "latency_window_s": latency_window_s, "replicas": counts,
        "min_replicas": min_replicas, "max_replicas": max_replicas, "current_size": size,
        "size_options": size_options, "max_wait_ms": max_wait_ms,
        "latency_percentiles_ms": latency_percentiles_ms}
    return Observation._from_measured(values)


# ============================================================================ strategies
def service_context(scenario: Any, service: Any, size: SizeOption,
                    size_options: tuple[SizeOption, ...],
                    true_rate_rps: Callable[[np.ndarray], np.ndarray] | None) -> ServiceContext:
    """The static facts a strategy gets once before the run (``setup``): the service's SLO and
    bounds, the run's duration, its sizes, and the true arrival rate of the arrivals being
    replayed (for the oracle only: MMPP paths are the ones drawn for them)."""
    return ServiceContext(
        service=service.name, slo_ms=service.slo_ms, min_replicas=service.replicas.min,
        max_replicas=service.replicas.max, duration_s=scenario.duration_s,
        initial_replicas=service.replicas.initial, size_options=size_options,
        initial_size=size, true_rate_rps=true_rate_rps)


def select_strategies(scenario: Any, names: Sequence[str] | None, *,
                      source: str | None = None, field: str = "strategies") -> list[Any]:
    """The scenario's strategy entries named by ``names`` (all when empty), in the order
    asked, each once. The one rule everywhere (simulate, sweep, validate): a name is first
    matched against the entries' labels; only when no label matches, against their strategy
    names (which may select several entries)."""
    if not names:
        return list(scenario.strategies)
    chosen: list[Any] = []
    for n in names:
        hit = [s for s in scenario.strategies if s.display_label == n]
        hit = hit or [s for s in scenario.strategies if s.name == n]
        if not hit:
            have = ", ".join(s.display_label for s in scenario.strategies)
            raise UserError(f"strategy '{n}' is not in the scenario (it has: {have})",
                            source=source or scenario.source or f"scenario '{scenario.name}'",
                            field=field)
        chosen.extend(s for s in hit if s not in chosen)
    return chosen


def percentiles_or_nan(values_ms: np.ndarray, q: Sequence[float] = (50, 95, 99)
                       ) -> tuple[float, ...]:
    """Linear-interpolation percentiles of ``values_ms`` (NaN each when empty)."""
    if len(values_ms) == 0:
        return tuple(math.nan for _ in q)
    return tuple(float(v) for v in np.percentile(values_ms, q))
