"""The engine with ``service_time: profile``: service draws, sizes, memory and cold starts come
from the profile (a small synthetic one here, so the test does not depend on the shipped one)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from simscale.profiler.schema import Profile
from simscale.simulator.runner import run_scenario
from simscale.simulator.scenario import load_scenario
from simscale.strategies.base import Decision, Observation, ServiceContext


def make_profile(overhead_ms: float | None = None,
                 idle: list[tuple[float, float]] | None = None) -> Profile:
    serving = None if overhead_ms is None else {
        "batches": 10, "gap_ms": 50.0, "roundtrip_ms_p50": 5.0 + overhead_ms,
        "roundtrip_ms_p95": 6.0 + overhead_ms, "predict_ms_p50": 5.0, "overhead_ms": overhead_ms,
        "idle_overhead_ms": idle}

    def cfg(t: int) -> dict:
        a, b = 4.0 / t, 1.0 / t
        batches = [{"batch_size": bs, "samples_ms": [a + b * bs], "mean_ms": a + b * bs,
                    "std_ms": 0.1, "p50_ms": a + b * bs, "p95_ms": a + b * bs,
                    "p99_ms": a + b * bs, "items_per_s": 1000 * bs / (a + b * bs),
                    "peak_memory_mb": 100.0 + 10 * bs}
                   for bs in (1, 2, 4, 8)]
        return {"device": "cpu", "threads": t, "batches": batches,
                "fit": {"alpha_ms": a, "beta_ms": b,
                        "noise": {"dist": "lognorm", "params": [0.3, 0, 1]},
                        "r2": 0.99, "max_rel_error": 0.05},
                "serving": serving}

    return Profile.model_validate({
        "schema": "simscale.profile/1", "created_at": "2026-01-01",
        "machine": {"cpu_model": "x", "cores": 2, "memory_mb": 4000, "platform": "linux",
                    "python": "3.11", "date": "2026-01-01"},
        "models": {"m": {"name": "m", "description": "", "framework": "x", "n_parameters": 1,
                         "model_size_mb": 10,
                         "cold_start": [{"device": "cpu", "samples_s": [2.0, 3.0, 4.0],
                                         "mean_s": 3.0, "p50_s": 3.0, "p95_s": 4.0}],
                         "configs": [cfg(1), cfg(2), cfg(4)]}}})


class Grow:
    """Scale to 3 replicas, then (when asked) to 4 threads per replica."""

    sync_period_s = 10.0

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def setup(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def decide(self, obs: Observation) -> Decision:
        assert [o.threads for o in obs.size_options] == [1, 2, 4]
        return Decision(replicas=3, threads=self.threads, info={"t": obs.time_s})


class Squeeze:
    """Three replicas of 4 threads until t = 30 s, then one (on a 6-core cluster)."""

    sync_period_s = 10.0

    def decide(self, obs: Observation) -> Decision:
        return Decision(replicas=3 if obs.time_s < 30 else 1, threads=4)


_mod = types.ModuleType("simscale_test_profile_strategies")
_mod.Grow = Grow
_mod.Squeeze = Squeeze
sys.modules["simscale_test_profile_strategies"] = _mod


def scenario(**svc):
    return load_scenario({
        "name": "prof", "duration_s": 60, "seed": 5,
        "services": [{"name": "s", "model": "m", "slo_ms": 30, "threads": 1,
                      "batching": {"max_batch_size": 4, "max_wait_ms": 1},
                      "replicas": {"initial": 1, "min": 1, "max": 4},
                      "cost_per_replica_hour": 2.0,
                      "workload": {"kind": "constant", "rate_rps": 300}, **svc}],
        "strategies": [{"name": "simscale_test_profile_strategies:Grow", "label": "grow"},
                       {"name": "simscale_test_profile_strategies:Grow", "label": "big",
                        "threads": 4}],
        "cluster": {"cores": 6, "memory_mb": 10_000},
    })


def test_profile_service_times_are_the_profile_model_draws():
    prof = make_profile()
    sc = scenario()
    res = run_scenario(sc, profile=prof, keep_requests=True)
    req = res.requests[res.requests.label == "grow"].reset_index(drop=True)
    # the engine's noise stream: replication 0, service 0, second of five streams
    seq = np.random.SeedSequence(5).spawn(1)[0].spawn(5)[1]
    u = np.random.default_rng(seq).random(len(req))
    stm = prof.service_model("m", "cpu", 1)
    served = req[req.end_s.notna()]
    first = served.groupby(["replica", "start_s"]).head(1)
    want = stm.sample_s(first.batch_size.to_numpy(), u[first.index.to_numpy()])
    np.testing.assert_allclose((first.end_s - first.start_s).to_numpy(), want, rtol=0,
                               atol=1e-12)
    assert served.batch_size.max() > 1
    run = res.summary["runs"][0]
    assert run["info"]["t"] == pytest.approx(np.mean([10, 20, 30, 40, 50]))
    # the strategy asked for 3 replicas at t=10: they take the profile's cold start (2-4 s);
    # counts are sampled at bin ends, so the bin [9, 10) already shows them starting
    starting = res.timeseries[(res.timeseries.label == "grow")
                              & (res.timeseries.replicas_starting > 0)]
    assert 2 <= len(starting) <= 5 and starting.time_s.min() == 9


def test_serving_overhead_lengthens_every_batch_by_exactly_it():
    """The profile's serving overhead is added to every simulated batch, whatever its size and
    noise draw; the strategies' size options see it too."""
    sc = scenario(workload={"kind": "constant", "rate_rps": 50})
    runs = {}
    for oh in (None, 1.5):
        res = run_scenario(sc, profile=make_profile(oh), keep_requests=True, strategies=["grow"])
        req = res.requests
        runs[oh] = req.assign(dur=req.end_s - req.start_s)
    a, b = runs[None], runs[1.5]
    assert a.batch_size.max() > 1
    # same arrivals and draws; at this light load the batches are mostly the same, and where
    # a batch of one request has the same draw, its time is exactly 1.5 ms longer
    u = np.random.default_rng(np.random.SeedSequence(5).spawn(1)[0].spawn(5)[1]).random(len(a))
    bare = make_profile().service_model("m", "cpu", 1)
    with_oh = make_profile(1.5).service_model("m", "cpu", 1)
    np.testing.assert_allclose(with_oh.sample_s(3, u) - bare.sample_s(3, u), 1.5e-3)
    first = b[b.end_s.notna()].groupby(["replica", "start_s"]).head(1)
    want = with_oh.sample_s(first.batch_size.to_numpy(), u[first.index.to_numpy()])
    np.testing.assert_allclose(first.dur.to_numpy(), want, rtol=0, atol=1e-12)
    assert np.median(b.dur) == pytest.approx(np.median(a.dur) + 1.5e-3, abs=0.3e-3)
    from simscale.simulator.engine import size_options

    opt0 = size_options(sc.services[0], make_profile(), 4)[0]
    opt1 = size_options(sc.services[0], make_profile(1.5), 4)[0]
    assert opt1.alpha_ms == pytest.approx(opt0.alpha_ms + 1.5)
    assert opt1.mean_service_s(1) > opt0.mean_service_s(1)


