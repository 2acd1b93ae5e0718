"""Workload kinds as registered classes: the registry, the ``gamma`` kind (a stationary renewal
process with gamma gaps), and a third-party kind registered here that works end to end, which
shows that adding a kind is one class and one registration.

Statistical checks use fixed seeds and 99.9% bounds (or KS p-values above 1e-3) computed from
the known distribution: a seed that passes always passes, and a wrong generator gives p ~ 0.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from pydantic import TypeAdapter
from scipy import stats

from simscale.errors import UserError
from simscale.simulator.fields import NonNegFloat, PositiveFloat
from simscale.simulator.scenario import Scenario, load_scenario, scenarios_dir
from simscale.simulator.workloads import (
    KINDS,
    GammaWorkload,
    RateFunction,
    Workload,
    WorkloadContext,
    WorkloadKind,
    expected_arrivals,
    generate_arrivals,
    input_files,
    rate_function,
    register,
    unregister,
)
from simscale.simulator.workloads import gamma as gamma_mod

README = Path(__file__).resolve().parents[1] / "README.md"
BUILT_IN = ["constant", "step", "ramp", "diurnal", "flash_crowd", "mmpp", "trace", "sum", "gamma"]
#: two-sided 99.9% normal quantile
Z999 = float(stats.norm.ppf(0.9995))
P_MIN = 1e-3

def make(d: dict[str, Any]) -> Any:
    return TypeAdapter(Workload).validate_python(d)


# ------------------------------------------------------------------------------------ registry
def test_registry_lists_every_kind_in_union_order() -> None:
    assert list(KINDS) == BUILT_IN
    for name, cls in KINDS.items():
        assert issubclass(cls, WorkloadKind)
        assert make(_minimal(name)).kind == name


def _minimal(name: str) -> dict[str, Any]:
    return {
        "constant": {"kind": "constant", "rate_rps": 1},
        "step": {"kind": "step", "steps": [{"at_s": 0, "rate_rps": 1}]},
        "ramp": {"kind": "ramp", "from_rps": 1, "to_rps": 2, "start_s": 0, "end_s": 1},
        "diurnal": {"kind": "diurnal", "mean_rps": 1, "amplitude": 0.5, "period_s": 10},
        "flash_crowd": {"kind": "flash_crowd", "base_rps": 1, "peak_rps": 2, "start_s": 0,
                        "ramp_s": 1, "hold_s": 1, "decay_s": 1},
        "mmpp": {"kind": "mmpp", "states": [{"rate_rps": 1, "mean_sojourn_s": 1}]},
        "trace": {"kind": "trace", "path": "t.csv", "timestamp_column": "ts"},
        "sum": {"kind": "sum", "workloads": [{"kind": "constant", "rate_rps": 1}]},
        "gamma": {"kind": "gamma", "rate_rps": 1, "cv": 2},
    }[name]


def test_schema_and_errors_follow_the_registry(tiny_scenario: Any) -> None:
    mapping = Scenario.model_json_schema()["$defs"]["Service"]["properties"]["workload"]
    assert list(mapping["discriminator"]["mapping"]) == sorted(BUILT_IN)
    with pytest.raises(UserError) as exc:
        load_scenario(tiny_scenario(svc_workload={"kind": "poisson", "rate_rps": 1}))
    tags = re.findall(r"'(\w+)'", str(exc.value).split("expected tags:")[1])
    assert tags == BUILT_IN


def test_readme_lists_every_kind() -> None:
    text = README.read_text(encoding="utf-8")
    para = text[text.index("Workloads (`kind`)"):]
    para = para[:para.index("\n\n")]
    for name in KINDS:
        assert f"`{name}`" in para, name


def test_old_import_paths_still_work() -> None:
    from simscale.simulator import scenario as scenario_mod

    assert scenario_mod.TraceWorkload is KINDS["trace"]
    assert scenario_mod.GammaWorkload is GammaWorkload
    with pytest.raises(AttributeError):
        _ = scenario_mod.NoSuchWorkload


def test_register_refuses_a_taken_name_and_a_non_kind() -> None:
    class Impostor(WorkloadKind):
        kind: Literal["gamma"]

        def arrivals(self, duration_s: float, rng: np.random.Generator,
                     ctx: WorkloadContext) -> np.ndarray:
            return np.empty(0)

        def rate(self, ctx: WorkloadContext) -> RateFunction:
            return lambda t: np.zeros(np.shape(t))

        def expected(self, duration_s: float, ctx: WorkloadContext) -> float:
            return 0.0

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    with pytest.raises(TypeError):
        register(dict)  # type: ignore[type-var]

    class Unfinished(WorkloadKind):
        kind: Literal["unfinished"]

    with pytest.raises(TypeError, match="does not implement arrivals, expected, rate"):
        register(Unfinished)
    assert register(GammaWorkload) is GammaWorkload  # again: no-op
    assert list(KINDS) == BUILT_IN


def test_input_files_walks_sums_in_order() -> None:
    w = make({"kind": "sum", "workloads": [
        {"kind": "trace", "path": "a.csv", "timestamp_column": "t"},
        {"kind": "constant", "rate_rps": 1},
        {"kind": "sum", "workloads": [
            {"kind": "trace", "path": "b.csv", "count_column": "c", "interval_s": 1},
            {"kind": "gamma", "rate_rps": 1, "cv": 1}]},
        {"kind": "trace", "path": "a.csv", "timestamp_column": "t"}]})
    assert input_files(w) == ["a.csv", "b.csv", "a.csv"]
    sc = load_scenario(scenarios_dir() / "trace_example.yaml")
    assert input_files(sc.services[0].workload) == ["data/trace_example.csv"]
    assert input_files(make({"kind": "gamma", "rate_rps": 3, "cv": 0.5})) == []


# ------------------------------------------------------------------------------------ gamma
@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0])
def test_gamma_gaps_have_the_known_mean_cv_and_distribution(cv: float) -> None:
    """~2e5 gaps at 50/s. Mean: sd cv*mu/sqrt(n). Squared CV v/m^2 by the delta method, with
    the gamma's skewness 2*cv and excess kurtosis 6*cv^2: sd cv^2*sqrt(2*(1 + cv^2)/n)."""
    rate = 50.0
    a = generate_arrivals(make({"kind": "gamma", "rate_rps": rate, "cv": cv}), 4000.0,
                          np.random.default_rng(11))
    gaps = np.diff(a)
    n = gaps.size
    assert n > 150_000
    mu = 1.0 / rate
    assert abs(gaps.mean() - mu) < Z999 * cv * mu / math.sqrt(n)
    cv2 = gaps.var(ddof=1) / gaps.mean() ** 2
    assert abs(cv2 - cv**2) < Z999 * cv**2 * math.sqrt(2 * (1 + cv**2) / n)
    shape = 1 / cv**2
    assert stats.kstest(gaps, stats.gamma(shape, scale=mu / shape).cdf).pvalue > P_MIN


