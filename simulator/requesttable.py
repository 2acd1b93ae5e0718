"""The per-request table (``requests.parquet``, ``--save-requests``), built whole or streamed.

One row per request: ``arrival_s``, ``start_s`` (NaN if it never started), ``end_s`` (NaN
unless it completed within the run), ``batch_size``, ``replica`` (-1: none) and
``drop_reason`` (empty, ``queue_full``, ``timeout``, ``crash``), after the run's identifying
columns ``strategy``, ``label``, ``service`` and ``replication`` in the saved file.

A run that keeps every request builds its table at the end (:func:`request_frame`). A streaming
run (:mod:`simscale.simulator.streaming`) cannot: its plane forgets requests as it goes. There a
:class:`RequestWriter` appends each chunk of final requests to a Parquet file of its own as the
run folds them, so memory stays bounded; :func:`write_requests` joins every run's table (kept
frames and streamed files, row group by row group) into one ``requests.parquet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simscale.simulator.requestplane import DROP_NONE, DROP_REASONS

__all__ = ["RequestStore", "RequestWriter", "read_requests", "request_frame", "write_requests"]
#: the identifying columns that lead every row of ``requests.parquet``
ID_COLUMNS = ("strategy", "label", "service", "replication")


def request_frame(plane: Any, lo: int, hi: int, duration_s: float) -> pd.DataFrame:
    """Rows ``lo..hi-1`` of ``plane``'s arrays (relative to its window) as the request table."""
    end = plane.end_s[lo:hi]
    drop = plane.drop[lo:hi]
    completed = (end <= float(duration_s)) & (drop == DROP_NONE)
    return pd.DataFrame({
        "arrival_s": plane.arrival_s[lo:hi],
        "start_s": plane.start_s[lo:hi],
        "end_s": np.where(completed, end, np.nan),
        "batch_size": plane.batch_size[lo:hi],
        "replica": plane.replica[lo:hi],
        "drop_reason": pd.Categorical.from_codes(drop.astype(np.int8),
                                                 categories=list(DROP_REASONS)),
    })


def _with_ids(frame: pd.DataFrame, ident: dict[str, Any]) -> pd.DataFrame:
    """``frame`` led by the identifying columns (categorical strings, the replication int)."""
    out = frame.copy(deep=False)
    for col in reversed(ID_COLUMNS):
        val = ident[col]
        if col == "replication":
            out.insert(0, col, np.full(len(frame), int(val), dtype=np.int64))
        else:
            out.insert(0, col, pd.Categorical([str(val)] * len(frame)))
    return out


def _schema() -> Any:
    import pyarrow as pa

    dict_str = pa.dictionary(pa.int32(), pa.string())
    return pa.schema([("strategy", dict_str), ("label", dict_str), ("service", dict_str),
                      ("replication", pa.int64()), ("arrival_s", pa.float64()),
                      ("start_s", pa.float64()), ("end_s", pa.float64()),
                      ("batch_size", pa.int32()), ("replica", pa.int32()),
                      ("drop_reason", dict_str)])


def _table(frame: pd.DataFrame) -> Any:
    """``frame`` (with its identifying columns) as an Arrow table of the file's schema."""
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False).cast(_schema())


class RequestWriter:
    """Appends a streaming run's final requests to ``path`` (Parquet), a chunk at a time; the
    identifying columns are added when the files are joined (:func:`write_requests`)."""

    def __init__(self, path: Path, duration_s: float) -> None:
        self.path = Path(path)
        self.duration_s = float(duration_s)
        self.rows = 0
        self._writer: Any = None

    def write(self, plane: Any, k: int) -> None:
        """Append the plane's first ``k`` requests (final, about to be forgotten)."""
        if k <= 0:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(request_frame(plane, 0, k, self.duration_s),
                                     preserve_index=False)
        table = table.cast(pa.schema([f for f in _schema() if f.name not in ID_COLUMNS]))
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)
        self.rows += k

    def close(self) -> Path:
        """Finish the file (an empty one when no request was written); returns its path."""
        if self._writer is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.schema([f for f in _schema() if f.name not in ID_COLUMNS])
                           .empty_table(), self.path)
        else:
            self._writer.close()
            self._writer = None
        return self.path


