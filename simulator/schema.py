"""The result schema: what a run of ``summary.json`` holds, and how it is flattened.

One place for the figures of a run (simulator/RESULTS.md): their dotted names, units, meaning
and which direction is better. The summary, the sweep table, the reports, the CLI and
``simscale validate`` take names, units, directions and :func:`flatten` from here. To add a
figure: one entry in :data:`RUN_FIGURES`, its computation in ``simulator/metrics.py``
(``run_figures``) and its line in ``simulator/RESULTS.md``. The time series' columns are
:data:`TIMESERIES_COLUMNS`; readers name the ones they use through :func:`timeseries_columns`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Better = Literal["lower", "higher", "none"]


@dataclass(frozen=True)
class Figure:
    """One figure of a run.

    ``name`` is dotted as in the flattened run (``latency_ms.p95``); ``unit`` is what it is
    measured in (``ms``, ``s``, ``USD``, ``fraction`` for 0..1, ``requests``, ``replicas``,
    ``events``); ``meaning`` is one line; ``better`` says which direction is better
    (``lower``, ``higher`` or ``none``); ``count`` is true for whole counts.
    """

    name: str
    unit: str
    meaning: str
    better: Better = "none"
    count: bool = False

    @property
    def root(self) -> str:
        """First dotted component (``latency_ms`` of ``latency_ms.p95``)."""
        return self.name.split(".", 1)[0]


#: Columns that identify a run rather than measure it, in ``summary.json`` order.
ID_COLUMNS: tuple[str, ...] = ("strategy", "label", "service", "replication", "seed")
#: The identity columns that tell the runs of one summary apart (the seed follows from them).
RUN_KEY: tuple[str, ...] = ID_COLUMNS[:4]

#: Root of the figures a strategy reports itself (``info.<name>``; units are the strategy's).
INFO_ROOT = "info"


def _latency(root: str, what: str, stats: Iterable[str]) -> tuple[Figure, ...]:
    words = {"mean": "mean", "p50": "median", "p95": "95th percentile",
             "p99": "99th percentile", "max": "maximum"}
    return tuple(Figure(f"{root}.{s}", "ms", f"{words[s]} {what} after the warm-up", "lower")
                 for s in stats)


#: Every figure of a ``summary.json`` run (its lists and ``info`` aside), in display order:
#: the keys of ``simulator.metrics.run_figures``' summary, flattened, plus ``wall_s``.
RUN_FIGURES: tuple[Figure, ...] = (
    Figure("arrivals", "requests", "requests that arrived during the run", count=True),
    Figure("completed", "requests", "requests completed by the end", "higher", count=True),
    Figure("dropped", "requests", "requests dropped (queue full, timeout, crash)", "lower",
           count=True),
    Figure("in_flight_at_end", "requests", "requests neither completed nor dropped at the end",
           count=True),
    Figure("dropped_by_reason.queue_full", "requests", "dropped because the queue was full",
           "lower", count=True),
    Figure("dropped_by_reason.timeout", "requests", "dropped after waiting too long", "lower",
           count=True),
    Figure("dropped_by_reason.crash", "requests", "dropped when their replica crashed", "lower",
           count=True),
    *_latency("latency_ms", "latency (end - arrival) of completed requests",
              ("mean", "p50", "p95", "p99", "max")),
    *_latency("queue_wait_ms", "queue wait (start - arrival) of completed requests",
              ("mean", "p50", "p95", "p99")),
    Figure("percentile_rel_error", "fraction",
           "bound on the relative error of the percentiles: 0 when exact (every request "
           "kept), 0.005 when read from the log-bucketed sketch of a large run"),
    Figure("slo_ms", "ms", "the service's latency objective"),
    Figure("slo_attainment", "fraction",
           "of the finished requests after the warm-up, those completed within slo_ms",
           "higher"),
    Figure("replica_seconds", "replica·s", "integral of existing replicas over the run"),
    Figure("mean_replicas", "replicas", "replica_seconds / duration_s"),
    Figure("max_replicas", "replicas", "most replicas existing at once", count=True),
    Figure("scale_events", "events", "scale_up + scale_down + resize actions", "lower",
           count=True),
    Figure("cost_usd", "USD", "sum over replicas of lifetime in hours times hourly price",
           "lower"),
    Figure("utilization", "fraction", "busy time / time replicas were ready or draining"),
    Figure("wall_s", "s", "wall-clock time the run took to simulate"),
)

#: The columns of ``timeseries.parquet`` after the identity columns, in file order: one row
#: per bin ``[time_s, time_s + w)`` of ``w`` = ``metrics.timeseries_bin_s`` (1 s unless the run
#: is longer than a day; the last bin ends at ``duration_s``); rates are per second over the
#: bin, counts are sampled at the bin's end (``simulator/RESULTS.md``).
TIMESERIES_COLUMNS: tuple[Figure, ...] = (
    Figure("time_s", "s", "start of the bin"),
    Figure("arrival_rate_rps", "requests/s", "arrivals in the bin per second"),
    Figure("throughput_rps", "requests/s", "completions in the bin per second", "higher"),
    Figure("dropped_rps", "requests/s", "drops in the bin per second", "lower"),
    Figure("queue_length", "requests", "requests waiting at the bin's end", "lower",
           count=True),
    Figure("in_flight", "requests", "requests arrived and not finished at the bin's end",
           count=True),
    Figure("replicas_pending", "replicas", "replicas waiting for room at the bin's end",
           count=True),
    Figure("replicas_starting", "replicas", "replicas starting at the bin's end", count=True),
    Figure("replicas_ready", "replicas", "replicas ready at the bin's end", count=True),
    Figure("replicas_draining", "replicas", "replicas draining at the bin's end", count=True),
    Figure("threads", "threads", "threads of the size new replicas get, at the bin's end",
           count=True),
    Figure("utilization", "fraction", "busy time / time replicas were ready or draining in "
           "the bin (NaN when none)"),
    Figure("cost_rate_usd_per_h", "USD/h", "price per hour of the replicas at the bin's end",
           "lower"),
    Figure("latency_p95_ms", "ms", "95th percentile latency of the requests completed in the "
           "bin (NaN when none)", "lower"),
)
#: Their names, in file order.
TIMESERIES_COLUMN_NAMES: tuple[str, ...] = tuple(f.name for f in TIMESERIES_COLUMNS)


def timeseries_columns(*names: str) -> tuple[str, ...]:
    """``names`` checked against :data:`TIMESERIES_COLUMN_NAMES` (a :class:`KeyError` naming
    an unknown one): how a reader declares the time-series columns it uses."""
    unknown = [n for n in names if n not in TIMESERIES_COLUMN_NAMES]
    if unknown:
        raise KeyError(f"no time-series column {unknown[0]!r} in the result schema")
    return tuple(names)


#: Figures the reports compute from a run's figures (not in ``summary.json``).
DERIVED_FIGURES: tuple[Figure, ...] = (
    Figure("drop_fraction", "fraction", "dropped / arrivals", "lower"),
    Figure("cost_vs_oracle", "fraction", "cost / the oracle's cost - 1, paired by replication",
           "lower"),
    Figure("slo_vs_oracle", "fraction", "SLO attainment minus the oracle's", "higher"),
)

#: Every figure by name: the run's and the derived ones.
FIGURES: dict[str, Figure] = {f.name: f for f in (*RUN_FIGURES, *DERIVED_FIGURES)}

#: Dotted names of :data:`RUN_FIGURES`, in display order.
RUN_FIGURE_NAMES: tuple[str, ...] = tuple(f.name for f in RUN_FIGURES)

#: First dotted component of every column that is a figure (``info`` included): a column of a
#: sweep table whose root is here is a metric, never a swept parameter.
METRIC_ROOTS: frozenset[str] = frozenset(
    {f.root for f in FIGURES.values()} | {INFO_ROOT})


def figure(name: str) -> Figure:
    """The figure called ``name`` (a :class:`KeyError` naming it when there is none)."""
    try:
        return FIGURES[name]
    except KeyError:
        raise KeyError(f"no figure {name!r} in the result schema") from None


def figure_names(*names: str) -> tuple[str, ...]:
    """``names`` checked against the schema (:func:`figure` raises for an unknown one): how a
    view declares the subset of figures it shows."""
    for n in names:
        figure(n)
    return tuple(names)


def better(name: str) -> Better:
    """``lower``/``higher``/``none`` for a figure; ``none`` for a name not in the schema."""
    f = FIGURES.get(name)
    return f.better if f is not None else "none"


def flatten(
    run: Mapping[str, Any], *, prefix: str = "", skip: Iterable[str] = (),
    numbers_only: bool = False,
) -> dict[str, Any]:
    """A nested mapping (a run of ``summary.json``) as one level with dotted keys
    (``latency_ms.p95``), in the mapping's order. Lists and tuples are left out, and so are
    top-level keys in ``skip``.

    Leaves are kept as they are (``None``, strings and booleans included); with
    ``numbers_only``, numbers become floats, ``None`` (NaN written as JSON null) becomes NaN, and
    everything else (booleans, strings) is left out.
    """
    out: dict[str, Any] = {}
    skipped = set(skip)
    for key, value in run.items():
        if key in skipped:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}.", numbers_only=numbers_only))
        elif isinstance(value, (list, tuple)):
            continue
        elif not numbers_only:
            out[name] = value
        elif value is None:
            out[name] = math.nan
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
            out[name] = float(value)
    return out
