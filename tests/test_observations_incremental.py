"""The incremental :class:`~simscale.simulator.observations.Monitor` against the observation
computed from scratch, field by field, on randomized small scenarios.

Both monitors watch the same run: at each decision the engine's (incremental) monitor and the
reference (:class:`ReferenceMonitor`, the previous implementation, which re-reads the request
arrays every time) observe the same state of the request plane. Counts, histories of arrivals and
completions, queue length, in-flight, per-replica busy fractions and latency percentiles must be
equal exactly. ``utilization_per_s`` is the ratio of busy to serving seconds per bin, and these
may differ in the last bits: the reference sums busy time per bin as differences of cumulative
sums over the requests read together (``busy_cumulative``, which loses about
``t * requests * 1e-16`` s to cancellation), the incremental monitor adds each request's piece
of each bin directly, slab by slab, and adds a bin split between two observations (a lag or
period that is not a whole second) in two parts: different float summation orders of the same
terms. So the busy and serving seconds are compared to :data:`SECONDS_ATOL`, and the ratio to
that relative to the serving time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simscale.simulator import engine
from simscale.simulator.accumulate import _add_busy
from simscale.simulator.engine import run_strategy
from simscale.simulator.inputs import service_inputs
from simscale.simulator.metrics import busy_cumulative
from simscale.simulator.observations import _LatencyWindow
from simscale.simulator.requestplane import DROP_NONE, DROP_QUEUE_FULL
from simscale.simulator.scenario import Scenario, load_scenario
from simscale.simulator.serving import ROUTING_POLICIES, build_observation
from simscale.strategies.base import Decision, Observation

#: busy and serving seconds per bin: the two summation orders (see the module docstring); the
#: reference's cumulative sums lose about ``t * requests * 1e-16`` seconds to cancellation
SECONDS_ATOL = 1e-10


class ReferenceMonitor:
    """The observation as it was computed before the incremental monitor (simscale 0.1.0,
    ``simulator/observations.py``), kept as the reference: bins finalized whole, queue,
    in-flight, latency window and per-replica busy time re-read from the request arrays at each
    observation. Verbatim but for three changes: percentiles by ``np.percentile`` itself; the
    latency scan starts again from the first request when a strategy widens its
    ``latency_window_s`` (it started from where the narrower window had left it); the
    last-second scan (``p_1s``) does not start from the latency scan when the window is shorter
    than a second (it skipped requests). Both scans were wrong only for custom strategies with
    such windows."""

    def __init__(self, sim: Any, scenario: Scenario) -> None:
        """``sim``: the engine's per-service simulation (its plane, records, service, size)."""
        self.sim = sim
        self.lag_s = scenario.metrics.lag_s
        self.history_s = int(scenario.metrics.history_s)
        self.n_bins = int(math.ceil(scenario.duration_s))
        arr = sim.plane.arrival_s  # sorted, >= 0: arrivals per bin [k, k + 1) by bisection
        cuts = np.searchsorted(arr, np.arange(self.n_bins + 1, dtype=np.float64), side="left")
        self.arr_bins = np.diff(cuts).astype(np.float64)
        self.comp_bins = np.zeros(self.n_bins)
        self.busy_bins = np.zeros(self.n_bins)
        self.serve_bins = np.zeros(self.n_bins)
        self.fin = 0
        self.p_hist = 0
        self.p_win = 0  # all requests before it finished before t_obs - latency window
        self.p_1s = 0  # ... before t_obs - 1 s
        self.p_now = 0  # ... before t_obs

    def _pointer(self, p: int, hi: int, bound: float) -> int:
        if hi <= p:
            return p
        done = self.sim.plane.end_s[p:hi] < bound
        if done.all():
            return hi
        return p + int(np.argmin(done))

    def _finalize(self, t_obs: float) -> None:
        new = min(int(math.floor(t_obs)), self.n_bins)
        old = self.fin
        if new <= old:
            return
        pl = self.sim.plane
        arr = pl.arrival_s
        hi = int(np.searchsorted(arr, float(new), side="left"))
        p = self.p_hist
        if hi > p:
            end = pl.end_s[p:hi]
            ok = (pl.drop[p:hi] == DROP_NONE) & (end >= old) & (end < new)
            if ok.any():
                self.comp_bins[old:new] += np.bincount(end[ok].astype(np.int64) - old,
                                                       minlength=new - old)[: new - old]
            st = pl.start_s[p:hi]
            started = ~np.isnan(st)
            if started.all():
                s, e, bs = st, end, pl.batch_size[p:hi]
            elif started.any():
                s, e, bs = st[started], end[started], pl.batch_size[p:hi][started]
            else:
                bs = None
            if bs is not None:
                edges = np.arange(old, new + 1, dtype=np.float64)
                unit = bool(bs.min() == 1 and bs.max() == 1)
                w = None if unit else 1.0 / bs
                cum = busy_cumulative(s, e, w, edges)
                self.busy_bins[old:new] += np.diff(cum)
        self.p_hist = self._pointer(p, hi, float(new))
        # serving time per bin: each ready-or-draining span clipped to the bins, added replica
        # by replica (in record order)
        spans = []
        for rec in self.sim.records:
            if math.isnan(rec.ready_s) or rec.ready_s >= new:
                continue
            stop = rec.stop_s if rec.state == "stopped" else math.inf
            if stop <= old:
                continue
            spans.append((rec.ready_s, stop))
        if spans:
            edges = np.arange(old, new + 1, dtype=np.float64)
            sp = np.asarray(spans)
            cov = np.diff(np.clip(edges, sp[:, :1], sp[:, 1:]), axis=1)
            acc = self.serve_bins[old:new]
            for row in cov:
                acc += row
        self.fin = new

    def observe(self, t_s: float) -> Observation:
        sim = self.sim
        pl = sim.plane
        t_obs = max(t_s - self.lag_s, 0.0)
        self._finalize(t_obs)
        kb1 = self.fin
        kb0 = max(0, kb1 - self.history_s)
        window_s = float(getattr(sim.strategy, "latency_window_s", 60.0) or 60.0)
        hi = int(np.searchsorted(pl.arrival_s, t_obs, side="left"))
        # (fixed here: a window wider than the last one read from the last pointer, which had
        # passed the older completions it now needs)
        if window_s > getattr(self, "last_window_s", window_s):
            self.p_win = 0
        self.last_window_s = window_s
        self.p_win = self._pointer(self.p_win, hi, t_obs - window_s)
        self.p_now = self._pointer(max(self.p_now, self.p_win), hi, t_obs)
        # (fixed here: it started from p_win also when the latency window is shorter than
        # 1 s, and so missed the requests that ended in [t_obs - 1, t_obs - window))
        self.p_1s = self._pointer(max(self.p_1s, self.p_win) if window_s >= 1.0 else self.p_1s,
                                  hi, t_obs - 1.0)
        # queued / in flight at t_obs: only requests not finished before t_obs
        p = self.p_now
        st = pl.start_s[p:hi]
        end = pl.end_s[p:hi]
        drop = pl.drop[p:hi]
        keep = drop != DROP_QUEUE_FULL
        leave = np.where(np.isnan(st), np.where(drop != DROP_NONE, end, np.inf), st)
        qlen = int(np.count_nonzero((leave > t_obs) & keep))
        infl = int(np.count_nonzero(~(end <= t_obs) & keep))
        # latency percentiles of the requests completed in the window
        p = self.p_win
        end = pl.end_s[p:hi]
        comp = (pl.drop[p:hi] == DROP_NONE) & (end >= t_obs - window_s) & (end < t_obs)
        if comp.any():
            lat_ms = (end[comp] - pl.arrival_s[p:hi][comp]) * 1000.0
            p50, p95, p99 = np.percentile(lat_ms, (50, 95, 99)).tolist()
        else:
            p50 = p95 = p99 = math.nan
        # per-replica busy time over the last second
        # per-replica busy fraction over the last second
        ready = [r for r in sim.records if r.state == "ready"]
        per_rep = []
        if ready:
            p = self.p_1s
            st = pl.start_s[p:hi]
            started = ~np.isnan(st)
            s, e = st[started], pl.end_s[p:hi][started]
            w = 1.0 / pl.batch_size[p:hi][started]
            rep = pl.replica[p:hi][started]
            a, b = t_obs - 1.0, t_obs
            ov = np.clip(np.minimum(e, b) - np.maximum(s, a), 0.0, None) * w
            busy_by = np.bincount(rep, weights=ov, minlength=sim._next_rid)
            for rec in ready:
                busy = float(busy_by[rec.rid]) if rec.rid < len(busy_by) else 0.0
                per_rep.append((busy, b - max(a, rec.ready_s)))
        return build_observation(
            t_s=t_s, lag_s=self.lag_s, service=sim.svc.name, slo_ms=sim.svc.slo_ms,
            min_replicas=sim.svc.replicas.min, max_replicas=sim.svc.replicas.max, size=sim.size,
            size_options=sim.options, counts=sim.counts(),
            arrivals_per_s=self.arr_bins[kb0:kb1].copy(),
            completions_per_s=self.comp_bins[kb0:kb1].copy(),
            busy_per_s=self.busy_bins[kb0:kb1], serving_per_s=self.serve_bins[kb0:kb1],
            replica_busy_last_s=per_rep, queue_length=qlen, in_flight=infl,
            latency_window_s=window_s, latency_percentiles_ms=(p50, p95, p99),
            max_wait_ms=sim.max_wait_s * 1000.0)




