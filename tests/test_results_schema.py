"""The result schema (simulator/schema.py): one list of figures that every view draws from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from simscale.reports import html, tables, terminal
from simscale.reports.data import RUN_FIELDS, flatten_numbers
from simscale.simulator import schema
from simscale.simulator.results import flatten as results_flatten
from simscale.sweeps.table import KEY_COLUMNS
from simscale.validation import fidelity


def test_figures_are_unique_and_well_formed() -> None:
    names = [f.name for f in (*schema.RUN_FIGURES, *schema.DERIVED_FIGURES)]
    assert len(names) == len(set(names))
    for f in schema.FIGURES.values():
        assert f.unit and f.meaning
        assert f.better in ("lower", "higher", "none")


def test_every_name_a_view_uses_is_in_the_schema() -> None:
    used = [*tables.TABLE_METRICS, *html.SWEEP_DEFAULT_METRICS, *html._BETTER,
            *fidelity.FIGURES, *fidelity.TARGETS, *fidelity.SHORT,
            *(c.key for c in terminal.TERMINAL_COLUMNS),
            *(c.key for c in tables.comparison_columns(True))]
    assert [n for n in used if n not in schema.FIGURES] == []
    roots = {f.root for f in schema.FIGURES.values()}
    assert [k for k in RUN_FIELDS if k not in roots and k not in schema.ID_COLUMNS] == []
    assert set(KEY_COLUMNS) == set(schema.ID_COLUMNS)
    with pytest.raises(KeyError, match="no_such"):
        schema.figure_names("no_such.figure")


def test_metric_roots_cover_every_figure() -> None:
    assert html.METRIC_ROOTS == schema.METRIC_ROOTS
    for f in schema.FIGURES.values():
        assert f.root in html.METRIC_ROOTS
    assert {"info", "wall_s"} <= html.METRIC_ROOTS
    import pandas as pd
    frame = pd.DataFrame({"services.0.max_replicas": [1], "strategy": ["x"],
                          **{f.name: [1.0] for f in schema.RUN_FIGURES}, "info.k": [2.0]})
    params, _ = html.sweep_columns(frame)
    assert params == ["services.0.max_replicas"]


def test_run_figures_keys_are_the_schema() -> None:
    """The pinned figures of every shipped scenario (what ``run_figures`` wrote, flattened) are
    exactly the schema's run figures (``wall_s`` is not pinned)."""
    pins = json.loads((Path(__file__).parent / "data" / "shipped_figures.json").read_text())
    expected = set(schema.RUN_FIGURE_NAMES) - {"wall_s"}
    n = 0
    for runs in pins.values():
        for run in runs.values():
            keys = {k for k in run if k.split(".")[0] not in
                    {"events", schema.INFO_ROOT, *schema.ID_COLUMNS}}
            assert keys == expected
            n += 1
    assert n


def test_flatten_modes() -> None:
    run = {"strategy": "s", "latency_ms": {"p95": 3, "max": None}, "events": [{"a": 1}],
           "ok": True, "info": {"k": 1.5}}
    assert schema.flatten(run) == {"strategy": "s", "latency_ms.p95": 3, "latency_ms.max": None,
                                   "ok": True, "info.k": 1.5}
    assert results_flatten is schema.flatten
    nums = flatten_numbers(run, skip=("info",))
    assert nums["latency_ms.p95"] == 3.0 and math.isnan(nums["latency_ms.max"])
    assert set(nums) == {"latency_ms.p95", "latency_ms.max"}


def test_timeseries_columns_are_the_schema(tiny_scenario) -> None:
    """A run's time series has exactly the schema's columns, in order, after the identity
    columns; readers name columns through the schema."""
    from simscale.reports import data
    from simscale.simulator.runner import run_scenario
    from simscale.simulator.scenario import load_scenario

    result = run_scenario(load_scenario(tiny_scenario(duration_s=5)))
    cols = list(result.timeseries.columns)
    assert cols == [*schema.RUN_KEY, *schema.TIMESERIES_COLUMN_NAMES]
    assert set(data.TIMESERIES_COLUMNS[4:]) | set(data.TIMESERIES_OPTIONAL) <= set(
        schema.TIMESERIES_COLUMN_NAMES)
    for f in schema.TIMESERIES_COLUMNS:
        assert f.unit and f.meaning
    with pytest.raises(KeyError, match="no time-series column"):
        schema.timeseries_columns("nope_rps")
