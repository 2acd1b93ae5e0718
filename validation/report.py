"""The fidelity of a validation, shown: a terminal table, overlay figures, an HTML report.

- :func:`print_fidelity`: the rich table (one row per figure and service) and one line of
  calibration and diagnosis per service;
- :func:`overlay_figures`: plotly figures of one service, real vs simulated;
- :func:`size_figure`: when either run resized, one service's ready replicas per size (threads)
  over time, real (rolling restart: both sizes serve for a while) vs simulated (in place);
- :func:`write_report`: ``OUTDIR/report.html`` (built with :mod:`simscale.reports`).

The input is the fidelity document of :func:`simscale.validation.command.validate` (the
content of ``fidelity.json``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simscale.simulator.scenario import Scenario
from simscale.validation.fidelity import CALIBRATION_BOUNDS, FIGURES, SHORT, TARGETS

__all__ = ["overlay_figures", "print_fidelity", "size_figure", "write_report"]


def _error_text(f: str, block: dict[str, Any]) -> str:
    """Figure ``f``'s error in ``block`` (a service's entry of the fidelity document, or its
    ``uncalibrated`` / ``colocation_off`` entry, as :func:`~simscale.validation.fidelity.
    compare` wrote them): absolute for the figures whose target is absolute (mean replicas),
    else relative; ``—`` where there is none."""
    if f in TARGETS and TARGETS[f][0] == "abs":
        v = (block.get("abs_error") or {}).get(f, math.nan)
        return f"{v:+.2f}" if v == v else "—"
    return _pct((block.get("error") or {}).get(f, math.nan))


def print_fidelity(doc: dict[str, Any], console: Any) -> None:
    """Print the fidelity table with rich (one row per figure, per service; the headline
    ``simulated`` column, then the simulation with the profile as measured, uncalibrated), and
    one line of calibration and diagnosis per service."""
    from rich.table import Table

    load = doc.get("load_average") or [math.nan] * 3
    table = Table(title=f"fidelity — {doc.get('scenario')} · {doc.get('label')} · "
                  f"{doc.get('duration_s', 0):g} s · load {load[0]:.2f}/{load[1]:.2f} on "
                  f"{doc.get('cores')} cores", title_justify="left")
    off_too = any("colocation_off" in svc for svc in doc["services"].values())
    cols = ["service", "figure", "real", "sim", "error", "target", "uncal.", "error "]
    if off_too:
        cols += ["no co-loc.", "error  "]
    for col in cols:  # (a narrow terminal folds a cell onto a second line, never cuts it)
        table.add_column(col, justify="left" if col in ("service", "figure") else "right",
                         overflow="fold")
    for name, svc in doc["services"].items():
        for f in FIGURES:
            r, s = svc["real"][f], svc["simulated"][f]
            target = ""
            if f in svc.get("within_target", {}):
                target = "[green]ok[/green]" if svc["within_target"][f] else "[red]off[/red]"
            row = [name, SHORT.get(f, f), _fmt(f, r), _fmt(f, s), _error_text(f, svc), target]
            for other in ("uncalibrated", "colocation_off")[:2 if off_too else 1]:
                block = svc.get(other) or {}
                row += [_fmt(f, (block.get("simulated") or {}).get(f, math.nan)),
                        _error_text(f, block)]
            table.add_row(*row)
        table.add_section()
    table.caption = ("error: relative (simulated - real) / real; replicas: absolute. "
                     "target: p50, p95 within 10 %, mean replicas within 0.25. "
                     "sim: the profile calibrated to the machine's speed in the warm-up, before "
                     "t = 0" + ("" if not doc.get("colocation") else
                                ", this machine one host on which batches slow each other "
                                "(co-location)") + "; uncal.: the profile as measured"
                     + ("; no co-loc.: calibrated, without co-location." if off_too else "."))
    console.print(table)
    for name, svc in doc["services"].items():
        d = svc.get("diagnosis") or {}
        w = (doc.get("warmup") or {}).get(name, {})
        cold = ", ".join(f"{c:.2f}" for c in
                         (doc.get("cold_start_s") or {}).get(name, {}).get("during_run", []))
        over = d.get("overhead_ms_per_batch_median", math.nan)
        cal = (doc.get("calibration") or {}).get(name, {})
        ap = (d.get("a_posteriori") or {}).get("error", {})
        factor, asked = cal.get("factor", math.nan), cal.get("unclamped_factor", math.nan)
        clamp = (f", kept within {CALIBRATION_BOUNDS[0]:g}..{CALIBRATION_BOUNDS[1]:g}: the "
                 f"warm-up asked x{asked:.2f}") if asked == asked and asked != factor else ""
        console.print(
            f"[dim]{name}: calibration x{factor:.3f}{clamp} (isolated predict "
            f"{cal.get('warmup_predict_ms_p50', math.nan):.2f} ms in the warm-up, "
            f"{cal.get('profile_predict_ms_p50', math.nan):.2f} ms in the profile); batches "
            f"took {d.get('batch_ms_real_mean', math.nan):.2f} ms on "
            f"average as the router saw them, simulated "
            f"{d.get('batch_ms_simulated_mean', math.nan):.2f} ms; predict ran "
            f"{d.get('service_time_ratio', math.nan):.2f}x the simulated fit (the rest is "
            f"serving overhead); serving "
            f"overhead {d.get('overhead_ms_profile', math.nan):.2f} ms in the profile, "
            f"{d.get('overhead_ms_warmup_median', math.nan):.2f} ms in the warm-up; pipe "
            f"{over:.2f} ms per batch in the run "
            f"({w.get('ipc_overhead_ms_median', math.nan):.2f} ms in the warm-up); cold starts "
            f"in the run: {cold or 'none'} s; a posteriori (the run's own predict times and "
            f"overhead) p50/p95 error {_pct(ap.get('latency_ms.p50', math.nan))}/"
            f"{_pct(ap.get('latency_ms.p95', math.nan))}; arrivals identical: "
            f"{d.get('arrivals_match')}[/dim]")
    cpu = doc.get("cpu_cores_busy") or {}
    if cpu:
        console.print(f"[dim]cores busy during the run (of {doc.get('cores')}): all "
                      f"{cpu.get('all_cores', math.nan):.2f}, this validation "
                      f"{cpu.get('ours_cores', math.nan):.2f}, other processes "
                      f"{cpu.get('others_cores', math.nan):.2f}[/dim]")
    if doc.get("representative") is False:
        console.print(f"[yellow]warning: other processes kept "
                      f"{cpu.get('others_cores', math.nan):.2f} of the {doc.get('cores')} cores "
                      "busy during the run: the real latencies include that interference, "
                      "which no simulation models; rerun on a quiet machine[/yellow]")
    for note in doc.get("notes") or []:
        console.print(f"[dim]note: {note}[/dim]")
    lag = doc.get("generator_lag_ms") or {}
    if lag:
        console.print(f"[dim]load generator lag: median {lag.get('median_ms', math.nan):.2f} ms,"
                      f" p99 {lag.get('p99_ms', math.nan):.2f} ms, max "
                      f"{lag.get('max_ms', math.nan):.2f} ms[/dim]")


def _fmt(f: str, v: float | None) -> str:
    """Figure ``f``'s value ``v`` for a table (SLO as a percentage, counts whole); ``—`` for
    NaN or None."""
    if v is None or v != v:  # NaN (None once written to JSON)
        return "—"
    if f == "slo_attainment":
        return f"{100 * v:.1f}%"
    if f in ("completed", "dropped", "scale_events"):
        return f"{v:.0f}"
    if f == "mean_replicas":
        return f"{v:.2f}"
    return f"{v:.1f}"


def _pct(v: float | None) -> str:
    """A relative error as a signed percentage; ``—`` for NaN or None."""
    return "—" if v is None or v != v else f"{100 * v:+.1f}%"


# --------------------------------------------------------------------------- figures
def overlay_figures(real_ts: pd.DataFrame, sim_ts: pd.DataFrame, *, service: str,
                    slo_ms: float | None = None, real_requests: pd.DataFrame | None = None,
                    sim_requests: pd.DataFrame | None = None) -> list[Any]:
    """Plotly figures of one service, real vs simulated: replica counts (ready and starting)
    over time with the arrival rate, and windowed p95 latency over time.

    The frames are ``timeseries.parquet`` (and optionally ``requests.parquet``) rows; only
    ``service``'s rows are used, relabelled ``real`` and ``simulated``.
    """
    from simscale.reports import figures as F

    def pick(df: pd.DataFrame | None, label: str) -> pd.DataFrame | None:
        if df is None or not len(df):
            return None
        out = df[df["service"] == service].copy()
        if "replication" in out:
            out = out[out["replication"] == out["replication"].min()]
        out["label"] = label
        out["replication"] = 0
        return out

    ts = pd.concat([x for x in (pick(real_ts, "real"), pick(sim_ts, "simulated"))
                    if x is not None], ignore_index=True)
    colors = {"real": "#111827", "simulated": "#2563eb"}
    reqs = None
    if real_requests is not None and sim_requests is not None:
        rr, sr = pick(real_requests, "real"), pick(sim_requests, "simulated")
        if rr is not None and sr is not None:
            cols = ["label", "replication", "arrival_s", "end_s", "drop_reason"]
            both = pd.concat([rr[cols], sr[cols]], ignore_index=True)
            both["drop_reason"] = both["drop_reason"].astype(str)
            reqs = both
    return [
        F.replicas_figure(ts, colors=colors, title=f"{service}: replicas, real vs simulated"),
        F.latency_figure(ts, slo_ms=slo_ms, requests=reqs, colors=colors,
                         title=f"{service}: p95 latency, real vs simulated"),
    ]


def size_figure(real_replicas: pd.DataFrame, sim_ts: pd.DataFrame, *, service: str,
                duration_s: float) -> Any | None:
    """Ready replicas per size (threads) over time of one service, real vs simulated; ``None``
    when neither run had more than one size.

    ``real_replicas``: the real run's ``replicas.csv`` rows (``service``, ``threads``,
    ``ready_s``, ``drain_s``, ``stop_s``; a replica takes work from ready until it drains or
    stops); ``sim_ts``: the simulation's ``timeseries.parquet`` (its replicas all have the
    ``threads`` of the bin: it resizes in place).
    """
    from simscale.reports.figure_style import add_trace, base_figure, scatter, update_axis

    reps = real_replicas[real_replicas["service"] == service] if len(real_replicas) else None
    sim = sim_ts[sim_ts["service"] == service] if len(sim_ts) else sim_ts
    if "replication" in sim:
        sim = sim[sim["replication"] == sim["replication"].min()]
    real_sizes = sorted(set(reps["threads"])) if reps is not None and "threads" in reps else []
    sim_sizes = sorted(set(sim["threads"])) if len(sim) else []
    if len(real_sizes) < 2 and len(sim_sizes) < 2:
        return None
    fig = base_figure(f"{service}: ready replicas by size, real (rolling restart) vs "
                      "simulated (in place)", hovermode="x unified")
    palette = ["#111827", "#dc2626", "#16a34a", "#9333ea"]
    for j, th in enumerate(sorted(set(real_sizes) | set(sim_sizes))):
        color = palette[j % len(palette)]
        if th in real_sizes:
            own = reps[reps["threads"] == th]
            start = own["ready_s"].to_numpy(float)
            end = np.fmin(own["drain_s"].to_numpy(float), own["stop_s"].to_numpy(float))
            end = np.where(np.isnan(end), duration_s, end)
            t = np.unique(np.clip(np.concatenate([[0.0, duration_s], start, end]), 0.0,
                                  duration_s))
            t = t[np.isfinite(t)]
            n = [int(np.sum((start <= x) & (x < end))) for x in t]
            add_trace(fig, scatter(x=t.tolist(), y=n, mode="lines", name=f"real, {th} threads",
                                   line={"color": color, "shape": "hv"}))
        if th in sim_sizes:
            y = np.where(sim["threads"].to_numpy() == th, sim["replicas_ready"].to_numpy(), 0)
            times = sim["time_s"].to_numpy(float)
            bin_s = float(np.diff(np.unique(times))[0]) if len(np.unique(times)) > 1 else 1.0
            add_trace(fig, scatter(x=np.minimum(times + bin_s, duration_s).tolist(),
                                   y=y.tolist(), mode="lines", name=f"simulated, {th} threads",
                                   line={"color": color, "shape": "hv", "dash": "dot"}))
    update_axis(fig, "xaxis", title="time (s)")
    update_axis(fig, "yaxis", title="ready replicas", rangemode="tozero", dtick=1)
    return fig


def write_report(outdir: Path, doc: dict[str, Any], scenario: Scenario, real: Any, sim: Any
                 ) -> Path:
    """``OUTDIR/report.html``: the fidelity table, the overlay figures per service and the
    measured overheads. ``real`` and ``sim`` are results with ``timeseries`` and ``requests``
    frames."""
    from simscale.io import write_text_atomic
    from simscale.reports.html import Wide, assemble_page
    from simscale.reports.tables import frame_table_html, key_value_table_html

    rows = []
    for name, svc in doc["services"].items():
        ap = (svc.get("diagnosis") or {}).get("a_posteriori") or {}
        for f in FIGURES:
            rows.append({
                "service": name, "figure": f, "real": _fmt(f, svc["real"][f]),
                "simulated": _fmt(f, svc["simulated"][f]),
                "relative error": (f"{svc['abs_error'][f]:+.2f} (absolute)"
                                   if TARGETS.get(f, ("rel",))[0] == "abs"
                                   else _pct(svc["error"][f])),
                "target": ("" if f not in svc.get("within_target", {})
                           else "ok" if svc["within_target"][f] else "off"),
                "uncalibrated": _fmt(f, ((svc.get("uncalibrated") or {}).get("simulated")
                                         or {}).get(f, math.nan)),
                "relative error ": _pct(((svc.get("uncalibrated") or {}).get("error")
                                         or {}).get(f, math.nan)),
                **({} if "colocation_off" not in svc else {
                    "without co-location": _fmt(f, svc["colocation_off"]["simulated"].get(
                        f, math.nan)),
                    "relative error  ": _error_text(f, svc["colocation_off"])}),
                "a posteriori (diagnosis)": _fmt(f, (ap.get("simulated") or {}).get(f, math.nan)),
            })
    sections: list[tuple[str, list[Any]]] = [("Fidelity", [frame_table_html(pd.DataFrame(rows))])]
    path = outdir / "real" / "replicas.csv"
    real_replicas = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    for svc in scenario.services:
        figs = overlay_figures(real.timeseries, sim.timeseries, service=svc.name,
                               slo_ms=svc.slo_ms, real_requests=real.requests,
                               sim_requests=getattr(sim, "requests", None))
        sized = size_figure(real_replicas, sim.timeseries, service=svc.name,
                            duration_s=float(scenario.duration_s))
        sections.append((svc.name, [Wide(f) for f in [*figs, *([sized] if sized else [])]]))
    facts = []
    for name, c in (doc.get("calibration") or {}).items():
        for k, v in c.items():
            facts.append((f"{name}: calibration {k}", f"{v:.3f}"))
    for name, o in doc.get("overhead", {}).items():
        for k, v in o.items():
            facts.append((f"{name}: {k}", f"{v:.3f}"))
    for name, w in doc.get("warmup", {}).items():
        for k, v in w.items():
            facts.append((f"{name}: warm-up {k}", f"{v:.3f}"))
    for k, v in (doc.get("generator_lag_ms") or {}).items():
        facts.append((f"load generator lag {k}", f"{v:.3f}"))
    for name, cs in doc.get("cold_start_s", {}).items():
        for when, values in cs.items():
            facts.append((f"{name}: cold starts, {when.replace('_', ' ')} (s)",
                          ", ".join(f"{c:.2f}" for c in values) or "none"))
    for name, svc in doc["services"].items():
        d = svc.get("diagnosis") or {}
        for k, v in d.items():
            if isinstance(v, int | float | bool):
                facts.append((f"{name}: {k}", f"{v:.3f}" if isinstance(v, float) else str(v)))
        for level, c in ((d.get("contention") or {}).get("by_other_batches_in_service")
                         or {}).items():
            facts.append((f"{name}: service / profile median with {level} other batches "
                          "in service", f"{c['service_over_profile_median']:.2f} "
                          f"({c['batches']} batches)"))
    sections.append(("Measured overheads and diagnosis", [key_value_table_html(facts)]))
    if doc.get("notes"):
        sections.append(("Notes", [key_value_table_html(
            [(str(j + 1), str(n)) for j, n in enumerate(doc["notes"])])]))
    load = doc.get("load_average") or [math.nan] * 3
    others = (doc.get("cpu_cores_busy") or {}).get("others_cores", math.nan)
    header = [("scenario", scenario.name), ("strategy", str(doc.get("label"))),
              ("duration", f"{scenario.duration_s:g} s"), ("seed", str(scenario.seed)),
              ("load average", f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"),
              ("cores used by others", f"{others:.2f}"
               + (" (not representative)" if doc.get("representative") is False else "")),
              ("cores", str(doc.get("cores"))), ("profile", str(doc.get("profile")))]
    page = assemble_page(f"Validation: {scenario.name}", header, sections,
                         kicker="simscale validate",
                         description="The simulation against a real run of the same arrivals "
                         "on this machine.")
    path = outdir / "report.html"
    write_text_atomic(path, page)
    return path
