"""Conformance of the built-in ``hpa`` and ``kpa`` with the real controllers.

Each test re-expresses a case of the controller's own unit tests with simscale's inputs: an
:class:`Observation` built to carry the same metric values, fed to the built-in strategy's
``decide``, and the same recommended replica count asserted. Every test names its source, as
``# <project> <file> <TestName>``. Sources read:

- kubernetes ``pkg/controller/podautoscaler/replica_calculator_test.go``, ``horizontal_test.go``
  (and the rules in ``replica_calculator.go``, ``horizontal.go``);
- knative/serving ``pkg/autoscaler/scaling/autoscaler_test.go`` (rules in ``autoscaler.go``).

How the upstream fixtures map: a pod's CPU level over its request is a ready replica's busy
fraction (requests are equal in simscale, so a case with unequal requests keeps its usage
ratio); an unready pod is a starting (or, unscheduled, a pending) replica, which reports no
metric; a ready pod whose metric is missing is a ready replica absent from
``utilization_per_replica``; a Pods metric is the service's total spread over the ready
replicas (``metric: in_flight`` or ``rps``); an Object/External ``Value`` target is
``target_type: Value``. The controller's stored recommendations and Knative's fake metric client
are set directly, as the upstream tests set them. Utilizations above 100 % (the calculator's
``levels`` exceed the request) are scaled down together with the target: the ratio is the same.
The calculator's own tests are checked on ``info["raw_desired"]`` (the count before behaviors),
the controller's on the final count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from simscale.strategies import (
    Observation,
    ReplicaCounts,
    ServiceContext,
    SizeOption,
    make_strategy,
)
from simscale.strategies.hpa import Hpa
from simscale.strategies.kpa import Kpa

SIZE = SizeOption(device="cpu", threads=1, alpha_ms=10.0, beta_ms=1.0, mean_factor=1.0, scv=0.5,
                  max_batch_size=1, price_per_hour_usd=0.1, cold_start_s=10.0)


def context(low: int = 0, high: int = 5000, initial: int = 1) -> ServiceContext:
    """The service's static facts: bounds ``low..high``, ``initial`` replicas at the start."""
    return ServiceContext(service="svc", slo_ms=200.0, min_replicas=low, max_replicas=high,
                          duration_s=3600.0, initial_replicas=initial, size_options=(SIZE,),
                          initial_size=SIZE)


def see(time_s: float = 100.0, *, ready: int, utils: tuple[float, ...] | None = None,
        starting: int = 0, pending: int = 0, in_flight: int = 0, rate_rps: float = 0.0,
        low: int = 0, high: int = 5000) -> Observation:
    """An observation: ``utils`` the ready replicas' busy fractions (fewer than ``ready``: the
    others' metric is missing), ``in_flight`` and a flat arrival rate ``rate_rps``."""
    utils = (0.0,) * ready if utils is None else utils
    arrivals = np.full(120, float(rate_rps))
    return Observation(
        time_s=time_s, service="svc", slo_ms=200.0, metric_lag_s=0.0, arrivals_per_s=arrivals,
        completions_per_s=arrivals, utilization_per_s=np.full(120, 0.5),
        utilization_per_replica=tuple(utils), queue_length=0, in_flight=in_flight,
        latency_p50_ms=math.nan, latency_p95_ms=math.nan, latency_p99_ms=math.nan,
        latency_window_s=60.0, replicas=ReplicaCounts(pending=pending, starting=starting,
                                                      ready=ready),
        min_replicas=low, max_replicas=high, current_size=SIZE)


def hpa(*, initial: int = 1, low: int = 0, high: int = 5000, **params: Any) -> Hpa:
    """The built-in ``hpa`` with ``params``, set up for a service of bounds ``low..high``."""
    strategy = make_strategy("hpa", params)
    strategy.setup(context(low, high, initial))
    return strategy


def prime(strategy: Hpa, now: float, records: list[tuple[float, int]]) -> None:
    """Set the controller's stored recommendations, ``(age_s, count)`` each, as the upstream
    tests set ``recommendations`` (an empty list: nothing stored, no initial record)."""
    window = strategy.governors.governors[0]
    window._seeded = True
    window.records = [(now - age_s, count) for age_s, count in records]


# ============================================================== replica_calculator_test.go


