"""The report's look and the pieces every figure shares: colours per strategy (one mapping, so
a strategy has the same colour in every figure), the plotly template, safe user text
(:func:`ptext`), mean curves with their 95% bands, the SLO line and count axes.

A figure is a plain dict in plotly.js's schema, ``{"data": [trace, ...], "layout": {...}}``,
built without plotly.py (importing and validating ``plotly.graph_objects`` costs a third of a
second, more than a small simulation): :func:`base_figure` starts one, :func:`scatter` makes a
trace, :func:`add_trace` and :func:`update_axis` change it. Numeric arrays stay numpy arrays
until the page is written (:func:`simscale.reports.plotly_js.figure_json`). The tests build every
figure and validate it with plotly.py (``go.Figure(fig)``), so a misspelt property fails there.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: A figure: ``{"data": [trace, ...], "layout": {...}}`` (plotly.js's figure schema).
Figure = dict[str, Any]

#: Fixed colours for the shipped strategies, so a strategy looks the same in every report.
STRATEGY_COLORS: dict[str, str] = {
    "static": "#64748b",
    "threshold": "#2563eb",
    "hpa": "#f59e0b",
    "kpa": "#10b981",
    "predictive": "#8b5cf6",
    "cost_aware": "#ec4899",
    "oracle": "#111827",
}
#: Colours for further labels (custom strategies, second configurations of one strategy).
EXTRA_COLORS: tuple[str, ...] = (
    "#ef4444", "#06b6d4", "#84cc16", "#a16207", "#d946ef", "#0ea5e9", "#f97316", "#14b8a6",
    "#6366f1", "#be123c",
)
ARRIVAL_COLOR = "#94a3b8"
SLO_COLOR = "#dc2626"
FONT = (
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
)
FIGURE_HEIGHT = 360

#: The plotly.js template of every figure (``layout.template``: plotly.js applies it).
TEMPLATE: dict[str, Any] = {
    "layout": {
        "font": {"family": FONT, "size": 12, "color": "#1f2937"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "colorway": list(STRATEGY_COLORS.values()),
        "title": {"x": 0.0, "xanchor": "left", "font": {"size": 14, "color": "#111827"}},
        "xaxis": {"gridcolor": "#eef1f5", "linecolor": "#cbd5e1", "zerolinecolor": "#e2e8f0",
                  "ticks": "outside", "tickcolor": "#cbd5e1", "automargin": True},
        "yaxis": {"gridcolor": "#eef1f5", "linecolor": "#cbd5e1", "zerolinecolor": "#e2e8f0",
                  "automargin": True},
        # below the plot, at the bottom of the figure (plotly grows the bottom margin to fit
        # it): plotly's toolbar sits at the top right and would cover legend entries there
        "legend": {"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0,
                   "xanchor": "left", "x": 0.0, "font": {"size": 11},
                   "bgcolor": "rgba(255,255,255,0)"},
        "margin": {"l": 56, "r": 24, "t": 64, "b": 48},
        "hoverlabel": {"font": {"family": FONT, "size": 12}},
    }
}


def _given(props: Mapping[str, Any]) -> dict[str, Any]:
    """``props`` without the ``None`` values (plotly's "not set")."""
    return {k: v for k, v in props.items() if v is not None}


def scatter(**props: Any) -> dict[str, Any]:
    """A scatter trace (``None`` values are left out)."""
    return {"type": "scatter", **_given(props)}


def add_trace(fig: Figure, trace: dict[str, Any], *, secondary_y: bool = False) -> None:
    """Append ``trace``; with ``secondary_y`` on the right axis of a
    :func:`secondary_y_figure` (``yaxis2``)."""
    if "yaxis2" in fig["layout"]:
        trace = {**trace, "xaxis": "x", "yaxis": "y2" if secondary_y else "y"}
    elif secondary_y:
        raise ValueError("secondary_y needs a figure with a second y axis (secondary_y_figure)")
    fig["data"].append(trace)


def update_axis(fig: Figure, axis: str, *, title: str | None = None, **props: Any) -> None:
    """Set properties of the layout's ``axis`` (``xaxis``, ``yaxis``, ``yaxis2``); ``title``
    is the axis title's text. ``None`` values are left out."""
    target = fig["layout"].setdefault(axis, {})
    if title is not None:
        target["title"] = {"text": title}
    target.update(_given(props))


def add_annotation(fig: Figure, **props: Any) -> None:
    """Append an annotation to the layout."""
    fig["layout"].setdefault("annotations", []).append(_given(props))


def ptext(text: Any) -> str:
    """User text made safe for plotly's HTML-like labels (``<script>`` shows as text)."""
    return html.escape(str(text), quote=False)


def strategy_colors(
    labels: Iterable[str], strategies: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A colour per label: the strategy's fixed colour for its first label, else the next free
    extra colour. ``strategies`` maps a label to its strategy name (label = strategy if absent).
    """
    strategies = strategies or {}
    colors: dict[str, str] = {}
    used: set[str] = set()
    extras = [c for c in EXTRA_COLORS]
    for label in dict.fromkeys(labels):
        color = STRATEGY_COLORS.get(strategies.get(label, label))
        if color is None or color in used:
            free = [c for c in extras if c not in used]
            color = free[0] if free else EXTRA_COLORS[len(colors) % len(EXTRA_COLORS)]
        colors[label] = color
        used.add(color)
    return colors


def rgba(color: str, alpha: float) -> str:
    """``#rrggbb`` as an ``rgba(...)`` string with ``alpha``."""
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def base_figure(title: str = "", *, height: int = FIGURE_HEIGHT, **layout: Any) -> Figure:
    """An empty figure with the report's look. ``title`` is trusted (escape user text first)."""
    fig: Figure = {"data": [], "layout": {"template": TEMPLATE, "height": height,
                                          **_given(layout)}}
    if title:
        fig["layout"]["title"] = {"text": title}
    return fig


def secondary_y_figure(title: str = "", *, height: int = FIGURE_HEIGHT,
                       **layout: Any) -> Figure:
    """:func:`base_figure` with a second y axis on the right, as plotly.py's
    ``make_subplots(specs=[[{"secondary_y": True}]])`` lays it out: the plot spans 94% of the
    width, leaving room for the right axis, which overlays the left one. Add traces with
    :func:`add_trace` (``secondary_y=True`` for the right axis)."""
    fig = base_figure(title, height=height, **layout)
    fig["layout"].update({
        "xaxis": {"anchor": "y", "domain": [0.0, 0.94]},
        "yaxis": {"anchor": "x", "domain": [0.0, 1.0]},
        "yaxis2": {"anchor": "x", "overlaying": "y", "side": "right"},
    })
    return fig


def labels_in(frame: pd.DataFrame, colors: Mapping[str, str] | None) -> tuple[list[str], dict]:
    """The labels of ``frame`` (column ``label``, in order of appearance) and a colour for
    each: those of ``colors`` where given, else :func:`strategy_colors` for the rest."""
    labels = list(dict.fromkeys(frame["label"].astype(str).tolist())) if len(frame) else []
    colors = dict(colors) if colors else {}
    missing = [lab for lab in labels if lab not in colors]
    if missing:
        extra = strategy_colors([*colors, *missing])
        for lab in missing:
            colors[lab] = extra[lab]
    return labels, colors


def f32(values: Any) -> np.ndarray:
    """``values`` as float32 (half the bytes in the page; plenty for plotting)."""
    return np.asarray(values, dtype=np.float32)


def add_band_traces(
    fig: Figure,
    band: pd.DataFrame,
    *,
    name: str,
    color: str,
    group: str,
    line: Mapping[str, Any] | None = None,
    secondary_y: bool = False,
    hover: str = "%{y:.3g}",
    showlegend: bool = True,
    show_band: bool = True,
) -> None:
    """Add a mean curve and, where it has one, its 95% band (``band`` from
    :func:`~simscale.reports.stats.replication_band`)."""
    x = f32(band["time_s"])
    if show_band and band["lo"].notna().any():
        add_trace(fig, scatter(
            x=np.concatenate([x, x[::-1]]),
            y=np.concatenate([f32(band["hi"]), f32(band["lo"])[::-1]]),
            fill="toself", fillcolor=rgba(color, 0.10), line={"width": 0},
            mode="lines", hoverinfo="skip", showlegend=False, legendgroup=group,
            name=f"{name} · 95% band",
        ), secondary_y=secondary_y)
    add_trace(fig, scatter(
        x=x, y=f32(band["mean"]), mode="lines", name=name, legendgroup=group,
        showlegend=showlegend, line={"color": color, "width": 2, **(line or {})},
        hovertemplate=hover,
    ), secondary_y=secondary_y)


def slo_trace(
    fig: Figure, slo_ms: float | None, *, x: Sequence[float] | None = None,
    y: Sequence[float] | None = None,
) -> None:
    """Draw the SLO as a dashed red line trace named ``SLO <n> ms``: horizontal across ``x``,
    or vertical (at x = SLO) across ``y``. Nothing when there is no SLO."""
    if slo_ms is None or not np.isfinite(slo_ms) or slo_ms <= 0:
        return
    xs, ys = (list(x), [slo_ms, slo_ms]) if x is not None else ([slo_ms, slo_ms], list(y or []))
    add_trace(fig, scatter(
        x=xs, y=ys, mode="lines", name=f"SLO {slo_ms:g} ms", hoverinfo="skip",
        line={"color": SLO_COLOR, "dash": "dash", "width": 1.5},
    ))


def count_axis(max_value: float | None) -> dict[str, Any]:
    """Axis settings for counts (replicas, queued requests): ticks on whole numbers.

    With a maximum from 1 to 6 plotly would tick 0.5 steps; this returns a tick every 1 from
    0 (``dtick=1``). Above, plotly's automatic ticks are whole numbers anyway. Below 1 (means
    over windows or replications that stay under one) and without a maximum it leaves
    plotly's ticks, which then show the fractions the curve has.
    """
    if max_value is not None and np.isfinite(max_value) and 1 <= max_value <= 6:
        return {"tickmode": "linear", "tick0": 0, "dtick": 1}
    return {"tickmode": "auto"}
