"""Figure builders: each takes DataFrames and returns a figure as a plain dict in plotly.js's
schema (``{"data": [...], "layout": {...}}``, :data:`Figure`), built without plotly.py.

They know nothing about files or pages, so sweep and validation reports can reuse them. Curves
are keyed by the strategy *label* (two configurations of one strategy get two labels); colours
come from one mapping (:func:`strategy_colors`) so a strategy has the same colour in every
figure. User text (labels, service names) that ends up inside a figure passes through
:func:`ptext`, because plotly renders a subset of HTML in names, ticks and hover text.

The builders live in three modules, all importable from here:

- :mod:`simscale.reports.figure_style`: colours, template, :func:`ptext`, the figure dict
  helpers (:func:`base_figure`, :func:`secondary_y_figure`, :func:`scatter`,
  :func:`add_trace`, :func:`update_axis`, :func:`add_annotation`), band traces, the SLO line,
  count axes;
- :mod:`simscale.reports.time_figures`: replicas, p95 latency and queue length over time, the
  scaling-event timeline;
- :mod:`simscale.reports.compare_figures`: latency CDF, cost against SLO attainment (Pareto),
  a figure against a swept parameter.
"""

from __future__ import annotations

from simscale.reports.compare_figures import (
    MIN_COST_SPAN_USD,
    PLOT_AREA_PX,
    LabelPlacement,
    cdf_figure,
    latency_cdf,
    padded_range,
    pareto_figure,
    place_labels,
    sweep_figure,
    tick_format,
)
from simscale.reports.figure_style import (
    ARRIVAL_COLOR,
    EXTRA_COLORS,
    FIGURE_HEIGHT,
    FONT,
    SLO_COLOR,
    STRATEGY_COLORS,
    TEMPLATE,
    Figure,
    add_annotation,
    add_band_traces,
    add_trace,
    base_figure,
    count_axis,
    ptext,
    rgba,
    scatter,
    secondary_y_figure,
    slo_trace,
    strategy_colors,
    update_axis,
)
from simscale.reports.time_figures import (
    EVENT_SYMBOLS,
    events_figure,
    latency_figure,
    queue_figure,
    replicas_figure,
    windowed_p95,
)

__all__ = [
    "ARRIVAL_COLOR",
    "EVENT_SYMBOLS",
    "EXTRA_COLORS",
    "FIGURE_HEIGHT",
    "FONT",
    "MIN_COST_SPAN_USD",
    "PLOT_AREA_PX",
    "SLO_COLOR",
    "STRATEGY_COLORS",
    "TEMPLATE",
    "Figure",
    "LabelPlacement",
    "add_annotation",
    "add_band_traces",
    "add_trace",
    "base_figure",
    "cdf_figure",
    "count_axis",
    "events_figure",
    "latency_cdf",
    "latency_figure",
    "padded_range",
    "pareto_figure",
    "place_labels",
    "ptext",
    "queue_figure",
    "replicas_figure",
    "rgba",
    "scatter",
    "secondary_y_figure",
    "slo_trace",
    "strategy_colors",
    "sweep_figure",
    "tick_format",
    "update_axis",
    "windowed_p95",
]