CALCULATOR_CASES = [
    # (upstream test, params, observation kwargs, expected raw count)
    ("TestReplicaCalcScaleUp", {"target_utilization": 0.3},
     {"ready": 3, "utils": (0.3, 0.5, 0.7)}, 5),
    ("TestReplicaCalcScaleUpUnreadyLessScale", {"target_utilization": 0.3},
     {"ready": 2, "utils": (0.5, 0.7), "starting": 1}, 4),
    ("TestReplicaCalcScaleUpUnreadyNoScale", {"target_utilization": 0.3},
     {"ready": 1, "utils": (0.4,), "starting": 2}, 3),
    ("TestReplicaCalcScaleUpIgnoresFailedPods", {"target_utilization": 0.3},
     {"ready": 2, "utils": (0.5, 0.7)}, 4),
    ("TestReplicaCalcScaleUpCM", {"metric": "in_flight", "target_value": 15},
     {"ready": 3, "in_flight": 60}, 4),
    ("TestReplicaCalcScaleUpCMObject",
     {"metric": "in_flight", "target_value": 15, "target_type": "Value"},
     {"ready": 3, "in_flight": 20}, 4),
    ("TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods",
     {"metric": "in_flight", "target_value": 10, "target_type": "Value"},
     {"ready": 1, "starting": 2, "in_flight": 50}, 5),
    ("TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods",
     {"metric": "rps", "target_value": 4.4, "target_type": "Value"},
     {"ready": 1, "starting": 2, "rate_rps": 8.6}, 2),
    ("TestReplicaCalcScaleDown", {"target_utilization": 0.5},
     {"ready": 5, "utils": (0.1, 0.3, 0.5, 0.25, 0.25)}, 3),
    ("TestReplicaCalcScaleDownCM", {"metric": "in_flight", "target_value": 20},
     {"ready": 5, "in_flight": 60}, 3),
    ("TestReplicaCalcScaleDownCMObject",
     {"metric": "in_flight", "target_value": 20, "target_type": "Value"},
     {"ready": 5, "in_flight": 12}, 3),
    ("TestReplicaCalcScaleDownExcludeUnreadyPods", {"target_utilization": 0.5},
     {"ready": 3, "utils": (0.1, 0.3, 0.5), "starting": 2}, 2),
    ("TestReplicaCalcScaleDownExcludeUnscheduledPods", {"target_utilization": 0.5},
     {"ready": 1, "utils": (0.1,), "pending": 4}, 1),
    ("TestReplicaCalcTolerance", {"target_utilization": 0.5},  # usage ratio 3060/3000 = 1.02
     {"ready": 3, "utils": (0.51, 0.51, 0.51)}, 3),
    ("TestReplicaCalcToleranceCM", {"metric": "in_flight", "target_value": 20},
     {"ready": 3, "in_flight": 62}, 3),
    ("TestReplicaCalcToleranceCMExternal",
     {"metric": "rps", "target_value": 8.888, "target_type": "Value"},
     {"ready": 3, "rate_rps": 8.6}, 3),
]


@pytest.mark.parametrize(("upstream", "params", "seen", "expected"), CALCULATOR_CASES,
                         ids=[c[0] for c in CALCULATOR_CASES])
def test_replica_calculator_cases(upstream: str, params: dict[str, Any], seen: dict[str, Any],
                                  expected: int) -> None:
    # kubernetes replica_calculator_test.go <upstream> (GetResourceReplicas /
    # calcPlainMetricReplicas / GetObjectMetricReplicas / GetExternalMetricReplicas)
    decision = hpa(**params).decide(see(**seen))
    assert decision.info["raw_desired"] == expected, upstream


def test_missing_and_empty_metrics() -> None:
    # kubernetes horizontal_test.go TestMissingMetrics: 4 pods, 2 report 400m and 95m of 1
    # core at a 100 % target; the missing two count as 100 % on a scale-down -> 3
    strategy = hpa(target_utilization=1.0, initial=4, low=2, high=6)
    prime(strategy, 100.0, [])
    assert strategy.decide(see(ready=4, utils=(0.4, 0.095), low=2, high=6)).replicas == 3
    # kubernetes horizontal_test.go TestEmptyMetrics: no metric at all -> no change
    strategy = hpa(target_utilization=1.0, initial=4, low=2, high=6)
    assert strategy.decide(see(ready=4, utils=(), low=2, high=6)).replicas == 4


# ============================================================== horizontal_test.go: bounds


def test_scale_up_and_down_through_the_controller() -> None:
    # kubernetes horizontal_test.go TestScaleUp: min 2, max 6, 3 pods at 30/50/70 % of a
    # 30 % target -> 5
    strategy = hpa(target_utilization=0.3, initial=3, low=2, high=6)
    assert strategy.decide(see(ready=3, utils=(0.3, 0.5, 0.7), low=2, high=6)).replicas == 5
    # kubernetes horizontal_test.go TestScaleDown: 5 pods at 10/30/50/25/25 % of 50 %, no stored
    # recommendation -> 3
    strategy = hpa(target_utilization=0.5, initial=5, low=2, high=6)
    prime(strategy, 100.0, [])
    obs = see(ready=5, utils=(0.1, 0.3, 0.5, 0.25, 0.25), low=2, high=6)
    assert strategy.decide(obs).replicas == 3
    # kubernetes horizontal_test.go TestScaleDownStabilizeInitialSize: the same, but the
    # controller starts its window with the current count (recordInitialRecommendation) -> 5
    strategy = hpa(target_utilization=0.5, initial=5, low=2, high=6)
    assert strategy.decide(obs).replicas == 5


