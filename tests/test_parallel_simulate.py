"""``simulate`` with ``workers > 1`` gives what a serial run gives, and fails the way it fails."""

from __future__ import annotations

import sys
import textwrap

import pandas as pd
import pytest

import simscale
from simscale.errors import UserError

_NOT_RESULTS = {"wall_s", "request_plane", "lower_bound_wall_s", "hindsight_wall_s"}


def _results(node):
    """The summary without wall-clock times (the only thing that may differ)."""
    if isinstance(node, dict):
        return {k: _results(v) for k, v in node.items() if k not in _NOT_RESULTS}
    if isinstance(node, list):
        return [_results(v) for v in node]
    return node


@pytest.mark.slow
def test_parallel_runs_equal_the_serial_run(tiny_scenario):
    data = tiny_scenario(duration_s=60, strategies=[
        {"name": "static"}, {"name": "hpa", "sync_period_s": 5},
        {"name": "threshold", "label": "thr"}],
        svc_workload={"kind": "step", "steps": [{"at_s": 0, "rate_rps": 10},
                                                {"at_s": 20, "rate_rps": 40}]})
    serial = simscale.simulate(data, replications=2, keep_requests=True, bounds=True)
    par = simscale.simulate(data, replications=2, keep_requests=True, workers=2, bounds=True)
    assert _results(par.summary) == _results(serial.summary)
    # the bounds: one entry per replication, computed in a worker on the same inputs
    assert [b["replication"] for b in par.summary["bounds"]] == [0, 1]
    assert all(b["hindsight_runs"] > 0 for b in par.summary["bounds"])
    # and they are those of the inputs drawn afresh for each seed
    from simscale.simulator.bounds import scenario_bounds
    from simscale.simulator.scenario import load_scenario

    sc = load_scenario(data)
    assert _results(scenario_bounds(sc, sc.seed, 2, None)) == _results(serial.summary["bounds"])
    assert [(r["label"], r["replication"]) for r in par.summary["runs"]] == [
        (r["label"], r["replication"]) for r in serial.summary["runs"]]
    pd.testing.assert_frame_equal(par.timeseries, serial.timeseries)
    pd.testing.assert_frame_equal(par.requests, serial.requests)
    assert len(serial.summary["runs"]) == 6 and len(par.requests) > 1000


@pytest.mark.slow
def test_a_strategy_failing_in_a_worker_fails_the_run_as_in_serial(tiny_scenario, tmp_path,
                                                                  monkeypatch):
    mod = tmp_path / "failing_in_worker_mod.py"
    mod.write_text(textwrap.dedent("""
        from simscale.strategies.base import Strategy

        class S(Strategy):
            name = "failing"

            def decide(self, obs):
                raise RuntimeError("boom")
    """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tiny_scenario(strategies=[{"name": "static"},
                                     {"name": "failing_in_worker_mod:S", "label": "bad"}])
    errors = []
    for workers in (1, 2):
        with pytest.raises(UserError) as exc:
            simscale.simulate(data, workers=workers)
        errors.append(exc.value.format())
    assert errors[0] == errors[1]
    assert "strategy 'bad' failed" in errors[0] and "boom" in errors[0]
    sys.modules.pop("failing_in_worker_mod", None)


def test_progress_reporting_does_not_change_results(tiny_scenario):
    """With a progress bar the run pauses SimPy 100 times to report; no event moves."""
    data = tiny_scenario(duration_s=60, strategies=[{"name": "hpa", "sync_period_s": 5}],
                         svc_workload={"kind": "constant", "rate_rps": 30})
    quiet = simscale.simulate(data)
    shown = simscale.simulate(data, progress=True)
    assert _results(shown.summary) == _results(quiet.summary)
    pd.testing.assert_frame_equal(shown.timeseries, quiet.timeseries)
