"""Comparison tables: per-strategy statistics over replications, rendered as HTML.

All user text is escaped here; the returned HTML fragments are safe to place in a page.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from simscale.reports.stats import mean_ci
from simscale.simulator.schema import better, figure_names

#: Run figures summarised in the comparison table (dotted names of ``summary.json`` runs).
#: Names, units and directions are the result schema's (:mod:`simscale.simulator.schema`).
TABLE_METRICS: tuple[str, ...] = figure_names(
    "latency_ms.p50", "latency_ms.p95", "latency_ms.p99", "slo_attainment", "dropped",
    "drop_fraction", "cost_usd", "mean_replicas", "scale_events",
)
ORACLE = "oracle"


def strategy_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% half-width over replications of each table metric, one row per label.

    ``runs`` is one service's rows of :attr:`ResultSet.runs`. Columns: ``label, strategy, n``,
    then ``<metric>`` and ``<metric>_ci`` for each of :data:`TABLE_METRICS`; and when a run
    with strategy ``oracle`` is present, ``cost_vs_oracle`` (cost / oracle cost - 1) and
    ``slo_vs_oracle`` (attainment minus the oracle's), paired by replication (same seed, same
    arrivals) where the replications match.
    """
    runs = runs.copy()
    if "arrivals" in runs.columns:
        runs["drop_fraction"] = runs["dropped"] / runs["arrivals"].where(runs["arrivals"] > 0)
    oracle_runs = runs[runs["strategy"] == ORACLE]
    oracle = None
    if len(oracle_runs):
        first = oracle_runs["label"].iloc[0]
        oracle = oracle_runs[oracle_runs["label"] == first].set_index("replication")
    rows = []
    for label, sub in runs.groupby("label", sort=False):
        row: dict[str, object] = {"label": label, "strategy": str(sub["strategy"].iloc[0]),
                                  "n": len(sub)}
        for metric in TABLE_METRICS:
            if metric in sub.columns:
                row[metric], row[f"{metric}_ci"] = mean_ci(sub[metric])
        if oracle is not None:
            paired = sub.set_index("replication")[["cost_usd", "slo_attainment"]].merge(
                oracle[["cost_usd", "slo_attainment"]], left_index=True, right_index=True,
                how="inner", suffixes=("", "_oracle"))
            if len(paired):
                rel = paired["cost_usd"] / paired["cost_usd_oracle"].where(
                    paired["cost_usd_oracle"] > 0) - 1.0
                row["cost_vs_oracle"], row["cost_vs_oracle_ci"] = mean_ci(rel)
                row["slo_vs_oracle"], row["slo_vs_oracle_ci"] = mean_ci(
                    paired["slo_attainment"] - paired["slo_attainment_oracle"])
            else:  # no common replications: compare means
                o_cost, o_slo = oracle["cost_usd"].mean(), oracle["slo_attainment"].mean()
                cost = sub["cost_usd"].mean()
                row["cost_vs_oracle"] = (cost / o_cost - 1) if o_cost else math.nan
                row["slo_vs_oracle"] = sub["slo_attainment"].mean() - o_slo
                row["cost_vs_oracle_ci"] = row["slo_vs_oracle_ci"] = math.nan
        rows.append(row)
    return pd.DataFrame(rows)


#: SLO attainments closer than this (a fraction: 1e-4 is 0.01 percentage points) count as equal
#: when services are ordered, so that noise in the last digits does not decide.
ATTAINMENT_RESOLUTION = 1e-4


