"""``kpa``: the Knative Pod Autoscaler, concurrency-based with stable and panic windows.

Source: knative/serving ``pkg/autoscaler/scaling/autoscaler.go`` (``Scale``) and
``pkg/reconciler/autoscaling/kpa/scaler.go`` (scale to zero); docs:
https://knative.dev/docs/serving/autoscaling/kpa-specific/ .

Every tick (2 s): the observed concurrency (requests queued or in service, summed over the
service) is averaged over the stable window (60 s) and over the panic window (10 % of it).
``target = target_concurrency * target_utilization``; ``dspc = ceil(stable / target)`` and
``dppc = ceil(panic / target)``, both kept within ``[floor(ready / max_scale_down_rate),
ceil(max_scale_up_rate * ready)]`` (ready taken as at least 1). Panic starts when
``dppc / ready >= panic_threshold`` and lasts until a whole stable window has passed without
crossing it; in panic the count is the highest panic-mode count seen (never scaled down).
Otherwise the count is ``dspc``. With ``min_replicas = 0`` a service with no concurrency over
the stable window goes to zero once ``scale_to_zero_grace_period_s`` has passed; requests that
arrive then wait for a cold start. ``scale_down_delay_s`` holds the highest count of that window.
With ``metric: rps`` the same rule runs on the arrival rate (requests per second since the last
tick) instead of the concurrency; ``min_replicas``/``max_replicas`` (min-scale, max-scale) narrow
the service's bounds.

Conformance with Knative (checked against ``autoscaler_test.go`` in
``tests/test_conformance.py``):

- An autoscaler created with more than one ready replica starts in panic mode holding that
  count (``newAutoscaler``: "We always start in the panic mode, if the deployment is scaled up
  over 1 pod"), so it cannot scale down before a stable window has passed. Here the autoscaler
  is created when the run starts (time 0) with the service's ``replicas.initial`` ready.
- ``scale_down_delay_s`` holds the highest desired count of that window (``max.TimeWindow``),
  whatever the current count; the bounds and the scale-to-zero grace come after it, as the
  reconciler applies them (``pkg/reconciler/autoscaling/kpa/scaler.go``: ``applyBounds``, then
  ``handleScaleToZero``).
- ``activation_scale`` (activation-scale): a non-zero desired count is at least this.
- ``target_burst_capacity`` (target-burst-capacity): only reported, as the decision's
  ``excess_burst_capacity`` (``floor(ready * target_concurrency - tbc - panic value)``; 0 with
  tbc 0, -1 with tbc -1): it decides whether Knative's activator stays in the request path,
  which simscale does not model; it never changes the count.
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Literal

from pydantic import Field

from simscale.strategies.base import Decision, Observation, ServiceContext
from simscale.strategies.governors import MaxWindow, RelativeRateLimit, Step, clamp
from simscale.strategies.params import ParameterizedStrategy, StrategyParams, sync_period_field

_value = itemgetter(1)  # of a (time_s, concurrency) tick


class KpaParams(StrategyParams):
    """Parameters of :class:`Kpa` (names follow Knative's config-autoscaler keys)."""

    target_concurrency: float = Field(
        default=10.0, gt=0, description="requests in flight per replica (container-concurrency-"
        "target-default; Knative's default is 100, too many for one ML model replica)")
    target_utilization: float = Field(default=0.7, gt=0, le=1.0,
                                      description="container-concurrency-target-percentage / 100")
    stable_window_s: float = Field(default=60.0, ge=6, le=3600, description="stable-window (s)")
    panic_window_percentage: float = Field(default=10.0, ge=1, le=100,
                                           description="panic window as % of the stable window")
    panic_threshold_percentage: float = Field(default=200.0, gt=100,
                                              description="panic when demand >= this % of ready")
    max_scale_up_rate: float = Field(default=1000.0, gt=1, description="max-scale-up-rate")
    max_scale_down_rate: float = Field(default=2.0, gt=1, description="max-scale-down-rate")
    scale_to_zero_grace_period_s: float = Field(default=30.0, ge=0,
                                                description="scale-to-zero-grace-period (s)")
    scale_down_delay_s: float = Field(default=0.0, ge=0, le=3600,
                                      description="scale-down-delay (s)")
    activation_scale: int = Field(default=1, ge=1, description="activation-scale: a non-zero "
                                  "desired count is at least this")
    target_burst_capacity: float | None = Field(
        default=None, ge=-1, description="target-burst-capacity: only reported as "
        "excess_burst_capacity in the decision's info (-1: unlimited; None: not reported); the "
        "activator it steers is not modelled")
    metric: Literal["concurrency", "rps"] = Field(
        default="concurrency", description="concurrency: requests queued or in service; rps: "
        "arrivals per second (autoscaling.knative.dev/metric); the target is in its unit")
    min_replicas: int | None = Field(default=None, ge=0, description="min-scale (None: the "
                                     "service's replicas.min; always within the service's bounds)")
    max_replicas: int | None = Field(default=None, ge=1, description="max-scale (None: the "
                                     "service's replicas.max; always within the service's bounds)")
    sync_period_s: float = sync_period_field("tick-interval (s)", default=2.0)


class Kpa(ParameterizedStrategy):
    """Knative KPA: ``ceil(concurrency / (target_concurrency * target_utilization))`` over the
    stable window, or over the panic window while panicking (never scaling down in panic);
    parameters: :class:`KpaParams`."""

    name = "kpa"
    source = "knative/serving pkg/autoscaler/scaling/autoscaler.go; knative.dev KPA docs"
    Params = KpaParams

    @property
    def panic_window_s(self) -> float:
        """The panic window (s)."""
        return self.stable_window_s * self.panic_window_percentage / 100.0

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        self.concurrency: list[tuple[float, float]] = []  # (time_s, in_flight) per tick
        # newAutoscaler (autoscaler.go): created with more than one ready pod, the autoscaler
        # starts in panic mode (panicTime = creation) and maxPanicPods is that count; here the
        # autoscaler is created at the run's start (0 s) with replicas.initial ready
        ready_at_start = ctx.initial_replicas
        self.panic_since_s: float | None = 0.0 if ready_at_start > 1 else None
        self.max_panic_pods = ready_at_start
        self.zero_since_s: float | None = None
        self.rate_limit = RelativeRateLimit(self.max_scale_up_rate, self.max_scale_down_rate)
        # New (autoscaler.go): a delay window only when scale-down-delay > 0
        self.delay = MaxWindow(self.scale_down_delay_s) if self.scale_down_delay_s > 0 else None

    def _average(self, now: float, window_s: float) -> float:
        values = [c for t, c in self.concurrency if t > now - window_s]
        return sum(values) / len(values) if values else 0.0

    def _averages(self, now: float) -> tuple[float, float]:
        """The mean concurrency over the stable and the panic window, after dropping the ticks
        older than the stable window. Ticks come in time order, so the windows are suffixes of
        :attr:`concurrency`: the same values summed in the same order as :meth:`_average`."""
        conc = self.concurrency
        if len(conc) > 1 and conc[-2][0] > now:
            self._in_order = False
        if not getattr(self, "_in_order", True):  # ticks out of time order (hand-fed): filter
            self.concurrency = [(t, c) for t, c in conc if t > now - self.stable_window_s]
            return (self._average(now, self.stable_window_s),
                    self._average(now, self.panic_window_s))
        cutoff = now - self.stable_window_s
        k = 0
        while k < len(conc) and not conc[k][0] > cutoff:
            k += 1
        if k:
            del conc[:k]
        panic_cut = now - self.panic_window_s
        j = len(conc)
        while j > 0 and conc[j - 1][0] > panic_cut:
            j -= 1
        stable = sum(map(_value, conc)) / len(conc) if conc else 0.0
        panic = sum(map(_value, conc[j:])) / (len(conc) - j) if j < len(conc) else 0.0
        return stable, panic

    def observed(self, obs: Observation) -> tuple[float, float]:
        """Record this tick's metric (concurrency, or requests per second since the last tick)
        and return its mean over the stable and the panic window (Knative's
        ``StableAndPanicConcurrency`` / ``StableAndPanicRPS``)."""
        now = obs.time_s
        if self.metric == "concurrency":
            self.concurrency.append((now, float(obs.in_flight)))
        else:
            self.concurrency.append((now, obs.rate_rps(self.sync_period_s)))
        return self._averages(now)

    def scale(self, now: float, ready_count: int, stable: float, panic: float) -> int:
        """The autoscaler's desired count (``autoscaler.go`` ``Scale``) from the window means:
        stable and panic counts within the rate limits, activation scale, panic mode, then the
        scale-down delay window."""
        ready = max(1, ready_count)
        target = self.target_concurrency * self.target_utilization
        dspc = math.ceil(stable / target - 1e-9)
        dppc = math.ceil(panic / target - 1e-9)
        low, high = self.rate_limit.limits(ready_count)
        stable_pods = min(max(dspc, low), high)
        panic_pods = min(max(dppc, low), high)
        if self.activation_scale > 1:
            if dspc > 0:
                stable_pods = max(stable_pods, self.activation_scale)
            if dppc > 0:
                panic_pods = max(panic_pods, self.activation_scale)

        over = dppc / ready >= self.panic_threshold_percentage / 100.0
        if over:
            self.panic_since_s = now
        elif self.panic_since_s is not None and self.panic_since_s + self.stable_window_s < now:
            self.panic_since_s = None
            self.max_panic_pods = 0

        desired = stable_pods
        if self.panic_since_s is not None:  # never scale down in panic
            desired = max(desired, panic_pods, self.max_panic_pods)
            self.max_panic_pods = desired
        if self.delay is not None:
            desired = self.delay.apply(Step(now, desired, desired, 0, desired))
        return desired

    def excess_burst_capacity(self, ready_count: int, panic: float) -> float:
        """``autoscaler.go``'s excess burst capacity: ``floor(ready * total - tbc - panic)``
        (``total`` = ``target_concurrency``), 0 when the capacity is 0, -1 when unlimited."""
        tbc = self.target_burst_capacity
        if tbc is None or tbc < 0:
            return -1.0
        if tbc == 0:
            return 0.0
        return float(math.floor(ready_count * self.target_concurrency - tbc - panic))

    def decide(self, obs: Observation) -> Decision:
        now = obs.time_s
        stable, panic = self.observed(obs)
        desired = self.scale(now, obs.replicas.ready, stable, panic)
        # the reconciler (scaler.go scale): min/max bounds, then scale to zero after the grace
        low, high = obs.min_replicas, obs.max_replicas
        if self.min_replicas is not None:
            low = clamp(self.min_replicas, low, high)
        if self.max_replicas is not None:
            high = clamp(self.max_replicas, low, high)
        desired = clamp(desired, low, high)
        current = obs.replicas.desired_total
        if desired == 0:  # scale to zero only after the grace period
            if self.zero_since_s is None:
                self.zero_since_s = now
            if now - self.zero_since_s < self.scale_to_zero_grace_period_s:
                desired = min(1, current)
        else:
            self.zero_since_s = None
        info = {"panic": 1.0 if self.panic_since_s is not None else 0.0,
                "stable_concurrency": stable, "panic_concurrency": panic}
        if self.target_burst_capacity is not None:
            info["excess_burst_capacity"] = self.excess_burst_capacity(obs.replicas.ready, panic)
        return Decision(replicas=desired, info=info)
