"""The ``ray_serve`` strategy against Ray Serve's own policy.

Hand-computed decision sequences follow ray-project/ray ``python/ray/serve/autoscaling_policy.py``
(``_core_replica_queue_length_policy``, ``_apply_scaling_factors``, ``_apply_delay_logic``,
``_get_cold_start_scale_up_replicas``) and ``_private/autoscaling_state.py`` (bounds after the
policy). The ``test_upstream_*`` cases re-express tests of
``python/ray/serve/tests/unit/test_autoscaling_policy.py`` (``TestReplicaQueueLengthPolicy``),
each naming its source: Ray's context fields map to the observation as ``current_num_replicas``
= ready replicas, ``target_num_replicas`` = pending + starting + ready, ``total_num_requests`` =
the requests queued or in service (reported at once here: ``metrics_interval_s`` and
``look_back_period_s`` tiny). Ray's controller ticks every 0.1 s; these tests tick every second,
so a delay of ``d`` seconds holds ``d`` decisions and acts on the next, as Ray holds ``10 d``.
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
    describe_strategy,
    make_strategy,
)
from simscale.strategies.ray_serve import scaled_replicas

SIZE = SizeOption(device="cpu", threads=1, alpha_ms=10.0, beta_ms=2.0, mean_factor=1.0, scv=0.5,
                  max_batch_size=8, price_per_hour_usd=0.1, cold_start_s=20.0)
#: report every decision's in-flight count at once (Ray's ``total_num_requests`` as given)
INSTANT = {"metrics_interval_s": 1e-3, "look_back_period_s": 1e-3}


def obs(time_s: float, in_flight: float, ready: int, target: int | None = None, *,
        min_replicas: int = 0, max_replicas: int = 1000) -> Observation:
    """An observation: ``target`` (default ``ready``) counts pending + starting + ready."""
    starting = (ready if target is None else target) - ready
    return Observation(
        time_s=time_s, service="svc", slo_ms=200.0, metric_lag_s=0.0,
        arrivals_per_s=np.zeros(10), completions_per_s=np.zeros(10),
        utilization_per_s=np.zeros(10), utilization_per_replica=(0.0,) * ready,
        queue_length=0, in_flight=int(in_flight), latency_p50_ms=math.nan,
        latency_p95_ms=math.nan, latency_p99_ms=math.nan, latency_window_s=60.0,
        replicas=ReplicaCounts(starting=starting, ready=ready),
        min_replicas=min_replicas, max_replicas=max_replicas, current_size=SIZE,
        size_options=(SIZE,))


def build(**params: Any) -> Any:
    strategy = make_strategy("ray_serve", {**INSTANT, **params})
    strategy.setup(ServiceContext(service="svc", slo_ms=200.0, min_replicas=0, max_replicas=1000,
                                  duration_s=3600.0, initial_replicas=1, size_options=(SIZE,),
                                  initial_size=SIZE))
    return strategy


class Clock:
    """Feeds one decision per second to a strategy."""

    def __init__(self, strategy: Any, start_s: float = 1.0):
        self.strategy = strategy
        self.now = start_s

    def __call__(self, in_flight: float, ready: int, target: int | None = None) -> int:
        decision = self.strategy.decide(obs(self.now, in_flight, ready, target))
        self.now += 1.0
        return decision.replicas


# ------------------------------------------------------------------ defaults and pieces


def test_defaults_are_ray_serves() -> None:
    """AutoscalingConfig's defaults (python/ray/serve/config.py); max_replicas that of
    AutoscalingConfig.default() (num_replicas='auto')."""
    defaults = {p["name"]: p["default"] for p in describe_strategy("ray_serve")["params"]}
    assert defaults == {
        "target_ongoing_requests": 2.0, "min_replicas": 1, "max_replicas": 100,
        "initial_replicas": None, "upscale_delay_s": 30.0, "downscale_delay_s": 600.0,
        "downscale_to_zero_delay_s": None, "upscaling_factor": None,
        "downscaling_factor": None, "upscale_smoothing_factor": None,
        "downscale_smoothing_factor": None, "smoothing_factor": 1.0,
        "metrics_interval_s": 10.0, "look_back_period_s": 30.0, "sync_period_s": 1.0}


def test_scaling_factors_by_hand() -> None:
    """``_apply_scaling_factors``: ceil(running + factor * (desired - running)), one less when a
    scale-down would be stuck."""
    assert scaled_replicas(6.0, 2, 0.5, 1.0) == 4  # ceil(2 + 0.5 * 4)
    assert scaled_replicas(2.5, 3, 1.0, 0.1) == 3  # ceil(2.95) = 3 and ceil(2.5) = 3: stays
    assert scaled_replicas(2.0, 3, 1.0, 0.1) == 2  # ceil(2.9) = 3, stuck: minus one
    assert scaled_replicas(3.2, 0, 1.0, 1.0) == 4  # no running replica: ceil(desired)


def test_hand_computed_sequence() -> None:
    """target 2 requests/replica, upscale_delay 3 s, downscale_delay 5 s, one decision a second."""
    clock = Clock(build(upscale_delay_s=3, downscale_delay_s=5, min_replicas=1, max_replicas=10))
    # t=1..3: 10 requests on 2 replicas -> desired 10/2 = 5 > 2; held for 3 s
    assert [clock(10, 2) for _ in range(3)] == [2, 2, 2]
    assert clock(10, 2) == 5  # t=4: 3 s since t=1
    # t=5: the 3 new replicas start; ceil(2 + (5 - 2)) = 5 = target: nothing to do
    assert clock(10, 2, 5) == 5
    # t=6..10: 2 requests on 5 ready -> desired 1; held for 5 s, then 1 at t=11
    assert [clock(2, 5) for _ in range(5)] == [5] * 5
    assert clock(2, 5) == 1
    # t=12..13: wanting 3 (6 requests on 1), interrupted at t=14 by a wish to stay...
    assert [clock(6, 1), clock(6, 1), clock(2, 1)] == [1, 1, 1]
    # ...so the clock restarts at t=15: scale-up at t=18
    assert [clock(6, 1) for _ in range(4)] == [1, 1, 1, 3]


def test_bounds_and_initial_replicas() -> None:
    clock = Clock(build(upscale_delay_s=0, min_replicas=2, max_replicas=4, initial_replicas=3))
    assert clock(0, 1) == 3  # the first decision asks for initial_replicas
    assert clock(100, 3) == 4  # 50 wanted, max_replicas 4
    strategy = build(upscale_delay_s=0, min_replicas=1, max_replicas=50)
    # the service's own bounds win: at most 6 here
    assert strategy.decide(obs(1.0, 100, 2, max_replicas=6)).replicas == 6


def test_metric_is_the_look_back_mean_reported_every_interval() -> None:
    """Replicas report the mean of the last look_back_period_s every metrics_interval_s."""
    strategy = build(metrics_interval_s=10, look_back_period_s=30, upscale_delay_s=0,
                     downscale_delay_s=0, min_replicas=1, max_replicas=100)
    seen = []
    for t in range(1, 41):
        strategy.decide(obs(float(t), 0 if t < 15 else 20, 5))
        seen.append(strategy.reported)
    assert seen[0] == 0.0  # t=1: first report
    assert seen[10] == 0.0  # t=11: report of t=1..11, all zero
    assert seen[20] == pytest.approx(7 * 20 / 21)  # t=21: samples t=1..21 (7 of them 20)
    assert seen[29] == seen[20]  # t=30: still the report of t=21
    assert seen[30] == pytest.approx(17 * 20 / 30)  # t=31: samples t=2..31


def test_to_zero_uses_its_own_delay_and_stops_at_one_first() -> None:
    clock = Clock(build(min_replicas=0, downscale_delay_s=5, downscale_to_zero_delay_s=2))
    assert [clock(0, 3) for _ in range(6)] == [3] * 5 + [1]  # 3 -> 1 (not 0) after 5 s
    assert [clock(0, 1) for _ in range(3)] == [1, 1, 0]  # 1 -> 0 after 2 s
    assert clock(0, 0) == 0
    assert clock(3, 0) == 1  # cold start: at once, max(ceil(upscaling factor), target)


# ------------------------------------------------------------------ upstream cases


@pytest.mark.parametrize("factor_field", ["upscale_smoothing_factor", "upscaling_factor"])
def test_upstream_scaling_factor_scale_up_from_0_replicas(factor_field: str) -> None:
    """test_autoscaling_policy.py::TestReplicaQueueLengthPolicy::
    test_scaling_factor_scale_up_from_0_replicas (max_replicas 20 here: upstream checks the
    policy before the bounds)."""
    strategy = build(min_replicas=0, max_replicas=20, **{factor_field: 10})
    assert strategy.decide(obs(1.0, 1, 0)).replicas == 10  # 1 * 10
    strategy = build(min_replicas=0, max_replicas=20, **{factor_field: 0.5})
    assert strategy.decide(obs(1.0, 1, 0)).replicas == 1  # ceil(1 * 0.5)


@pytest.mark.parametrize("factor_field", ["downscale_smoothing_factor", "downscaling_factor"])
def test_upstream_scaling_factor_scale_down_to_0_replicas(factor_field: str) -> None:
    """test_autoscaling_policy.py::TestReplicaQueueLengthPolicy::
    test_scaling_factor_scale_down_to_0_replicas."""
    clock = Clock(build(min_replicas=0, max_replicas=5, upscale_delay_s=0, downscale_delay_s=0,
                        **{factor_field: 10}))
    assert clock(0, 5) == 1  # downscaling to 0 first stops at 1
    assert clock(0, 1) == 0
    clock = Clock(build(min_replicas=0, max_replicas=5, upscale_delay_s=0, downscale_delay_s=0,
                        **{factor_field: 0.2}))
    replicas = 5
    for _ in range(5):
        replicas = clock(0, replicas)
    assert replicas == 0  # not stuck at a positive count


@pytest.mark.parametrize("to_zero_s", [None, 300])
def test_upstream_upscale_downscale_delay(to_zero_s: float | None) -> None:
    """test_autoscaling_policy.py::TestReplicaQueueLengthPolicy::test_upscale_downscale_delay
    with _run_upscale_downscale_flow (overload 2 requests, target 1, 1 -> 2 replicas)."""
    up, down = 30, 600
    zero = down if to_zero_s is None else int(to_zero_s)
    clock = Clock(build(min_replicas=0, max_replicas=2, target_ongoing_requests=1,
                        upscale_delay_s=up, downscale_delay_s=down,
                        downscale_to_zero_delay_s=to_zero_s))
    assert clock(1, 0) == 1  # 0 replicas and a request waiting: up at once
    assert all(clock(2, 1) == 1 for _ in range(up))
    assert clock(2, 1) == 2
    assert all(clock(0, 2) == 2 for _ in range(down))
    assert clock(0, 2) == 1
    assert all(clock(0, 1) == 1 for _ in range(zero))
    assert clock(0, 1) == 0
    # some scale-up wishes, interrupted: the clock restarts
    assert all(clock(2, 1) == 1 for _ in range(up // 2))
    clock(0, 1)
    assert all(clock(2, 1) == 1 for _ in range(up))
    assert clock(2, 1) == 2
    # some scale-down wishes, interrupted by a scale-up wish
    assert all(clock(0, 2) == 2 for _ in range(down // 2))
    clock(2, 2)
    assert all(clock(0, 2) == 2 for _ in range(down))
    assert clock(0, 2) == 1
    assert all(clock(0, 1) == 1 for _ in range(zero // 2))
    clock(2, 1)
    assert all(clock(0, 1) == 1 for _ in range(zero))
    assert clock(0, 1) == 0


def test_upstream_replicas_delayed_startup() -> None:
    """test_autoscaling_policy.py::TestReplicaQueueLengthPolicy::test_replicas_delayed_startup."""
    clock = Clock(build(min_replicas=1, max_replicas=200, upscale_delay_s=0,
                        downscale_delay_s=100000, target_ongoing_requests=1))
    assert clock(100, 1) == 100
    assert clock(100, 1, 100) == 100  # no new replica ready yet
    assert clock(123, 3, 100) == 123  # two ready: ceil(3 + (123 - 3))
    assert clock(10, 4, 123) == 123  # drained, but the downscale delay holds


@pytest.mark.parametrize("delay_s", [30.0, 0.0])
def test_upstream_fluctuating_ongoing_requests(delay_s: float) -> None:
    """test_autoscaling_policy.py::TestReplicaQueueLengthPolicy::
    test_fluctuating_ongoing_requests (200 trials here, 1000 upstream)."""
    clock = Clock(build(min_replicas=1, max_replicas=10, upscale_delay_s=delay_s,
                        downscale_delay_s=delay_s, target_ongoing_requests=50))
    for trial in range(200):
        if trial % 2 == 0:
            assert clock(100, 1) == (1 if delay_s > 0 else 2), trial
        else:
            assert clock(40, 2) == (2 if delay_s > 0 else 1), trial


@pytest.mark.parametrize("ongoing", [20, 100, 10])
def test_upstream_single_replica_receives_all_requests(ongoing: int) -> None:
    """test_autoscaling_policy.py::TestReplicaQueueLengthPolicy::
    test_single_replica_receives_all_requests."""
    strategy = build(min_replicas=1, max_replicas=50, target_ongoing_requests=5,
                     upscale_delay_s=0, downscale_delay_s=0)
    assert strategy.decide(obs(1.0, ongoing, 4)).replicas == ongoing / 5


# ------------------------------------------------------------------ in a simulation


def test_simulates_and_is_deterministic(tiny_scenario: Any) -> None:
    from simscale.api import simulate

    data = tiny_scenario(duration_s=60, strategies=[{"name": "ray_serve"}])
    first = simulate(data).summary["runs"][0]
    second = simulate(data).summary["runs"][0]
    assert first["cost_usd"] == second["cost_usd"]
    assert first["events"] == second["events"]
    assert 1 <= first["mean_replicas"] <= 3
