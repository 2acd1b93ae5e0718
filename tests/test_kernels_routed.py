"""The compiled per-replica-queue loop equals the Python one (the specification), exactly.

For every routing policy with one queue per replica, randomized scenarios (hypothesis) drive two
planes through the same control operations between segments (replicas joining, draining,
crashing, resized, also to sizes with noise columns of their own, batching changed; sometimes
no replica accepts, so the router buffers): one
advanced by ``RequestPlane._advance_general`` (the specification), one by
:func:`simscale.simulator._kernels_routed.advance_routed_compiled`. Every per-request result and
every piece of control state must be identical: the kernel is a port with the same events in
the same order and the same floating-point operations in the same order, so equality is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simscale.simulator.requestplane import RequestPlane

pytest.importorskip("numba")

from simscale.simulator._kernels_routed import (  # noqa: E402 - after the numba check
    advance_routed_compiled,
    supports,
    warm_up,
)

ROUTED = ("round_robin", "least_outstanding", "power_of_two", "random", "join_idle_queue")
IDLE = ([0.0, 0.02, 0.1], [0.0002, 0.002, 0.005])
#: noise columns: ``None`` the configured size's (``unit``), ``"a"`` and ``"b"`` two others'
NOISE_KEYS = (None, "a", "b")


def size_noise_of(n: int, rng: np.random.Generator):  # noqa: ANN201 - a callable
    """A plane's ``size_noise`` for ``n`` requests: columns ``"a"`` and ``"b"``, two different
    monotone functions of one uniform per request (as tests/test_kernels.py)."""
    u = rng.random(n)
    cols = {"a": 0.01 + 0.03 * u, "b": -0.02 * np.log1p(-u)}
    return lambda key, lo, hi: cols[key][lo:hi]


def _advance(pl: RequestPlane, T: float, compiled: bool) -> None:
    if T > pl.now:
        if compiled:
            advance_routed_compiled(pl, T)
        else:
            pl._advance_general(T)
        pl.now = T


def _state(pl: RequestPlane) -> tuple:
    return (pl.next_i, {r: list(q) for r, q in pl.rq.items()}, list(pl.queue),
            sorted(pl.free_at.items()), list(pl.stopped.items()), sorted(pl.nserv.items()),
            list(pl.accepting), sorted(pl.draining), getattr(pl.policy, "_next", None),
            pl.queue_length(), pl.in_service())


def _assert_same(a: RequestPlane, b: RequestPlane) -> None:
    for name in ("start_s", "end_s", "drop", "replica", "batch_size", "busy_s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert _state(a) == _state(b)
    assert {r: a.outstanding(r) for r in a.free_at} == {r: b.outstanding(r) for r in b.free_at}


def _planes(routing, arr, unit, rng, **kw: object) -> list[RequestPlane]:
    n = len(arr)
    draws = {"power_of_two": 2, "random": 1, "join_idle_queue": 1}.get(routing, 0)
    ru = None if draws == 0 else (rng.random(n) if draws == 1 else rng.random((n, 2)))
    planes = [RequestPlane(arr, unit, routing=routing, route_u=ru, kernels="python", **kw)
              for _ in range(2)]
    for pl in planes:
        pl.track_busy(int(arr[-1]) + 200)
    return planes


@pytest.mark.parametrize("routing", ROUTED)
@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    maxb=st.integers(1, 5),
    maxw=st.sampled_from([0.0, 0.002, 0.02]),
    cap=st.one_of(st.none(), st.integers(0, 8)),
    tmo=st.one_of(st.none(), st.sampled_from([0.0, 0.005, 0.05, 0.5])),
    load=st.sampled_from([0.5, 0.9, 1.5]),
    initial=st.integers(0, 3),
    ops=st.lists(st.sampled_from(["add", "drain", "crash", "resize", "batching", "none"]),
                 min_size=0, max_size=25),
    offsets=st.booleans(),
    idle=st.booleans(),
    remove_stopped=st.booleans(),
    grid=st.booleans(),
    noise=st.booleans(),
)
def test_compiled_routed_equals_specification(routing, seed, maxb, maxw, cap, tmo, load,
                                              initial, ops, offsets, idle, remove_stopped,
                                              grid, noise):
    """``noise``: replicas join and are resized to sizes with noise columns of their own."""
    rng = np.random.default_rng(seed)
    n = 1500
    if grid:  # every time a multiple of 1/256 s: simultaneous events, ties everywhere
        arr = np.cumsum(rng.integers(0, max(2, round(5.12 / load)), n)) / 256.0
        unit = rng.integers(1, 10, n) / 256.0
        maxw = round(maxw * 256.0) / 256.0
        tmo = None if tmo is None else round(tmo * 256.0) / 256.0
    else:
        arr = np.cumsum(rng.exponential(1.0 / (load * 100.0), n))
        unit = rng.exponential(0.02, n)
    src = size_noise_of(n, np.random.default_rng(seed + 1))
    planes = _planes(routing, arr, unit, rng, max_batch_size=maxb, max_wait_s=maxw,
                     capacity=cap, timeout_s=tmo, size_noise=src)
    width = 6

    def sizes() -> tuple[list[float], list[float] | None, tuple | None, str | None]:
        key = NOISE_KEYS[int(rng.integers(3))] if noise else None
        if grid:
            fac = (1.0 + 0.5 * np.arange(width) * rng.integers(0, 3)).tolist()
            off = (rng.integers(0, 2, width) / 256.0).tolist() if offsets else None
            return fac, off, ([0.0, 0.125], [0.0, 1 / 64]) if idle else None, key
        fac = (1.0 + 0.3 * np.arange(width) * rng.uniform(0.5, 2.0)).tolist()
        off = rng.uniform(0.0, 0.003, width).tolist() if offsets else None
        return fac, off, IDLE if idle else None, key

    next_id = 0
    for _ in range(initial):
        f, o, c, z = sizes()
        for pl in planes:
            pl.add_replica(next_id, 0.0, f, o, c, z)
        next_id += 1
    cuts = np.sort(rng.uniform(0.0, arr[-1], len(ops)))
    if grid:  # control events at times where requests arrive and batches end
        cuts = np.round(cuts * 256.0) / 256.0
    for t, op in zip(cuts, ops, strict=True):
        for pl, compiled in zip(planes, (False, True), strict=True):
            _advance(pl, float(t), compiled)
        _assert_same(*planes)
        if remove_stopped:  # stopped draining replicas leave, as the engine removes them
            for pl in planes:
                for rid in list(pl.stopped):
                    pl.remove(rid)
        live = sorted(planes[0].accepting)
        if op == "add":
            f, o, c, z = sizes()
            for pl in planes:
                pl.add_replica(next_id, float(t), f, o, c, z)
            next_id += 1
        elif op == "drain" and live:  # the last one too: then the router buffers
            rid = live[int(rng.integers(len(live)))]
            stops = [pl.drain(rid, float(t)) for pl in planes]
            assert stops[0] == stops[1]
            if stops[0] is not None and remove_stopped:
                for pl in planes:
                    pl.remove(rid)
        elif op == "crash" and live:
            rid = live[int(rng.integers(len(live)))]
            assert len({pl.crash(rid, float(t)) for pl in planes}) == 1
        elif op == "resize" and live:
            rid = live[int(rng.integers(len(live)))]
            f, o, c, z = sizes()
            for pl in planes:
                pl.set_factors(rid, f, o, c, z)
        elif op == "batching":
            b = int(rng.integers(1, width))
            for pl in planes:
                pl.set_batching(b, maxw)
        _assert_same(*planes)
    for pl, compiled in zip(planes, (False, True), strict=True):
        _advance(pl, float(arr[-1]) + 100.0, compiled)
    _assert_same(*planes)


@pytest.mark.parametrize("routing", ROUTED)
def test_compiled_routed_long_run(routing):
    """Many short segments over a busy run with every feature on, compared at each cut."""
    rng = np.random.default_rng(7)
    n = 20_000
    arr = np.cumsum(rng.exponential(1 / 400, n))
    unit = rng.exponential(0.01, n)
    planes = _planes(routing, arr, unit, rng, max_batch_size=4, max_wait_s=0.005, capacity=5,
                     timeout_s=0.05)
    for pl in planes:
        for r in range(4):
            pl.add_replica(r, 0.0, [0.0, 1.0, 1.3, 1.6, 1.9], idle=IDLE)
    for T in np.arange(0.5, arr[-1] + 10.0, 0.5):
        for pl, compiled in zip(planes, (False, True), strict=True):
            _advance(pl, float(T), compiled)
        _assert_same(*planes)
    assert 0 < (planes[0].drop != 0).sum() < 0.1 * n  # mostly served, some dropped


def test_supports_only_per_replica_policies():
    arr = np.array([0.0, 1.0])
    for routing in ROUTED:
        assert supports(RequestPlane(arr, np.ones(2), routing=routing,
                                     route_u=np.zeros((2, 2)), kernels="python"))
    pl = RequestPlane(arr, np.ones(2), routing="shared_queue", kernels="python")
    assert not supports(pl)
    with pytest.raises(ValueError, match="no compiled loop"):
        advance_routed_compiled(pl, 1.0)


def test_warm_up_reports_compilation_or_cache():
    seconds, compiled = warm_up()
    assert seconds >= 0.0 and isinstance(compiled, bool)


def test_simultaneous_completions_keep_stop_order():
    """Two draining replicas finishing at the same instant: ``stopped`` lists them in event
    order (free time, then replica id), as the specification does."""
    arr = np.zeros(4)
    unit = np.ones(4)
    planes = _planes("least_outstanding", arr, unit, np.random.default_rng(0))
    for pl, compiled in zip(planes, (False, True), strict=True):
        for r in range(2):
            pl.add_replica(r, 0.0, [0.0, 1.0])
        _advance(pl, 0.5, compiled)
        assert pl.drain(0, 0.5) is None and pl.drain(1, 0.5) is None
        _advance(pl, 10.0, compiled)
    assert list(planes[0].stopped.items()) == [(0, 2.0), (1, 2.0)]
    _assert_same(*planes)
