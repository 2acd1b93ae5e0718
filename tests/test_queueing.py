"""The whole simulator against queueing theory.

Each case runs a scenario end to end (``run_scenario``: workload generation, SimPy control
plane, request plane, metrics) with a fixed number of warm replicas, and checks:

- the mean queueing wait against Erlang-C (M/M/c) or Pollaczek-Khinchine (M/D/1, M/G/1): the
  theoretical value lies inside the simulation's 95% confidence interval (batch means over the
  requests in arrival order, first 5% dropped as warm-up), whose half-width is at most 3% of it;
- Little's law: the time series' queue length and in-flight count (sampled at the end of each
  1 s bin, an independent code path) average to arrival rate x mean wait / mean sojourn.

Seeds are fixed, so the tests are deterministic (a 95% interval misses the truth for 1 seed in
20 by design; these seeds are not special).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from simscale.simulator.runner import run_scenario
from simscale.simulator.scenario import load_scenario

MEAN_S = 0.01  # mean service time of every case


def erlang_c_wait_s(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of M/M/c (s)."""
    a = lam / mu
    rho = a / c
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / math.factorial(c) / (1 - rho)
    return tail / (head + tail) / (c * mu - lam)


def pk_wait_s(lam: float, mean_s: float, scv: float) -> float:
    """Mean wait in queue of M/G/1 (Pollaczek-Khinchine), s."""
    rho = lam * mean_s
    return rho * mean_s * (1 + scv) / (2 * (1 - rho))


def batch_means(x: np.ndarray, n_batches: int = 30) -> tuple[float, float]:
    """Mean and 95% half-width by batch means (first 5% dropped)."""
    x = x[len(x) // 20:]
    m = x[: len(x) // n_batches * n_batches].reshape(n_batches, -1).mean(axis=1)
    h = stats.t.ppf(0.975, n_batches - 1) * m.std(ddof=1) / math.sqrt(n_batches)
    return float(m.mean()), float(h)


def simulate(c: int, rho: float, service: dict, n_requests: float, seed: int):
    lam = rho * c / MEAN_S
    sc = load_scenario({
        "name": "queueing", "duration_s": round(n_requests / lam), "seed": seed,
        "services": [{
            "name": "s", "model": "m", "slo_ms": 100, "service_time": service,
            "cold_start_s": 0, "replicas": {"initial": c, "min": c, "max": c},
            "workload": {"kind": "constant", "rate_rps": lam}}],
    })
    res = run_scenario(sc, keep_requests=True)
    return sc, res, lam


def check(sc, res, lam: float, theory_s: float) -> None:
    req = res.requests
    run = res.summary["runs"][0]
    assert run["arrivals"] == run["completed"] + run["dropped"] + run["in_flight_at_end"]
    served = req[req.end_s.notna()]
    wait = (served.start_s - served.arrival_s).to_numpy()
    m, h = batch_means(wait)
    assert h <= 0.03 * theory_s, f"CI half-width {h / theory_s:.1%} of the theory"
    assert abs(m - theory_s) <= h, f"mean wait {m:.6g} s, theory {theory_s:.6g} +- {h:.3g}"
    # Little's law, sampled at bin ends
    D = sc.duration_s
    lam_hat = run["arrivals"] / D
    ts = res.timeseries
    for col, w in (("queue_length", req.start_s - req.arrival_s),
                   ("in_flight", req.end_s - req.arrival_s)):
        w = w.to_numpy()
        w = w[np.isfinite(w)]
        L, hL = batch_means(ts[col].to_numpy().astype(float))
        assert abs(L - lam_hat * w.mean()) <= max(2.5 * hL, 0.01 * L), (col, L,
                                                                         lam_hat * w.mean())


@pytest.mark.slow
@pytest.mark.parametrize("c,rho,n,seed", [(4, 0.5, 1.6e6, 1), (4, 0.7, 1.2e6, 2),
                                          (4, 0.9, 4e6, 3)])
def test_mmc_mean_wait_matches_erlang_c(c, rho, n, seed):
    sc, res, lam = simulate(c, rho, {"dist": "exponential", "mean_s": MEAN_S}, n, seed)
    check(sc, res, lam, erlang_c_wait_s(lam, 1 / MEAN_S, c))


@pytest.mark.slow
def test_md1_mean_wait_matches_pollaczek_khinchine():
    sc, res, lam = simulate(1, 0.8, {"dist": "deterministic", "mean_s": MEAN_S}, 6e5, 4)
    check(sc, res, lam, pk_wait_s(lam, MEAN_S, 0.0))


@pytest.mark.slow
def test_mg1_mean_wait_matches_pollaczek_khinchine():
    sc, res, lam = simulate(1, 0.7, {"dist": "gamma", "mean_s": MEAN_S, "cv": 1.5}, 1.5e6, 5)
    check(sc, res, lam, pk_wait_s(lam, MEAN_S, 1.5**2))


def test_mm1_quick():
    """A short, non-slow sanity check: M/M/1 at 0.5 within 10% of theory."""
    sc, res, lam = simulate(1, 0.5, {"dist": "exponential", "mean_s": MEAN_S}, 2e5, 6)
    run = res.summary["runs"][0]
    theory_ms = erlang_c_wait_s(lam, 1 / MEAN_S, 1) * 1000
    assert run["queue_wait_ms"]["mean"] == pytest.approx(theory_ms, rel=0.1)
    assert run["utilization"] == pytest.approx(0.5, rel=0.02)
