"""HTML reports: built from synthetic result folders that follow simulator/RESULTS.md.

The figures' data is checked by parsing the page and decoding the embedded plotly JSON, not by
looking for strings.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from simscale.errors import UserError
from simscale.reports import assemble_page, render_report, render_sweep_report
from simscale.reports.figures import ptext
from simscale.reports.html import Wide
from simscale.reports.stats import pareto_front

XSS = "<script>alert(1)</script>"
# a payload that would leave a mark in the DOM if it ever ran
XSS_IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
SERVICES = [
    {"name": "resnet50-api", "model": "resnet50", "device": "cpu", "threads": 2,
     "slo_ms": 300.0, "routing": "least_loaded", "max_batch_size": 8,
     "cost_per_replica_hour": 0.4},
    {"name": "xgb-fraud", "model": "xgboost", "device": "cpu", "threads": 1,
     "slo_ms": 60.0, "routing": "round_robin", "max_batch_size": 1,
     "cost_per_replica_hour": 0.1},
]
STRATEGIES = [("threshold", "threshold"), ("hpa", "hpa"), ("oracle", "oracle")]
FIGS_PER_SERVICE = 6  # replicas, p95 over time, CDF, queue, pareto, events


# --------------------------------------------------------------------------- fixture data


def make_results(
    outdir: Path,
    *,
    scenario: str = "flash-crowd",
    strategies: list[tuple[str, str]] = STRATEGIES,
    replications: int = 2,
    duration_s: int = 240,
    with_requests: bool = True,
    seed: int = 7,
) -> Path:
    """Write a synthetic, internally consistent result folder (RESULTS.md format)."""
    outdir.mkdir(parents=True, exist_ok=True)
    t = np.arange(duration_s, dtype=float)
    runs, ts_frames, req_frames = [], [], []
    for s_i, svc in enumerate(SERVICES):
        base = 12.0 if s_i == 0 else 30.0
        rate = base * (1 + 2.5 * np.exp(-(((t - duration_s * 0.55) / (duration_s * 0.12)) ** 2)))
        per_replica = 6.0 if s_i == 0 else 25.0
        for rep in range(replications):
            # common random numbers: same arrivals for every strategy of a replication
            arr_rng = np.random.default_rng([seed, s_i, rep])
            counts = arr_rng.poisson(rate)
            arrivals = np.concatenate(
                [b + np.sort(arr_rng.random(c)) for b, c in zip(t, counts, strict=True)])
            for k, (strategy, label) in enumerate(strategies):
                lag = {"oracle": -10, "threshold": 15, "hpa": 30}.get(strategy, 20 + 5 * k)
                need = np.ceil(rate / per_replica).astype(int)
                target = np.maximum(1, np.roll(need, lag) if lag > 0 else np.roll(need, lag))
                if lag > 0:
                    target[:lag] = need[0]
                if strategy != "oracle":  # replications differ around the peak
                    peak = (t > duration_s * 0.45) & (t < duration_s * 0.6)
                    target = target + (rep % 2) * peak.astype(int)
                if strategy == "hpa":  # slow to scale down: pays for it
                    target = target + (t > duration_s * 0.7).astype(int)
                target = np.maximum(1, target)
                starting = np.zeros_like(target)
                ready = target.copy()
                ups = np.flatnonzero(np.diff(target) > 0) + 1
                for u in ups:  # 8-s cold start
                    n = target[u] - target[u - 1]
                    ready[u:u + 8] -= n
                    starting[u:u + 8] += n
                ready = np.maximum(ready, 1)
                capacity = ready * per_replica
                overload = np.clip(rate / capacity, 0, 3)
                queue = np.maximum(0, (rate - capacity) * 2).round()
                # requests
                lat_rng = np.random.default_rng([seed, s_i, rep, k])
                sec = np.minimum(arrivals.astype(int), duration_s - 1)
                scale = svc["slo_ms"] * 0.35 * (1 + overload[sec] ** 3)
                lat_ms = lat_rng.lognormal(0, 0.35, arrivals.size) * scale
                end = arrivals + lat_ms / 1e3
                drop = np.where(lat_rng.random(arrivals.size) < 0.01 * overload[sec] ** 2,
                                "queue_full", "")
                end[drop != ""] = np.nan
                in_flight = (drop == "") & (end > duration_s)
                end[in_flight] = np.nan
                start = np.where(np.isnan(end), np.nan, arrivals + lat_ms / 2e3)
                req = pd.DataFrame({
                    "strategy": strategy, "label": label, "service": svc["name"],
                    "replication": rep, "arrival_s": arrivals, "start_s": start, "end_s": end,
                    "batch_size": 1, "replica": 0,
                    "drop_reason": pd.Categorical(
                        drop, categories=["", "queue_full", "timeout", "crash"]),
                })
                req_frames.append(req)
                done = req[req["drop_reason"] == ""].dropna(subset=["end_s"])
                lat_done = (done["end_s"] - done["arrival_s"]).to_numpy() * 1e3
                end_bin = np.floor(done["end_s"].to_numpy()).astype(int)
                p95_bin = np.full(duration_s, np.nan)
                thr = np.zeros(duration_s)
                by_bin = pd.Series(lat_done).groupby(end_bin)
                p95_bin[by_bin.size().index] = by_bin.quantile(0.95).to_numpy()
                thr[by_bin.size().index] = by_bin.size().to_numpy()
                n_drop = int((req["drop_reason"] != "").sum())
                finished = len(done) + n_drop
                replica_s = float((ready + starting).sum())
                ts_frames.append(pd.DataFrame({
                    "strategy": strategy, "label": label, "service": svc["name"],
                    "replication": rep, "time_s": t, "arrival_rate_rps": counts.astype(float),
                    "throughput_rps": thr, "dropped_rps": 0.0, "queue_length": queue,
                    "in_flight": queue + ready, "replicas_pending": 0,
                    "replicas_starting": starting, "replicas_ready": ready,
                    "replicas_draining": 0, "threads": svc["threads"],
                    "utilization": np.clip(rate / capacity, 0, 1),
                    "cost_rate_usd_per_h": (ready + starting) * svc["cost_per_replica_hour"],
                    "latency_p95_ms": p95_bin,
                }))
                events = []
                for i in np.flatnonzero(np.diff(target)) + 1:
                    a, b = int(target[i - 1]), int(target[i])
                    events.append({"time_s": float(i), "action": "scale_up" if b > a
                                   else "scale_down", "from_replicas": a, "to_replicas": b,
                                   "threads": svc["threads"], "reason": f"{strategy} rule"})
                if strategy == "hpa":
                    events.append({"time_s": duration_s * 0.3, "action": "crash",
                                   "from_replicas": 2, "to_replicas": 1,
                                   "threads": svc["threads"], "reason": "fault"})
                q = np.quantile(lat_done, [0.5, 0.95, 0.99])
                runs.append({
                    "strategy": strategy, "label": label, "service": svc["name"],
                    "replication": rep, "seed": seed + rep, "arrivals": int(arrivals.size),
                    "completed": int(len(done)), "dropped": n_drop,
                    "in_flight_at_end": int(arrivals.size - len(done) - n_drop),
                    "dropped_by_reason": {"queue_full": n_drop, "timeout": 0, "crash": 0},
                    "latency_ms": {"mean": float(lat_done.mean()), "p50": float(q[0]),
                                   "p95": float(q[1]), "p99": float(q[2]),
                                   "max": float(lat_done.max())},
                    "queue_wait_ms": {"mean": 1.0, "p50": 0.5, "p95": 3.0, "p99": 5.0},
                    "slo_ms": svc["slo_ms"],
                    "slo_attainment": float((lat_done <= svc["slo_ms"]).sum() / finished),
                    "replica_seconds": replica_s, "mean_replicas": replica_s / duration_s,
                    "max_replicas": int((ready + starting).max()),
                    "scale_events": sum(e["action"] != "crash" for e in events),
                    "cost_usd": replica_s / 3600 * svc["cost_per_replica_hour"],
                    "utilization": 0.6, "wall_s": 0.2, "events": events,
                    "info": {"predicted_slo": 0.99},
                })
    summary = {
        "scenario": scenario, "description": f"Synthetic {scenario} & friends for the tests",
        "seed": seed, "duration_s": float(duration_s), "warmup_s": 0.0,
        "simscale_version": "0.1.0", "replications": replications, "wall_s": 3.21,
        "profile": {"source": "default (shipped)", "created_at": "2026-11-01T10:00:00Z",
                    "machine": {"cpu_model": "Intel Xeon Test CPU", "cores": 2,
                                "memory_mb": 8192.0, "gpu": None, "platform": "Linux",
                                "python": "3.11.9", "libraries": {}, "date": "2026-11-01"}},
        "services": SERVICES, "runs": runs, "aggregate": [],
    }
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    pd.concat(ts_frames, ignore_index=True).to_parquet(outdir / "timeseries.parquet")
    if with_requests:
        pd.concat(req_frames, ignore_index=True).to_parquet(outdir / "requests.parquet")
    return outdir


# --------------------------------------------------------------------------- page parsing


class _PageParser(HTMLParser):
    """Collect script elements, figure divs, and table rows of a report page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.fig_divs: list[str] = []
        self.tables: list[list[list[tuple[str, str]]]] = []
        self.headings: list[str] = []
        self.fig_titles: list[str] = []
        self._h3: list[str] | None = None
        self._script: dict[str, str | None] | None = None
        self._buf: list[str] = []
        self._cell: list[str] | None = None
        self._cell_cls = ""
        self._h2: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self._script, self._buf = a, []
        elif tag == "div" and "fig" in (a.get("class") or "").split():
            self.fig_divs.append(a.get("id") or "")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell, self._cell_cls = [], a.get("class") or ""
        elif tag == "h2":
            self._h2 = []
        elif tag == "h3" and "fig-title" in (a.get("class") or ""):
            self._h3 = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._buf)))
            self._script = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell).strip(), self._cell_cls))
            self._cell = None
        elif tag == "h2" and self._h2 is not None:
            self.headings.append("".join(self._h2))
            self._h2 = None
        elif tag == "h3" and self._h3 is not None:
            self.fig_titles.append("".join(self._h3))
            self._h3 = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._buf.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._h2 is not None:
            self._h2.append(data)
        if self._h3 is not None:
            self._h3.append(data)


