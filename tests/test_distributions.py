"""Duration distributions: inverse CDFs match scipy's and the (mean, cv) parameterisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from simscale.simulator.distributions import (
    distribution_moments,
    duration_sampler,
    sample_durations,
)
from simscale.simulator.scenario import Distribution

U = np.concatenate(([0.0, 1e-9], np.linspace(0.001, 0.999, 999), [1 - 1e-9]))


def reference(dist: str, mean: float, cv: float) -> stats.rv_continuous:
    """An independent scipy frozen distribution with the given mean and cv."""
    if dist == "exponential":
        return stats.expon(scale=mean)
    if dist == "lognormal":
        s2 = math.log(1 + cv * cv)
        return stats.lognorm(s=math.sqrt(s2), scale=mean / math.sqrt(1 + cv * cv))
    if dist == "gamma":
        return stats.gamma(a=1 / cv**2, scale=mean * cv**2)
    if dist == "uniform":
        w = math.sqrt(3) * cv * mean
        return stats.uniform(loc=mean - w, scale=2 * w)
    raise AssertionError(dist)


means = st.floats(min_value=1e-4, max_value=1e4)


@settings(max_examples=60, deadline=None)
@given(
    dist=st.sampled_from(["exponential", "lognormal", "gamma", "uniform"]),
    mean=means,
    cv=st.floats(min_value=0.02, max_value=3.0),
)
def test_inverse_cdf_matches_reference(dist: str, mean: float, cv: float) -> None:
    if dist == "uniform":
        cv = min(cv, 0.577)
    d = Distribution(dist=dist, mean_s=mean, cv=cv)
    ref = reference(dist, mean, d.effective_cv)
    # the reference itself has the requested mean and cv
    assert ref.mean() == pytest.approx(mean, rel=1e-6)
    assert ref.std() / ref.mean() == pytest.approx(d.effective_cv, rel=1e-6)
    x = duration_sampler(d)(U)
    assert x.dtype == np.float64 and x.shape == U.shape
    assert np.all(x >= 0) and np.all(np.isfinite(x))
    assert np.all(np.diff(x) >= 0)  # monotone in u (common random numbers)
    inner = (U > 0) & (U < 1)
    np.testing.assert_allclose(ref.cdf(x[inner]), U[inner], rtol=1e-6, atol=1e-9)
    m, scv = distribution_moments(d)
    assert m == pytest.approx(mean) and scv == pytest.approx(d.effective_cv**2)


@pytest.mark.parametrize(
    ("dist", "cv"),
    [("exponential", 1.0), ("lognormal", 0.5), ("lognormal", 1.5), ("gamma", 0.3),
     ("gamma", 2.0), ("uniform", 0.4), ("deterministic", 0.0)],
)
def test_monte_carlo_mean_and_cv(dist: str, cv: float) -> None:
    d = Distribution(dist=dist, mean_ms=20.0, cv=cv)
    x = sample_durations(d, np.random.default_rng(7), 400_000)
    assert x.mean() == pytest.approx(0.020, rel=0.01)
    assert x.std() / x.mean() == pytest.approx(d.effective_cv, rel=0.05, abs=1e-9)


@pytest.mark.parametrize("dist", ["lognormal", "gamma", "uniform", "deterministic"])
def test_cv_zero_is_deterministic(dist: str) -> None:
    d = Distribution(dist=dist, mean_s=0.25, cv=0.0)
    x = duration_sampler(d)(np.random.default_rng(0).random(1000))
    assert np.all(x == 0.25)
    assert distribution_moments(d) == (0.25, 0.0)


def test_exponential_and_deterministic_ignore_cv() -> None:
    assert distribution_moments(Distribution(dist="exponential", mean_ms=5, cv=0.2)) == (
        0.005, 1.0)
    assert distribution_moments(Distribution(dist="deterministic", mean_s=2, cv=3)) == (2.0, 0.0)


def test_mean_ms_is_converted_to_seconds() -> None:
    d = Distribution(dist="uniform", mean_ms=40.0, cv=0.5)
    x = duration_sampler(d)(np.array([0.0, 0.5, 1.0]))
    w = math.sqrt(3) * 0.5 * 0.040
    np.testing.assert_allclose(x, [0.040 - w, 0.040, 0.040 + w])


def test_sampler_keeps_shape() -> None:
    d = Distribution(dist="gamma", mean_s=1.0, cv=0.7)
    u = np.random.default_rng(1).random((3, 4))
    assert duration_sampler(d)(u).shape == (3, 4)
