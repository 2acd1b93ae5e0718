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

from pydantic import Field

from simscale.strategies.base import Decision, Observation, ServiceContext
from simscale.strategies.forecasters import ForecastParams, RateForecast
from simscale.strategies.governors import Bounds, Chain, StabilizationWindow, Step
from simscale.strategies.params import ParameterizedStrategy, sync_period_field


class PredictiveParams(ForecastParams):
    """Parameters of :class:`Predictive`: the shared forecast parameters, then its own."""

    target_utilization: float = Field(default=0.7, gt=0, le=1.0,
                                      description="busy fraction to plan each replica for")
    capacity_rps_per_replica: float | None = Field(default=None, gt=0, description=(
        "requests/s one replica serves; default: the profile's, at batch size 1"))
    scale_down_stabilization_s: float = Field(default=120.0, ge=0,
                                              description="keep the highest count this long (s)")
    sync_period_s: float = sync_period_field("how often to decide (s)")


class Predictive(ParameterizedStrategy):
    """Provision ``ceil(forecast(now + lead) / (capacity * target_utilization))`` replicas, never
    fewer than the observed rate needs; parameters: :class:`PredictiveParams`. ``forecaster`` may
    be set to a forecaster object (anything with ``forecast``) after construction."""

    name = "predictive"
    decision_cost_s = 5e-5  # (measured about 55 us: the rate forecast)
    source = "AWS EC2 Auto Scaling predictive scaling (forecast + scheduling buffer + dynamic)"
    Params = PredictiveParams

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
