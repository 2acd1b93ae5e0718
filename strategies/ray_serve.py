"""``ray_serve``: Ray Serve's default autoscaling policy (ongoing requests per replica).

Source: ray-project/ray ``python/ray/serve/autoscaling_policy.py``
(``replica_queue_length_autoscaling_policy``, ``_apply_scaling_factors``, ``_apply_delay_logic``
with wall-clock delays, ``_get_cold_start_scale_up_replicas``), ``python/ray/serve/config.py``
(``AutoscalingConfig``: fields, defaults, ``get_upscaling_factor``) and
``python/ray/serve/_private/autoscaling_state.py`` (``get_decision_num_replicas``: bounds applied
after the policy; ``current_num_replicas`` = running replicas); docs:
https://docs.ray.io/en/latest/serve/advanced-guides/advanced-autoscaling.html .

Metric: ``total`` = requests queued or in service over the whole deployment (the observation's
``in_flight``), sampled at every decision; the controller sees the mean of the samples of the
last ``look_back_period_s`` seconds, refreshed every ``metrics_interval_s`` seconds (replicas
push their averages at that period). Core rule, with ``running`` = ready replicas and ``target``
= the current target count (pending + starting + ready): ``desired = total /
target_ongoing_requests``; then ``ceil(running + factor * (desired - running))`` with the
upscaling or downscaling factor (minus one more when a scale-down would otherwise be stuck);
then the delays: a scale-up is applied once ``upscale_delay_s`` has passed since the first of an
unbroken run of decisions that wanted more than ``target``, a scale-down likewise after
``downscale_delay_s`` (``downscale_to_zero_delay_s`` for 1 -> 0; a scale-down from more than one
replica stops at 1); then ``min_replicas..max_replicas``. With no running replica and requests
waiting, the cold-start path asks for ``max(ceil(upscaling factor), target)`` at once.

Two deliberate differences, both documented in the parameters: Ray's controller decides every
0.1 s (``CONTROL_LOOP_INTERVAL_S``); here every ``sync_period_s`` (default 1 s: the metric only
changes every ``metrics_interval_s`` and the delays are wall-clock, so a decision lands at most
one period later; set 0.1 for Ray's cadence at ten times the decision cost). ``initial_replicas``
is asked for at the first decision (the run itself starts with the scenario's
``replicas.initial``).
"""

from __future__ import annotations

import math
from collections import deque

from pydantic import Field, model_validator

from simscale.strategies.base import Decision, Observation, ServiceContext
from simscale.strategies.governors import Bounds, Chain, ConsecutiveDelay, Step, clamp
from simscale.strategies.params import ParameterizedStrategy, StrategyParams, sync_period_field

#: Ray compares elapsed wall-clock time with a delay allowing this much float error
#: (``_DELAY_ELAPSED_EPS_S`` in autoscaling_policy.py)
DELAY_EPS_S = 1e-6


