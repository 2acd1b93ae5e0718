"""``hpa``: the Kubernetes Horizontal Pod Autoscaler (autoscaling/v2) as its controller computes it.

Source: kubernetes ``pkg/controller/podautoscaler/replica_calculator.go`` (``GetResourceReplicas``,
``calcPlainMetricReplicas``, ``groupPods``) and ``horizontal.go`` (``reconcileAutoscaler``,
``stabilizeRecommendationWithBehaviors``, ``convertDesiredReplicasWithBehaviorRate``); docs:
https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/ .

Core rule, every ``sync_period_s`` (15 s): over the *ready* replicas that report the metric,
``ratio = mean(metric) / target``; when ``|ratio - 1| <= tolerance`` keep the count, else
``desired = ceil(ratio * ready)``. Replicas still pending or starting are unready: when the ratio
says scale up they are counted at 0 % of the target (so a scale-up is not repeated while the
new replicas warm up) and the ratio is recomputed; if that recomputed ratio is within tolerance
or flips direction, the count is kept. Ready replicas missing a metric count as busy 100 %
(utilization) or at the target (other metrics) when scaling down, and as 0 when scaling up.
Then the behavior governors: stabilization windows (scale-up 0 s, scale-down 300 s) and scaling
policies per period (up: max of 4 pods or 100 % per 15 s; down: 100 % per 15 s).

Conformance with the controller (each rule cited where it is coded; checked against the cases of
``replica_calculator_test.go`` and ``horizontal_test.go`` in ``tests/test_conformance.py``):

- ``behavior: false`` is a manifest *without* ``behavior``: the controller then runs
  ``normalizeDesiredReplicas``, not the v2 policies: the highest recommendation of the last
  ``scale_down_stabilization_s`` (``--horizontal-pod-autoscaler-downscale-stabilization``, 300 s)
  and a scale-up of at most ``max(2 x current, 4)`` per sync (``calculateScaleUpLimit``).
- Tolerances per direction (``behavior.scaleUp/scaleDown.tolerance``, ``Tolerances.isWithin``):
  no change while ``1 - scale_down_tolerance <= ratio <= 1 + scale_up_tolerance``.
- Several metrics (``additional_metrics``): each gives a count and the largest wins
  (``computeReplicasForMetrics``); a metric with no data is skipped, and with none the count is
  kept.
- Object and External metrics with a ``Value`` target (``target_type: Value``) follow
  ``getUsageRatioReplicaCount``: ``ceil(total / target * ready)`` outside the tolerance, with no
  correction for unready replicas; from zero replicas ``ceil(total / target)``.
- A target scaled to zero by hand stays at zero: when the count is 0 and ``minReplicas`` is not,
  the controller disables autoscaling (``reconcileAutoscaler``: "scaling is disabled since the
  replica count of the target is zero"). In simscale that is a service that *starts* at zero
  (``replicas.initial: 0``) under an HPA whose ``min_replicas`` is at least 1. A count that fell
  to zero because replicas crashed is not that (the Deployment would recreate them; the spec
  keeps its count): the HPA then asks for ``min_replicas`` as before.

Options for imported manifests (each off by default): ``min_replicas``/``max_replicas`` narrow
the service's bounds; ``rps`` and ``queue_length`` metrics and ``target_type: Value`` (Object and
External metrics); ``target_cpu_cores`` (cpu AverageValue); ``activation_threshold`` adds KEDA's
operator (keda.sh docs, ScaledObject: scale to and from zero around the HPA).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from simscale.strategies.base import Decision, Observation, ServiceContext
from simscale.strategies.governors import (
    Bounds,
    Chain,
    MaxWindow,
    RateLimit,
    ScaleUpLimit,
    ScalingPolicy,
    SelectPolicy,
    StabilizationWindow,
    Step,
    clamp,
)
from simscale.strategies.params import ParameterizedStrategy, StrategyParams, sync_period_field


class PolicyParams(StrategyParams):
    """One scaling policy: ``type`` Pods or Percent, ``value``, ``period_s``."""

    type: Literal["Pods", "Percent"] = Field(description="Pods: a count; Percent: of the count")
    value: int = Field(gt=0, description="pods or percent allowed per period")
    period_s: float = Field(gt=0, le=1800, description="the period (s)")


class HpaMetric(StrategyParams):
    """One metric of the HPA (an entry of ``spec.metrics``) and its target."""

    metric: Literal["utilization", "in_flight", "rps", "queue_length"] = Field(
        default="utilization", description="utilization: busy fraction per ready replica (like "
        "CPU); in_flight: requests queued or in service; rps: arrivals per second over "
        "metric_window_s; queue_length: requests waiting (the last three per ready replica, or "
        "in total with target_type Value)")
    target_utilization: float = Field(default=0.6, gt=0, le=1.0,
                                      description="target busy fraction (0..1) for utilization")
    target_cpu_cores: float | None = Field(
        default=None, gt=0, description="utilization target as busy cores per replica (cpu "
        "AverageValue): target_utilization becomes this / the replica's threads; None: unused")
    target_value: float = Field(default=4.0, gt=0, description="target of in_flight, rps or "
                                "queue_length per replica (or in total with target_type Value)")
    target_type: Literal["AverageValue", "Value"] = Field(
        default="AverageValue", description="AverageValue: target_value per ready replica; "
        "Value: target_value for the service's total (Object/External metrics)")


class HpaParams(HpaMetric):
    """Parameters of :class:`Hpa` (names follow the HPA spec; durations in seconds). The fields
    of :class:`HpaMetric` are the first (or only) metric."""

    additional_metrics: list[HpaMetric] = Field(
        default_factory=list, description="further metrics (spec.metrics[1:]): each gives a "
        "count and the largest wins (computeReplicasForMetrics)")
    metric_window_s: float = Field(default=60.0, gt=0, le=3600,
                                   description="window (s) the rps metric is averaged over")
    min_replicas: int | None = Field(default=None, ge=0, description="minReplicas (None: the "
                                     "service's replicas.min; always within the service's bounds)")
    max_replicas: int | None = Field(default=None, ge=1, description="maxReplicas (None: the "
                                     "service's replicas.max; always within the service's bounds)")
    activation_threshold: float | None = Field(
        default=None, ge=0, description="KEDA: the service's total metric must exceed this to "
        "scale from zero; with min_replicas 0 it scales to zero after cooldown_s below it "
        "(None: no KEDA operator, plain HPA)")
    polling_interval_s: float = Field(default=30.0, gt=0,
                                      description="KEDA pollingInterval: activation checks (s)")
    cooldown_s: float = Field(default=300.0, ge=0,
                              description="KEDA cooldownPeriod: inactive this long -> zero (s)")
    initial_cooldown_s: float = Field(default=0.0, ge=0, description="KEDA "
                                      "initialCooldownPeriod: no scale to zero before this (s)")
    tolerance: float = Field(default=0.1, ge=0, description="--horizontal-pod-autoscaler-"
                             "tolerance: no change while |ratio - 1| <= this")
    scale_up_tolerance: float | None = Field(
        default=None, ge=0, description="behavior.scaleUp.tolerance: no scale-up while ratio <= "
        "1 + this (None: tolerance)")
    scale_down_tolerance: float | None = Field(
        default=None, ge=0, description="behavior.scaleDown.tolerance: no scale-down while "
        "ratio >= 1 - this (None: tolerance)")
    behavior: bool = Field(
        default=True, description="True: the autoscaling/v2 behavior below (stabilization "
        "windows, policies); False: a manifest without behavior (normalizeDesiredReplicas): "
        "the highest recommendation of the last scale_down_stabilization_s and a scale-up of "
        "at most max(2 x current, 4) per sync; the scale_up_* parameters are then unused")
    scale_up_stabilization_s: float = Field(default=0.0, ge=0, le=3600,
                                            description="scaleUp stabilizationWindowSeconds")
    scale_down_stabilization_s: float = Field(default=300.0, ge=0, le=3600,
                                              description="scaleDown stabilizationWindowSeconds")
    scale_up_policies: list[PolicyParams] = Field(
        default_factory=lambda: [PolicyParams(type="Pods", value=4, period_s=15),
                                 PolicyParams(type="Percent", value=100, period_s=15)],
        description="scaleUp policies")
    scale_up_select: SelectPolicy = Field(default="Max", description="scaleUp selectPolicy")
    scale_down_policies: list[PolicyParams] = Field(
        default_factory=lambda: [PolicyParams(type="Percent", value=100, period_s=15)],
        description="scaleDown policies")
    scale_down_select: SelectPolicy = Field(default="Max", description="scaleDown selectPolicy")
    sync_period_s: float = sync_period_field("--horizontal-pod-autoscaler-sync-period (s)")


def _policies(items: list[dict[str, Any]] | list[PolicyParams]) -> list[ScalingPolicy]:
    """Governor policies from the ``scale_*_policies`` parameters (dicts, or :class:`PolicyParams`
    when a caller set the attribute to models)."""
    out = []
    for p in items:
        d = p if isinstance(p, dict) else p.model_dump()
        out.append(ScalingPolicy(d["type"], int(d["value"]), float(d["period_s"])))
    return out


class Hpa(ParameterizedStrategy):
    """Kubernetes HPA: ``desired = ceil(ready * metric / target)`` outside the tolerance, with
    unready replicas handled as the controller does, then stabilization and scaling policies;
    parameters: :class:`HpaParams`."""

    name = "hpa"
    source = ("kubernetes pkg/controller/podautoscaler (replica_calculator.go, horizontal.go); "
              "kubernetes.io HorizontalPodAutoscaler docs")
    Params = HpaParams

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        if self.behavior:  # normalizeDesiredReplicasWithBehaviors
            self.governors = Chain(
                StabilizationWindow(self.scale_up_stabilization_s,
                                    self.scale_down_stabilization_s),
                RateLimit(_policies(self.scale_up_policies), _policies(self.scale_down_policies),
                          self.scale_up_select, self.scale_down_select),
                Bounds(),
            )
        else:  # normalizeDesiredReplicas: stabilizeRecommendation, convertDesiredReplicasWithRules
            self.governors = Chain(
                MaxWindow(self.scale_down_stabilization_s, strict=False, seed_with_current=True),
                ScaleUpLimit(),
                Bounds(),
            )
        self.metrics = [HpaMetric.model_validate({name: getattr(self, name)
                                                  for name in HpaMetric.model_fields})]
        self.metrics += [HpaMetric.model_validate(m) if isinstance(m, dict) else m
                         for m in self.additional_metrics]
        # a target at zero replicas when the HPA starts was scaled to zero by hand
        self._zero_by_hand = ctx.initial_replicas == 0
        self._polled_s: float | None = None  # KEDA's last activity check
        self._active = False
        self._last_active_s = 0.0  # (the run's start counts as the last activity)

    def within_tolerance(self, ratio: float) -> bool:
        """``Tolerances.isWithin`` (replica_calculator.go): ``1 - down <= ratio <= 1 + up``."""
        up = self.tolerance if self.scale_up_tolerance is None else self.scale_up_tolerance
        down = self.tolerance if self.scale_down_tolerance is None else self.scale_down_tolerance
        if up == down:  # one tolerance: the form simscale has always computed
            return abs(1.0 - ratio) <= up
        return 1.0 - down <= ratio <= 1.0 + up

    def pod_metrics(self, obs: Observation,
                    spec: HpaMetric | None = None) -> tuple[list[float], float]:
        """Per-ready-replica values of ``spec`` (the first metric when ``None``) and the target:
        utilization against ``target_utilization`` (or ``target_cpu_cores`` over the replica's
        threads); the other metrics as the service's total spread evenly over the ready
        replicas, against ``target_value`` (per replica; divided by the ready count with
        ``target_type`` Value, so that the ratio is total / target as the controller computes
        it)."""
        spec = spec or self.metrics[0]
        ready = obs.replicas.ready
        if spec.metric == "utilization":
            target = spec.target_utilization
            if spec.target_cpu_cores is not None:
                target = spec.target_cpu_cores / obs.current_size.threads
            return list(obs.utilization_per_replica[:ready]), target
        if ready <= 0:
            return [], spec.target_value
        target = spec.target_value if spec.target_type == "AverageValue" else (
            spec.target_value / ready)
        return [self.metric_total(obs, spec) / ready] * ready, target

    def metric_total(self, obs: Observation, spec: HpaMetric | None = None) -> float:
        """The service's total of ``spec``'s metric (the first metric when ``None``; not
        defined for ``utilization``: 0)."""
        metric = (spec or self.metrics[0]).metric
        if metric == "in_flight":
            return obs.in_flight
        if metric == "rps":
            return obs.rate_rps(self.metric_window_s)
        if metric == "queue_length":
            return obs.queue_length
        return 0.0

    def bounds(self, obs: Observation) -> tuple[int, int]:
        """``min_replicas..max_replicas`` within the service's own bounds."""
        low = obs.min_replicas if self.min_replicas is None else clamp(
            self.min_replicas, obs.min_replicas, obs.max_replicas)
        high = obs.max_replicas if self.max_replicas is None else clamp(
            self.max_replicas, low, obs.max_replicas)
        return low, high

    def keda(self, obs: Observation, current: int, low: int) -> int | None:
        """KEDA's operator around the HPA (``activation_threshold`` set): it checks activity
        (total metric > threshold) every ``polling_interval_s``; at zero replicas it scales to
        ``max(1, low)`` once active; with ``low == 0`` it scales to zero once inactive for
        ``cooldown_s`` (and not before ``initial_cooldown_s``). Returns the count it sets, or
        ``None`` when the HPA decides (keda/pkg/scaling/executor/scale_scaledobjects.go)."""
        now = obs.time_s
        if self._polled_s is None or now - self._polled_s >= self.polling_interval_s - 1e-9:
            self._polled_s = now
            self._active = self.metric_total(obs) > self.activation_threshold
            if self._active:
                self._last_active_s = now
        if current == 0:
            return max(1, low) if self._active else 0
        if (low == 0 and not self._active and now - self._last_active_s >= self.cooldown_s
                and now >= self.initial_cooldown_s):
            return 0
        return None

    def recommend(self, obs: Observation) -> int:
        """The controller's raw desired count before behaviors: the largest of the metrics'
        counts (``computeReplicasForMetrics``), or the current count when no metric has data
        (the controller reports an error and changes nothing)."""
        metrics = self.metrics
        if len(metrics) == 1:
            count = self.recommend_metric(obs, metrics[0])
            return obs.replicas.desired_total if count is None else count
        counts = [c for c in (self.recommend_metric(obs, m) for m in metrics) if c is not None]
        return max(counts) if counts else obs.replicas.desired_total

    def recommend_metric(self, obs: Observation, spec: HpaMetric) -> int | None:
        """One metric's count (``GetResourceReplicas``, ``calcPlainMetricReplicas``;
        ``getUsageRatioReplicaCount`` for a ``Value`` target), or ``None`` without data."""
        current = obs.replicas.desired_total
        if spec.metric != "utilization" and spec.target_type == "Value":
            if obs.replicas.ready <= 0 and current != 0:
                return None  # no ready pod reports: no data
            ratio = self.metric_total(obs, spec) / spec.target_value
            if current == 0:  # scale from zero (HPAScaleToZero): ceil(ratio)
                return math.ceil(ratio)
            if self.within_tolerance(ratio):
                return current
            return math.ceil(ratio * obs.replicas.ready)
        values, target = self.pod_metrics(obs, spec)
        if not values:
            return None
        missing = max(0, obs.replicas.ready - len(values))
        unready = obs.replicas.pending + obs.replicas.starting
        ratio = sum(values) / len(values) / target
        scale_up_with_unready = unready > 0 and ratio > 1.0
        if not scale_up_with_unready and missing == 0:
            if self.within_tolerance(ratio):
                return current
            return math.ceil(ratio * len(values))
        extra = []
        if missing and ratio < 1.0:  # scale-down: missing pods at 100 % of the request (CPU)
            extra += [max(1.0, target) if spec.metric == "utilization" else target] * missing
        elif missing and ratio > 1.0:  # or exactly at the target (other metrics)
            extra += [0.0] * missing  # scale-up: missing pods at 0
        if scale_up_with_unready:
            extra += [0.0] * unready
        all_values = values + extra
        new_ratio = sum(all_values) / len(all_values) / target
        if (self.within_tolerance(new_ratio) or (ratio < 1.0 < new_ratio)
                or (ratio > 1.0 > new_ratio)):
            return current
        desired = math.ceil(new_ratio * len(all_values))
        if (new_ratio < 1.0 and desired > current) or (new_ratio > 1.0 and desired < current):
            return current
        return desired

    def decide(self, obs: Observation) -> Decision:
        current = obs.replicas.desired_total
        low, high = self.bounds(obs)
        if self.activation_threshold is not None:
            keda = self.keda(obs, current, low)
            if keda is not None:
                return Decision(replicas=keda)
            low = max(1, low)  # the HPA under KEDA keeps minReplicas >= 1
        if current == 0 and low != 0:
            # reconcileAutoscaler: a target scaled to zero by hand (here: one that started at
            # zero) disables the HPA; replicas lost to crashes are recreated (spec unchanged)
            return Decision(replicas=0 if getattr(self, "_zero_by_hand", False) else low)
        if current > high:
            return Decision(replicas=high)
        if current < low:
            return Decision(replicas=low)
        raw = self.recommend(obs)
        desired = self.governors(Step(obs.time_s, current, raw, low, high, obs.replicas.ready))
        return Decision(replicas=desired, info={"raw_desired": float(raw)})
