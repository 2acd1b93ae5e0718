"""``predictive``: provision now for the arrival rate forecast one cold start ahead.

Source: AWS EC2 Auto Scaling predictive scaling
(https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-predictive-scaling.html):
capacity is launched ahead of the forecast load (``SchedulingBufferTime``) and sized so that
the forecast load meets a target utilization per instance; a reactive (dynamic) policy stays in
force, and the larger of the two counts wins.

Core rule: ``lead_s`` = cold start + sync period by default (a replica asked for now serves from
``now + cold_start`` until the next decision lands ``sync_period_s`` later).
``forecast = forecaster(rate history, now + lead_s)`` (the history ends at ``now - metric_lag_s``,
so the forecast reaches over the lag as well);
``predicted = ceil(forecast / (capacity_per_replica * target_utilization))``;
``reactive = ceil(recent rate / (capacity_per_replica * target_utilization))``;
``desired = max(predicted, reactive)``. A scale-down stabilization window keeps the highest count
of the last ``scale_down_stabilization_s`` seconds.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simscale.strategies.base import Decision, Observation, ServiceContext, Strategy
from simscale.strategies.forecasters import (
    FORECASTERS,
    Forecaster,
    RateForecast,
    make_forecaster,
)
from simscale.strategies.governors import Bounds, Chain, StabilizationWindow, Step


class PredictiveParams(BaseModel):
    """Parameters of :class:`Predictive`."""

    model_config = ConfigDict(extra="forbid")

    forecaster: str = Field(default="holt", description="one of: " + ", ".join(FORECASTERS))
    forecaster_params: dict[str, Any] = Field(default_factory=dict, description=(
        "the forecaster's parameters, e.g. {window_s: 300} or {season_s: 3600} or "
        "{order: [1, 1, 1], refit_every: 40}"))
    lead_s: float | None = Field(default=None, ge=0, description=(
        "how far ahead to provision (s); default: cold start of the current size + sync period"))
    bin_s: float = Field(default=5.0, ge=1, description="the rate series' step (s)")
    history_s: float = Field(default=7200.0, ge=60, description="rate history kept (s)")
    target_utilization: float = Field(default=0.7, gt=0, le=1.0,
                                      description="busy fraction to plan each replica for")
    capacity_rps_per_replica: float | None = Field(default=None, gt=0, description=(
        "requests/s one replica serves; default: the profile's, at batch size 1"))
    reactive_window_s: float = Field(default=10.0, gt=0,
                                     description="window of the observed rate for the floor (s)")
    scale_down_stabilization_s: float = Field(default=120.0, ge=0,
                                              description="keep the highest count this long (s)")
    sync_period_s: float = Field(default=15.0, gt=0, description="how often to decide (s)")

    def model_post_init(self, _context: Any) -> None:
        if self.forecaster not in FORECASTERS:
            raise ValueError(f"forecaster must be one of: {', '.join(FORECASTERS)}")
        make_forecaster(self.forecaster, self.forecaster_params)  # unknown parameters fail here


class Predictive(Strategy):
    """Provision ``ceil(forecast(now + lead) / (capacity * target_utilization))`` replicas, never
    fewer than the observed rate needs."""

    name = "predictive"
    source = "AWS EC2 Auto Scaling predictive scaling (forecast + scheduling buffer + dynamic)"
    Params = PredictiveParams

    def __init__(self, forecaster: str | Forecaster = "holt",
                 forecaster_params: dict[str, Any] | None = None, lead_s: float | None = None,
                 bin_s: float = 5.0, history_s: float = 7200.0, target_utilization: float = 0.7,
                 capacity_rps_per_replica: float | None = None, reactive_window_s: float = 10.0,
                 scale_down_stabilization_s: float = 120.0, sync_period_s: float = 15.0):
        self.forecaster = forecaster
        self.forecaster_params = forecaster_params
        self.lead_s = lead_s
        self.bin_s = bin_s
        self.history_s = history_s
        self.target_utilization = target_utilization
        self.capacity_rps_per_replica = capacity_rps_per_replica
        self.reactive_window_s = reactive_window_s
        self.scale_down_stabilization_s = scale_down_stabilization_s
        self.sync_period_s = sync_period_s

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        self.rate_forecast = RateForecast.build(self.forecaster, self.forecaster_params,
                                                self.bin_s, self.history_s)
        self.governors = Chain(StabilizationWindow(0.0, self.scale_down_stabilization_s,
                                                   seed_with_current=False), Bounds())

    def lead(self, obs: Observation) -> float:
        """How far ahead (s) this decision provisions for."""
        if self.lead_s is not None:
            return self.lead_s
        return obs.current_size.cold_start_s + self.sync_period_s

    def decide(self, obs: Observation) -> Decision:
        capacity = self.capacity_rps_per_replica or obs.capacity_rps_per_replica
        per_replica = capacity * self.target_utilization
        forecast = self.rate_forecast(obs, obs.time_s + self.lead(obs))
        observed = obs.rate_rps(self.reactive_window_s)
        predicted = math.ceil(forecast / per_replica - 1e-9)
        reactive = math.ceil(observed / per_replica - 1e-9)
        desired = max(predicted, reactive)
        current = obs.replicas.desired_total
        final = self.governors(Step(obs.time_s, current, desired, obs.min_replicas,
                                    obs.max_replicas, obs.replicas.ready))
        return Decision(replicas=final, info={"forecast_rps": forecast,
                                              "predicted_replicas": float(predicted),
                                              "reactive_replicas": float(reactive)})
