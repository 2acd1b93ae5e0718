"""The cheap control plane (issue #13 item 3) decides exactly as before: every shortcut taken on
the strategies' side is checked against the computation it replaces.

- ``cost_aware`` and ``oracle`` look their queueing answers up in a :class:`QueueingMemo` keyed by
  the exact arguments: the decisions (counts, sizes and every reported figure) equal those of the
  same strategies computing every answer afresh;
- ``erlang_c`` with one load skips broadcasting: the same array, bit for bit;
- ``slo_attainment`` shares the service-time CDF grid across rates: the same float;
- ``kpa`` averages over the suffixes of its tick list: the same floats as filtering it;
- ``Observation.utilization`` and ``rate_rps`` sum without ``np.mean``'s overhead: the same float;
- ``percentiles_linear`` does numpy's index arithmetic in Python floats: ``np.percentile``'s
  floats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simscale.simulator.observations import percentiles_linear
from simscale.strategies import cost_aware
from simscale.strategies.base import _window_mean
from simscale.strategies.kpa import Kpa
from simscale.strategies.queueing import (
    _erlang_b_upto,
    _service_cdf,
    erlang_b,
    erlang_c,
    slo_attainment,
)

# ---------------------------------------------------------------------------- cost_aware, oracle
MEMO_SCENARIO = {
    "name": "memo", "duration_s": 600, "seed": 3,
    "services": [{"name": "s", "model": "m", "slo_ms": 250,
                  "service_time": {"dist": "gamma", "mean_ms": 40, "cv": 0.8},
                  "batching": {"max_batch_size": 4, "max_wait_ms": 5},
                  "cold_start_s": 5, "cost_per_replica_hour": 0.1,
                  "replicas": {"initial": 1, "min": 1, "max": 12},
                  "workload": {"kind": "flash_crowd", "base_rps": 10, "peak_rps": 90,
                               "start_s": 150, "ramp_s": 30, "hold_s": 120,
                               "decay_s": 120}}],
}


@pytest.mark.parametrize("name,params", [
    ("cost_aware", {"sync_period_s": 5}),
    ("cost_aware", {"sync_period_s": 5, "tune_batch_size": False, "forecaster": "last_value"}),
    ("oracle", {"sync_period_s": 5}),
])
def test_memo_gives_the_decisions_computed_afresh(monkeypatch: pytest.MonkeyPatch, name: str,
                                                  params: dict[str, Any],
                                                  decisions_of: Any) -> None:
    kept = decisions_of(MEMO_SCENARIO, name, params)
    looked_up = {"n": 0}

    def afresh(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up["n"] += 1
        return fn(*args, **kwargs)

    monkeypatch.setattr(cost_aware.QueueingMemo, "__call__", afresh)
    fresh = decisions_of(MEMO_SCENARIO, name, params)
    assert looked_up["n"] > len(fresh) > 50
    assert kept == fresh  # replicas, sizes, batching limit and every info figure


def test_memo_keys_are_exact_and_bounded() -> None:
    memo = cost_aware.QueueingMemo(max_entries=3)
    calls = []

    def f(x: float) -> float:
        calls.append(x)
        return x * 2

    assert memo(f, 1.5) == 3.0 and memo(f, 1.5) == 3.0
    assert memo(f, 1.5 + 1e-15) == (1.5 + 1e-15) * 2  # a rate that differs in a bit: afresh
    assert calls == [1.5, 1.5 + 1e-15]
    assert memo(len, [1, 2]) == 2  # an argument that cannot be a key: computed, not kept
    for x in range(5):
        memo(f, float(x))
    assert len(memo._answers) <= 3


# ---------------------------------------------------------------------------- queueing
def _erlang_c_broadcast(c: Any, a: Any) -> np.ndarray:
    """``erlang_c`` as it was: both arguments broadcast."""
    c_arr, a_arr = np.broadcast_arrays(np.asarray(c, dtype=float), np.asarray(a, dtype=float))
    b = erlang_b(c_arr.astype(int), a_arr)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = c_arr * b / (c_arr - a_arr * (1.0 - b))
    return np.where(a_arr >= c_arr, 1.0, np.clip(out, 0.0, 1.0))


@settings(max_examples=300)
@given(st.integers(0, 40), st.one_of(st.floats(0, 60), st.sampled_from([math.inf, math.nan])),
       st.sampled_from(["range", "int", "0d"]), st.sampled_from([float, np.float64, np.array]))
def test_erlang_c_one_load_is_the_broadcast_one(c: int, a: float, shape: str, kind: Any) -> None:
    cc = {"range": np.arange(1, c + 1), "int": c, "0d": np.array(c)}[shape]
    got, want = erlang_c(cc, kind(a)), _erlang_c_broadcast(cc, kind(a))
    assert type(got) is type(want) and np.shape(got) == np.shape(want)
    assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


@settings(max_examples=200)
@given(st.integers(0, 8), st.floats(0, 300), st.floats(1e-3, 0.5), st.floats(0, 3),
       st.floats(0.01, 2), st.integers(1, 8))
def test_slo_attainment_shares_its_grid(c: int, lam: float, service_s: float, scv: float,
                                        slo_s: float, b: int) -> None:
    got = slo_attainment(c, lam, service_s, scv, slo_s, b)
    # as computed before the grid was shared
    if lam <= 0:
        want = float(_service_cdf(np.array([slo_s]), service_s, scv)[0])
    elif c <= 0 or lam * (service_s / b) >= c:
        want = 0.0
    else:
        per = service_s / b
        pw = float(erlang_c(c, lam * per))
        theta = (c / per - lam) * 2.0 / (1.0 + scv)
        w = np.linspace(0.0, slo_s, 400)
        waited = float(np.trapezoid(theta * np.exp(-theta * w)
                                    * _service_cdf(slo_s - w, service_s, scv), w))
        no_wait = float(_service_cdf(np.array([slo_s]), service_s, scv)[0])
        want = float(np.clip((1.0 - pw) * no_wait + pw * waited, 0.0, 1.0))
    assert got == want
    assert _erlang_b_upto(3, 0.5)[3] == erlang_b(3, 0.5)


# ---------------------------------------------------------------------------- kpa, windows
@settings(max_examples=200)
@given(st.lists(st.tuples(st.floats(0, 50), st.integers(0, 400)), min_size=1, max_size=60),
       st.booleans())
def test_kpa_averages_are_the_filtered_ones(ticks: list, in_order: bool) -> None:
    if in_order:
        ticks = sorted(ticks)
    kpa = Kpa(stable_window_s=6.0, panic_window_percentage=50.0)
    kpa.concurrency = []
    for t, c in ticks:
        kpa.concurrency.append((t, float(c)))
        want_list = [(u, v) for u, v in kpa.concurrency if u > t - kpa.stable_window_s]
        probe = Kpa(stable_window_s=6.0, panic_window_percentage=50.0)
        probe.concurrency = want_list
        want = (probe._average(t, probe.stable_window_s), probe._average(t, probe.panic_window_s))
        assert kpa._averages(t) == want
        assert kpa.concurrency == want_list


@settings(max_examples=200)
@given(st.lists(st.floats(0, 1e6), min_size=0, max_size=300), st.floats(0.4, 400))
def test_window_mean_is_np_mean(values: list, window_s: float) -> None:
    arr = np.asarray(values, dtype=np.float64)
    n = max(1, int(round(window_s)))
    want = float(np.mean(arr[-n:])) if len(arr[-n:]) else 0.0
    assert _window_mean(arr, window_s) == want


@settings(max_examples=300)
@given(st.lists(st.floats(0, 1e4), min_size=1, max_size=400),
       st.lists(st.floats(0, 100), min_size=1, max_size=4), st.booleans())
def test_percentiles_linear_is_np_percentile(values: list, qs: list, zeros: bool) -> None:
    x = np.asarray(values + ([0.0] * len(values) if zeros else []))
    assert percentiles_linear(x.copy(), tuple(qs)) == np.percentile(x, qs).tolist()