def test_serving_overhead_follows_each_batchs_idle_time():
    """With an overhead measured by idle gap, each simulated batch pays the overhead of its
    replica's idle time before it; the strategies size replicas with the back-to-back one."""
    curve = [(0.0, 0.2), (50.0, 1.5), (200.0, 3.0)]
    prof = make_profile(1.5, curve)
    sc = scenario(workload={"kind": "constant", "rate_rps": 30})
    res = run_scenario(sc, profile=prof, keep_requests=True, strategies=["grow"])
    req = res.requests.reset_index(drop=True)
    u = np.random.default_rng(np.random.SeedSequence(5).spawn(1)[0].spawn(5)[1]).random(len(req))
    bare = make_profile().service_model("m", "cpu", 1)
    served = req[req.end_s.notna()]
    heads = served.groupby(["replica", "start_s"]).head(1).sort_values(["replica", "start_s"])
    # the replica's idle time before each batch: since its previous batch ended (the first
    # batches: since it became ready, at 0 for the initial replica)
    prev_end = heads.groupby("replica")["end_s"].shift(1)
    known = heads[prev_end.notna()]
    idle_s = (known.start_s - prev_end[prev_end.notna()]).to_numpy()
    got = (known.end_s - known.start_s).to_numpy() - bare.sample_s(
        known.batch_size.to_numpy(), u[known.index.to_numpy()])
    want = np.interp(idle_s * 1000, *zip(*curve, strict=True)) / 1000
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert idle_s.min() < 0.01 and idle_s.max() > 0.05  # short and long idle times both occur
    from simscale.simulator.engine import size_options

    opt = size_options(sc.services[0], prof, 4)[0]
    assert opt.alpha_ms == pytest.approx(4.0 + 0.2)  # back to back: the curve's first point


