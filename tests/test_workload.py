"""Arrival generators for the rate patterns, MMPP and sums: exactness in distribution, rates,
expected counts and determinism. Traces are in ``test_workload_trace.py``; speed is measured by
``benchmarks/workload_speed.py``, never asserted here."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from scipy import stats

from simscale.errors import UserError
from simscale.simulator.scenario import Workload
from simscale.simulator.workloads import expected_arrivals, generate_arrivals, rate_function
from simscale.simulator.workloads.mmpp import mmpp_path

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Workload)
P_MIN = 1e-3  # the statistical tests use fixed seeds; a true failure gives p ~ 0


def make(d: dict[str, Any]) -> Any:
    return _ADAPTER.validate_python(d)


def cumulative(w: Any, t: np.ndarray, duration: float, n_grid: int = 400_001) -> np.ndarray:
    """Lambda(t) by the trapezoid rule on a fine grid of rate_function (independent of the
    generator's own closed forms)."""
    grid = np.linspace(0.0, duration, n_grid)
    r = rate_function(w)(grid)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (r[1:] + r[:-1]) * np.diff(grid))))
    return np.interp(t, grid, cum)


PATTERNS: dict[str, tuple[dict[str, Any], float]] = {
    "constant": ({"kind": "constant", "rate_rps": 300.0}, 100.0),
    "step": ({"kind": "step", "steps": [
        {"at_s": 10, "rate_rps": 50}, {"at_s": 40, "rate_rps": 600}, {"at_s": 40, "rate_rps": 150},
        {"at_s": 70, "rate_rps": 0}, {"at_s": 85, "rate_rps": 400}]}, 100.0),
    "ramp": ({"kind": "ramp", "from_rps": 20, "to_rps": 500, "start_s": 10, "end_s": 80}, 100.0),
    "ramp_from_zero": ({"kind": "ramp", "from_rps": 0, "to_rps": 600, "start_s": 0,
                        "end_s": 100}, 100.0),
    "ramp_down_to_zero": ({"kind": "ramp", "from_rps": 500, "to_rps": 0, "start_s": 5,
                           "end_s": 60}, 100.0),
    "flash_crowd": ({"kind": "flash_crowd", "base_rps": 30, "peak_rps": 800, "start_s": 20,
                     "ramp_s": 5, "hold_s": 10, "decay_s": 30}, 100.0),
    "diurnal": ({"kind": "diurnal", "mean_rps": 250, "amplitude": 0.8, "period_s": 37,
                 "phase_s": 5}, 100.0),
    "diurnal_full": ({"kind": "diurnal", "mean_rps": 250, "amplitude": 1.0, "period_s": 300,
                      "phase_s": -40}, 100.0),
    "sum": ({"kind": "sum", "workloads": [
        {"kind": "constant", "rate_rps": 100},
        {"kind": "ramp", "from_rps": 0, "to_rps": 300, "start_s": 30, "end_s": 60},
        {"kind": "diurnal", "mean_rps": 50, "amplitude": 0.5, "period_s": 20}]}, 100.0),
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_counts_in_bins_match_lambda(name: str) -> None:
    """Counts in 50 bins ~ independent Poisson(Lambda_bin): chi-square goodness of fit."""
    spec, duration = PATTERNS[name]
    w = make(spec)
    a = generate_arrivals(w, duration, np.random.default_rng(11))
    assert a.dtype == np.float64 and a.ndim == 1
    assert np.all(np.diff(a) >= 0)
    assert a.size == 0 or (a[0] >= 0 and a[-1] < duration)
    edges = np.linspace(0, duration, 51)
    lam = np.diff([expected_arrivals(w, float(e)) if e > 0 else 0.0 for e in edges])
    obs = np.histogram(a, edges)[0]
    assert np.all(obs[lam == 0] == 0)
    pos = lam > 0
    chi2 = float(np.sum((obs[pos] - lam[pos]) ** 2 / lam[pos]))
    assert stats.chi2.sf(chi2, df=int(pos.sum())) > P_MIN, (chi2, pos.sum())
    total = lam.sum()
    assert abs(a.size - total) < 3.5 * np.sqrt(total), (a.size, total)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_time_change_gives_unit_poisson(name: str) -> None:
    """Lambda(t_i) of an NHPP is a unit-rate Poisson process: the gaps are Exp(1) (KS test).
    This checks the placement of arrivals inside bins, not just the counts."""
    spec, duration = PATTERNS[name]
    w = make(spec)
    a = generate_arrivals(w, duration, np.random.default_rng(5))
    gaps = np.diff(cumulative(w, a, duration))
    assert stats.kstest(gaps, "expon").pvalue > P_MIN


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_expected_arrivals_is_integral_of_rate(name: str) -> None:
    spec, duration = PATTERNS[name]
    w = make(spec)
    for d in (duration / 3, duration):
        num = float(cumulative(w, np.array([d]), d)[0])
        assert expected_arrivals(w, d) == pytest.approx(num, rel=1e-4, abs=1e-6)


def test_dispersion_index_is_one() -> None:
    """Var/mean of the count in a window over 400 independent runs ~ 1 (Poisson)."""
    w = make(PATTERNS["flash_crowd"][0])
    rng = np.random.default_rng(3)
    counts = np.array([np.count_nonzero((a >= 22) & (a < 23))
                       for a in (generate_arrivals(w, 30.0, rng) for _ in range(400))])
    lam = expected_arrivals(w, 23.0) - expected_arrivals(w, 22.0)
    assert counts.mean() == pytest.approx(lam, rel=0.05)
    # var/mean of 400 Poisson counts has sd ~ sqrt(2/399) ~ 0.07
    assert counts.var(ddof=1) / counts.mean() == pytest.approx(1.0, abs=0.25)


def test_constant_rate_interarrivals_are_exponential() -> None:
    w = make({"kind": "constant", "rate_rps": 1000})
    a = generate_arrivals(w, 60.0, np.random.default_rng(0))
    assert abs(a.size - 60_000) < 4 * np.sqrt(60_000)
    assert stats.kstest(np.diff(a), "expon", args=(0, 1 / 1000)).pvalue > P_MIN
    assert stats.kstest(a, "uniform", args=(0, 60.0)).pvalue > P_MIN


def test_rate_function_values() -> None:
    step = rate_function(make(PATTERNS["step"][0]))
    np.testing.assert_allclose(step(np.array([-1, 0, 9.99, 10, 39.9, 40, 69, 70, 85, 1e6])),
                               [0, 0, 0, 50, 50, 150, 150, 0, 400, 400])
    ramp = rate_function(make(PATTERNS["ramp"][0]))
    np.testing.assert_allclose(ramp(np.array([0, 10, 45, 80, 200])), [20, 20, 260, 500, 500])
    fc = rate_function(make(PATTERNS["flash_crowd"][0]))
    np.testing.assert_allclose(fc(np.array([0, 20, 22.5, 25, 35, 50, 65, 99])),
                               [30, 30, 415, 800, 800, 415, 30, 30])
    di = make(PATTERNS["diurnal"][0])
    np.testing.assert_allclose(rate_function(di)(np.array([5, 5 + 37 / 4, 5 + 3 * 37 / 4])),
                               [250, 450, 50])
    assert rate_function(make({"kind": "constant", "rate_rps": 7}))(np.array(3.0)) == 7.0
    total = rate_function(make(PATTERNS["sum"][0]))(np.array([45.0]))
    assert total[0] == pytest.approx(100 + 150 + 50 * (1 + 0.5 * np.sin(2 * np.pi * 45 / 20)))


def test_same_seed_same_arrivals() -> None:
    for spec, duration in PATTERNS.values():
        w = make(spec)
        a = generate_arrivals(w, duration, np.random.default_rng(42))
        b = generate_arrivals(w, duration, np.random.default_rng(42))
        c = generate_arrivals(w, duration, np.random.default_rng(43))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_empty_cases() -> None:
    rng = np.random.default_rng(0)
    w = make({"kind": "constant", "rate_rps": 10})
    assert generate_arrivals(w, 0.0, rng).size == 0
    assert expected_arrivals(w, 0.0) == 0.0
    assert generate_arrivals(make({"kind": "constant", "rate_rps": 0}), 100.0, rng).size == 0
    assert generate_arrivals(make({"kind": "diurnal", "mean_rps": 0, "amplitude": 0.5,
                                   "period_s": 10}), 100.0, rng).size == 0
    late = make({"kind": "step", "steps": [{"at_s": 50, "rate_rps": 100}]})
    assert generate_arrivals(late, 50.0, rng).size == 0
    with pytest.raises(ValueError):
        generate_arrivals(w, -1.0, rng)


def test_tiny_and_huge_durations() -> None:
    rng = np.random.default_rng(1)
    w = make({"kind": "constant", "rate_rps": 1e9})
    a = generate_arrivals(w, 1e-6, rng)
    assert 900 < a.size < 1100 and a[-1] < 1e-6
    slow = make({"kind": "ramp", "from_rps": 0, "to_rps": 1e-3, "start_s": 0, "end_s": 1e7})
    b = generate_arrivals(slow, 1e7, rng)
    assert abs(b.size - 5000) < 5 * np.sqrt(5000) and b[-1] < 1e7


# ------------------------------------------------------------------------------------ MMPP
MMPP = {"kind": "mmpp", "states": [{"rate_rps": 50, "mean_sojourn_s": 2.0},
                                   {"rate_rps": 400, "mean_sojourn_s": 0.5}]}


def test_mmpp_mean_and_overdispersion() -> None:
    w = make(MMPP)
    mean = (50 * 2.0 + 400 * 0.5) / 2.5
    np.testing.assert_allclose(rate_function(w)(np.array([0.0, 10.0])), [mean, mean])
    assert expected_arrivals(w, 2000.0) == pytest.approx(mean * 2000)
    a = generate_arrivals(w, 2000.0, np.random.default_rng(9))
    # asymptotic index of dispersion of a 2-state MMPP: 1 + 2 (r1-r2)^2 ab / ((a+b)^3 mean)
    qa, qb = 1 / 2.0, 1 / 0.5
    idc = 1 + 2 * 350**2 * qa * qb / ((qa + qb) ** 3 * mean)
    sd = np.sqrt(idc * mean * 2000)
    assert abs(a.size - mean * 2000) < 4 * sd
    counts = np.histogram(a, np.arange(0, 2001, 20.0))[0]
    assert counts.var(ddof=1) / counts.mean() > 0.4 * idc  # far from Poisson's 1


def test_mmpp_path_statistics() -> None:
    w = make({"kind": "mmpp", "states": [{"rate_rps": 1, "mean_sojourn_s": 1.0},
                                         {"rate_rps": 2, "mean_sojourn_s": 3.0},
                                         {"rate_rps": 3, "mean_sojourn_s": 0.5}]})
    pwl = mmpp_path(w, 30_000.0, np.random.default_rng(2))
    rates = pwl.start_rps
    stay = np.diff(pwl.knots)
    assert pwl.knots[0] == 0 and pwl.knots[-1] == 30_000.0
    assert np.all(rates[1:] != rates[:-1])  # never jumps to itself
    pi = np.array([1.0, 3.0, 0.5]) / 4.5
    for i, (r, m) in enumerate([(1, 1.0), (2, 3.0), (3, 0.5)]):
        sel = rates[:-1] == r  # the last stay is cut by the horizon
        assert stay[:-1][sel].mean() == pytest.approx(m, rel=0.06)
        assert stay[rates == r].sum() / 30_000 == pytest.approx(pi[i], rel=0.06)
    # next state uniform among the others
    nxt = rates[1:][rates[:-1] == 1]
    assert np.mean(nxt == 2) == pytest.approx(0.5, abs=0.03)
    # stationary start: P(first state) proportional to mean sojourn
    first = [mmpp_path(w, 1.0, np.random.default_rng(s)).start_rps[0]
             for s in range(600)]
    obs = np.array([np.sum(np.array(first) == r) for r in (1, 2, 3)])
    assert stats.chisquare(obs, 600 * pi).pvalue > P_MIN


def test_mmpp_one_state_is_poisson() -> None:
    w = make({"kind": "mmpp", "states": [{"rate_rps": 500, "mean_sojourn_s": 0.01}]})
    a = generate_arrivals(w, 20.0, np.random.default_rng(4))
    assert abs(a.size - 10_000) < 4 * 100
    assert stats.kstest(np.diff(a), "expon", args=(0, 1 / 500)).pvalue > P_MIN


def test_mmpp_many_short_sojourns() -> None:
    """About a million state changes: half the time at 1000/s, half at 0. (How fast this is,
    against numpy drawing as many numbers, is measured by benchmarks/workload_speed.py: speed
    is no test's business on a shared machine.)"""
    w = make({"kind": "mmpp", "states": [{"rate_rps": 1000, "mean_sojourn_s": 0.001},
                                         {"rate_rps": 0, "mean_sojourn_s": 0.001}]})
    a = generate_arrivals(w, 1000.0, np.random.default_rng(0))
    assert a.size == pytest.approx(500_000, rel=0.02)
    assert np.all(np.diff(a) >= 0) and a[0] >= 0 and a[-1] < 1000.0


def test_mmpp_refuses_absurd_switching() -> None:
    w = make({"kind": "mmpp", "states": [{"rate_rps": 1, "mean_sojourn_s": 1e-6},
                                         {"rate_rps": 2, "mean_sojourn_s": 1e-6}]})
    with pytest.raises(UserError, match="mean_sojourn_s"):
        generate_arrivals(w, 1e6, np.random.default_rng(0))


# ------------------------------------------------------------------------------ properties
rates = st.floats(min_value=0.0, max_value=500.0)
times = st.floats(min_value=0.0, max_value=50.0)


@st.composite
def patterns(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["step", "ramp", "flash_crowd", "diurnal"]))
    if kind == "step":
        at = sorted(draw(st.lists(times, min_size=1, max_size=6)))
        return {"kind": kind, "steps": [{"at_s": a, "rate_rps": draw(rates)} for a in at]}
    if kind == "ramp":
        a, b = sorted((draw(times), draw(times)))
        return {"kind": kind, "from_rps": draw(rates), "to_rps": draw(rates), "start_s": a,
                "end_s": b}
    if kind == "flash_crowd":
        return {"kind": kind, "base_rps": draw(rates), "peak_rps": draw(rates),
                "start_s": draw(times), "ramp_s": draw(times), "hold_s": draw(times),
                "decay_s": draw(times)}
    return {"kind": kind, "mean_rps": draw(rates), "amplitude": draw(st.floats(0, 1)),
            "period_s": draw(st.floats(0.01, 100)), "phase_s": draw(st.floats(-50, 50))}


