"""Observations handed to strategies, checked against a brute-force recomputation from the
run's final per-request arrays and replica records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simscale.simulator.engine import run_strategy
from simscale.simulator.inputs import service_inputs
from simscale.simulator.scenario import load_scenario
from simscale.strategies.base import Decision, Observation


class Recorder:
    """Scales between 1 and 4 replicas by time, and keeps every observation."""

    sync_period_s = 4.0
    latency_window_s = 8.0

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    def decide(self, obs: Observation) -> Decision:
        self.seen.append(obs)
        return Decision(replicas=1 + int(obs.time_s / 10) % 4)


@pytest.mark.parametrize("routing,maxb,lag", [("shared_queue", 1, 0.0),
                                              ("shared_queue", 3, 2.5),
                                              ("least_outstanding", 2, 1.0)])
def test_observations_match_brute_force(routing, maxb, lag):
    sc = load_scenario({
        "name": "obs", "duration_s": 80, "seed": 11,
        "services": [{"name": "s", "model": "m", "slo_ms": 50, "routing": routing,
                      "service_time": {"dist": "gamma", "mean_ms": 30, "cv": 0.7},
                      "batching": {"max_batch_size": maxb, "max_wait_ms": 3},
                      "queue": {"capacity": 40, "timeout_ms": 800},
                      "cold_start_s": 1.5, "replicas": {"initial": 2, "min": 1, "max": 4},
                      "workload": {"kind": "ramp", "from_rps": 20, "to_rps": 120,
                                   "start_s": 0, "end_s": 80}}],
        "faults": {"crash_mtbf_s": 60},
        "metrics": {"lag_s": lag, "history_s": 20},
    })
    svc = sc.services[0]
    inputs = {"s": service_inputs(svc, sc, np.random.SeedSequence(11).spawn(1)[0], None)}
    strat = Recorder()
    run = run_strategy(sc, {"s": strat}, inputs, None)[0]
    pl = run.plane
    arr, st, end, drop = pl.arrival_s, pl.start_s, pl.end_s, pl.drop
    done = drop == 0
    assert len(strat.seen) == 19
    for obs in strat.seen:
        t = obs.time_s - lag
        k1 = int(math.floor(t))
        k0 = max(0, k1 - 20)
        assert obs.metric_lag_s == lag
        want_arr = [np.count_nonzero((arr >= k) & (arr < k + 1)) for k in range(k0, k1)]
        np.testing.assert_array_equal(obs.arrivals_per_s, want_arr)
        # completions known at decision time: a crash later cannot undo them (end < t)
        want_comp = [np.count_nonzero(done & (end >= k) & (end < k + 1)) for k in range(k0, k1)]
        np.testing.assert_array_equal(obs.completions_per_s, want_comp)
        arrived = arr < t
        leave = np.where(np.isnan(st), np.where(drop != 0, end, np.inf), st)
        assert obs.queue_length == np.count_nonzero(arrived & (leave > t) & (drop != 1))
        fin = np.where(np.isnan(end), np.inf, end)
        assert obs.in_flight == np.count_nonzero(arrived & (fin > t) & (drop != 1))
        win = done & (end >= t - 8.0) & (end < t)
        if win.any():
            assert obs.latency_p95_ms == pytest.approx(
                np.percentile((end[win] - arr[win]) * 1000, 95), rel=1e-12)
        # utilization: busy time / serving time of each whole second
        started = ~np.isnan(st)
        s_, e_, w = st[started], end[started], 1.0 / pl.batch_size[started]
        for j, k in enumerate(range(k0, k1)):
            busy = np.sum(np.clip(np.minimum(e_, k + 1) - np.maximum(s_, k), 0, None) * w)
            serve = 0.0
            for r in run.replicas:
                if math.isnan(r.ready_s):
                    continue
                stop = r.stop_s if r.state == "stopped" else np.inf
                serve += max(0.0, min(stop, k + 1) - max(r.ready_s, k))
            want = min(busy / serve, 1.0) if serve > 0 else 0.0
            assert obs.utilization_per_s[j] == pytest.approx(want, abs=1e-9)