# ---------------------------------------------------------------------------- the twin run
class Twin:
    """Stands in for the engine's monitor: the incremental one answers, the reference watches
    the same plane at the same moment; every pair is kept."""

    incremental: type = engine.Monitor
    pairs: list[tuple[Observation, Observation]] = []
    seconds: list[tuple[np.ndarray, ...]] = []

    def __init__(self, sim: Any, scenario: Scenario) -> None:
        self.new = Twin.incremental(sim, scenario)
        self.ref = ReferenceMonitor(sim, scenario)

    def observe(self, t_s: float) -> Observation:
        new = self.new.observe(t_s)
        Twin.pairs.append((new, self.ref.observe(t_s)))
        # the busy and serving seconds behind utilization_per_s, of both
        k1 = self.new.fin
        assert k1 == self.ref.fin
        k0 = max(0, k1 - self.new.history_s)
        Twin.seconds.append((self.new.busy_bins[k0:k1].copy(), self.ref.busy_bins[k0:k1].copy(),
                             self.new.serve_bins[k0:k1].copy(),
                             self.ref.serve_bins[k0:k1].copy()))
        return new


class Scaler:
    """Asks for a pseudo-random count each decision; may widen and narrow its latency window
    during the run (the incremental window must then read older completions again)."""

    def __init__(self, period_s: float, window_s: float, widen: bool, seed: int) -> None:
        self.sync_period_s = period_s
        self.latency_window_s = window_s
        self.widen = widen
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def decide(self, obs: Observation) -> Decision:
        self.n += 1
        if self.widen and self.n == 4:
            self.latency_window_s *= 5.0
        if self.widen and self.n == 9:
            self.latency_window_s /= 3.0
        return Decision(replicas=int(self.rng.integers(0, obs.max_replicas + 1)))


