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
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from simscale.strategies.base import Decision, Observation, ServiceContext
from simscale.strategies.governors import (
    Bounds,
    Chain,
    RateLimit,
    ScalingPolicy,
    SelectPolicy,
    StabilizationWindow,
    Step,
)
from simscale.strategies.params import ParameterizedStrategy, StrategyParams, sync_period_field


class PolicyParams(StrategyParams):
    """One scaling policy: ``type`` Pods or Percent, ``value``, ``period_s``."""

    type: Literal["Pods", "Percent"] = Field(description="Pods: a count; Percent: of the count")
    value: int = Field(gt=0, description="pods or percent allowed per period")
    period_s: float = Field(gt=0, le=1800, description="the period (s)")


class HpaParams(StrategyParams):
    """Parameters of :class:`Hpa` (names follow the HPA spec; durations in seconds)."""

    metric: Literal["utilization", "in_flight"] = Field(
        default="utilization", description="utilization: busy fraction per ready replica (like "
        "CPU); in_flight: average requests queued or in service per ready replica")
    target_utilization: float = Field(default=0.6, gt=0, le=1.0,
                                      description="target busy fraction (0..1) for utilization")
    target_value: float = Field(default=4.0, gt=0,
                                description="target in-flight requests per replica for in_flight")
    tolerance: float = Field(default=0.1, ge=0, description="no change while |ratio - 1| <= this")
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
        self.governors = Chain(
            StabilizationWindow(self.scale_up_stabilization_s, self.scale_down_stabilization_s),
            RateLimit(_policies(self.scale_up_policies), _policies(self.scale_down_policies),
                      self.scale_up_select, self.scale_down_select),
            Bounds(),
        )

    def pod_metrics(self, obs: Observation) -> tuple[list[float], float]:
        """Per-ready-replica metric values and the target (``utilization`` or in-flight)."""
        ready = obs.replicas.ready
        if self.metric == "utilization":
            return list(obs.utilization_per_replica[:ready]), self.target_utilization
        if ready <= 0:
            return [], self.target_value
        return [obs.in_flight / ready] * ready, self.target_value

    def recommend(self, obs: Observation) -> int:
        """The controller's raw desired count (``GetResourceReplicas``), before behaviors."""
        current = obs.replicas.desired_total
        values, target = self.pod_metrics(obs)
        if not values:  # no metrics: the controller reports an error and changes nothing
            return current
        missing = max(0, obs.replicas.ready - len(values))
        unready = obs.replicas.pending + obs.replicas.starting
        ratio = sum(values) / len(values) / target
        scale_up_with_unready = unready > 0 and ratio > 1.0
        if not scale_up_with_unready and missing == 0:
            if abs(1.0 - ratio) <= self.tolerance:
                return current
            return math.ceil(ratio * len(values))
        extra = []
        if missing and ratio < 1.0:  # scale-down: missing pods at 100 % of the request (CPU)
            extra += [max(1.0, target) if self.metric == "utilization" else target] * missing
        elif missing and ratio > 1.0:  # or exactly at the target (other metrics)
            extra += [0.0] * missing  # scale-up: missing pods at 0
        if scale_up_with_unready:
            extra += [0.0] * unready
        all_values = values + extra
        new_ratio = sum(all_values) / len(all_values) / target
        if (abs(1.0 - new_ratio) <= self.tolerance or (ratio < 1.0 < new_ratio)
                or (ratio > 1.0 > new_ratio)):
            return current
        desired = math.ceil(new_ratio * len(all_values))
        if (new_ratio < 1.0 and desired > current) or (new_ratio > 1.0 and desired < current):
            return current
        return desired

    def decide(self, obs: Observation) -> Decision:
        current = obs.replicas.desired_total
        if current == 0 and obs.min_replicas != 0:
            return Decision(replicas=obs.min_replicas)  # scaled to zero by hand: HPA is off
        if current > obs.max_replicas:
            return Decision(replicas=obs.max_replicas)
        if current < obs.min_replicas:
            return Decision(replicas=obs.min_replicas)
        raw = self.recommend(obs)
        desired = self.governors(Step(obs.time_s, current, raw, obs.min_replicas,
                                      obs.max_replicas, obs.replicas.ready))
        return Decision(replicas=desired, info={"raw_desired": float(raw)})