@pytest.mark.parametrize(("upstream", "low", "high", "current", "utils", "target", "expected"), [
    ("TestMinReplicas", 2, 5, 3, (0.01, 0.095, 0.01), 0.9, 2),
    ("TestZeroMinReplicasDesiredZero", 0, 5, 3, (0.0, 0.0, 0.0), 0.9, 0),
    ("TestMinReplicasDesiredZero", 2, 5, 3, (0.0, 0.0, 0.0), 0.9, 2),
    ("TestTooFewReplicas", 3, 5, 2, (), 0.9, 3),
    ("TestTooManyReplicas", 3, 5, 10, (), 0.9, 5),
    ("TestMaxReplicas", 2, 5, 3, (0.8, 0.95, 0.1), 0.09, 5),
])
def test_min_max_bounds(upstream: str, low: int, high: int, current: int,
                        utils: tuple[float, ...], target: float, expected: int) -> None:
    # kubernetes horizontal_test.go <upstream> (reconcileAutoscaler: below min -> min, above
    # max -> max; normalize: within [min, max]); stored recommendations empty as upstream
    strategy = hpa(target_utilization=target, min_replicas=low, max_replicas=high,
                   initial=current)
    prime(strategy, 100.0, [])
    ready = len(utils) if utils else current
    assert strategy.decide(see(ready=ready, utils=utils or None)).replicas == expected, upstream


def test_target_scaled_to_zero_by_hand_stays_at_zero() -> None:
    # kubernetes horizontal_test.go TestZeroReplicas: minReplicas 3, the target at 0 replicas
    # -> 0 (reconcileAutoscaler: "scaling is disabled since the replica count of the target is
    # zero"). In simscale: a service that starts at zero under an HPA with min_replicas 3.
    strategy = hpa(min_replicas=3, max_replicas=5, initial=0)
    for t in (15.0, 30.0, 600.0):
        assert strategy.decide(see(t, ready=0)).replicas == 0
    # not a hand-made zero: replicas lost to crashes are recreated (the spec keeps its count)
    strategy = hpa(min_replicas=3, max_replicas=5, initial=3)
    assert strategy.decide(see(ready=0)).replicas == 3
    # minReplicas 0 (HPAScaleToZero) with an External Value metric scales from zero:
    # getUsageRatioReplicaCount, currentReplicas 0 -> ceil(ratio)
    strategy = hpa(min_replicas=0, max_replicas=5, initial=0, metric="rps", target_value=4,
                   target_type="Value")
    assert strategy.decide(see(ready=0, rate_rps=9)).replicas == 3


# ============================================================== horizontal_test.go: behavior


#: a metric whose raw count is set exactly: an Object metric of Value 1 read with one ready
#: replica gives ceil(total) (getUsageRatioReplicaCount), whatever the other replicas
RAW: dict[str, Any] = {"metric": "in_flight", "target_value": 1, "target_type": "Value"}


def _raw(strategy: Hpa, now: float, current: int, desired: int) -> int:
    """Decide with ``current`` replicas (one ready) on a :data:`RAW` metric whose count before
    behaviors (the ``prenormalizedDesiredReplicas`` of the upstream tests) is ``desired``."""
    decision = strategy.decide(see(now, ready=min(1, current), starting=max(0, current - 1),
                                   in_flight=desired))
    assert decision.info["raw_desired"] == desired
    return decision.replicas


STABILIZATION_CASES = [
    # (upstream case name, recommendations (age_s, count), current, prenormalized, expected,
    #  scaleUp window, scaleDown window)
    ("empty recommendations for scaling down", [], 100, 5, 5, 0, 0),
    ("simple scale down stabilization", [(120, 4), (60, 5)], 100, 3, 5, 0, 180),
    ("simple scale up stabilization", [(120, 4), (60, 5)], 1, 7, 4, 300, 0),
    ("no scale down stabilization", [(120, 1), (60, 2)], 100, 3, 3, 300, 0),
    ("no scale up stabilization", [(120, 4), (60, 5)], 1, 3, 3, 0, 300),
    ("no scale down stabilization, reuse recommendation element",
     [(600, 10), (540, 9)], 100, 3, 3, 0, 0),
    ("no scale up stabilization, reuse recommendation element",
     [(600, 10), (540, 9)], 1, 100, 5, 0, 0),
    ("scale down stabilization, reuse one of obsolete recommendation element",
     [(600, 10), (60, 4), (120, 5), (540, 9)], 100, 3, 5, 0, 180),
    ("scale up stabilization, reuse one of obsolete recommendation element",
     [(6000, 10), (60, 6), (120, 5), (180, 9)], 1, 100, 5, 300, 0),
]