def twin_run(sc: Scenario, strategy: Any) -> list[tuple[Observation, Observation, tuple]]:
    """``(incremental, reference, (busy new, busy ref, serving new, serving ref))`` at each
    decision of ``strategy`` on the scenario's one service."""
    svc = sc.services[0]
    inputs = {svc.name: service_inputs(svc, sc, np.random.SeedSequence(sc.seed).spawn(1)[0],
                                       None)}
    Twin.pairs = []
    Twin.seconds = []
    saved = engine.Monitor
    engine.Monitor = Twin
    try:
        run_strategy(sc, {svc.name: strategy}, inputs, None)
    finally:
        engine.Monitor = saved
    return [(n, r, sec) for (n, r), sec in zip(Twin.pairs, Twin.seconds, strict=True)]


def assert_same(new: Observation, ref: Observation, seconds: tuple) -> None:
    busy_new, busy_ref, serve_new, serve_ref = seconds
    for name in Observation.__dataclass_fields__:
        x, y = getattr(new, name), getattr(ref, name)
        where = f"{name} at t = {new.time_s}"
        if name == "utilization_per_s":
            assert x.shape == y.shape == serve_new.shape, where
            np.testing.assert_allclose(busy_new, busy_ref, rtol=0, atol=SECONDS_ATOL,
                                       err_msg=where)
            np.testing.assert_allclose(serve_new, serve_ref, rtol=0, atol=SECONDS_ATOL,
                                       err_msg=where)
            # the ratio of two near-equal sums: as close as they, relative to the serving time
            # (a bin that a replica served for 1e-15 s may have any ratio in either)
            assert np.all(np.abs(x - y) * serve_new <= SECONDS_ATOL), where
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, where
            np.testing.assert_array_equal(x, y, err_msg=where)
        elif isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), where
        else:
            assert type(x) is type(y) and x == y, (where, x, y)


