"""HTML reports of simulation results (one self-contained file that opens offline).

- :func:`render_report` — ``OUTDIR/report.html`` from a saved result folder.
- :func:`render_sweep_report` — the report of a parameter sweep table.
- :func:`assemble_page` — build a page from sections of HTML fragments and figures (plain
  dicts in plotly.js's schema, built by :mod:`simscale.reports.figures`).

The report modules load only when one of these is first used; plotly.py is never imported
(plotly.js is read from its package data and embedded in the page).
"""

from __future__ import annotations

from typing import Any

__all__ = ["assemble_page", "render_report", "render_sweep_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from simscale.reports import html

        return getattr(html, name)
    raise AttributeError(f"module 'simscale.reports' has no attribute {name!r}")
