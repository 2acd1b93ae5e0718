"""Burstiness in the queueing models (issue 15, item 5).

- The arrival-SCV estimator (:func:`~simscale.strategies.queueing.dispersion_index`,
  :func:`~simscale.strategies.queueing.arrival_scv_estimate`) on processes whose answer is
  known: Poisson (index 1, Poisson kept exactly) and gamma renewal streams with a known CV
  (index ``CV**2`` up to the known ``O(1 / (rate T))`` renewal correction), with bounds from the
  estimates' own spread over independent replications (fixed seeds: deterministic).
- The G/G/c model: exactly the M/M/c / M/G/c model at arrival SCV 1; Allen-Cunneen's mean wait
  within its stated tolerance of a plain G/G/c simulation at arrival SCV 4; the GI/M/c delay
  probability (:func:`~simscale.strategies.queueing.gim_c_delay`) Erlang C at SCV 1 and
  ``sigma`` for one server; its delay probability and wait tail against G/G/c simulations at
  SCV 4 and 25 (CV 5), where Allen-Cunneen's Erlang C is many times too small.
- The shipped ``bursty_gamma`` scenario: ``cost_aware`` sees the burstiness and predicts the SLO
  attainment it achieves far closer than a Poisson model does, within 3 points on average over
  10 replications on both services (gamma renewal arrivals with CV 5, and an MMPP).

Nothing here depends on the machine's speed: every figure comes from seeded draws.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import simscale
from simscale.simulator.scenario import scenarios_dir
from simscale.strategies.base import SizeOption
from simscale.strategies.queueing import (
    allen_cunneen_mean_wait_s,
    arrival_scv_estimate,
    bucket_scv,
    cheapest_config,
    dispersion_index,
    erlang_c,
    gim_c_delay,
    mmc_mean_wait_s,
    slo_attainment,
    wait_quantile_s,
)

REPLICATIONS = 40


def per_second_counts(arrivals_s: np.ndarray, duration_s: int) -> np.ndarray:
    """Arrivals in each whole second ``[k, k + 1)`` of ``[0, duration_s)``."""
    return np.bincount(arrivals_s.astype(np.int64), minlength=duration_s)[:duration_s]


def gamma_renewal(rate_rps: float, cv: float, duration_s: int, rng: np.random.Generator
                  ) -> np.ndarray:
    """A gamma renewal stream started in equilibrium (as the ``gamma`` workload kind)."""
    cv2 = cv * cv
    shape, scale = 1.0 / cv2, cv2 / rate_rps
    first = rng.random() * rng.gamma(shape + 1.0, scale)
    n = int(rate_rps * duration_s + 8 * cv * math.sqrt(rate_rps * duration_s) + 100)
    out = first + np.concatenate(([0.0], np.cumsum(rng.gamma(shape, scale, n))))
    assert out[-1] >= duration_s
    return out[out < duration_s]


def mean_and_half_width(values: list[float]) -> tuple[float, float]:
    """Mean and a 4-standard-error half-width (about 1 in 16,000 for a normal mean)."""
    v = np.asarray(values)
    return float(v.mean()), 4.0 * float(v.std(ddof=1)) / math.sqrt(len(v))


# ----------------------------------------------------------------------------------------------
# the estimator


def test_poisson_index_is_one_and_poisson_is_kept() -> None:
    rng = np.random.default_rng(101)
    indices, kept = [], 0
    for _ in range(REPLICATIONS):
        t = np.cumsum(rng.exponential(1 / 20.0, 20 * 200))
        counts = per_second_counts(t[t < 120], 120)
        indices.append(dispersion_index(counts, 30, 3).index)
        kept += arrival_scv_estimate(counts, 30, 1e-4, 3) == 1.0
    mean, half = mean_and_half_width(indices)
    assert abs(mean - 1.0) <= half, (mean, half)
    # Fisher's test at 1e-4: a Poisson stream is taken for bursty 1 time in 10,000
    assert kept == REPLICATIONS


def test_poisson_with_a_linear_trend_is_not_bursty() -> None:
    """A ramp (the rate doubles over the window) is a rate change, not burstiness."""
    rng = np.random.default_rng(7)
    rate = np.linspace(50.0, 100.0, 120)
    indices = []
    for _ in range(REPLICATIONS):
        counts = rng.poisson(rate)
        indices.append(dispersion_index(counts, 30, 3).index)
        assert arrival_scv_estimate(counts, 30, 1e-4, 3) == 1.0
    mean, half = mean_and_half_width(indices)
    assert abs(mean - 1.0) <= half + 0.02, (mean, half)  # the trend is linear in 3 s bins


def test_dispersion_statistic_is_chi_squared_under_poisson() -> None:
    """Fisher's statistic has mean ``dof`` and variance ``2 dof`` for Poisson counts."""
    rng = np.random.default_rng(3)
    stats_ = [dispersion_index(rng.poisson(30.0, 120), 30, 3) for _ in range(400)]
    dof = stats_[0].dof
    assert dof == 4 * (10 - 2)
    values = np.array([d.statistic for d in stats_])
    assert abs(values.mean() - dof) <= 4 * math.sqrt(2 * dof / len(values))
    p_values = np.array([d.p_value for d in stats_])
    assert 0.05 <= float(np.mean(p_values < 0.1)) <= 0.15  # about uniform


