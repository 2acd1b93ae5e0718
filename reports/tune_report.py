"""The report of ``simscale tune``: ``tune.html`` (one self-contained page, as every report:
:func:`simscale.reports.html.assemble_page`) and the table printed in the terminal.

Per tuned service the page shows the baseline against the best trial (cost, the target's
figure, its worst replication, the parameters changed), cost against the target's figure for
every trial with the Pareto front (the trials no other trial beats on both: cheaper and at
least as good on the figure), the target as a dashed line, the baseline and the best marked,
and every trial in a table. It reads only the ``tune.json`` data
(:func:`simscale.sweeps.tune.tune`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_tune_html", "pareto_front", "print_tune_table", "render_tune_report"]

_FEASIBLE = "#10b981"
_INFEASIBLE = "#94a3b8"
_BASELINE = "#f59e0b"
_BEST = "#2563eb"
_FRONT = "#111827"


def _num(x: Any) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return math.nan
    return value


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool
                 ) -> list[int]:
    """Indices of the non-dominated ``(cost, figure)`` points, by increasing cost: no other
    point is cheaper (or as cheap) with a figure at least as good and better on one of the
    two. Points with a NaN are left out."""
    order = sorted((i for i, (c, f) in enumerate(points) if math.isfinite(c)
                    and math.isfinite(f)),
                   key=lambda i: (points[i][0], -points[i][1] if higher_is_better
                                  else points[i][1]))
    front: list[int] = []
    best = -math.inf if higher_is_better else math.inf
    for i in order:
        f = points[i][1]
        if (f > best) if higher_is_better else (f < best):
            front.append(i)
            best = f
    return front


def _hover(rec: Mapping[str, Any], figure: str) -> str:
    params = "<br>".join(f"{html.escape(str(k))} = {html.escape(str(v))}"
                         for k, v in rec["params"].items())
    head = "baseline" if rec.get("baseline") or rec.get("trial") is None else (
        f"trial {rec['trial']}")
    return (f"<b>{head}</b><br>cost {_num(rec['cost_usd']):.4g} USD<br>"
            f"{html.escape(figure)} {_num(rec['target_value']):.4g}<br>{params}")


def pareto_figure(result: Mapping[str, Any], service: str) -> dict[str, Any]:
    """Cost against the target's figure: every trial, the Pareto front, the target line, the
    baseline and the best (a figure dict, :data:`simscale.reports.figure_style.Figure`)."""
    from simscale.reports.figure_style import (
        SLO_COLOR,
        add_trace,
        base_figure,
        ptext,
        scatter,
        update_axis,
    )
    from simscale.simulator.schema import FIGURES

    target = result["target"]
    figure = target["figure"]
    svc = result["services"][service]
    trials = [t for t in svc["trials"] if "error" not in t]
    fig = base_figure(f"Cost against {ptext(figure)} · every trial, Pareto front",
                      height=420)
    for feasible, color, name in ((True, _FEASIBLE, "trial meeting the target"),
                                  (False, _INFEASIBLE, "trial missing it")):
        sub = [t for t in trials if bool(t["feasible"]) == feasible]
        if sub:
            add_trace(fig, scatter(
                x=[_num(t["cost_usd"]) for t in sub], y=[_num(t["target_value"]) for t in sub],
                mode="markers", name=name, marker={"color": color, "size": 8, "opacity": 0.8},
                text=[_hover(t, figure) for t in sub], hovertemplate="%{text}<extra></extra>"))
    points = [(_num(t["cost_usd"]), _num(t["target_value"])) for t in trials]
    front = pareto_front(points, target["op"] == ">=")
    if front:
        add_trace(fig, scatter(
            x=[points[i][0] for i in front], y=[points[i][1] for i in front],
            mode="lines", name="Pareto front",
            line={"color": _FRONT, "width": 1.5, "shape": "hv"}, hoverinfo="skip"))
    for rec, name, color, symbol in ((svc["baseline"], "baseline (as given)", _BASELINE,
                                      "diamond"), (svc["best"], "best", _BEST, "star")):
        add_trace(fig, scatter(
            x=[_num(rec["cost_usd"])], y=[_num(rec["target_value"])], mode="markers",
            name=name, marker={"color": color, "size": 16, "symbol": symbol,
                               "line": {"color": "#ffffff", "width": 1}},
            text=[_hover(rec, figure)], hovertemplate="%{text}<extra></extra>"))
    costs = [p[0] for p in points if math.isfinite(p[0])] or [0.0]
    add_trace(fig, scatter(
        x=[min(costs), max(costs)], y=[target["value"], target["value"]], mode="lines",
        name=f"target {ptext(target['text'])}", hoverinfo="skip",
        line={"color": SLO_COLOR, "dash": "dash", "width": 1.5}))
    unit = FIGURES[figure].unit if figure in FIGURES else ""
    update_axis(fig, "xaxis", title="cost (USD, mean over replications)")
    update_axis(fig, "yaxis", title=f"{ptext(figure)} ({unit}, mean)")
    return fig


def _compare_html(result: Mapping[str, Any], service: str) -> str:
    svc = result["services"][service]
    figure = result["target"]["figure"]
    rows = []
    for name, rec in (("baseline (as given)", svc["baseline"]),
                      (f"best (trial {svc['best']['trial']})", svc["best"])):
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{_num(rec['cost_usd']):.4f}</td>"
            f"<td>{_num(rec['target_value']):.4g}</td><td>{_num(rec['target_worst']):.4g}</td>"
            f"<td>{_num(rec['slo_attainment']):.2%}</td>"
            f"<td>{'met' if rec['feasible'] else 'missed'}</td></tr>")
    changed = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v['from']))}</td>"
                      f"<td>{html.escape(str(v['to']))}</td></tr>"
                      for k, v in svc["best"].get("changed", {}).items())
    head = ("<tr><th></th><th>cost USD</th><th>" + html.escape(figure) + " (mean)</th>"
            "<th>worst replication</th><th>SLO met</th><th>target</th></tr>")
    out = (f'<div class="table-wrap"><table class="compare"><thead>{head}</thead><tbody>'
           f'{"".join(rows)}</tbody></table></div>')
    if changed:
        out += ('<div class="table-wrap"><table class="compare"><thead><tr><th>parameter</th>'
                f"<th>baseline</th><th>best</th></tr></thead><tbody>{changed}</tbody></table>"
                "</div>")
    return out


def _trials_html(result: Mapping[str, Any], service: str) -> str:
    import pandas as pd

    from simscale.reports.tables import frame_table_html

    figure = result["target"]["figure"]
    rows = []
    for t in result["services"][service]["trials"]:
        rows.append({"trial": t["trial"], **t["params"], "cost USD": _num(t["cost_usd"]),
                     f"{figure}": _num(t["target_value"]), "worst": _num(t["target_worst"]),
                     "target": "met" if t["feasible"] else (t.get("error") or "missed")})
    frame = pd.DataFrame(rows)
    better = {"cost USD": "min"}
    return frame_table_html(frame, better=better) + (
        '<p class="note">Every trial in the order it ran (trial 0 is the baseline when its '
        "values lie on the search grid). The target is checked on the mean over the "
        "replications; worst: the replication furthest from it.</p>")


def build_tune_html(result: Mapping[str, Any]) -> str:
    """The tune report as an HTML string."""
    from simscale.reports.html import Wide, assemble_page

    header = [("Scenario", str(result["scenario"])), ("Strategy", str(result["strategy"])),
              ("Target", f"{result['target']['text']} (mean over replications)"),
              ("Trials", str(result["trials"])), ("Replications", str(result["replications"])),
              ("Seed", str(result["seed"])), ("Sampler", str(result["sampler"]))]
    if result.get("imported_from"):
        header.append(("Imported from", str(result["imported_from"].get("file"))))
    sections = []
    for service in result["services"]:
        sections.append((f"Service {service}", [_compare_html(result, service),
                                                Wide(pareto_figure(result, service)),
                                                _trials_html(result, service)]))
    space = ", ".join(f"{d['name']} {d['low']:g}..{d['high']:g}" for d in result["space"])
    return assemble_page(f"{result['scenario']} · tuning {result['strategy']}", header,
                         sections, description=f"Searched: {space}.",
                         kicker="simscale tune report")


def render_tune_report(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write :func:`build_tune_html` to ``path`` atomically; returns the path."""
    from simscale.io import write_text_atomic

    path = Path(path)
    write_text_atomic(path, build_tune_html(result))
    return path


