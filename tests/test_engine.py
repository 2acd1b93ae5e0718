"""The request-plane kernel against a textbook SimPy model, and its own invariances.

The textbook model is written the way a SimPy tutorial would: a process per request (and, with
batching or per-replica queues, a process per replica); it shares no code with the kernel.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simscale.simulator.requestplane import (
    DROP_NONE,
    DROP_QUEUE_FULL,
    DROP_TIMEOUT,
    RequestPlane,
)

NAN = math.nan


@pytest.fixture(autouse=True, params=["compiled", "python"])
def kernels(request, monkeypatch):
    """Every test here runs on the compiled loops and on the Python loops (the specification)."""
    monkeypatch.setenv("SIMSCALE_KERNELS", request.param)
    return request.param


# ---------------------------------------------------------------------------- textbook models
def textbook_fifo(arr, unit, c, *, fac=1.0, cap=None, tmo=None):
    """M/G/c FIFO with simpy.Resource: one process per request."""
    env = simpy.Environment()
    n = len(arr)
    start = np.full(n, NAN)
    end = np.full(n, NAN)
    drop = np.zeros(n, dtype=np.int8)
    res = simpy.Resource(env, capacity=c)

    def request(i):
        if cap is not None and len(res.queue) >= cap:
            drop[i] = DROP_QUEUE_FULL
            end[i] = env.now
            return
        with res.request() as req:
            if tmo is None:
                yield req
            else:
                got = yield req | env.timeout(tmo)
                if req not in got:
                    drop[i] = DROP_TIMEOUT
                    end[i] = env.now
                    return
            start[i] = env.now
            yield env.timeout(fac * unit[i])
            end[i] = env.now

    def source():
        for i in range(n):
            yield env.timeout(arr[i] - env.now)
            env.process(request(i))

    env.process(source())
    env.run()
    return start, end, drop


def textbook_batching(arr, unit, fac, *, routing="shared_queue", maxb=1, maxw=0.0, cap=None,
                      route_u=None, idle=None):
    """Replica processes taking batches from a shared queue or from their own queues; a
    process per request routes it at its arrival. ``idle``: ``(gaps_s, overheads_s)`` added
    to a batch by the replica's idle time before it (np.interp)."""
    env = simpy.Environment()
    n = len(arr)
    c = len(fac)
    start = np.full(n, NAN)
    end = np.full(n, NAN)
    bs = np.zeros(n, dtype=np.int32)
    rep = np.full(n, -1, dtype=np.int32)
    drop = np.zeros(n, dtype=np.int8)
    shared = routing == "shared_queue"
    queues = [[] for _ in range(1 if shared else c)]
    wake = [env.event() for _ in queues]
    inserv = [0] * c
    busy = [False] * c
    last_end = [0.0] * c
    rr = [0]

    def outstanding(r):
        return len(queues[r]) + (inserv[r] if busy[r] else 0)

    def choose(i):
        if c == 1:
            return 0
        if routing == "round_robin":
            r = rr[0] % c
            rr[0] += 1
            return r
        if routing == "random":
            return min(int(route_u[i] * c), c - 1)
        if routing == "join_idle_queue":
            idle = [r for r in range(c) if outstanding(r) == 0]
            return idle[0] if idle else min(int(route_u[i] * c), c - 1)
        if routing == "power_of_two":
            j1 = min(int(route_u[i, 0] * c), c - 1)
            j2 = min(int(route_u[i, 1] * (c - 1)), c - 2)
            if j2 >= j1:
                j2 += 1
            return j2 if outstanding(j2) < outstanding(j1) else j1
        best = 0
        for r in range(1, c):
            if outstanding(r) < outstanding(best):
                best = r
        return best

    def request(i):
        q = 0 if shared else choose(i)
        if cap is not None and len(queues[q]) >= cap:
            drop[i] = DROP_QUEUE_FULL
            end[i] = env.now
            return
        queues[q].append(i)
        ev, wake[q] = wake[q], env.event()
        ev.succeed()
        yield env.timeout(0)

    def replica(r):
        q = 0 if shared else r
        while True:
            Q = queues[q]
            if not Q:
                yield wake[q]
                continue
            if len(Q) < maxb and arr[Q[0]] + maxw > env.now:
                yield wake[q] | env.timeout(arr[Q[0]] + maxw - env.now)
                continue
            k = min(maxb, len(Q))
            batch = Q[:k]
            del Q[:k]
            d = fac[r][k] * unit[batch[0]]
            t = env.now
            if idle is not None:
                d += float(np.interp(t - last_end[r], *idle))
            last_end[r] = t + d
            busy[r] = True
            inserv[r] = k
            for i in batch:
                start[i] = t
                bs[i] = k
                rep[i] = r
                end[i] = t + d
            yield env.timeout(d)
            busy[r] = False
            inserv[r] = 0

    def source():
        for i in range(n):
            yield env.timeout(arr[i] - env.now)
            env.process(request(i))

    for r in range(c):
        env.process(replica(r))
    env.process(source())
    env.run(until=arr[-1] + 1000.0)
    return start, end, bs, rep, drop


