"""The latency summary: exact below its limit, within its stated relative error above, and
mergeable (issue #13: results as mergeable summaries, percentiles within 0.5%)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simscale.simulator.accumulate import RequestFigures
from simscale.simulator.observations import percentiles_linear
from simscale.simulator.sketch import SKETCH_REL_ERROR, LatencySummary

QS = (0, 1, 25, 50, 90, 95, 99, 99.9, 100)
# the bound, plus the rounding of reading a bucket's edge (a few ulps)
BOUND = SKETCH_REL_ERROR * (1 + 1e-9)


def _sample(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lognormal":
        return rng.lognormal(3.0, 1.5, n)
    if kind == "exponential":
        return rng.exponential(50.0, n)
    if kind == "bimodal":  # fast hits and slow misses, as with batching and cold replicas
        return np.where(rng.random(n) < 0.9, rng.normal(20.0, 1.0, n).clip(1.0),
                        rng.normal(900.0, 50.0, n).clip(1.0))
    return np.full(n, 7.25)  # all equal


@settings(max_examples=60)
@given(kind=st.sampled_from(["lognormal", "exponential", "bimodal", "constant"]),
       n=st.integers(1, 30_000), seed=st.integers(0, 10_000), cuts=st.integers(1, 9),
       limit=st.sampled_from([0, 10, 1000]))
def test_sketch_percentiles_within_stated_error(kind, n, seed, cuts, limit):
    x = _sample(kind, n, seed)
    s = LatencySummary(exact_limit=limit)
    for part in np.array_split(x, cuts):
        s.add(part)
    want = np.percentile(x, QS)
    got = s.percentiles(QS)
    if n <= limit:
        assert s.exact and s.rel_error == 0.0
        assert got == percentiles_linear(x, QS)
    else:
        assert not s.exact and s.rel_error == SKETCH_REL_ERROR
        for q, g, w in zip(QS, got, want, strict=True):
            assert abs(g - w) <= BOUND * w, (q, g, w)
    stats = s.stats(True)
    assert s.n == n
    assert stats["max"] == x.max()
    assert math.isclose(stats["mean"], x.mean(), rel_tol=1e-12)


def test_exact_summary_is_numpy_over_the_concatenation():
    x = _sample("lognormal", 5001, 3)
    s = LatencySummary()
    for part in np.array_split(x, 7):
        s.add(part)
    stats = s.stats(True)
    assert stats["mean"] == float(x.mean())
    assert [stats["p50"], stats["p95"], stats["p99"]] == percentiles_linear(x.copy(),
                                                                            (50, 95, 99))


def test_merge_equals_adding_everything():
    a_x, b_x = _sample("exponential", 3000, 1), _sample("bimodal", 2000, 2)
    for limit in (10_000, 100):  # both exact, and past the limit
        a, b, both = (LatencySummary(limit) for _ in range(3))
        a.add(a_x)
        b.add(b_x)
        both.add(a_x)
        both.add(b_x)
        a.merge(b)
        assert a.exact == both.exact
        assert a.percentiles(QS) == both.percentiles(QS)
        assert a.n == both.n and a.max == both.max


def test_zero_and_huge_values():
    s = LatencySummary(exact_limit=0)
    s.add(np.array([0.0, 0.0, 5.0, 1e9]))
    p0, p100 = s.percentiles((0, 100))
    assert p0 == 0.0
    assert p100 <= 1e7 * (1 + BOUND)  # clamped, as documented
    assert s.stats(True)["max"] == 1e9  # the maximum stays exact


def test_request_figures_switch_to_the_sketch_past_the_limit():
    """A run larger than the exact limit reports sketched percentiles within the bound, says
    so, and keeps every count exact."""
    rng = np.random.default_rng(5)
    n = 20_000
    arr = np.sort(rng.uniform(0.0, 100.0, n))
    st_ = arr + rng.exponential(0.01, n)
    end = st_ + rng.exponential(0.05, n)
    drop = np.zeros(n, dtype=np.int8)
    bs = np.ones(n, dtype=np.int32)
    figs = {}
    for limit in (10**9, 1000):
        acc = RequestFigures(100.0, 0.0, 100.0, exact_limit=limit)
        for i in range(0, n, 4096):
            j = min(i + 4096, n)
            acc.add(arr[i:j], st_[i:j], end[i:j], drop[i:j], bs[i:j],
                    float(arr[j]) if j < n else math.inf)
        acc.close()
        figs[limit] = acc.summary()
    exact, sketched = figs[10**9], figs[1000]
    assert exact["percentile_rel_error"] == 0.0
    assert sketched["percentile_rel_error"] == SKETCH_REL_ERROR
    for key in ("arrivals", "completed", "dropped", "slo_attainment"):
        assert sketched[key] == exact[key]
    for fig in ("latency_ms", "queue_wait_ms"):
        for q in ("p50", "p95", "p99"):
            w = exact[fig][q]
            assert abs(sketched[fig][q] - w) <= BOUND * w
        assert math.isclose(sketched[fig]["mean"], exact[fig]["mean"], rel_tol=1e-12)