def print_tune_table(result: Mapping[str, Any], console: Any) -> None:
    """Per tuned service: baseline against best (cost, the target's figure, its worst
    replication, whether the target is met) and the parameters the tuner changed."""
    from rich.table import Table

    figure = result["target"]["figure"]
    for service, svc in result["services"].items():
        console.print(f"[bold]{service}[/bold]: '{result['strategy']}' tuned for "
                      f"{result['target']['text']} ({result['trials']} trials, "
                      f"{result['replications']} replication(s))", highlight=False)
        table = Table()
        for col in ("", "cost $", f"{figure}", "worst", "target"):
            table.add_column(col, justify="left" if not col or col == "target" else "right")
        for name, rec in (("baseline", svc["baseline"]), (f"best (#{svc['best']['trial']})",
                                                          svc["best"])):
            table.add_row(name, f"{_num(rec['cost_usd']):.4f}", f"{_num(rec['target_value']):.4g}",
                          f"{_num(rec['target_worst']):.4g}",
                          "met" if rec["feasible"] else "missed")
        console.print(table)
        changed = svc["best"].get("changed", {})
        if changed:
            params = Table("parameter", "baseline", "best", title="parameters changed",
                           title_justify="left")
            for key, value in changed.items():
                params.add_row(key, f"{value['from']:g}" if isinstance(value["from"], float)
                               else str(value["from"]), f"{value['to']:g}" if isinstance(
                                   value["to"], float) else str(value["to"]))
            console.print(params)
        else:
            console.print("no parameter set beat the strategy as given")
