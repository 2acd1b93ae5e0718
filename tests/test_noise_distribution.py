"""The profile's noise distributions without scipy.stats (:mod:`simscale.profiler.noise`): the
same quantiles, means and variances as scipy.stats, bit for bit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats

from simscale.profiler.noise import FAMILIES, NoiseDistribution
from simscale.profiler.schema import default_profile_path

_U = np.concatenate([[1e-12, 1e-6, 0.01, 0.25, 0.5, 0.75, 0.99, 1 - 1e-12],
                     np.random.default_rng(0).random(500)])


def _same(got, want) -> None:
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _check(dist: str, params: list[float]) -> None:
    ours, theirs = NoiseDistribution(dist, params), getattr(stats, dist)(*params)
    with np.errstate(all="ignore"):
        _same(ours.ppf(_U), theirs.ppf(_U))
        for q in (0.0, 0.3, 1.0, -0.5, 1.5, math.nan):
            _same(ours.ppf(q), theirs.ppf(q))
        _same(ours.mean(), theirs.mean())
        _same(ours.var(), theirs.var())


def test_the_shipped_profile_s_fits() -> None:
    doc = json.loads(default_profile_path().read_text(encoding="utf-8"))
    fits = [c["fit"]["noise"] for m in doc["models"].values() for c in m["configs"]]
    assert len(fits) >= 6 and {f["dist"] for f in fits} >= {"gamma", "fisk"}
    for fit in fits:
        _check(fit["dist"], fit["params"])


@settings(max_examples=300, deadline=None)
@example(dist="weibull_min", shape=24.0, loc=0.0, scale=1.0)  # a scalar's ** 2 is pow()
@given(dist=st.sampled_from(sorted(FAMILIES)), shape=st.floats(0.05, 40.0),
       loc=st.floats(-2.0, 2.0), scale=st.floats(1e-3, 5.0))
def test_random_parameters(dist: str, shape: float, loc: float, scale: float) -> None:
    params = ([shape] if FAMILIES[dist] else []) + [loc, scale]
    _check(dist, params)


@pytest.mark.parametrize("dist,params", [("gamma", [-1.0, 0.0, 1.0]), ("lognorm", [0.5, 0.0, 0.0]),
                                         ("norm", [0.0, -1.0]), ("fisk", [3.0])])
def test_invalid_or_short_parameters_as_scipy(dist: str, params: list[float]) -> None:
    _check(dist, params)
