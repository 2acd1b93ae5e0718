"""The serving model shared by the simulator and the real cluster (simulator/serving.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from simscale.errors import UserError
from simscale.simulator import requestplane, serving
from simscale.simulator.scenario import load_scenario
from simscale.simulator.serving import (
    ROUTING_POLICIES,
    RoutingPolicy,
    build_observation,
    make_routing,
    scale_down_victims,
    select_strategies,
)
from simscale.strategies.base import ReplicaCounts, SizeOption
from simscale.validation import cluster, replica, router


def test_registry_names_every_policy_once_and_scenarios_accept_them() -> None:
    assert set(ROUTING_POLICIES) == {"shared_queue", "round_robin", "least_outstanding",
                                     "power_of_two", "random", "join_idle_queue"}
    for name, cls in ROUTING_POLICIES.items():
        assert cls.name == name and issubclass(cls, RoutingPolicy)
        base = {"name": "x", "duration_s": 10, "services": [{
            "name": "s", "model": "m", "slo_ms": 10, "routing": name,
            "service_time": {"dist": "exponential", "mean_ms": 1}, "cold_start_s": 0,
            "workload": {"kind": "constant", "rate_rps": 1}}]}
        assert load_scenario(base).services[0].routing == name
    with pytest.raises(ValueError, match="unknown routing"):
        make_routing("fastest")


def test_policies_choose_as_documented() -> None:
    out = {3: 2, 5: 0, 9: 1}.__getitem__
    cands = [3, 5, 9]
    rr = make_routing("round_robin")
    assert [rr.route(cands, out) for _ in range(4)] == [3, 5, 9, 3]
    assert rr.route([7], out) == 7  # one candidate: the pointer does not move
    assert rr.route(cands, out) == 5
    assert make_routing("least_outstanding").route(cands, out) == 5
    assert make_routing("random").route(cands, out, 0.99) == 9
    assert make_routing("random").route(cands, out, 0.0) == 3
    # power of two: the draws pick 3 (j1 = 0) and 9 (j2 = 1 -> 2 after skipping j1)
    assert make_routing("power_of_two").route(cands, out, (0.1, 0.9)) == 9
    assert make_routing("power_of_two").route([3, 9], {3: 1, 9: 1}.__getitem__,
                                              (0.1, 0.1)) == 3  # ties: the first drawn
    jiq = make_routing("join_idle_queue")
    assert jiq.route(cands, out, 0.0) == 5  # the idle one
    assert jiq.route(cands, {3: 1, 5: 2, 9: 1}.__getitem__, 0.99) == 9  # none idle: random


def test_scale_down_order() -> None:
    reps = [(0, "ready", 3), (1, "ready", 0), (2, "starting", 0), (3, "pending", 0),
            (4, "ready", 0), (5, "draining", 0), (6, "starting", 0)]
    assert scale_down_victims(7, reps) == [3, 6, 2, 4, 1, 0]
    assert scale_down_victims(2, reps) == [3, 6]
    assert scale_down_victims(0, reps) == []


def test_build_observation_utilization_is_bounded() -> None:
    size = SizeOption("cpu", 1, 10.0, 1.0, 1.0, 1.0, 1, 0.1, 1.0)
    obs = build_observation(
        t_s=5.0, lag_s=0.0, service="s", slo_ms=100.0, min_replicas=1, max_replicas=4,
        size=size, size_options=(size,), counts=ReplicaCounts(0, 0, 2, 0),
        arrivals_per_s=np.array([1.0, 2.0]), completions_per_s=np.array([1.0, 1.0]),
        busy_per_s=np.array([0.5, 3.0]), serving_per_s=np.array([0.0, 2.0]),
        replica_busy_last_s=[(0.5, 1.0), (2.0, 1.0), (0.1, 0.0)], queue_length=3,
        in_flight=4, latency_window_s=60.0, latency_percentiles_ms=(1.0, 2.0, 3.0),
        max_wait_ms=0.0)
    assert obs.utilization_per_s.tolist() == [0.0, 1.0]
    assert obs.utilization_per_replica == (0.5, 1.0, 0.0)
    assert (obs.queue_length, obs.in_flight, obs.latency_p95_ms) == (3, 4, 2.0)


def test_one_rule_selects_strategies_by_label_then_name() -> None:
    sc = load_scenario({"name": "x", "duration_s": 10, "services": [{
        "name": "s", "model": "m", "slo_ms": 10,
        "service_time": {"dist": "exponential", "mean_ms": 1}, "cold_start_s": 0,
        "workload": {"kind": "constant", "rate_rps": 1}}],
        "strategies": [{"name": "hpa"}, {"name": "hpa", "label": "fast"},
                       {"name": "static", "label": "hpa2"}]})
    labels = [s.display_label for s in select_strategies(sc, ["hpa"])]
    assert labels == ["hpa"]  # a label matches first: not every hpa entry
    assert [s.display_label for s in select_strategies(sc, ["static"])] == ["hpa2"]
    assert [s.display_label for s in select_strategies(sc, ["fast", "hpa"])] == ["fast", "hpa"]
    assert len(select_strategies(sc, None)) == 3
    with pytest.raises(UserError, match="strategy 'kpa' is not in the scenario"):
        select_strategies(sc, ["kpa"])


def test_no_second_copy_of_the_serving_rules() -> None:
    """The request plane and the real cluster route through the registry and scale down in
    the shared order: neither names a routing policy nor sorts victims itself."""
    for module in (requestplane, replica, router, cluster):
        src = inspect.getsource(module)
        for name in ROUTING_POLICIES:
            for test in (f'== "{name}"', f'!= "{name}"', f'in ("{name}"'):
                assert test not in src, (module.__name__, test)
    assert "scale_down_victims" in inspect.getsource(router)
    for module in (replica, router, cluster):
        assert "Observation(" not in inspect.getsource(module), module.__name__
    assert "build_observation" in inspect.getsource(router)
    assert serving.__doc__ and "To add a routing policy" in serving.__doc__
