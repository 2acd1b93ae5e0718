"""The report's look and the pieces every figure shares: colours per strategy (one mapping, so
a strategy has the same colour in every figure), the plotly template, safe user text
(:func:`ptext`), mean curves with their 95% bands, the SLO line and count axes.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

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

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font=dict(family=FONT, size=12, color="#1f2937"),
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        colorway=list(STRATEGY_COLORS.values()),
        title=dict(x=0.0, xanchor="left", font=dict(size=14, color="#111827")),
        xaxis=dict(gridcolor="#eef1f5", linecolor="#cbd5e1", zerolinecolor="#e2e8f0",
                   ticks="outside", tickcolor="#cbd5e1", automargin=True),
        yaxis=dict(gridcolor="#eef1f5", linecolor="#cbd5e1", zerolinecolor="#e2e8f0",
                   automargin=True),
        # below the plot, at the bottom of the figure (plotly grows the bottom margin to fit
        # it): plotly's toolbar sits at the top right and would cover legend entries there
        legend=dict(orientation="h", yref="container", yanchor="bottom", y=0.0,
                    xanchor="left", x=0.0, font=dict(size=11), bgcolor="rgba(255,255,255,0)"),
        margin=dict(l=56, r=24, t=64, b=48),
        hoverlabel=dict(font=dict(family=FONT, size=12)),
    )
)


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


def base_figure(title: str = "", *, height: int = FIGURE_HEIGHT, **layout: Any) -> go.Figure:
    """An empty figure with the report's look. ``title`` is trusted (escape user text first)."""
    fig = go.Figure(layout=go.Layout(template=TEMPLATE, height=height, **layout))
    if title:
        fig.update_layout(title=dict(text=title))
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
    fig: go.Figure,
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
    kwargs: dict[str, Any] = {"secondary_y": True} if secondary_y else {}
    x = f32(band["time_s"])
    if show_band and band["lo"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=np.concatenate([x, x[::-1]]),
                y=np.concatenate([f32(band["hi"]), f32(band["lo"])[::-1]]),
                fill="toself", fillcolor=rgba(color, 0.10), line=dict(width=0),
                mode="lines", hoverinfo="skip", showlegend=False, legendgroup=group,
                name=f"{name} · 95% band",
            ),
            **kwargs,
        )
    fig.add_trace(
        go.Scatter(
            x=x, y=f32(band["mean"]), mode="lines", name=name, legendgroup=group,
            showlegend=showlegend, line={"color": color, "width": 2, **(line or {})},
            hovertemplate=hover,
        ),
        **kwargs,
    )


def slo_trace(
    fig: go.Figure, slo_ms: float | None, *, x: Sequence[float] | None = None,
    y: Sequence[float] | None = None,
) -> None:
    """Draw the SLO as a dashed red line trace named ``SLO <n> ms``: horizontal across ``x``,
    or vertical (at x = SLO) across ``y``. Nothing when there is no SLO."""
    if slo_ms is None or not np.isfinite(slo_ms) or slo_ms <= 0:
        return
    xs, ys = (list(x), [slo_ms, slo_ms]) if x is not None else ([slo_ms, slo_ms], list(y or []))
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="lines", name=f"SLO {slo_ms:g} ms", hoverinfo="skip",
        line=dict(color=SLO_COLOR, dash="dash", width=1.5),
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