@st.composite
def small_scenarios(draw: st.DrawFn) -> tuple[Scenario, Scaler]:
    low = draw(st.integers(0, 1))
    high = draw(st.integers(max(1, low), 5))
    rate = draw(st.floats(3.0, 150.0))
    workload = draw(st.sampled_from([
        {"kind": "constant", "rate_rps": rate},
        {"kind": "ramp", "from_rps": rate / 10, "to_rps": rate, "start_s": 0, "end_s": 30},
    ]))
    service = {
        "name": "s", "model": "m", "slo_ms": 100,
        "routing": draw(st.sampled_from(sorted(ROUTING_POLICIES))),
        "service_time": {"dist": draw(st.sampled_from(["exponential", "gamma", "deterministic",
                                                       "lognormal"])),
                         "mean_ms": draw(st.sampled_from([4.0, 30.0, 150.0, 900.0])),
                         "cv": draw(st.sampled_from([0.3, 1.0, 2.0]))},
        "batching": {"max_batch_size": draw(st.integers(1, 4)),
                     "max_wait_ms": draw(st.sampled_from([0.0, 3.0, 40.0]))},
        "queue": {"capacity": draw(st.none() | st.integers(0, 25)),
                  "timeout_ms": draw(st.none() | st.sampled_from([150.0, 2000.0]))},
        "cold_start_s": draw(st.sampled_from([0.0, 0.6, 2.5])),
        "replicas": {"initial": draw(st.integers(low, high)), "min": low, "max": high},
        "workload": workload,
    }
    faults = draw(st.none() | st.fixed_dictionaries({
        "crash_mtbf_s": st.sampled_from([6.0, 25.0]),
        "straggler_fraction": st.sampled_from([0.0, 0.5]),
        "straggler_slowdown": st.just(3.0)}))
    sc = load_scenario({
        "name": "twin", "duration_s": draw(st.integers(8, 40)), "seed": draw(st.integers(0, 999)),
        "services": [service], **({"faults": faults} if faults else {}),
        "metrics": {"lag_s": draw(st.sampled_from([0.0, 0.5, 1.0, 2.5, 0.37])),
                    "history_s": draw(st.integers(10, 25))},
    })
    strategy = Scaler(draw(st.sampled_from([0.4, 1.0, 2.0, 3.7, 5.0])),
                      draw(st.sampled_from([0.5, 3.0, 8.0, 60.0])), draw(st.booleans()),
                      draw(st.integers(0, 999)))
    return sc, strategy


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_incremental_observations_equal_the_reference(case: tuple[Scenario, Scaler]) -> None:
    sc, strategy = case
    pairs = twin_run(sc, strategy)
    assert pairs
    for new, ref, seconds in pairs:
        assert_same(new, ref, seconds)