class RayServeParams(StrategyParams):
    """Parameters of :class:`RayServe`: the fields of Ray Serve's ``AutoscalingConfig``
    (``python/ray/serve/config.py``), with its defaults; durations in seconds."""

    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="requests queued or in service per replica the policy "
        "aims at (DEFAULT_TARGET_ONGOING_REQUESTS)")
    min_replicas: int = Field(default=1, ge=0, description="lowest replica count")
    max_replicas: int = Field(
        default=100, ge=1, description="highest replica count (AutoscalingConfig.default(), "
        "what num_replicas='auto' gives; a bare AutoscalingConfig defaults to 1)")
    initial_replicas: int | None = Field(
        default=None, ge=0, description="count asked for at the first decision (None: none)")
    upscale_delay_s: float = Field(default=30.0, ge=0,
                                   description="wanting more replicas this long before scaling up")
    downscale_delay_s: float = Field(
        default=600.0, ge=0, description="wanting fewer replicas this long before scaling down")
    downscale_to_zero_delay_s: float | None = Field(
        default=None, ge=0, description="delay for 1 -> 0 (None: downscale_delay_s)")
    upscaling_factor: float | None = Field(
        default=None, gt=0, description="gain on scale-ups (None: upscale_smoothing_factor, "
        "else smoothing_factor)")
    downscaling_factor: float | None = Field(
        default=None, gt=0, description="gain on scale-downs (None: downscale_smoothing_factor, "
        "else smoothing_factor)")
    upscale_smoothing_factor: float | None = Field(
        default=None, gt=0, description="deprecated name of upscaling_factor")
    downscale_smoothing_factor: float | None = Field(
        default=None, gt=0, description="deprecated name of downscaling_factor")
    smoothing_factor: float = Field(default=1.0, gt=0,
                                    description="deprecated gain for both directions")
    metrics_interval_s: float = Field(
        default=10.0, gt=0, description="how often replicas report their averages (s)")
    look_back_period_s: float = Field(
        default=30.0, gt=0, description="window the reported ongoing requests average over (s)")
    sync_period_s: float = sync_period_field(
        "how often the controller decides (s); Ray's CONTROL_LOOP_INTERVAL_S is 0.1", default=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> RayServeParams:
        # as AutoscalingConfig.replicas_settings_valid
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be greater than or "
                             f"equal to min_replicas ({self.min_replicas})")
        if self.initial_replicas is not None and not (
                self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise ValueError(f"initial_replicas ({self.initial_replicas}) must lie within "
                             "min_replicas..max_replicas")
        return self


def scaled_replicas(desired: float, running: int, up_factor: float, down_factor: float) -> int:
    """Ray's ``_apply_scaling_factors``: ``ceil(running + factor * (desired - running))``, minus
    one when a scale-down would otherwise stay at ``running``; ``ceil(desired)`` with no running
    replica."""
    if running == 0:
        return math.ceil(desired)
    delta = desired - running
    factor = up_factor if delta > 0 else down_factor
    scaled = math.ceil(running + factor * delta)
    if math.ceil(float(desired)) < running and scaled == running:
        scaled -= 1
    return scaled


class RayServe(ParameterizedStrategy):
    """Ray Serve's default policy: ``total ongoing requests / target_ongoing_requests``, scaled
    by the up/down factors, held back by the up/down delays, within min/max replicas;
    parameters: :class:`RayServeParams`."""

    name = "ray_serve"
    source = ("ray-project/ray python/ray/serve/autoscaling_policy.py, config.py "
              "(AutoscalingConfig); docs.ray.io Serve advanced autoscaling")
    Params = RayServeParams

    @property
    def up_factor(self) -> float:
        """``AutoscalingConfig.get_upscaling_factor``."""
        return self.upscaling_factor or self.upscale_smoothing_factor or self.smoothing_factor

    @property
    def down_factor(self) -> float:
        """``AutoscalingConfig.get_downscaling_factor``."""
        return (self.downscaling_factor or self.downscale_smoothing_factor
                or self.smoothing_factor)

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        self.samples: deque[tuple[float, float]] = deque()  # (time_s, in_flight) per decision
        self.reported = 0.0  # the controller's current view of total ongoing requests
        self.reported_at_s: float | None = None
        self.first = True
        self.delay = ConsecutiveDelay(max(0.0, self.upscale_delay_s - DELAY_EPS_S),
                                      max(0.0, self.downscale_delay_s - DELAY_EPS_S))
        self.governors = Chain(self.delay, Bounds())

    def total_requests(self, obs: Observation) -> float:
        """The controller's view of the deployment's ongoing requests at ``obs.time_s``: the mean
        of the samples of the last ``look_back_period_s`` as last reported (every
        ``metrics_interval_s``)."""
        now = obs.time_s
        self.samples.append((now, float(obs.in_flight)))
        cutoff = now - self.look_back_period_s
        while self.samples and self.samples[0][0] <= cutoff:
            self.samples.popleft()
        if self.reported_at_s is None or now - self.reported_at_s >= self.metrics_interval_s - 1e-9:
            self.reported = sum(v for _, v in self.samples) / len(self.samples)
            self.reported_at_s = now
        return self.reported

    def bounds(self, obs: Observation) -> tuple[int, int]:
        """``min_replicas..max_replicas`` within the service's own bounds."""
        low = clamp(self.min_replicas, obs.min_replicas, obs.max_replicas)
        return low, clamp(self.max_replicas, low, obs.max_replicas)

    def decide(self, obs: Observation) -> Decision:
        total = self.total_requests(obs)
        running = obs.replicas.ready
        target = obs.replicas.desired_total
        low, high = self.bounds(obs)
        if self.first:
            self.first = False
            if self.initial_replicas is not None:
                return Decision(replicas=clamp(self.initial_replicas, low, high))
        if running == 0 and (target > 0 or obs.in_flight > 0):
            # cold start path: requests waiting at the handles (seen at once, as the handles
            # report on a cold start), or replicas on their way; no delay applies
            want = max(math.ceil(self.up_factor), target) if obs.in_flight > 0 else target
            return Decision(replicas=clamp(want, low, high), info={"total_ongoing": total})
        raw = total / self.target_ongoing_requests if running else 0.0
        scaled = max(0, scaled_replicas(raw, running, self.up_factor, self.down_factor))
        if scaled < target and target > 1:
            scaled = max(1, scaled)  # only 1 -> 0 may reach zero
        to_zero = target == 1 and self.downscale_to_zero_delay_s is not None
        delay_s = self.downscale_to_zero_delay_s if to_zero else self.downscale_delay_s
        self.delay.down_delay_s = max(0.0, delay_s - DELAY_EPS_S)  # Ray picks it per decision
        final = self.governors(Step(obs.time_s, target, scaled, low, high, running))
        return Decision(replicas=final, info={"total_ongoing": total, "raw_desired": raw})