def parse_page(text: str) -> _PageParser:
    p = _PageParser()
    p.feed(text)
    p.close()
    return p


def figures_of(page: _PageParser) -> list[dict[str, Any]]:
    """The embedded figure specs, in page order (checked against the figure divs), each with
    its caption (the HTML title above it) stored as ``caption``."""
    specs = [(a.get("data-target"), json.loads(body)) for a, body in page.scripts
             if a.get("type") == "application/json"]
    assert [t for t, _ in specs] == page.fig_divs
    assert len(page.fig_titles) == len(specs)
    for (_, spec), caption in zip(specs, page.fig_titles, strict=True):
        spec["caption"] = caption
    return [s for _, s in specs]


def arr(value: Any) -> np.ndarray:
    """Decode a plotly JSON array (a list or a base64 typed array)."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            out = out.reshape([int(s) for s in str(value["shape"]).split(",")])
        return out.astype(float)
    return np.array([np.nan if v is None else v for v in value], dtype=float)


def trace(fig: dict[str, Any], name: str) -> dict[str, Any]:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, (name, [t.get("name") for t in fig["data"]])
    return found[0]


def title_of(fig: dict[str, Any]) -> str:
    return fig["caption"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results(tmp_path_factory.mktemp("res") / "out")


@pytest.fixture(scope="module")
def report(results_dir: Path) -> tuple[Path, str, _PageParser]:
    path = render_report(results_dir)
    text = path.read_text(encoding="utf-8")
    return path, text, parse_page(text)


# --------------------------------------------------------------------------- tests


def test_report_written_in_place_and_self_contained(report: tuple[Path, str, _PageParser],
                                                    results_dir: Path) -> None:
    path, text, page = report
    assert path == results_dir / "report.html"
    assert not [p for p in results_dir.iterdir() if p.name.endswith(".tmp")]
    # plotly.js once, in one plain script; no external resources
    assert text.count("plotly.js v") == 1
    code_scripts = [(a, b) for a, b in page.scripts if a.get("type") != "application/json"]
    assert len(code_scripts) == 2  # plotly.js, then the boot script
    assert not any("src" in a for a, _ in page.scripts)
    assert not re.search(r"<(link|img|iframe)[^>]+(href|src)=\"https?:", text)
    # size: plotly.js (~5 MB) plus the figures
    js_len = len(code_scripts[0][1])
    assert len(text.encode()) < js_len + 1_000_000, len(text.encode()) - js_len
    assert len(text.encode()) < 7_000_000


def test_header_and_sections(report: tuple[Path, str, _PageParser]) -> None:
    _, text, page = report
    for needle in ("flash-crowd", "Synthetic flash-crowd &amp; friends", "Intel Xeon Test CPU",
                   "2 cores", "2026-11-01", "default (shipped)", "0.1.0", "3.21 s"):
        assert needle in text, needle
    assert page.headings == ["Services", "Service resnet50-api", "Service xgb-fraud"]
    figs = figures_of(page)
    assert len(figs) == FIGS_PER_SERVICE * len(SERVICES)
    kinds = ["Arrival rate and replicas", "p95 latency over time", "Latency CDF",
             "Queue length", "Cost against SLO attainment", "Scaling events"]
    for i, fig in enumerate(figs):
        assert title_of(fig).startswith(kinds[i % FIGS_PER_SERVICE]), title_of(fig)


def _service_figs(page: _PageParser, s_i: int) -> list[dict[str, Any]]:
    figs = figures_of(page)
    return figs[s_i * FIGS_PER_SERVICE:(s_i + 1) * FIGS_PER_SERVICE]


@pytest.mark.parametrize("s_i", [0, 1])
def test_replicas_figure_data(report: tuple[Path, str, _PageParser], results_dir: Path,
                              s_i: int) -> None:
    fig = _service_figs(report[2], s_i)[0]
    ts = pd.read_parquet(results_dir / "timeseries.parquet")
    ts = ts[ts["service"] == SERVICES[s_i]["name"]]
    arrivals = trace(fig, "arrival rate")
    expect = ts.groupby("time_s")["arrival_rate_rps"].mean()
    np.testing.assert_allclose(arr(arrivals["x"]), expect.index, rtol=1e-6)
    np.testing.assert_allclose(arr(arrivals["y"]), expect.to_numpy(), rtol=1e-5)
    assert arrivals.get("yaxis", "y") == "y"
    for _, label in STRATEGIES:
        sub = ts[ts["label"] == label]
        for col, name in (("replicas_ready", label), ("replicas_starting", f"{label} · starting")):
            tr = trace(fig, name)
            assert tr["yaxis"] == "y2"  # replicas on the secondary axis
            exp = sub.groupby("time_s")[col].mean()
            assert len(arr(tr["x"])) == len(exp) == 240
            np.testing.assert_allclose(arr(tr["y"]), exp.to_numpy(), rtol=1e-6)
        band = trace(fig, f"{label} · 95% band")
        per_rep = sub.pivot(index="time_s", columns="replication", values="replicas_ready")
        hi = arr(band["y"])[:240]
        mean, sd = per_rep.mean(axis=1).to_numpy(), per_rep.std(axis=1, ddof=1).to_numpy()
        np.testing.assert_allclose(hi, mean + 12.706204736 * sd / math.sqrt(2), rtol=1e-5)
        assert len(arr(band["x"])) == 2 * 240


def test_latency_over_time_and_slo(report: tuple[Path, str, _PageParser],
                                   results_dir: Path) -> None:
    fig = _service_figs(report[2], 0)[1]
    assert "exact" in title_of(fig)
    slo = trace(fig, "SLO 300 ms")
    np.testing.assert_allclose(arr(slo["y"]), [300.0, 300.0])
    np.testing.assert_allclose(arr(slo["x"]), [0.0, 240.0])
    req = pd.read_parquet(results_dir / "requests.parquet")
    req = req[(req["service"] == "resnet50-api") & (req["label"] == "hpa")
              & (req["drop_reason"] == "") & req["end_s"].notna()]
    window = 5.0
    req = req.assign(w=np.floor(req["end_s"] / window) * window,
                     lat=(req["end_s"] - req["arrival_s"]) * 1e3)
    exp = req.groupby(["replication", "w"])["lat"].quantile(0.95).groupby("w").mean()
    tr = trace(fig, "hpa")
    np.testing.assert_allclose(arr(tr["x"]), exp.index, rtol=1e-6)
    np.testing.assert_allclose(arr(tr["y"]), exp.to_numpy(), rtol=1e-5)


def test_latency_cdf_from_requests(report: tuple[Path, str, _PageParser],
                                   results_dir: Path) -> None:
    fig = _service_figs(report[2], 1)[2]
    req = pd.read_parquet(results_dir / "requests.parquet")
    req = req[(req["service"] == "xgb-fraud") & (req["drop_reason"] == "")
              & req["end_s"].notna()]
    np.testing.assert_allclose(arr(trace(fig, "SLO 60 ms")["x"]), [60.0, 60.0])
    for _, label in STRATEGIES:
        lat = ((req["end_s"] - req["arrival_s"]) * 1e3)[req["label"] == label].to_numpy()
        tr = trace(fig, label)
        x, y = arr(tr["x"]), arr(tr["y"])
        assert 100 <= len(x) <= 500 and len(x) == len(y)
        assert np.all(np.diff(x) >= 0) and np.all(np.diff(y) > 0)
        assert y[0] == 0.0 and y[-1] == 1.0
        np.testing.assert_allclose(x[[0, -1]], [lat.min(), lat.max()], rtol=1e-5)
        np.testing.assert_allclose(x, np.quantile(lat, y), rtol=1e-4)


def test_queue_pareto_and_events(report: tuple[Path, str, _PageParser],
                                 results_dir: Path) -> None:
    figs = _service_figs(report[2], 0)
    summary = json.loads((results_dir / "summary.json").read_text())
    runs = pd.DataFrame([r for r in summary["runs"] if r["service"] == "resnet50-api"])
    ts = pd.read_parquet(results_dir / "timeseries.parquet")
    ts = ts[ts["service"] == "resnet50-api"]
    queue = figs[3]
    for _, label in STRATEGIES:
        exp = ts[ts["label"] == label].groupby("time_s")["queue_length"].mean()
        np.testing.assert_allclose(arr(trace(queue, label)["y"]), exp.to_numpy(), rtol=1e-6)
    pareto = figs[4]
    costs, slos = [], []
    for _, label in STRATEGIES:
        sub = runs[runs["label"] == label]
        tr = trace(pareto, label)
        costs.append(sub["cost_usd"].mean())
        slos.append(sub["slo_attainment"].mean())
        np.testing.assert_allclose(arr(tr["x"]), [costs[-1]], rtol=1e-6)
        np.testing.assert_allclose(arr(tr["y"]), [slos[-1] * 100], rtol=1e-6)
        assert tr["error_y"].get("visible", True) is not False  # two replications: bars
        assert len(arr(tr["error_y"]["array"])) == 1
        assert arr(tr["error_y"]["array"])[0] <= 100 - slos[-1] * 100 + 1e-6  # within 0..100%
    front = trace(pareto, "Pareto front")
    idx = pareto_front(costs, slos)
    np.testing.assert_allclose(arr(front["x"]), np.array(costs)[idx], rtol=1e-6)
    events = figs[5]
    for _, label in STRATEGIES:
        sub = runs[runs["label"] == label]
        n = sum(len(e) for e in sub["events"])
        tr = trace(events, label)
        assert len(arr(tr["x"])) == n > 0
        assert set(tr["y"]) == {f"{label} #0", f"{label} #1"}
        symbols = tr["marker"]["symbol"]
        assert ("x" in symbols) == (label == "hpa")  # the crash
        assert "triangle-up" in symbols and "triangle-down" in symbols


def test_table_values_and_best_marking(report: tuple[Path, str, _PageParser],
                                       results_dir: Path) -> None:
    page = report[2]
    summary = json.loads((results_dir / "summary.json").read_text())
    compare = [t for t in page.tables if t and t[0] and t[0][0][0] == "Strategy"]
    assert len(compare) == len(SERVICES)
    header = [c for c, _ in compare[0][0]]
    assert header[:9] == ["Strategy", "p50 (ms)", "p95 (ms)", "p99 (ms)", "SLO attainment",
                          "Drops", "Cost", "Mean replicas", "Scale events"]
    assert header[9:] == ["Cost vs oracle", "SLO vs oracle"]
    for s_i, table in enumerate(compare):
        runs = pd.DataFrame([r for r in summary["runs"]
                             if r["service"] == SERVICES[s_i]["name"]])
        runs["p95"] = [r["p95"] for r in runs["latency_ms"]]
        rows = table[1:]
        assert [r[0][0].split()[0] for r in rows] == [lab for _, lab in STRATEGIES]
        col = header.index("p95 (ms)")
        means = {lab: runs[runs["label"] == lab]["p95"].mean() for _, lab in STRATEGIES}
        for row, (_, lab) in zip(rows, STRATEGIES, strict=True):
            shown = float(row[col][0].split("±")[0].replace(",", ""))
            assert shown == pytest.approx(means[lab], rel=5e-3)
        # best p95 among non-oracle strategies is marked, the oracle is not ranked
        best_label = min((lab for _, lab in STRATEGIES if lab != "oracle"), key=means.get)
        marked = [r[0][0].split()[0] for r in rows if "best" in r[col][1].split()]
        assert marked == [best_label]
        slo_col = header.index("SLO attainment")
        slo = {lab: runs[runs["label"] == lab]["slo_attainment"].mean() for _, lab in STRATEGIES}
        best_slo = max((lab for _, lab in STRATEGIES if lab != "oracle"), key=slo.get)
        assert [r[0][0].split()[0] for r in rows if "best" in r[slo_col][1]] == [best_slo]
        oracle_row = rows[-1]
        assert oracle_row[header.index("Cost vs oracle")][0].startswith("+0.0%")


def test_without_requests_uses_summary_percentiles(tmp_path: Path) -> None:
    out = make_results(tmp_path / "r", with_requests=False, replications=1)
    page = parse_page(render_report(out).read_text(encoding="utf-8"))
    figs = figures_of(page)
    summary = json.loads((out / "summary.json").read_text())
    cdf = figs[2]
    assert "summary percentiles" in title_of(cdf)
    run = next(r for r in summary["runs"] if r["label"] == "hpa"
               and r["service"] == "resnet50-api")
    tr = trace(cdf, "hpa")
    np.testing.assert_allclose(arr(tr["y"]), [0.5, 0.95, 0.99, 1.0], rtol=1e-6)
    lat = run["latency_ms"]
    np.testing.assert_allclose(arr(tr["x"]), [lat["p50"], lat["p95"], lat["p99"], lat["max"]],
                               rtol=1e-5)
    assert "from 1-s bins" in title_of(figs[1])
    # one replication: no bands, no error bars
    assert not any("95% band" in t.get("name", "") for t in figs[0]["data"])
    assert trace(figs[4], "hpa")["error_y"]["visible"] is False


def test_long_runs_are_downsampled(tmp_path: Path) -> None:
    out = make_results(tmp_path / "long", duration_s=3600, with_requests=False,
                       strategies=STRATEGIES[:2], replications=2)
    path = render_report(out)
    figs = figures_of(parse_page(path.read_text(encoding="utf-8")))
    tr = trace(figs[0], "hpa")
    x = arr(tr["x"])
    assert len(x) == 600 and x[1] - x[0] == 6.0
    ts = pd.read_parquet(out / "timeseries.parquet")
    ts = ts[(ts["service"] == "resnet50-api") & (ts["label"] == "hpa")]
    exp = (ts.assign(w=np.floor(ts["time_s"] / 6) * 6)
           .groupby(["replication", "w"])["replicas_ready"].mean().groupby("w").mean())
    np.testing.assert_allclose(arr(tr["y"]), exp.to_numpy(), rtol=1e-5)
    assert len(arr(trace(figs[1], "hpa")["x"])) <= 300
    js = len(re.search(r"<script type=\"text/javascript\">(.*?)</script>",
                       path.read_text(encoding="utf-8"), re.S).group(1))
    assert path.stat().st_size - js < 1_500_000


def test_user_text_is_escaped(tmp_path: Path) -> None:
    out = make_results(tmp_path / "x", scenario=XSS, replications=1, with_requests=False,
                       strategies=[("threshold", XSS), ("oracle", "oracle")])
    text = render_report(out).read_text(encoding="utf-8")
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # title, header, table
    page = parse_page(text)
    assert f"<title>{html.escape(XSS)}</title>".replace("&#x27;", "'") in text
    # only plotly.js, the boot script and JSON data blocks
    kinds = [a.get("type") for a, _ in page.scripts]
    assert kinds.count("application/json") == len(page.fig_divs)
    assert len(kinds) == len(page.fig_divs) + 2
    for attrs, body in page.scripts:
        assert "alert(1)" not in body or attrs.get("type") == "application/json"
        if attrs.get("type") == "application/json":
            assert "</" not in body
    # inside the figures the label is HTML-escaped for plotly's label renderer
    figs = figures_of(page)
    assert trace(figs[0], ptext(XSS))["name"] == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert trace(figs[0], ptext(XSS))["name"] == html.escape(XSS, quote=False)
    table_names = [r[0][0] for t in page.tables for r in t[1:] if r]
    assert any(n.startswith(XSS) for n in table_names)  # shown as text in the table


@pytest.mark.parametrize(
    ("breakage", "names"),
    [
        ("no_folder", "nope"),
        ("not_a_folder", "file.txt"),
        ("no_summary", "summary.json"),
        ("bad_json", "summary.json"),
        ("no_runs", "summary.json"),
        ("run_field", "summary.json"),
        ("no_timeseries", "timeseries.parquet"),
        ("bad_timeseries", "timeseries.parquet"),
        ("ts_column", "timeseries.parquet"),
        ("requests_column", "requests.parquet"),
    ],
)
def test_bad_folders_raise_user_error(results_dir: Path, tmp_path: Path, breakage: str,
                                      names: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(results_dir, out)
    (out / "report.html").unlink(missing_ok=True)
    target: Path = out
    summary = json.loads((out / "summary.json").read_text())
    if breakage == "no_folder":
        target = tmp_path / "nope"
    elif breakage == "not_a_folder":
        target = tmp_path / "file.txt"
        target.write_text("x")
    elif breakage == "no_summary":
        (out / "summary.json").unlink()
    elif breakage == "bad_json":
        (out / "summary.json").write_text("{not json")
    elif breakage == "no_runs":
        del summary["runs"]
        (out / "summary.json").write_text(json.dumps(summary))
    elif breakage == "run_field":
        del summary["runs"][3]["cost_usd"]
        (out / "summary.json").write_text(json.dumps(summary))
    elif breakage == "no_timeseries":
        (out / "timeseries.parquet").unlink()
    elif breakage == "bad_timeseries":
        (out / "timeseries.parquet").write_bytes(b"PAR1 nonsense")
    elif breakage == "ts_column":
        pd.read_parquet(out / "timeseries.parquet").drop(columns="queue_length").to_parquet(
            out / "timeseries.parquet")
    elif breakage == "requests_column":
        pd.read_parquet(out / "requests.parquet").drop(columns="end_s").to_parquet(
            out / "requests.parquet")
    with pytest.raises(UserError) as exc:
        render_report(target)
    msg = str(exc.value)
    assert names in msg and "\n" not in msg
    if breakage == "run_field":
        assert "runs.3.cost_usd" in msg
    if breakage in ("ts_column", "requests_column"):
        assert ("queue_length" if breakage == "ts_column" else "end_s") in msg
    assert not (out / "report.html").exists()


def test_cli_report_bad_folder_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from simscale.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1 and "missing" in err and "Traceback" not in err


def test_output_and_title_options(results_dir: Path, tmp_path: Path) -> None:
    target = render_report(results_dir, output=tmp_path / "sub" / "r.html", title="My <run>")
    text = target.read_text(encoding="utf-8")
    assert target == tmp_path / "sub" / "r.html"
    assert "<title>My &lt;run&gt;</title>" in text


def test_assemble_page_reuse() -> None:
    fig = {"data": [{"type": "scatter", "x": [1, 2], "y": [3, 4], "name": "real"}],
           "layout": {"title": {"text": "Real &amp; simulated · p95"}}}
    text = assemble_page("Validation <x>", [("Run", "a</script>b")],
                         [("Real vs simulated <y>", [fig, Wide(fig), "<p>ok</p>"])])
    page = parse_page(text)
    assert page.headings == ["Real vs simulated <y>"]
    assert "a&lt;/script&gt;b" in text
    figs = figures_of(page)
    assert len(figs) == 2 and trace(figs[0], "real")["type"] == "scatter"
    assert text.count("plotly.js v") == 1
    assert '<div class="fig-box wide">' in text and "<p>ok</p>" in text
    # the title became the caption, and the figure given is left as it was
    assert page.fig_titles[0] == "Real & simulated · p95"
    assert "title" not in figs[0]["layout"] and figs[0]["layout"]["margin"] == {"t": 36}
    assert fig["layout"]["title"]["text"].startswith("Real")
    with pytest.raises(TypeError, match="figure dict"):
        assemble_page("x", [], [("A", [object()])])


def _sweep_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for max_rep in (2, 4, 8):
        for target in (0.5, 0.7):
            for strategy in ("threshold", "hpa", "oracle"):
                for seed in (1, 2, 3):
                    rows.append({
                        "services.0.replicas.max": max_rep,
                        "strategies.0.params.target": target, "strategy": strategy,
                        "seed": seed, "service": "svc",
                        "latency_ms.p95": 100 / max_rep + 50 * target + rng.normal(0, 2),
                        "cost_usd": max_rep * 0.1 * (1 + target) + rng.normal(0, 0.01),
                        "slo_attainment": min(1.0, 0.8 + 0.02 * max_rep + rng.normal(0, .01)),
                    })
    return pd.DataFrame(rows)


def test_sweep_report(tmp_path: Path) -> None:
    df = _sweep_frame()
    path = render_sweep_report(df, tmp_path)
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    page = parse_page(text)
    figs = figures_of(page)
    params = ["services.0.replicas.max", "strategies.0.params.target"]
    metrics = ["latency_ms.p95", "slo_attainment", "cost_usd"]
    assert len(figs) == len(params) * len(metrics)
    fig = figs[0]
    assert fig["layout"]["xaxis"]["title"]["text"] == params[0]
    assert fig["layout"]["yaxis"]["title"]["text"] == metrics[0]
    for strategy in ("threshold", "hpa", "oracle"):
        tr = trace(fig, strategy)
        exp = df[df["strategy"] == strategy].groupby(params[0])["latency_ms.p95"].mean()
        np.testing.assert_allclose(arr(tr["x"]), exp.index.to_numpy(float))
        np.testing.assert_allclose(arr(tr["y"]), exp.to_numpy(), rtol=1e-9)
    table = next(t for t in page.tables if t and t[0][0][0] == params[0])
    assert len(table) - 1 == 3 * 2 * 3  # settings x strategies
    means = df.groupby([*params, "strategy"])["latency_ms.p95"].mean()
    col = [c for c, _ in table[0]].index("latency_ms.p95")
    for row in table[1:]:
        setting = (int(row[0][0]), float(row[1][0]))
        ranked = {st: means[(*setting, st)] for st in ("threshold", "hpa")}
        is_best = "best" in row[col][1]
        assert is_best == (row[2][0] == min(ranked, key=ranked.get)), row
    assert text.count("plotly.js v") == 1


def test_sweep_report_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="empty"):
        render_sweep_report(pd.DataFrame(), tmp_path)
    with pytest.raises(UserError, match="nope"):
        render_sweep_report(_sweep_frame(), tmp_path, metrics=["nope"])


def test_edge_cases_single_strategy_no_events_no_latency(tmp_path: Path) -> None:
    out = make_results(tmp_path / "e", strategies=[("static", "static")], replications=1,
                       with_requests=False)
    summary = json.loads((out / "summary.json").read_text())
    for run in summary["runs"]:
        run["events"] = []
        run["latency_ms"] = {k: None for k in run["latency_ms"]}  # NaN written as null
    (out / "summary.json").write_text(json.dumps(summary))
    ts = pd.read_parquet(out / "timeseries.parquet")
    ts["latency_p95_ms"] = np.nan
    ts.to_parquet(out / "timeseries.parquet")
    page = parse_page(render_report(out).read_text(encoding="utf-8"))
    figs = figures_of(page)
    assert len(figs) == FIGS_PER_SERVICE * len(SERVICES)
    table = next(t for t in page.tables if t and t[0][0][0] == "Strategy")
    assert "Cost vs oracle" not in [c for c, _ in table[0]]
    assert table[1][1][0] == "–"  # p50 unknown
    assert len(arr(trace(figs[5], "static")["x"])) == 0


def test_timeseries_without_a_service(results_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    shutil.copytree(results_dir, out)
    ts = pd.read_parquet(out / "timeseries.parquet")
    ts[ts["service"] != "xgb-fraud"].to_parquet(out / "timeseries.parquet")
    (out / "requests.parquet").unlink()
    figs = figures_of(parse_page(render_report(out).read_text(encoding="utf-8")))
    xgb_replicas = figs[FIGS_PER_SERVICE]
    assert [t.get("name") for t in xgb_replicas["data"]] == []


# --------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium), so the page cannot be "
    "rendered in a browser")


def _chromium(args: list[str], url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(CHROMIUM), *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
           "--virtual-time-budget=15000", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines()
            if "Uncaught" in ln or ("CONSOLE" in ln and "rror" in ln)]


@pytest.mark.slow
@needs_chromium
def test_report_renders_in_headless_chromium(report: tuple[Path, str, _PageParser],
                                             tmp_path: Path) -> None:
    from PIL import Image

    path = report[0]
    url = path.resolve().as_uri()
    dom = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom"], url, tmp_path)
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
    assert not re.search(r'class="[^"]*\bfailed\b', dom.stdout)
    drawn = parse_page(dom.stdout)
    n_svg = dom.stdout.count('class="main-svg"')
    assert n_svg >= len(drawn.fig_divs) == FIGS_PER_SERVICE * len(SERVICES)
    assert dom.stdout.count('class="legendtext"') > 0
    png = Path(os.environ.get("SIMSCALE_SCREENSHOT", tmp_path / "report.png"))
    _chromium(["--window-size=1400,2400", f"--screenshot={png}"], url, tmp_path)
    img = Image.open(png).convert("RGB")
    assert img.size == (1400, 2400)
    colors = img.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200  # text, lines and fills drawn, not a blank page
    small = np.asarray(img.resize((140, 240)), dtype=float)
    assert small.std() > 10
    # the figures drew: the threshold strategy's blue appears in the lower half of the page
    lower = np.asarray(img.crop((0, 1200, 1400, 2400)), dtype=int)
    blue = (abs(lower[..., 0] - 0x25) < 20) & (abs(lower[..., 1] - 0x63) < 20) & (
        abs(lower[..., 2] - 0xEB) < 20)
    assert blue.sum() > 200


@pytest.mark.slow
@needs_chromium
def test_injected_names_stay_text_in_the_browser(tmp_path: Path) -> None:
    out = make_results(tmp_path / "x", scenario=XSS + XSS_IMG, replications=1,
                       with_requests=False, duration_s=60,
                       strategies=[("threshold", XSS), ("hpa", XSS_IMG), ("oracle", "oracle")])
    url = render_report(out).resolve().as_uri()
    dom = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom"], url, tmp_path)
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
    assert "data-pwned" not in dom.stdout.split("<body", 1)[1].split(">", 1)[0]
    assert "<script>alert" not in dom.stdout and "<img src=" not in dom.stdout
    drawn = parse_page(dom.stdout)
    assert dom.stdout.count('class="main-svg"') >= len(drawn.fig_divs)
    # plotly drew the names as text: legend entries read exactly the user's label
    legend = re.findall(r'class="legendtext"[^>]*>(.*?)</text>', dom.stdout)
    assert html.escape(XSS, quote=False) in legend


# --------------------------------------------------------------------------- terminal table

CUSTOM_LABEL = "examples.custom_strategy:QueueProportional"
LONG_LABEL = "my_company.autoscaling.policies.experimental:SeasonalQueueForecaster"


def _terminal_text(summary: dict[str, Any], width: int) -> str:
    import io

    from rich.console import Console

    from simscale.reports.terminal import print_summary_table

    console = Console(width=width, record=True, file=io.StringIO(), highlight=False,
                      color_system=None)
    print_summary_table(summary, console)
    return console.export_text()


def _terminal_tables(text: str) -> list[dict[str, Any]]:
    """The tables of the terminal output: header cells and rows (label lines joined, cells
    as printed)."""
    tables: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("┃"):
            tables.append({"header": [c.strip() for c in line.strip("┃").split("┃")],
                           "rows": []})
        elif line.startswith("│") and tables:
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows = tables[-1]["rows"]
            if rows and not any(cells[1:]):  # a wrapped label: continuation line
                rows[-1][0] += cells[0]
            else:
                rows.append(cells)
    return tables


def _summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_terminal_table_shows_confidence_intervals(tmp_path: Path) -> None:
    from simscale.reports.stats import mean_ci

    summary = _summary_of(make_results(tmp_path / "r", replications=3, with_requests=False))
    text = _terminal_text(summary, 200)
    assert "means of 3 replications ± 95% confidence interval" in text
    tables = _terminal_tables(text)
    assert len(tables) == len(SERVICES)
    runs = pd.json_normalize(summary["runs"])
    for svc, table in zip(SERVICES, tables, strict=True):
        col = table["header"].index("p95 ms")
        for row in table["rows"]:
            mean_text, _, half_text = row[col].partition(" ±")
            assert half_text, row  # every mean has its interval
            sub = runs[(runs["service"] == svc["name"]) & (runs["label"] == row[0])]
            mean, half = mean_ci(sub["latency_ms.p95"])
            digits = 0 if mean >= 100 else 1
            assert float(mean_text.replace(",", "")) == pytest.approx(mean, abs=10**-digits)
            assert float(half_text.replace(",", "")) == pytest.approx(half, abs=10**-digits)
    # one replication: means only
    single = _summary_of(make_results(tmp_path / "s", replications=1, with_requests=False))
    assert "±" not in _terminal_text(single, 200)


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_table_readable_when_narrow(tmp_path: Path, width: int) -> None:
    strategies = [("threshold", "threshold"), ("hpa", "hpa"),
                  ("examples.custom_strategy:QueueProportional", CUSTOM_LABEL),
                  ("custom", LONG_LABEL), ("oracle", "oracle")]
    for reps in (1, 3):
        summary = _summary_of(make_results(tmp_path / f"r{reps}", replications=reps,
                                           strategies=strategies, with_requests=False,
                                           duration_s=60))
        text = _terminal_text(summary, width)
        assert "…" not in text
        assert max(len(line) for line in text.splitlines()) <= width
        tables = _terminal_tables(text)
        assert len(tables) == len(SERVICES)
        for table in tables:
            # every label whole (wrapped on its own boundaries), in the summary's order
            assert [r[0] for r in table["rows"]] == [lab for _, lab in strategies]
            # the columns that answer the question stay
            for header in ("strategy", "p95 ms", "SLO met", "cost/oracle"):
                assert header in table["header"], (width, reps, table["header"])
            n_cols = len(table["header"])
            assert all(len(r) == n_cols and all(c for c in r) for r in table["rows"])
        if width == 120 and reps == 1:
            assert len(tables[0]["header"]) == 10  # everything fits
        if len(tables[0]["header"]) < 10:  # what is left out is said
            assert "not shown at this width" in text


def test_terminal_label_wrapping() -> None:
    from simscale.reports.terminal import wrap_label

    assert wrap_label("cost_aware") == ["cost_aware"]
    assert wrap_label(CUSTOM_LABEL) == ["examples.custom_strategy:", "QueueProportional"]
    assert wrap_label(CUSTOM_LABEL, 18) == ["examples.", "custom_strategy:",
                                            "QueueProportional"]
    for label in (CUSTOM_LABEL, LONG_LABEL, "x" * 70, "a.b:" + "C" * 40):
        for width in (12, 18, 28):
            lines = wrap_label(label, width)
            assert "".join(lines) == label
            assert all(0 < len(line) <= width for line in lines)


def test_cli_console_width_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from simscale.console import make_console

    monkeypatch.setattr(sys, "stdout", io.StringIO())  # not a terminal, even under -s
    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console()
    assert not console.is_terminal and console.width == 120


# --------------------------------------------------------------------------- service order


def _runs(rows: list[tuple[str, str, float, float, float, float]]) -> pd.DataFrame:
    """Runs of (service, strategy, slo_attainment, p95 ms, SLO ms, cost USD)."""
    return pd.DataFrame([
        {"service": s, "strategy": st, "label": st, "replication": 0, "slo_attainment": a,
         "latency_ms.p95": p95, "slo_ms": slo, "cost_usd": cost}
        for s, st, a, p95, slo, cost in rows])


def test_service_order_most_urgent_first() -> None:
    from simscale.reports.tables import service_order

    runs = _runs([
        # trivial: every strategy meets the SLO with lots of headroom
        ("trivial", "static", 1.0, 2.0, 20.0, 0.008), ("trivial", "hpa", 1.0, 2.0, 20.0, 0.008),
        # the best strategy meets the SLO, but the p95 is half the SLO
        ("tight", "static", 0.2, 9000.0, 1000.0, 0.02), ("tight", "hpa", 1.0, 500.0, 1000.0, 0.03),
        # no strategy meets it for every request: first, whatever its p95
        ("failing", "static", 0.90, 80.0, 100.0, 0.01),
        ("failing", "hpa", 0.95, 60.0, 100.0, 0.01),
        # the oracle's perfect score is not the best strategy's
        ("failing", "oracle", 1.0, 10.0, 100.0, 0.01),
        # same attainment and headroom as trivial, but dearer
        ("dear", "static", 1.0, 2.0, 20.0, 0.5),
    ])
    order = service_order(runs, ["trivial", "tight", "failing", "dear", "no_runs"])
    assert order == ["failing", "tight", "dear", "trivial", "no_runs"]
    # attainments within 0.01 pp are equal: the headroom decides
    near = _runs([("a", "hpa", 0.99999, 100.0, 1000.0, 1.0),
                  ("b", "hpa", 1.0, 900.0, 1000.0, 1.0)])
    assert service_order(near) == ["b", "a"]
    # full ties keep the given order
    tie = _runs([("x", "hpa", 1.0, 1.0, 10.0, 1.0), ("y", "hpa", 1.0, 1.0, 10.0, 1.0)])
    assert service_order(tie, ["y", "x"]) == ["y", "x"]


def test_report_opens_with_the_most_urgent_service(results_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    shutil.copytree(results_dir, out)
    summary = _summary_of(out)
    for run in summary["runs"]:  # xgb-fraud now misses its SLO far more often
        if run["service"] == "xgb-fraud":
            run["slo_attainment"] *= 0.5
    (out / "summary.json").write_text(json.dumps(summary))
    page = parse_page(render_report(out).read_text(encoding="utf-8"))
    assert page.headings == ["Services", "Service xgb-fraud", "Service resnet50-api"]
    overview = next(t for t in page.tables if t and t[0][0][0] == "Service")
    assert [r[0][0] for r in overview[1:]] == ["xgb-fraud", "resnet50-api"]
    # the figures follow their sections: xgb-fraud's SLO line comes first
    figs = figures_of(page)
    assert trace(figs[1], "SLO 60 ms") and trace(figs[FIGS_PER_SERVICE + 1], "SLO 300 ms")


# --------------------------------------------------------------------------- cost-SLO chart


def _nice_ticks(lo: float, hi: float, n: int = 6) -> np.ndarray:
    """Ticks as plotly places them on a linear axis: steps of 1, 2 or 5 x 10^k, about n."""
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=10 * mag)
    return np.arange(math.ceil(lo / step), math.floor(hi / step) + 1) * step + 0.0


def _d3_format(value: float, spec: str) -> str:
    """The d3 format the report's value axes use (``,.4~f``) in Python."""
    m = re.fullmatch(r",\.(\d+)~f", spec)
    assert m, spec
    text = f"{value:,.{int(m.group(1))}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def _check_ticks(axis: dict[str, Any]) -> None:
    """Tick labels at any density plotly may choose are distinct and short."""
    lo, hi = axis["range"]
    for n in (3, 6, 10):
        ticks = _nice_ticks(lo, hi, n)
        texts = [_d3_format(t, axis["tickformat"]) for t in ticks]
        assert len(ticks) >= 2 and len(set(texts)) == len(texts), texts
        assert max(len(t) for t in texts) <= 8, texts


