"""Bounds on the optimal cost (simulator/bounds.py, docs/BOUNDS.md): no strategy that reaches
the SLO target costs less than the lower bound; the hindsight schedule is what it says."""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simscale.errors import UserError
from simscale.simulator.bounds import hindsight, lower_bound, scenario_bounds, service_costs
from simscale.simulator.engine import run_strategy
from simscale.simulator.metrics import run_figures
from simscale.simulator.runner import load_scenario_profile, replication_inputs, run_scenario
from simscale.simulator.scenario import load_scenario
from simscale.strategies.hindsight import Schedule

STRATEGIES = ["static", "threshold", "hpa", "kpa", "cost_aware", "oracle"]


def applicable_bound(bound: dict, run: dict) -> float:
    """The bound a run is held to: any schedule's when it resized, else the fixed-size one."""
    resized = any(e["action"] == "resize" for e in run["events"])
    return bound["lower_bound_usd" if resized else "lower_bound_fixed_size_usd"]


def assert_no_strategy_beats_bound(summary: dict) -> int:
    """Every run that reaches its service's slo_target costs at least its lower bound;
    returns how many runs reached the target."""
    bounds = {(b["service"], b["replication"]): b for b in summary["bounds"]}
    met = 0
    for run in summary["runs"]:
        b = bounds[(run["service"], run["replication"])]
        lb = applicable_bound(b, run)
        assert math.isfinite(lb) and lb >= 0
        assert b["lower_bound_usd"] <= b["lower_bound_fixed_size_usd"] + 1e-15
        att = run["slo_attainment"]
        if att is not None and math.isfinite(att) and att >= b["slo_target"]:
            met += 1
            assert run["cost_usd"] >= lb * (1 - 1e-9) - 1e-15, (
                f"{run['label']} on {run['service']}: cost {run['cost_usd']} at SLO {att} "
                f"is below the lower bound {lb}")
    return met


