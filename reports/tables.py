"""Comparison tables: per-strategy statistics over replications, rendered as HTML.

All user text is escaped here; the returned HTML fragments are safe to place in a page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from simscale.reports.stats import mean_ci

#: Run figures summarised in the comparison table (dotted names of ``summary.json`` runs).
TABLE_METRICS: tuple[str, ...] = (
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


def comparison_columns(has_oracle: bool) -> list[Column]:
    """The columns of the per-service strategy table."""
    cols = [
        Column("latency_ms.p50", "p50 (ms)", _num(), "min", "latency_ms.p50_ci"),
        Column("latency_ms.p95", "p95 (ms)", _num(), "min", "latency_ms.p95_ci"),
        Column("latency_ms.p99", "p99 (ms)", _num(), "min", "latency_ms.p99_ci"),
        Column("slo_attainment", "SLO attainment", _pct(2), "max", "slo_attainment_ci"),
        Column("dropped", "Drops", _fixed(0), "min", "dropped_ci",
               note_key="drop_fraction", note_fmt=_pct(2)),
        Column("cost_usd", "Cost", _usd, "min", "cost_usd_ci"),
        Column("mean_replicas", "Mean replicas", _fixed(2), None, "mean_replicas_ci"),
        Column("scale_events", "Scale events", _fixed(1), "min", "scale_events_ci"),
    ]
    if has_oracle:
        cols += [
            Column("cost_vs_oracle", "Cost vs oracle", _pct(1, signed=True), None,
                   "cost_vs_oracle_ci"),
            Column("slo_vs_oracle", "SLO vs oracle", _pp, None, "slo_vs_oracle_ci"),
        ]
    return cols


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
                ci_text = col.fmt(ci).lstrip("+").replace("$", "")
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