def _pareto_stats(costs: list[float], slos: list[float]) -> pd.DataFrame:
    labels = ["static", "threshold", "hpa", "kpa", "predictive", "cost_aware", "oracle"]
    return pd.DataFrame({"label": labels[:len(costs)], "strategy": labels[:len(costs)],
                         "cost_usd": costs, "slo_attainment": slos})


@pytest.mark.parametrize("cost", [0.008333333333333333, 0.0, 12.5, 1234.5678])
def test_pareto_degenerate_axes_are_readable(cost: float) -> None:
    from simscale.reports.figures import pareto_figure

    n = 7
    costs = [cost + i * 1e-12 for i in range(n)]  # all the same up to float noise
    fig = pareto_figure(_pareto_stats(costs, [1.0] * n))
    xaxis, yaxis = fig["layout"]["xaxis"], fig["layout"]["yaxis"]
    lo, hi = xaxis["range"]
    assert lo < cost < hi
    assert hi - lo >= 0.1 * abs(cost) * 0.999 and hi - lo > 0
    if cost > 0:
        assert hi - lo <= 0.2 * cost  # not so wide that the point is lost either
    _check_ticks(xaxis)
    ylo, yhi = yaxis["range"]
    assert ylo < 100 < yhi <= 100.5 and yhi - ylo >= 2
    _check_ticks(yaxis)
    # one label lists all seven coincident strategies; no text printed on the points
    notes = fig["layout"].get("annotations", [])
    assert len(notes) == 1
    for label in ("static", "cost_aware", "oracle"):
        assert f">{label}</span>" in notes[0]["text"]
    assert all("text" not in (t.get("mode") or "") for t in fig["data"])