@pytest.mark.parametrize("cv", [2.0, 5.0])
def test_gamma_renewal_index_is_cv_squared(cv: float) -> None:
    """For a stationary renewal stream ``Var N(T) = ca2 rate T + b + o(1)`` with, for gamma
    gaps of shape ``k = 1 / cv**2``, ``b = (1 - 1 / k**2) / 12`` (Cox, *Renewal Theory*, 1962,
    §4.5), and adjacent bins' counts have covariance ``-b / 2`` (from ``Var N(2T)``). The
    residuals about a block's least-squares line over ``m`` bins then have expected sum of
    squares ``(m - 2) (ca2 rate T + b) + O(b)``, so the index is ``ca2 + b / (rate T) (1 +
    O(1 / m))``: bounded here by ``1.5 |b| / (rate T)`` (0.05% of ``cv**2`` at cv 2, 0.1% at
    cv 5, with ``rate T = 3000``). The estimates' own spread over 200 seeded streams bounds
    the rest."""
    rate, scale_s, duration = 1000.0, 3, 120
    rng = np.random.default_rng(int(cv * 10))
    indices = []
    for _ in range(5 * REPLICATIONS):
        counts = per_second_counts(gamma_renewal(rate, cv, duration, rng), duration)
        indices.append(dispersion_index(counts, 30, scale_s).index)
    k = 1.0 / cv**2
    b = (1.0 - 1.0 / k**2) / 12.0
    bias = 1.5 * abs(b) / (rate * scale_s)
    mean, half = mean_and_half_width(indices)
    assert abs(mean - cv**2) <= half + bias, (mean, half, bias)
    assert half < 0.1 * cv**2  # the bound is informative


def test_gamma_renewal_is_detected_and_bucketed() -> None:
    rng = np.random.default_rng(5)
    counts = per_second_counts(gamma_renewal(8.0, 5.0, 120, rng), 120)
    scv = arrival_scv_estimate(counts, 30, 1e-4, 3)
    assert scv > 4.0
    b = bucket_scv(scv)
    assert abs(math.log2(b) - math.log2(scv)) <= 1 / 8 + 1e-12  # half a quarter-doubling
    assert bucket_scv(1.0) == 1.0 and bucket_scv(0.5) == 1.0 and bucket_scv(1e9) == 400.0


def test_too_little_data_is_poisson() -> None:
    assert arrival_scv_estimate(np.array([3.0, 40.0, 0.0]), 30, 1e-4, 3) == 1.0
    assert arrival_scv_estimate(np.zeros(120), 30, 1e-4, 3) == 1.0


# ----------------------------------------------------------------------------------------------
# the G/G/c model


def test_ggc_reduces_exactly_to_mmc_and_mgc_at_scv_one() -> None:
    c = np.arange(1, 9)
    for lam, s, scv in [(3.0, 0.5, 1.0), (10.0, 0.3, 0.2), (0.5, 1.0, 0.0)]:
        assert np.array_equal(allen_cunneen_mean_wait_s(c, lam, s, scv, 1.0),
                              allen_cunneen_mean_wait_s(c, lam, s, scv))
        assert np.array_equal(wait_quantile_s(c, lam, s, scv, 0.95, 1.0),
                              wait_quantile_s(c, lam, s, scv, 0.95))
    # M/M/c: Erlang C / (c mu - lam)
    c_, lam, s = 3, 2.4, 1.0
    assert float(mmc_mean_wait_s(c_, lam, s)) == pytest.approx(
        float(erlang_c(c_, lam * s)) / (c_ / s - lam), rel=1e-12)
    assert slo_attainment(3, 20.0, 0.2, 0.3, 0.5, 4) == slo_attainment(
        3, 20.0, 0.2, 0.3, 0.5, 4, arrival_scv=1.0)
    option = SizeOption("cpu", 1, 1.0, 77.0, 1.0, 0.01, 4, 0.1, 2.0)
    assert cheapest_config(12.0, 500.0, (option,), max_replicas=8) == cheapest_config(
        12.0, 500.0, (option,), max_replicas=8, arrival_scv=1.0)


