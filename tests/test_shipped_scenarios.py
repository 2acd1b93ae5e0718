"""The shipped scenarios: they validate, run, and show what they are shipped to show."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import simscale
from simscale.simulator.scenario import load_scenario, scenarios_dir

SHIPPED = sorted(p.stem for p in scenarios_dir().glob("*.yaml"))
WITH_ORACLE = ["flash_crowd", "step", "diurnal", "bursty_mmpp", "trace_example"]


def simulate(name: str, **kw: object) -> simscale.simulator.results.SimulationResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shipped profile may come from another machine
        return simscale.simulate(scenarios_dir() / f"{name}.yaml", **kw)


def test_every_documented_scenario_ships() -> None:
    expected = {"flash_crowd", "diurnal", "step", "bursty_mmpp", "trace_example", "seed_7min",
                "validate_small"}
    assert expected <= set(SHIPPED)
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    for name in expected:
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_validates(name: str) -> None:
    sc = load_scenario(scenarios_dir() / f"{name}.yaml")
    assert sc.name == name
    assert sc.services and sc.strategies


def test_flash_crowd_compares_all_strategies_with_conservation() -> None:
    res = simulate("flash_crowd")
    runs = res.runs
    assert set(runs["strategy"]) == {"static", "threshold", "hpa", "kpa", "predictive",
                                     "cost_aware", "oracle"}
    assert set(runs["service"]) == {"linear_regression", "xgboost", "resnet50"}
    assert (runs["arrivals"] == runs["completed"] + runs["dropped"]
            + runs["in_flight_at_end"]).all()
    resnet = runs[runs["service"] == "resnet50"].set_index("strategy")
    # the crowd is ten times the base rate: one replica cannot keep up, autoscalers can
    assert resnet.loc["static", "slo_attainment"] < 0.5
    assert resnet.loc["oracle", "slo_attainment"] > 0.95
    assert resnet.loc["oracle", "scale_events"] > 0  # more replicas or larger ones
    # common random numbers: every strategy saw the same arrivals
    assert resnet["arrivals"].nunique() == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_no_strategy_meeting_the_target_costs_less_than_the_lower_bound(name: str) -> None:
    """No strategy that reaches a service's ``slo_target`` costs less than the lower bound on
    the optimum (simulator/bounds.py; proof in docs/BOUNDS.md): true by construction, unlike
    "the oracle is cheapest", which cost_aware broke on trace_example. Runs with resize events
    are held to ``lower_bound_usd`` (any schedule), the others to the fixed-size bound."""
    from simscale.simulator.bounds import scenario_bounds
    from simscale.simulator.runner import load_scenario_profile

    res = simulate(name)
    sc = load_scenario(scenarios_dir() / f"{name}.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = load_scenario_profile(sc)
    bounds = {(b["service"], b["replication"]): b
              for b in scenario_bounds(sc, sc.seed, 1, prof, with_hindsight=False)}
    for run in res.summary["runs"]:
        b = bounds[(run["service"], run["replication"])]
        resized = any(e["action"] == "resize" for e in run["events"])
        lower = b["lower_bound_usd" if resized else "lower_bound_fixed_size_usd"]
        att = run["slo_attainment"]
        if att is not None and att >= b["slo_target"]:
            assert run["cost_usd"] >= lower * (1 - 1e-9), (
                f"{name}/{run['service']}: {run['label']} costs {run['cost_usd']:.5f} at SLO "
                f"{att:.4f}, below the lower bound {lower:.5f}")


def _queue(res: simscale.simulator.results.SimulationResult, label: str) -> pd.Series:
    ts = res.timeseries
    sel = ts[(ts["service"] == "resnet50") & (ts["label"] == label)]
    return sel.set_index("time_s")["queue_length"]


def test_seed_7min_no_scaling_queue_grows_without_bound() -> None:
    res = simulate("seed_7min")
    q = _queue(res, "no_scaling")
    # ResNet50 at 1 request/s is more than one replica can serve: the queue grows through
    # each doubled phase (60-180 s and 300-420 s), roughly linearly
    for t0, t1 in ((60, 180), (300, 420)):
        seg = q.loc[t0:t1 - 1]
        slope = np.polyfit(seg.index.to_numpy(float), seg.to_numpy(float), 1)[0]
        assert slope > 0.1, f"queue slope {slope:.3f}/s in {t0}-{t1} s"
        assert seg.iloc[-10:].mean() > seg.iloc[:10].mean() + 10
    assert q.loc[400:].mean() > 10
    runs = res.runs.set_index(["service", "label"])
    horizontal = runs.loc[("resnet50", "horizontal")]
    assert horizontal["max_replicas"] > 1
    assert _queue(res, "horizontal").max() < q.max()
    assert horizontal["slo_attainment"] > runs.loc[("resnet50", "no_scaling"), "slo_attainment"]
    # the vertical variant resizes in place (threads), never adds replicas
    vertical = runs.loc[("resnet50", "vertical")]
    assert vertical["max_replicas"] == 1
    events = res.events
    resized = events[(events["label"] == "vertical") & (events["action"] == "resize")]
    assert len(resized) > 0


def test_readme_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python API example runs as written (from a folder holding the scenarios),
    and writes what it says it writes."""
    import re

    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    (tmp_path / "scenarios").symlink_to(root / "scenarios")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "results" / "mine" / "summary.json").is_file()
    assert (tmp_path / "results" / "mine" / "report.html").is_file()
    model, loop = namespace["model"], namespace["loop"]
    # the serving replica of the shipped profile differs from predict in a tight loop
    assert float(model.median_s(1)) != float(loop.median_s(1))  # type: ignore[attr-defined]