def test_pareto_labels_of_near_points_do_not_overlap() -> None:
    from simscale.reports.figures import pareto_figure

    costs = [0.0167, 0.0267, 0.0467, 0.0344, 0.0329, 0.0221, 0.0221]
    slos = [0.218, 0.789, 0.961, 0.948, 1.0, 1.0, 1.0]
    fig = pareto_figure(_pareto_stats(costs, slos))
    notes = fig["layout"]["annotations"]
    named = [re.findall(r">([a-z_]+)</span>", a["text"]) for a in notes]
    assert sorted(sum(named, [])) == sorted(_pareto_stats(costs, slos)["label"])
    together = next(g for g in named if "oracle" in g)
    assert "cost_aware" in together  # the coincident pair shares one label
    assert ["static"] in named and ["threshold"] in named and ["hpa"] in named
    xlo, xhi = fig["layout"]["xaxis"]["range"]
    assert xlo < min(costs) and xhi > max(costs)
    ylo, yhi = fig["layout"]["yaxis"]["range"]
    assert ylo < 21.8 and 100 < yhi <= 100 + 0.07 * (yhi - ylo)  # padding only above 100%
    _check_ticks(fig["layout"]["xaxis"])
    _check_ticks(fig["layout"]["yaxis"])


# --------------------------------------------------------------------------- counts