@pytest.mark.parametrize(("name", "records", "current", "desired", "expected", "up_s", "down_s"),
                         STABILIZATION_CASES, ids=[c[0] for c in STABILIZATION_CASES])
def test_stabilization_windows(name: str, records: list[tuple[float, int]], current: int,
                               desired: int, expected: int, up_s: int, down_s: int) -> None:
    # kubernetes horizontal_test.go TestNormalizeDesiredReplicasWithBehavior (case <name>):
    # stabilizeRecommendationWithBehaviors; the default scale-up policies (4 pods or 100 % per
    # 15 s) then apply, as normalizeDesiredReplicasWithBehaviors does: from 1 replica at most
    # 5, which is why "no scale up stabilization, reuse recommendation element" (100) ends at 5
    strategy = hpa(**RAW, initial=current,
                   scale_up_stabilization_s=up_s, scale_down_stabilization_s=down_s)
    prime(strategy, 1000.0, records)
    assert _raw(strategy, 1000.0, current, desired) == expected, name


RULES_CASES = [
    # (TestScalingWithRules case, up policies, down policies, min, max, current, desired, want)
    ("scaleUp with default behavior", None, None, 1, 1000, 5, 50, 10),
    ("scaleUp with pods policy larger than percent policy",
     [("Pods", 100, 60), ("Percent", 100, 60)], None, 1, 1000, 3, 500, 103),
    ("scaleUp with percent policy larger than pods policy",
     [("Pods", 2, 60), ("Percent", 100, 60)], None, 1, 1000, 3, 500, 6),
    ("scaleUp with spec MaxReplicas limitation with large pod policy",
     [("Pods", 100, 60)], None, 1, 10, 3, 50, 10),
    ("scaleUp with pod policy limitation", [("Pods", 2, 60)], None, 1, 1000, 3, 50, 5),
    ("scaleUp with percent policy limitation", [("Percent", 100, 60)], None, 1, 1000, 3, 50, 6),
    ("scaleDown with percent policy larger than pod policy",
     None, [("Pods", 1, 60), ("Percent", 20, 60)], 1, 1000, 100, 2, 80),
    ("scaleDown with pod policy larger than percent policy",
     None, [("Pods", 2, 60), ("Percent", 1, 60)], 1, 1000, 100, 2, 98),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy",
     None, [("Pods", 100, 60)], 0, 1000, 10, 0, 0),
    ("scaleDown with spec MinReplicas limitation with large pod policy",
     None, [("Pods", 100, 60)], 1, 1000, 10, 0, 1),
    ("scaleDown with pod policy limitation", None, [("Pods", 2, 60)], 1, 1000, 5, 2, 3),
]


def _policies(items: list[tuple[str, int, int]] | None) -> dict[str, Any] | None:
    if items is None:
        return None
    return [{"type": t, "value": v, "period_s": p} for t, v, p in items]


@pytest.mark.parametrize(("name", "up", "down", "low", "high", "current", "desired", "want"),
                         RULES_CASES, ids=[c[0] for c in RULES_CASES])
def test_scaling_policies(name: str, up: Any, down: Any, low: int, high: int, current: int,
                          desired: int, want: int) -> None:
    # kubernetes horizontal_test.go TestScalingWithRules (case <name>):
    # convertDesiredReplicasWithBehaviorRate; the stabilization windows are 0 here, the upstream
    # case testing the rate limit alone
    params: dict[str, Any] = {**RAW, "scale_down_stabilization_s": 0}
    if up is not None:
        params["scale_up_policies"] = _policies(up)
    if down is not None:
        params["scale_down_policies"] = _policies(down)
    strategy = hpa(min_replicas=low, max_replicas=high, initial=current, **params)
    assert _raw(strategy, 100.0, current, desired) == want, name


