"""The strategy tables that ``simscale simulate`` prints in the terminal.

One table per service: a row per strategy label, means over replications and, with several
replications, the half-width of the 95% confidence interval after each mean (``206 ±12``),
the same figures as the HTML report's tables (:func:`simscale.reports.tables.strategy_stats`).

A table never cuts a number or a name: when the console is too narrow for every column, the
columns that matter least are left out (their names are listed under the table), and long
strategy labels are wrapped on their own boundaries (``module:Class`` at the colon, dotted
module paths at the dots) instead of ending in ``…``. Which columns go first is
:data:`TERMINAL_COLUMNS`' ``priority``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from simscale.reports.data import runs_frames
from simscale.reports.tables import strategy_stats
from simscale.simulator.schema import figure

#: Longest line of a strategy label before it is wrapped (characters), and the narrower
#: width tried before a column is left out of a narrow console.
LABEL_WIDTH = 28
NARROW_LABEL_WIDTH = 18
_UNLIMITED = 100_000


def _latency(v: float) -> str:
    """Milliseconds: whole above 100 (``1,026``), one decimal below (``99.5``)."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def _decimals_latency(v: float) -> int:
    return 0 if abs(v) >= 100 else 1


def _sig3_decimals(v: float) -> int:
    """Decimals that show ``v`` with 3 significant digits in fixed notation (0.0167, 0.00833,
    12.3, 1,234)."""
    if v == 0 or not math.isfinite(v):
        return 3
    return max(0, 2 - math.floor(math.log10(abs(v))))


def _count_decimals(v: float) -> int:
    """Counts: no decimals when whole (``4``, never ``4.0``), one for a mean that is not."""
    return 0 if math.isclose(v, round(v), abs_tol=1e-9) else 1


@dataclass(frozen=True)
class TerminalColumn:
    """A column of the terminal table.

    ``key`` is a column of :func:`~simscale.reports.tables.strategy_stats` (its 95%
    half-width is ``key + "_ci"``); ``decimals(mean)`` gives how many decimals the mean and its
    interval are shown with; ``scale`` and ``suffix`` turn the value into what is printed
    (``100`` and ``%`` for a fraction); ``offset`` is added after scaling (``1`` turns a
    relative difference into a ratio). ``priority``: 1 is kept longest when the console is
    narrow.
    """

    key: str
    header: str
    priority: int
    decimals: Callable[[float], int]
    scale: float = 1.0
    offset: float = 0.0
    suffix: str = ""

    def __post_init__(self) -> None:
        figure(self.key)  # every column is a figure of the result schema

    def text(self, mean: float, half: float) -> Text:
        """The cell: the mean, and `` ±half`` (dim) when ``half`` is finite."""
        if mean is None or not math.isfinite(mean):
            return Text("—")
        value = mean * self.scale + self.offset
        digits = self.decimals(value)
        cell = Text(f"{value:,.{digits}f}{self.suffix}")
        if half is not None and math.isfinite(half):
            cell.append(f" ±{_half_text(half * self.scale, digits)}", style="dim")
        return cell


def _half_text(half: float, digits: int) -> str:
    """A half-width with the mean's decimals; ``0`` when it rounds to zero at that precision
    (the replications agree to the digits shown)."""
    if round(half, digits) == 0:
        return "0"
    return f"{half:,.{digits}f}"


