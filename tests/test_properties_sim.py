"""Properties of whole simulations over random scenarios (hypothesis)."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simscale.errors import UserError
from simscale.simulator.engine import run_strategy
from simscale.simulator.inputs import service_inputs
from simscale.simulator.runner import run_scenario
from simscale.simulator.scenario import load_scenario
from simscale.strategies import make_strategy
from simscale.strategies.base import Decision, Observation


class Chasing:
    """A test strategy: enough replicas for the recent rate at 60% utilization, and (when
    asked) a different size and batch limit now and then."""

    sync_period_s = 5.0
    latency_window_s = 10.0

    def __init__(self, resize: bool = False):
        self.resize = resize

    def decide(self, obs: Observation) -> Decision:
        cap = obs.current_size.capacity_rps(1)
        want = math.ceil(obs.rate_rps(5) / (0.6 * cap)) if cap > 0 else 1
        if obs.queue_length > 20:
            want += 1
        kw = {}
        if self.resize and int(obs.time_s) % 20 == 0:
            kw = {"max_batch_size": 1 + int(obs.time_s) % 3, "resize_delay_s": 1.0}
        return Decision(replicas=want, info={"want": float(want)}, **kw)


_mod = types.ModuleType("simscale_test_strategies")
_mod.Chasing = Chasing
sys.modules["simscale_test_strategies"] = _mod

DISTS = st.sampled_from([
    {"dist": "exponential", "mean_ms": 20},
    {"dist": "deterministic", "mean_ms": 15},
    {"dist": "gamma", "mean_ms": 25, "cv": 0.5},
    {"dist": "lognormal", "mean_ms": 10, "cv": 1.5},
])
WORKLOADS = st.sampled_from([
    {"kind": "constant", "rate_rps": 80},
    {"kind": "step", "steps": [{"at_s": 0, "rate_rps": 20}, {"at_s": 15, "rate_rps": 200}]},
    {"kind": "ramp", "from_rps": 10, "to_rps": 250, "start_s": 5, "end_s": 40},
    {"kind": "flash_crowd", "base_rps": 20, "peak_rps": 300, "start_s": 10, "ramp_s": 5,
     "hold_s": 10, "decay_s": 10},
    {"kind": "mmpp", "states": [{"rate_rps": 20, "mean_sojourn_s": 5},
                                {"rate_rps": 200, "mean_sojourn_s": 5}]},
    {"kind": "diurnal", "mean_rps": 100, "amplitude": 0.8, "period_s": 30},
])


@st.composite
def scenarios(draw):
    n_svc = draw(st.integers(1, 2))
    services = []
    for k in range(n_svc):
        mx = draw(st.integers(1, 6))
        mn = draw(st.integers(0, mx))
        init = draw(st.integers(max(mn, 0), mx))
        services.append({
            "name": f"s{k}", "model": "m", "slo_ms": draw(st.sampled_from([20, 50, 200])),
            "service_time": draw(DISTS),
            "cold_start_s": draw(st.sampled_from([0, 2.5, {"dist": "gamma", "mean_s": 3,
                                                           "cv": 0.5}])),
            "routing": draw(st.sampled_from(["shared_queue", "round_robin", "least_outstanding",
                                             "power_of_two", "random"])),
            "batching": {"max_batch_size": draw(st.integers(1, 4)),
                         "max_wait_ms": draw(st.sampled_from([0, 2, 10]))},
            "queue": {"capacity": draw(st.one_of(st.none(), st.integers(0, 30))),
                      "timeout_ms": draw(st.one_of(st.none(), st.sampled_from([50, 500])))},
            "replicas": {"initial": init, "min": mn, "max": mx},
            "cost_per_replica_hour": draw(st.sampled_from([0.0, 1.0])),
            "workload": draw(WORKLOADS),
        })
    sc = {
        "name": "prop", "duration_s": draw(st.sampled_from([30, 45.5, 60])),
        "seed": draw(st.integers(0, 1000)),
        "warmup_s": draw(st.sampled_from([0, 5])),
        "services": services,
        "strategies": [{"name": "static"},
                       {"name": "simscale_test_strategies:Chasing", "label": "chase",
                        "resize": draw(st.booleans())}],
        "metrics": {"lag_s": draw(st.sampled_from([0, 2.5])), "history_s": 30},
    }
    if draw(st.booleans()):
        sc["cluster"] = {"cores": draw(st.integers(1, 8)), "memory_mb": 1e6}
    if draw(st.booleans()):
        sc["faults"] = {"crash_mtbf_s": draw(st.sampled_from([10, 60])),
                        "straggler_fraction": draw(st.sampled_from([0, 0.5])),
                        "straggler_slowdown": 3}
    return load_scenario(sc)


def _runs_of(sc):
    """Run both strategies through the engine directly (to see replica records)."""
    seq = np.random.SeedSequence(sc.seed).spawn(len(sc.services))
    inputs = {s.name: service_inputs(s, sc, q, None) for s, q in zip(sc.services, seq,
                                                                     strict=True)}
    out = {}
    for spec in sc.strategies:
        strats = {s.name: make_strategy(spec.name, spec.params) for s in sc.services}
        out[spec.display_label] = run_strategy(sc, strats, inputs, None)
    return inputs, out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_engine_invariants(sc):
    inputs, out = _runs_of(sc)
    D = sc.duration_s
    for _label, runs in out.items():
        for run in runs:
            pl = run.plane
            arr = pl.arrival_s
            # common random numbers: the very same arrays for every strategy
            assert pl.arrival_s is inputs[run.service.name].arrival_s
            served = ~np.isnan(pl.start_s)
            st_, en, rep = pl.start_s[served], pl.end_s[served], pl.replica[served]
            assert np.all(st_ >= arr[served])
            assert np.all(st_ < D)
            assert np.all(en >= st_)
            recs = run.replicas
            ready = np.array([r.ready_s for r in recs])[rep]
            stop = np.array([r.stop_s if r.state == "stopped" else np.inf for r in recs])[rep]
            drain = np.array([r.drain_s for r in recs])[rep]
            assert np.all(ready <= st_), "served by a replica that was not ready"
            assert np.all(st_ <= stop)
            assert np.all(en <= stop + 1e-9)
            if run.service.routing == "shared_queue":
                assert not np.any(st_ >= drain), "a draining replica took new work"
            assert np.all(pl.batch_size[served] >= 1)
            # no replica serves two batches at once
            for r in np.unique(rep):
                m = rep == r
                s_r, e_r = np.unique(st_[m]), None
                e_r = np.array([en[m][st_[m] == s].max() for s in s_r])
                assert np.all(s_r[1:] >= e_r[:-1] - 1e-9)
            # every request accounted for
            dropped = pl.drop != 0
            assert not np.any(dropped & served & (pl.drop != 3))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_summary_conservation_determinism_crn(sc):
    res = run_scenario(sc, keep_requests=True)
    again = run_scenario(sc, keep_requests=True)
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in res.summary["runs"]]
    strip2 = [{k: v for k, v in r.items() if k != "wall_s"} for r in again.summary["runs"]]
    assert json.dumps(strip, default=str) == json.dumps(strip2, default=str)
    pd.testing.assert_frame_equal(res.timeseries, again.timeseries)
    D = sc.duration_s
    for run in res.summary["runs"]:
        assert run["arrivals"] == run["completed"] + run["dropped"] + run["in_flight_at_end"]
        assert run["dropped"] == sum(run["dropped_by_reason"].values())
        assert run["mean_replicas"] == pytest.approx(run["replica_seconds"] / D)
        if not math.isnan(run["utilization"]):
            assert 0 <= run["utilization"] <= 1 + 1e-9
        ts = res.timeseries[(res.timeseries.label == run["label"])
                            & (res.timeseries.service == run["service"])]
        width = np.minimum(ts.time_s + 1, D) - ts.time_s
        assert round(float((ts.throughput_rps * width).sum())) == run["completed"]
        assert round(float((ts.arrival_rate_rps * width).sum())) == run["arrivals"]
        assert round(float((ts.dropped_rps * width).sum())) == run["dropped"]
        cost = float((ts.cost_rate_usd_per_h * width).sum()) / 3600
        assert cost == pytest.approx(run["cost_usd"], rel=0.5, abs=2 / 3600 * 6)
    # common random numbers: the same arrivals for both strategies of a service
    req = res.requests
    for svc in sc.services:
        a = req[(req.service == svc.name) & (req.label == "static")].arrival_s.to_numpy()
        b = req[(req.service == svc.name) & (req.label == "chase")].arrival_s.to_numpy()
        np.testing.assert_array_equal(a, b)


def test_same_service_draws_across_strategies():
    """Requests served alone on a normal replica take the same time under every strategy."""
    sc = load_scenario({
        "name": "crn", "duration_s": 60, "seed": 3,
        "services": [{"name": "s", "model": "m", "slo_ms": 50,
                      "service_time": {"dist": "lognormal", "mean_ms": 20, "cv": 1.0},
                      "cold_start_s": 1, "replicas": {"initial": 1, "min": 1, "max": 8},
                      "workload": {"kind": "ramp", "from_rps": 10, "to_rps": 200,
                                   "start_s": 0, "end_s": 60}}],
        "strategies": [{"name": "static"},
                       {"name": "simscale_test_strategies:Chasing", "label": "chase"}],
    })
    res = run_scenario(sc, keep_requests=True)
    req = res.requests
    a = req[req.label == "static"].reset_index(drop=True)
    b = req[req.label == "chase"].reset_index(drop=True)
    both = a.end_s.notna() & b.end_s.notna()
    da = (a.end_s - a.start_s)[both].to_numpy()
    db = (b.end_s - b.start_s)[both].to_numpy()
    assert both.sum() > 1000
    np.testing.assert_allclose(da, db, rtol=1e-9)
    assert not np.allclose(a.start_s[both], b.start_s[both])  # the strategies differ


def test_unknown_strategy_is_a_user_error():
    sc = load_scenario({"name": "x", "duration_s": 10, "services": [
        {"name": "s", "model": "m", "slo_ms": 50,
         "service_time": {"dist": "exponential", "mean_ms": 10}, "cold_start_s": 0,
         "workload": {"kind": "constant", "rate_rps": 5}}]})
    with pytest.raises(UserError, match="nope"):
        run_scenario(sc, strategies=["nope"])


def test_memory_estimate_refuses_huge_runs(monkeypatch):
    sc = load_scenario({"name": "huge", "duration_s": 1e7, "services": [
        {"name": "s", "model": "m", "slo_ms": 50,
         "service_time": {"dist": "exponential", "mean_ms": 10}, "cold_start_s": 0,
         "workload": {"kind": "constant", "rate_rps": 1e6}}]})
    with pytest.raises(UserError) as err:
        run_scenario(sc)
    assert "duration_s" in str(err.value)


def test_replications_aggregate_and_save(tmp_path):
    sc = load_scenario({"name": "agg", "duration_s": 40, "services": [
        {"name": "s", "model": "m", "slo_ms": 50,
         "service_time": {"dist": "exponential", "mean_ms": 10}, "cold_start_s": 0,
         "replicas": {"initial": 2, "min": 1, "max": 4},
         "workload": {"kind": "constant", "rate_rps": 100}}]})
    res = run_scenario(sc, replications=3, seed=7, keep_requests=True)
    assert [r["seed"] for r in res.summary["runs"]] == [7, 8, 9]
    agg = res.summary["aggregate"]
    assert len(agg) == 1 and agg[0]["n"] == 3
    p95 = agg[0]["metrics"]["latency_ms.p95"]
    assert p95["ci95_low"] <= p95["mean"] <= p95["ci95_high"]
    res.save(tmp_path, save_requests=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"][0]["arrivals"] == res.summary["runs"][0]["arrivals"]
    ts = pd.read_parquet(tmp_path / "timeseries.parquet")
    assert {"strategy", "label", "service", "replication", "time_s", "latency_p95_ms",
            "cost_rate_usd_per_h"} <= set(ts.columns)
    rq = pd.read_parquet(tmp_path / "requests.parquet")
    assert set(rq.drop_reason.cat.categories) == {"", "queue_full", "timeout", "crash"}
    assert len(res.runs) == 3 and "latency_ms.p95" in res.runs.columns


def _timeseries_by_definition(run, warmup_s: float) -> dict[str, np.ndarray]:
    """The request columns of the time series straight from RESULTS.md's definitions, one bin
    at a time (quadratic; small runs only): a reference for the streamed figures."""
    pl = run.plane
    D = float(run.duration_s)
    nb = int(math.ceil(D))
    arr, st_, end, drop = pl.arrival_s, pl.start_s, pl.end_s, pl.drop
    dropped = drop != 0
    completed = (end <= D) & ~dropped
    out = {k: np.zeros(nb) for k in ("arrivals", "completions", "dropped", "queue_length",
                                     "in_flight")}
    out["latency_p95_ms"] = np.full(nb, np.nan)
    lat_ms = (end - arr) * 1000.0
    for k in range(nb):
        t_end = min(k + 1.0, D)

        def in_bin(t: np.ndarray, k: int = k) -> np.ndarray:
            return (t >= k) & (t < k + 1) if k < nb - 1 else t >= k

        out["arrivals"][k] = np.count_nonzero(in_bin(arr))
        done_k = completed & in_bin(np.where(completed, end, -1.0))
        out["completions"][k] = np.count_nonzero(done_k)
        if done_k.any():
            out["latency_p95_ms"][k] = np.percentile(lat_ms[done_k], 95)
        out["dropped"][k] = np.count_nonzero(dropped & in_bin(np.where(dropped, end, -1.0)))
        arrived = arr <= t_end
        # waiting: arrived, not started, not dropped by then (a queue-full drop never waits)
        left_queue = np.where(np.isnan(st_), np.where(dropped, end, np.inf), st_) <= k + 1.0
        left_queue |= drop == 1
        out["queue_length"][k] = np.count_nonzero(arrived & ~left_queue)
        finished = (completed | dropped) & (end <= k + 1.0)
        out["in_flight"][k] = np.count_nonzero(arrived & ~finished)
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), chunk=st.integers(1, 60))
def test_streamed_figures_match_definitions_and_any_chunking(sc, chunk):
    """The figures folded in chunk by chunk are the same for any chunk size (counts and the
    per-bin p95 exactly, sums of busy time to rounding), and the time series' request columns
    are what RESULTS.md defines."""
    from simscale.simulator.metrics import request_figures, run_figures

    _, out = _runs_of(sc)
    for runs in out.values():
        for run in runs:
            whole, ts_whole, _ = run_figures(run, sc.warmup_s, chunk=1 << 30)
            part, ts_part, _ = run_figures(run, sc.warmup_s, chunk=chunk)
            for key, value in whole.items():
                if isinstance(value, float) and not math.isnan(value):
                    assert part[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
                elif key not in ("utilization",):
                    assert json.dumps(part[key], sort_keys=True) == json.dumps(
                        value, sort_keys=True), key
            pd.testing.assert_frame_equal(ts_part, ts_whole, rtol=1e-12, atol=1e-12)
            ref = _timeseries_by_definition(run, sc.warmup_s)
            cols = request_figures(run, sc.warmup_s, chunk).timeseries()
            for key, want in ref.items():  # (p95: numpy's percentile, to rounding)
                np.testing.assert_allclose(cols[key], want, rtol=1e-12, err_msg=key)


_COMPACTED: list[int] = []  # the streamed planes' final bases, over the examples


def _figures(sc, stream: bool, spool: bool = False, live: bool = False):
    from simscale.simulator.metrics import run_figures

    seq = np.random.SeedSequence(sc.seed).spawn(len(sc.services))
    inputs = {s.name: service_inputs(s, sc, q, None, spool=spool, live=live)
              for s, q in zip(sc.services, seq, strict=True)}
    out = []
    for spec in sc.strategies:  # (live inputs: each run draws them again, the same numbers)
        strats = {s.name: make_strategy(spec.name, spec.params) for s in sc.services}
        for run in run_strategy(sc, strats, inputs, None,
                                stream=None if spool or live else stream):
            assert (run.figures is not None) == stream
            out.append((run.plane.base, *run_figures(run, sc.warmup_s)[:2]))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), kernels=st.sampled_from(["python", "compiled"]))
def test_a_streaming_run_gives_the_figures_of_one_that_keeps_every_request(sc, kernels):
    """A streaming run (its plane forgets requests as it folds them into the figures, and is
    advanced at extra times to do so) gives the same figures as a run that keeps every request:
    counts and percentiles exactly, sums to rounding. Small windows force many compactions,
    across queues of every routing policy, batching, timeouts, crashes and resizes. The same
    with the inputs spooled to disk and read back a few at a time, and with them drawn a few
    at a time as the plane reads them."""
    import os

    from simscale.simulator import inputs as drawing
    from simscale.simulator import spool as spooling
    from simscale.simulator import streaming as engine

    saved = (engine.STREAM_CHUNK, engine.STREAM_KEEP_S, engine.STREAM_KEEP_WINDOWS,
             os.environ.get("SIMSCALE_KERNELS"), spooling.READ_CHUNK, drawing.DRAW_CHUNK)
    engine.STREAM_CHUNK, engine.STREAM_KEEP_S, engine.STREAM_KEEP_WINDOWS = 16, 0.0, 0.0
    spooling.READ_CHUNK = 11
    os.environ["SIMSCALE_KERNELS"] = kernels
    try:
        kept = _figures(sc, False)
        streamed = _figures(sc, True)
        spooled = _figures(sc, True, spool=True)
        drawing.DRAW_CHUNK = 13
        live = _figures(sc, True, live=True)
    finally:
        engine.STREAM_CHUNK, engine.STREAM_KEEP_S, engine.STREAM_KEEP_WINDOWS = saved[:3]
        spooling.READ_CHUNK, drawing.DRAW_CHUNK = saved[4:]
        if saved[3] is None:
            os.environ.pop("SIMSCALE_KERNELS", None)
        else:
            os.environ["SIMSCALE_KERNELS"] = saved[3]
    _COMPACTED.extend(base for base, _, _ in streamed + spooled + live)
    for (base_k, sk, tk), (_, ss, ts_) in zip(kept * 3, streamed + spooled + live,
                                             strict=True):
        assert base_k == 0
        for key, value in sk.items():
            if key == "utilization" or (isinstance(value, float) and not math.isnan(value)
                                        and not float(value).is_integer()):
                assert ss[key] == pytest.approx(value, rel=1e-12, abs=1e-12, nan_ok=True), key
            else:
                assert json.dumps(ss[key], sort_keys=True) == json.dumps(value, sort_keys=True), key
        pd.testing.assert_frame_equal(ts_, tk, rtol=1e-12, atol=1e-12)


def test_the_streaming_property_test_did_compact():
    """(Runs after the property test in file order) the property test forgot requests for
    real: planes moved on in most examples."""
    if not _COMPACTED:
        pytest.skip("the property test did not run")
    assert sum(b > 0 for b in _COMPACTED) >= len(_COMPACTED) // 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), bin_s=st.sampled_from([2, 7, 10]))
def test_wider_timeseries_bins_aggregate_the_one_second_ones(sc, bin_s):
    """With ``metrics.timeseries_bin_s`` wider than 1 s, every column is the 1 s series
    aggregated as RESULTS.md defines it: counts summed (rates over the bin's width), values
    at the bin's end sampled, and the p95 over the
    completions of the wide bin."""
    from simscale.simulator.metrics import request_figures, run_figures

    _, out = _runs_of(sc)
    D = float(sc.duration_s)
    for runs in out.values():
        for run in runs:
            _, fine, _ = run_figures(run, sc.warmup_s)
            _, wide, _ = run_figures(run, sc.warmup_s, bin_s=bin_s)
            n = int(math.ceil(D / bin_s))
            assert len(wide) == n
            starts = np.arange(n) * bin_s
            np.testing.assert_array_equal(wide["time_s"], starts)
            width_f = np.minimum(fine["time_s"] + 1.0, D) - fine["time_s"]
            width_w = np.minimum(starts + bin_s, D) - starts
            group = (fine["time_s"].to_numpy() // bin_s).astype(int)
            for col in ("arrival_rate_rps", "throughput_rps", "dropped_rps"):
                total = np.bincount(group, weights=fine[col] * width_f, minlength=n)
                np.testing.assert_allclose(wide[col] * width_w, total, rtol=1e-9, atol=1e-9)
            last = np.minimum((np.arange(n) + 1) * bin_s, len(fine)) - 1
            for col in ("queue_length", "in_flight", "replicas_ready", "replicas_starting",
                        "threads", "cost_rate_usd_per_h"):
                np.testing.assert_array_equal(wide[col], fine[col].to_numpy()[last], col)
            pl = run.plane
            done = (pl.end_s <= D) & (pl.drop == 0)
            g = np.minimum((pl.end_s[done] / bin_s).astype(int), n - 1)
            lat = (pl.end_s[done] - pl.arrival_s[done]) * 1000.0
            want = [np.percentile(lat[g == k], 95) if np.any(g == k) else np.nan
                    for k in range(n)]
            np.testing.assert_allclose(wide["latency_p95_ms"], want, rtol=1e-12)
            acc = request_figures(run, sc.warmup_s, bin_s=bin_s)
            assert acc.bin_s == bin_s


def test_automatic_timeseries_bin_width():
    from simscale.simulator.accumulate import timeseries_bin_s

    assert timeseries_bin_s(600.0) == 1
    assert timeseries_bin_s(86_400.0) == 1
    assert timeseries_bin_s(86_401.0) == 10
    assert timeseries_bin_s(21 * 86_400.0) == 60
    assert timeseries_bin_s(21 * 86_400.0, 5) == 5


def _tolist(o: object) -> object:
    return o.tolist()  # type: ignore[attr-defined]  # (numpy arrays and scalars)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), chunk=st.integers(1, 500), bin_s=st.sampled_from([1, 3]))
def test_compiled_fold_equals_the_numpy_one(sc, chunk, bin_s):
    """The compiled fold of the requests gives the numpy fold's figures (the specification):
    counts and percentiles exactly, busy-time sums to rounding."""
    pytest.importorskip("numba")
    from simscale.simulator.metrics import request_figures

    _, out = _runs_of(sc)
    for runs in out.values():
        for run in runs:
            ref = request_figures(run, sc.warmup_s, chunk, bin_s, compiled=False)
            got = request_figures(run, sc.warmup_s, chunk, bin_s, compiled=True)
            a, b = ref.summary(), got.summary()
            for key in a:
                if key == "busy_total":
                    assert b[key] == pytest.approx(a[key], rel=1e-12, abs=1e-12)
                else:
                    assert json.dumps(b[key], sort_keys=True, default=_tolist) == json.dumps(
                        a[key], sort_keys=True, default=_tolist), key
            ta, tb = ref.timeseries(), got.timeseries()
            for key in ta:
                if key == "busy_s":
                    np.testing.assert_allclose(tb[key], ta[key], rtol=1e-12, atol=1e-12)
                else:
                    np.testing.assert_array_equal(tb[key], ta[key], err_msg=key)
