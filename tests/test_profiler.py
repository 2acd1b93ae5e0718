"""Tests of the profiler: measurement, fitting, the profile file, the replica process.

One quick profile of all three models is measured once per session (``quick_profile``) and shared
by the tests that need real measurements (marked ``profile``: they need torch, xgboost,
scikit-learn).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simscale.errors import UserError
from simscale.profiler.fit import fit_service_time
from simscale.profiler.schema import (
    SCHEMA,
    NoiseFit,
    Profile,
    ServiceTimeFit,
    load_profile,
)
from simscale.profiler.service_model import ServiceTimeModel

DEFAULT_PROFILE = Path(__file__).resolve().parents[1] / "profiler" / "data" / "default_cpu.json"
U = np.random.default_rng(12345).random(200_000)
#: Seconds a subprocess of a test may take before the test fails: a guard against a hang, never
#: a speed requirement (starting Python and importing a model takes seconds; on a loaded
#: machine, many more).
SUBPROCESS_DEADLINE_S = 600
#: Hang guard (s) of the tests that use the quick profile: the first one measures it (about a
#: minute on an idle 2-core machine, 11 minutes with both cores taken by other processes).
QUICK_PROFILE_TIMEOUT_S = 2400


#: False-alarm rate of all the distribution-free quantile checks of one test together: a sound
#: fit fails such a test with probability at most this, whatever the machine's load.
FALSE_ALARM = 1e-6
#: Quantiles of the service time that a fit must reproduce: the median and the slow side (the
#: p95 alone cannot tell a spread that is wrong from 200 samples: its interval has no upper side).
FIT_QUANTILES = np.array([0.50, 0.75, 0.90, 0.95])


def quantile_interval_ms(samples: Any, q: float, alpha: float) -> tuple[float, float]:
    """Distribution-free confidence interval, of level at least ``1 - alpha``, for the ``q``
    quantile of the distribution that drew ``samples`` (independent draws): the order statistics
    ``(x_(l), x_(u))`` with ``K ~ Binomial(n, q)`` (the number of samples below the quantile)
    ``P(K < l) <= alpha/2`` and ``P(K >= u) <= alpha/2``. A side that ``n`` samples cannot bound
    at this level is infinite. Independent draws from distributions that differ (a machine whose
    speed drifts) keep the level for their mixture: ``K`` is then Poisson-binomial, which is more
    concentrated than the binomial of the same mean (Hoeffding, 1956).
    """
    from scipy import stats

    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    k = np.arange(n + 1)
    low = np.flatnonzero(stats.binom.cdf(k, n, q) <= alpha / 2)  # P(K <= k) small: k < l
    high = np.flatnonzero(stats.binom.sf(k, n, q) <= alpha / 2)  # P(K > k) small: k >= u - 1
    lo = float(x[low[-1]]) if low.size else -np.inf  # x_(l) with l = low[-1] + 1 (1-based)
    hi = float(x[high[0]]) if high.size and high[0] < n else np.inf  # x_(u), u = high[0] + 1
    return lo, hi


def assert_fits_samples(cases: list[tuple[str, ServiceTimeModel, int, Any]], tol: float = 0.10,
                        false_alarm: float = FALSE_ALARM) -> None:
    """Each case ``(where, model, batch size, samples_ms)``: each quantile of
    :data:`FIT_QUANTILES` of the service times (ms) the simulator draws from ``model`` is within
    ``tol`` (relative) of a value that the samples allow for that quantile, i.e. inside the
    distribution-free interval of :func:`quantile_interval_ms` widened by ``tol``
    (``lo*(1 - tol) <= p <= hi*(1 + tol)``). All the intervals together miss with probability at
    most ``false_alarm`` (Bonferroni), so a sound fit fails this at most that often however noisy
    the samples are, while a fit more than ``tol`` off a quantile that many samples pin down
    fails. (How many that is, depends on the samples: a few noisy ones pin down little.)"""
    alpha = false_alarm / (len(FIT_QUANTILES) * len(cases))
    for where, model, b, samples in cases:
        draws = model.sample_s(b, U) * 1000.0
        for q, sim in zip(FIT_QUANTILES, np.percentile(draws, FIT_QUANTILES * 100), strict=True):
            lo, hi = quantile_interval_ms(samples, q, alpha)
            assert lo * (1 - tol) <= sim <= hi * (1 + tol), (
                f"{where} b={b}: simulated p{q * 100:.0f} {sim:.4g} ms, but {len(samples)} "
                f"samples put it in [{lo:.4g}, {hi:.4g}] ms (level {1 - alpha:.2g}), +-{tol:.0%}")


def assert_reproduces(model: ServiceTimeModel, batches: dict[int, np.ndarray], tol: float = 0.10,
                      where: str = "") -> None:
    """Every batch size's samples against ``model`` with :func:`assert_fits_samples` (sound
    distribution-free intervals: comparing with the samples' own p95 at a fixed tolerance
    failed a sound fit now and then, e.g. 300 lognormal draws of spread 0.375 whose p95 read
    8% below the true one)."""
    assert_fits_samples([(where, model, b, samples) for b, samples in batches.items()], tol)


# -- the quick profile, measured once -----------------------------------------------------------


@pytest.fixture(scope="session")
def quick_profile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Profile, Path, float]:
    pytest.importorskip("torch")
    pytest.importorskip("xgboost")
    from simscale.profiler.runner import run_profile

    path = tmp_path_factory.mktemp("profile") / "quick.json"
    t0 = time.perf_counter()
    profile = run_profile(quick=True, output=path, progress=False)
    return profile, path, time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.profile
@pytest.mark.timeout(QUICK_PROFILE_TIMEOUT_S)
def test_quick_profile_holds_every_model_with_all_parts(quick_profile):
    profile, _, _ = quick_profile
    assert profile.schema_ == SCHEMA and profile.quick
    assert set(profile.models) == {"linear_regression", "xgboost", "resnet50"}
    for name, m in profile.models.items():
        assert m.n_parameters > 0 and m.model_size_mb > 0, name
        assert m.cold_start and m.cold_start[0].device == "cpu"
        cs = m.cold_start[0]
        assert len(cs.samples_s) >= 2 and 0 < cs.p50_s <= cs.p95_s < 120
        assert m.configs
        for cfg in m.configs:
            assert cfg.device == "cpu" and cfg.threads >= 1
            assert len(cfg.batches) >= 2
            for b in cfg.batches:
                assert 1 <= len(b.samples_ms) <= 200
                assert 0 < b.p50_ms <= b.p95_ms <= b.p99_ms
                assert b.items_per_s == pytest.approx(b.batch_size / (b.mean_ms / 1000))
                assert b.peak_memory_mb is not None and b.peak_memory_mb > 10
            assert cfg.fit.alpha_ms >= 0 and cfg.fit.beta_ms >= 0
            assert np.isfinite(cfg.fit.r2) and cfg.fit.max_rel_error >= 0
            # serving: isolated batches of one through a real replica process; the round trip
            # holds the replica's predict, and the overhead is what the fit does not explain
            sv = cfg.serving
            assert sv is not None and sv.batches >= 8, name
            assert 0 < sv.predict_ms_p50 < sv.roundtrip_ms_p50 <= sv.roundtrip_ms_p95, name
            t50 = float(profile.service_model(name, "cpu", cfg.threads, serving=False)
                        .median_s(1)) * 1000
            # one overhead per idle gap: the gap's median round trip less the scaled fit
            rts = dict(sv.idle_roundtrip_ms_p50)
            # the reference: the serving replica's own tight-loop predict (the fit's way of
            # timing, in the serving process), measured in every round
            p0 = sv.loop_predict_ms_p50
            assert p0 is not None and p0 > 0 and sv.reference_predict_ms_p50 == p0, name
            assert sorted(rts) == [0.0, 2.0, 10.0, 50.0, 200.0], name
            assert sv.fit_scale == pytest.approx(min(1.0, min(rts.values()) / p0)), name
            for gap, over in sv.idle_overhead_ms:
                assert over == pytest.approx(rts[gap] - sv.fit_scale * p0, abs=1e-9), name
            assert sv.overhead_ms == pytest.approx(dict(sv.idle_overhead_ms)[50.0]), name
            # what a busy machine cannot change: an overhead is never negative and a faster
            # isolated predict is a speed in (0, 1]; how large they are depends on the machine
            # and its load while profiling, which a test must not judge
            assert sv.overhead_ms >= 0.0 and 0.0 < sv.fit_scale <= 1.0, (name, sv)
            # the simulated serving replica: the (scaled) fit plus the overhead, so that its
            # median for one item is the round trip where the fit and p0 agree
            served = profile.service_model(name, "cpu", cfg.threads)
            assert float(served.median_s(1)) * 1000 == pytest.approx(
                sv.fit_scale * t50 + sv.overhead_ms, rel=1e-9)
    lr, xgb, rn = (profile.models[k] for k in ("linear_regression", "xgboost", "resnet50"))
    assert set(lr.quality) == {"r2"} and 0 < lr.quality["r2"] < 1
    assert xgb.quality["accuracy"] > 0.9
    assert rn.n_parameters == 25_557_032 and 90 < rn.model_size_mb < 110
    assert rn.input_shape == [3, 224, 224]
    assert rn.preprocessing is not None and rn.preprocessing.p50_ms > 0
    # ResNet50 memory grows with the batch
    peaks = [b.peak_memory_mb for b in rn.configs[0].batches]
    assert peaks[-1] >= peaks[0]
    assert profile.machine.cores >= 1 and profile.machine.libraries.get("torch")


@pytest.mark.slow
@pytest.mark.profile
@pytest.mark.timeout(QUICK_PROFILE_TIMEOUT_S)
def test_quick_profile_fit_reproduces_measured_p50_p95(quick_profile):
    """The simulator's draws reproduce the p50 and the slow side (p75, p90, p95) of the samples
    the fit was fitted on, within 10 %, at every batch size: judged against the
    distribution-free interval those very samples give each quantile (a fresh measurement on a
    busy machine is noisy; the test must not fail for that, only for a fit that the samples
    contradict), and the profile's ``max_rel_error`` is the error against its own stored
    p50/p95."""
    from simscale.profiler.fit import model_errors

    profile, _, _ = quick_profile
    cases = []
    for name, m in profile.models.items():
        for cfg in m.configs:
            # the fit describes predict in the profiler's tight loop (no serving overhead)
            model = profile.service_model(name, cfg.device, cfg.threads, serving=False)
            where = f"{name}/{cfg.device}/{cfg.threads}t"
            cases += [(where, model, b.batch_size, b.samples_ms) for b in cfg.batches]
            errors = model_errors(cfg.fit, [b.batch_size for b in cfg.batches],
                                  [b.p50_ms for b in cfg.batches],
                                  [b.p95_ms for b in cfg.batches])
            assert cfg.fit.max_rel_error == pytest.approx(float(np.max(errors)), rel=1e-9,
                                                          abs=1e-12), where
    assert_fits_samples(cases)


@pytest.mark.slow
@pytest.mark.profile
@pytest.mark.timeout(QUICK_PROFILE_TIMEOUT_S)
def test_quick_profile_file_validates_and_round_trips(quick_profile):
    profile, path, _ = quick_profile
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA
    loaded = load_profile(path, warn=False)
    assert loaded.model_dump(exclude={"source"}) == profile.model_dump(exclude={"source"})
    assert loaded.source == str(path)
    assert path.stat().st_size < 1_000_000
    assert oct(path.stat().st_mode & 0o077) != "0o0"  # not the 0600 of a temporary file


# -- fitting on synthetic data -------------------------------------------------------------------


def test_quantile_check_holds_for_sound_fits_and_catches_bad_ones():
    """The check of the quick profile's fit, on samples of a known distribution (200 per batch
    size, as a profile stores; a lognormal spread like a busy tabular model's): the true quantiles
    lie in their intervals and the fit passes, while a line 20 % off, or a spread 4 times too
    narrow or 3 times too wide, fails."""
    rng = np.random.default_rng(20240611)
    sizes = [1, 4, 16, 64]
    data = synthetic(0.05, 0.01, sizes, 200, lambda b: 0.2, rng)
    truth = ServiceTimeModel(_fit(alpha_ms=0.05, beta_ms=0.01,
                                  noise=NoiseFit(dist="lognorm", params=[0.2, 0, 1])))
    alpha = FALSE_ALARM / (len(FIT_QUANTILES) * len(sizes))
    for b in sizes:
        for q in FIT_QUANTILES:
            lo, hi = quantile_interval_ms(data[b], q, alpha)
            assert lo <= float(truth.quantile_s(b, q)) * 1000 <= hi, (b, q)
    fit = fit_service_time(data)
    assert_fits_samples([("fit", ServiceTimeModel(fit), b, data[b]) for b in sizes])
    spread = dict(fit.noise_scale) if fit.noise_scale else dict.fromkeys(sizes, 1.0)
    bad = {
        "20% slow": {"alpha_ms": 1.2 * fit.alpha_ms, "beta_ms": 1.2 * fit.beta_ms},
        "20% fast": {"alpha_ms": 0.8 * fit.alpha_ms, "beta_ms": 0.8 * fit.beta_ms},
        "too narrow": {"noise_scale": [(b, spread[b] / 4) for b in sizes]},
        "too wide": {"noise_scale": [(b, spread[b] * 3) for b in sizes]},
    }
    for what, update in bad.items():
        wrong = ServiceTimeModel(fit.model_copy(update=update))
        with pytest.raises(AssertionError):
            assert_fits_samples([(what, wrong, b, data[b]) for b in sizes])
    # a few samples cannot contradict much: 5 samples give the p95 no upper bound
    assert quantile_interval_ms(data[1][:5], 0.95, 1e-6)[1] == np.inf


def synthetic(alpha_ms, beta_ms, sizes, n, sigma_fn, rng, curvature=1.0, dist="lognorm"):
    out = {}
    for b in sizes:
        med = alpha_ms + beta_ms * b**curvature
        sigma = sigma_fn(b)
        if dist == "lognorm":
            x = np.exp(rng.normal(0.0, sigma, n))
        else:  # gamma with median ~1, right-skewed
            k = 1.0 / sigma**2
            g = rng.gamma(k, 1.0 / k, n)
            x = g / np.median(g)
        out[b] = med * x
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alpha=st.floats(0.01, 50.0),
    beta=st.floats(0.001, 20.0),
    sigma0=st.floats(0.01, 0.4),
    decay=st.floats(0.0, 0.5),
    dist=st.sampled_from(["lognorm", "gamma"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_fit_reproduces_synthetic_p50_p95(alpha, beta, sigma0, decay, dist, seed):
    """Latencies whose noise spread shrinks with the batch size (as measured ones do).
    (``fit.max_rel_error`` compares the fit with the samples' own p50 and p95, whose sampling
    error alone reaches 10% at 300 draws of spread 0.4: not asserted here; the intervals of
    :func:`assert_fits_samples` are the sound check.)"""
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 4, 8, 16, 32, 64, 128]
    data = synthetic(alpha, beta, sizes, 300, lambda b: sigma0 * b ** (-decay), rng, dist=dist)
    fit = fit_service_time(data)
    assert_reproduces(ServiceTimeModel(fit), data, where=f"{dist} s0={sigma0} d={decay}")


@settings(max_examples=8, deadline=None)
@given(curvature=st.floats(1.2, 1.8), seed=st.integers(0, 2**31 - 1))
def test_fit_adds_knots_where_the_line_misses(curvature, seed):
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 4, 8, 16, 32]
    data = synthetic(1.0, 2.0, sizes, 200, lambda b: 0.05, rng, curvature=curvature)
    fit = fit_service_time(data)
    model = ServiceTimeModel(fit)
    line = fit.alpha_ms + fit.beta_ms * np.array(sizes)
    med = np.array([np.median(data[b]) for b in sizes])
    if np.max(np.abs(line - med) / med) > 0.05:
        assert fit.knots is not None and [k[0] for k in fit.knots] == sizes
        assert np.allclose(model.median_s(sizes) * 1000, med)
    assert_reproduces(model, data)


def test_fit_recovers_the_line_and_the_noise():
    rng = np.random.default_rng(3)
    data = synthetic(5.0, 2.0, [1, 4, 16, 64], 2000, lambda b: 0.1, rng)
    fit = fit_service_time(data)
    assert fit.alpha_ms == pytest.approx(5.0, rel=0.05)
    assert fit.beta_ms == pytest.approx(2.0, rel=0.02)
    assert fit.r2 > 0.999 and fit.knots is None and fit.noise_scale is None
    assert fit.max_rel_error < 0.05
    assert fit.noise.dist in ("lognorm", "gamma", "weibull_min", "fisk", "norm")
    assert float(fit.noise.frozen.median()) == pytest.approx(1.0, abs=1e-6)


def test_fit_with_one_batch_size_goes_through_zero():
    data = {8: np.random.default_rng(0).lognormal(np.log(40.0), 0.05, 100)}
    fit = fit_service_time(data)
    assert fit.alpha_ms == 0.0 and fit.beta_ms == pytest.approx(np.median(data[8]) / 8)
    assert_reproduces(ServiceTimeModel(fit), data)


def test_fit_rejects_empty_or_bad_samples():
    with pytest.raises(ValueError):
        fit_service_time({})
    with pytest.raises(ValueError):
        fit_service_time({1: [1.0, -1.0]})


# -- the service-time model --------------------------------------------------------------------


def _fit(**kw) -> ServiceTimeFit:
    base = dict(alpha_ms=2.0, beta_ms=1.0, noise=NoiseFit(dist="lognorm", params=[0.2, 0, 1]),
                r2=1.0, max_rel_error=0.0)
    return ServiceTimeFit(**{**base, **kw})


def test_service_time_model_median_and_quantiles():
    model = ServiceTimeModel(_fit())
    b = np.array([1, 10])
    assert np.allclose(model.median_s(b), [0.003, 0.012])
    assert np.allclose(model.quantile_s(b, 0.5), model.median_s(b))
    x95 = np.exp(0.2 * 1.6448536)
    assert np.allclose(model.quantile_s(b, 0.95), model.median_s(b) * x95)
    draws = model.sample_s(10, U)
    assert np.percentile(draws, 95) == pytest.approx(0.012 * x95, rel=0.01)
    assert np.all(np.diff(model.sample_s(4, np.sort(U[:1000]))) >= 0)  # monotone in u


def test_service_time_model_serving_overhead_is_a_constant_per_batch():
    bare = ServiceTimeModel(_fit(noise_scale=[(1, 2.0), (16, 0.5)]))
    served = ServiceTimeModel(_fit(noise_scale=[(1, 2.0), (16, 0.5)]), overhead_ms=0.7)
    b = np.array([1, 4, 16])
    for f in ("median_s", "mean_s"):
        assert np.allclose(getattr(served, f)(b), getattr(bare, f)(b) + 0.7e-3)
    assert np.allclose(served.quantile_s(b, 0.95), bare.quantile_s(b, 0.95) + 0.7e-3)
    assert np.allclose(served.sample_s(4, U[:100]), bare.sample_s(4, U[:100]) + 0.7e-3)
    # same variance, larger mean
    assert np.all(served.scv_at(b) < bare.scv_at(b))
    # a faster serving replica scales the fit instead: same shape, shorter times
    faster = ServiceTimeModel(_fit(noise_scale=[(1, 2.0), (16, 0.5)]), fit_scale=0.9)
    assert np.allclose(faster.sample_s(4, U[:100]), 0.9 * bare.sample_s(4, U[:100]))
    assert np.allclose(faster.scv_at(b), bare.scv_at(b))
    var = np.var(served.sample_s(4, U))
    assert float(served.scv_at(4)) == pytest.approx(var / float(served.mean_s(4)) ** 2, rel=0.05)


def test_service_time_model_noise_scale_interpolates_in_log_b():
    model = ServiceTimeModel(_fit(noise_scale=[(1, 2.0), (16, 0.5)]))
    s = model.noise_scale([1, 4, 16, 64])
    assert np.allclose(s, [2.0, 1.25, 0.5, 0.5])
    assert np.allclose(model.quantile_s([1, 16], 0.5), model.median_s([1, 16]))
    x95 = np.exp(0.2 * 1.6448536)
    assert model.quantile_s(1, 0.95) == pytest.approx(0.003 * (1 + 2.0 * (x95 - 1)))
    mean1 = float(np.mean(model.sample_s(1, U)))
    assert mean1 == pytest.approx(float(model.mean_s(1)), rel=0.01)
    assert model.scv_at(16) < model.scv_at(1)


def test_service_time_model_knots():
    model = ServiceTimeModel(_fit(knots=[(1, 3.0), (4, 10.0), (8, 12.0)]))
    assert np.allclose(model.median_s([1, 2, 4, 8]) * 1000, [3.0, 16 / 3, 10.0, 12.0])
    assert model.median_s(16) * 1000 == pytest.approx(2.0 + 16.0)  # the line beyond the knots


# -- arguments, files ---------------------------------------------------------------------------


@pytest.mark.profile
@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"models": ["nope"]}, ["nope", "linear_regression", "xgboost", "resnet50"]),
        ({"models": "linear_regression,nope"}, ["nope"]),
        ({"batch_sizes": [1, 0]}, ["at least 1"]),
        ({"batch_sizes": [-4]}, ["at least 1"]),
        ({"threads": [0]}, ["at least 1"]),
        ({"threads": ["two"]}, ["whole number"]),
        ({"devices": ["tpu"]}, ["tpu", "cpu", "cuda"]),
        ({"models": []}, ["empty"]),
    ],
)
def test_bad_arguments_raise_user_error(tmp_path, kwargs, words):
    pytest.importorskip("torch")
    from simscale.profiler.runner import run_profile

    out = tmp_path / "p.json"
    with pytest.raises(UserError) as exc:
        run_profile(**kwargs, output=out, progress=False, quick=True)
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.profile
def test_cuda_without_gpu_is_a_user_error(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from simscale.profiler import runner

    monkeypatch.setattr(runner, "_cuda_available", lambda: False)
    with pytest.raises(UserError, match="no GPU"):
        runner.run_profile(devices=["cuda"], output=tmp_path / "p.json", progress=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.profile
def test_bad_output_and_weights_are_user_errors(tmp_path):
    pytest.importorskip("torch")
    from simscale.profiler.runner import run_profile

    with pytest.raises(UserError, match="directory"):
        run_profile(output=tmp_path, progress=False, quick=True)
    with pytest.raises(UserError, match="weights file not found"):
        run_profile(weights_path=tmp_path / "missing.pt", output=tmp_path / "p.json",
                    progress=False, quick=True)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    from simscale.profiler.zoo import train_model

    with pytest.raises(UserError, match="bad.pt"):
        train_model("resnet50", tmp_path / "art", weights_path=bad)


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", ["not valid JSON"]),
        ("[1, 2]", ["JSON object"]),
        ('{"schema": "other/1"}', ["unsupported schema"]),
        ('{"schema": "simscale.profile/1", "created_at": "x"}', ["machine"]),
    ],
)
def test_malformed_profile_is_a_user_error_naming_the_file(tmp_path, content, words):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(UserError) as exc:
        load_profile(path)
    assert str(path) in str(exc.value)
    for w in words:
        assert w in str(exc.value)


def test_unreadable_or_missing_profile_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found") as exc:
        load_profile(tmp_path / "missing.json")
    assert "missing.json" in str(exc.value)
    with pytest.raises(UserError, match="profile path is a folder") as exc:
        load_profile(tmp_path)  # a directory
    assert str(tmp_path) in str(exc.value)


def _tiny_profile() -> Profile:
    from simscale.profiler.fingerprint import machine_fingerprint

    batch = dict(batch_size=1, samples_ms=[1.0, 1.1], mean_ms=1.05, std_ms=0.07, p50_ms=1.05,
                 p95_ms=1.1, p99_ms=1.1, items_per_s=952.0)
    return Profile.model_validate({
        "schema": SCHEMA, "created_at": "2026-01-01T00:00:00+00:00",
        "machine": machine_fingerprint(),
        "models": {"m": {
            "name": "m", "description": "d", "framework": "f", "n_parameters": 1,
            "model_size_mb": 0.1,
            "cold_start": [{"samples_s": [1.0], "mean_s": 1.0, "p50_s": 1.0, "p95_s": 1.0}],
            "configs": [{"device": "cpu", "threads": 1, "batches": [batch],
                         "fit": _fit().model_dump()}],
        }},
    })


def test_save_profile_is_atomic(tmp_path, monkeypatch):
    from simscale.profiler import runner

    path = tmp_path / "profile.json"
    runner.save_profile(_tiny_profile(), path)
    before = path.read_bytes()
    assert load_profile(path, warn=False).models["m"].n_parameters == 1

    def broken_dump(obj, fh, **kw):
        fh.write('{"schema": "simscale.profile/1", "models": {')
        raise RuntimeError("disk full")

    monkeypatch.setattr(runner.json, "dump", broken_dump)
    with pytest.raises(RuntimeError, match="disk full"):
        runner.save_profile(_tiny_profile(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]


def test_show_profile_prints_tables():
    from rich.console import Console

    from simscale.profiler.show import show_profile, summary_table

    console = Console(record=True, width=160)
    profile = _tiny_profile()
    show_profile(profile, console)
    console.print(summary_table(profile))
    text = console.export_text()
    for word in ("Models", "m on cpu, 1 thread", "t50(b)", "max rel. error", "Profile summary"):
        assert word in text


def test_profile_command_prints_summary(tmp_path, monkeypatch, capsys):
    from simscale.profiler import command, runner

    calls = {}

    def fake_run_profile(**kwargs):
        calls.update(kwargs)
        return _tiny_profile()

    monkeypatch.setattr(runner, "run_profile", fake_run_profile)
    out = tmp_path / "p.json"
    profile = command.profile_command(["xgboost"], None, [1], [1, 2], True, out, None)
    assert profile.models["m"]
    assert calls["models"] == ["xgboost"] and calls["quick"] and calls["output"] == out
    assert "Profile summary" in capsys.readouterr().out


def test_fingerprint_is_cheap_and_complete():
    code = (
        "import sys; from simscale.profiler.fingerprint import machine_fingerprint as f; "
        "m = f(); assert m.cores >= 1 and m.memory_mb > 0 and m.cpu_model and m.date; "
        "assert 'numpy' in m.libraries; assert 'torch' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=SUBPROCESS_DEADLINE_S)
    assert out.stdout.strip() == "ok", out.stderr


# -- the zoo and the replica process --------------------------------------------------------------


@pytest.mark.profile
def test_build_model_tabular():
    pytest.importorskip("xgboost")
    from simscale.profiler.zoo import build_model

    for name, n_features in (("linear_regression", 10), ("xgboost", 30)):
        predict, make_inputs = build_model(name, threads=1, device="cpu")
        x = make_inputs(37)
        assert x.shape == (37, n_features)
        assert len(predict(x)) == 37


@pytest.mark.profile
def test_unknown_model_in_zoo():
    from simscale.profiler.zoo import build_model

    with pytest.raises(UserError, match="valid: linear_regression, xgboost, resnet50"):
        build_model("nope", threads=1)
    with pytest.raises(UserError, match="cannot run on cuda"):
        build_model("linear_regression", threads=1, device="cuda")


@pytest.mark.profile
def test_replica_serves_batches_over_stdio(tmp_path):
    pytest.importorskip("sklearn")
    from simscale.profiler.replica import replica_command
    from simscale.profiler.zoo import thread_env, train_model

    art = train_model("linear_regression", tmp_path).artifact
    cmd = replica_command("linear_regression", 1, "cpu", art, mode=("--serve",))
    proc = subprocess.run(cmd, input="4\n16\nx\n\n", capture_output=True, text=True,
                          env=thread_env(1), timeout=SUBPROCESS_DEADLINE_S)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr
    assert lines[0]["event"] == "ready" and lines[0]["first_predict_s"] > 0
    assert [ln["batch_size"] for ln in lines[1:3]] == [4, 16]
    assert all(ln["service_ms"] > 0 for ln in lines[1:3])
    assert lines[3]["event"] == "error"


@pytest.mark.profile
def test_replica_times_a_tight_loop_on_request(tmp_path, monkeypatch):
    """``loop N MIN_MS`` answers with at least N predict times (ms), enough to add up to MIN_MS,
    at most LOOP_MAX_CALLS; the serving loop goes on after it; a malformed one times one call."""
    pytest.importorskip("sklearn")
    from simscale.profiler.replica import LOOP_MAX_CALLS, _loop, replica_command
    from simscale.profiler.zoo import thread_env, train_model

    art = train_model("linear_regression", tmp_path).artifact
    cmd = replica_command("linear_regression", 1, "cpu", art, mode=("--serve",))
    proc = subprocess.run(cmd, input="loop 3\nloop 2 5\n1\nloop x\n\n", capture_output=True,
                          text=True, env=thread_env(1), timeout=SUBPROCESS_DEADLINE_S)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()][1:]
    assert [ln["event"] for ln in lines] == ["loop", "loop", "done", "loop"]
    assert len(lines[0]["predict_ms"]) == 3 and all(t > 0 for t in lines[0]["predict_ms"])
    timed = lines[1]["predict_ms"]
    assert len(timed) >= 2 and (sum(timed) >= 5.0 or len(timed) == LOOP_MAX_CALLS)
    assert sum(timed[:-1]) < 5.0 or len(timed) == 2  # it stops once MIN_MS is reached
    assert len(lines[3]["predict_ms"]) == 1

    class Model:  # a predict of 1 ms of fake time: the call counts alone
        calls = 0

        def predict(self, batch):
            Model.calls += 1

    import itertools

    import simscale.profiler.replica as replica_mod

    clock = itertools.count(0, 1_000_000)  # each reading 1 ms after the last
    with monkeypatch.context() as m:
        m.setattr(replica_mod.time, "perf_counter_ns", lambda: next(clock))
        assert _loop(Model(), None, "loop 3 10") == [1.0] * 10  # 10 ms needs 10 calls
        assert _loop(Model(), None, "loop 4 1") == [1.0] * 4  # at least N
        assert len(_loop(Model(), None, f"loop 1 {10 * LOOP_MAX_CALLS}")) == LOOP_MAX_CALLS
    # one untimed warm-up call before each loop
    assert Model.calls == 1 + 10 + 1 + 4 + 1 + LOOP_MAX_CALLS


@pytest.mark.profile
def test_replica_reports_bad_weights_as_one_line(tmp_path):
    from simscale.profiler.replica import replica_command

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    cmd = replica_command("linear_regression", 1, "cpu", bad, mode=("--probe",))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROCESS_DEADLINE_S)
    assert proc.returncode == 2
    reply = json.loads(proc.stdout.strip())
    assert reply["event"] == "error" and "bad.npz" in reply["message"]


@pytest.mark.profile
def test_measure_serving_times_batches_after_idle_gaps_and_leaves_nothing_behind(tmp_path):
    """Round trips through a real serving replica hold its predict time, for every idle gap; a
    replica that cannot load its model is one UserError line; no replica outlives the call."""
    pytest.importorskip("sklearn")
    import psutil

    from simscale.profiler.runner import measure_serving, serving_overhead
    from simscale.profiler.zoo import train_model

    art = train_model("linear_regression", tmp_path).artifact
    by_gap, loop = measure_serving("linear_regression", "cpu", 1, art, batches=4,
                                   gaps_s=(0.0, 0.005, 0.02))
    assert sorted(by_gap) == [0.0, 0.005, 0.02]
    for rt, pred in by_gap.values():
        assert len(rt) == len(pred) == 4
        assert all(0 < p < r < np.inf for r, p in zip(rt, pred, strict=True))
    # at least 3 tight-loop predicts of one reused input per pass (20 ms of them)
    assert len(loop) >= 4 * 3 and all(0 < t < np.inf for t in loop)
    med = {g: float(np.median(rt)) for g, (rt, _) in by_gap.items()}
    p_loop = float(np.median(loop))
    sv = serving_overhead(by_gap, reference_gap_s=0.02, loop_ms=loop)
    # the overheads are taken against the tight loop: a batch of one after gap g is simulated
    # at its measured round trip (fit_scale * p_loop + overhead(g) == rt(g))
    assert sv.gap_ms == 20.0 and sv.fit_scale == 1.0 and sv.loop_predict_ms_p50 == p_loop
    assert sv.reference_predict_ms_p50 == p_loop
    assert sv.backtoback_predict_ms_p50 == float(np.median(by_gap[0.0][1]))
    assert sv.overhead_ms == pytest.approx(med[0.02] - p_loop)
    assert sv.idle_overhead_ms == [(g * 1000, pytest.approx(med[g] - p_loop))
                                   for g in sorted(med)]
    # without the loop (older profiles) the back-to-back predict of fresh inputs is the reference
    p0 = float(np.median(by_gap[0.0][1]))
    old = serving_overhead(by_gap, reference_gap_s=0.02)
    assert old.loop_predict_ms_p50 is None and old.reference_predict_ms_p50 == p0
    assert old.overhead_ms == pytest.approx(med[0.02] - p0)
    # a call after some idle gap faster than back to back: a speed (fit_scale), not a
    # negative overhead
    made_up = {0.0: ([10.5] * 3, [10.0] * 3), 0.05: ([9.0] * 3, [8.6] * 3)}
    fast = serving_overhead(made_up)
    assert fast.fit_scale == pytest.approx(0.9)
    assert fast.idle_overhead_ms == [(0.0, pytest.approx(1.5)), (50.0, pytest.approx(0.0))]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    with pytest.raises(UserError, match="bad.npz"):
        measure_serving("linear_regression", "cpu", 1, bad, batches=2, gaps_s=(0.0,))
    children = [c for c in psutil.Process().children(recursive=True)
                if "simscale.profiler.replica" in " ".join(c.cmdline())]
    assert not children


# -- the shipped default profile -----------------------------------------------------------------


@pytest.mark.skipif(not DEFAULT_PROFILE.exists(), reason="no default profile shipped yet")
def test_default_profile_loads_and_is_complete():
    profile = load_profile("default")
    assert not profile.quick
    assert set(profile.models) == {"linear_regression", "xgboost", "resnet50"}
    contention = profile.settings["timing"]["contention"]
    for name in profile.models:
        assert profile.threads_available(name, "cpu") == [1, 2]
        for threads in (1, 2):
            cfg = profile.config(name, "cpu", threads)
            assert all(b.peak_memory_mb for b in cfg.batches)
            # the 10 % requirement holds for measurements other processes did not disturb; a
            # disturbed one is flagged in the profile (and by `simscale profile show`)
            busy = contention[f"{name}/cpu/{threads}"]["wait_share_of_wall_time"]
            limit = 0.10 if busy <= 0.05 else 0.25
            assert cfg.fit.max_rel_error <= limit, (name, threads, busy)
            # the serving measurement ships too: every simulation of the default profile
            # includes it
            sv = cfg.serving
            assert sv is not None and sv.batches >= 20, (name, threads)
            assert 0.5 < cfg.fit_scale <= 1.0 and cfg.overhead_ms >= 0.0
            assert [g for g, _ in sv.idle_overhead_ms] == [0.0, 2.0, 10.0, 50.0, 200.0]
    assert [b.batch_size for b in profile.config("resnet50", "cpu", 1).batches] == [
        1, 2, 4, 8, 16, 32]
    assert [b.batch_size for b in profile.config("xgboost", "cpu", 1).batches] == [
        2**k for k in range(11)]
    assert DEFAULT_PROFILE.stat().st_size < 3_000_000
    assert os.access(DEFAULT_PROFILE, os.R_OK)


def test_speed_note_flags_a_machine_that_changed_speed_while_profiling():
    """A slow model whose reference predict in the serving replica (its tight loop; back to
    back in profiles made before the loop was measured) is far from its fit's median is named;
    fast models (process costs dominate) and agreeing ones are not."""
    from simscale.profiler.show import speed_note

    base = load_profile("default")

    def with_reference(factor: float, older: bool = False) -> Profile:
        models = {}
        for name, m in base.models.items():
            configs = []
            for cfg in m.configs:
                t50 = float(base.service_model(name, cfg.device, cfg.threads,
                                               serving=False).median_s(1)) * 1000.0
                update = ({"loop_predict_ms_p50": None, "backtoback_predict_ms_p50": factor * t50}
                          if older else {"loop_predict_ms_p50": factor * t50})
                sv = cfg.serving.model_copy(update=update)
                configs.append(cfg.model_copy(update={"serving": sv}))
            models[name] = m.model_copy(update={"configs": configs})
        return base.model_copy(update={"models": models})

    assert speed_note(with_reference(1.03)) is None
    assert speed_note(with_reference(1.03, older=True)) is None
    old = speed_note(with_reference(0.8, older=True))
    assert old is not None and "resnet50/cpu/1" in old and "back to back" in old
    note = speed_note(with_reference(0.8))
    assert note is not None and "resnet50/cpu/1" in note and "-20%" in note
    assert "in a tight loop" in note
    assert "xgboost" not in note and "linear_regression" not in note
