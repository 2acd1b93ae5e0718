"""Self-contained HTML reports.

:func:`render_report` turns one result folder (``summary.json``, ``timeseries.parquet`` and,
when present, ``requests.parquet``; see ``simulator/RESULTS.md``) into ``report.html``: one
file that opens offline, with plotly.js embedded once and every figure stored as JSON in a
``<script type="application/json">`` element that a small script hands to ``Plotly.newPlot``.
The figures are plain dicts in plotly.js's schema (:mod:`simscale.reports.figures`), encoded
by :func:`~simscale.reports.plotly_js.figure_json`, and plotly.js is read from the plotly
package's data (:func:`~simscale.reports.plotly_js.plotly_js`): plotly.py itself is never
imported, which keeps a small ``simscale simulate`` fast.

:func:`assemble_page` builds such a page from any sections of HTML fragments and figures, so
sweep (:func:`render_sweep_report`) and validation reports share the look and the machinery.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from simscale.errors import UserError
from simscale.io import write_text_atomic
from simscale.reports import figures as F
from simscale.reports.data import ResultSet, load_results
from simscale.reports.figure_style import Figure
from simscale.reports.plotly_js import figure_json, plotly_js
from simscale.reports.tables import (
    bounds_table_html,
    comparison_table_html,
    frame_table_html,
    service_order,
    service_urgency,
    strategy_stats,
)
from simscale.simulator.schema import FIGURES, figure_names
from simscale.simulator.schema import METRIC_ROOTS as SCHEMA_METRIC_ROOTS

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Wide:
    """Wrap a figure (or HTML fragment) so that it spans the full width of its section."""

    item: Figure | str


#: What a section may hold: an HTML fragment (trusted: escape user text first), a figure dict
#: (half width on wide screens) or a :class:`Wide` figure or fragment. HTML fragments are
#: always full width.
Item = str | Figure | Wide

CSS = """
:root{--bg:#f4f6fa;--card:#fff;--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--accent:#2563eb;
--best:#ecfdf5;--best-ink:#047857}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,
'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:1320px;margin:0 auto;padding:28px 24px 64px}
header.page{background:linear-gradient(135deg,#0f172a,#1e3a8a);color:#f8fafc;border-radius:16px;
padding:24px 28px;margin-bottom:22px;box-shadow:0 8px 24px rgba(15,23,42,.18)}
header.page .kicker{font-size:12px;letter-spacing:.08em;text-transform:uppercase;opacity:.7}
header.page h1{margin:4px 0 6px;font-size:26px;font-weight:650;word-break:break-word}
header.page p.desc{margin:0 0 16px;opacity:.85;max-width:80ch}
dl.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px 18px;
margin:0}
dl.facts div{background:rgba(255,255,255,.08);border-radius:10px;padding:8px 12px}
dl.facts dt{font-size:11px;text-transform:uppercase;letter-spacing:.06em;opacity:.65}
dl.facts dd{margin:2px 0 0;font-weight:550;word-break:break-word}
nav.toc{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 18px}
nav.toc a{background:var(--card);border:1px solid var(--line);border-radius:999px;
padding:4px 12px;color:var(--ink);text-decoration:none;font-size:13px}
nav.toc a:hover{border-color:var(--accent);color:var(--accent)}
section.card{background:var(--card);border-radius:14px;padding:20px 22px;margin-bottom:22px;
box-shadow:0 1px 3px rgba(15,23,42,.06),0 1px 2px rgba(15,23,42,.04);
border:1px solid var(--line)}
section.card>h2{margin:0 0 14px;font-size:18px;font-weight:650}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px}
.grid>.wide{grid-column:1/-1}
@media (max-width:900px){.grid{grid-template-columns:1fr}}
.fig-box{border:1px solid #eef0f4;border-radius:12px;padding:12px 12px 4px;min-width:0}
.fig-box.wide{grid-column:1/-1}
.fig{min-height:200px}
h3.fig-title{margin:0 0 2px 4px;font-size:14px;font-weight:600;color:#111827}
h3.fig-title .sub{font-weight:400;color:var(--muted);font-size:12.5px}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
table.compare{font-size:13px}
table.compare th,table.compare td{padding:7px 8px;border-bottom:1px solid var(--line);
text-align:right;white-space:nowrap;vertical-align:top}
table.compare thead th{font-size:11px;color:var(--muted);font-weight:600;
text-transform:uppercase;letter-spacing:.03em;border-bottom:2px solid var(--line);
white-space:normal;vertical-align:bottom}
table.compare td .note{font-size:11px;color:var(--muted);font-weight:400}
table.compare th:first-child,table.compare td:first-child{text-align:left}
table.compare tbody tr:hover{background:#f9fafb}
table.compare td.best{background:var(--best);color:var(--best-ink);font-weight:700}
table.compare tr.reference{color:#4b5563;font-style:italic}
.ci{display:block;font-size:11px;color:var(--muted);font-weight:400}
td.best .ci{color:#059669}
.swatch{display:inline-block;width:10px;height:10px;border-radius:3px;margin-right:8px;
vertical-align:middle}
.muted{color:var(--muted);font-weight:400;font-size:12px}
.badge{display:inline-block;font-size:10px;font-style:normal;text-transform:uppercase;
letter-spacing:.05em;background:#f3f4f6;color:#374151;border-radius:6px;padding:1px 6px;
margin-left:6px}
table.kv th{text-align:left;color:var(--muted);font-weight:500;padding:4px 16px 4px 0;
white-space:nowrap;vertical-align:top}
table.kv td{padding:4px 0}
p.note{color:var(--muted);font-size:12.5px;margin:8px 0 0}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:28px}
"""

BOOT_JS = """
(function(){
  var cfg={responsive:true,displaylogo:false,displayModeBar:'hover',
           modeBarButtonsToRemove:['lasso2d','select2d']};
  var els=document.querySelectorAll('script.fig-data');
  for(var i=0;i<els.length;i++){
    var el=els[i],target=document.getElementById(el.getAttribute('data-target'));
    try{var spec=JSON.parse(el.textContent);
        Plotly.newPlot(target,spec.data,spec.layout||{},cfg);}
    catch(e){target.className+=' failed';
             target.textContent='This figure could not be drawn: '+e;console.error(e);}
  }
})();
"""


def split_title(fig: Figure) -> tuple[str, Figure]:
    """Move a figure's title out of plotly into an HTML caption (so a long legend never
    overlaps it). The title is plotly text (user text escaped by
    :func:`~simscale.reports.figures.ptext`); it is unescaped and escaped again, so the caption
    shows exactly what plotly would. A part after the first `` · `` is shown muted. Returns
    the caption and a copy of the figure without the title (``fig`` is left as it is)."""
    layout = dict(fig.get("layout") or {})
    title = layout.pop("title", None)
    text = title.get("text") if isinstance(title, Mapping) else title
    rest = {k: v for k, v in title.items() if k != "text"} if isinstance(title, Mapping) else {}
    if rest:
        layout["title"] = rest
    layout["margin"] = {**(layout.get("margin") or {}), "t": 36}
    bare = {**fig, "layout": layout}
    if not text:
        return '<h3 class="fig-title"></h3>', bare
    plain = html.unescape(re.sub(r"<br\s*/?>", " ", str(text)))
    main, _, sub = plain.partition(" · ")
    sub_html = f' <span class="sub">· {html.escape(sub)}</span>' if sub else ""
    return f'<h3 class="fig-title">{html.escape(main)}{sub_html}</h3>', bare


def _slug(text: str, used: set[str]) -> str:
    base = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")[:40] or "s"
    slug, k = f"sec-{base}", 1
    while slug in used:
        k += 1
        slug = f"sec-{base}-{k}"
    used.add(slug)
    return slug


def assemble_page(
    title: str,
    header_rows: Sequence[tuple[str, str]],
    sections: Sequence[tuple[str, Sequence[Item]]],
    *,
    description: str | None = None,
    kicker: str = "simscale report",
    footer: str | None = None,
) -> str:
    """A whole self-contained HTML page.

    Parameters
    ----------
    title, description, kicker:
        Page title, an optional line under it and the small line above it (plain text,
        escaped).
    header_rows:
        ``(name, value)`` facts shown in the header (plain text, escaped).
    sections:
        ``(heading, items)``: each becomes a card with a link in the page's table of contents.
        An item is a figure dict (half width; :mod:`simscale.reports.figures`), a :class:`Wide`
        figure (full width) or an HTML fragment string (full width; trusted, so escape user
        text in it first).
    footer:
        Plain text for the page foot (defaults to the render time).
    """
    figs: list[str] = []
    used: set[str] = set()
    nav: list[str] = []
    parts: list[str] = []
    for heading, items in sections:
        sid = _slug(heading, used)
        nav.append(f'<a href="#{sid}">{html.escape(heading)}</a>')
        cells: list[str] = []
        for item in items:
            wide = isinstance(item, Wide)
            inner = item.item if isinstance(item, Wide) else item
            if isinstance(inner, dict):
                fid = f"fig-{len(figs) + 1}"
                caption, bare = split_title(inner)
                figs.append(
                    f'<script type="application/json" class="fig-data" data-target="{fid}">'
                    f"{figure_json(bare)}</script>"
                )
                cls = "fig-box wide" if wide else "fig-box"
                cells.append(f'<div class="{cls}">{caption}<div class="fig" id="{fid}"></div>'
                             "</div>")
            elif isinstance(inner, str):
                cells.append(f'<div class="wide">{inner}</div>')
            else:
                raise TypeError("a section item is an HTML string, a figure dict "
                                f"({{'data': [...], 'layout': {{...}}}}) or Wide; got "
                                f"{type(inner).__name__}")
        parts.append(
            f'<section class="card" id="{sid}"><h2>{html.escape(heading)}</h2>'
            f'<div class="grid">{"".join(cells)}</div></section>'
        )
    facts = "".join(
        f"<div><dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd></div>"
        for k, v in header_rows
    )
    desc = f'<p class="desc">{html.escape(description)}</p>' if description else ""
    if footer is None:
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        footer = f"Rendered by simscale on {now}. Opens offline; plotly.js is embedded."
    toc = f'<nav class="toc">{"".join(nav)}</nav>' if len(nav) > 1 else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js()}</script></head>\n<body><main>'
        f'<header class="page"><div class="kicker">{html.escape(kicker)}</div>'
        f"<h1>{html.escape(title)}</h1>{desc}<dl class=\"facts\">{facts}</dl></header>"
        f"{toc}{''.join(parts)}<footer>{html.escape(footer)}</footer></main>\n"
        f"{''.join(figs)}\n<script>{BOOT_JS}</script></body></html>\n"
    )


# --- the run report ---------------------------------------------------------------------


def _fmt_s(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    if v >= 120:
        return f"{v / 60:.1f} min"
    return f"{v:.3g} s" if v < 10 else f"{v:.0f} s"


def _fmt_date(value: Any) -> str:
    """An ISO 8601 time stamp as ``2026-11-29 23:39 UTC`` (other text unchanged)."""
    if value is None:
        return "?"
    try:
        stamp = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if stamp.tzinfo is None or len(str(value)) <= 10:
        return str(value)
    return stamp.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _profile_source(source: Any) -> str:
    """A profile's source as a reader wants it: a profile that ships inside simscale as
    ``default_cpu.json (shipped)``, any other as given (its path)."""
    if source is None:
        return "?"
    text = str(source)
    try:
        from importlib.resources import files

        shipped = Path(str(files("simscale.profiler") / "data")).resolve()
        path = Path(text).resolve()
    except (ImportError, OSError, ValueError):
        return text
    if path.parent == shipped:
        return f"{path.name} (shipped)"
    return text


def header_facts(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The header facts of a run report: what was simulated, on which profile, how."""
    profile = summary.get("profile") or {}
    machine = profile.get("machine") or {}
    rows: list[tuple[str, str]] = [("Scenario", str(summary.get("scenario", "?")))]
    duration = _fmt_s(summary.get("duration_s"))
    warmup = summary.get("warmup_s")
    if warmup:
        duration += f" (warm-up {_fmt_s(warmup)})"
    rows.append(("Simulated time", duration))
    rows.append(("Seed", str(summary.get("seed", "?"))))
    rows.append(("Replications", str(summary.get("replications", "?"))))
    if profile:
        rows.append(("Profile", _profile_source(profile.get("source"))))
    if machine:
        cpu = str(machine.get("cpu_model", "?"))
        cores = machine.get("cores")
        gpu = machine.get("gpu")
        desc = f"{cpu} · {cores} cores" if cores is not None else cpu
        if gpu:
            desc += f" · {gpu}"
        rows.append(("Profiled on", desc))
        rows.append(("Profiled at", _fmt_date(machine.get("date") or profile.get("created_at"))))
    rows.append(("simscale", str(summary.get("simscale_version", "?"))))
    rows.append(("Wall time", _fmt_s(summary.get("wall_s"))))
    return rows


def _services_table(services: Sequence[Mapping[str, Any]], runs: pd.DataFrame,
                    order: Sequence[str]) -> str:
    """The overview table of the services, in report order, with the figures that set the
    order (:func:`~simscale.reports.tables.service_order`)."""
    if not services:
        return ""
    cols = [("name", "Service"), ("model", "Model"), ("device", "Device"),
            ("threads", "Threads"), ("max_batch_size", "Max batch"), ("slo_ms", "SLO (ms)"),
            ("routing", "Routing"), ("cost_per_replica_hour", "USD / replica-hour")]
    rank = {name: i for i, name in enumerate(order)}
    ordered = sorted(services, key=lambda s: rank.get(str(s.get("name")), len(rank)))
    frame = pd.DataFrame([{h: s.get(k, "") for k, h in cols} for s in ordered])
    slo = {str(s.get("name")): float(s["slo_ms"]) for s in services if s.get("slo_ms")}
    urgency = service_urgency(runs, slo_ms=slo).set_index("service") if len(runs) else None
    if urgency is not None:
        names = [str(s.get("name")) for s in ordered]
        att = [urgency["best_slo_attainment"].get(n, math.nan) for n in names]
        ratio = [urgency["best_p95_over_slo"].get(n, math.nan) for n in names]
        frame["Best SLO attainment"] = [
            "–" if not math.isfinite(a) else f"{100 * a:.2f}%" for a in att]
        frame["Best p95 / SLO"] = ["–" if not math.isfinite(r) else f"{r:.2f}" for r in ratio]
    note = ('<p class="note">Services are ordered by how far their best strategy is from the '
            "SLO: lowest SLO attainment first, then the least p95 headroom, then the highest "
            "cost. The oracle is left out of “best”.</p>")
    return frame_table_html(frame) + (note if urgency is not None else "")


def service_section(
    res: ResultSet,
    service: str,
    colors: Mapping[str, str],
) -> list[Item]:
    """The table and figures of one service of a run report."""
    runs = res.runs[res.runs["service"] == service]
    meta = next((s for s in res.services if str(s.get("name")) == service), {})
    slo = meta.get("slo_ms")
    if slo is None and "slo_ms" in runs.columns and len(runs):
        slo = float(runs["slo_ms"].iloc[0])
    slo = float(slo) if slo is not None else None
    ts = res.timeseries[res.timeseries["service"] == service]
    reqs = None
    if res.requests is not None:
        reqs = res.requests[res.requests["service"] == service]
    events = res.events[res.events["service"] == service]
    stats = strategy_stats(runs)
    warmup = float(res.summary.get("warmup_s") or 0.0)
    n_reps = int(runs["replication"].nunique()) if len(runs) else 0
    desc = [f"{meta.get('model', '?')} on {meta.get('device', '?')}"] if meta else []
    if slo is not None:
        desc.append(f"SLO {slo:g} ms")
    if n_reps > 1:
        desc.append(f"means over {n_reps} replications (± 95% interval)")
    note = (
        f'<p class="note">{html.escape(" · ".join(desc))}. Best value per column highlighted '
        "(lower is better except SLO attainment); the oracle sees the future and is shown "
        "as a reference, not ranked.</p>"
    )
    labels = [lab for lab in res.labels if lab in set(runs["label"])]
    bounds = bounds_table_html(res.summary, service) or ""  # absent in older result folders
    return [
        comparison_table_html(stats, colors=colors) + note + bounds,
        Wide(F.replicas_figure(ts, colors=colors)),
        F.latency_figure(ts, slo_ms=slo, requests=reqs, colors=colors),
        F.cdf_figure(F.latency_cdf(reqs, runs, warmup_s=warmup), slo_ms=slo, colors=colors),
        F.queue_figure(ts, colors=colors),
        F.pareto_figure(stats, colors=colors),
        Wide(F.events_figure(events, colors=colors, labels=labels,
                             duration_s=res.summary.get("duration_s"))),
    ]


def build_report_html(res: ResultSet, *, title: str | None = None) -> str:
    """The run report of a loaded result folder as an HTML string."""
    summary = res.summary
    scenario = str(summary.get("scenario", "simulation"))
    strategies = dict(zip(res.runs["label"], res.runs["strategy"], strict=True))
    colors = F.strategy_colors(res.labels, strategies)
    slo = {str(s.get("name")): float(s["slo_ms"]) for s in res.services if s.get("slo_ms")}
    service_names = service_order(res.runs, [str(s.get("name")) for s in res.services],
                                  slo_ms=slo)
    sections: list[tuple[str, Sequence[Item]]] = []
    overview = _services_table(res.services, res.runs, service_names)
    if overview:
        sections.append(("Services", [overview]))
    for name in service_names:
        if (res.runs["service"] == name).any():
            sections.append((f"Service {name}", service_section(res, name, colors)))
    return assemble_page(
        title or f"{scenario}",
        header_facts(summary),
        sections,
        description=str(summary.get("description") or "") or None,
    )


def render_report(
    outdir: str | Path, *, output: str | Path | None = None, title: str | None = None
) -> Path:
    """Read ``outdir``'s result files and write the HTML report atomically.

    Parameters
    ----------
    outdir:
        A result folder (``summary.json``, ``timeseries.parquet``, optionally
        ``requests.parquet``).
    output:
        Where to write (default ``outdir/report.html``).
    title:
        Page title (default: the scenario's name).

    Returns the path written. Raises :class:`~simscale.errors.UserError` naming the file when a
    result file is missing or malformed, or when the report cannot be written.
    """
    res = load_results(outdir)
    page = build_report_html(res, title=title)
    target = Path(output) if output is not None else Path(outdir) / REPORT_FILE
    _write(target, page)
    return target


def _write(target: Path, page: str) -> None:
    try:
        write_text_atomic(target, page)
    except OSError as exc:
        raise UserError(f"cannot write the report: {exc.strerror or exc}", source=target) from None


# --- the sweep report -------------------------------------------------------------------

#: Columns of a sweep table that identify a job rather than a swept parameter or a metric.
SWEEP_ID_COLUMNS: frozenset[str] = frozenset({
    "scenario", "strategy", "label", "service", "seed", "replication", "job", "job_id", "run",
    "outdir", "status", "error",
})
#: First dotted component of the metric columns a sweep table can hold: every figure of the
#: result schema (``info`` and ``wall_s`` included), so a new figure is never taken for a
#: swept parameter.
METRIC_ROOTS: frozenset[str] = SCHEMA_METRIC_ROOTS
#: Metrics drawn against each parameter by default (those present).
SWEEP_DEFAULT_METRICS: tuple[str, ...] = figure_names(
    "latency_ms.p95", "slo_attainment", "cost_usd", "latency_ms.p99", "mean_replicas",
    "dropped",
)
#: Which way each figure is better (``min``/``max``), for highlighting: the schema's direction.
_BETTER: dict[str, str] = {
    f.name: {"lower": "min", "higher": "max"}[f.better]
    for f in FIGURES.values() if f.better != "none"
}


def sweep_columns(
    results: pd.DataFrame,
    params: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Split a sweep table's columns into swept parameters and metrics.

    Metrics are the columns whose first dotted component is a run figure (``latency_ms.p95``,
    ``cost_usd``); parameters are the remaining columns that are not job identifiers.
    """
    cols = [str(c) for c in results.columns]
    if params is None:
        params = [c for c in cols if c not in SWEEP_ID_COLUMNS
                  and c.split(".")[0] not in METRIC_ROOTS]
    if metrics is None:
        metrics = [c for c in SWEEP_DEFAULT_METRICS if c in cols]
    missing = [c for c in [*params, *metrics] if c not in cols]
    if missing:
        raise UserError(f"sweep results have no column(s): {', '.join(missing)}")
    return list(params), list(metrics)


def build_sweep_html(
    results: pd.DataFrame,
    *,
    params: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> str:
    """The sweep report as an HTML string (see :func:`render_sweep_report`)."""
    if results is None or len(results) == 0:
        raise UserError("sweep results are empty: nothing to report")
    if "strategy" not in results.columns:
        raise UserError("sweep results have no 'strategy' column")
    params, metrics = sweep_columns(results, params, metrics)
    frame = results.copy()
    series = "label" if "label" in frame.columns else "strategy"
    frame[series] = frame[series].astype(str)
    strategies = dict(zip(frame[series], frame["strategy"].astype(str), strict=True))
    colors = F.strategy_colors(list(dict.fromkeys(frame[series])), strategies)
    services = (list(dict.fromkeys(frame["service"].astype(str)))
                if "service" in frame.columns else [None])
    scenario = (", ".join(dict.fromkeys(frame["scenario"].astype(str)))
                if "scenario" in frame.columns else None)
    header: list[tuple[str, str]] = []
    if scenario:
        header.append(("Scenario", scenario))
    header.append(("Jobs", str(len(frame))))
    header.append(("Strategies", str(frame[series].nunique())))
    if "seed" in frame.columns:
        header.append(("Seeds", str(frame["seed"].nunique())))
    for p in params:
        values = list(dict.fromkeys(frame[p].tolist()))
        shown = ", ".join(str(v) for v in values[:8]) + (" …" if len(values) > 8 else "")
        header.append((p, shown))
    sections: list[tuple[str, Sequence[Item]]] = []
    for service in services:
        sub = frame if service is None else frame[frame["service"].astype(str) == service]
        items: list[Item] = []
        keys = [*params, series]
        table = (sub.groupby(keys, sort=True, dropna=False)[metrics].mean().reset_index())
        counts = sub.groupby(keys, sort=True, dropna=False).size().to_numpy()
        table.insert(len(keys), "n", counts)
        better = {m: _BETTER[m] for m in metrics if m in _BETTER}
        oracle_labels = {lab for lab, st in strategies.items() if st == "oracle"}
        unranked = [str(v) in oracle_labels for v in table[series]]
        items.append(frame_table_html(table, better=better, group_by=params,
                                      unranked=unranked) +
                     '<p class="note">Means over seeds; best strategy per parameter setting '
                     "highlighted (the oracle is not ranked).</p>")
        for p in params:
            for m in metrics:
                items.append(F.sweep_figure(sub, p, m, colors=colors, series=series))
        heading = "Sweep" if service is None else f"Service {service}"
        sections.append((heading, items))
    return assemble_page(title or (f"{scenario} · sweep" if scenario else "Sweep"), header,
                         sections, kicker="simscale sweep report")


def render_sweep_report(
    results_df: pd.DataFrame,
    outdir: str | Path,
    *,
    params: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    output: str | Path | None = None,
    title: str | None = None,
) -> Path:
    """Write the report of a parameter sweep: a table of the means per parameter setting and
    strategy, and each metric against each swept parameter, one line per strategy.

    ``results_df`` has one row per job: a column per swept grid path (named by its dotted path,
    e.g. ``services.0.max_replicas``), ``strategy`` (and optionally ``label``, ``service``,
    ``scenario``), ``seed``, and the job's summary figures (``latency_ms.p95``, ``cost_usd``,
    ``slo_attainment``, ...). ``params``/``metrics`` override which columns are which.
    Writes ``outdir/report.html`` (or ``output``) atomically and returns its path.
    """
    page = build_sweep_html(results_df, params=params, metrics=metrics, title=title)
    target = Path(output) if output is not None else Path(outdir) / REPORT_FILE
    _write(target, page)
    return target
