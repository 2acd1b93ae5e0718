"""The queueing model's scalar fast paths (issue #13 item 3) give the vectorised answers, bit for
bit, so ``cost_aware`` and ``oracle`` decide exactly as before:

- :func:`cheapest_config` (a scalar search per option that stops at the first feasible replica
  count, cached per option) equals :func:`_cheapest_config_reference` (the whole vectorised
  table, as it was) on random loads, SLOs, options, bounds and batching settings, edge cases
  (no load, nothing feasible, ties in price) included;
- one row of the scalar search equals that row of :func:`latency_table_ms`, element by element;
- :func:`predicted_latency_ms` equals the last element of its vectorised table;
- :func:`slo_attainment`'s scalar Erlang C equals ``float(erlang_c(c, a))``;
- the chi-squared tail of :func:`dispersion_index` equals ``scipy.stats.chi2.sf``, and
  :func:`arrival_scv_estimate` (which computes it only when it decides) equals the rule on the
  full :class:`Dispersion`;
- end to end, the decisions of ``cost_aware`` and ``oracle`` (counts, sizes and every reported
  figure) equal those computed with the vectorised functions throughout.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simscale.strategies import burstiness, cost_aware, oracle, queueing
from simscale.strategies.base import SizeOption
from simscale.strategies.burstiness import _chi2_sf
from simscale.strategies.queueing import (
    MAX_ARRIVAL_SCV,
    _cheapest_config_reference,
    _erlang_c_one,
    _Reference,
    _Row,
    arrival_scv_estimate,
    batch_limits,
    cheapest_config,
    dispersion_index,
    erlang_c,
    latency_table_ms,
    predicted_latency_ms,
)


def _same(a: Any, b: Any) -> bool:
    """Equal in every bit and type: ``repr`` round-trips floats and tells -0.0, 1 and 1.0
    apart (and NaN equals NaN)."""
    return type(a) is type(b) and repr(a) == repr(b)


prices = st.sampled_from([0.0, 0.05, 0.1, 0.1, 0.2, 0.4, 1.0])
options_st = st.builds(
    lambda threads, alpha, beta, factor, scv, batch, price: SizeOption(
        "cpu", threads, alpha, beta, factor, scv, batch, price, 2.0),
    st.integers(1, 8),
    st.floats(0.0, 300.0), st.floats(0.0, 120.0), st.floats(0.5, 2.0),
    st.one_of(st.just(0.0), st.floats(0.0, 3.0), st.just(1e-10)),
    st.integers(1, 16), prices)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the reference
@settings(max_examples=1500)
@given(rate=st.one_of(st.floats(0.0, 3000.0), st.just(0.0), st.floats(1e-6, 1.0)),
       slo_ms=st.one_of(st.floats(1.0, 5000.0), st.sampled_from([100, 1000, 250.0])),
       options=st.lists(options_st, min_size=1, max_size=4),
       percentile=st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999]),
       min_replicas=st.integers(0, 12), max_replicas=st.integers(1, 60),
       tune=st.booleans(), batch_size=st.integers(0, 16),
       arrival_scv=st.one_of(st.just(1.0), st.floats(1.0, MAX_ARRIVAL_SCV)),
       kind=st.sampled_from([float, np.float64]))
def test_cheapest_config_is_the_vectorised_one(rate: float, slo_ms: float, options: list,
                                               percentile: float, min_replicas: int,
                                               max_replicas: int, tune: bool, batch_size: int,
                                               arrival_scv: float, kind: Any) -> None:
    rate = kind(rate)  # the strategies' planned rates are numpy floats now and then
    kwargs = {"percentile": percentile, "min_replicas": min_replicas,
              "max_replicas": max_replicas, "tune_batch_size": tune, "batch_size": batch_size,
              "arrival_scv": arrival_scv}
    try:
        want = _cheapest_config_reference(rate, slo_ms, tuple(options), **kwargs)
    except (AssertionError, IndexError) as err:  # no row at all: the same failure
        with pytest.raises(type(err)):
            cheapest_config(rate, slo_ms, tuple(options), **kwargs)
        return
    got = cheapest_config(rate, slo_ms, tuple(options), **kwargs)
    assert _same(got, want)
    assert _same(cheapest_config(rate, slo_ms, tuple(options), **kwargs), want)  # cached


def test_cheapest_config_takes_the_scalar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """On ordinary inputs the vectorised computation is not run at all (and the answers are
    those above); with no load or nothing feasible it is."""
    opts = (SizeOption("cpu", 1, 0.9, 77.1, 0.996, 0.0007, 4, 0.1, 2.1),
            SizeOption("cpu", 2, 0.27, 32.0, 1.003, 0.0002, 4, 0.2, 2.1))
    calls = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return _cheapest_config_reference(*args, **kwargs)

    monkeypatch.setattr(queueing, "_cheapest_config_reference", spy)
    for rate in (0.3, 37.5, 64.0, 210.25, 480.0):
        for scv in (1.0, 2.0, 16.0):
            cheapest_config(rate, 1000.0, opts, max_replicas=40, batch_size=4,
                            arrival_scv=scv)
    assert calls == []
    cheapest_config(0.0, 1000.0, opts, max_replicas=40)
    assert not cheapest_config(1e6, 1000.0, opts, max_replicas=3).feasible
    assert len(calls) == 2


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the reference
@settings(max_examples=600)
@given(option=options_st, rate=st.one_of(st.floats(0.0, 3000.0), st.floats(0.0, 1.0)),
       c_max=st.integers(1, 60), percentile=st.sampled_from([0.5, 0.95, 0.99]),
       arrival_scv=st.one_of(st.just(1.0), st.floats(1.0, MAX_ARRIVAL_SCV)),
       batch=st.integers(1, 16))
def test_scalar_row_is_the_table_row(option: SizeOption, rate: float, c_max: int,
                                     percentile: float, arrival_scv: float, batch: int) -> None:
    try:
        row = _Row(rate, option.mean_service_s(batch), batch, option.scv, percentile,
                   arrival_scv)
        got = [row.at(c) for c in range(1, c_max + 1)]
    except _Reference:
        assume(False)
    want = latency_table_ms(option, rate, c_max, percentile, [batch], accumulate=False,
                            arrival_scv=arrival_scv)[0]
    assert np.asarray(got).tobytes() == want.tobytes()
    # grown in steps, stopping at the first count within an SLO: the same numbers
    slo = float(want[c_max // 2])
    stepped = _Row(rate, option.mean_service_s(batch), batch, option.scv, percentile,
                   arrival_scv)
    first = stepped.first_within(slo, c_max + 1)
    ok = np.nonzero(want <= slo)[0]
    assert first == (int(ok[0]) + 1 if len(ok) else None)
    assert [stepped.at(c) for c in range(1, c_max + 1)] == got


@pytest.mark.parametrize("scv,arrival_scv", [(0.0007, 1.0), (1.0, 1.0), (0.3, 6.7)])
def test_scalar_rows_dense(scv: float, arrival_scv: float) -> None:
    """Many loads, every count: the rows agree in every bit (``math.log`` instead of
    ``numpy.log`` differs in the last bit for about one argument in 500, and fails here)."""
    option = SizeOption("cpu", 1, 0.9, 77.1, 0.996, scv, 4, 0.1, 2.0)
    rates = np.linspace(0.5, 520.0, 1500)
    for b in (1, 2, 4):
        for rate in rates.tolist():
            row = _Row(rate, option.mean_service_s(b), b, scv, 0.95, arrival_scv)
            want = latency_table_ms(option, rate, 60, 0.95, [b], accumulate=False,
                                    arrival_scv=arrival_scv)[0]
            assert np.asarray([row.at(c) for c in range(1, 61)]).tobytes() == want.tobytes()


def _predicted_reference(option: SizeOption, rate: float, replicas: int, batch_size: int,
                         percentile: float, arrival_scv: float = 1.0) -> float:
    """:func:`predicted_latency_ms` as it was: the whole table."""
    if replicas <= 0:
        return 0.0 if rate <= 0 else math.inf
    sizes = [b for b in batch_limits(batch_size) if b <= batch_size]
    table = latency_table_ms(option, rate, replicas, percentile, sizes,
                             arrival_scv=arrival_scv)
    return float(table[-1, replicas - 1])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the reference
@settings(max_examples=800)
@given(option=options_st, rate=st.one_of(st.floats(0.0, 3000.0), st.just(0.0)),
       replicas=st.integers(0, 60), batch_size=st.integers(1, 16),
       percentile=st.sampled_from([0.5, 0.95, 0.99]),
       arrival_scv=st.one_of(st.just(1.0), st.floats(1.0, MAX_ARRIVAL_SCV)))
def test_predicted_latency_is_the_table_element(option: SizeOption, rate: float, replicas: int,
                                                batch_size: int, percentile: float,
                                                arrival_scv: float) -> None:
    got = predicted_latency_ms(option, rate, replicas, batch_size, percentile, arrival_scv)
    want = _predicted_reference(option, rate, replicas, batch_size, percentile, arrival_scv)
    assert _same(got, want)


@settings(max_examples=800)
@given(c=st.integers(1, 80), a=st.one_of(st.floats(0.0, 80.0), st.floats(0.0, 1e-3)),
       kind=st.sampled_from([float, np.float64]))
def test_scalar_erlang_c_is_the_array_one(c: int, a: float, kind: Any) -> None:
    assert _same(_erlang_c_one(c, kind(a)), float(erlang_c(c, kind(a))))


@settings(max_examples=500)
@given(statistic=st.one_of(st.floats(0.0, 1e5), st.just(0.0), st.just(math.inf),
                           st.just(math.nan)),
       dof=st.integers(0, 2000))
def test_chi2_tail_is_scipy_stats(statistic: float, dof: int) -> None:
    from scipy import stats

    want = float(stats.chi2.sf(statistic, dof))
    assert _same(_chi2_sf(statistic, dof), want)


@settings(max_examples=400)
@given(counts=st.lists(st.integers(0, 400), min_size=0, max_size=240),
       block_s=st.integers(2, 60), scale_s=st.integers(1, 5),
       significance=st.sampled_from([1e-4, 0.01, 0.5]), burst=st.booleans())
def test_arrival_scv_estimate_is_the_full_rule(counts: list, block_s: int, scale_s: int,
                                               significance: float, burst: bool) -> None:
    from scipy import stats

    x = np.asarray(counts, dtype=float)
    if burst:
        x[::7] *= 5
    d = dispersion_index(x, block_s, scale_s)
    if d.dof:
        assert _same(d.p_value, float(stats.chi2.sf(d.statistic, d.dof)))
    want = 1.0 if (d.dof == 0 or d.p_value >= significance or d.index <= 1.0) else min(
        d.index, MAX_ARRIVAL_SCV)
    assert _same(arrival_scv_estimate(x, block_s, significance, scale_s), want)


# ---------------------------------------------------------------------------- end to end
def _vectorised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fast path replaced by the computation it stands for."""
    monkeypatch.setattr(cost_aware, "cheapest_config", _cheapest_config_reference)
    monkeypatch.setattr(oracle, "cheapest_config", _cheapest_config_reference)
    monkeypatch.setattr(cost_aware, "predicted_latency_ms", _predicted_reference)
    monkeypatch.setattr(queueing, "_erlang_c_one", lambda c, a: float(erlang_c(c, a)))

    def p_value(statistic: float, dof: int) -> float:
        from scipy import stats

        return float(stats.chi2.sf(statistic, dof))

    monkeypatch.setattr(burstiness, "_chi2_sf", p_value)