#: The columns, in display order. ``priority`` decides which stay in a narrow console: p95
#: latency, SLO attainment and cost (relative to the oracle, then absolute) answer the
#: question simscale asks; replicas, drops, p99, scale events and p50 explain the answer.
TERMINAL_COLUMNS: tuple[TerminalColumn, ...] = (
    TerminalColumn("latency_ms.p50", "p50 ms", 9, _decimals_latency),
    TerminalColumn("latency_ms.p95", "p95 ms", 1, _decimals_latency),
    TerminalColumn("latency_ms.p99", "p99 ms", 7, _decimals_latency),
    TerminalColumn("slo_attainment", "SLO met", 2, lambda v: 1, scale=100.0, suffix="%"),
    TerminalColumn("dropped", "dropped", 6, _count_decimals),
    TerminalColumn("cost_usd", "cost $", 4, _sig3_decimals),
    TerminalColumn("mean_replicas", "replicas", 5, lambda v: 2),
    TerminalColumn("scale_events", "events", 8, _count_decimals),
    TerminalColumn("cost_vs_oracle", "cost/oracle", 3, lambda v: 2, offset=1.0, suffix="x"),
)


def wrap_label(label: str, width: int = LABEL_WIDTH) -> list[str]:
    """Lines of a strategy label no longer than ``width``, joined they give the label back.

    A label that fits stays one line. Otherwise ``module:Class`` breaks after the colon, a
    dotted path after its dots (as many parts per line as fit), and only a single part longer
    than ``width`` is cut into ``width``-character pieces.
    """
    if len(label) <= width:
        return [label]
    head, colon, tail = label.partition(":")
    parts = [head + colon, tail] if colon and tail else [label]
    lines: list[str] = []
    for part in parts:
        pieces = [p + "." for p in part.split(".")[:-1]] + [part.split(".")[-1]]
        pieces = [p for p in pieces if p]
        line = ""
        for piece in pieces:
            if line and len(line) + len(piece) > width:
                lines.append(line)
                line = ""
            while len(piece) > width:
                if line:
                    lines.append(line)
                    line = ""
                lines.append(piece[:width])
                piece = piece[width:]
            line += piece
        if line:
            lines.append(line)
    return lines


def _label_cell(label: str, strategy: str, width: int = LABEL_WIDTH) -> Text:
    """The strategy cell: the label, wrapped by :func:`wrap_label` at ``width``; a module
    path before the class name is dim so the class stands out."""
    lines = wrap_label(label, width)
    text = Text()
    for i, line in enumerate(lines):
        if i:
            text.append("\n")
        module_part = len(lines) > 1 and i < len(lines) - 1 and ":" in label
        text.append(line, style="dim" if module_part else "")
    return text