def test_vertical_resize_uses_the_bigger_size_and_price():
    prof = make_profile()
    res = run_scenario(scenario(), profile=prof)
    grow, big = res.summary["runs"]
    assert big["scale_events"] > grow["scale_events"]
    assert any(e["action"] == "resize" and e["threads"] == 4 for e in big["events"])
    ts = res.timeseries[res.timeseries.label == "big"]
    assert ts.threads.iloc[-1] == 4
    # grow: 1 replica for 60 s and 2 more from t=10 (billed while starting), at $2/h
    assert grow["cost_usd"] == pytest.approx((60 + 2 * 50) * 2.0 / 3600)
    # big: at t=10 the replica is resized in place to 4 threads ($8/h; resizes are not
    # re-checked against the 6-core cluster), so the 2 new 4-thread replicas stay pending
    assert big["cost_usd"] == pytest.approx((10 * 2.0 + 50 * 8.0) / 3600)
    assert ts.replicas_pending.iloc[-1] == 2 and ts.replicas_ready.iloc[-1] == 1
    assert big["latency_ms"]["p50"] < grow["latency_ms"]["p50"]


def test_cluster_room_leaves_replicas_pending():
    prof = make_profile()
    sc = scenario(threads=2)
    res = run_scenario(sc, profile=prof, strategies=["grow"])
    ts = res.timeseries
    # 6 cores, 2 threads each: the third replica fits, a fourth would not; max is 3 here
    assert ts.replicas_pending.max() == 0
    sc2 = load_scenario({**sc.model_dump(exclude_none=True),
                         "cluster": {"cores": 4, "memory_mb": 10_000}})
    res2 = run_scenario(sc2, profile=prof, strategies=["grow"])
    ts2 = res2.timeseries
    assert ts2.replicas_pending.max() == 1
    assert (ts2.replicas_starting + ts2.replicas_ready).max() == 2
    assert res2.summary["runs"][0]["max_replicas"] == 2


def test_in_place_resizes_wait_for_room_on_the_cluster():
    """A resize to a larger size takes the difference in cores from the cluster; without room
    it is deferred (the replica keeps serving, and is billed, at its old size) and carried out
    when room is released. Before, all three replicas grew to 4 threads on 6 cores (12 in use)."""
    from simscale.simulator.engine import run_strategy
    from simscale.simulator.runner import replication_inputs
    from simscale.strategies import make_strategy

    prof = make_profile()
    sc = load_scenario({**scenario(replicas={"initial": 3, "min": 1, "max": 3}).model_dump(
        exclude_none=True), "strategies": [
            {"name": "simscale_test_profile_strategies:Squeeze", "label": "squeeze"}]})
    inputs = replication_inputs(sc, sc.seed, prof)
    strat = make_strategy(sc.strategies[0].name, sc.strategies[0].params)
    (run,) = run_strategy(sc, {"s": strat}, inputs, prof)
    # cores in use over time, from each replica's sizes between its placement and its stop
    edges = []
    for rec in run.replicas:
        if np.isnan(rec.placed_s):
            continue
        stop = rec.stop_s if not np.isnan(rec.stop_s) else sc.duration_s
        sizes = [*rec.sizes, (stop, 0)]
        for (t0, threads), (t1, _) in zip(sizes, sizes[1:], strict=False):
            edges += [(t0, threads), (t1, -threads)]
    in_use, peak = 0, 0
    for _, d in sorted(edges, key=lambda e: (e[0], e[1])):  # releases first at a tie
        in_use += d
        peak = max(peak, in_use)
    assert peak <= 6
    deferred = [e for e in run.events if e["action"] == "resize_deferred"]
    assert deferred and deferred[0]["time_s"] == 10.0
    assert deferred[0]["reason"].startswith("2 replica(s)")
    # at 30 s two replicas go; the one left ends at 4 threads, however the victims fall
    live = [r for r in run.replicas if np.isnan(r.stop_s)]
    assert len(live) == 1 and live[0].threads == 4 and live[0].sizes[-1][1] == 4
    assert any(len(r.sizes) > 1 and r.sizes[1][0] > 10.0 for r in run.replicas) \
        or live[0].sizes[-1][0] == 10.0
