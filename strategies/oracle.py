"""``oracle``: provisions for the true future arrival rate, exactly one cold start ahead.

The bound the other strategies are measured against: it knows what no real autoscaler knows,
the workload's arrival-rate function (``ServiceContext.true_rate_rps``). At each decision it takes
the highest true rate over the interval its replicas will serve, ``[now + cold_start,
now + cold_start + sync_period_s]`` (sampled every ``sample_step_s``), and asks for the cheapest
configuration whose predicted latency percentile meets the SLO at that rate — the same solver
as ``cost_aware`` (:func:`~simscale.strategies.queueing.cheapest_config`). It still sees only
the rate, not the random arrivals, so Poisson bursts can make it miss the SLO now and then.

Burstiness: the rate function says nothing about how the arrivals cluster around it (a gamma
renewal stream has a constant rate at any CV), and the engine hands a strategy no realized
arrival times, so the oracle measures the arrival SCV exactly as ``cost_aware`` does, from the
observed per-second counts
(:func:`~simscale.strategies.cost_aware.observed_arrival_scv`), and plans with the G/G/c
model at that SCV; ``info["predicted_slo_attainment"]`` is that model's prediction.

New replicas need a cold start, but a resize in place (threads, batching limit) takes effect at
once: when the plan needs no replica beyond those running, the oracle sizes them for the peak of
``[now, now + sync_period_s]`` and leaves later peaks to later decisions.

Scaling in looks further ahead: a replica removed now can be back at the earliest one sync
period and one cold start later, so the oracle keeps (up to its current count) the replicas that
the peak over ``[now, now + 2 * sync_period_s + cold_start]`` needs, instead of removing one
and paying for a fresh cold start moments later.
"""

from __future__ import annotations

import functools

import numpy as np
from pydantic import Field

from simscale.errors import UserError
from simscale.strategies.base import Decision, Observation, ServiceContext
from simscale.strategies.cost_aware import (
    BurstParams,
    QueueingMemo,
    SolverParams,
    batch_cap,
    config_decision,
    keep_larger_batch,
    memo_candidates,
    observed_arrival_scv,
)
from simscale.strategies.governors import clamp
from simscale.strategies.params import ParameterizedStrategy, sync_period_field
from simscale.strategies.queueing import Config, cheapest_config


class OracleParams(BurstParams, SolverParams):
    """Parameters of :class:`Oracle`: the solver's and the burstiness measurement's (the same
    as ``cost_aware``'s), then its own."""
    sample_step_s: float = Field(default=1.0, gt=0,
                                 description="resolution of the search for the peak rate (s)")
    smoothing_s: float = Field(default=10.0, ge=0,
                               description="the rate is averaged over this window before its "
                               "peak is taken (s): a replayed trace's rate is its requests per "
                               "1 s bin, whose Poisson noise is not load to provision for")
    sync_period_s: float = sync_period_field("how often to decide (s)")


class Oracle(ParameterizedStrategy):
    """Cheapest configuration meeting the SLO at the true peak rate of the interval its replicas
    will serve, asked for exactly one cold start ahead; parameters: :class:`OracleParams`."""

    name = "oracle"
    decision_cost_s = 3e-4  # (measured 250 us: the true rate and the queueing solver)
    source = "clairvoyant lower bound (true rate function) + the cost_aware queueing solver"
    Params = OracleParams

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        if ctx.true_rate_rps is None:
            raise UserError(f"strategy 'oracle' needs the true arrival rate of service "
                            f"'{ctx.service}', which this workload does not provide",
                            field="strategies.oracle")
        self.true_rate_rps = ctx.true_rate_rps
        self.max_batch_cap = batch_cap(ctx)
        self.memo = QueueingMemo()

    def peak_rate(self, time_s: float, cold_start_s: float, span_s: float | None = None,
                  ) -> float:
        """Highest true rate (requests/s), averaged over ``smoothing_s``, in
        ``[t + cold_start, t + cold_start + span]`` (``span`` defaults to the sync period)."""
        span = self.sync_period_s if span_s is None else span_s
        step = self.sample_step_s
        start = time_s + cold_start_s
        w = max(1, int(round(self.smoothing_s / step)))
        half = (w - 1) / 2 * step
        n = max(2, int(np.ceil(span / step)) + 1)
        times = linspace(start - half, start + span + half, n + w - 1)
        rate = np.asarray(self.true_rate_rps(np.maximum(times, 0.0, out=times)), dtype=float)
        smooth = np.convolve(rate, _box(w), mode="valid")
        return float(np.maximum.reduce(smooth))

    def _solve(self, rate: float, obs: Observation, options: tuple,
               arrival_scv: float = 1.0) -> Config:
        extra = {} if arrival_scv == 1.0 else {"arrival_scv": arrival_scv}  # Poisson: old keys
        return self.memo(cheapest_config, rate, obs.slo_ms, tuple(options),
                         percentile=self.slo_percentile, min_replicas=obs.min_replicas,
                         max_replicas=obs.max_replicas, tune_batch_size=self.tune_batch_size,
                         batch_size=obs.current_size.max_batch_size, **extra)

    def decide(self, obs: Observation) -> Decision:
        cold_s = obs.current_size.cold_start_s
        rate = self.peak_rate(obs.time_s, cold_s)
        scv = observed_arrival_scv(obs, self)
        options = memo_candidates(self.memo, obs, self.tune_threads, self.same_device_only,
                                  self.max_batch_cap)
        config = self._solve(rate, obs, options, scv)
        current = obs.replicas.desired_total
        if config.replicas <= current:  # nothing to start: a resize needs no lead time
            rate = self.peak_rate(obs.time_s, 0.0)
            config = self._solve(rate, obs, options, scv)
        if self.tune_batch_size:
            config = keep_larger_batch(config, obs)
        replicas = clamp(config.replicas, obs.min_replicas, obs.max_replicas)
        if replicas < current:  # scale in only what is not needed before it could return
            keep_rate = self.peak_rate(obs.time_s, 0.0, 2 * self.sync_period_s + cold_s)
            keep = self._solve(keep_rate, obs, options, scv).replicas
            replicas = clamp(max(replicas, min(current, keep)), obs.min_replicas,
                             obs.max_replicas)
        return config_decision(config, obs, replicas, rate, self.slo_percentile, {}, self.memo,
                               scv)


def linspace(start: float, stop: float, num: int) -> np.ndarray:
    """``np.linspace(start, stop, num)`` for Python floats and ``num >= 2``: numpy's own
    operations (``arange(num) * ((stop - start) / (num - 1)) + start``, the last point set to
    ``stop``; ``step == 0`` as numpy treats it), without its argument handling."""
    if num < 2 or type(start) is not float or type(stop) is not float:
        return np.linspace(start, stop, num)
    div = num - 1
    delta = stop - start
    step = delta / div
    y = _arange(num).copy()
    if step == 0:
        y /= div
        y *= delta
    else:
        y *= step
    y += start
    y[-1] = stop
    return y


@functools.lru_cache(maxsize=64)
def _arange(num: int) -> np.ndarray:
    """``np.arange(num, dtype=float)``, read-only."""
    y = np.arange(0, num, dtype=float)
    y.flags.writeable = False
    return y


@functools.lru_cache(maxsize=64)
def _box(w: int) -> np.ndarray:
    """The moving-average kernel ``np.full(w, 1.0 / w)``, read-only."""
    v = np.full(w, 1.0 / w)
    v.flags.writeable = False
    return v

