"""The results table of a sweep: job records flattened into one row per (sweep row, service).

Columns, in order: one per grid path (named by the path; ``grid.<path>`` if that name is
taken), ``strategy``, ``label``, ``seed``, ``service``, ``replication``, every figure of the
run as in ``summary.json`` (``simulator/RESULTS.md``; nested names joined by dots, e.g.
``latency_ms.p95``, ``info.<name>``; flattened by :func:`simscale.simulator.schema.flatten`, so
lists such as ``events`` are left out),
``error`` (empty unless the job failed or did not run) and ``job`` (the job's key).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simscale.io import write_with_atomic
from simscale.simulator.schema import flatten
from simscale.sweeps.plan import Job, Row, SweepPlan, canonical_json

__all__ = ["KEY_COLUMNS", "SKIPPED_FIELDS", "build_table", "write_table"]

#: Columns of the results table that are not figures of a run.
#: (the schema's :data:`~simscale.simulator.schema.ID_COLUMNS`, in the table's order).
KEY_COLUMNS: tuple[str, ...] = ("strategy", "label", "seed", "service", "replication")
#: Run fields left out of the table (``events`` is a list of scaling actions).
SKIPPED_FIELDS: frozenset[str] = frozenset({"events"})


def _grid_column_values(values: list[Any]) -> Callable[[Any], Any]:
    """How a grid path's values go into a column: numbers and strings as they are, anything
    else (or a mix) as canonical JSON, so that the column has one type (parquet needs it)."""
    kinds = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, (int, float)):
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            kinds.add("other")
    if len(kinds) == 1 and "other" not in kinds:
        return lambda v: v
    return canonical_json


FlatRow = tuple[Row, Job, dict[str, Any], dict[str, Any] | None]


def _flat_rows(plan: SweepPlan, records: dict[str, dict[str, Any]]
               ) -> tuple[list[FlatRow], dict[str, None]]:
    """``(sweep row, job, run, figures)`` per table row, in plan order (``figures`` is
    ``None`` for the services of a job without a result), and the names of all figures (in
    order of first appearance)."""
    fixed = set(KEY_COLUMNS) | {"error", "job"}
    figure_names: dict[str, None] = {}
    flat_rows: list[FlatRow] = []
    for row in plan.rows:
        job = plan.jobs[row.job_key]
        rec = records.get(row.job_key)
        runs = rec.get("runs") if rec is not None and "error" not in rec else None
        if runs:
            for run in runs:
                figures = flatten(run, skip=fixed | SKIPPED_FIELDS)
                figure_names.update(dict.fromkeys(figures))
                flat_rows.append((row, job, run, figures))
        else:
            for service in job.services:
                flat_rows.append((row, job, {"service": service}, None))
    return flat_rows, figure_names


def build_table(plan: SweepPlan, records: dict[str, dict[str, Any]]) -> Any:
    """The results table (a pandas DataFrame), one row per (sweep row, service), in plan order.

    ``records`` maps job keys to their records; a job with an error (or none) gives one row per
    service of its scenario with the figures empty and ``error`` set (``"not run"`` when it has
    no record).
    """
    import pandas as pd

    flat_rows, figure_names = _flat_rows(plan, records)
    taken = set(KEY_COLUMNS) | {"error", "job"} | set(figure_names)
    grid_cols = [f"grid.{p}" if p in taken else p for p in plan.grid_paths]
    convert = [_grid_column_values(plan.spec.grid[p]) for p in plan.grid_paths]
    data: list[dict[str, Any]] = []
    for row, job, run, figures in flat_rows:
        rec = records.get(row.job_key)
        out: dict[str, Any] = {c: f(v) for c, f, v in zip(grid_cols, convert, row.point,
                                                           strict=True)}
        out["strategy"] = run.get("strategy", job.strategy_name)
        out["label"] = run.get("label", job.label)
        out["seed"] = job.seed
        out["service"] = run["service"]
        out["replication"] = run.get("replication", 0)
        for name in figure_names:
            out[name] = (figures or {}).get(name)
        if figures is None:
            out["error"] = rec.get("error", "not run") if rec is not None else "not run"
        else:
            out["error"] = None
        out["job"] = row.job_key
        data.append(out)
    columns = [*grid_cols, *KEY_COLUMNS, *figure_names, "error", "job"]
    df = pd.DataFrame(data, columns=columns)
    for name in figure_names:  # None from failed rows -> NaN in numeric columns
        if df[name].map(lambda v: v is None or isinstance(v, (int, float))).all():
            df[name] = pd.to_numeric(df[name])
    df["error"] = df["error"].astype("string")
    return df


def write_table(df: Any, outdir: Path) -> tuple[Path, Path]:
    """Write ``results.parquet`` and ``results.csv`` into ``outdir`` atomically; return their
    paths."""
    parquet = outdir / "results.parquet"
    csv = outdir / "results.csv"
    write_with_atomic(parquet, lambda p: df.to_parquet(p, index=False))
    write_with_atomic(csv, lambda p: df.to_csv(p, index=False))
    return parquet, csv
