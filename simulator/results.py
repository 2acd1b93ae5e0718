"""``SimulationResult``: what a simulation returns and what ``save`` writes (simulator/RESULTS.md).

The result schema (figure names, units, directions, :func:`flatten`) is
:mod:`simscale.simulator.schema`, re-exported here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simscale.io import write_json_atomic, write_with_atomic
from simscale.simulator.schema import (
    FIGURES,
    ID_COLUMNS,
    RUN_FIGURES,
    RUN_KEY,
    Figure,
    flatten,
)

if TYPE_CHECKING:
    from simscale.simulator.requesttable import RequestStore

__all__ = ["FIGURES", "ID_COLUMNS", "RUN_FIGURES", "Figure", "SimulationResult",
           "aggregate_runs", "flatten"]

_ID_COLUMNS = list(RUN_KEY)


def aggregate_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and 95% t-interval over replications of every numeric figure of each
    (strategy, label, service); names are the flattened figure names joined by dots."""
    from scipy import stats

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["strategy"], r["label"], r["service"]), []).append(r)
    out = []
    skip = {"replication", "seed"}
    for (strategy, label, service), rs in groups.items():
        flat = [flatten(r) for r in rs]
        keys = [k for k, v in flat[0].items()
                if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)]
        metrics = {}
        for k in keys:
            x = np.asarray([f.get(k, math.nan) for f in flat], dtype=float)
            x = x[np.isfinite(x)]
            n = len(x)
            if n == 0:
                metrics[k] = {"mean": math.nan, "ci95_low": math.nan, "ci95_high": math.nan}
                continue
            m = float(x.mean())
            if n > 1:
                h = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
            else:
                h = math.nan
            metrics[k] = {"mean": m, "ci95_low": m - h, "ci95_high": m + h}
        out.append({"strategy": strategy, "label": label, "service": service, "n": len(rs),
                    "metrics": metrics})
    return out


class SimulationResult:
    """The outcome of simulating a scenario's strategies.

    Attributes
    ----------
    summary:
        The ``summary.json`` dict (see simulator/RESULTS.md).
    runs:
        One row per (strategy, service, replication): the summary's runs, flattened with dots
        (``latency_ms.p95``); events are in :attr:`events`.
    timeseries:
        1 s bins, long format (RESULTS.md ``timeseries.parquet``).
    requests:
        Per-request table, or ``None`` unless requests were kept.
    events:
        Scaling actions and incidents of every run, with the run's identifying columns.
    """

    def __init__(self, summary: dict[str, Any], timeseries: pd.DataFrame,
                 requests: pd.DataFrame | RequestStore | None = None) -> None:
        """``requests``: the kept requests, as one frame or as the runner's
        :class:`~simscale.simulator.requesttable.RequestStore` (whose streamed runs' tables
        are files, read only when :attr:`requests` is asked for)."""
        self.summary = summary
        self.timeseries = timeseries
        self._store = None
        if requests is not None and not isinstance(requests, pd.DataFrame):
            if requests.files:
                self._store = requests
            requests = requests.frame()
        self._requests = requests
        rows = [flatten({k: v for k, v in r.items() if k not in ("events",)})
                for r in summary.get("runs", [])]
        self.runs = pd.DataFrame(rows)
        ev_rows = []
        for r in summary.get("runs", []):
            for e in r.get("events", []):
                ev_rows.append({**{k: r[k] for k in _ID_COLUMNS}, **e})
        cols = [*_ID_COLUMNS, "time_s", "action", "from_replicas", "to_replicas", "threads",
                "reason"]
        self.events = pd.DataFrame(ev_rows, columns=cols)

    @property
    def requests(self) -> pd.DataFrame | None:
        """Every kept request, one row each (``None`` unless requests were kept). Streamed
        runs' requests are read from their files into memory here (about 60 bytes a request);
        :meth:`save` writes them without holding them whole."""
        if self._store is not None:
            return self._store.read()
        return self._requests

    @requests.setter
    def requests(self, value: pd.DataFrame | None) -> None:
        self._store = None
        self._requests = value

    def save(self, outdir: str | Path, save_requests: bool = False) -> Path:
        """Write ``summary.json``, ``timeseries.parquet`` and, with ``save_requests`` (and kept
        requests), ``requests.parquet`` into ``outdir``, each atomically. Returns ``outdir``."""
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(outdir / "summary.json", self.summary)
        ts = self.timeseries
        write_with_atomic(outdir / "timeseries.parquet",
                          lambda p: ts.to_parquet(p, index=False))
        if save_requests and self._store is not None:
            store = self._store
            write_with_atomic(outdir / "requests.parquet", store.write)
        elif save_requests and self._requests is not None:
            req = self._requests
            write_with_atomic(outdir / "requests.parquet",
                              lambda p: req.to_parquet(p, index=False))
        return outdir

    def __repr__(self) -> str:
        n = len(self.summary.get("runs", []))
        return f"SimulationResult(scenario={self.summary.get('scenario')!r}, runs={n})"
