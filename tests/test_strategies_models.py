"""Unit tests of the strategies' building blocks: queueing formulas, forecasters, governors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simscale.strategies.base import SizeOption
from simscale.strategies.forecasters import (
    Arima,
    Holt,
    HoltWinters,
    LastValue,
    LinearTrend,
    MovingAverage,
    arima_path,
    make_forecaster,
)
from simscale.strategies.governors import (
    Bounds,
    Chain,
    ConsecutiveDelay,
    Cooldown,
    RateLimit,
    RelativeRateLimit,
    ScalingPolicy,
    StabilizationWindow,
    Step,
)
from simscale.strategies.queueing import (
    allen_cunneen_mean_wait_s,
    batch_limits,
    cheapest_config,
    erlang_b,
    erlang_c,
    latency_quantile_s,
    mmc_mean_wait_s,
    predicted_latency_ms,
    slo_attainment,
    wait_quantile_s,
)


def option(threads: int = 1, alpha_ms: float = 10.0, beta_ms: float = 2.0, scv: float = 1.0,
           price: float = 0.1, max_batch: int = 1) -> SizeOption:
    return SizeOption(device="cpu", threads=threads, alpha_ms=alpha_ms, beta_ms=beta_ms,
                      mean_factor=1.0, scv=scv, max_batch_size=max_batch,
                      price_per_hour_usd=price, cold_start_s=10.0)


# --- queueing -------------------------------------------------------------------------------


def test_erlang_known_values() -> None:
    assert float(erlang_c(2, 1.0)) == pytest.approx(1 / 3)
    assert float(erlang_b(1, 1.0)) == pytest.approx(0.5)
    assert float(erlang_b(2, 1.0)) == pytest.approx(0.2)
    assert float(erlang_c(1, 0.5)) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert float(erlang_c(10, 8.0)) == pytest.approx(0.4092, abs=1e-4)  # Erlang C table
    assert float(erlang_c(3, 3.0)) == 1.0 and float(erlang_c(2, 5.0)) == 1.0  # unstable


def test_erlang_c_vectorised() -> None:
    c = np.array([1, 2, 3, 10])
    a = np.array([0.5, 1.0, 2.5, 8.0])
    out = erlang_c(c, a)
    assert out.shape == (4,)
    assert out == pytest.approx([float(erlang_c(int(ci), float(ai)))
                                       for ci, ai in zip(c, a, strict=True)])
    grid = erlang_c(np.arange(1, 6)[:, None], np.array([0.5, 1.5])[None, :])
    assert grid.shape == (5, 2)
    assert np.all(np.diff(grid, axis=0) <= 1e-12)  # more servers, less waiting


def test_mean_waits() -> None:
    lam, mu = 8.0, 10.0
    assert float(mmc_mean_wait_s(1, lam, 1 / mu)) == pytest.approx(lam / (mu * (mu - lam)))
    # M/M/2, lam=1, mu=1: Wq = C / (c mu - lam) = (1/3) / 1
    assert float(mmc_mean_wait_s(2, 1.0, 1.0)) == pytest.approx(1 / 3)
    # Allen-Cunneen is exact for M/G/1 (Pollaczek-Khinchine): Wq = rho (1 + cs2) / (2 mu (1-rho))
    rho = lam / mu
    for scv in (0.0, 0.5, 2.0):
        pk = rho * (1 + scv) / (2 * mu * (1 - rho))
        assert float(allen_cunneen_mean_wait_s(1, lam, 1 / mu, scv)) == pytest.approx(pk)
    assert math.isinf(float(mmc_mean_wait_s(1, 10.0, 0.1)))
    assert float(mmc_mean_wait_s(3, 0.0, 0.1)) == 0.0


def test_wait_quantile_mm1() -> None:
    lam, mu = 5.0, 10.0
    # P(W > t) = rho exp(-(mu - lam) t) -> the 95th percentile
    expected = math.log((lam / mu) / 0.05) / (mu - lam)
    assert float(wait_quantile_s(1, lam, 1 / mu, 1.0, 0.95)) == pytest.approx(expected)
    assert float(wait_quantile_s(1, 0.1, 1 / mu, 1.0, 0.95)) == 0.0  # P(wait) < 5 %
    total = float(latency_quantile_s(1, lam, 1 / mu, 1.0, 0.95))
    assert total == pytest.approx(expected + math.log(20) / mu)


def test_slo_attainment_exact_for_mm1() -> None:
    lam, mu, slo = 6.0, 10.0, 0.4
    exact = 1 - math.exp(-(mu - lam) * slo)  # M/M/1 response time ~ Exp(mu - lam)
    assert slo_attainment(1, lam, 1 / mu, 1.0, slo) == pytest.approx(exact, abs=1e-4)
    assert slo_attainment(1, 20.0, 1 / mu, 1.0, slo) == 0.0
    assert slo_attainment(2, 0.0, 0.05, 0.0, 0.1) == 1.0


def test_batch_limits() -> None:
    assert batch_limits(1) == [1]
    assert batch_limits(8) == [1, 2, 4, 8]
    assert batch_limits(12) == [1, 2, 4, 8, 12]


def test_cheapest_config_picks_cheapest_feasible() -> None:
    small = option(threads=1, alpha_ms=20, beta_ms=0, price=0.1)
    big = option(threads=4, alpha_ms=5, beta_ms=0, price=0.5)
    config = cheapest_config(100.0, 100.0, [small, big], max_replicas=50)
    assert config.feasible and config.latency_ms <= 100.0
    for o in (small, big):
        for n in range(1, 51):
            if predicted_latency_ms(o, 100.0, n, 1, 0.95) <= 100.0:
                assert n * o.price_per_hour_usd >= config.cost_per_hour_usd - 1e-12
                break
    hopeless = cheapest_config(1e6, 1.0, [small], max_replicas=3)
    assert not hopeless.feasible and hopeless.replicas == 3


def test_batching_helps_at_high_load() -> None:
    batched = option(alpha_ms=20, beta_ms=1, max_batch=16)
    unbatched = cheapest_config(200.0, 500.0, [batched], tune_batch_size=False, max_replicas=100)
    tuned = cheapest_config(200.0, 500.0, [batched], max_replicas=100)
    assert tuned.feasible and tuned.replicas < unbatched.replicas


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 400.0), st.floats(0.0, 400.0), st.floats(50.0, 500.0))
def test_cheapest_config_monotone_in_load(r1: float, r2: float, slo_ms: float) -> None:
    low, high = sorted((r1, r2))
    options = [option(1, 20, 1, 0.8, 0.1, 8), option(2, 12, 0.6, 0.8, 0.18, 8)]
    a = cheapest_config(low, slo_ms, options, max_replicas=40)
    b = cheapest_config(high, slo_ms, options, max_replicas=40)
    if b.feasible:
        assert a.feasible and a.cost_per_hour_usd <= b.cost_per_hour_usd + 1e-12
    one_a = cheapest_config(low, slo_ms, options[:1], max_replicas=40)
    one_b = cheapest_config(high, slo_ms, options[:1], max_replicas=40)
    if one_b.feasible:
        assert one_a.replicas <= one_b.replicas


# --- forecasters ----------------------------------------------------------------------------


def test_simple_forecasters() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert LastValue().forecast(y, 10.0, 30.0) == 6.0
    assert MovingAverage(window_s=30.0).forecast(y, 10.0, 5.0) == pytest.approx(5.0)
    assert LinearTrend(window_s=60.0).forecast(y, 10.0, 30.0) == pytest.approx(9.0)
    assert LinearTrend().forecast(np.array([5.0, 3.0, 1.0]), 1.0, 10.0) == 0.0  # never negative
    assert LastValue().forecast(np.zeros(0), 1.0, 1.0) == 0.0


def test_holt_follows_a_line() -> None:
    y = 3.0 + 0.5 * np.arange(50)
    assert Holt(alpha=0.5, beta=0.3).forecast(y, 10.0, 40.0) == pytest.approx(y[-1] + 2.0)


def test_holt_winters_learns_a_season() -> None:
    m = 12
    t = np.arange(6 * m)
    y = 50.0 + 0.1 * t + 10.0 * np.sin(2 * np.pi * t / m)
    forecast = HoltWinters(season_s=m * 10.0, alpha=0.3, beta=0.1, gamma=0.3).forecast(
        y, 10.0, 30.0)  # three steps ahead
    k = len(y) - 1 + 3
    truth = 50.0 + 0.1 * k + 10.0 * np.sin(2 * np.pi * k / m)
    assert forecast == pytest.approx(truth, abs=1.5)
    short = HoltWinters(season_s=m * 10.0).forecast(y[:m], 10.0, 10.0)  # falls back to Holt
    assert math.isfinite(short)


def test_arima_refits_on_schedule_and_tracks_a_trend() -> None:
    rng = np.random.default_rng(1)
    y = 20.0 + 0.2 * np.arange(200) + rng.normal(0, 0.2, 200)
    arima = Arima(order=(1, 1, 0), window_s=2000.0, refit_every=5)
    values = [arima.forecast(y[: 150 + i], 10.0, 10.0) for i in range(10)]
    assert arima._calls == 10
    for i, v in enumerate(values):
        assert v == pytest.approx(20.0 + 0.2 * (150 + i), abs=2.0)


@pytest.mark.parametrize("order", [(1, 1, 1), (2, 0, 1), (1, 2, 0)])
def test_arima_recursion_matches_statsmodels(order: tuple[int, int, int]) -> None:
    import warnings

    from statsmodels.tsa.arima.model import ARIMA

    rng = np.random.default_rng(7)
    y = 30.0 + np.cumsum(rng.normal(0.1, 1.0, 150)) if order[1] else 30 + rng.normal(0, 1, 150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ARIMA(y, order=order).fit(cov_type="none")
    names = list(result.model.param_names)
    mean = float(result.params[names.index("const")]) if "const" in names else 0.0
    mine = arima_path(y, order[1], result.arparams, result.maparams, mean, steps=5)
    assert mine == pytest.approx(np.asarray(result.forecast(5)), rel=1e-3, abs=1e-2)


def test_make_forecaster() -> None:
    assert isinstance(make_forecaster("holt", {"alpha": 0.2}), Holt)
    with pytest.raises(ValueError, match="unknown forecaster"):
        make_forecaster("crystal_ball")


# --- governors ------------------------------------------------------------------------------


def step(t: float, current: int, desired: int, lo: int = 1, hi: int = 100) -> Step:
    return Step(t, current, desired, lo, hi, current)


def test_hpa_default_rate_limits() -> None:
    up = [ScalingPolicy("Pods", 4, 15.0), ScalingPolicy("Percent", 100, 15.0)]
    down = [ScalingPolicy("Percent", 100, 15.0)]
    assert RateLimit(up, down).apply(step(0, 1, 100)) == 5  # max(1 + 4, 2)
    assert RateLimit(up, down).apply(step(0, 10, 100)) == 20  # max(14, 20)
    assert RateLimit(up, down, up_select="Min").apply(step(0, 10, 100)) == 14
    assert RateLimit(up, down).apply(step(0, 10, 0)) == 1  # down to the bound
    limit = RateLimit(up, down)
    chain = Chain(limit)
    assert chain(step(0, 2, 100)) == 6
    assert chain(step(5, 6, 100)) == 6  # the period started at 2: 2 + 4 = 6 already used
    assert chain(step(16, 6, 100)) == 12  # new period
    assert RateLimit(up, down, up_select="Disabled").apply(step(0, 3, 9)) == 3


def test_stabilization_window() -> None:
    window = StabilizationWindow(up_window_s=0.0, down_window_s=300.0)
    assert window.apply(step(0, 10, 2)) == 10  # seeded with the current count
    assert window.apply(step(100, 10, 3)) == 10
    assert window.apply(step(301, 10, 3)) == 3  # only recommendations 3 remain in the window
    assert window.apply(step(302, 3, 8)) == 8  # scale-up is immediate


def test_cooldown_relative_and_delay() -> None:
    chain = Chain(Cooldown(60.0), Bounds())
    assert chain(step(0, 2, 3)) == 3
    assert chain(step(30, 3, 4)) == 3
    assert chain(step(61, 3, 4)) == 4
    rel = RelativeRateLimit(max_up_rate=2.0, max_down_rate=2.0)
    assert rel.limits(4) == (2, 8) and rel.limits(0) == (0, 2)
    delay = Chain(ConsecutiveDelay(up_delay_s=20.0, down_delay_s=60.0))
    assert delay(step(0, 2, 5)) == 2
    assert delay(step(10, 2, 5)) == 2
    assert delay(step(20, 2, 5)) == 5
    assert delay(step(30, 5, 1)) == 5
    assert delay(step(40, 5, 6)) == 5  # direction changed: the clock restarts
    assert delay(step(60, 5, 6)) == 6
