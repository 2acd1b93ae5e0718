"""``oracle``: provisions for the true future arrival rate, exactly one cold start ahead.

The bound the other strategies are measured against: it knows what no real autoscaler knows,
the workload's arrival-rate function (``ServiceContext.true_rate_rps``). At each decision it takes
the highest true rate over the interval its replicas will serve, ``[now + cold_start,
now + cold_start + sync_period_s]`` (sampled every ``sample_step_s``), and asks for the cheapest
configuration whose predicted latency percentile meets the SLO at that rate — the same solver
as ``cost_aware`` (:func:`~simscale.strategies.queueing.cheapest_config`). It still sees only
the rate, not the random arrivals, so Poisson bursts can make it miss the SLO now and then.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simscale.errors import UserError
from simscale.strategies.base import Decision, Observation, ServiceContext, Strategy
from simscale.strategies.cost_aware import (
    batch_cap,
    candidate_options,
    config_decision,
    keep_larger_batch,
)
from simscale.strategies.governors import clamp
from simscale.strategies.queueing import cheapest_config


class OracleParams(BaseModel):
    """Parameters of :class:`Oracle`."""

    model_config = ConfigDict(extra="forbid")

    slo_percentile: float = Field(default=0.95, gt=0, lt=1,
                                  description="latency percentile that must meet the SLO")
    tune_threads: bool = Field(default=True, description="choose threads per replica too")
    tune_batch_size: bool = Field(default=True, description="choose the batching limit too")
    same_device_only: bool = Field(default=True, description="only sizes on the current device")
    sample_step_s: float = Field(default=1.0, gt=0,
                                 description="resolution of the search for the peak rate (s)")
    sync_period_s: float = Field(default=15.0, gt=0, description="how often to decide (s)")


class Oracle(Strategy):
    """Cheapest configuration meeting the SLO at the true peak rate of the interval its replicas
    will serve, asked for exactly one cold start ahead."""

    name = "oracle"
    source = "clairvoyant lower bound (true rate function) + the cost_aware queueing solver"
    Params = OracleParams

    def __init__(self, slo_percentile: float = 0.95, tune_threads: bool = True,
                 tune_batch_size: bool = True, same_device_only: bool = True,
                 sample_step_s: float = 1.0, sync_period_s: float = 15.0):
        self.slo_percentile = slo_percentile
        self.tune_threads = tune_threads
        self.tune_batch_size = tune_batch_size
        self.same_device_only = same_device_only
        self.sample_step_s = sample_step_s
        self.sync_period_s = sync_period_s

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        if ctx.true_rate_rps is None:
            raise UserError(f"strategy 'oracle' needs the true arrival rate of service "
                            f"'{ctx.service}', which this workload does not provide",
                            field="strategies.oracle")
        self.true_rate_rps = ctx.true_rate_rps
        self.max_batch_cap = batch_cap(ctx)

    def peak_rate(self, time_s: float, cold_start_s: float) -> float:
        """Highest true rate (requests/s) in ``[t + cold_start, t + cold_start + sync]``."""
        start = time_s + cold_start_s
        n = max(2, int(np.ceil(self.sync_period_s / self.sample_step_s)) + 1)
        times = np.linspace(start, start + self.sync_period_s, n)
        return float(np.max(np.asarray(self.true_rate_rps(times), dtype=float)))

    def decide(self, obs: Observation) -> Decision:
        rate = self.peak_rate(obs.time_s, obs.current_size.cold_start_s)
        options = candidate_options(obs, self.tune_threads, self.same_device_only,
                                    self.max_batch_cap)
        config = cheapest_config(rate, obs.slo_ms, options, percentile=self.slo_percentile,
                                 min_replicas=obs.min_replicas, max_replicas=obs.max_replicas,
                                 tune_batch_size=self.tune_batch_size,
                                 batch_size=obs.current_size.max_batch_size)
        if self.tune_batch_size:
            config = keep_larger_batch(config, obs)
        replicas = clamp(config.replicas, obs.min_replicas, obs.max_replicas)
        return config_decision(config, obs, replicas, rate, self.slo_percentile, {})