@pytest.mark.parametrize("cv", [0.3, 2.0])
def test_gamma_first_arrival_is_the_equilibrium_forward_recurrence(cv: float) -> None:
    """The first arrival's law is ``F_e(x) = (1/mu) int_0^x (1 - F(u)) du``; for Gamma(k, theta)
    that is ``x (1 - G_k(x)) / mu + G_{k+1}(x)``. A plain first gap fails this at once."""
    rate, k = 4.0, 1 / cv**2
    theta = 1 / (rate * k)
    w = make({"kind": "gamma", "rate_rps": rate, "cv": cv})
    first = np.array([generate_arrivals(w, 60.0, np.random.default_rng(s))[0]
                      for s in range(3000)])

    def cdf(x: np.ndarray) -> np.ndarray:
        return x * stats.gamma.sf(x, k, scale=theta) * rate + stats.gamma.cdf(x, k + 1,
                                                                            scale=theta)

    assert stats.kstest(first, cdf).pvalue > P_MIN
    assert stats.kstest(first, stats.gamma(k, scale=theta).cdf).pvalue < 1e-6


@pytest.mark.parametrize("cv", [0.3, 2.0])
def test_gamma_counts_match_expected_arrivals(cv: float) -> None:
    """E[N(0, T)] = rate * T exactly (stationary start), even for a window of one mean gap,
    where a plain first gap would be off by about (cv^2 - 1)/2; over a long window the count's
    sd is about cv * sqrt(rate * T)."""
    rate = 4.0
    w = make({"kind": "gamma", "rate_rps": rate, "cv": cv})
    short = 0.25
    assert expected_arrivals(w, short) == rate * short
    counts = np.array([generate_arrivals(w, short, np.random.default_rng(s)).size
                       for s in range(4000)])
    assert abs(counts.mean() - 1.0) < Z999 * counts.std(ddof=1) / math.sqrt(counts.size)
    long = 25_000.0
    n = generate_arrivals(w, long, np.random.default_rng(5)).size
    assert expected_arrivals(w, long) == rate * long
    assert abs(n - rate * long) < Z999 * cv * math.sqrt(rate * long) + 2
    r = rate_function(w)(np.array([-1.0, 0.0, 3.5, 1e9]))
    assert r.tolist() == [0.0, rate, rate, rate]


def test_gamma_is_deterministic_for_a_seed_and_sorted_in_range() -> None:
    w = make({"kind": "gamma", "rate_rps": 300.0, "cv": 1.7})
    runs = [generate_arrivals(w, 100.0, np.random.default_rng(s)) for s in (3, 3, 4)]
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    for a in runs:
        assert a.dtype == np.float64 and np.all(np.diff(a) >= 0)
        assert a[0] >= 0 and a[-1] < 100.0
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    generate_arrivals(w, 50.0, rng_a)
    generate_arrivals(w, 50.0, rng_b)
    assert rng_a.random() == rng_b.random()  # same draws consumed


