"""``cost_aware``: the cheapest configuration that a queueing model says meets the latency SLO.

Sources: capacity planning with Erlang-C / Allen-Cunneen M/G/c approximations, and GI/M/c
(Takacs) for bursty arrivals (Gross, Shortle, Thompson & Harris, *Fundamentals of Queueing
Theory*, §2.3 and §6.3; Allen, *Probability, Statistics and Queueing Theory*, 1990), as in
model-based autoscalers for ML serving (e.g. Clipper's and INFaaS's latency-aware configuration
choice); formulas in :mod:`simscale.strategies.queueing`.

Core rule, every ``sync_period_s``: plan for ``rate = max(forecast(now + lead), observed rate)
* rate_headroom + queue_length / backlog_drain_s`` (with bursty arrivals the observed rate is
the larger of the reactive and the ``burst_window_s`` windows' rates, and the latency model is
G/G/c at the measured arrival SCV, see :func:`observed_arrival_scv`); among every replica
count, size option (threads per replica, on the current device) and batching limit the
profile offers, pick the cheapest (replicas x price) whose predicted ``slo_percentile``
latency at that rate is within the SLO (see
:func:`~simscale.strategies.queueing.cheapest_config`). A different size is taken only when it
is cheaper by more than ``size_switch_margin``.

Scale-in hysteresis: dropping replicas from ``n`` to ``m`` saves ``(n - m) * price * horizon``,
but if the load comes back to the recent peak (the highest binned rate of the last
``peak_window_s``) the replicas must be started again: that costs ``(n - m) * price * cold_start``
and, during the cold start, ``violation_cost_usd`` per request the model predicts will miss the
SLO with ``m`` replicas at the peak. The count with the largest net saving is kept (``n`` when
none is positive). Replicas with no price are valued at 1 USD per hour here, so that a service
priced at 0 still releases the replicas it does not need.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from simscale.strategies.base import (
    Decision,
    Observation,
    ServiceContext,
    SizeOption,
)
from simscale.strategies.forecasters import ForecastParams, RateForecast
from simscale.strategies.governors import clamp
from simscale.strategies.params import ParameterizedStrategy, StrategyParams, sync_period_field
from simscale.strategies.queueing import (
    Config,
    arrival_scv_estimate,
    bucket_scv,
    cheapest_config,
    predicted_latency_ms,
    slo_attainment,
)


class SolverParams(StrategyParams):
    """What the queueing solver must meet and which configurations it may choose from; shared by
    ``cost_aware`` and ``oracle`` (see :func:`candidate_options` and
    :func:`~simscale.strategies.queueing.cheapest_config`)."""

    slo_percentile: float = Field(default=0.95, gt=0, lt=1,
                                  description="latency percentile that must meet the SLO")
    tune_threads: bool = Field(default=True, description="choose threads per replica too")
    tune_batch_size: bool = Field(default=True, description="choose the batching limit too")
    same_device_only: bool = Field(default=True, description="only sizes on the current device")


class BurstParams(StrategyParams):
    """How a model-based strategy measures arrival burstiness (see
    :func:`observed_arrival_scv`); shared by ``cost_aware`` and ``oracle``."""

    model_burstiness: bool = Field(default=True, description=(
        "plan with the measured arrival SCV (G/G/c) instead of Poisson arrivals"))
    burst_window_s: float = Field(default=120.0, ge=2, description=(
        "recent seconds of arrival counts the burstiness is measured over (s)"))
    burst_block_s: float = Field(default=30.0, ge=2, description=(
        "counts are compared with their mean over blocks this long (s): slower rate changes "
        "are not burstiness"))
    burst_scale_s: float = Field(default=3.0, ge=1, description=(
        "time scale of the burstiness: arrivals are counted in bins this long (s)"))
    burst_significance: float = Field(default=1e-4, gt=0, lt=1, description=(
        "Poisson is kept unless Fisher's dispersion test rejects it at this level"))


class CostAwareParams(BurstParams, ForecastParams, SolverParams):
    """Parameters of :class:`CostAware`: the solver's (:class:`SolverParams`), the forecast's
    (:class:`~simscale.strategies.forecasters.ForecastParams`), the burstiness measurement's
    (:class:`BurstParams`), then its own."""

    rate_headroom: float = Field(default=1.0, ge=1.0,
                                 description="multiplier on the planned rate (safety margin)")
    backlog_drain_s: float = Field(default=10.0, gt=0,
                                   description="plan to drain the current queue within this (s)")
    size_switch_margin: float = Field(default=0.1, ge=0, description=(
        "switch to another size only when it is cheaper by more than this fraction"))
    scale_in_horizon_s: float = Field(default=600.0, gt=0,
                                      description="horizon over which a scale-in must pay off (s)")
    peak_window_s: float = Field(default=300.0, gt=0,
                                 description="recent peak the scale-in risk is judged at (s)")
    violation_cost_usd: float = Field(default=1e-4, ge=0,
                                      description="cost charged per request missing the SLO")
    sync_period_s: float = sync_period_field("how often to decide (s)")


class QueueingMemo:
    """The queueing model's answers kept by their exact arguments, for one strategy object.

    The model's functions are pure and their answers immutable, so an answer looked up is the
    answer computed: decisions are unchanged. Arguments recur across decisions (the sizes on
    offer every time; a true rate that stays flat for the oracle; the recent peak of
    ``cost_aware``'s scale-in check); a rate that differs in any bit is a new question. At most
    ``max_entries`` answers are kept (all are dropped when full)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._answers: dict[tuple, Any] = {}

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        key = (fn, args, tuple(kwargs.items()))
        try:
            return self._answers[key]
        except KeyError:
            pass
        except TypeError:  # an argument that cannot be a key: not kept
            return fn(*args, **kwargs)
        answer = fn(*args, **kwargs)
        if len(self._answers) >= self.max_entries:
            self._answers.clear()
        self._answers[key] = answer
        return answer


def candidate_options(obs: Observation, tune_threads: bool = True,
                      same_device_only: bool = True,
                      max_batch_size: int | None = None) -> tuple[SizeOption, ...]:
    """The sizes a model-based strategy may choose from (the current one when none is offered),
    with ``max_batch_size`` as the largest batching limit when given (the engine reports the
    limit in force as every option's ``max_batch_size``)."""
    return _candidates(obs.size_options, obs.current_size, tune_threads, same_device_only,
                       max_batch_size)


def _candidates(size_options: tuple[SizeOption, ...], now: SizeOption, tune_threads: bool,
                same_device_only: bool, max_batch_size: int | None) -> tuple[SizeOption, ...]:
    options = [o for o in size_options
               if (not same_device_only or o.device == now.device)
               and (tune_threads or o.threads == now.threads)] or [now]
    if max_batch_size is not None:
        options = [dataclasses.replace(o, max_batch_size=max_batch_size) for o in options]
    return tuple(options)


def memo_candidates(memo: QueueingMemo, obs: Observation, tune_threads: bool,
                    same_device_only: bool, max_batch_size: int | None
                    ) -> tuple[SizeOption, ...]:
    """:func:`candidate_options`, looked up in ``memo``."""
    return memo(_candidates, tuple(obs.size_options), obs.current_size, tune_threads,
                same_device_only, max_batch_size)


def batch_cap(ctx: ServiceContext) -> int:
    """The largest batching limit of the service (its configured one, before any change)."""
    return max([o.max_batch_size for o in ctx.size_options] + [ctx.initial_size.max_batch_size])


def keep_larger_batch(config: Config, obs: Observation) -> Config:
    """``config`` with the batching limit in force when that is larger: in the model a larger
    limit never raises latency, so the limit only grows (fewer resize events)."""
    limit = obs.current_size.max_batch_size
    if limit > config.batch_size:
        return dataclasses.replace(config, batch_size=limit)
    return config


def same_size(a: SizeOption, b: SizeOption) -> bool:
    """Whether two options are the same replica size (device and threads)."""
    return a.device == b.device and a.threads == b.threads


def observed_arrival_scv(obs: Observation, params: Any) -> float:
    """The arrival SCV a model-based strategy plans with, ``params`` being anything with
    :class:`BurstParams`' fields (a strategy or its parameters): 1 (Poisson) unless
    ``params.model_burstiness``; else the pooled index of dispersion of the arrival counts
    in bins of ``burst_scale_s`` over the last ``burst_window_s``, about their means over
    blocks of ``burst_block_s``, kept at 1
    unless Fisher's dispersion test rejects Poisson at ``burst_significance``
    (:func:`~simscale.strategies.queueing.arrival_scv_estimate`), bucketed
    (:func:`~simscale.strategies.queueing.bucket_scv`) so cached answers are reused."""
    if not params.model_burstiness:
        return 1.0
    n = max(2, int(round(params.burst_window_s)))
    block = max(2, int(round(params.burst_block_s)))
    scale = max(1, int(round(params.burst_scale_s)))
    return bucket_scv(arrival_scv_estimate(obs.arrivals_per_s[-n:], block,
                                           params.burst_significance, scale))


def config_decision(config: Config, obs: Observation, replicas: int, rate_rps: float,
                    slo_percentile: float, extra: dict[str, float],
                    memo: QueueingMemo | None = None, arrival_scv: float = 1.0) -> Decision:
    """The :class:`Decision` for ``config`` with ``replicas``, with the model's predictions
    at arrival SCV ``arrival_scv`` (looked up in ``memo`` when given): ``info`` carries the
    predicted SLO attainment, the predicted latency percentile, the planned rate and the
    arrival SCV planned with (1: Poisson)."""
    ask = memo if memo is not None else _direct
    option = config.option
    attainment = ask(slo_attainment, replicas, rate_rps, option.mean_service_s(
        config.effective_batch_size), option.scv, obs.slo_ms / 1000.0,
        config.effective_batch_size, arrival_scv=arrival_scv)
    now = obs.current_size
    latency_ms = ask(predicted_latency_ms, option, rate_rps, replicas, config.batch_size,
                     slo_percentile, arrival_scv=arrival_scv)
    info = {"predicted_slo_attainment": attainment,
            "predicted_latency_ms": latency_ms if math.isfinite(latency_ms) else 1e12,
            "planned_rate_rps": rate_rps, "feasible": 1.0 if config.feasible else 0.0,
            "threads": float(option.threads), "batch_size": float(config.batch_size),
            "slo_percentile": slo_percentile, "arrival_scv": arrival_scv, **extra}
    return Decision(
        replicas=replicas,
        threads=option.threads if option.threads != now.threads else None,
        device=option.device if option.device != now.device else None,
        max_batch_size=config.batch_size if config.batch_size != now.max_batch_size else None,
        info=info)


def _direct(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class CostAware(ParameterizedStrategy):
    """Cheapest replicas x size x batching whose predicted latency percentile meets the SLO at the
    forecast rate, with a scale-in rule that weighs the cost and risk of a later cold start;
    parameters: :class:`CostAwareParams`."""

    name = "cost_aware"
    decision_cost_s = 3e-4  # (measured 270 us: the forecast and the queueing solver)
    source = ("Erlang-C / Allen-Cunneen M/G/c and GI/M/c capacity planning (Gross et al., "
              "Fundamentals of Queueing Theory); AWS predictive scaling for the forecast")
    Params = CostAwareParams

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        self.rate_forecast = RateForecast.build(self.forecaster, self.forecaster_params,
                                                self.bin_s, self.history_s)
        self.max_batch_cap = batch_cap(ctx)
        self.memo = QueueingMemo()

    def planned_rate(self, obs: Observation, arrival_scv: float = 1.0) -> tuple[float, float]:
        """``(rate to plan for, forecast)`` in requests/s. When the arrivals are bursty
        (``arrival_scv > 1``) the short reactive window's rate swings with every burst and lull,
        so the rate over ``burst_window_s`` is a floor too: a lull is not taken for a lower rate
        (the G/G/c model already accounts for the bursts around that rate)."""
        lead = self.lead_s if self.lead_s is not None else (
            obs.current_size.cold_start_s + self.sync_period_s)
        forecast = self.rate_forecast(obs, obs.time_s + lead)
        rate = max(forecast, obs.rate_rps(self.reactive_window_s))
        if arrival_scv > 1.0:
            rate = max(rate, obs.rate_rps(self.burst_window_s))
        rate *= self.rate_headroom
        return rate + obs.queue_length / self.backlog_drain_s, forecast

    def choose(self, obs: Observation, rate_rps: float, arrival_scv: float = 1.0) -> Config:
        """The cheapest feasible configuration at arrival SCV ``arrival_scv``, keeping the
        current size unless another is cheaper by more than ``size_switch_margin``."""
        options = memo_candidates(self.memo, obs, self.tune_threads, self.same_device_only,
                                  self.max_batch_cap)
        solve: dict[str, Any] = {
            "percentile": self.slo_percentile, "min_replicas": obs.min_replicas,
            "max_replicas": obs.max_replicas, "tune_batch_size": self.tune_batch_size,
            "batch_size": obs.current_size.max_batch_size}
        if arrival_scv != 1.0:  # Poisson: the same cache keys as before burstiness was modelled
            solve["arrival_scv"] = arrival_scv
        best = self.memo(cheapest_config, rate_rps, obs.slo_ms, options, **solve)
        if not same_size(best.option, obs.current_size):
            mine = tuple(o for o in options if same_size(o, obs.current_size))
            if mine:
                stay = self.memo(cheapest_config, rate_rps, obs.slo_ms, mine, **solve)
                if stay.feasible and (not best.feasible or stay.cost_per_hour_usd
                                      <= best.cost_per_hour_usd * (1 + self.size_switch_margin)):
                    best = stay
        return keep_larger_batch(best, obs) if self.tune_batch_size else best

    def scale_in(self, obs: Observation, config: Config, current: int,
                 arrival_scv: float = 1.0) -> int:
        """Replicas to keep when ``config`` asks for fewer than ``current`` (same size), the
        risk judged at arrival SCV ``arrival_scv``."""
        option = config.option
        values, _ = self.rate_forecast.history.binned(self.bin_s)
        n_bins = max(1, int(round(self.peak_window_s / self.bin_s)))
        peak = float(np.max(values[-n_bins:])) if len(values) else 0.0
        price_per_s = (option.price_per_hour_usd or 1.0) / 3600.0  # free replicas: 1 USD/h
        cold_s = option.cold_start_s
        slo_s = obs.slo_ms / 1000.0
        b = config.effective_batch_size
        service_s = option.mean_service_s(b)
        best_n, best_gain = current, 0.0
        for n in range(config.replicas, current):
            dropped = current - n
            saving = dropped * price_per_s * (self.scale_in_horizon_s - cold_s)
            missed = 1.0 - self.memo(slo_attainment, n, peak, service_s, option.scv, slo_s, b,
                                     arrival_scv=arrival_scv)
            risk = self.violation_cost_usd * peak * cold_s * missed
            gain = saving - risk
            if gain > best_gain:
                best_n, best_gain = n, gain
        return best_n

    def decide(self, obs: Observation) -> Decision:
        scv = observed_arrival_scv(obs, self)
        rate, forecast = self.planned_rate(obs, scv)
        config = self.choose(obs, rate, scv)
        current = obs.replicas.desired_total
        replicas = config.replicas
        if replicas < current and same_size(config.option, obs.current_size):
            replicas = self.scale_in(obs, config, current, scv)
        replicas = clamp(replicas, obs.min_replicas, obs.max_replicas)
        return config_decision(config, obs, replicas, rate, self.slo_percentile,
                               {"forecast_rps": forecast}, self.memo, scv)