@st.composite
def workloads(draw: st.DrawFn) -> dict:
    rate = draw(st.sampled_from([2.0, 8.0, 30.0]))
    if draw(st.booleans()):
        return {"kind": "constant", "rate_rps": rate}
    on = draw(st.sampled_from([10, 20]))
    steps = [{"at_s": t, "rate_rps": rate if (t // on) % 2 else rate / 4}
             for t in range(0, 120, on)]
    return {"kind": "step", "steps": steps}


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    lo = draw(st.integers(0, 2))
    hi = draw(st.integers(max(lo, 1), 4))
    dist = draw(st.sampled_from([
        {"dist": "exponential", "mean_ms": 40},
        {"dist": "lognormal", "mean_ms": 60, "cv": 1.5},
        {"dist": "deterministic", "mean_ms": 25}]))
    svc = {"name": "s", "model": "m", "slo_ms": draw(st.sampled_from([100, 250, 1000])),
           "slo_target": draw(st.sampled_from([0.5, 0.9, 0.99, 1.0])),
           "service_time": dist, "cold_start_s": draw(st.sampled_from([0, 2, 10])),
           "batching": {"max_batch_size": draw(st.sampled_from([1, 4])), "max_wait_ms": 5},
           "replicas": {"initial": max(lo, 1), "min": lo, "max": hi},
           "cost_per_replica_hour": 0.1, "workload": draw(workloads())}
    if draw(st.booleans()):
        svc["queue"] = {"timeout_ms": 2000}
    sync = draw(st.sampled_from([5, 15]))
    strategies = [{"name": "static", "label": f"static{n}", "replicas": n}
                  for n in sorted({lo, 1, hi})]
    strategies += [{"name": n, "sync_period_s": sync} for n in STRATEGIES if n != "static"]
    strategies.append({"name": "threshold", "label": "threshold_tight", "metric": "utilization",
                       "upper_threshold": draw(st.sampled_from([0.5, 0.9])),
                       "lower_threshold": 0.2})
    return {"name": "prop", "duration_s": 120, "seed": draw(st.integers(0, 1000)),
            "warmup_s": draw(st.sampled_from([0, 10])), "services": [svc],
            "strategies": strategies}


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_no_strategy_that_meets_the_target_costs_less_than_the_lower_bound(raw: dict) -> None:
    sc = load_scenario(raw)
    res = run_scenario(sc)
    summary = dict(res.summary)
    summary["bounds"] = scenario_bounds(sc, sc.seed, 1, None, with_hindsight=False)
    assert_no_strategy_beats_bound(summary)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_lower_bound_property_more_examples(raw: dict) -> None:
    sc = load_scenario(raw)
    summary = dict(run_scenario(sc, bounds=True).summary)
    assert_no_strategy_beats_bound(summary)


def _small_profile_scenario() -> dict:
    return {"name": "hs", "duration_s": 240, "seed": 3, "warmup_s": 10, "services": [
        {"name": "resnet", "model": "resnet50", "slo_ms": 800, "slo_target": 0.95,
         "batching": {"max_batch_size": 4, "max_wait_ms": 20},
         "queue": {"timeout_ms": 5000}, "replicas": {"initial": 1, "min": 1, "max": 6},
         "cost_per_replica_hour": 0.1,
         "workload": {"kind": "step", "steps": [{"at_s": 0, "rate_rps": 4},
                                                {"at_s": 80, "rate_rps": 24},
                                                {"at_s": 160, "rate_rps": 4}]}},
        {"name": "fast", "model": "m", "slo_ms": 100, "slo_target": 0.99,
         "service_time": {"dist": "lognormal", "mean_ms": 30, "cv": 0.5}, "cold_start_s": 5,
         "replicas": {"initial": 1, "min": 1, "max": 5}, "cost_per_replica_hour": 0.05,
         "workload": {"kind": "constant", "rate_rps": 60}}],
        "strategies": [{"name": "static"}, {"name": "cost_aware"}, {"name": "oracle"}]}


def test_hindsight_schedule_reproduces_and_is_above_the_lower_bound() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shipped profile may come from another machine
        sc = load_scenario(_small_profile_scenario())
        prof = load_scenario_profile(sc)
    inputs = replication_inputs(sc, sc.seed, prof)
    found = hindsight(sc, inputs, prof)
    assert set(found) == {"resnet", "fast"}
    strats = {name: Schedule(h.counts, h.period_s) for name, h in found.items()}
    again = {r.service.name: run_figures(r, sc.warmup_s)[0]
             for r in run_strategy(sc, strats, inputs, prof, stream=False)}
    for svc in sc.services:
        h = found[svc.name]
        assert h.runs <= 12
        assert again[svc.name]["cost_usd"] == pytest.approx(h.cost_usd, rel=1e-12)
        assert again[svc.name]["slo_attainment"] == pytest.approx(h.slo_attainment, rel=1e-12)
        arr, unit, _ = inputs[svc.name].arrays()
        lb = lower_bound(sc, svc, arr, service_costs(sc, svc, prof, unit))
        assert lb.any_usd <= lb.fixed_size_usd
        if h.meets_target:
            assert h.slo_attainment >= svc.slo_target
            assert h.cost_usd >= lb.fixed_size_usd * (1 - 1e-9)
    assert found["resnet"].meets_target  # 6 replicas are plenty for 24 requests/s


def test_simulate_with_bounds_writes_them(tmp_path) -> None:
    raw = _small_profile_scenario()
    raw["duration_s"] = 120
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_scenario(load_scenario(raw), bounds=True)
    bounds = res.summary["bounds"]
    assert [b["service"] for b in bounds] == ["resnet", "fast"]
    for b in bounds:
        assert {"service", "replication", "slo_target", "lower_bound_usd", "hindsight_usd",
                "hindsight_slo_attainment"} <= set(b)
        if b["hindsight_meets_target"]:
            assert b["hindsight_usd"] >= b["lower_bound_fixed_size_usd"] * (1 - 1e-9)
    assert_no_strategy_beats_bound(res.summary)
    res.save(tmp_path)
    from simscale.reports.data import load_results
    from simscale.reports.tables import bounds_table_html

    html = bounds_table_html(load_results(tmp_path).summary, "resnet")
    assert html is not None and "cost/lower bound" in html
    # whether each run met the target reads yes / no (one replication), not 100% / 0%
    assert ">yes<" in html or ">no<" in html


def test_no_bounds_when_not_asked() -> None:
    raw = _small_profile_scenario()
    raw["services"] = raw["services"][1:]
    raw["duration_s"] = 30
    assert "bounds" not in run_scenario(load_scenario(raw)).summary


@pytest.mark.parametrize("value", [0, -0.5, 1.01, 2, "high", float("nan"), None])
def test_bad_slo_target_is_a_user_error_naming_the_field(value: object) -> None:
    raw = _small_profile_scenario()
    raw["services"][1]["slo_target"] = value
    raw["__source__"] = "bad.yaml"
    with pytest.raises(UserError) as err:
        load_scenario(raw)
    line = err.value.format()
    assert "slo_target" in line and "bad.yaml" in line and "\n" not in line.strip()


def test_slo_target_defaults_to_0_99() -> None:
    raw = _small_profile_scenario()
    del raw["services"][1]["slo_target"]
    assert load_scenario(raw).services[1].slo_target == 0.99


def test_the_solver_writes_nothing_to_standard_output() -> None:
    """HiGHS 1.7+ writes a banner to the process's standard output (file descriptor 1) when a
    process makes its first solver; a simulation's output is its own (a fresh process: the
    first solver it makes)."""
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from simscale.simulator.lp import highs_min\n"
            "v = highs_min(np.array([1.0, 2.0]), np.zeros(2), np.array([np.inf, np.inf]),\n"
            "              np.array([0, 0]), np.array([0, 1]), np.array([-1.0, -1.0]),\n"
            "              np.array([-3.0]))\n"
            "print(f'value {v:g}')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout == "value 3\n"