def service_urgency(
    runs: pd.DataFrame,
    *,
    slo_ms: Mapping[str, float] | None = None,
    reference: str = ORACLE,
) -> pd.DataFrame:
    """How far each service is from its SLO with its best strategy: the basis of
    :func:`service_order`.

    ``runs`` is :attr:`ResultSet.runs` (one row per strategy label x service x replication).
    Figures are means over replications per label; the ``reference`` strategy (the oracle,
    which sees the future) is left out unless it is a service's only strategy. The SLO (ms)
    comes from the runs' ``slo_ms`` column, else from ``slo_ms`` (service name -> SLO in ms).
    One row per service, in order of first appearance, with columns:

    - ``service``;
    - ``best_slo_attainment``: the highest SLO attainment of any strategy (fraction 0..1;
      NaN when no strategy has one);
    - ``best_p95_over_slo``: the lowest p95 latency of any strategy divided by the service's
      SLO (dimensionless; above 1 means even the best p95 misses the SLO; NaN without an SLO
      or a p95);
    - ``mean_cost_usd``: the mean cost of the strategies (USD over the simulated time).
    """
    rows = []
    for service, sub in runs.groupby("service", sort=False):
        ranked = sub[sub["strategy"] != reference]
        if ranked.empty:
            ranked = sub
        means = ranked.groupby("label", sort=False).mean(numeric_only=True)
        attainment = (means["slo_attainment"] if "slo_attainment" in means
                      else pd.Series(dtype=float))
        ratio = pd.Series(dtype=float)
        slo: pd.Series | float = math.nan
        if "slo_ms" in means:
            slo = means["slo_ms"].where(means["slo_ms"] > 0)
        elif slo_ms and slo_ms.get(str(service)):
            slo = float(slo_ms[str(service)])
        if "latency_ms.p95" in means:
            ratio = means["latency_ms.p95"] / slo
        cost = means["cost_usd"] if "cost_usd" in means else pd.Series(dtype=float)
        rows.append({
            "service": str(service),
            "best_slo_attainment": float(attainment.max()) if attainment.notna().any()
            else math.nan,
            "best_p95_over_slo": float(ratio.min()) if ratio.notna().any() else math.nan,
            "mean_cost_usd": float(cost.mean()) if cost.notna().any() else math.nan,
        })
    return pd.DataFrame(rows, columns=["service", "best_slo_attainment", "best_p95_over_slo",
                                       "mean_cost_usd"])


def service_order(
    runs: pd.DataFrame,
    services: Sequence[str] | None = None,
    *,
    slo_ms: Mapping[str, float] | None = None,
) -> list[str]:
    """Services in the order a reader should see them: the one that matters most first.

    The key, from :func:`service_urgency`, compared in this order:

    1. the best strategy's SLO attainment, lowest first (a service that no strategy keeps
       inside its SLO comes first); attainments within :data:`ATTAINMENT_RESOLUTION` are equal;
    2. the best p95 latency relative to the SLO, highest first (the least headroom first);
    3. the mean cost of its strategies, highest first (the most money at stake first);
    4. the given order (``services``, then order of appearance in ``runs``).

    A service without a figure sorts after those with it on that key. ``services`` names the
    services to order (e.g. the summary's, in scenario order); services of ``runs`` not named
    there are appended, and named services without runs go last, in their given order.
    ``slo_ms`` is passed to :func:`service_urgency`.
    """
    names = [str(s) for s in (services or [])]
    for name in runs["service"].astype(str).tolist() if len(runs) else []:
        if name not in names:
            names.append(name)
    urgency = (service_urgency(runs, slo_ms=slo_ms).set_index("service") if len(runs)
               else None)

    def key(item: tuple[int, str]) -> tuple[float, float, float, float, int]:
        pos, name = item
        if urgency is None or name not in urgency.index:
            return (1.0, math.inf, math.inf, math.inf, pos)
        u = urgency.loc[name]
        att = u["best_slo_attainment"]
        ratio = u["best_p95_over_slo"]
        cost = u["mean_cost_usd"]
        return (
            0.0,
            round(att / ATTAINMENT_RESOLUTION) if np.isfinite(att) else math.inf,
            -ratio if np.isfinite(ratio) else math.inf,
            -cost if np.isfinite(cost) else math.inf,
            pos,
        )

    return [name for _, name in sorted(enumerate(names), key=key)]


@dataclass(frozen=True)
class Column:
    """One column of an HTML table: the value column, its header, how to format a value, and
    which direction is better (``None``: not ranked)."""

    key: str
    header: str
    fmt: Callable[[float], str]
    better: Literal["min", "max"] | None = None
    ci_key: str | None = None
    note_key: str | None = None
    note_fmt: Callable[[float], str] | None = None


def _num(digits: int = 3) -> Callable[[float], str]:
    def fmt(v: float) -> str:
        if v is None or not np.isfinite(v):
            return "–"
        if v != 0 and abs(v) >= 10 ** digits:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return fmt


def _fixed(decimals: int) -> Callable[[float], str]:
    return lambda v: "–" if v is None or not np.isfinite(v) else f"{v:,.{decimals}f}"