def _scenario(workload: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "fast", "duration_s": 900, "seed": 5,
        "services": [{"name": "s", "model": "m", "slo_ms": 300,
                      "service_time": {"dist": "gamma", "mean_ms": 40, "cv": 0.8},
                      "batching": {"max_batch_size": 4, "max_wait_ms": 5},
                      "cold_start_s": 5, "cost_per_replica_hour": 0.1,
                      "replicas": {"initial": 1, "min": 1, "max": 16},
                      "workload": workload}],
    }


FLASH = {"kind": "flash_crowd", "base_rps": 10, "peak_rps": 120, "start_s": 200, "ramp_s": 30,
         "hold_s": 200, "decay_s": 150}
BURSTY = {"kind": "gamma", "rate_rps": 60, "cv": 3.0}


@pytest.mark.parametrize("name,params,workload", [
    ("cost_aware", {"sync_period_s": 5}, FLASH),
    ("cost_aware", {"sync_period_s": 5}, BURSTY),
    ("cost_aware", {"sync_period_s": 5, "tune_batch_size": False,
                    "forecaster": "last_value"}, FLASH),
    ("oracle", {"sync_period_s": 5}, FLASH),
    ("oracle", {"sync_period_s": 5}, BURSTY),
])
def test_decisions_are_the_vectorised_ones(monkeypatch: pytest.MonkeyPatch, name: str,
                                           params: dict[str, Any],
                                           workload: dict[str, Any], decisions_of: Any) -> None:
    fast = decisions_of(_scenario(workload), name, params)
    _vectorised(monkeypatch)
    slow = decisions_of(_scenario(workload), name, params)
    assert len(fast) > 100
    assert fast == slow  # replicas, sizes, batching limit and every info figure
    if workload is BURSTY:  # the G/G/c path was exercised
        assert any(d.info["arrival_scv"] > 1.0 for d in fast)


