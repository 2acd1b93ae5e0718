"""Queueing formulas, vectorised over numpy arrays, and the cheapest-configuration solver.

Notation: ``c`` servers (replicas), arrival rate ``lam`` (requests/s), mean service time
``s`` (s), offered load ``a = lam * s`` (erlangs), ``scv`` the squared coefficient of variation of
the service time (1 for exponential, 0 for deterministic).

- Erlang B and C by the stable recursion ``B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1))`` and
  ``C = c B / (c - a (1 - B))`` (Kleinrock, *Queueing Systems* vol. 1, §3.5).
- M/M/c mean wait ``Wq = C / (c/s - lam)``.
- M/G/c by Allen-Cunneen: ``Wq ~= C / (c/s - lam) * (ca2 + cs2) / 2`` with Poisson arrivals
  (``ca2 = 1``); exact for M/G/1 (Pollaczek-Khinchine) and for M/M/c.
- Waiting-time tail: ``P(W > t) ~= C exp(-theta t)`` with ``theta = (c/s - lam) * 2 / (1 + scv)``
  (exact for M/M/c); the service time is modelled as a gamma distribution with the profiled
  mean and scv.
- Batching: a replica that serves batches of ``b`` takes ``t(b) = (alpha + beta b) * mean_factor``
  and so serves ``b / t(b)`` requests/s; a request then waits like a customer of an M/G/c queue
  with that throughput and is served in ``t(b)``. A dynamic batcher with limit ``B`` uses the
  batch size ``b <= B`` that is best at the load, so the predicted latency for limit ``B`` is the
  minimum over ``b <= B`` (an approximation; it is monotone in load and in ``c``).

The predicted latency percentile is ``W_p + S_p`` (wait quantile plus service quantile): an upper
estimate of the quantile of ``W + S``. :func:`slo_attainment` gives ``P(W + S <= slo)`` itself by
numerical convolution.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from simscale.strategies.base import SizeOption


def erlang_b(c: np.ndarray | int, a: np.ndarray | float) -> np.ndarray:
    """Erlang B blocking probability of ``c`` servers offered ``a`` erlangs (broadcast)."""
    c_arr, a_arr = np.broadcast_arrays(np.asarray(c, dtype=int), np.asarray(a, dtype=float))
    if a_arr.size and np.all(a_arr == a_arr.flat[0]):  # one load: one scalar recursion
        table = _erlang_b_upto(int(c_arr.max(initial=0)), float(a_arr.flat[0]))
        return table[c_arr]
    out = np.ones(c_arr.shape)
    b = np.ones(c_arr.shape)
    for k in range(1, int(c_arr.max(initial=0)) + 1):
        b = a_arr * b / (k + a_arr * b)
        at = c_arr == k
        out[at] = b[at]
    return out


def _erlang_b_upto(n: int, a: float) -> np.ndarray:
    """``B(k, a)`` for ``k = 0..n``."""
    out = np.empty(n + 1)
    b = 1.0
    out[0] = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
        out[k] = b
    return out


def erlang_c(c: np.ndarray | int, a: np.ndarray | float) -> np.ndarray:
    """Erlang C: probability that an arrival waits in an M/M/c queue (1 when ``a >= c``)."""
    if np.ndim(a) == 0:  # one load (the solver's case): the same operations, not broadcast
        c_arr = np.asarray(c, dtype=float)
        a_f = float(a)
        c_int = c_arr.astype(int)
        b = _erlang_b_upto(int(c_int.max(initial=0)), a_f)[c_int]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = c_arr * b / (c_arr - a_f * (1.0 - b))
        return np.where(a_f >= c_arr, 1.0, np.clip(out, 0.0, 1.0))
    c_arr, a_arr = np.broadcast_arrays(np.asarray(c, dtype=float), np.asarray(a, dtype=float))
    b = erlang_b(c_arr.astype(int), a_arr)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = c_arr * b / (c_arr - a_arr * (1.0 - b))
    return np.where(a_arr >= c_arr, 1.0, np.clip(out, 0.0, 1.0))


def mmc_mean_wait_s(c: np.ndarray | int, lam_rps: np.ndarray | float,
                    service_s: np.ndarray | float) -> np.ndarray:
    """Mean time in queue (s) of an M/M/c queue; ``inf`` when unstable."""
    return allen_cunneen_mean_wait_s(c, lam_rps, service_s, 1.0)


def allen_cunneen_mean_wait_s(c: np.ndarray | int, lam_rps: np.ndarray | float,
                              service_s: np.ndarray | float,
                              scv: np.ndarray | float) -> np.ndarray:
    """Allen-Cunneen mean time in queue (s) of an M/G/c queue; ``inf`` when unstable."""
    c_arr = np.asarray(c, dtype=float)
    lam = np.asarray(lam_rps, dtype=float)
    s = np.asarray(service_s, dtype=float)
    a = lam * s
    prob_wait = erlang_c(c_arr, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = prob_wait / (c_arr / s - lam) * (1.0 + np.asarray(scv, dtype=float)) / 2.0
    return np.where(a >= c_arr, np.inf, np.where(lam > 0, wait, 0.0))


def wait_quantile_s(c: np.ndarray | int, lam_rps: np.ndarray | float,
                    service_s: np.ndarray | float, scv: np.ndarray | float,
                    p: float) -> np.ndarray:
    """The ``p``-quantile of the time in queue (s): ``P(W > t) = C exp(-theta t)``."""
    c_arr = np.asarray(c, dtype=float)
    lam = np.asarray(lam_rps, dtype=float)
    s = np.asarray(service_s, dtype=float)
    a = lam * s
    prob_wait = erlang_c(c_arr, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = (c_arr / s - lam) * 2.0 / (1.0 + np.asarray(scv, dtype=float))
        q = np.log(prob_wait / (1.0 - p)) / theta
    q = np.where(prob_wait <= 1.0 - p, 0.0, q)
    return np.where(a >= c_arr, np.inf, q)


@functools.lru_cache(maxsize=4096)
def service_quantile_s(mean_s: float, scv: float, p: float) -> float:
    """The ``p``-quantile (s) of a gamma service time with mean ``mean_s`` and ``scv``."""
    if scv <= 1e-9:
        return float(mean_s)
    from scipy import stats

    return float(stats.gamma.ppf(p, a=1.0 / scv, scale=mean_s * scv))


def latency_quantile_s(c: np.ndarray | int, lam_rps: np.ndarray | float, service_s: float,
                       scv: float, p: float) -> np.ndarray:
    """Predicted ``p``-quantile of the response time (s): wait quantile + service quantile."""
    return wait_quantile_s(c, lam_rps, service_s, scv, p) + service_quantile_s(service_s, scv, p)


def slo_attainment(c: int, lam_rps: float, service_s: float, scv: float, slo_s: float,
                   batch_size: int = 1, points: int = 400) -> float:
    """``P(W + S <= slo_s)`` for the model above (exact for M/M/1 and M/M/c): ``service_s`` is
    the mean service time of a batch of ``batch_size`` (the wait uses ``service_s / batch_size``
    per request)."""
    if lam_rps <= 0:
        return _cdf_grid(slo_s, service_s, scv, points)[2]
    if c <= 0:
        return 0.0
    per_request_s = service_s / batch_size
    a = lam_rps * per_request_s
    if a >= c:
        return 0.0
    prob_wait = float(erlang_c(c, a))
    theta = (c / per_request_s - lam_rps) * 2.0 / (1.0 + scv)
    w, cdf, no_wait = _cdf_grid(slo_s, service_s, scv, points)
    integrand = theta * np.exp(-theta * w) * cdf
    waited = float(np.trapezoid(integrand, w))
    return float(np.clip((1.0 - prob_wait) * no_wait + prob_wait * waited, 0.0, 1.0))


@functools.lru_cache(maxsize=1024)
def _cdf_grid(slo_s: float, service_s: float, scv: float, points: int
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """The grid ``w`` of :func:`slo_attainment`'s integral, the service CDF at ``slo_s - w``
    (read-only arrays) and at ``slo_s``: they do not depend on the load, so the answers at
    every rate share them (the CDF is most of the cost)."""
    w = np.linspace(0.0, slo_s, points)
    cdf = _service_cdf(slo_s - w, service_s, scv)
    no_wait = float(_service_cdf(np.array([slo_s]), service_s, scv)[0])
    w.flags.writeable = False
    cdf.flags.writeable = False
    return w, cdf, no_wait


def _service_cdf(x: np.ndarray, mean_s: float, scv: float) -> np.ndarray:
    if scv <= 1e-9:
        return (x >= mean_s).astype(float)
    from scipy import stats

    return stats.gamma.cdf(x, a=1.0 / scv, scale=mean_s * scv)


# ---------------------------------------------------------------------------------------------
# The cheapest configuration meeting a latency SLO (shared by cost_aware and oracle).


@dataclass(frozen=True)
class Config:
    """A service configuration and what the model predicts of it at one arrival rate.

    ``batch_size``: the batching limit to set; ``effective_batch_size``: the batch size the model
    expects at that rate; ``latency_ms``: predicted latency percentile; ``feasible``: whether it
    meets the SLO.
    """

    replicas: int
    option: SizeOption
    batch_size: int
    effective_batch_size: int
    latency_ms: float
    cost_per_hour_usd: float
    feasible: bool


def batch_limits(max_batch_size: int) -> list[int]:
    """Batch-size limits considered: powers of two below ``max_batch_size``, and itself."""
    limits = [1]
    while limits[-1] * 2 < max_batch_size:
        limits.append(limits[-1] * 2)
    if max_batch_size > 1:
        limits.append(int(max_batch_size))
    return limits


def latency_table_ms(option: SizeOption, rate_rps: float, max_replicas: int, percentile: float,
                     batch_sizes: list[int], *, accumulate: bool = True) -> np.ndarray:
    """Predicted latency percentile (ms) for each batch size (rows) and ``c = 1..max_replicas``
    (columns). With ``accumulate`` each row lets the batcher use any batch size up to that
    row's limit (the minimum over the rows above); without, the row is that batch size only."""
    c = np.arange(1, max_replicas + 1)
    rows = []
    for b in batch_sizes:
        service_s = option.mean_service_s(b)
        wait = wait_quantile_s(c, rate_rps, service_s / b, option.scv, percentile)
        rows.append((wait + service_quantile_s(service_s, option.scv, percentile)) * 1000.0)
    table = np.array(rows)
    return np.minimum.accumulate(table, axis=0) if accumulate else table


