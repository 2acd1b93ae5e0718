"""Read a saved result folder (see ``simulator/RESULTS.md``) into plain pandas objects.

The report reads only ``summary.json``, ``timeseries.parquet`` and, when present,
``requests.parquet``, so that a report can be re-rendered from any saved folder. Every problem
(missing folder, missing file, unreadable file, missing field or column) is a
:class:`~simscale.errors.UserError` that names the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from simscale.errors import UserError
from simscale.safeload import MAX_JSON_BYTES, load_json, read_text
from simscale.simulator.schema import RUN_KEY, figure_names, flatten, timeseries_columns

SUMMARY_FILE = "summary.json"
TIMESERIES_FILE = "timeseries.parquet"
REQUESTS_FILE = "requests.parquet"

#: Columns of ``timeseries.parquet`` the report needs.
TIMESERIES_COLUMNS: tuple[str, ...] = (
    "strategy", "label", "service", "replication", *timeseries_columns(
        "time_s", "arrival_rate_rps", "queue_length", "replicas_starting", "replicas_ready",
        "latency_p95_ms"),
)
#: Further ``timeseries.parquet`` columns that are read when present.
TIMESERIES_OPTIONAL: tuple[str, ...] = timeseries_columns(
    "throughput_rps", "dropped_rps", "in_flight", "replicas_pending", "replicas_draining",
    "utilization", "cost_rate_usd_per_h",
)
#: Columns of ``requests.parquet`` the report needs.
REQUESTS_COLUMNS: tuple[str, ...] = (
    "strategy", "label", "service", "replication", "arrival_s", "end_s", "drop_reason",
)
#: Fields every entry of ``summary.json``'s ``runs`` must have.
#: (identity columns of the schema, and roots of the figures the report cannot do without).
RUN_FIELDS: tuple[str, ...] = (
    *RUN_KEY,
    *(name.split(".")[0] for name in figure_names(
        "arrivals", "completed", "dropped", "latency_ms.p95", "slo_attainment", "cost_usd",
        "mean_replicas", "scale_events")),
)
#: Top-level fields ``summary.json`` must have.
SUMMARY_FIELDS: tuple[str, ...] = ("scenario", "services", "runs")


@dataclass(frozen=True)
class ResultSet:
    """The contents of one result folder.

    Attributes
    ----------
    outdir:
        The folder the files were read from.
    summary:
        ``summary.json`` as a dict.
    runs:
        One row per run (strategy label x service x replication) with the numeric figures of
        ``summary.json``'s ``runs`` flattened to dotted column names (``latency_ms.p95``).
    events:
        One row per scaling event: ``strategy, label, service, replication, time_s, action,
        from_replicas, to_replicas, threads, reason``.
    timeseries:
        ``timeseries.parquet`` (1 s bins, long format).
    requests:
        ``requests.parquet`` when present (only the columns the report needs), else ``None``.
    """

    outdir: Path
    summary: dict[str, Any]
    runs: pd.DataFrame
    events: pd.DataFrame
    timeseries: pd.DataFrame
    requests: pd.DataFrame | None

    @property
    def services(self) -> list[dict[str, Any]]:
        """The ``services`` entries of the summary."""
        return list(self.summary.get("services", []))

    @property
    def labels(self) -> list[str]:
        """Strategy labels in the order they first appear in the summary's runs."""
        return list(dict.fromkeys(self.runs["label"].tolist()))


def load_results(outdir: str | Path) -> ResultSet:
    """Read the result files of ``outdir``.

    Raises
    ------
    UserError
        When the folder or one of its files is missing, unreadable or incomplete; the message
        names the file.
    """
    outdir = Path(outdir)
    if not outdir.exists():
        raise UserError("result folder does not exist", source=outdir)
    if not outdir.is_dir():
        raise UserError("not a folder (expected a result folder)", source=outdir)
    summary = read_summary(outdir / SUMMARY_FILE)
    runs, events = runs_frames(summary["runs"], source=outdir / SUMMARY_FILE)
    timeseries = read_parquet(
        outdir / TIMESERIES_FILE, TIMESERIES_COLUMNS, optional=TIMESERIES_OPTIONAL
    )
    requests_path = outdir / REQUESTS_FILE
    requests = read_parquet(requests_path, REQUESTS_COLUMNS) if requests_path.exists() else None
    return ResultSet(outdir, summary, runs, events, timeseries, requests)


