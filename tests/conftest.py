"""Suite-wide settings that keep the tests independent of the machine's speed and load.

- Hypothesis: no deadline per example and no ``too_slow`` health check by default (both judge
  wall-clock time, which a busy machine stretches). A test's own ``@settings`` still wins for
  what it sets.
- pytest-timeout: every test without its own ``timeout`` marker gets :data:`DEFAULT_TIMEOUT_S`,
  a guard against a hang (never a speed requirement: a test that needs anywhere near that long
  on a loaded 2-core machine is a bug in itself).

Shared fixtures:

- ``tiny_scenario``: the smallest valid scenario (one service, a constant load, ``static``), as
  the YAML data, with any changes a test needs.
- ``decisions_of``: every decision a strategy makes on a scenario's one service (the engine
  alone, no profile).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

#: Seconds after which pytest-timeout fails a test that has no ``timeout`` marker of its own.
DEFAULT_TIMEOUT_S = 1200

settings.register_profile("simscale", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("simscale")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test without a ``timeout`` marker the default hang guard (unless a timeout is
    set on the command line or in the configuration, which then applies)."""
    if config.getoption("timeout", None) or config.getini("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S))


#: One service ``svc`` under a constant 10 requests/s for 20 s (exponential service times of
#: mean 50 ms, no profile needed), 1 to 3 replicas, scaled by the ``static`` strategy.
_TINY_SCENARIO: dict[str, Any] = {
    "name": "tiny",
    "duration_s": 20,
    "seed": 1,
    "services": [
        {
            "name": "svc",
            "model": "m",
            "slo_ms": 500,
            "service_time": {"dist": "exponential", "mean_ms": 50},
            "cold_start_s": 2,
            "replicas": {"initial": 1, "min": 1, "max": 3},
            "workload": {"kind": "constant", "rate_rps": 10},
        }
    ],
    "strategies": [{"name": "static"}],
}


@pytest.fixture
def tiny_scenario() -> Callable[..., dict[str, Any]]:
    """Build the tiny scenario (a fresh copy of its YAML data each call) with ``changes``:
    ``tiny_scenario(duration_s=5, svc_workload={...})`` sets top-level keys, and keys of its one
    service with the ``svc_`` prefix."""

    def build(**changes: Any) -> dict[str, Any]:
        data = copy.deepcopy(_TINY_SCENARIO)
        for key, value in changes.items():
            if key.startswith("svc_"):
                data["services"][0][key[4:]] = value
            else:
                data[key] = value
        return data

    return build


class _Recording:
    """Wraps a strategy and keeps its decisions."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.decisions: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def setup(self, ctx: Any) -> None:
        self.inner.setup(ctx)

    def decide(self, obs: Any) -> Any:
        d = self.inner.decide(obs)
        self.decisions.append(d)
        return d


@pytest.fixture
def decisions_of() -> Callable[..., list[Any]]:
    """``decisions_of(data, name, params)``: the decisions of strategy ``name`` (built with
    ``params``) on the one service of scenario ``data`` (YAML data, no profile), in order, on
    the inputs of the scenario's seed."""
    import numpy as np

    from simscale.simulator.engine import run_strategy
    from simscale.simulator.inputs import service_inputs
    from simscale.simulator.scenario import load_scenario
    from simscale.strategies import make_strategy

    def run(data: dict[str, Any], name: str, params: dict[str, Any]) -> list[Any]:
        sc = load_scenario(data)
        (svc,) = sc.services
        seq = np.random.SeedSequence(sc.seed).spawn(1)[0]
        strat = _Recording(make_strategy(name, params))
        run_strategy(sc, {svc.name: strat}, {svc.name: service_inputs(svc, sc, seq, None)}, None)
        return strat.decisions

    return run