def test_select_policy_min_and_disabled() -> None:
    min_rules = [{"type": "Pods", "value": 2, "period_s": 60},
                 {"type": "Percent", "value": 50, "period_s": 60}]
    # kubernetes horizontal_test.go TestCalculateScaleUpLimitWithScalingRules: 1 replica,
    # Pods 2 and Percent 50 per 60 s, selectPolicy Min -> 2
    strategy = hpa(**RAW, initial=1, scale_up_policies=min_rules,
                   scale_up_select="Min")
    assert _raw(strategy, 100.0, 1, 50) == 2
    # kubernetes horizontal_test.go TestCalculateScaleDownLimitWithBehaviors: 5 replicas, the
    # same policies, Min -> 3
    strategy = hpa(**RAW, initial=5, scale_down_policies=min_rules,
                   scale_down_select="Min", scale_down_stabilization_s=0)
    assert _raw(strategy, 100.0, 5, 0) == 3
    # horizontal.go calculateScaleUpLimitWithScalingRules: selectPolicy Disabled -> no change
    strategy = hpa(**RAW, initial=5, scale_up_select="Disabled")
    assert _raw(strategy, 100.0, 5, 50) == 5


def test_scale_events_within_a_period() -> None:
    # kubernetes horizontal_test.go TestStoreScaleUpEvents / TestUpscaleCap: the policy's
    # budget counts the scale-ups of its period (getReplicasChangePerPeriod). Percent 700 per
    # 60 s: 3 -> 24 (TestUpscaleCap: levels 100/200/300m of 100m at a 10 % target; here 10/20/30 %
    # of a 1 % target, the same ratio 20), and nothing more until the period has passed.
    rules = [{"type": "Percent", "value": 700, "period_s": 60}]
    strategy = hpa(target_utilization=0.01, initial=3, max_replicas=100,
                   scale_up_policies=rules)
    assert strategy.decide(see(100.0, ready=3, utils=(0.1, 0.2, 0.3))).replicas == 24
    assert strategy.decide(see(115.0, ready=24, utils=(1.0,) * 24)).replicas == 24
    assert strategy.decide(see(161.0, ready=24, utils=(1.0,) * 24)).replicas == 100
    # kubernetes horizontal_test.go TestUpscaleCapGreaterThanMaxReplicas: max 20 -> 20
    strategy = hpa(target_utilization=0.01, initial=3, max_replicas=20, scale_up_policies=rules)
    assert strategy.decide(see(100.0, ready=3, utils=(0.1, 0.2, 0.3))).replicas == 20


# ============================================================== horizontal.go: no behavior


LEGACY_CASES = [
    # kubernetes horizontal_test.go TestNormalizeDesiredReplicas (stabilizeRecommendation, 5 min)
    ("empty log", [], 5, 5),
    ("stabilize", [(120, 4), (60, 5)], 3, 5),
    ("no stabilize", [(120, 1), (60, 2)], 3, 3),
    ("no stabilize - old recommendations", [(600, 10), (540, 9)], 3, 3),
    ("stabilize - old recommendations", [(600, 10), (60, 4), (120, 5), (540, 9)], 3, 5),
]


@pytest.mark.parametrize(("name", "records", "desired", "expected"), LEGACY_CASES,
                         ids=[c[0] for c in LEGACY_CASES])
def test_no_behavior_stabilization(name: str, records: list[tuple[float, int]], desired: int,
                                   expected: int) -> None:
    # kubernetes horizontal_test.go TestNormalizeDesiredReplicas (case <name>), the path of an
    # HPA without behavior: the highest recommendation not older than 300 s
    strategy = hpa(**RAW, initial=10, behavior=False)
    prime(strategy, 1000.0, records)
    assert _raw(strategy, 1000.0, 10, desired) == expected, name


@pytest.mark.parametrize(("current", "desired", "low", "high", "expected"), [
    (5, 7, 3, 8, 7),        # prenormalized desired replicas within range
    (3, 0, 2, 8, 2),        # prenormalized desired replicas < minReplicas (upstream: 1)
    (20, 1000, 1, 10, 10),  # maxReplicas is the limit because maxReplicas < scaleUpLimit
    (3, 1000, 1, 2000, 6),  # scaleUpLimit (max(2 x 3, 4)) is the limit
    (1, 1000, 1, 2000, 4),  # scaleUpLimitMinimum
])
def test_no_behavior_scale_up_limit(current: int, desired: int, low: int, high: int,
                                    expected: int) -> None:
    # kubernetes horizontal_test.go TestConvertDesiredReplicasWithRules:
    # convertDesiredReplicasWithRules with calculateScaleUpLimit = max(2 x current, 4)
    strategy = hpa(**RAW, initial=current, min_replicas=low,
                   max_replicas=high, behavior=False)
    prime(strategy, 100.0, [])
    if current > high:  # reconcileAutoscaler: above maxReplicas -> maxReplicas at once
        assert strategy.decide(see(ready=1, starting=current - 1)).replicas == expected
    else:
        assert _raw(strategy, 100.0, current, desired) == expected


