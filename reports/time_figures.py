"""Figures of runs over time, per strategy (mean over replications with a 95% band): arrival
rate against replicas, windowed p95 latency against the SLO, queue length, and the scaling
events as a timeline. Each takes one service's rows of ``timeseries.parquet`` (the latency
figure also those of ``requests.parquet``; the timeline, its scaling events) and returns a
figure dict (:data:`~simscale.reports.figure_style.Figure`); times in seconds, latencies in
milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from simscale.reports.figure_style import (
    ARRIVAL_COLOR,
    FIGURE_HEIGHT,
    Figure,
    add_annotation,
    add_band_traces,
    add_trace,
    base_figure,
    count_axis,
    f32,
    labels_in,
    ptext,
    rgba,
    scatter,
    secondary_y_figure,
    slo_trace,
    update_axis,
)
from simscale.reports.stats import (
    MAX_TIME_POINTS,
    downsample,
    replication_band,
    window_for,
)

#: Marker symbol per scaling event action.
EVENT_SYMBOLS: dict[str, str] = {
    "scale_up": "triangle-up",
    "scale_down": "triangle-down",
    "resize": "diamond",
    "crash": "x",
}


def _prepare(
    ts: pd.DataFrame, values: Sequence[str], max_points: int, weights: dict[str, str] | None = None
) -> tuple[pd.DataFrame, float]:
    times = np.unique(ts["time_s"].to_numpy(dtype=float)) if len(ts) else np.zeros(0)
    # the time series' bin width (1 s, or wider for long runs: metrics.timeseries_bin_s)
    bin_s = float(times[1] - times[0]) if len(times) > 1 else 1.0
    window = window_for(len(times), max_points=max_points, bin_s=bin_s)
    return downsample(ts, values, window_s=window, weights=weights), window


def _window_note(window_s: float) -> str:
    return "" if window_s <= 1.0 else f" · {window_s:g}-s windows"


def replicas_figure(
    ts: pd.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "Arrival rate and replicas",
    max_points: int = MAX_TIME_POINTS,
) -> Figure:
    """Arrival rate (grey area, left axis) against ready (solid) and starting (dotted)
    replicas of every strategy (right axis), mean over replications with a 95% band.

    ``ts`` holds one service's rows of ``timeseries.parquet``.
    """
    labels, colors = labels_in(ts, colors)
    data, window = _prepare(
        ts, ["arrival_rate_rps", "replicas_ready", "replicas_starting"], max_points
    )
    fig = secondary_y_figure(title + _window_note(window), height=FIGURE_HEIGHT + 40,
                             hovermode="x unified")
    if len(data):
        arrivals = data.groupby("time_s", sort=True)["arrival_rate_rps"].mean()
        add_trace(fig, scatter(
            x=f32(arrivals.index), y=f32(arrivals.to_numpy()), name="arrival rate",
            mode="lines", fill="tozeroy", line={"color": ARRIVAL_COLOR, "width": 1},
            fillcolor=rgba(ARRIVAL_COLOR, 0.18), hovertemplate="%{y:.1f} rps",
        ))
    for label in labels:
        sub = data[data["label"] == label]
        name = ptext(label)
        add_band_traces(fig, replication_band(sub, "replicas_ready", floor=0.0), name=name,
                        color=colors[label], group=name, secondary_y=True,
                        line={"shape": "hv"}, hover="%{y:.2f} ready")
        add_band_traces(fig, replication_band(sub, "replicas_starting"),
                        name=f"{name} · starting", color=colors[label], group=name,
                        secondary_y=True, line={"dash": "dot", "shape": "hv", "width": 1.5},
                        hover="%{y:.2f} starting", showlegend=False, show_band=False)
    if labels:
        add_trace(fig, scatter(x=[None], y=[None], mode="lines", name="starting (dotted)",
                               line={"color": "#64748b", "dash": "dot", "width": 1.5},
                               hoverinfo="skip"), secondary_y=True)
    update_axis(fig, "xaxis", title="time (s)")
    update_axis(fig, "yaxis", title="arrival rate (rps)", rangemode="tozero")
    most = [float(data[c].max()) for c in ("replicas_ready", "replicas_starting")
            if len(data) and data[c].notna().any()]
    update_axis(fig, "yaxis2", title="replicas", rangemode="tozero", showgrid=False,
                zeroline=False, **count_axis(max(most) if most else None))
    return fig


def windowed_p95(
    ts: pd.DataFrame,
    requests: pd.DataFrame | None = None,
    *,
    window_s: float | None = None,
    max_points: int = 300,
) -> tuple[pd.DataFrame, float, bool]:
    """p95 latency in windows, per label and replication.

    With ``requests`` (rows of ``requests.parquet``) the p95 is exact over the requests that
    completed in each window; without, it is the throughput-weighted mean of the 1-s bins'
    ``latency_p95_ms``. Returns the frame (``label, replication, time_s, latency_p95_ms``), the
    window length and whether the values are exact.
    """
    if window_s is None:
        n_bins = int(ts["time_s"].nunique()) if len(ts) else 0
        window_s = max(5.0, window_for(n_bins, max_points=max_points))
    if requests is not None:
        done = requests[(requests["drop_reason"] == "") & requests["end_s"].notna()]
        lat = (done["end_s"].to_numpy(float) - done["arrival_s"].to_numpy(float)) * 1e3
        frame = pd.DataFrame({
            "label": done["label"].to_numpy(), "replication": done["replication"].to_numpy(),
            "time_s": np.floor(done["end_s"].to_numpy(float) / window_s) * window_s,
            "latency_p95_ms": lat,
        })
        out = (frame.groupby(["label", "replication", "time_s"], sort=True)["latency_p95_ms"]
               .quantile(0.95).reset_index())
        return out, window_s, True
    weights = {"latency_p95_ms": "throughput_rps"} if "throughput_rps" in ts.columns else None
    out = downsample(ts, ["latency_p95_ms"], window_s=window_s, weights=weights)
    return out, window_s, False


def latency_figure(
    ts: pd.DataFrame,
    *,
    slo_ms: float | None,
    requests: pd.DataFrame | None = None,
    colors: Mapping[str, str] | None = None,
    title: str = "p95 latency over time",
    window_s: float | None = None,
) -> Figure:
    """Windowed p95 latency per strategy (mean over replications, 95% band) against the SLO.

    See :func:`windowed_p95` for how the windows are computed.
    """
    labels, colors = labels_in(ts, colors)
    data, window, exact = windowed_p95(ts, requests, window_s=window_s)
    how = "exact" if exact else "from 1-s bins"
    fig = base_figure(f"{title} · {window:g}-s windows ({how})", hovermode="x unified")
    for label in labels:
        band = replication_band(data[data["label"] == label], "latency_p95_ms", floor=0.0)
        add_band_traces(fig, band, name=ptext(label), color=colors[label], group=ptext(label),
                        hover="%{y:.1f} ms")
    t = ts["time_s"].to_numpy(dtype=float)
    if t.size:
        slo_trace(fig, slo_ms, x=[float(t.min()), float(t.max()) + 1.0])
    update_axis(fig, "xaxis", title="time (s)")
    update_axis(fig, "yaxis", title="p95 latency (ms)", rangemode="tozero")
    return fig


def queue_figure(
    ts: pd.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "Queue length",
    max_points: int = MAX_TIME_POINTS,
) -> Figure:
    """Queue length (end of each bin) per strategy, mean over replications with 95% band."""
    labels, colors = labels_in(ts, colors)
    data, window = _prepare(ts, ["queue_length"], max_points)
    fig = base_figure(title + _window_note(window), hovermode="x unified")
    for label in labels:
        band = replication_band(data[data["label"] == label], "queue_length", floor=0.0)
        add_band_traces(fig, band, name=ptext(label), color=colors[label], group=ptext(label),
                        hover="%{y:.1f}")
    update_axis(fig, "xaxis", title="time (s)")
    most = float(data["queue_length"].max()) if data["queue_length"].notna().any() else None
    update_axis(fig, "yaxis", title="queued requests", rangemode="tozero", **count_axis(most))
    return fig


def events_figure(
    events: pd.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    labels: Sequence[str] | None = None,
    max_replications: int = 3,
    duration_s: float | None = None,
    title: str = "Scaling events",
    max_events: int = 5000,
) -> Figure:
    """Scaling events as a timeline: one row per strategy (and replication, for the first
    ``max_replications``), marker shape by action (▲ up, ▼ down, ◆ resize, ✕ crash)."""
    ev_labels, colors = labels_in(events, colors)
    order = list(labels) if labels is not None else ev_labels
    for lab in ev_labels:
        if lab not in order:
            order.append(lab)
    reps = sorted(events["replication"].unique().tolist()) if len(events) else [0]
    shown = reps[:max_replications]
    multi = len(reps) > 1
    note = " · ▲ up ▼ down ◆ resize ✕ crash"
    note += f" · replications {', '.join(map(str, shown))}" if multi else ""
    if len(reps) > max_replications:
        note += f" of {len(reps)}"
    rows = [(lab, r) for lab in order for r in (shown if multi else [reps[0]])]
    row_name = {(lab, r): ptext(f"{lab} #{r}" if multi else lab) for lab, r in rows}
    fig = base_figure(title + note, height=max(260, 90 + 26 * len(rows)),
                      hovermode="closest", showlegend=True)
    for label in order:
        sub = events[(events["label"] == label) & events["replication"].isin(shown)]
        sub = sub.sort_values("time_s").head(max_events)
        name = ptext(label)
        hover = [
            ptext(f"{a}: {_int_text(f)}→{_int_text(t)} replicas"
                  + (f" · {_int_text(th)} threads" if pd.notna(th) else "")
                  + (f" · {r}" if r else ""))
            for a, f, t, th, r in zip(sub["action"], sub["from_replicas"], sub["to_replicas"],
                                      sub["threads"], sub["reason"], strict=True)
        ]
        add_trace(fig, scatter(
            x=f32(sub["time_s"]),
            y=[row_name[(label, r if multi else reps[0])] for r in sub["replication"]],
            mode="markers", name=name, text=hover,
            marker={"color": colors[label], "size": 9, "opacity": 0.85,
                    "symbol": [EVENT_SYMBOLS.get(a, "circle") for a in sub["action"]],
                    "line": {"color": "#fff", "width": 0.5}},
            hovertemplate="t=%{x:.1f} s · %{text}",
        ))
    update_axis(fig, "yaxis", type="category", categoryorder="array",
                categoryarray=[row_name[k] for k in reversed(rows)], showgrid=True,
                range=[-0.5, len(rows) - 0.5])
    xrange = [0, duration_s] if duration_s else None
    update_axis(fig, "xaxis", title="time (s)", range=xrange)
    if events.empty:
        add_annotation(fig, text="no scaling events: every strategy kept its replicas",
                       xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font={"size": 13, "color": "#6b7280"},
                       bgcolor="rgba(255,255,255,0.85)")
    return fig


def _int_text(value: Any) -> str:
    """A count read back from JSON or a float column (``4.0``) as ``4``; other values as
    they are."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{round(v):d}" if np.isfinite(v) and v == round(v) else f"{v:g}"