@settings(max_examples=400)
@given(mean_s=st.floats(1e-4, 5.0), scv=st.floats(1e-6, 20.0), p=st.floats(0.0, 1.0),
       xs=st.lists(st.floats(-1.0, 50.0), min_size=1, max_size=8))
def test_gamma_quantile_and_cdf_are_scipy_stats_bit_for_bit(mean_s: float, scv: float, p: float,
                                                            xs: list[float]) -> None:
    """The service-time quantile and CDF come from scipy.special (no scipy.stats import) and
    equal scipy.stats.gamma's ppf and cdf exactly; exponential service times (SCV 1) use the
    closed forms, equal to a few units in the last place."""
    from scipy import stats

    queueing.service_quantile_s.cache_clear()
    want = float(stats.gamma.ppf(p, a=1.0 / scv, scale=mean_s * scv))
    got = queueing.service_quantile_s(mean_s, scv, p)
    x = np.asarray([0.0, *xs])
    cdf_want = stats.gamma.cdf(x, a=1.0 / scv, scale=mean_s * scv)
    if scv == 1.0:
        assert got == pytest.approx(want, rel=1e-13, abs=0.0)
        np.testing.assert_allclose(queueing._service_cdf(x, mean_s, scv), cdf_want,
                                   rtol=1e-13, atol=0.0)
        return
    assert got == want or (math.isnan(got) and math.isnan(want))
    np.testing.assert_array_equal(queueing._service_cdf(x, mean_s, scv), cdf_want)


@pytest.mark.parametrize("p", [0.0, 1e-12, 0.5, 0.95, 0.99, 1.0 - 1e-12, 1.0])
def test_exponential_quantile_and_cdf_closed_forms(p: float) -> None:
    """SCV 1 (the hypothesis test above rarely draws exactly 1.0): the closed forms against
    scipy.stats.expon, ends included (quantile 0 at p = 0, infinite at p = 1)."""
    from scipy import stats

    queueing.service_quantile_s.cache_clear()
    got = queueing.service_quantile_s(0.25, 1.0, p)
    want = float(stats.expon.ppf(p, scale=0.25))
    assert got == pytest.approx(want, rel=1e-13, abs=0.0)
    x = np.array([-1.0, 0.0, 1e-9, 0.1, 0.25, 3.0, 1e3])
    np.testing.assert_allclose(queueing._service_cdf(x, 0.25, 1.0),
                               stats.expon.cdf(x, scale=0.25), rtol=1e-13, atol=0.0)