def service_stats(summary: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Per service (in order of first appearance in the summary's runs), the table of
    :func:`~simscale.reports.tables.strategy_stats`: means and 95% half-widths over
    replications, and cost relative to the oracle when it ran."""
    runs, _ = runs_frames(list(summary["runs"]), source=Path("summary.json"))
    return {str(service): strategy_stats(sub)
            for service, sub in runs.groupby("service", sort=False)}


def build_table(
    stats: pd.DataFrame,
    *,
    title: str,
    columns: Sequence[TerminalColumn],
    with_ci: bool,
    hidden: Sequence[TerminalColumn] = (),
    label_width: int = LABEL_WIDTH,
) -> Table:
    """A rich table of one service's ``stats`` with the given ``columns``, strategy labels
    wrapped at ``label_width``. Cells never end in ``…``: every column folds instead of
    cutting. ``hidden`` columns are named in the caption."""
    caption = None
    if hidden:
        names = ", ".join(c.header for c in sorted(hidden, key=lambda c: c.priority))
        caption = f"not shown at this width: {names} (see summary.json or report.html)"
    table = Table(title=Text(title, style="italic"), title_justify="left",
                  caption=Text(caption, style="dim") if caption else None,
                  caption_justify="left")
    table.add_column("strategy", overflow="fold")
    for col in columns:
        table.add_column(col.header, justify="right", overflow="fold")
    for rec in stats.to_dict("records"):
        cells = [_label_cell(str(rec["label"]), str(rec.get("strategy", "")), label_width)]
        for col in columns:
            half = rec.get(f"{col.key}_ci", math.nan) if with_ci else math.nan
            cells.append(col.text(rec.get(col.key, math.nan), half))
        table.add_row(*cells)
    return table


def fit_table(
    stats: pd.DataFrame, console: Console, *, title: str, with_ci: bool
) -> tuple[Table, list[TerminalColumn]]:
    """The widest table of ``stats`` that fits ``console``.

    It starts from every column that ``stats`` has and, while the table's natural width
    (uncut) exceeds the console's, first wraps long strategy labels narrower
    (:data:`LABEL_WIDTH`, then :data:`NARROW_LABEL_WIDTH`), then leaves out the column of
    lowest priority and tries again. Strategy and the top-priority column always stay (rich
    folds them if even those do not fit). Returns the table and the columns left out.
    """
    available = [c for c in TERMINAL_COLUMNS if c.key in stats.columns]
    shown = list(available)
    unlimited = console.options.update(max_width=_UNLIMITED)
    while True:
        hidden = [c for c in available if c not in shown]
        for label_width in (LABEL_WIDTH, NARROW_LABEL_WIDTH):
            table = build_table(stats, title=title, columns=shown, with_ci=with_ci,
                                hidden=hidden, label_width=label_width)
            # the width the table wants, measured without the console's limit
            if Measurement.get(console, unlimited, table).maximum <= console.width:
                return table, hidden
        if len(shown) <= 1:
            return table, hidden
        shown.remove(max(shown, key=lambda c: c.priority))


def print_summary_table(summary: Mapping[str, Any], console: Console) -> None:
    """Print one table per service of a summary's runs (``summary.json``'s dict): means over
    replications, with the 95% confidence interval's half-width after each mean when there
    are several replications, and cost relative to the oracle when the oracle ran. The tables
    fit the console's width (see :func:`fit_table`)."""
    if not summary.get("runs"):
        console.print("no runs")
        return
    n = int(summary.get("replications", 1) or 1)
    head = (f"{summary['scenario']}: {float(summary['duration_s']):.0f} s simulated, "
            f"seed {summary['seed']}")
    if n > 1:
        head += f", means of {n} replications ± 95% confidence interval"
    console.print(Text(head, style="bold"))
    slo_of = {str(s.get("name")): s.get("slo_ms") for s in summary.get("services", [])}
    first_slo = {}
    for run in summary["runs"]:
        first_slo.setdefault(str(run["service"]), run.get("slo_ms"))
    for service, stats in service_stats(summary).items():
        slo = first_slo.get(service) or slo_of.get(service)
        title = f"{service} (SLO {float(slo):g} ms)" if slo else service
        table, _ = fit_table(stats, console, title=title, with_ci=n > 1)
        console.print(table)
        print_bounds(summary, service, console)


def print_bounds(summary: Mapping[str, Any], service: str, console: Console) -> None:
    """Each strategy's cost against the bounds on the optimum of ``service`` (nothing when
    the summary has no ``bounds``): :func:`~simscale.reports.tables.bounds_frame`."""
    from simscale.reports.tables import bounds_frame, bounds_summary_text

    frame = bounds_frame(summary, service)
    if frame is None:
        return
    table = Table(title=Text(f"{service}: {bounds_summary_text(summary, service)}",
                             style="dim"), title_justify="left")
    for col in ("strategy", "cost $", "SLO met", "cost/hindsight", "cost/lower bound"):
        table.add_column(col, justify="left" if col == "strategy" else "right",
                         overflow="fold")

    def ratio(v: float) -> str:
        return f"{v:.2f}x" if math.isfinite(v) else "—"

    for rec in frame.to_dict("records"):
        cost = float(rec["cost $"])
        att = float(rec["SLO met"])
        table.add_row(str(rec["strategy"]),
                      f"{cost:.{_sig3_decimals(cost)}f}",
                      f"{att * 100:.1f}%" if math.isfinite(att) else "—",
                      ratio(float(rec["cost/hindsight"])),
                      ratio(float(rec["cost/lower bound"])))
    console.print(table)
