"""Figures that compare strategies: the latency CDF against the SLO, mean cost against SLO
attainment with the Pareto front (and the axis ranges, tick formats and label placement it
needs), and a figure against a swept parameter. Each returns a figure dict
(:data:`~simscale.reports.figure_style.Figure`); latencies in milliseconds, cost in USD.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from simscale.reports.figure_style import (
    Figure,
    add_annotation,
    add_trace,
    base_figure,
    f32,
    labels_in,
    ptext,
    scatter,
    slo_trace,
    update_axis,
)
from simscale.reports.stats import MAX_CDF_POINTS, cdf_probabilities, pareto_front


def latency_cdf(
    requests: pd.DataFrame | None,
    runs: pd.DataFrame,
    *,
    warmup_s: float = 0.0,
    max_points: int = MAX_CDF_POINTS,
) -> pd.DataFrame:
    """Latency CDF points per label: ``label, latency_ms, probability, source``.

    From ``requests`` (one service's rows) when given: quantiles of the latency of completed
    requests that arrived at or after ``warmup_s``, pooled over replications, at most
    ``max_points`` per label. Otherwise from ``runs`` (one service's rows of the summary):
    p50/p95/p99/max averaged over replications (``source`` says which).
    """
    rows: list[pd.DataFrame] = []
    if requests is not None:
        done = requests[(requests["drop_reason"] == "") & requests["end_s"].notna()
                        & (requests["arrival_s"] >= warmup_s)]
        for label, sub in done.groupby("label", sort=False):
            lat = (sub["end_s"].to_numpy(float) - sub["arrival_s"].to_numpy(float)) * 1e3
            if lat.size == 0:
                continue
            probs = cdf_probabilities(max_points, lat.size)
            rows.append(pd.DataFrame({
                "label": label, "latency_ms": np.quantile(lat, probs),
                "probability": probs, "source": "requests",
            }))
        if rows:
            return pd.concat(rows, ignore_index=True)
    points = (("latency_ms.p50", 0.5), ("latency_ms.p95", 0.95), ("latency_ms.p99", 0.99),
              ("latency_ms.max", 1.0))
    for label, sub in runs.groupby("label", sort=False):
        have = [(c, p) for c, p in points if c in sub.columns]
        rows.append(pd.DataFrame({
            "label": label, "latency_ms": [float(sub[c].mean()) for c, _ in have],
            "probability": [p for _, p in have], "source": "summary",
        }))
    if not rows:
        return pd.DataFrame(columns=["label", "latency_ms", "probability", "source"])
    return pd.concat(rows, ignore_index=True)


def cdf_figure(
    cdf: pd.DataFrame,
    *,
    slo_ms: float | None,
    colors: Mapping[str, str] | None = None,
    title: str = "Latency CDF",
) -> Figure:
    """Latency CDF per strategy (``cdf`` from :func:`latency_cdf`) with the SLO line."""
    labels, colors = labels_in(cdf, colors)
    source = str(cdf["source"].iloc[0]) if len(cdf) else "requests"
    note = "all requests" if source == "requests" else "summary percentiles only"
    fig = base_figure(f"{title} · {note}")
    for label in labels:
        sub = cdf[cdf["label"] == label]
        name = ptext(label)
        line = {"color": colors[label], "width": 2}
        if source == "requests":
            line["shape"] = "hv"
        add_trace(fig, scatter(
            x=f32(sub["latency_ms"]), y=f32(sub["probability"]), name=name,
            mode="lines" if source == "requests" else "lines+markers", line=line,
            hovertemplate="%{x:.1f} ms · p%{y:.3f}",
        ))
    slo_trace(fig, slo_ms, y=[0.0, 1.0])
    update_axis(fig, "xaxis", title="latency (ms)", type="log")
    lat = cdf["latency_ms"].to_numpy(dtype=float)
    lat = lat[np.isfinite(lat) & (lat > 0)]
    if lat.size and math.log10(lat.max() / lat.min()) <= 4:  # label 1, 2, 5 per decade
        ticks = [m * 10.0**k for k in range(math.floor(math.log10(lat.min())),
                                             math.ceil(math.log10(lat.max())) + 1)
                 for m in (1, 2, 5)]
        update_axis(fig, "xaxis", tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])
    update_axis(fig, "yaxis", title="fraction of requests", range=[0, 1.02])
    return fig


def tick_format(axis_range: Sequence[float] | None) -> str | None:
    """A d3 tick format for a linear axis over ``axis_range``: fixed decimals, as many as
    the finest tick step plotly may choose there needs (a quarter of a fifth of the span),
    thousands separated, trailing zeros trimmed (``,.4~f``: ``0.008``, ``0.0082``; ``1,180``).
    Never the 10 significant digits plotly shows by default for a tiny span around a value
    (``0.0083333334``), never an exponent. ``None`` without a range."""
    if not axis_range:
        return None
    span = float(axis_range[1]) - float(axis_range[0])
    if not math.isfinite(span) or span <= 0:
        return None
    decimals = max(0, -math.floor(math.log10(span / 5 / 4)))
    return f",.{decimals}~f"


#: Narrowest span of the cost axis (USD), for costs that are all (nearly) zero.
MIN_COST_SPAN_USD = 1e-4


def padded_range(
    values: Iterable[float],
    *,
    min_rel_span: float = 0.10,
    min_span: float = 0.0,
    pad: float = 0.06,
    lower: float | None = None,
    upper: float | None = None,
) -> list[float] | None:
    """An axis range ``[lo, hi]`` that shows ``values`` with room around them.

    The range covers the finite values, widened symmetrically to a span of at least
    ``min_rel_span`` times the largest absolute value (0.10: at least ±5% of the value, so
    that values which are all equal, or differ in the eighth digit, get a readable axis
    instead of a point) and at least ``min_span`` (in the values' unit; used when all values
    are 0). It is then kept within ``[lower, upper]`` (shifted, not shrunk, when it can be)
    and padded by ``pad`` times its span on both sides, so markers never sit on the frame.
    ``None`` when there is no finite value.
    """
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None
    lo, hi = float(arr.min()), float(arr.max())
    span = max(hi - lo, min_rel_span * float(np.abs(arr).max()), min_span)
    if span <= 0:
        span = 1.0
    mid = (lo + hi) / 2
    lo, hi = mid - span / 2, mid + span / 2
    data_hi = float(arr.max())
    if upper is not None and hi > max(upper, data_hi):
        shift = hi - max(upper, data_hi)
        lo, hi = lo - shift, hi - shift
    if lower is not None and lo < min(lower, float(arr.min())):
        shift = min(lower, float(arr.min())) - lo
        lo, hi = lo + shift, hi + shift
        if upper is not None:
            hi = min(hi, max(upper, data_hi))
    return [lo - pad * span, hi + pad * span]

#: The plot area of a half-width report figure, in CSS px (about 480 x 230 at the page's
#: widest; narrower screens scale both): what :func:`place_labels` plans for.
PLOT_AREA_PX = (480.0, 230.0)
_CHAR_PX = 6.6  # width of a character of an 11-px label
_LINE_PX = 15.0  # height of a line of an 11-px label
_MARKER_PX = 14.0  # a 12-px marker and its white outline
_GAP_PX = 3.0  # between a marker (or its error bar) and its label


@dataclass(frozen=True)
class LabelPlacement:
    """One text label of :func:`place_labels`: the points it names (positions, top line
    first) and where it goes, in data coordinates, with plotly's anchors."""

    members: tuple[int, ...]
    x: float
    y: float
    yanchor: Literal["top", "bottom"]


def place_labels(
    x: Sequence[float],
    y: Sequence[float],
    names: Sequence[str],
    *,
    x_range: Sequence[float],
    y_range: Sequence[float],
    y_halves: Sequence[float] | None = None,
    plot_px: tuple[float, float] = PLOT_AREA_PX,
) -> list[LabelPlacement]:
    """Where to write the names of scatter points so that no label overlaps another label or
    another point's marker.

    Each label is centred under its point (over it when there is more room there), clear of
    the point's vertical error bar (``y_halves``, half-widths in y units); horizontal error
    bars lie at the point's height and never meet it. Sizes are estimated in pixels for a
    plot area of ``plot_px`` (width, height). When two labels would overlap, or a label would
    cover another point's marker, the points share one label listing them all, one name per
    line from the highest point down; this repeats until nothing overlaps, so coinciding
    points (cost_aware on the oracle) get one label naming both. NaN points get none.
    """
    width_px, height_px = plot_px
    x0, x1 = float(x_range[0]), float(x_range[1])
    y0, y1 = float(y_range[0]), float(y_range[1])
    sx = width_px / max(x1 - x0, 1e-300)
    sy = height_px / max(y1 - y0, 1e-300)
    halves = list(y_halves) if y_halves is not None else [0.0] * len(x)
    pts = [i for i in range(len(x)) if np.isfinite(x[i]) and np.isfinite(y[i])]
    px = {i: (float(x[i]) - x0) * sx for i in pts}
    py = {i: (float(y[i]) - y0) * sy for i in pts}
    half_px = {i: (float(halves[i]) * sy if np.isfinite(halves[i]) else 0.0) for i in pts}

    def box(group: Sequence[int]) -> tuple[float, float, float, float, bool]:
        """(left, right, bottom, top) in px (y up) and whether the label is below."""
        w = max(len(str(names[i])) for i in group) * _CHAR_PX + 6
        h = _LINE_PX * len(group)
        cx = min(max(float(np.mean([px[i] for i in group])), w / 2), width_px - w / 2)
        low = min(py[i] - half_px[i] for i in group) - _MARKER_PX / 2 - _GAP_PX
        high = max(py[i] + half_px[i] for i in group) + _MARKER_PX / 2 + _GAP_PX
        room_below, room_above = low, height_px - high
        below = room_below >= h or room_below >= room_above
        if below:
            return cx - w / 2, cx + w / 2, low - h, low, True
        return cx - w / 2, cx + w / 2, high, high + h, False

    def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]

    def marker(i: int) -> tuple[float, float, float, float]:
        r = _MARKER_PX / 2
        return px[i] - r, px[i] + r, py[i] - r, py[i] + r

    groups: list[list[int]] = [[i] for i in pts]
    merged = True
    while merged:
        merged = False
        boxes = [box(g) for g in groups]
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if (overlaps(boxes[a], boxes[b])
                        or any(overlaps(boxes[a], marker(i)) for i in groups[b])
                        or any(overlaps(boxes[b], marker(i)) for i in groups[a])):
                    groups[a] = sorted(groups[a] + groups[b])
                    del groups[b]
                    merged = True
                    break
            if merged:
                break
    out = []
    for group in sorted(groups, key=lambda g: g[0]):
        left, right, bottom, top, below = box(group)
        members = tuple(sorted(group, key=lambda i: (-float(y[i]), float(x[i]))))
        out.append(LabelPlacement(
            members=members, x=x0 + (left + right) / 2 / sx,
            y=y0 + (top if below else bottom) / sy, yanchor="top" if below else "bottom"))
    return out


def pareto_figure(
    table: pd.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "Cost against SLO attainment",
) -> Figure:
    """One point per strategy: mean cost (x, USD over the run) against mean SLO attainment
    (y, %), error bars the 95% intervals over replications, with the Pareto front (cheaper
    and better) drawn.

    Both axes get a readable range even when every strategy costs the same or meets the SLO
    equally (:func:`padded_range`: at least ±5% of the cost and :data:`MIN_COST_SPAN_USD`, at
    least 2 percentage points of attainment, never above 100% plus padding) and tick labels
    with the decimals their step needs (:func:`tick_format`). Points are named by text
    labels in their colour, placed by :func:`place_labels` so that no label covers another
    label or another point; points that are near or coincide share one label that lists
    them all. The legend sits below the plot.

    ``table`` has columns ``label, cost_usd, slo_attainment`` and optionally
    ``cost_usd_ci, slo_attainment_ci`` (half-widths), e.g. from
    :func:`simscale.reports.tables.strategy_stats`.
    """
    labels, colors = labels_in(table, colors)
    fig = base_figure(title, hovermode="closest")
    front = pareto_front(table["cost_usd"].to_numpy(float),
                         table["slo_attainment"].to_numpy(float))
    if front:
        fr = table.iloc[front]
        add_trace(fig, scatter(
            x=f32(fr["cost_usd"]), y=f32(fr["slo_attainment"] * 100), name="Pareto front",
            mode="lines", line={"color": "#94a3b8", "dash": "dash", "width": 1.5, "shape": "hv"},
            hoverinfo="skip",
        ))
    xs: list[float] = []
    ys: list[float] = []
    y_halves: list[float] = []
    x_extent: list[float] = []
    y_extent: list[float] = []
    for label in labels:
        row = table[table["label"] == label].iloc[0]
        name = ptext(label)
        cost = float(row["cost_usd"])
        slo = float(row["slo_attainment"]) * 100

        def _half(col: str, scale: float = 1.0, _row: pd.Series = row) -> float:
            v = _row.get(col, math.nan)
            return float(v) * scale if v is not None and np.isfinite(v) else math.nan

        def _err(half: float, value: float, high: float) -> dict[str, Any]:
            if not np.isfinite(half) or not np.isfinite(value):
                return {"visible": False}
            return {"type": "data", "symmetric": False, "array": [min(half, high - value)],
                    "arrayminus": [min(half, value)], "thickness": 1.2, "width": 4}

        cost_half, slo_half = _half("cost_usd_ci"), _half("slo_attainment_ci", 100.0)
        add_trace(fig, scatter(
            x=[cost], y=[slo], name=name, mode="markers",
            marker={"color": colors[label], "size": 12,
                    "line": {"color": "#fff", "width": 1.5}},
            error_x=_err(cost_half, cost, math.inf),
            error_y=_err(slo_half, slo, 100.0),
            hovertemplate=f"{name}<br>$%{{x:.4g}} · %{{y:.2f}}% in SLO<extra></extra>",
        ))
        xs.append(cost)
        ys.append(slo)
        y_halves.append(slo_half if np.isfinite(slo_half) else 0.0)
        for value, half, extent in ((cost, cost_half, x_extent), (slo, slo_half, y_extent)):
            extent.append(value)
            if np.isfinite(half):
                extent += [value - half, value + half]
    x_range = padded_range(x_extent, min_rel_span=0.10, min_span=MIN_COST_SPAN_USD,
                           lower=0.0)
    y_range = padded_range(y_extent, min_rel_span=0.0, min_span=2.0, lower=0.0, upper=100.0)
    update_axis(fig, "xaxis", title="cost (USD)", range=x_range,
                tickformat=tick_format(x_range), hoverformat=".4g")
    update_axis(fig, "yaxis", title="SLO attainment (%)", range=y_range,
                tickformat=tick_format(y_range))
    if x_range and y_range:
        for place in place_labels(xs, ys, labels, x_range=x_range, y_range=y_range,
                                  y_halves=y_halves):
            text = "<br>".join(
                f'<span style="color:{colors[labels[i]]}">{ptext(labels[i])}</span>'
                for i in place.members)
            add_annotation(
                fig, x=place.x, y=place.y, xref="x", yref="y", text=text, showarrow=False,
                xanchor="center", yanchor=place.yanchor, align="center",
                font={"size": 11}, bgcolor="rgba(255,255,255,0.9)", borderpad=1,
            )
    return fig


def sweep_figure(
    results: pd.DataFrame,
    param: str,
    metric: str,
    *,
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
    series: str = "label",
) -> Figure:
    """``metric`` against ``param`` with one line per strategy (``series`` column), mean over
    seeds (and over any other swept parameter) with 95% error bars.

    Numeric parameters get a numeric axis; others a categorical one in order of appearance.
    """
    from simscale.reports.stats import mean_ci

    frame = results.copy()
    frame["label"] = frame[series].astype(str)
    labels, colors = labels_in(frame, colors)
    numeric = pd.api.types.is_numeric_dtype(frame[param])
    fig = base_figure(title if title is not None else f"{ptext(metric)} against {ptext(param)}",
                      hovermode="closest")
    for label in labels:
        sub = frame[frame["label"] == label]
        xs, ys, es = [], [], []
        for value, grp in sub.groupby(param, sort=numeric):
            mean, half = mean_ci(grp[metric])
            xs.append(value if numeric else ptext(value))
            ys.append(mean)
            es.append(half if np.isfinite(half) else 0.0)
        name = ptext(label)
        add_trace(fig, scatter(
            x=xs, y=ys, name=name, mode="lines+markers",
            line={"color": colors[label], "width": 2}, marker={"size": 7},
            error_y={"type": "data", "array": es, "thickness": 1.2, "width": 4,
                     "visible": any(es)},
            hovertemplate="%{x} → %{y:.4g}",
        ))
    update_axis(fig, "xaxis", title=ptext(param), type=None if numeric else "category")
    update_axis(fig, "yaxis", title=ptext(metric))
    return fig