@pytest.mark.parametrize("routing", ["shared_queue", "least_outstanding"])
def test_incremental_observations_long_busy_run(routing: str) -> None:
    """Three minutes of overload with batching, crashes and a lag that is not a whole second:
    queues, drops, long batches over bin edges, a latency window that wraps its buffers."""
    sc = load_scenario({
        "name": "twin_long", "duration_s": 180, "seed": 5,
        "services": [{"name": "s", "model": "m", "slo_ms": 100, "routing": routing,
                      "service_time": {"dist": "gamma", "mean_ms": 80, "cv": 1.5},
                      "batching": {"max_batch_size": 3, "max_wait_ms": 10},
                      "queue": {"capacity": 60, "timeout_ms": 3000},
                      "cold_start_s": 1.0, "replicas": {"initial": 2, "min": 1, "max": 6},
                      "workload": {"kind": "ramp", "from_rps": 20, "to_rps": 90,
                                   "start_s": 0, "end_s": 180}}],
        "faults": {"crash_mtbf_s": 40},
        "metrics": {"lag_s": 1.3, "history_s": 60},
    })
    pairs = twin_run(sc, Scaler(2.0, 30.0, True, 1))
    assert len(pairs) == 89
    for new, ref, seconds in pairs:
        assert_same(new, ref, seconds)


# ---------------------------------------------------------------------------- the pieces
@settings(max_examples=200)
@given(st.lists(st.tuples(st.floats(0, 20), st.floats(0, 6), st.sampled_from([1, 2, 3, 5])),
                min_size=1, max_size=40), st.floats(0, 3))
def test_add_busy_is_each_piece_of_each_bin(spans: list, a: float) -> None:
    s = np.array([max(x, a) for x, _, _ in spans])
    e = s + np.array([d for _, d, _ in spans])
    keep = e > s
    s, e = s[keep], e[keep]
    w = 1.0 / np.array([b for _, _, b in spans], dtype=np.float64)[keep]
    if not len(s):
        return
    bins = np.zeros(40)
    _add_busy(bins, s, e, w, int(a))
    k = np.arange(40.0)
    want = (np.clip(np.minimum(e[:, None], k + 1) - np.maximum(s[:, None], k), 0, None)
            * w[:, None]).sum(axis=0)
    np.testing.assert_allclose(bins, want, rtol=1e-12, atol=1e-12)
    # the reference's cumulative sums agree too
    np.testing.assert_allclose(np.diff(busy_cumulative(s, e, w, np.arange(41.0))), want,
                               rtol=1e-9, atol=1e-9)


@settings(max_examples=100)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.5, 2.0, 7.0]), st.sampled_from([1, 40, 900]))
def test_latency_window_holds_the_completions_since(seed: int, step: float, per_s: int) -> None:
    """Slabs of completions pushed in time order; :meth:`since` returns exactly those ending at
    or after the window start, across buffer growth and compaction."""
    rng = np.random.default_rng(seed)
    win = _LatencyWindow()
    all_end: list[np.ndarray] = []
    all_ms: list[np.ndarray] = []
    a = 0.0
    for _ in range(60):
        b = a + step
        n = int(rng.poisson(per_s * step))
        end = rng.uniform(a, b, n)
        ms = rng.gamma(2.0, 10.0, n)
        win.push(end, ms, a, b)
        all_end.append(end)
        all_ms.append(ms)
        lo = b - float(rng.choice([1.0, 5.0, 12.0])) if rng.random() < 0.3 else b - 12.0
        lo = max(lo, win.kept_from)
        got = win.since(lo)
        ends, lats = np.concatenate(all_end), np.concatenate(all_ms)
        want = lats[(ends >= lo) & (ends < b)]
        np.testing.assert_array_equal(np.sort(got), np.sort(want))
        a = b


# ---------------------------------------------------------------------------- compiled twin
class KernelTwin:
    """The monitor on compiled loops answers, the numpy one watches the same plane."""

    pairs: list[tuple[Observation, Observation]] = []

    def __init__(self, sim: Any, scenario: Scenario) -> None:
        self.new = Twin.incremental(sim, scenario, kernels="compiled")
        self.ref = Twin.incremental(sim, scenario, kernels="python")

    def observe(self, t_s: float) -> Observation:
        new = self.new.observe(t_s)
        KernelTwin.pairs.append((new, self.ref.observe(t_s)))
        return new


