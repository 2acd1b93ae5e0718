"""Co-location on hosts (simulator/colocation.py, the host form of a scenario's ``cluster``).

(a) with every factor 1 a co-located run is request by request the run without co-location;
(b) a textbook SimPy model of co-located replicas (a process per batch, interrupted whenever
    its node's batch count changes) agrees request by request with the engine;
(c) theory: two always-busy replicas on one node with s(1) = 1.5 take 1.5 d per batch;
(d) placement: spread and pack, a replica that fits no node, a resize without room on its node.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simscale.errors import UserError
from simscale.profiler.colocation_schema import Colocation
from simscale.profiler.schema import Profile
from simscale.simulator.cluster import ClusterRoom
from simscale.simulator.colocation import SlowdownTable
from simscale.simulator.engine import ReplicaRecord, run_strategy
from simscale.simulator.inputs import service_inputs
from simscale.simulator.requestplane import DROP_QUEUE_FULL, DROP_TIMEOUT
from simscale.simulator.scenario import load_scenario
from simscale.strategies import make_strategy
from simscale.strategies.base import Decision, Observation

FIELDS = ("start_s", "end_s", "drop", "replica", "batch_size")


class Wobble:
    """A test strategy: replica counts that go up and down (and a batch limit now and then), so
    replicas start, drain and stop while neighbours serve."""

    sync_period_s = 3.0

    def decide(self, obs: Observation) -> Decision:
        k = int(obs.time_s / 3.0)
        return Decision(replicas=1 + (k * 7) % 4,
                        max_batch_size=None if k % 3 else 1 + k % 4)


_mod = types.ModuleType("simscale_test_colocation_strategies")
_mod.Wobble = Wobble
sys.modules["simscale_test_colocation_strategies"] = _mod

DISTS = st.sampled_from([
    {"dist": "exponential", "mean_ms": 20},
    {"dist": "gamma", "mean_ms": 25, "cv": 0.5},
    {"dist": "lognormal", "mean_ms": 10, "cv": 1.5},
])
WORKLOADS = st.sampled_from([
    {"kind": "constant", "rate_rps": 120},
    {"kind": "step", "steps": [{"at_s": 0, "rate_rps": 20}, {"at_s": 8, "rate_rps": 250}]},
    {"kind": "mmpp", "states": [{"rate_rps": 20, "mean_sojourn_s": 3},
                                {"rate_rps": 200, "mean_sojourn_s": 3}]},
])


def _services(draw, n_svc: int, dists=DISTS, routings=("shared_queue",)) -> list[dict]:
    out = []
    for k in range(n_svc):
        mx = draw(st.integers(1, 5))
        init = draw(st.integers(1, mx))
        out.append({
            "name": f"s{k}", "model": "m", "slo_ms": 50, "service_time": draw(dists),
            "threads": draw(st.integers(1, 2)),
            "cold_start_s": draw(st.sampled_from([0, 1.5])),
            "routing": draw(st.sampled_from(routings)),
            "batching": {"max_batch_size": draw(st.integers(1, 4)),
                         "max_wait_ms": draw(st.sampled_from([0, 2, 10]))},
            "queue": {"capacity": draw(st.one_of(st.none(), st.integers(0, 20))),
                      "timeout_ms": draw(st.one_of(st.none(), st.sampled_from([30, 300])))},
            "replicas": {"initial": init, "min": 1, "max": mx},
            "workload": draw(WORKLOADS)})
    return out


@st.composite
def scenarios_any(draw):
    """Small scenarios with hosts, autoscaling, crashes and every routing policy."""
    sc = {"name": "coloc", "duration_s": draw(st.sampled_from([20, 30.5])),
          "seed": draw(st.integers(0, 10_000)),
          "services": _services(draw, draw(st.integers(1, 3)), routings=(
              "shared_queue", "shared_queue", "round_robin", "least_outstanding",
              "power_of_two", "random", "join_idle_queue")),
          "strategies": [draw(st.sampled_from([
              {"name": "static"}, {"name": "simscale_test_colocation_strategies:Wobble"},
              {"name": "hpa", "target_utilization": 0.5, "sync_period_s": 2}]))],
          "cluster": {"nodes": draw(st.integers(1, 3)),
                      "cores_per_node": draw(st.integers(2, 6)), "memory_per_node_mb": 1e6,
                      "placement": draw(st.sampled_from(["spread", "pack"]))}}
    if draw(st.booleans()):
        sc["faults"] = {"crash_mtbf_s": draw(st.sampled_from([5, 30])),
                        "straggler_fraction": 0.5, "straggler_slowdown": 3}
    return sc


def _run(sc):
    seq = np.random.SeedSequence(sc.seed).spawn(len(sc.services))
    inputs = {s.name: service_inputs(s, sc, q, None)
              for s, q in zip(sc.services, seq, strict=True)}
    spec = sc.strategies[0]
    strats = {s.name: make_strategy(spec.name, spec.params) for s in sc.services}
    return inputs, run_strategy(sc, strats, inputs, None)


def _with_cluster(raw: dict, **cluster) -> object:
    return load_scenario({**raw, "cluster": {**raw["cluster"], **cluster}})


# ============================================================================ (a)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=scenarios_any())
def test_factors_of_one_give_the_run_without_colocation(raw):
    _, off = _run(_with_cluster(raw, colocation=False))
    _, on = _run(_with_cluster(raw, slowdown_by_others=[1.0]))
    for a, b in zip(off, on, strict=True):
        assert type(b.plane).__name__ == "ColocatedPlane"
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(a.plane, f), getattr(b.plane, f), err_msg=f)
        assert [(r.node, r.placed_s, r.ready_s, r.stop_s, r.state) for r in a.replicas] == \
            [(r.node, r.placed_s, r.ready_s, r.stop_s, r.state) for r in b.replicas]
        assert a.events == b.events


def test_one_pool_is_one_node_without_colocation():
    """The pool form and one node of the same room place and serve alike."""
    raw = {"name": "p", "duration_s": 30, "seed": 4,
           "services": [{"name": "s", "model": "m", "slo_ms": 50, "threads": 2,
                         "service_time": {"dist": "exponential", "mean_ms": 20},
                         "cold_start_s": 1, "replicas": {"initial": 2, "min": 1, "max": 5},
                         "workload": {"kind": "constant", "rate_rps": 150}}],
           "strategies": [{"name": "hpa", "target_utilization": 0.4}]}
    _, pool = _run(load_scenario({**raw, "cluster": {"cores": 7, "memory_mb": 1e6}}))
    _, node = _run(load_scenario({**raw, "cluster": {"nodes": 1, "cores_per_node": 7,
                                                     "memory_per_node_mb": 1e6,
                                                     "colocation": False}}))
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(pool[0].plane, f), getattr(node[0].plane, f))
    assert any(r.state == "pending" for r in pool[0].replicas)


# ============================================================================ (b)
def textbook(sc, inputs, factors: list[float]) -> dict[str, dict[str, np.ndarray]]:
    """Fixed replicas (static, no faults, all placed at 0), shared queues with batching,
    capacity and timeouts, in textbook SimPy: a process per arrival, per timeout, per batching
    deadline and per batch; a batch is interrupted whenever its node's batch count changes and
    goes on at the factor of its new number of neighbours."""
    env = simpy.Environment()
    D = sc.duration_s
    free = [float(sc.cluster.cores_per_node)] * sc.cluster.nodes
    on_node: list[set] = [set() for _ in free]

    def factor(n: int) -> float:
        return factors[n] if n < len(factors) else factors[-1] + max(
            0.0, factors[-1] - factors[-2]) * (n - len(factors) + 1)

    out, state = {}, {}
    for svc in sc.services:  # placement: the scenario's order, most free cores, lowest index
        nodes = []
        for _ in range(svc.replicas.initial):
            k = max(range(len(free)), key=lambda j: (free[j], -j))
            assert free[k] >= svc.threads
            free[k] -= svc.threads
            nodes.append(k)
        a, u, _ = inputs[svc.name].arrays()
        n = len(a)
        out[svc.name] = {"start_s": np.full(n, np.nan), "end_s": np.full(n, np.nan),
                         "drop": np.zeros(n, dtype=np.int8),
                         "replica": np.full(n, -1, dtype=np.int32)}
        state[svc.name] = {"svc": svc, "a": a, "u": u, "queue": [], "nodes": nodes,
                           "idle": {r: 0.0 for r in range(len(nodes))}, "armed": set()}

    def batch(s, r, idxs, d):
        node = s["nodes"][r]
        me = env.active_process
        others = list(on_node[node])
        on_node[node].add(me)
        for p in others:
            p.interrupt()
        w = d
        while True:
            f = factor(len(on_node[node]) - 1)
            t0 = env.now
            try:
                yield env.timeout(w * f)
                break
            except simpy.Interrupt:
                w = max(0.0, w - (env.now - t0) / f)
        on_node[node].discard(me)
        for p in list(on_node[node]):
            p.interrupt()
        o = out[s["svc"].name]
        o["end_s"][idxs] = env.now
        s["idle"][r] = env.now
        dispatch(s)

    def deadline(s, t):
        yield env.timeout(t - env.now)
        s["armed"].discard(t)
        dispatch(s)

    def dispatch(s):
        q, svc = s["queue"], s["svc"]
        maxb, maxw = svc.batching.max_batch_size, svc.batching.max_wait_ms / 1000.0
        while q and s["idle"]:
            head = s["a"][q[0]]
            if len(q) < maxb and head + maxw > env.now:
                if head + maxw not in s["armed"]:
                    s["armed"].add(head + maxw)
                    env.process(deadline(s, head + maxw))
                return
            r = min(s["idle"], key=lambda x: (s["idle"][x], x))
            del s["idle"][r]
            k = min(len(q), maxb)
            idxs = q[:k]
            del q[:k]
            o = out[svc.name]
            o["start_s"][idxs] = env.now
            o["replica"][idxs] = r
            env.process(batch(s, r, idxs, float(s["u"][idxs[0]])))

    def timeout(s, i, tmo):
        yield env.timeout(s["a"][i] + tmo - env.now)
        if i in s["queue"]:
            s["queue"].remove(i)
            o = out[s["svc"].name]
            o["drop"][i] = DROP_TIMEOUT
            o["end_s"][i] = env.now

    def arrivals(s):
        svc = s["svc"]
        cap, tmo_ms = svc.queue.capacity, svc.queue.timeout_ms
        for i, t in enumerate(s["a"].tolist()):
            yield env.timeout(t - env.now)
            if cap is not None and len(s["queue"]) >= cap:
                o = out[svc.name]
                o["drop"][i] = DROP_QUEUE_FULL
                o["end_s"][i] = t
                continue
            s["queue"].append(i)
            if tmo_ms is not None:
                env.process(timeout(s, i, tmo_ms / 1000.0))
            dispatch(s)

    for s in state.values():
        env.process(arrivals(s))
    env.run(until=D)
    return out


@st.composite
def scenarios_fixed(draw):
    return {"name": "tb", "duration_s": 15, "seed": draw(st.integers(0, 10_000)),
            "services": _services(draw, draw(st.integers(1, 3))),
            "strategies": [{"name": "static"}],
            "cluster": {"nodes": draw(st.integers(1, 2)),
                        "cores_per_node": 32, "memory_per_node_mb": 1e6,
                        "slowdown_by_others": draw(st.sampled_from(
                            [[1.0, 1.3, 1.8], [1.0, 2.0], [1.0, 0.9, 1.4, 1.5]]))}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=scenarios_fixed())
def test_engine_agrees_with_a_textbook_simpy_model(raw):
    sc = load_scenario(raw)
    inputs, runs = _run(sc)
    want = textbook(sc, inputs, list(sc.cluster.slowdown_by_others))
    D = sc.duration_s
    for run in runs:
        pl, w = run.plane, want[run.service.name]
        np.testing.assert_array_equal(pl.drop, w["drop"])
        np.testing.assert_array_equal(pl.replica, w["replica"])
        np.testing.assert_allclose(pl.start_s, w["start_s"], rtol=0, atol=1e-9)
        done = w["end_s"] <= D  # (in service at the end: the engine holds a projection)
        np.testing.assert_allclose(pl.end_s[done], w["end_s"][done], rtol=0, atol=1e-9)
        assert np.all(np.isnan(w["end_s"][~done]) & ~np.isnan(pl.start_s[~done])
                      <= (pl.end_s[~done] >= D))


# ============================================================================ (c)
def _busy_node(factors, n_services: int = 1, replicas: int = 2, nodes: int = 1, **svc):
    return load_scenario({
        "name": "busy", "duration_s": 5, "seed": 1,
        "services": [{"name": f"s{k}", "model": "m", "slo_ms": 50,
                      "service_time": {"dist": "deterministic", "mean_ms": 10},
                      "cold_start_s": 0,
                      "replicas": {"initial": replicas, "min": 1, "max": replicas},
                      "workload": {"kind": "constant", "rate_rps": 2000}, **svc}
                     for k in range(n_services)],
        "strategies": [{"name": "static"}],
        "cluster": {"nodes": nodes, "cores_per_node": 8, "memory_per_node_mb": 1e6,
                    "slowdown_by_others": factors}})


@pytest.mark.parametrize(("n_services", "replicas", "factors", "want_s"), [
    (1, 2, [1.0, 1.5], 0.015),        # two replicas of one service
    (2, 1, [1.0, 1.5], 0.015),        # one replica each of two services, same node
    (1, 3, [1.0, 1.2, 1.7], 0.017),   # three: two others each
    (1, 4, [1.0, 1.2, 1.7], 0.022),   # beyond the table: 1.7 + (1.7 - 1.2)
    (1, 1, [1.0, 3.0], 0.010),        # alone: no neighbour, no slowdown
])
def test_always_busy_replicas_take_the_factor_of_their_neighbours(n_services, replicas,
                                                                   factors, want_s):
    _, runs = _run(_busy_node(factors, n_services, replicas))
    for run in runs:
        pl = run.plane
        # (the very first batches start a little apart, as the first requests arrive)
        done = (pl.start_s > 0.1) & (pl.drop == 0) & (pl.end_s <= 5)
        dur = (pl.end_s - pl.start_s)[done]
        assert len(dur) > 100
        np.testing.assert_allclose(dur, want_s, rtol=1e-9)


def test_neighbours_on_other_nodes_do_not_slow():
    _, runs = _run(_busy_node([1.0, 1.5], 1, 2, nodes=2))  # spread: one replica per node
    assert sorted(r.node for r in runs[0].replicas) == [0, 1]
    pl = runs[0].plane
    done = ~np.isnan(pl.end_s) & (pl.drop == 0) & (pl.end_s <= 5)
    np.testing.assert_allclose((pl.end_s - pl.start_s)[done], 0.010, rtol=1e-9)


def test_a_neighbour_starting_mid_batch_stretches_only_the_rest():
    """One batch of 100 ms alone from 0; a neighbour's batch of 100 ms starts at 40 ms with
    s(1) = 2: the first has 60 ms of work left at half speed (ends at 160 ms); the second runs
    at half speed until then (60 ms of progress) and alone after (ends at 200 ms)."""
    from simscale.simulator.colocation import ColocatedPlane, HostLoop

    loop = HostLoop()
    tab = SlowdownTable([1.0, 2.0])
    a = ColocatedPlane(loop, np.array([0.0]), np.array([0.1]))
    b = ColocatedPlane(loop, np.array([0.04]), np.array([0.1]))
    for p in (a, b):
        p.set_host(0, 0, tab)
        p.add_replica(0, 0.0, [1.0, 1.0])
    a.advance(1.0)
    assert a.end_s[0] == pytest.approx(0.16) and b.end_s[0] == pytest.approx(0.2)
    assert b.start_s[0] == 0.04 and b.now == 1.0


def test_slowdown_table_extrapolates_as_the_profile_does():
    for f in ([1.0], [1.0, 1.4], [1.0, 1.5, 1.3], [1.0, 1.2, 1.9, 2.4]):
        col = Colocation(batch_size=1, host_cores=len(f), slowdown_by_others=f,
                         p50_ms=[1.0] * len(f), round_p50_ms=[[1.0]] * len(f),
                         samples=[1] * len(f))
        tab = SlowdownTable(f)
        assert [tab.factor(n) for n in range(8)] == [col.slowdown(n) for n in range(8)]


# ============================================================================ (d)
def _rec(cores: float, rid: int = 0) -> ReplicaRecord:
    return ReplicaRecord(rid=rid, requested_s=0.0, threads=int(cores), cores=cores,
                         memory_mb=10.0)


@pytest.mark.parametrize(("placement", "want"), [
    ("spread", [0, 1, 2, 0, 1, 2]), ("pack", [0, 0, 1, 1, 2, 2])])
def test_spread_and_pack(placement, want):
    room = ClusterRoom([(4.0, 100.0)] * 3, placement)
    recs = [_rec(2, k) for k in range(6)]
    for r in recs:
        room.take(r)
    assert [r.node for r in recs] == want
    assert not room.fits(_rec(1))
    room.release(recs[4])  # (node 1 under spread, node 2 under pack: two cores free there)
    nxt = _rec(2, 9)
    room.take(nxt)
    assert nxt.node == want[4]


def test_spread_prefers_free_cores_pack_the_fullest_that_fits():
    room = ClusterRoom([(4.0, 100.0), (8.0, 100.0), (2.0, 100.0)], "pack")
    r = _rec(3)
    room.take(r)
    assert r.node == 0  # 2 free cores is fuller, but 3 do not fit there
    room = ClusterRoom([(4.0, 100.0), (8.0, 5.0), (2.0, 100.0)], "spread")
    r = _rec(1)
    room.take(r)
    assert r.node == 0  # node 1 has more cores but not the memory
    assert room.has_room(0, 3.0, 90.0) and not room.has_room(0, 3.5, 0.0)


def _cluster_scenario(cluster: dict, threads: int = 3, initial: int = 2) -> object:
    return load_scenario({
        "name": "room", "duration_s": 10, "seed": 2,
        "services": [{"name": "s", "model": "m", "slo_ms": 50, "threads": threads,
                      "service_time": {"dist": "exponential", "mean_ms": 5},
                      "cold_start_s": 0, "replicas": {"initial": initial, "min": 1, "max": initial},
                      "workload": {"kind": "constant", "rate_rps": 50}}],
        "strategies": [{"name": "static"}], "cluster": cluster})


def test_a_replica_that_fits_no_node_is_pending():
    # 6 cores in all, but 3 + 3 do not fit on nodes of 4: the second replica stays pending
    _, (run,) = _run(_cluster_scenario({"nodes": 2, "cores_per_node": 4,
                                        "memory_per_node_mb": 1e6, "placement": "pack"}))
    assert [r.state for r in run.replicas] == ["ready", "ready"]
    _, (run,) = _run(_cluster_scenario({"nodes": 2, "cores_per_node": 4,
                                        "memory_per_node_mb": 1e6}, threads=5))
    assert [r.state for r in run.replicas] == ["pending", "pending"]
    assert np.all(np.isnan(run.plane.start_s))
    _, (run,) = _run(_cluster_scenario({"nodes": 1, "cores_per_node": 4,
                                        "memory_per_node_mb": 1e6}))
    assert [r.state for r in run.replicas] == ["ready", "pending"]


def _profile(colocation: list[float] | None = None) -> Profile:
    def cfg(t: int) -> dict:
        a, b = 4.0 / t, 1.0 / t
        batches = [{"batch_size": bs, "samples_ms": [a + b * bs], "mean_ms": a + b * bs,
                    "std_ms": 0.1, "p50_ms": a + b * bs, "p95_ms": a + b * bs,
                    "p99_ms": a + b * bs, "items_per_s": 1000 * bs / (a + b * bs),
                    "peak_memory_mb": 100.0} for bs in (1, 2, 4)]
        col = None if colocation is None else {
            "batch_size": 1, "host_cores": 4, "slowdown_by_others": colocation,
            "p50_ms": [1.0] * len(colocation), "round_p50_ms": [[1.0]] * len(colocation),
            "samples": [1] * len(colocation)}
        return {"device": "cpu", "threads": t, "batches": batches,
                "fit": {"alpha_ms": a, "beta_ms": b,
                        "noise": {"dist": "lognorm", "params": [0.3, 0, 1]},
                        "r2": 0.99, "max_rel_error": 0.05}, "colocation": col}

    return Profile.model_validate({
        "schema": "simscale.profile/1", "created_at": "2026-01-01",
        "machine": {"cpu_model": "x", "cores": 2, "memory_mb": 4000, "platform": "linux",
                    "python": "3.11", "date": "2026-01-01"},
        "models": {"m": {"name": "m", "description": "", "framework": "x", "n_parameters": 1,
                         "model_size_mb": 10,
                         "cold_start": [{"device": "cpu", "samples_s": [2.0], "mean_s": 2.0,
                                         "p50_s": 2.0, "p95_s": 2.0}],
                         "configs": [cfg(1), cfg(2), cfg(4)]}}})


class ToFour:
    """Three replicas, resized to 4 threads at the first decision."""

    sync_period_s = 5.0

    def decide(self, obs: Observation) -> Decision:
        return Decision(replicas=3, threads=4)


_mod.ToFour = ToFour


def test_a_resize_without_room_on_its_node_is_deferred():
    """Two nodes of 5 cores, three replicas of 2 threads spread on nodes 0, 1, 0: resizing to 4
    threads needs 2 more cores each. Node 1 has them; node 0 (1 free) has not, so both its
    replicas wait, although the cluster has 4 cores free in all (one pool would resize one)."""
    prof = _profile()

    def run(cluster):
        sc = load_scenario({
            "name": "resize", "duration_s": 12, "seed": 3,
            "services": [{"name": "s", "model": "m", "slo_ms": 50, "threads": 2,
                          "cold_start_s": 1, "batching": {"max_batch_size": 4},
                          "replicas": {"initial": 3, "min": 1, "max": 3},
                          "workload": {"kind": "constant", "rate_rps": 100}}],
            "strategies": [{"name": "simscale_test_colocation_strategies:ToFour"}],
            "cluster": cluster})
        seq = np.random.SeedSequence(sc.seed).spawn(1)
        inputs = {"s": service_inputs(sc.services[0], sc, seq[0], prof)}
        (out,) = run_strategy(sc, {"s": ToFour()}, inputs, prof)
        return out

    hosts = run({"nodes": 2, "cores_per_node": 5, "memory_per_node_mb": 1e6})
    assert [r.node for r in hosts.replicas] == [0, 1, 0]
    assert [r.threads for r in hosts.replicas] == [2, 4, 2]
    (ev,) = [e for e in hosts.events if e["action"] == "resize_deferred"]
    assert ev["time_s"] == 5.0 and ev["reason"].startswith("2 replica(s)")
    pool = run({"cores": 10, "memory_mb": 1e6})
    assert sorted(r.threads for r in pool.replicas) == [2, 4, 4]


def test_the_profile_factors_of_the_replica_size_apply():
    """Without an override, a replica's factors are its size's measured colocation."""
    prof = _profile([1.0, 2.0])
    sc = load_scenario({
        "name": "prof", "duration_s": 3, "seed": 3,
        "services": [{"name": "s", "model": "m", "slo_ms": 50, "threads": 1,
                      "replicas": {"initial": 2, "min": 2, "max": 2},
                      "workload": {"kind": "constant", "rate_rps": 3000}}],
        "strategies": [{"name": "static"}],
        "cluster": {"nodes": 1, "cores_per_node": 4, "memory_per_node_mb": 1e6}})
    seq = np.random.SeedSequence(sc.seed).spawn(1)
    inputs = {"s": service_inputs(sc.services[0], sc, seq[0], prof)}
    (on,) = run_strategy(sc, {"s": make_strategy("static", {})}, inputs, prof)
    sc_off = load_scenario({**sc.model_dump(exclude_none=True),
                            "cluster": {"cores": 4, "memory_mb": 1e6}})
    (off,) = run_strategy(sc_off, {"s": make_strategy("static", {})}, inputs, prof)
    # always busy, both replicas: every batch (after the first at 0) takes twice as long
    d_on = np.diff(np.unique(on.plane.start_s[on.plane.replica == 0]))
    d_off = np.diff(np.unique(off.plane.start_s[off.plane.replica == 0]))
    assert np.median(d_on) == pytest.approx(2 * np.median(d_off), rel=0.05)


@pytest.mark.parametrize(("cluster", "text"), [
    ({"cores": 4, "memory_mb": 10, "nodes": 2}, "nodes: give either one pool"),
    ({"nodes": 2, "cores_per_node": 4}, "memory_per_node_mb: missing"),
    ({"nodes": 2, "cores_per_node": 4, "memory_per_node_mb": 10,
      "slowdown_by_others": [1.2, 1.5]}, "[0] must be 1"),
    ({"nodes": 2, "cores_per_node": 4, "memory_per_node_mb": 10, "colocation": False,
      "slowdown_by_others": [1.0, 1.5]}, "needs colocation"),
    ({"cores": 4, "memory_mb": 10, "placement": "pack"}, "placement: give either"),
    ({"nodes": 0, "cores_per_node": 4, "memory_per_node_mb": 10}, "greater than or equal"),
])
def test_bad_clusters_are_one_error_naming_the_field(cluster, text):
    raw = {"name": "x", "duration_s": 5, "cluster": cluster,
           "services": [{"name": "s", "model": "m", "slo_ms": 50,
                         "workload": {"kind": "constant", "rate_rps": 1}}]}
    with pytest.raises(UserError) as exc:
        load_scenario(raw)
    assert "cluster" in str(exc.value) and text in str(exc.value)


def test_projected_ends_only_move_later_than_the_planes_time():
    """What the monitor relies on: an end before the time the planes were advanced to never
    changes; a later one only moves to a time at or after it."""
    from simscale.simulator.colocation import ColocatedPlane, HostLoop

    sc = _busy_node([1.0, 1.6, 2.5], 2, 2)
    seq = np.random.SeedSequence(sc.seed).spawn(len(sc.services))
    inputs = {s.name: service_inputs(s, sc, q, None)
              for s, q in zip(sc.services, seq, strict=True)}
    loop = HostLoop()
    planes = []
    tab = SlowdownTable([1.0, 1.6, 2.5])
    for s in sc.services:
        a, u, _ = inputs[s.name].arrays()
        p = ColocatedPlane(loop, a, u, max_batch_size=2, max_wait_s=0.001)
        for r in range(2):
            p.set_host(r, 0, tab)
            p.add_replica(r, 0.0, [1.0] * 3)
        planes.append(p)
    before: list[np.ndarray] = []
    prev_t = 0.0
    moves = 0
    for t in np.arange(0.05, 2.0, 0.0371).tolist():
        planes[0].advance(t)
        now = [p.end_s.copy() for p in planes]
        for b, n in zip(before, now, strict=False):
            final = b < prev_t
            np.testing.assert_array_equal(b[final], n[final])
            moved = ~final & ~np.isnan(b) & (b != n)
            moves += int(moved.sum())
            assert np.all(n[moved] >= prev_t)
        before, prev_t = now, t
    assert moves > 0 and math.isfinite(prev_t)