def test_default_behavior_against_no_behavior() -> None:
    # kubernetes pkg/apis/autoscaling/v2 defaults_test.go TestGenerateScaleUpRules: the default
    # scale-up is max(4 pods, 100 %) per 15 s with no window -> from 1 replica 5, from 10 20;
    # without behavior (horizontal.go calculateScaleUpLimit) max(2 x current, 4): 4 and 20
    for behavior, from_one in ((True, 5), (False, 4)):
        strategy = hpa(**RAW, initial=1, behavior=behavior)
        assert _raw(strategy, 100.0, 1, 50) == from_one
        strategy = hpa(**RAW, initial=10, behavior=behavior)
        assert _raw(strategy, 100.0, 10, 500) == 20
    # TestGenerateScaleDownRules: 300 s window -> no scale-down in the first 300 s (both paths)
    for behavior in (True, False):
        strategy = hpa(**RAW, initial=10, behavior=behavior)
        assert _raw(strategy, 100.0, 10, 2) == 10
        assert _raw(strategy, 385.0, 10, 2) == 10
        assert _raw(strategy, 415.0, 10, 2) == 2


def test_tolerances_per_direction_and_several_metrics() -> None:
    # kubernetes replica_calculator.go Tolerances.isWithin (KEP-4951, behavior.scaleUp/
    # scaleDown.tolerance): no change while 1 - down <= ratio <= 1 + up
    for params, utils, raw in (({}, 0.54, 10), ({"scale_up_tolerance": 0.05}, 0.54, 11),
                               ({}, 0.425, 9), ({"scale_down_tolerance": 0.2}, 0.425, 10)):
        strategy = hpa(target_utilization=0.5, initial=10, **params)
        decision = strategy.decide(see(ready=10, utils=(utils,) * 10))
        assert decision.info["raw_desired"] == raw, params  # ratios 1.08 and 0.85
    # kubernetes horizontal.go computeReplicasForMetrics: each metric proposes a count, the
    # largest wins; a metric without data (horizontal_test.go TestScaleUpOneMetricInvalid) is
    # skipped. cpu at 30 % of 60 % (-> 2) and in-flight 18 at 3 per replica (-> 6)
    two = hpa(target_utilization=0.6, initial=4, additional_metrics=[
        {"metric": "in_flight", "target_value": 3}])
    assert two.decide(see(ready=4, utils=(0.3,) * 4, in_flight=18)).info["raw_desired"] == 6
    no_cpu = hpa(target_utilization=0.6, initial=4, additional_metrics=[
        {"metric": "in_flight", "target_value": 3}])
    assert no_cpu.decide(see(ready=4, utils=(), in_flight=18)).info["raw_desired"] == 6


# ============================================================== knative autoscaler_test.go


class FakeMetricKpa(Kpa):
    """The built-in ``kpa`` fed by a fake metric client, as Knative's ``metricClient`` in
    ``autoscaler_test.go``: :meth:`observed` returns the (stable, panic) values the case sets."""

    values: tuple[float, float] = (0.0, 0.0)

    def observed(self, obs: Observation) -> tuple[float, float]:
        return self.values


def kpa(target: float, *, initial: int = 1, utilization: float = 1.0, **params: Any
        ) -> FakeMetricKpa:
    """A KPA as ``newTestAutoscaler``: target ``target`` per pod, panic threshold 200 %, rates
    10, stable window 60 s; the reconciler's grace is 0 so the autoscaler's count is returned."""
    base: dict[str, Any] = {"target_concurrency": target / utilization,
                            "target_utilization": utilization,
                            "panic_threshold_percentage": 200, "max_scale_up_rate": 10,
                            "max_scale_down_rate": 10, "stable_window_s": 60,
                            "scale_to_zero_grace_period_s": 0, **params}
    strategy = FakeMetricKpa(**base)
    strategy.setup(context(0, 5000, initial))
    return strategy


def scale(strategy: FakeMetricKpa, now: float, ready: int, stable: float, panic: float) -> int:
    """``expectScale``: the count decided at ``now`` with ``ready`` pods and the metric values."""
    strategy.values = (stable, panic)
    return strategy.decide(see(now, ready=ready)).replicas