def kernel(arr, unit, fac, *, routing="shared_queue", maxb=1, maxw=0.0, cap=None, tmo=None,
           route_u=None, cuts=(), general=False, t_end=None, idle=None):
    pl = RequestPlane(arr, unit, routing=routing, max_batch_size=maxb, max_wait_s=maxw,
                      capacity=cap, timeout_s=tmo, route_u=route_u)
    for r, f in enumerate(fac):
        pl.add_replica(r, 0.0, f, idle=idle)
    t_end = arr[-1] + 1000.0 if t_end is None else t_end
    for T in [*sorted(cuts), t_end]:
        if general:
            if T > pl.now:
                pl._advance_general(T)
                pl.now = T
        else:
            pl.advance(T)
    return pl


def poisson(n, rate, seed):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1 / rate, n)), rng.exponential(1.0, n), rng


# ---------------------------------------------------------------------------- cross-checks
@pytest.mark.parametrize("c,rho", [(1, 0.7), (3, 0.9), (8, 0.6)])
def test_fifo_matches_textbook_resource(c, rho):
    mean_s = 0.05
    arr, unit, _ = poisson(3000, rho * c / mean_s, seed=c)
    unit = unit * mean_s
    s_ref, e_ref, _ = textbook_fifo(arr, unit, c)
    pl = kernel(arr, unit, [[1.0, 1.0]] * c, cuts=np.linspace(0, arr[-1], 17)[1:-1])
    np.testing.assert_allclose(pl.start_s, s_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pl.end_s, e_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("cap,tmo", [(5, None), (None, 0.2), (3, 0.1)])
def test_fifo_capacity_timeout_match_textbook(cap, tmo):
    c, mean_s = 2, 0.05
    arr, unit, _ = poisson(3000, 0.95 * c / mean_s, seed=11)
    unit = unit * mean_s
    s_ref, e_ref, d_ref = textbook_fifo(arr, unit, c, cap=cap, tmo=tmo)
    for general in (False, True):
        pl = kernel(arr, unit, [[1.0, 1.0]] * c, cap=cap, tmo=tmo, general=general,
                    cuts=np.linspace(0, arr[-1], 9)[1:-1])
        np.testing.assert_array_equal(pl.drop, d_ref)
        np.testing.assert_allclose(pl.start_s, s_ref, rtol=0, atol=1e-9)
        np.testing.assert_allclose(pl.end_s, e_ref, rtol=0, atol=1e-9)
    assert (d_ref != DROP_NONE).sum() > 10


CASES = [
    ("shared_queue", 4, 0.02, None),
    ("shared_queue", 8, 0.0, 6),
    ("round_robin", 1, 0.0, None),
    ("round_robin", 4, 0.01, None),
    ("least_outstanding", 1, 0.0, None),
    ("least_outstanding", 3, 0.005, 4),
    ("power_of_two", 2, 0.01, None),
    ("random", 4, 0.01, None),
    ("join_idle_queue", 1, 0.0, None),
    ("join_idle_queue", 4, 0.01, 5),
]


#: a serving overhead that grows with the idle time before a batch (s): 0.2 ms back to back,
#: 2 ms after 20 ms idle, 5 ms after 100 ms and beyond
IDLE = ([0.0, 0.02, 0.1], [0.0002, 0.002, 0.005])


@pytest.mark.parametrize("routing,maxb,maxw,c,general", [
    ("shared_queue", 1, 0.0, 1, False),
    ("shared_queue", 4, 0.01, 1, False),
    ("shared_queue", 4, 0.01, 1, True),
    ("round_robin", 2, 0.005, 3, False),
    ("least_outstanding", 1, 0.0, 3, False),
])
def test_idle_overhead_matches_textbook(routing, maxb, maxw, c, general):
    """Each batch pays the overhead of its replica's idle time before it, in every loop."""
    arr, unit, _ = poisson(2000, 40.0 * c, seed=7 + maxb + c)
    unit = unit * 0.01
    fac = [[1.0 + 0.3 * b for b in range(maxb + 1)]] * c
    s_ref, e_ref, b_ref, r_ref, d_ref = textbook_batching(
        arr, unit, fac, routing=routing, maxb=maxb, maxw=maxw, idle=IDLE)
    pl = kernel(arr, unit, fac, routing=routing, maxb=maxb, maxw=maxw, idle=IDLE,
                general=general, cuts=np.linspace(0, arr[-1], 9)[1:-1])
    np.testing.assert_allclose(pl.start_s, s_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pl.end_s, e_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(pl.batch_size, b_ref)
    # the overhead of each batch (time less the draw of its first request): batches after
    # short and after long idle times both occur, so the curve is exercised across its range
    frame = pd.DataFrame({"replica": pl.replica, "start": pl.start_s})
    heads = frame.reset_index().groupby(["replica", "start"])["index"].min().to_numpy()
    extra = (pl.end_s - pl.start_s)[heads] - np.asarray(fac[0])[pl.batch_size[heads]] * unit[heads]
    assert extra.min() >= 0.0002 - 1e-12 and extra.max() <= 0.005 + 1e-12
    assert extra.min() < 0.0005 and extra.max() > 0.004


@pytest.mark.parametrize("routing,maxb,maxw,cap", CASES)
def test_batching_and_routing_match_textbook(routing, maxb, maxw, cap):
    c = 3
    arr, unit, rng = poisson(3000, 150.0, seed=hash(routing) % 1000 + maxb)
    unit = unit * 0.01
    # heterogeneous replicas (one straggler) and a batch-size dependent time
    fac = [[1.0 + 0.5 * b for b in range(maxb + 1)] for _ in range(c)]
    fac[2] = [3 * x for x in fac[2]]
    if routing == "shared_queue":
        fac = [fac[0]] * c  # replica choice among idle ones is not compared for a shared queue
    route_u = None
    if routing in ("random", "join_idle_queue"):
        route_u = rng.random(len(arr))
    elif routing == "power_of_two":
        route_u = rng.random((len(arr), 2))
    s_ref, e_ref, b_ref, r_ref, d_ref = textbook_batching(
        arr, unit, fac, routing=routing, maxb=maxb, maxw=maxw, cap=cap, route_u=route_u)
    pl = kernel(arr, unit, fac, routing=routing, maxb=maxb, maxw=maxw, cap=cap,
                route_u=route_u, cuts=np.linspace(0, arr[-1], 13)[1:-1])
    np.testing.assert_array_equal(pl.drop, d_ref)
    np.testing.assert_allclose(pl.start_s, s_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pl.end_s, e_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(pl.batch_size, b_ref)
    if routing != "shared_queue":
        np.testing.assert_array_equal(pl.replica, r_ref)
    if maxb > 1:
        assert pl.batch_size.max() > 1


# ---------------------------------------------------------------------------- invariances
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    c=st.integers(1, 4),
    routing=st.sampled_from(["shared_queue", "round_robin", "least_outstanding",
                             "power_of_two", "random", "join_idle_queue"]),
    maxb=st.integers(1, 4),
    maxw=st.sampled_from([0.0, 0.003, 0.02]),
    cap=st.one_of(st.none(), st.integers(0, 6)),
    tmo=st.one_of(st.none(), st.sampled_from([0.01, 0.05])),
    n_cuts=st.integers(0, 30),
)
def test_segments_do_not_change_results(seed, c, routing, maxb, maxw, cap, tmo, n_cuts):
    """Advancing in many segments gives exactly what one segment gives (exactness), and the
    fast FIFO path equals the general path."""
    arr, unit, rng = poisson(400, 80.0 * c, seed)
    unit = unit * 0.01
    fac = [[1.0 + 0.2 * b * (r + 1) for b in range(maxb + 1)] for r in range(c)]
    route_u = rng.random((len(arr), 2)) if routing == "power_of_two" else rng.random(len(arr))
    cuts = np.sort(rng.uniform(0, arr[-1], n_cuts))
    kw = dict(routing=routing, maxb=maxb, maxw=maxw, cap=cap, tmo=tmo, route_u=route_u)
    one = kernel(arr, unit, fac, **kw)
    many = kernel(arr, unit, fac, cuts=cuts, **kw)
    gen = kernel(arr, unit, fac, cuts=cuts, general=True, **kw)
    for pl in (many, gen):
        np.testing.assert_array_equal(pl.start_s, one.start_s)
        np.testing.assert_array_equal(pl.end_s, one.end_s)
        np.testing.assert_array_equal(pl.drop, one.drop)
        np.testing.assert_array_equal(pl.replica, one.replica)
        np.testing.assert_array_equal(pl.batch_size, one.batch_size)
    served = ~np.isnan(one.start_s)
    assert np.all(one.start_s[served] >= arr[served])
    assert np.all(one.end_s[served] >= one.start_s[served])
    # conservation: everything is served or dropped once the plane has run long enough
    assert np.all(served | (one.drop != DROP_NONE))


def test_replica_ready_later_serves_queued_requests():
    arr = np.array([0.1, 0.2, 0.3, 5.0])
    unit = np.array([1.0, 1.0, 1.0, 1.0])
    pl = RequestPlane(arr, unit)
    pl.advance(2.0)  # no replica yet: all wait
    assert pl.queue_length() == 3 and np.isnan(pl.start_s).all()
    pl.add_replica(0, 2.0, [1.0, 1.0])
    pl.advance(10.0)
    np.testing.assert_allclose(pl.start_s, [2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(pl.end_s, [3.0, 4.0, 5.0, 6.0])


def test_drain_and_crash():
    arr = np.array([0.0, 0.1, 0.2, 0.3])
    unit = np.ones(4)
    pl = RequestPlane(arr, unit, routing="round_robin")
    pl.add_replica(0, 0.0, [1.0, 1.0])
    pl.add_replica(1, 0.0, [1.0, 1.0])
    pl.advance(0.5)  # r0: 0 and 2, r1: 1 and 3
    assert pl.drain(0, 0.5) is None  # own queue not empty
    n = pl.crash(1, 0.5)
    assert n == 2  # in service (1) and queued (3)
    pl.advance(5.0)
    assert pl.stopped[0] == pytest.approx(2.0)
    np.testing.assert_allclose(pl.end_s, [1.0, 0.5, 2.0, 0.5])
    assert list(pl.drop) == [0, 3, 0, 3]


@pytest.mark.parametrize("maxb", [1, 3])
@pytest.mark.parametrize("routing", ["shared_queue", "round_robin"])
def test_timeouts_while_no_replica(maxb, routing):
    """Requests waiting for a first replica time out at arrival + timeout, not later."""
    arr = np.array([0.1, 0.2, 3.0])
    pl = RequestPlane(arr, np.ones(3), routing=routing, max_batch_size=maxb, timeout_s=1.0)
    pl.advance(0.5)
    assert pl.queue_length() == 2
    pl.advance(1.15)
    assert list(pl.drop) == [DROP_TIMEOUT, 0, 0] and pl.end_s[0] == pytest.approx(1.1)
    pl.advance(2.5)
    pl.add_replica(0, 2.5, [1.0] * (maxb + 1))
    pl.advance(10.0)
    assert list(pl.drop) == [DROP_TIMEOUT, DROP_TIMEOUT, 0]
    np.testing.assert_allclose(pl.end_s, [1.1, 1.2, 4.0])
