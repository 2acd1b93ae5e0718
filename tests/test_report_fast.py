"""The report without plotly.py (issue #13, "fast start"): figures are hand-built dicts in
plotly.js's schema, written by our own encoder, and the grouped statistics behind them use
numpy instead of pandas ``groupby``.

plotly.py is the referee here: every figure the reports build is validated by
``go.Figure(fig)`` (which raises on a misspelt property or a bad value, so a typo in a
hand-built dict fails CI) and must encode to exactly the JSON plotly.py itself would write.
The page itself must not import plotly.py at all.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from simscale.reports import figures as F
from simscale.reports.data import load_results
from simscale.reports.html import Wide, build_report_html, service_section, split_title
from simscale.reports.plotly_js import figure_json, plotly_js, plotly_js_path
from simscale.reports.stats import downsample, replication_band, t_halfwidth
from simscale.reports.tables import strategy_stats
from simscale.reports.tune_report import pareto_figure as tune_pareto_figure

_spec = importlib.util.spec_from_file_location(
    "_report_fixtures", Path(__file__).with_name("test_reports.py"))
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)  # the synthetic result folders of test_reports
make_results = _fixtures.make_results
STRATEGIES = _fixtures.STRATEGIES


# --------------------------------------------------------------------------- every figure


def _report_figures(outdir: Path) -> list[dict[str, Any]]:
    """Every figure of the run report of ``outdir``, as the report builds it."""
    res = load_results(outdir)
    strategies = dict(zip(res.runs["label"], res.runs["strategy"], strict=True))
    colors = F.strategy_colors(res.labels, strategies)
    figs = []
    for service in dict.fromkeys(res.runs["service"]):
        for item in service_section(res, service, colors):
            item = item.item if isinstance(item, Wide) else item
            if isinstance(item, dict):
                figs.append(item)
    return figs


def _tune_result() -> dict[str, Any]:
    """A tune.json as :func:`simscale.sweeps.tune.tune` writes it (the fields the page reads)."""
    def trial(i: int, cost: float, slo: float, **extra: Any) -> dict[str, Any]:
        return {"trial": i, "params": {"sync_period_s": 5 + i, "target": 0.5 + i / 10},
                "cost_usd": cost, "target_value": slo, "target_worst": slo - 0.01,
                "slo_attainment": slo, "feasible": slo >= 0.99, "replications": 1, **extra}

    trials = [trial(0, 0.03, 0.995), trial(1, 0.02, 0.97), trial(2, 0.025, 0.999),
              trial(3, 0.04, 1.0), trial(4, math.nan, math.nan, error="boom")]
    return {
        "scenario": "tiny", "strategy": "mine", "trials": 4, "replications": 1, "seed": 1,
        "sampler": "tpe", "space": [{"name": "sync_period_s", "low": 1, "high": 30}],
        "target": {"figure": "slo_attainment", "op": ">=", "value": 0.99,
                   "text": "slo_attainment>=0.99"},
        "services": {"svc": {"trials": trials, "baseline": {**trials[0], "baseline": True},
                             "best": {**trials[2], "changed": {"sync_period_s":
                                                               {"from": 5, "to": 7}}}}},
    }


@pytest.fixture(scope="module")
def all_figures(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every kind of figure, in every variant the builders have: bands or none, requests or
    summary percentiles, events or none, a sweep with numeric and categorical parameters,
    the tune page's figure and the secondary-axis figure."""
    root = tmp_path_factory.mktemp("fast")
    figs = _report_figures(make_results(root / "full"))  # 2 replications, requests
    figs += _report_figures(make_results(root / "single", replications=1,
                                         with_requests=False))
    quiet = make_results(root / "quiet", strategies=[("static", "static")], replications=1,
                         with_requests=False)
    summary = json.loads((quiet / "summary.json").read_text(encoding="utf-8"))
    for run in summary["runs"]:
        run["events"] = []
    (quiet / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    figs += _report_figures(quiet)
    sweep = _fixtures._sweep_frame()
    sweep["policy"] = np.where(sweep["seed"] == 1, "a<b>", "c")
    for param in ("services.0.replicas.max", "policy"):
        figs.append(F.sweep_figure(sweep, param, "latency_ms.p95", series="strategy"))
    figs.append(tune_pareto_figure(_tune_result(), "svc"))
    return figs


def test_every_report_figure_is_valid_plotly(all_figures: list[dict[str, Any]]) -> None:
    import plotly.graph_objects as go

    assert len(all_figures) >= 3 * 6 + 3
    kinds = set()
    for fig in all_figures:
        go.Figure(fig)  # raises ValueError on any property plotly.js does not know
        # and without the title, as the page holds it
        go.Figure(split_title(fig)[1])
        kinds.add(bool(fig["layout"].get("yaxis2")))
    assert kinds == {True, False}  # the secondary-axis layout is among them


def test_figure_json_is_what_plotly_writes(all_figures: list[dict[str, Any]]) -> None:
    """Our encoder writes the JSON plotly.py's would (typed arrays, NaN as null, ``<``
    escaped), so plotly.js gets exactly what it got when the report used plotly.py."""
    import plotly.graph_objects as go
    import plotly.io as pio

    for fig in all_figures:
        ours = figure_json(fig)
        assert json.loads(ours) == json.loads(pio.to_json(go.Figure(fig), validate=False))
        assert "</" not in ours and "<" not in ours


def test_figure_json_values() -> None:
    fig = {"data": [{"type": "scatter", "x": np.array([1.5, np.nan], dtype=np.float32),
                     "y": [np.float64(2.0), math.inf, None], "ids": np.array([1, 2]),
                     "text": ["</script><b>", np.str_("ok")]}],
           "layout": {"height": np.int64(300)}}
    out = json.loads(figure_json(fig))
    trace = out["data"][0]
    assert trace["x"]["dtype"] == "f4"
    x = np.frombuffer(__import__("base64").b64decode(trace["x"]["bdata"]), dtype="<f4")
    assert x[0] == 1.5 and np.isnan(x[1])
    assert trace["y"] == [2.0, None, None]  # NaN and inf are null, as plotly writes them
    assert trace["ids"]["dtype"] == "i1"  # int64 shrinks to the smallest integer that fits
    assert trace["text"] == ["</script><b>", "ok"]
    assert out["layout"]["height"] == 300 and isinstance(out["layout"]["height"], int)


def test_secondary_axis_layout_is_make_subplots() -> None:
    """The hand-made secondary-y layout is the one plotly.py's make_subplots makes."""
    from plotly.subplots import make_subplots

    fig = F.secondary_y_figure("t")
    F.add_trace(fig, F.scatter(x=[1], y=[2], name="left"))
    F.add_trace(fig, F.scatter(x=[1], y=[3], name="right"), secondary_y=True)
    ref = make_subplots(specs=[[{"secondary_y": True}]])
    ref.add_scatter(x=[1], y=[2], name="left", secondary_y=False)
    ref.add_scatter(x=[1], y=[3], name="right", secondary_y=True)
    ref = ref.to_plotly_json()
    for axis in ("xaxis", "yaxis", "yaxis2"):
        assert fig["layout"][axis] == ref["layout"][axis]
    assert [(t["xaxis"], t["yaxis"]) for t in fig["data"]] == [
        (t["xaxis"], t["yaxis"]) for t in ref["data"]]
    with pytest.raises(ValueError, match="secondary"):
        F.add_trace(F.base_figure("x"), F.scatter(x=[1], y=[1]), secondary_y=True)


def test_plotly_js_is_the_packaged_bundle() -> None:
    from plotly.offline import get_plotlyjs

    assert plotly_js_path().read_text(encoding="utf-8") == get_plotlyjs()
    assert plotly_js() == get_plotlyjs()  # (no "</script" in it to escape)


def test_report_does_not_import_plotly(tmp_path: Path) -> None:
    """Writing the run, sweep and tune pages loads no plotly.py module (plotly.js is read as
    a file), and neither does any figure builder."""
    out = make_results(tmp_path / "r", replications=2)
    tune = tmp_path / "tune.json"
    tune.write_text(json.dumps(_tune_result()), encoding="utf-8")
    probe = f"""
import json, sys
import pandas as pd
from simscale.reports import render_report, render_sweep_report
from simscale.reports.tune_report import render_tune_report
render_report({str(out)!r})
frame = pd.DataFrame({{"p": [1, 2, 1, 2], "strategy": ["a", "a", "b", "b"],
                       "latency_ms.p95": [1.0, 2.0, 3.0, 4.0]}})
render_sweep_report(frame, {str(tmp_path / "sweep")!r})
render_tune_report(json.loads(open({str(tune)!r}).read()), {str(tmp_path / "tune.html")!r})
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("plotly", "_plotly_utils"))))
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    for page in (out / "report.html", tmp_path / "sweep" / "report.html",
                 tmp_path / "tune.html"):
        assert page.read_text(encoding="utf-8").count("plotly.js v") == 1


def test_report_page_holds_the_figures_it_built(tmp_path: Path) -> None:
    """The page embeds each figure as built (title moved to the caption, nothing else
    changed): one figure checked end to end."""
    out = make_results(tmp_path / "r", replications=1, with_requests=False)
    res = load_results(out)
    text = build_report_html(res)
    first = _report_figures(out)[0]
    caption, bare = split_title(first)
    assert caption in text and figure_json(bare) in text
    assert "title" not in bare["layout"] and "title" in first["layout"]


# --------------------------------------------------------------------------- statistics


def _band_pandas(frame: pd.DataFrame, value: str, keys: tuple[str, ...] = ("label",),
                 floor: float | None = None) -> pd.DataFrame:
    """The replication band as pandas computes it (the specification of the numpy one)."""
    grouped = frame.groupby([*keys, "time_s"], sort=True, observed=True)[value]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    half = t_halfwidth(out["std"], out["n"])
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    if floor is not None:
        out["lo"], out["hi"] = out["lo"].clip(lower=floor), out["hi"].clip(lower=floor)
    return out.drop(columns="std")


def _downsample_pandas(frame: pd.DataFrame, values: list[str], window_s: float,
                       keys: tuple[str, ...], weights: dict[str, str]) -> pd.DataFrame:
    work = frame[[*keys, "time_s", *values, *set(weights.values())]].copy()
    work["time_s"] = np.floor(work["time_s"].to_numpy(dtype=float) / window_s) * window_s
    for value, weight in weights.items():
        w, v = work[weight].to_numpy(dtype=float), work[value].to_numpy(dtype=float)
        ok = ~np.isnan(v) & ~np.isnan(w)
        work[f"__w_{value}"] = np.where(ok, w, 0.0)
        work[f"__wv_{value}"] = np.where(ok, w * np.nan_to_num(v), 0.0)
    grouped = work.groupby([*keys, "time_s"], sort=True, observed=True)
    out = grouped[list(values)].mean()
    for value in weights:
        wsum = grouped[f"__w_{value}"].sum()
        out[value] = (grouped[f"__wv_{value}"].sum() / wsum.where(wsum > 0)).fillna(out[value])
    return out.reset_index()


def _frame(seed: int, n_reps: int = 3, n_t: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("zeta", "alpha", "mid"):
        for rep in range(n_reps):
            for t in range(n_t):
                rows.append({"label": label, "replication": rep, "time_s": float(t),
                             "v": rng.normal(5, 2), "w": rng.choice([0.0, 1.0, 3.0])})
    frame = pd.DataFrame(rows)
    frame.loc[rng.random(len(frame)) < 0.2, "v"] = np.nan  # missing values
    frame.loc[rng.random(len(frame)) < 0.05, "w"] = np.nan
    frame.loc[frame.sample(3, random_state=seed).index, "time_s"] = np.nan  # no group
    return frame


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_reps", [1, 2, 4])
def test_replication_band_matches_pandas(seed: int, n_reps: int) -> None:
    frame = _frame(seed, n_reps)
    for keys, floor in ((("label",), None), (("label",), 4.0), (("label", "replication"), 0.0)):
        ours = replication_band(frame, "v", keys=keys, floor=floor)
        ref = _band_pandas(frame, "v", keys, floor)
        assert list(ours.columns) == list(ref.columns)
        for col in ref.columns:
            if ref[col].dtype.kind in "fiu":
                np.testing.assert_allclose(ours[col].to_numpy(float),
                                           ref[col].to_numpy(float), rtol=1e-12, atol=1e-12)
            else:
                assert ours[col].tolist() == ref[col].tolist()
    empty = replication_band(frame.iloc[:0], "v")
    assert len(empty) == 0 and {"mean", "lo", "hi", "n"} <= set(empty.columns)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("window_s", [2.0, 7.0])
def test_downsample_matches_pandas(seed: int, window_s: float) -> None:
    frame = _frame(seed)
    for weights in ({}, {"v": "w"}):
        ours = downsample(frame, ["v"], window_s=window_s, weights=weights)
        ref = _downsample_pandas(frame, ["v"], window_s, ("label", "replication"), weights)
        assert list(ours.columns) == list(ref.columns)
        assert ours["label"].tolist() == ref["label"].tolist()
        for col in ("replication", "time_s", "v"):
            np.testing.assert_allclose(ours[col].to_numpy(float), ref[col].to_numpy(float),
                                       rtol=1e-12, atol=1e-12)
    # a window no wider than a bin leaves the frame as it is
    frame = frame.dropna(subset=["time_s"])
    same = downsample(frame, ["v"], window_s=1.0)
    assert same.equals(frame[["label", "replication", "time_s", "v"]].reset_index(drop=True))


def test_strategy_stats_feed_the_pareto_figure(tmp_path: Path) -> None:
    """The Pareto figure built from the report's table holds one point per strategy."""
    res = load_results(make_results(tmp_path / "r", replications=2, with_requests=False))
    stats = strategy_stats(res.runs[res.runs["service"] == res.runs["service"].iloc[0]])
    fig = F.pareto_figure(stats)
    names = [t["name"] for t in fig["data"] if t["name"] != "Pareto front"]
    assert names == [label for _, label in STRATEGIES]