def test_event_counts_are_integers(tmp_path: Path) -> None:
    out = make_results(tmp_path / "r", replications=1, with_requests=False)
    text = render_report(out).read_text(encoding="utf-8")
    page = parse_page(text)
    compare = [t for t in page.tables if t and t[0] and t[0][0][0] == "Strategy"]
    for table in compare:
        header = [c for c, _ in table[0]]
        for col in ("Scale events", "Drops"):
            i = header.index(col)
            for row in table[1:]:
                count = row[i][0].split("(")[0].strip()
                assert re.fullmatch(r"\d[\d,]*", count), (col, row[i][0])
    # the terminal table too, and the events' hover text
    summary = _summary_of(out)
    for table in _terminal_tables(_terminal_text(summary, 200)):
        i = table["header"].index("events")
        assert all(re.fullmatch(r"\d+", r[i]) for r in table["rows"])
    events = figures_of(page)[5]
    hovers = [h for t in events["data"] for h in (t.get("text") or [])]
    assert hovers and all(re.search(r": \d+→\d+ replicas · \d+ threads", h) for h in hovers)
    # means over replications: whole means stay whole, others keep one decimal
    from simscale.reports.tables import _count

    assert [_count(v) for v in (4.0, 3.5, 0.0, 1234.0)] == ["4", "3.5", "0", "1,234"]