def test_burstier_arrivals_need_more_replicas() -> None:
    option = SizeOption("cpu", 1, 1.0, 77.0, 1.0, 0.01, 4, 0.1, 2.0)
    smooth = cheapest_config(12.0, 1000.0, (option,), max_replicas=12)
    bursty = cheapest_config(12.0, 1000.0, (option,), max_replicas=12, arrival_scv=16.0)
    assert bursty.replicas > smooth.replicas
    assert slo_attainment(2, 10.0, 0.3, 0.0, 1.0, 4, arrival_scv=16.0) < slo_attainment(
        2, 10.0, 0.3, 0.0, 1.0, 4)


def simulate_ggc_waits(c: int, lam: float, mean_s: float, ca2: float, cs2: float, n: int,
                       seed: int) -> np.ndarray:
    """Waits in queue of a FCFS G/G/c queue (gamma gaps and gamma service times)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.gamma(1 / ca2, ca2 / lam, n))
    service = rng.gamma(1 / cs2, cs2 * mean_s, n)
    free = [0.0] * c
    waits = np.empty(n)
    for i in range(n):
        j = min(range(c), key=free.__getitem__)
        start = max(arrivals[i], free[j])
        waits[i] = start - arrivals[i]
        free[j] = start + service[i]
    return waits


@pytest.mark.parametrize("c,rho", [(1, 0.8), (2, 0.8), (4, 0.85)])
def test_allen_cunneen_agrees_with_a_ggc_simulation_at_scv_4(c: int, rho: float) -> None:
    """Allen-Cunneen's mean wait at arrival SCV 4 (gamma gaps, exponential service) against
    300,000 simulated customers: the 95% batch-means interval (30 batches, first 5% dropped),
    widened by 15% of the simulated mean, holds the formula. 15% is the approximation's
    documented accuracy for GI/G/c at this load (Whitt, Production and Operations Management
    2(2), 1993; Tanner, *Practical Queueing Analysis*, 1995); it reads about 5-11% low here."""
    lam = rho * c
    waits = simulate_ggc_waits(c, lam, 1.0, 4.0, 1.0, 300_000, seed=c)[15_000:]
    batches = waits[: len(waits) // 30 * 30].reshape(30, -1).mean(axis=1)
    mean = float(batches.mean())
    half = 2.045 * float(batches.std(ddof=1)) / math.sqrt(30)  # t(29), 95%
    predicted = float(allen_cunneen_mean_wait_s(c, lam, 1.0, 1.0, 4.0))
    assert abs(predicted - mean) <= 0.15 * mean + half, (predicted, mean, half)
    # and the Poisson model would be far off: burstiness matters
    assert float(allen_cunneen_mean_wait_s(c, lam, 1.0, 1.0, 1.0)) < 0.5 * mean


@pytest.mark.parametrize("c", [1, 2, 3, 5, 8, 20, 50, 120])
def test_gim_c_is_erlang_c_at_scv_one_and_sigma_for_one_server(c: int) -> None:
    """Takacs' GI/M/c delay probability at gamma SCV 1 (Poisson) is Erlang C and ``sigma`` is
    the utilisation, for every load, small probabilities included (the log-sum keeps them); at
    SCV 1 +- 1e-9 it moves by less than 1e-6 relative; for one server it is ``sigma`` itself."""
    for rho in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98):
        a = rho * c
        want = float(erlang_c(c, a))
        prob_wait, one_minus_sigma = gim_c_delay(c, a, 1.0)
        assert prob_wait == pytest.approx(want, rel=1e-9, abs=1e-300)
        assert one_minus_sigma == pytest.approx(1.0 - rho, rel=1e-12)
        for ca2 in (1.0 - 1e-9, 1.0 + 1e-9):
            assert gim_c_delay(c, a, ca2)[0] == pytest.approx(want, rel=1e-6, abs=1e-300)
        for ca2 in (0.5, 4.0, 25.0, 400.0):
            p_w, x = gim_c_delay(c, a, ca2)
            assert 0.0 <= p_w <= 1.0 and 0.0 < x < 1.0
            if c == 1:
                assert p_w == pytest.approx(1.0 - x, rel=1e-12)
            # GI/M/1's sigma = A*(mu (1 - sigma)) for the gamma transform
            assert 1.0 - x == pytest.approx((1.0 + x * ca2 / rho) ** (-1.0 / ca2), rel=1e-12)
        # burstier arrivals wait more often
        probs = [gim_c_delay(c, a, ca2)[0] for ca2 in (0.5, 1.0, 4.0, 25.0, 400.0)]
        assert probs == sorted(probs)


def test_gim_c_holds_at_the_edges_of_its_domain() -> None:
    """Loads within rounding of ``c`` (Newton on ``1 - A* - x`` computed with ``expm1``: ``x``
    stays positive and exact), loads that underflow, NaNs, deterministic gaps (SCV 0), and
    the solver and the attainment at such loads: answers, not exceptions."""
    # GI/M/1: 1 - x = A*(x / rho) to the last digits even 1e-14 from saturation
    for eps in (1e-6, 1e-10, 1e-14):
        rho = 1.0 - eps
        prob_wait, x = gim_c_delay(1, rho, 400.0)
        assert 0.0 < x < 1e-8 and prob_wait == pytest.approx(1.0 - x, rel=1e-15)
        assert 1.0 - x == pytest.approx((1.0 + x * 400.0 / rho) ** (-1.0 / 400.0), abs=1e-15)
        assert x == pytest.approx(2.0 * eps / 401.0, rel=1e-3)  # heavy traffic: 2(1-rho)/(1+ca2)
    # 100 * 0.29 = 28.999999999999996: a load one rounding below 29 servers
    prob_wait, x = gim_c_delay(29, 100 * 0.29, 4.0)
    assert prob_wait == pytest.approx(1.0) and 0.0 <= x < 1e-12
    assert 0.0 <= slo_attainment(29, 100.0, 0.29, 1.0, 2.0, arrival_scv=4.0) < 1e-6
    option = SizeOption("cpu", 1, 290.0, 0.0, 1.0, 1.0, 1, 1.0, 10.0)
    assert cheapest_config(100.0, 5000.0, (option,), max_replicas=40,
                           arrival_scv=4.0).replicas >= cheapest_config(
        100.0, 5000.0, (option,), max_replicas=40).replicas
    # no load, or one that underflows: nobody waits (the Poisson answer)
    assert gim_c_delay(3, 0.0, 4.0) == (0.0, 1.0) and gim_c_delay(3, 5e-324, 4.0)[0] == 0.0
    tiny = SizeOption("cpu", 1, 100.0, 0.0, 1.0, 1.0, 1, 0.1, 2.0)
    assert cheapest_config(5e-323, 500.0, (tiny,), max_replicas=5, arrival_scv=4.0) == \
        cheapest_config(5e-323, 500.0, (tiny,), max_replicas=5)
    # NaN in, NaN out, as the Poisson path
    assert all(math.isnan(v) for v in gim_c_delay(3, math.nan, 4.0))
    assert np.isnan(wait_quantile_s([1, 2], 1.0, math.nan, 1.0, 0.95, 4.0)).all()
    assert math.isnan(slo_attainment(3, math.nan, 0.2, 1.0, 1.0, arrival_scv=4.0))
    assert not cheapest_config(math.nan, 500.0, (tiny,), arrival_scv=4.0).feasible
    # D/M/1: sigma = exp(-(1 - sigma) / rho) (rho = 0.5: 0.2032); D/M/c waits less than M/M/c
    prob_wait, x = gim_c_delay(1, 0.5, 0.0)
    assert 1.0 - x == pytest.approx(math.exp(-2.0 * x), rel=1e-12)
    assert prob_wait == pytest.approx(0.2031878699799801, rel=1e-9)
    assert gim_c_delay(3, 1.5, 0.0)[0] < float(erlang_c(3, 1.5))
    # a float count that is whole is that count; anything else is refused in one line
    assert slo_attainment(3.0, 5.0, 0.2, 1.0, 1.0, arrival_scv=4.0) == slo_attainment(
        3, 5.0, 0.2, 1.0, 1.0, arrival_scv=4.0)
    for bad in [(2.5, 1.0, 4.0), (0, 0.5, 4.0), (3, 1.0, -1.0), (3, 1.0, math.inf),
                (3, 3.0, 4.0), (3, -1.0, 4.0)]:
        with pytest.raises(ValueError, match="gim_c_delay needs"):
            gim_c_delay(*bad)


@pytest.mark.parametrize("ca2,cs2,c,rho", [(25.0, 1.0, 4, 0.3), (25.0, 0.05, 2, 0.5),
                                           (25.0, 0.05, 8, 0.5), (4.0, 1.0, 4, 0.5),
                                           (4.0, 0.3, 3, 0.7)])
def test_bursty_model_agrees_with_a_ggc_simulation(ca2: float, cs2: float, c: int,
                                                   rho: float) -> None:
    """The bursty model's delay probability and its wait quantiles (p90, p95, p99) against a
    FCFS G/G/c simulation with gamma gaps and gamma service (300,000 customers, first 5%
    dropped): for each, the simulated fraction (of waits > 0, of waits above the predicted
    quantile) has a 95% batch-means interval (30 batches) which, widened by 10% of the target
    (GI/M/c is exact for exponential service, an approximation for ``cs2 < 1``, within a few
    per cent of a simulation of 2 million customers at these points), holds the model's
    figure. The simulated delay probability is four times closer to it than to Allen-Cunneen's
    (Erlang C)."""
    lam = rho * c
    waits = simulate_ggc_waits(c, lam, 1.0, ca2, cs2, 300_000, seed=c + int(ca2))[15_000:]
    n = len(waits) // 30 * 30

    def holds(indicator: np.ndarray, target: float) -> None:
        batches = indicator[:n].reshape(30, -1).mean(axis=1)
        mean = float(batches.mean())
        half = 2.045 * float(batches.std(ddof=1)) / math.sqrt(30)  # t(29), 95%
        assert abs(mean - target) <= half + 0.10 * target, (mean, target, half)

    prob_wait, _ = gim_c_delay(c, lam, ca2)
    holds((waits > 1e-12).astype(float), prob_wait)
    for p in (0.90, 0.95, 0.99):
        q = float(wait_quantile_s(c, lam, 1.0, cs2, p, ca2))
        holds((waits > q).astype(float), 1.0 - p)
    simulated = float(np.mean(waits > 1e-12))
    assert abs(simulated - prob_wait) <= abs(simulated - float(erlang_c(c, lam))) / 4


# ----------------------------------------------------------------------------------------------
# predicted against achieved on the bursty scenario


def _bursty_runs() -> dict[tuple[str, str], dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = simscale.simulate(scenarios_dir() / "bursty_gamma.yaml")
    return {(r["label"], r["service"]): r for r in result.summary["runs"]}


def test_cost_aware_sees_the_burstiness_and_predicts_far_closer_than_poisson() -> None:
    """On both bursty services the G/G/c prediction is far closer to what cost_aware achieves
    than the Poisson one is to what it achieves; on the MMPP service within 3 points."""
    runs = _bursty_runs()
    for service in ("resnet50_gamma", "resnet50_mmpp"):
        run = runs[("cost_aware", service)]
        gap = abs(run["info"]["predicted_slo_attainment"] - run["slo_attainment"])
        assert run["info"]["arrival_scv"] > 1.0  # the burstiness was seen
        poisson = runs[("cost_aware_poisson", service)]
        poisson_gap = poisson["info"]["predicted_slo_attainment"] - poisson["slo_attainment"]
        # assuming Poisson arrivals promises far more than it achieves
        assert poisson_gap > 0.2
        assert gap < poisson_gap / 4, (service, gap, poisson_gap)
        assert "predicted_slo_attainment" in runs[("oracle", service)]["info"]
    mmpp = runs[("cost_aware", "resnet50_mmpp")]
    assert abs(mmpp["info"]["predicted_slo_attainment"] - mmpp["slo_attainment"]) <= 0.03


def test_cost_aware_predicts_within_3_points_on_average_on_both_bursty_services() -> None:
    """Over 10 replications of ``bursty_gamma`` (seeds 11-20, fixed draws), cost_aware's
    predicted SLO attainment is within 3 points of what it achieves on average on both
    services (gamma CV 5: +1.5 points, MMPP: -0.6 when written; Allen-Cunneen's model was
    +5.3 on the gamma service), within 5 points in every replication, and within 3 on the
    shipped seed. The mean is what the model can promise: one replication's gap also carries
    that run's sampling noise (10 minutes of CV-5 arrivals)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = simscale.simulate(scenarios_dir() / "bursty_gamma.yaml",
                                   strategies=["cost_aware"], replications=10)
    for service in ("resnet50_gamma", "resnet50_mmpp"):
        gaps = [r["info"]["predicted_slo_attainment"] - r["slo_attainment"]
                for r in result.summary["runs"] if r["service"] == service]
        assert len(gaps) == 10
        assert abs(float(np.mean(gaps))) <= 0.03, (service, gaps)
        assert max(abs(g) for g in gaps) <= 0.05, (service, gaps)
    run = _bursty_runs()[("cost_aware", "resnet50_gamma")]
    assert abs(run["info"]["predicted_slo_attainment"] - run["slo_attainment"]) <= 0.03