def test_kpa_scale_down_delay_holds_the_window_maximum() -> None:
    # knative autoscaler_test.go TestAutoscalerScaleDownDelay ("simple", then "gradual"):
    # the delay window's maximum, whatever the current count
    a = kpa(10, panic_threshold_percentage=10000, scale_down_delay_s=300)
    assert scale(a, 2.0, 0, 40, 40) == 4
    assert scale(a, 300.0, 0, 0, 0) == 4  # less than the delay at the reduced concurrency
    assert scale(a, 302.0, 0, 0, 0) == 0
    assert scale(a, 540.0, 0, 40, 40) == 4
    assert scale(a, 600.0, 0, 30, 30) == 4  # 4 still dominates
    assert scale(a, 660.0, 0, 0, 0) == 4
    assert scale(a, 840.0, 0, 0, 0) == 3  # 4 scrolls out
    assert scale(a, 900.0, 0, 0, 0) == 0
    # the hold does not depend on the current count: 4 replicas held with none ready now
    a = kpa(10, panic_threshold_percentage=10000, scale_down_delay_s=300)
    assert scale(a, 2.0, 4, 40, 40) == 4
    assert scale(a, 4.0, 1, 0, 0) == 4
    # knative autoscaler_test.go TestAutoscalerScaleDownDelayZero: no delay -> at once
    a = kpa(10, panic_threshold_percentage=10000)
    assert scale(a, 0.0, 0, 40, 40) == 4
    assert scale(a, 0.5, 0, 20, 20) == 2


def test_kpa_starts_in_panic_with_more_than_one_pod() -> None:
    # knative autoscaler_test.go TestStartInPanicMode: created with 0 or 1 ready pod -> no
    # panic, maxPanicPods = that count; with 2 -> panic, maxPanicPods 2
    for ready in (0, 1):
        a = kpa(100, initial=ready)
        assert a.panic_since_s is None and a.max_panic_pods == ready
    a = kpa(100, initial=2)
    assert a.panic_since_s == 0.0 and a.max_panic_pods == 2
    # so the count is held for a stable window (created at 0 s): no scale-down at 2 s or 60 s,
    # the stable count at 62 s
    assert scale(a, 2.0, 2, 10, 10) == 2
    assert scale(a, 60.0, 2, 10, 10) == 2
    assert scale(a, 62.0, 2, 10, 10) == 1


KPA_TABLE = [
    # knative autoscaler_test.go TestAutoscalerScale: (label, target, TBC, stable, panic, ready,
    # params, prepared panic (since -5 s, maxPanicPods), want)
    ("AutoscalerNoDataAtZeroNoAutoscale", 10, 100, 0, 0, 1, {}, None, 0),
    ("AutoscalerStableModeUnlimitedTBC", 181, -1, 21, 26, 1, {}, None, 1),
    ("Autoscaler0TBC", 10, 0, 50, 49, 1, {}, None, 5),
    ("AutoscalerStableModeNoChange", 10, 100, 50, 50, 1, {}, None, 5),
    ("AutoscalerPanicStableLargerThanPanic", 1, 100, 50, 30, 5, {}, 5, 50),
    ("AutoscalerPanicStableLessThanPanic", 1, 100, 20, 30, 5, {}, 5, 30),
    ("AutoscalerStableModeNoChangeAlreadyScaled", 10, 100, 50, 50, 5, {}, None, 5),
    ("AutoscalerStableModeIncreaseWithSmallScaleUpRate", 1, 1982, 3, 3.1, 2,
     {"max_scale_up_rate": 1.1}, None, 3),
    ("AutoscalerStableModeDecreaseWithSmallScaleDownRate", 10, 1982, 1, 1, 100,
     {"max_scale_down_rate": 1.1}, None, 90),
    ("AutoscalerPanicModeDoublePodCount", 10, 84, 50, 100, 1, {}, None, 10),
]


def expected_ebc(target: float, tbc: float, panic: float, pods: int) -> float:
    """``expectedEBC`` of autoscaler_test.go (unit tests presume 75 % utilization), with its
    special values: -1 for an unlimited capacity, 0 for none."""
    if tbc < 0:
        return -1.0
    if tbc == 0:
        return 0.0
    return float(math.floor(target / 0.75 * pods - tbc - panic))


@pytest.mark.parametrize(("label", "target", "tbc", "stable", "panic", "ready", "params",
                          "panic_pods", "want"), KPA_TABLE, ids=[c[0] for c in KPA_TABLE])
def test_kpa_scale_table(label: str, target: float, tbc: float, stable: float, panic: float,
                         ready: int, params: dict[str, Any], panic_pods: int | None,
                         want: int) -> None:
    # knative autoscaler_test.go TestAutoscalerScale (case <label>); TotalValue = target / 0.75
    a = kpa(target, utilization=0.75, target_burst_capacity=tbc, **params)
    if panic_pods is not None:  # prepFunc: panicTime = now - 5 s, maxPanicPods
        a.panic_since_s, a.max_panic_pods = 95.0, panic_pods
    a.values = (stable, panic)
    decision = a.decide(see(100.0, ready=ready))
    assert decision.replicas == want, label
    ebc = expected_ebc(target, tbc, panic, ready)
    assert abs(decision.info["excess_burst_capacity"] - ebc) <= 1, label  # approxEquateInt32


