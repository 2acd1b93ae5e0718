"""The compiled request plane equals the Python one (the specification), request by request.

Randomized scenarios (hypothesis) drive two planes, one per kind of loop, through the same
control operations between segments (replicas joining, draining, crashing, resized, also to
sizes with noise columns of their own, batching changed), and every per-request result and
every piece of control state must be identical:
the kernels are ports with the same floating-point operations in the same order, so equality is
exact, not approximate.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simscale.simulator.requestplane import RequestPlane, resolve_kernels

pytest.importorskip("numba")

IDLE = ([0.0, 0.02, 0.1], [0.0002, 0.002, 0.005])
#: the noise columns of two other replica sizes (keys ``"a"``, ``"b"``), as a plane's
#: ``size_noise`` gives them: every request's draw for that size
NOISE_KEYS = (None, "a", "b")


def size_noise_of(n: int, rng: np.random.Generator):  # noqa: ANN201 - a callable
    """A ``size_noise`` for planes of ``n`` requests: columns ``"a"`` and ``"b"``, each a
    different (monotone) function of one uniform per request, and a record of its calls."""
    u = rng.random(n)
    cols = {"a": 0.01 + 0.03 * u, "b": -0.02 * np.log1p(-u)}
    calls: list[tuple] = []

    def size_noise(key, lo: int, hi: int) -> np.ndarray:
        calls.append((key, lo, hi))
        return cols[key][lo:hi]

    size_noise.calls = calls
    return size_noise


def assert_busy_of_requests(pl: RequestPlane) -> None:
    """The plane's busy time per second is every started request's time in service in that
    second over its batch's size (crashes cut), up to the summation's rounding."""
    want = np.zeros(len(pl.busy_s))
    s, e, b = pl.start_s, pl.end_s, pl.batch_size
    on = ~np.isnan(s)
    for s0, e0, b0 in zip(s[on].tolist(), e[on].tolist(), b[on].tolist(), strict=True):
        k = int(s0)
        while k < len(want) and e0 > s0:
            cut = k + 1.0
            want[k] += (min(e0, cut) - s0) / b0
            s0 = cut
            k += 1
    np.testing.assert_allclose(pl.busy_s, want, rtol=0, atol=1e-9)
    assert (pl.busy_s > -1e-9).all()


def _state(pl: RequestPlane) -> tuple:
    return (pl.next_i, pl.queue_length(), pl.in_service(), sorted(pl.free_at.items()),
            sorted(pl.stopped.items()), sorted(pl.accepting))


def _assert_same(a: RequestPlane, b: RequestPlane) -> None:
    for name in ("start_s", "end_s", "drop", "replica", "batch_size", "busy_s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert_busy_of_requests(a)
    assert _state(a) == _state(b)
    assert {r: a.outstanding(r) for r in a.free_at} == {r: b.outstanding(r) for r in b.free_at}


@settings(max_examples=150, deadline=None)
# found by hypothesis: a common non-zero offset after a drain (the Python fast path summed
# offset and draw in another order), and batches of 1 after larger ones (requests left queued
# started before the segment on the Python fast path)
@example(seed=0, maxb=1, maxw=0.0, cap=None, tmo=None, load=0.5, ops=["drain"], offsets=True,
         idle=False, noise=False)
@example(seed=0, maxb=1, maxw=0.02, cap=None, tmo=None, load=0.5,
         ops=["add", "batching", "batching", "batching", "add", "add"], offsets=False,
         idle=False, noise=False)
# a batch of two still in service when the batch size went back to one: the Python fast
# path counted every replica's batch in service as one
@example(seed=22327, maxb=1, maxw=0.0, cap=None, tmo=None, load=0.5,
         ops=["add", "add", *["drain"] * 6, "batching", "batching", "add"], offsets=False,
         idle=False, noise=False)
# replicas of three sizes, each with its noise column, resized back and forth
@example(seed=5, maxb=1, maxw=0.0, cap=None, tmo=None, load=0.9,
         ops=["resize", "add", "resize", "resize", "none", "resize", "drain", "resize"],
         offsets=False, idle=False, noise=True)
# overload with batches of one (the compiled loop without events): hundreds queued at once,
# the ring buffer grown several times
@example(seed=2, maxb=1, maxw=0.0, cap=None, tmo=None, load=1.5,
         ops=["drain", "none", "none", "none", "none", "add"], offsets=False, idle=True,
         noise=False)
@given(
    seed=st.integers(0, 100_000),
    maxb=st.integers(1, 5),
    maxw=st.sampled_from([0.0, 0.002, 0.02]),
    cap=st.one_of(st.none(), st.integers(0, 8)),
    tmo=st.one_of(st.none(), st.sampled_from([0.005, 0.05, 0.5])),
    load=st.sampled_from([0.5, 0.9, 1.5]),
    ops=st.lists(st.sampled_from(["add", "drain", "crash", "resize", "batching", "none"]),
                 min_size=0, max_size=25),
    offsets=st.booleans(),
    idle=st.booleans(),
    noise=st.booleans(),
)
def test_compiled_shared_queue_equals_specification(seed, maxb, maxw, cap, tmo, load, ops,
                                                    offsets, idle, noise):
    """``noise``: replicas join and are resized to sizes with noise columns of their own
    (the unbatched fast path then holds only while the accepting replicas share one)."""
    rng = np.random.default_rng(seed)
    n = 1500
    arr = np.cumsum(rng.exponential(1.0 / (load * 100.0), n))
    unit = rng.exponential(0.02, n)
    src = size_noise_of(n, np.random.default_rng(seed + 1))
    planes = [RequestPlane(arr, unit, max_batch_size=maxb, max_wait_s=maxw, capacity=cap,
                           timeout_s=tmo, kernels=k, size_noise=src)
              for k in ("python", "compiled")]
    for pl in planes:
        pl.track_busy(int(arr[-1]) + 200)
    width = 6

    def sizes() -> tuple[list[float], list[float] | None, tuple | None, str | None]:
        fac = (1.0 + 0.3 * np.arange(width) * rng.uniform(0.5, 2.0)).tolist()
        off = rng.uniform(0.0, 0.003, width).tolist() if offsets else None
        key = NOISE_KEYS[int(rng.integers(3))] if noise else None
        return fac, off, IDLE if idle else None, key

    next_id = 0
    for _ in range(2):
        f, o, c, z = sizes()
        for pl in planes:
            pl.add_replica(next_id, 0.0, f, o, c, z)
        next_id += 1
    cuts = np.sort(rng.uniform(0.0, arr[-1], len(ops)))
    for t, op in zip(cuts, ops, strict=True):
        for pl in planes:
            pl.advance(t)
        for pl in planes:  # stopped draining replicas leave, as the engine removes them
            for rid in list(pl.stopped):
                pl.remove(rid)
        live = sorted(planes[0].accepting)
        if op == "add" or not live:
            f, o, c, z = sizes()
            for pl in planes:
                pl.add_replica(next_id, t, f, o, c, z)
            next_id += 1
        elif op == "drain" and len(live) > 1:
            rid = live[int(rng.integers(len(live)))]
            stops = [pl.drain(rid, t) for pl in planes]
            assert stops[0] == stops[1]
            if stops[0] is not None:
                for pl in planes:
                    pl.remove(rid)
        elif op == "crash" and len(live) > 1:
            rid = live[int(rng.integers(len(live)))]
            assert len({pl.crash(rid, t) for pl in planes}) == 1
        elif op == "resize":
            rid = live[int(rng.integers(len(live)))]
            f, o, c, z = sizes()
            for pl in planes:
                pl.set_factors(rid, f, o, c, z)
        elif op == "batching":
            b = int(rng.integers(1, width))
            for pl in planes:
                pl.set_batching(b, maxw)
        _assert_same(*planes)
    for pl in planes:
        pl.advance(arr[-1] + 100.0)
    _assert_same(*planes)
    # each plane made each column it used once, for every request (whole arrays)
    assert all((lo, hi) == (0, n) for _, lo, hi in src.calls)
    assert len(src.calls) == 2 * len(set(src.calls))


def test_kernels_setting(monkeypatch):
    """``kernels`` picks the loops; the environment variable sets the default; bad names fail."""
    monkeypatch.setenv("SIMSCALE_KERNELS", "python")
    assert resolve_kernels() == "python"
    assert resolve_kernels("compiled") == "compiled"
    monkeypatch.setenv("SIMSCALE_KERNELS", "")
    assert resolve_kernels() == "compiled"
    with pytest.raises(ValueError, match="kernels must be one of"):
        resolve_kernels("fast")


def test_warm_up_reports_compilation_or_cache():
    from simscale.simulator import _kernels

    seconds, compiled = _kernels.warm_up()
    assert seconds >= 0.0 and isinstance(compiled, bool)


@pytest.mark.parametrize("cap", [0, 1, 3, None])
@pytest.mark.parametrize("steps", [1, 7, 300])
def test_requests_that_cannot_start_meet_the_capacity_before_their_timeout(cap, steps):
    """With no replica to take them (none yet, or all busy past the segment), new arrivals
    are refused when the queue is full and time out otherwise, whatever the segments: the
    Python fast path once timed them out before checking the capacity, so one long segment
    gave timeouts where short ones gave ``queue_full`` (found by the streaming property
    test). Both loops, any number of segments, the same outcome."""
    rng = np.random.default_rng(3)
    arr = np.cumsum(rng.exponential(1.0 / 80.0, 2400))
    unit = rng.exponential(0.02, 2400)
    outs = []
    for kernels in ("python", "compiled"):
        pl = RequestPlane(arr, unit, capacity=cap, timeout_s=0.05, kernels=kernels)
        for t in np.linspace(0.0, arr[-1] / 2, steps + 1)[1:]:
            pl.advance(float(t))
        pl.add_replica(0, pl.now, [1.0, 1.0], None, None)
        pl.advance(arr[-1] + 10.0)
        outs.append(pl)
        full = int(np.sum(pl.drop == 1))
        timed_out = int(np.sum(pl.drop == 2))
        if cap is None:
            assert full == 0 and timed_out > 1000
        elif cap == 0:
            assert full > 1000 and timed_out == 0  # none may wait, so none times out
    _assert_same(*outs)


@settings(max_examples=200, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 12), st.floats(0.0, 1e4)), max_size=400),
       n_groups=st.integers(1, 14), q=st.sampled_from([0.0, 0.5, 0.95, 0.99, 1.0]),
       rounded=st.booleans())
def test_grouped_quantile_compiled_equals_numpy_and_np_quantile(data, n_groups, q, rounded):
    """The per-bin latency p95 of the time series: the compiled selection gives the same
    numbers as the numpy version (bit for bit), and both are ``np.quantile`` of each group
    (ties included: ``rounded`` makes many equal values)."""
    from simscale.simulator.metrics import grouped_quantile

    groups = np.asarray([g % n_groups for g, _ in data], dtype=np.int64)
    values = np.asarray([round(v) if rounded else v for _, v in data], dtype=np.float64)
    got = grouped_quantile(groups, values, q, n_groups)
    np.testing.assert_array_equal(grouped_quantile(groups, values, q, n_groups, compiled=True),
                                  got)
    for k in range(n_groups):
        mine = values[groups == k]
        if len(mine) == 0:
            assert np.isnan(got[k])
        else:
            assert got[k] == pytest.approx(float(np.quantile(mine, q)), rel=1e-12, abs=1e-12)