def test_gamma_many_chunks_still_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 64 gaps: the chunk boundaries must not bend the process."""
    monkeypatch.setattr(gamma_mod, "_MAX_CHUNK", 64)
    rate, cv = 20.0, 1.5
    a = generate_arrivals(make({"kind": "gamma", "rate_rps": rate, "cv": cv}), 2000.0,
                          np.random.default_rng(1))
    gaps = np.diff(a)
    assert a.size > 30_000 and np.all(gaps >= 0) and a[-1] < 2000.0
    shape = 1 / cv**2
    assert stats.kstest(gaps, stats.gamma(shape, scale=1 / (rate * shape)).cdf).pvalue > P_MIN
    assert abs(a.size - rate * 2000.0) < Z999 * cv * math.sqrt(rate * 2000.0) + 2


def test_gamma_edge_cases(tiny_scenario: Any) -> None:
    periodic = generate_arrivals(make({"kind": "gamma", "rate_rps": 10.0, "cv": 0}), 5.0,
                                 np.random.default_rng(2))
    assert periodic.size in (49, 50) and 0 <= periodic[0] < 0.1
    assert np.allclose(np.diff(periodic), 0.1)
    assert periodic[-1] < 5.0
    silent = make({"kind": "gamma", "rate_rps": 0, "cv": 3})
    assert generate_arrivals(silent, 100.0, np.random.default_rng(0)).size == 0
    assert expected_arrivals(silent, 100.0) == 0.0
    assert generate_arrivals(make(_minimal("gamma")), 0.0, np.random.default_rng(0)).size == 0
    for bad in ({"cv": 11}, {"cv": -0.1}, {"rate_rps": -1}, {"cv": None}, {"rate_rps": "inf"}):
        with pytest.raises(UserError):
            load_scenario(tiny_scenario(svc_workload={**_minimal("gamma"), **bad}))


def test_gamma_runs_in_a_simulation(tiny_scenario: Any) -> None:
    from simscale.simulator.runner import run_scenario

    sc = load_scenario(tiny_scenario(svc_workload={"kind": "gamma", "rate_rps": 10, "cv": 2}))
    runs = run_scenario(sc).runs
    assert 100 < int(runs["arrivals"].iloc[0]) < 300


# ------------------------------------------------------------------------- a third-party kind
class PeriodicWorkload(WorkloadKind):
    """A kind written outside the package: one request every ``period_s`` seconds from
    ``offset_s``; it claims to read ``schedule`` (to show :func:`input_files`)."""

    kind: Literal["periodic"]
    period_s: PositiveFloat
    offset_s: NonNegFloat = 0.0
    schedule: str | None = None

    def arrivals(self, duration_s: float, rng: np.random.Generator, ctx: WorkloadContext
                 ) -> np.ndarray:
        return np.arange(self.offset_s, duration_s, self.period_s, dtype=np.float64)

    def rate(self, ctx: WorkloadContext) -> RateFunction:
        return lambda t: np.where(np.asarray(t) >= self.offset_s, 1.0 / self.period_s, 0.0)

    def expected(self, duration_s: float, ctx: WorkloadContext) -> float:
        return max(0.0, math.ceil((duration_s - self.offset_s) / self.period_s))

    def input_files(self) -> list[str]:
        return [self.schedule] if self.schedule else []


@pytest.fixture
def periodic() -> Any:
    register(PeriodicWorkload)  # the one line
    try:
        yield PeriodicWorkload
    finally:
        unregister("periodic")


def test_a_third_party_kind_works_end_to_end(periodic: Any, tiny_scenario: Any) -> None:
    data = tiny_scenario(svc_workload={"kind": "sum", "workloads": [
        {"kind": "periodic", "period_s": 0.5, "offset_s": 0.25, "schedule": "plan.txt"},
        {"kind": "gamma", "rate_rps": 2, "cv": 0.5}]})
    sc = load_scenario(data)
    w = sc.services[0].workload
    assert isinstance(w.workloads[0], periodic)
    a = generate_arrivals(w, sc.duration_s, np.random.default_rng(sc.seed))
    own = np.arange(0.25, 20.0, 0.5)
    assert np.isin(own, a).all() and a.size > own.size and np.all(np.diff(a) >= 0)
    assert expected_arrivals(w, sc.duration_s) == 40 + 2 * 20
    assert rate_function(w)(np.array([0.0, 1.0])).tolist() == [2.0, 4.0]
    assert input_files(w) == ["plan.txt"]
    assert "PeriodicWorkload" in Scenario.model_json_schema()["$defs"]
    alone = load_scenario(tiny_scenario(svc_workload={"kind": "periodic", "period_s": 0.5}))
    from simscale.simulator.runner import run_scenario

    assert int(run_scenario(alone).runs["arrivals"].iloc[0]) == 40


def test_an_unregistered_kind_is_refused_again(periodic: Any, tiny_scenario: Any) -> None:
    unregister("periodic")
    try:
        with pytest.raises(UserError, match="periodic"):
            load_scenario(tiny_scenario(svc_workload={"kind": "periodic", "period_s": 0.5}))
        assert "PeriodicWorkload" not in Scenario.model_json_schema()["$defs"]
    finally:
        register(PeriodicWorkload)  # for the fixture's clean-up