def test_kpa_stable_mode() -> None:
    # knative autoscaler_test.go TestAutoscalerStableModeIncreaseWithConcurrencyDefault
    a = kpa(10)
    assert scale(a, 100.0, 1, 50, 10) == 5
    assert scale(a, 102.0, 1, 100, 10) == 10
    # knative autoscaler_test.go TestAutoscalerStableModeIncreaseWithRPS (metric rps)
    a = kpa(10, metric="rps")
    assert scale(a, 100.0, 1, 50, 50) == 5
    assert scale(a, 102.0, 1, 100, 99) == 10
    # knative autoscaler_test.go TestAutoscalerMetricsWithRPS: at 61 s, 100 / 99 rps -> 10
    assert scale(kpa(10, metric="rps"), 61.0, 1, 100, 99) == 10
    # knative autoscaler_test.go TestAutoscalerStableModeDecrease: 8 pods, 100 -> 10, 50 -> 5
    a = kpa(10)
    assert scale(a, 100.0, 8, 100, 100) == 10
    assert scale(a, 102.0, 8, 50, 50) == 5
    # knative autoscaler_test.go TestAutoscalerStableModeNoTrafficScaleToZero
    a = kpa(10)
    assert scale(a, 100.0, 1, 1, 0) == 1
    assert scale(a, 102.0, 1, 0, 0) == 0
    # knative autoscaler_test.go TestAutoscalerActivationScale: activation-scale 2
    a = kpa(10, activation_scale=2)
    assert scale(a, 100.0, 1, 0, 0) == 0
    assert scale(a, 102.0, 1, 1, 0) == 2


def test_kpa_panic_mode() -> None:
    # knative autoscaler_test.go TestAutoscalerUnpanicAfterSlowIncrease
    a = kpa(1)
    assert scale(a, 100.0, 10, 11, 25) == 25 and a.panic_since_s == 100.0
    assert scale(a, 130.0, 40, 30, 41) == 41 and a.panic_since_s == 100.0
    assert scale(a, 162.0, 55, 50, 56) == 50 and a.panic_since_s is None
    # knative autoscaler_test.go TestAutoscalerExtendPanicWindow
    a = kpa(1)
    assert scale(a, 100.0, 10, 11, 25) == 25
    assert scale(a, 130.0, 40, 30, 80) == 80 and a.panic_since_s == 130.0
    # knative autoscaler_test.go TestAutoscalerPanicModeExponentialTrackAndStabilize
    a = kpa(1)
    assert scale(a, 100.0, 1, 6, 6) == 6
    assert scale(a, 100.0, 6, 36, 36) == 36
    assert scale(a, 101.0, 36, 216, 216) == 216
    assert scale(a, 101.0, 216, 1296, 1296) == 1296
    assert scale(a, 102.0, 1296, 1296, 1296) == 1296
    # knative autoscaler_test.go TestAutoscalerPanicThenUnPanicScaleDown
    a = kpa(10)
    assert scale(a, 100.0, 1, 100, 100) == 10
    assert scale(a, 110.0, 10, 100, 1000) == 100
    assert scale(a, 140.0, 10, 1, 1) == 100  # still in panic: no scale-down
    assert scale(a, 171.0, 10, 1, 1) == 1  # after the stable window


def test_kpa_rate_limits() -> None:
    # knative autoscaler_test.go TestAutoscalerRateLimitScaleUp: x10 per decision
    a = kpa(10)
    assert scale(a, 100.0, 1, 1000, 1001) == 10
    assert scale(a, 102.0, 10, 1000, 1001) == 100
    # knative autoscaler_test.go TestAutoscalerRateLimitScaleDown: /10 per decision
    a = kpa(10)
    assert scale(a, 100.0, 100, 1, 1) == 10
    assert scale(a, 102.0, 10, 1, 1) == 1
    # knative autoscaler_test.go TestAutoscalerUseOnePodAsMinimumIfEndpointsNotFound
    assert scale(kpa(10), 100.0, 0, 1000, 888) == 10


def test_kpa_measured_from_observations() -> None:
    """The same rule fed by real observations (no fake metric client): a constant in-flight
    count makes the stable and the panic mean equal to it (TestAutoscalerStableModeNoChange:
    50 at a target of 10 -> 5)."""
    a = make_strategy("kpa", {"target_concurrency": 10, "target_utilization": 1.0})
    a.setup(context(0, 100, 1))
    decisions = [a.decide(see(2.0 * i, ready=5, in_flight=50)) for i in range(1, 40)]
    assert {d.replicas for d in decisions} == {5}
    assert decisions[-1].info["stable_concurrency"] == 50.0