def _count(v: float) -> str:
    """A count (events, drops): a whole number as an integer (``4``, never ``4.0``); a mean over
    replications that is not whole keeps one decimal (``3.5``)."""
    if v is None or not np.isfinite(v):
        return "–"
    if math.isclose(v, round(v), abs_tol=1e-9):
        return f"{round(v):,d}"
    return f"{v:,.1f}"


def _pct(decimals: int = 2, signed: bool = False) -> Callable[[float], str]:
    def fmt(v: float) -> str:
        if v is None or not np.isfinite(v):
            return "–"
        s = f"{v * 100:+.{decimals}f}%" if signed else f"{v * 100:.{decimals}f}%"
        return s.replace("-", "−")
    return fmt


def _pp(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v * 100:+.2f} pp".replace("-", "−")


def _usd(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"${v:,.2f}" if abs(v) >= 1 else f"${v:.4f}"


def _ranked(name: str) -> Literal["min", "max"] | None:
    """The schema's direction of a figure as a column's ``better`` (``None``: not ranked)."""
    return {"lower": "min", "higher": "max"}.get(better(name))  # type: ignore[return-value]


def _col(key: str, header: str, fmt: Callable[[float], str], **kw: Any) -> Column:
    """A column of a schema figure: ranked by the figure's direction, ``key + "_ci"`` its
    half-width."""
    return Column(key, header, fmt, _ranked(key), f"{key}_ci", **kw)


def comparison_columns(has_oracle: bool) -> list[Column]:
    """The columns of the per-service strategy table (directions from the result schema; the
    relative-to-oracle columns are not ranked: they rank as cost and attainment do)."""
    cols = [
        _col("latency_ms.p50", "p50 (ms)", _num()),
        _col("latency_ms.p95", "p95 (ms)", _num()),
        _col("latency_ms.p99", "p99 (ms)", _num()),
        _col("slo_attainment", "SLO attainment", _pct(2)),
        _col("dropped", "Drops", _count,
               note_key="drop_fraction", note_fmt=_pct(2)),
        _col("cost_usd", "Cost", _usd),
        _col("mean_replicas", "Mean replicas", _fixed(2)),
        _col("scale_events", "Scale events", _count),
    ]
    if has_oracle:
        cols += [
            Column("cost_vs_oracle", "Cost vs oracle", _pct(1, signed=True), None,
                   "cost_vs_oracle_ci"),
            Column("slo_vs_oracle", "SLO vs oracle", _pp, None, "slo_vs_oracle_ci"),
        ]
    return cols


def ci_like(mean_text: str, ci_text: str) -> str:
    """``ci_text`` (a formatted half-width) with its number shown to the decimals of
    ``mean_text`` (the formatted mean it belongs to): ``5.95`` gets ``± 0``, not
    ``± 0.000824``; ``9,798`` gets ``± 100``, not ``± 99.7``. A half-width that rounds to
    zero at that precision is ``0`` (the replications agree to the digits shown)."""
    dec = re.search(r"\.(\d+)", mean_text)
    digits = len(dec.group(1)) if dec else 0
    num = re.search(r"\d[\d,]*(\.\d+)?", ci_text)
    if not num:
        return ci_text
    value = float(num.group().replace(",", ""))
    shown = "0" if round(value, digits) == 0 else f"{value:,.{digits}f}"
    return ci_text[:num.start()] + shown + ci_text[num.end():]


def best_rows(values: Sequence[float], better: Literal["min", "max"]) -> set[int]:
    """Positions holding the best finite value (ties all count)."""
    arr = np.asarray(values, dtype=float)
    finite = np.isfinite(arr)
    if not finite.any():
        return set()
    target = np.nanmin(arr[finite]) if better == "min" else np.nanmax(arr[finite])
    return {i for i in np.flatnonzero(finite) if math.isclose(arr[i], target, rel_tol=1e-9,
                                                               abs_tol=1e-12)}


def comparison_table_html(
    stats: pd.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    columns: Sequence[Column] | None = None,
    reference: str = ORACLE,
) -> str:
    """The strategy table of one service as an HTML ``<table>``.

    Values are means over replications, with ``± half-width`` of the 95% interval when there
    are several. The best value of each ranked column is marked (class ``best``); runs of the
    ``reference`` strategy (the oracle, which sees the future) are shown but not ranked,
    unless they are the only rows.
    """
    colors = colors or {}
    has_oracle = "cost_vs_oracle" in stats.columns
    columns = list(columns) if columns is not None else comparison_columns(has_oracle)
    strategies = stats["strategy"].astype(str).tolist() if "strategy" in stats else []
    ranked = [i for i, s in enumerate(strategies) if s != reference] or list(range(len(stats)))
    best: dict[str, set[int]] = {}
    for col in columns:
        if col.better and col.key in stats.columns:
            vals = stats[col.key].to_numpy(dtype=float)
            picks = best_rows(vals[ranked], col.better)
            best[col.key] = {ranked[i] for i in picks}
    head = "".join(
        f'<th class="{"ranked" if c.better else ""}" title="'
        f'{"lower is better" if c.better == "min" else "higher is better" if c.better else ""}'
        f'">{html.escape(c.header)}</th>'
        for c in columns
    )
    body = []
    for i, row in enumerate(stats.itertuples(index=False)):
        rec = dict(zip(stats.columns, row, strict=True))
        label = str(rec["label"])
        strategy = str(rec.get("strategy", ""))
        is_ref = strategy == reference
        swatch = colors.get(label, "#94a3b8")
        sub = "" if strategy == label else f' <span class="muted">{html.escape(strategy)}</span>'
        badge = ' <span class="badge">reference</span>' if is_ref else ""
        cells = [f'<th scope="row"><span class="swatch" style="background:{swatch}"></span>'
                 f"{html.escape(label)}{sub}{badge}</th>"]
        for col in columns:
            val = rec.get(col.key, math.nan)
            text = col.fmt(val)
            ci = rec.get(col.ci_key, math.nan) if col.ci_key else math.nan
            note = extra = ""
            if col.note_key and col.note_fmt:
                note_val = rec.get(col.note_key, math.nan)
                if note_val is not None and np.isfinite(note_val):
                    note = f' <span class="note">({html.escape(col.note_fmt(note_val))})</span>'
            if ci is not None and np.isfinite(ci) and ci > 0 and np.isfinite(val):
                ci_text = ci_like(text, col.fmt(ci).lstrip("+").replace("$", ""))
                extra = f'<span class="ci">± {html.escape(ci_text)}</span>'
            cls = "num best" if i in best.get(col.key, set()) else "num"
            cells.append(f'<td class="{cls}">{html.escape(text)}{note}{extra}</td>')
        body.append(f'<tr class="{"reference" if is_ref else ""}">{"".join(cells)}</tr>')
    return (
        '<div class="table-wrap"><table class="compare"><thead><tr><th>Strategy</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def key_value_table_html(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of (name, value) pairs, both escaped."""
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f'<table class="kv">{cells}</table>'


def frame_table_html(
    frame: pd.DataFrame,
    *,
    better: Mapping[str, Literal["min", "max"]] | None = None,
    formats: Mapping[str, Callable[[object], str]] | None = None,
    group_by: Sequence[str] = (),
    unranked: Sequence[bool] | None = None,
) -> str:
    """Any DataFrame as an HTML table (all text escaped). Columns named in ``better`` have
    their best value marked, within each group of equal ``group_by`` values; rows flagged in
    ``unranked`` (e.g. the oracle's) are shown but never marked."""
    better = better or {}
    formats = formats or {}
    n = len(frame)
    best: dict[str, set[int]] = {}
    groups = ([list(range(n))] if not group_by else
              [list(idx) for idx in frame.reset_index(drop=True)
               .groupby(list(group_by), sort=False).indices.values()])
    for col, direction in better.items():
        if col not in frame.columns:
            continue
        vals = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        best[col] = set()
        for g in groups:
            if unranked is not None:
                g = [i for i in g if not unranked[i]] or g
            best[col] |= {g[i] for i in best_rows(vals[g], direction)}

    def fmt(col: str, v: object) -> str:
        if col in formats:
            return formats[col](v)
        if isinstance(v, (float, np.floating)):
            return _num(4)(float(v))
        return str(v)

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for col, v in zip(frame.columns, row, strict=True):
            numeric = isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
            cls = ("num " if numeric else "") + ("best" if i in best.get(col, set()) else "")
            cells.append(f'<td class="{cls.strip()}">{html.escape(fmt(col, v))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="table-wrap"><table class="compare"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def bounds_frame(summary: Mapping[str, Any], service: str) -> pd.DataFrame | None:
    """Each strategy label's cost against the bounds on the optimum of ``service``
    (summary.json ``bounds``; ``None`` when it has none): means over replications of cost
    (USD), SLO attainment, the share of replications that reach ``slo_target``, cost /
    hindsight and cost / lower bound. The lower bound of a run with resize events is
    ``lower_bound_usd`` (any schedule), else ``lower_bound_fixed_size_usd`` (docs/BOUNDS.md).
    """
    bounds = {int(b.get("replication", 0)): b for b in summary.get("bounds") or []
              if isinstance(b, Mapping) and b.get("service") == service}
    if not bounds:
        return None

    def num(v: Any) -> float:
        return float(v) if isinstance(v, (int, float)) and v is not None else math.nan

    rows = []
    for run in summary.get("runs", []):
        b = bounds.get(int(run.get("replication", 0)))
        if run.get("service") != service or b is None:
            continue
        resized = any(e.get("action") == "resize" for e in run.get("events") or [])
        lower = num(b.get("lower_bound_usd" if resized else "lower_bound_fixed_size_usd",
                          b.get("lower_bound_usd")))
        cost, att = num(run.get("cost_usd")), num(run.get("slo_attainment"))
        hind = num(b.get("hindsight_usd"))
        rows.append({"strategy": str(run.get("label")), "cost $": cost, "SLO met": att,
                     "meets target": float(att >= num(b.get("slo_target"))),
                     "cost/hindsight": cost / hind if hind > 0 else math.nan,
                     "cost/lower bound": cost / lower if lower > 0 else math.nan})
    if not rows:
        return None
    return pd.DataFrame(rows).groupby("strategy", sort=False).mean().reset_index()


def bounds_summary_text(summary: Mapping[str, Any], service: str) -> str | None:
    """One line: the service's lower bound and hindsight cost (means over replications)."""
    bs = [b for b in summary.get("bounds") or [] if isinstance(b, Mapping)
          and b.get("service") == service]
    if not bs:
        return None

    def mean(key: str) -> float:
        vals = [float(b[key]) for b in bs if isinstance(b.get(key), (int, float))]
        return float(np.mean(vals)) if vals else math.nan

    lb, fixed, hind = mean("lower_bound_usd"), mean("lower_bound_fixed_size_usd"), \
        mean("hindsight_usd")
    att = mean("hindsight_slo_attainment")
    text = (f"slo_target {bs[0].get('slo_target')}: lower bound {_usd(lb)}"
            + (f" ({_usd(fixed)} without resizing)" if fixed > lb * (1 + 1e-9) else "")
            + f", hindsight schedule {_usd(hind)} at {_pct(2)(att)} SLO met")
    if math.isfinite(hind) and lb > 0:
        text += f" (gap {hind / lb:.2f}x)"
    return text


def _meets(v: Any) -> str:
    """Whether runs reached the SLO target: yes / no, or the share of replications that did."""
    v = float(v)
    if not math.isfinite(v):
        return "–"
    return "yes" if v == 1.0 else "no" if v == 0.0 else f"{v:.0%} of replications"


def bounds_table_html(summary: Mapping[str, Any], service: str) -> str | None:
    """The bounds table of ``service`` for the report (``None`` without bounds)."""
    frame = bounds_frame(summary, service)
    if frame is None:
        return None
    def ratio(v: Any) -> str:
        return f"{float(v):,.2f}x" if np.isfinite(float(v)) else "–"

    formats = {"cost $": lambda v: _usd(float(v)), "SLO met": lambda v: _pct(2)(float(v)),
               "meets target": _meets,
               "cost/hindsight": ratio, "cost/lower bound": ratio}
    note = html.escape(bounds_summary_text(summary, service) or "")
    return (frame_table_html(frame, formats=formats)
            + f'<p class="note">Bounds on the optimal cost at the SLO target: {note}. '
            "No schedule that reaches the target costs less than the lower bound "
            "(docs/BOUNDS.md); the hindsight schedule is achievable.</p>")