@settings(max_examples=60, deadline=None)
@given(spec=patterns(), duration=st.floats(min_value=0.1, max_value=60.0),
       seed=st.integers(0, 2**32 - 1))
def test_any_pattern_is_sorted_in_range_and_on_average(spec: dict[str, Any], duration: float,
                                                       seed: int) -> None:
    w = make(spec)
    a = generate_arrivals(w, duration, np.random.default_rng(seed))
    assert a.dtype == np.float64 and np.all(np.diff(a) >= 0)
    assert a.size == 0 or (a[0] >= 0 and a[-1] < duration)
    lam = expected_arrivals(w, duration)
    assert lam >= 0
    assert abs(a.size - lam) <= 6 * np.sqrt(lam) + 6
    np.testing.assert_array_equal(a, generate_arrivals(w, duration, np.random.default_rng(seed)))
    r = rate_function(w)(np.linspace(-1.0, 1.1 * duration, 501))
    assert np.all(np.isfinite(r)) and np.all(r >= 0)


@settings(max_examples=40, deadline=None)
@given(states=st.lists(st.tuples(rates, st.floats(min_value=1e-3, max_value=100.0)),
                       min_size=1, max_size=5),
       duration=st.floats(min_value=0.01, max_value=200.0), seed=st.integers(0, 2**32 - 1))
def test_any_mmpp_is_sorted_and_in_range(states: list[tuple[float, float]], duration: float,
                                         seed: int) -> None:
    w = make({"kind": "mmpp", "states": [{"rate_rps": r, "mean_sojourn_s": m}
                                         for r, m in states]})
    a = generate_arrivals(w, duration, np.random.default_rng(seed))
    assert np.all(np.diff(a) >= 0) and (a.size == 0 or (a[0] >= 0 and a[-1] < duration))
    assert a.size <= max(r for r, _ in states) * duration + 6 * np.sqrt(
        max(r for r, _ in states) * duration) + 6