def assert_identical(new: Observation, ref: Observation) -> None:
    for name in Observation.__dataclass_fields__:
        x, y = getattr(new, name), getattr(ref, name)
        where = f"{name} at t = {new.time_s}"
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), where
        elif isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), where
        else:
            assert type(x) is type(y) and x == y, (where, x, y)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_compiled_monitor_is_identical_to_numpy(case: tuple[Scenario, Scaler]) -> None:
    """The compiled loops give the numpy monitor's observations bit for bit."""
    pytest.importorskip("numba")
    sc, strategy = case
    svc = sc.services[0]
    inputs = {svc.name: service_inputs(svc, sc, np.random.SeedSequence(sc.seed).spawn(1)[0],
                                       None)}
    KernelTwin.pairs = []
    saved = engine.Monitor
    engine.Monitor = KernelTwin
    try:
        run_strategy(sc, {svc.name: strategy}, inputs, None)
    finally:
        engine.Monitor = saved
    assert KernelTwin.pairs
    for new, ref in KernelTwin.pairs:
        assert_identical(new, ref)


@pytest.mark.parametrize("period_s,window_s", [(2.0, 60.0), (15.0, 60.0), (3.7, 11.0)])
def test_compiled_monitor_long_busy_run_is_identical(period_s: float, window_s: float) -> None:
    """A window of tens of thousands of latencies (the compiled queue grows and moves, its bands
    are rebuilt as the load ramps up and the latencies with it), with batching, crashes, and a
    window that is not a whole number of periods (slabs leave it in parts)."""
    pytest.importorskip("numba")
    sc = load_scenario({
        "name": "twin_busy", "duration_s": 150, "seed": 9,
        "services": [{"name": "s", "model": "m", "slo_ms": 100, "routing": "shared_queue",
                      "service_time": {"dist": "lognormal", "mean_ms": 12, "cv": 0.6},
                      "batching": {"max_batch_size": 4, "max_wait_ms": 3},
                      "queue": {"capacity": 400, "timeout_ms": 2000},
                      "cold_start_s": 2.0, "replicas": {"initial": 2, "min": 1, "max": 8},
                      "workload": {"kind": "ramp", "from_rps": 50, "to_rps": 600,
                                   "start_s": 0, "end_s": 150}}],
        "faults": {"crash_mtbf_s": 60},
        "metrics": {"lag_s": 0.7, "history_s": 30},
    })
    svc = sc.services[0]
    inputs = {svc.name: service_inputs(svc, sc, np.random.SeedSequence(sc.seed).spawn(1)[0],
                                       None)}
    KernelTwin.pairs = []
    saved = engine.Monitor
    engine.Monitor = KernelTwin
    try:
        run_strategy(sc, {svc.name: Scaler(period_s, window_s, False, 2)}, inputs, None)
    finally:
        engine.Monitor = saved
    assert len(KernelTwin.pairs) == int(150 / period_s - 1e-9)
    assert max(int(len(inputs["s"].arrival_s)), 0) > 40_000
    for new, ref in KernelTwin.pairs:
        assert_identical(new, ref)


# ---------------------------------------------------------------------------- lazy percentiles
class Reader(Scaler):
    """A :class:`Scaler` that reads the latency percentiles in ``decide`` at two decisions of
    three: the compiled monitor keeps its bands up to date while they are read, lets them go at
    a decision that does not read them and rebuilds them at the next that does; the observations
    not read in ``decide`` are read later, from their snapshots."""

    def decide(self, obs: Observation) -> Decision:
        if self.n % 3 != 2:
            self.read = obs.latency_p95_ms  # now, from the bands
        return super().decide(obs)


