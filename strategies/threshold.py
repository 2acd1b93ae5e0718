"""``threshold``: reactive step scaling on one metric, horizontally or vertically.

Source: AWS EC2 Auto Scaling step/simple scaling policies
(https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-simple-step.html): a CloudWatch
alarm compares a metric, averaged over an evaluation window, with an upper and a lower threshold;
a breach adds or removes ``step`` units, then a cooldown blocks further changes.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from simscale.strategies.base import Decision, Observation, ServiceContext
from simscale.strategies.governors import Bounds, Chain, Cooldown, Step
from simscale.strategies.params import ParameterizedStrategy, StrategyParams, sync_period_field

Metric = Literal["utilization", "queue_length", "latency_p95_ms"]


class ThresholdParams(StrategyParams):
    """Parameters of :class:`Threshold`."""

    metric: Metric = Field(default="utilization", description=(
        "metric compared with the thresholds: utilization (busy fraction 0..1 of ready "
        "replicas), queue_length (requests waiting), latency_p95_ms"))
    upper_threshold: float = Field(default=0.8,
                                   description="scale out/up when the metric is above this")
    lower_threshold: float = Field(default=0.3,
                                   description="scale in/down when the metric is below this")
    step: int = Field(default=1, ge=1, description="replicas (horizontal) or threads (vertical) "
                      "added or removed per breach")
    evaluation_window_s: float = Field(default=60.0, gt=0,
                                       description="the metric is averaged over this window (s)")
    cooldown_s: float = Field(default=60.0, ge=0,
                              description="no further change this long after a change (s)")
    mode: Literal["horizontal", "vertical"] = Field(
        default="horizontal", description="horizontal: change the replica count; vertical: "
        "change the threads of each replica")
    min_threads: int = Field(default=1, ge=1, description="vertical: fewest threads per replica")
    max_threads: int | None = Field(default=None, ge=1, description="vertical: most threads per "
                                    "replica; default: the largest the profile measured")
    resize_delay_s: float = Field(default=5.0, ge=0,
                                  description="vertical: time an in-place resize takes (s)")
    sync_period_s: float = sync_period_field("how often to decide (s)")

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdParams:
        if self.lower_threshold >= self.upper_threshold:
            raise ValueError("lower_threshold must be below upper_threshold")
        return self


class Threshold(ParameterizedStrategy):
    """Add ``step`` when the windowed metric is above the upper threshold, remove ``step`` when
    below the lower one, then wait out the cooldown; parameters: :class:`ThresholdParams`."""

    name = "threshold"
    source = "AWS EC2 Auto Scaling step scaling policies (CloudWatch alarm + cooldown)"
    Params = ThresholdParams

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        self.history: list[tuple[float, float]] = []  # (time_s, metric value) per decision
        self.governors = Chain(Cooldown(self.cooldown_s), Bounds())

    def metric_value(self, obs: Observation) -> float:
        """The metric averaged over the evaluation window (NaN when there is no data)."""
        if self.metric == "utilization":
            return obs.utilization(self.evaluation_window_s)
        raw = float(obs.queue_length) if self.metric == "queue_length" else obs.latency_p95_ms
        self.history.append((obs.time_s, raw))
        cutoff = obs.time_s - self.evaluation_window_s
        self.history = [(t, v) for t, v in self.history if t > cutoff]
        values = np.array([v for _, v in self.history if not math.isnan(v)])
        return float(values.mean()) if len(values) else math.nan

    def decide(self, obs: Observation) -> Decision:
        value = self.metric_value(obs)
        direction = 0
        if value > self.upper_threshold:
            direction = 1
        elif value < self.lower_threshold:
            direction = -1
        current = obs.replicas.desired_total
        if self.mode == "vertical":
            return self._vertical(obs, value, direction, current)
        desired = self.governors(Step(obs.time_s, current, current + direction * self.step,
                                      obs.min_replicas, obs.max_replicas, obs.replicas.ready))
        return Decision(replicas=desired, info={"metric": value})

    def _vertical(self, obs: Observation, value: float, direction: int, current: int) -> Decision:
        threads_now = obs.current_size.threads
        measured = sorted({o.threads for o in obs.size_options
                           if o.device == obs.current_size.device} | {threads_now})
        high = self.max_threads if self.max_threads is not None else max(measured)
        wanted = threads_now + direction * self.step
        if direction > 0 and len(measured) > 1:  # the next measured size at least `step` larger
            wanted = next((t for t in measured if t >= wanted), max(measured))
        elif direction < 0 and len(measured) > 1:
            wanted = next((t for t in reversed(measured) if t <= wanted), min(measured))
        threads = self.governors(Step(obs.time_s, threads_now, wanted, self.min_threads, high))
        replicas = min(max(current, obs.min_replicas), obs.max_replicas)
        if threads == threads_now:
            return Decision(replicas=replicas, info={"metric": value})
        return Decision(replicas=replicas, threads=threads, resize_delay_s=self.resize_delay_s,
                        info={"metric": value, "threads": float(threads)})