def read_summary(path: Path) -> dict[str, Any]:
    """Read and check ``summary.json``."""
    if not path.exists():
        raise UserError("missing result file (is this a simscale result folder?)", source=path)
    summary = load_json(read_text(path, what="result", max_bytes=MAX_JSON_BYTES), source=path)
    if not isinstance(summary, dict):
        raise UserError("expected a JSON object", source=path)
    for key in SUMMARY_FIELDS:
        if key not in summary:
            raise UserError("missing field", source=path, field=key)
    if not isinstance(summary["runs"], list) or not summary["runs"]:
        raise UserError("no runs in the summary", source=path, field="runs")
    if not isinstance(summary["services"], list):
        raise UserError("expected a list", source=path, field="services")
    return summary


def runs_frames(runs: list[Any], *, source: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Flatten ``summary.json``'s runs into a run table and an event table."""
    rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise UserError("expected an object", source=source, field=f"runs.{i}")
        for key in RUN_FIELDS:
            if key not in run:
                raise UserError("missing field", source=source, field=f"runs.{i}.{key}")
        row = {k: run[k] for k in RUN_KEY}
        row["label"] = str(row["label"])
        row["service"] = str(row["service"])
        row["strategy"] = str(row["strategy"])
        row.update(flatten_numbers(run, skip=("events", "replication", "info")))
        rows.append(row)
        for event in run.get("events") or []:
            if not isinstance(event, dict) or "time_s" not in event or "action" not in event:
                raise UserError(
                    "event without time_s/action", source=source, field=f"runs.{i}.events"
                )
            event_rows.append({
                "strategy": row["strategy"], "label": row["label"], "service": row["service"],
                "replication": run["replication"], "time_s": float(event["time_s"]),
                "action": str(event["action"]),
                "from_replicas": event.get("from_replicas"),
                "to_replicas": event.get("to_replicas"),
                "threads": event.get("threads"), "reason": str(event.get("reason", "")),
            })
    event_columns = ["strategy", "label", "service", "replication", "time_s", "action",
                     "from_replicas", "to_replicas", "threads", "reason"]
    return pd.DataFrame(rows), pd.DataFrame(event_rows, columns=event_columns)


def flatten_numbers(
    obj: Mapping[str, Any], *, prefix: str = "", skip: Iterable[str] = ()
) -> dict[str, float]:
    """Numeric leaves of a nested mapping, keyed by dotted path (``latency_ms.p95``):
    :func:`simscale.simulator.schema.flatten` with ``numbers_only``.

    ``None`` (NaN written as null) becomes NaN; booleans and strings are left out.
    """
    return flatten(obj, prefix=prefix, skip=skip, numbers_only=True)


def read_parquet(
    path: Path, columns: Iterable[str], *, optional: Iterable[str] = ()
) -> pd.DataFrame:
    """Read ``columns`` (and those of ``optional`` that exist) from a parquet file.

    Through :class:`pyarrow.parquet.ParquetFile`, which reads one file without loading
    pyarrow's dataset machinery (``read_table`` imports it: a fifth of a small report)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise UserError("missing result file (is this a simscale result folder?)", source=path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise UserError(f"not a readable parquet file ({exc})", source=path) from None
    with parquet:
        schema_names = set(parquet.schema_arrow.names)
        columns = list(columns)
        missing = [c for c in columns if c not in schema_names]
        if missing:
            raise UserError(f"missing column(s): {', '.join(missing)}", source=path)
        wanted = columns + [c for c in optional if c in schema_names]
        try:
            frame = parquet.read(columns=wanted).to_pandas()
        except Exception as exc:
            raise UserError(f"cannot read parquet file ({exc})", source=path) from None
    for col in ("strategy", "label", "service"):
        if col in frame.columns:
            frame[col] = frame[col].astype(str)
    if "drop_reason" in frame.columns:
        frame["drop_reason"] = frame["drop_reason"].astype(object).fillna("").astype(str)
    return frame