def predicted_latency_ms(option: SizeOption, rate_rps: float, replicas: int, batch_size: int,
                         percentile: float) -> float:
    """Predicted latency percentile (ms) of ``replicas`` replicas of ``option`` with batching
    limit ``batch_size`` at ``rate_rps`` (``inf`` when they cannot keep up)."""
    if replicas <= 0:
        return 0.0 if rate_rps <= 0 else math.inf
    sizes = [b for b in batch_limits(batch_size) if b <= batch_size]
    table = latency_table_ms(option, rate_rps, replicas, percentile, sizes)
    return float(table[-1, replicas - 1])


def cheapest_config(rate_rps: float, slo_ms: float, options: tuple[SizeOption, ...] | list,
                    *, percentile: float = 0.95, min_replicas: int = 1, max_replicas: int = 10,
                    tune_batch_size: bool = True, batch_size: int = 1) -> Config:
    """The cheapest configuration (replica count, size option, batching limit) whose predicted
    ``percentile`` latency at ``rate_rps`` is within ``slo_ms``.

    Cost is replicas x price per hour. Ties go to fewer replicas, then the smaller batching
    limit. When nothing is feasible within ``max_replicas``, the configuration with the lowest
    predicted latency is returned with ``feasible=False``. With ``tune_batch_size`` false every
    option is evaluated with the batching limit ``batch_size`` (capped at its own maximum).
    """
    best: Config | None = None
    fallback: Config | None = None
    max_replicas = max(1, int(max_replicas))
    for option in options:
        cap = max(1, int(option.max_batch_size))
        sizes = batch_limits(cap) if tune_batch_size else batch_limits(min(batch_size, cap))
        if not tune_batch_size:
            sizes = [b for b in sizes if b <= min(batch_size, cap)]
        raw = latency_table_ms(option, rate_rps, max_replicas, percentile, sizes,
                               accumulate=False)
        table = np.minimum.accumulate(raw, axis=0)
        if rate_rps <= 0:
            n = max(0, min_replicas)
            config = Config(n, option, sizes[0] if tune_batch_size else sizes[-1], 1,
                            float(table[0, 0]), n * option.price_per_hour_usd, True)
            if best is None or _cheaper(config, best):
                best = config
            continue
        for row, limit in enumerate(sizes):
            ok = np.nonzero(table[row] <= slo_ms)[0]
            if len(ok):
                n = min(max(int(ok[0]) + 1, min_replicas), max_replicas)
                used = sizes[int(np.argmin(raw[: row + 1, n - 1]))]
                config = Config(n, option, limit, used, float(table[row, n - 1]),
                                n * option.price_per_hour_usd, True)
                if best is None or _cheaper(config, best):
                    best = config
            lowest = float(table[row, -1])
            if fallback is None or lowest < fallback.latency_ms:
                used = sizes[int(np.argmin(raw[: row + 1, -1]))]
                fallback = Config(max_replicas, option, limit, used, lowest,
                                  max_replicas * option.price_per_hour_usd, False)
    if best is not None:
        return best
    assert fallback is not None, "cheapest_config needs at least one size option"
    return fallback


def _cheaper(a: Config, b: Config) -> bool:
    return (a.cost_per_hour_usd, a.replicas, a.batch_size) < (
        b.cost_per_hour_usd, b.replicas, b.batch_size)
