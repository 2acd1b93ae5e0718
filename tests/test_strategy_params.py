"""Each built-in strategy declares its parameters once, in its ``Params`` model.

The constructor takes keyword arguments only, validates them through ``Params`` and stores them
as attributes, doing nothing else (scikit-learn's rule); ``predictive`` and ``cost_aware`` share
one declaration of their forecast parameters, ``cost_aware`` and ``oracle`` one of their solver
parameters. Custom strategies, with or without ``Params``, are built as before.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from simscale.errors import UserError
from simscale.strategies import (
    BUILTINS,
    Decision,
    Observation,
    ParameterizedStrategy,
    Strategy,
    StrategyParams,
    describe_strategy,
    make_strategy,
    strategy_class,
)
from simscale.strategies.cost_aware import CostAwareParams, SolverParams
from simscale.strategies.forecasters import ForecastParams
from simscale.strategies.oracle import OracleParams
from simscale.strategies.predictive import PredictiveParams

NAMES = list(BUILTINS)
REPO = Path(__file__).resolve().parents[1]

#: a non-default, valid value for one parameter of each built-in
CHANGED: dict[str, dict[str, Any]] = {
    "static": {"replicas": 3},
    "threshold": {"upper_threshold": 0.9, "mode": "vertical"},
    "hpa": {"target_utilization": 0.5,
            "scale_up_policies": [{"type": "Pods", "value": 2, "period_s": 30.0}]},
    "kpa": {"stable_window_s": 30.0},
    "predictive": {"forecaster": "arima", "forecaster_params": {"refit_every": 6}},
    "cost_aware": {"slo_percentile": 0.99, "bin_s": 10.0},
    "oracle": {"sync_period_s": 10.0},
    "ray_serve": {"target_ongoing_requests": 5.0, "upscale_delay_s": 10.0},
}


def own_fields(model: type[BaseModel]) -> set[str]:
    """Fields a model class declares itself (not inherited)."""
    return set(model.__dict__.get("__annotations__", {}))


@pytest.mark.parametrize("name", NAMES)
def test_no_parameter_is_declared_outside_params(name: str) -> None:
    cls = strategy_class(name)
    assert issubclass(cls, ParameterizedStrategy)
    assert issubclass(cls.Params, StrategyParams)
    assert cls.__init__ is ParameterizedStrategy.__init__
    kinds = [p.kind for p in inspect.signature(cls).parameters.values()]
    assert kinds == [inspect.Parameter.VAR_KEYWORD]


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_the_params_defaults(name: str) -> None:
    cls = strategy_class(name)
    strategy = cls()
    defaults = cls.Params().model_dump()
    assert vars(strategy) == defaults  # every parameter stored, and nothing else (no work)
    assert strategy.get_params() == defaults
    described = {p["name"]: p["default"] for p in describe_strategy(name)["params"]}
    assert described == defaults


@pytest.mark.parametrize("name", NAMES)
def test_keyword_construction_validates_and_stores(name: str) -> None:
    cls = strategy_class(name)
    params = CHANGED[name]
    strategy = cls(**params)
    for key, value in params.items():
        assert getattr(strategy, key) == value
    assert vars(strategy) == vars(make_strategy(name, params))
    assert vars(cls(**strategy.get_params())) == vars(strategy)
    with pytest.raises(ValidationError):
        cls(no_such_parameter=1)
    with pytest.raises(TypeError):
        cls(1)


def test_values_are_coerced_and_checked_like_a_scenario() -> None:
    hpa = strategy_class("hpa")(target_utilization=0.6, sync_period_s=10)
    assert hpa.target_utilization == 0.6
    assert isinstance(hpa.sync_period_s, float) and hpa.sync_period_s == 10.0
    assert hpa.scale_up_policies == [{"type": "Pods", "value": 4, "period_s": 15.0},
                                     {"type": "Percent", "value": 100, "period_s": 15.0}]
    with pytest.raises(ValidationError, match="target_utilization"):
        strategy_class("hpa")(target_utilization=1.5)
    with pytest.raises(ValidationError, match="lower_threshold"):
        strategy_class("threshold")(lower_threshold=0.9, upper_threshold=0.5)


def test_sync_period_default_is_the_base_class_one() -> None:
    for name in NAMES:
        default = strategy_class(name).Params.model_fields["sync_period_s"].default
        # kpa ticks every 2 s as Knative's does; ray_serve decides every 1 s (Ray Serve's
        # controller loop is faster, see strategies/ray_serve.py)
        own = {"kpa": 2.0, "ray_serve": 1.0}
        assert default == own.get(name, Strategy.sync_period_s)


def test_forecast_parameters_are_declared_once() -> None:
    shared = set(ForecastParams.model_fields)
    assert {"forecaster", "forecaster_params", "lead_s", "bin_s", "history_s",
            "reactive_window_s"} <= shared
    for model in (PredictiveParams, CostAwareParams):
        assert issubclass(model, ForecastParams)
        assert not own_fields(model) & shared
        for field in shared:
            assert model.model_fields[field].default == ForecastParams.model_fields[field].default


def test_solver_parameters_are_declared_once() -> None:
    shared = set(SolverParams.model_fields)
    assert shared == {"slo_percentile", "tune_threads", "tune_batch_size", "same_device_only"}
    for model in (CostAwareParams, OracleParams):
        assert issubclass(model, SolverParams)
        assert not own_fields(model) & shared


@pytest.mark.parametrize("name", ["predictive", "cost_aware"])
def test_bad_forecaster_parameters_are_user_errors(name: str) -> None:
    with pytest.raises(UserError, match="forecaster must be one of"):
        make_strategy(name, {"forecaster": "crystal_ball"})
    with pytest.raises(UserError, match="forecaster_params for 'holt'.*nope"):
        make_strategy(name, {"forecaster_params": {"nope": 1}})


def observation(in_flight: int) -> Observation:
    """A minimal observation: only ``in_flight`` and the bounds matter to the classes below."""
    from simscale.strategies import ReplicaCounts, SizeOption

    size = SizeOption(device="cpu", threads=1, alpha_ms=10.0, beta_ms=1.0, mean_factor=1.0,
                      scv=1.0, max_batch_size=1, price_per_hour_usd=0.1, cold_start_s=5.0)
    empty: Any = []
    return Observation(time_s=0.0, service="svc", slo_ms=100.0, metric_lag_s=0.0,
                       arrivals_per_s=empty, completions_per_s=empty, utilization_per_s=empty,
                       utilization_per_replica=(), queue_length=0, in_flight=in_flight,
                       latency_p50_ms=math.nan, latency_p95_ms=math.nan,
                       latency_p99_ms=math.nan, latency_window_s=60.0,
                       replicas=ReplicaCounts(ready=1), min_replicas=1, max_replicas=10,
                       current_size=size)


class PerRequest(ParameterizedStrategy):
    """A custom strategy on the same footing as the built-ins."""

    class Params(StrategyParams):
        """Parameters of :class:`PerRequest`."""

        per_replica: float = 4.0

    def decide(self, obs: Observation) -> Decision:
        return Decision(replicas=math.ceil(obs.in_flight / self.per_replica))


class Plain:
    """A custom strategy with no ``Params`` and its own constructor."""

    def __init__(self, replicas: int = 2, *extra: Any) -> None:
        self.replicas = replicas
        self.extra = extra

    def decide(self, obs: Observation) -> int:
        return self.replicas


def test_custom_strategies_work_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # for examples.custom_strategy
    assert PerRequest().per_replica == 4.0
    assert PerRequest(per_replica=2).decide(observation(9)).replicas == 5
    assert Plain(3, "x").extra == ("x",)  # not touched: positional arguments still its own
    example = make_strategy("examples.custom_strategy:QueueProportional",
                            {"requests_per_replica": 4})
    assert example.decide(observation(17)).replicas == 5
    with pytest.raises(UserError, match="requests_per_replica"):
        make_strategy("examples.custom_strategy:QueueProportional", {"requests_per_replica": -1})