def _file_tables(path: Path, ident: dict[str, Any]) -> Any:
    """The row groups of a streamed run's file, each led by the identifying columns."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    for g in range(f.num_row_groups):
        frame = f.read_row_group(g).to_pandas()
        yield _table(_with_ids(frame, ident))


def write_requests(path: Path, frame: pd.DataFrame | None,
                   files: list[tuple[dict[str, Any], Path]]) -> None:
    """Write every run's requests into ``path`` (Parquet, written where told: the caller makes
    it atomic): ``frame`` (the kept runs' rows, identifying columns included) first, then
    ``files`` (identifying columns, a :class:`RequestWriter`'s file), row group by row
    group, so a streamed run's table is never whole in memory."""
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, _schema()) as out:
        if frame is not None and len(frame):
            out.write_table(_table(frame))
        for ident, file in files:
            for table in _file_tables(file, ident):
                out.write_table(table)


def read_requests(frame: pd.DataFrame | None, files: list[tuple[dict[str, Any], Path]]
                  ) -> pd.DataFrame | None:
    """Every run's requests as one DataFrame (``None`` when there are none): ``frame`` followed
    by the streamed files, the whole table in memory (about 60 bytes a request)."""
    if not files:
        return frame
    import pyarrow as pa

    tables = [_table(frame)] if frame is not None and len(frame) else []
    for ident, file in files:
        tables.extend(_file_tables(file, ident))
    return pa.concat_tables(tables).to_pandas()


class RequestStore:
    """The request tables of a simulation's runs (``keep_requests``): kept runs' frames and
    streamed runs' files, the latter in a private temporary folder (under
    ``$SIMSCALE_SPOOL_DIR`` or the system's temporary folder) removed with the store."""

    def __init__(self, folder: str | Path | None = None) -> None:
        """``folder``: another store's folder to write into (a worker process's share of the
        parent's store; not removed by this one)."""
        import shutil
        import tempfile
        import weakref

        from simscale.simulator.spool import spool_dir

        if folder is not None:
            self.folder = Path(folder)
        else:
            self.folder = Path(tempfile.mkdtemp(prefix="simscale-requests-", dir=spool_dir()))
            weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        self.frames: list[pd.DataFrame] = []  #: kept runs' rows, identifying columns first
        self.files: list[tuple[dict[str, Any], Path]] = []  #: streamed runs' files

    def run_folder(self, key: str) -> Path:
        """A new folder for one run's streamed files (``key``: unique within the store)."""
        out = self.folder / key
        out.mkdir(parents=True, exist_ok=True)
        return out

    def add(self, ident: dict[str, Any], frame: pd.DataFrame | None, file: Path | None
            ) -> None:
        """One run's requests: its ``frame`` (gets the identifying columns) or its streamed
        ``file``."""
        if file is not None:
            if not Path(file).exists():
                raise FileNotFoundError(f"the requests of run {ident} were written to {file}, "
                                        "which this machine cannot read")
            self.files.append((dict(ident), Path(file)))
        elif frame is not None:
            self.frames.append(_with_ids(frame, ident))

    def frame(self) -> pd.DataFrame | None:
        """The kept runs' rows as one frame (``None``: none)."""
        if not self.frames:
            return None
        out = pd.concat(self.frames, ignore_index=True)
        for col in ("strategy", "label", "service"):
            out[col] = out[col].astype(str).astype("category")
        return out

    def write(self, path: Path) -> None:
        """Every run's requests into ``path`` (:func:`write_requests`)."""
        write_requests(path, self.frame(), self.files)

    def read(self) -> pd.DataFrame | None:
        """Every run's requests in memory (:func:`read_requests`)."""
        return read_requests(self.frame(), self.files)