def test_count_axes_tick_whole_numbers() -> None:
    from simscale.reports.figures import count_axis

    assert count_axis(1.0)["dtick"] == 1 and count_axis(6.0)["dtick"] == 1
    assert "dtick" not in count_axis(40.0) and "dtick" not in count_axis(0.4)


@pytest.mark.slow
@needs_chromium
def test_degenerate_cost_axis_in_the_browser(tmp_path: Path) -> None:
    """plotly.js itself draws distinct, short tick labels on the all-equal cost axis, and the
    legend below the plot, where the toolbar (top right) cannot cover it."""
    from simscale.reports.figures import pareto_figure

    fig = pareto_figure(_pareto_stats([0.008333333333333333] * 7, [1.0] * 7))
    page = tmp_path / "p.html"
    page.write_text(assemble_page("degenerate", [], [("A", [fig])]), encoding="utf-8")
    dom = _chromium(["--window-size=1280,900", "--dump-dom"], page.resolve().as_uri(),
                    tmp_path).stdout
    for axis in ("xtick", "ytick"):
        ticks = re.findall(rf'<g class="{axis}"><text[^>]*>([^<]*)</text>', dom)
        assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
        assert max(len(t) for t in ticks) <= 7, ticks
    plot = re.search(r'<rect class="nsewdrag drag"[^>]* y="([\d.]+)" width="[\d.]+" '
                     r'height="([\d.]+)"', dom)
    legend = re.search(r'<g class="legend"[^>]*transform="translate\([\d.]+,([\d.]+)\)"', dom)
    assert plot and legend
    assert float(legend.group(1)) > float(plot.group(1)) + float(plot.group(2))
    assert dom.count('class="annotation-text"') == 1  # one label names all seven