def test_lazy_latency_is_read_the_same_now_or_later() -> None:
    """Percentiles read in ``decide`` (from the compiled bands) and read after the run (from
    the snapshots) are the numpy monitor's, bit for bit."""
    pytest.importorskip("numba")
    sc = load_scenario({
        "name": "twin_read", "duration_s": 120, "seed": 4,
        "services": [{"name": "s", "model": "m", "slo_ms": 100, "routing": "shared_queue",
                      "service_time": {"dist": "lognormal", "mean_ms": 12, "cv": 0.6},
                      "batching": {"max_batch_size": 4, "max_wait_ms": 3},
                      "queue": {"capacity": 400, "timeout_ms": 2000},
                      "cold_start_s": 2.0, "replicas": {"initial": 2, "min": 1, "max": 8},
                      "workload": {"kind": "ramp", "from_rps": 50, "to_rps": 500,
                                   "start_s": 0, "end_s": 120}}],
        "faults": {"crash_mtbf_s": 60},
        "metrics": {"lag_s": 0.7, "history_s": 30},
    })
    svc = sc.services[0]
    inputs = {svc.name: service_inputs(svc, sc, np.random.SeedSequence(sc.seed).spawn(1)[0],
                                       None)}
    for period_s, window_s, widen in ((2.0, 60.0, False), (3.7, 11.0, True), (15.0, 60.0, False)):
        KernelTwin.pairs = []
        saved = engine.Monitor
        engine.Monitor = KernelTwin
        try:
            run_strategy(sc, {svc.name: Reader(period_s, window_s, widen, 3)}, inputs, None)
        finally:
            engine.Monitor = saved
        assert len(KernelTwin.pairs) > 5
        for new, ref in KernelTwin.pairs:
            assert_identical(new, ref)


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_lazy_latency_small_scenarios(case: tuple[Scenario, Scaler]) -> None:
    """As above on randomized small scenarios (empty windows, widened windows, drops)."""
    pytest.importorskip("numba")
    sc, scaler = case
    svc = sc.services[0]
    inputs = {svc.name: service_inputs(svc, sc, np.random.SeedSequence(sc.seed).spawn(1)[0],
                                       None)}
    reader = Reader(scaler.sync_period_s, scaler.latency_window_s, scaler.widen, 7)
    KernelTwin.pairs = []
    saved = engine.Monitor
    engine.Monitor = KernelTwin
    try:
        run_strategy(sc, {svc.name: reader}, inputs, None)
    finally:
        engine.Monitor = saved
    for new, ref in KernelTwin.pairs:
        assert_identical(new, ref)


def test_lazy_observation_is_the_same_value() -> None:
    """An observation with lazy percentiles computes them once, on first read, and is then the
    eager observation in every way a strategy or a pickle sees."""
    import copy
    import dataclasses
    import pickle

    from simscale.strategies.base import ReplicaCounts, SizeOption

    size = SizeOption("cpu", 1, 2.0, 0.5, 1.1, 0.3, 4, 0.1, 3.0)
    values: dict[str, Any] = dict(
        time_s=30.0, service="s", slo_ms=100.0, metric_lag_s=1.0,
        arrivals_per_s=np.arange(3.0), completions_per_s=np.arange(3.0),
        utilization_per_s=np.full(3, 0.5), utilization_per_replica=(0.5,), queue_length=2,
        in_flight=3, latency_window_s=60.0, replicas=ReplicaCounts(ready=1), min_replicas=1,
        max_replicas=4, current_size=size, size_options=(size,), max_wait_ms=0.0)
    eager = Observation(latency_p50_ms=1.0, latency_p95_ms=2.0, latency_p99_ms=math.nan,
                        **values)
    calls: list[int] = []

    def latency() -> tuple[float, float, float]:
        calls.append(1)
        return 1.0, 2.0, math.nan

    lazy = Observation.with_lazy_latency(latency, values)
    assert not calls
    assert lazy.rate_rps(2) == eager.rate_rps(2) and lazy.queue_length == 2
    assert not calls
    assert lazy.latency_p95_ms == 2.0 and len(calls) == 1
    assert (lazy.latency_p50_ms, lazy.latency_p95_ms) == (1.0, 2.0) and len(calls) == 1
    assert math.isnan(lazy.latency_p99_ms)
    assert repr(lazy) == repr(eager)
    twin = pickle.loads(pickle.dumps(Observation.with_lazy_latency(latency, values)))
    assert "_lazy_fields" not in vars(twin) and repr(twin) == repr(eager)
    assert repr(copy.copy(Observation.with_lazy_latency(latency, values))) == repr(eager)
    other = Observation.with_lazy_latency(latency, values)
    assert repr(dataclasses.replace(other, queue_length=2)) == repr(eager)
    with pytest.raises(AttributeError):
        _ = lazy.no_such_field
    with pytest.raises(dataclasses.FrozenInstanceError):
        lazy.latency_p50_ms = 3.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="in_flight"):
        Observation.with_lazy_latency(latency, {k: v for k, v in values.items()
                                                if k != "in_flight"})
