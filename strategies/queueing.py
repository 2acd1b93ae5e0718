"""Queueing formulas, vectorised over numpy arrays, and the cheapest-configuration solver.

Notation: ``c`` servers (replicas), arrival rate ``lam`` (requests/s), mean service time
``s`` (s), offered load ``a = lam * s`` (erlangs), ``scv`` the squared coefficient of variation of
the service time (1 for exponential, 0 for deterministic).

- Erlang B and C by the stable recursion ``B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1))`` and
  ``C = c B / (c - a (1 - B))`` (Kleinrock, *Queueing Systems* vol. 1, §3.5).
- M/M/c mean wait ``Wq = C / (c/s - lam)``.
- G/G/c by Allen-Cunneen: ``Wq ~= C / (c/s - lam) * (ca2 + cs2) / 2`` (Allen, *Probability,
  Statistics and Queueing Theory*, 2nd ed. 1990, §6.4; Gross et al., *Fundamentals of Queueing
  Theory*, 4th ed., §7.2), ``ca2`` the arrivals' squared coefficient of variation (``arrival_scv``;
  1 for Poisson, the default). For ``c = 1`` it is Kingman's heavy-traffic formula; exact for
  M/G/1 (Pollaczek-Khinchine) and for M/M/c. With ``arrival_scv = 1`` every function here does
  exactly the floating-point operations of the M/M/c / M/G/c model it generalises.
- Waiting-time tail: ``P(W > t) ~= C exp(-theta t)`` with ``theta = (c/s - lam) * 2 /
  (ca2 + scv)``, the exponential tail whose mean is the Allen-Cunneen wait (exact for M/M/c;
  for G/G/1 the heavy-traffic limit, Kingman 1962); the service time is modelled as a gamma
  distribution with the profiled mean and scv.
- Arrival burstiness is measured by :func:`arrival_scv_estimate` (a pooled index of dispersion
  of per-second counts) and bucketed by :func:`bucket_scv` so cached answers are reused.
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
                              scv: np.ndarray | float,
                              arrival_scv: np.ndarray | float = 1.0) -> np.ndarray:
    """Allen-Cunneen mean time in queue (s) of a G/G/c queue with service-time SCV ``scv`` and
    inter-arrival SCV ``arrival_scv`` (1: M/G/c); ``inf`` when unstable."""
    c_arr = np.asarray(c, dtype=float)
    lam = np.asarray(lam_rps, dtype=float)
    s = np.asarray(service_s, dtype=float)
    a = lam * s
    prob_wait = erlang_c(c_arr, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = prob_wait / (c_arr / s - lam) * (
            np.asarray(arrival_scv, dtype=float) + np.asarray(scv, dtype=float)) / 2.0
    return np.where(a >= c_arr, np.inf, np.where(lam > 0, wait, 0.0))


def wait_quantile_s(c: np.ndarray | int, lam_rps: np.ndarray | float,
                    service_s: np.ndarray | float, scv: np.ndarray | float,
                    p: float, arrival_scv: float = 1.0) -> np.ndarray:
    """The ``p``-quantile of the time in queue (s): ``P(W > t) = C exp(-theta t)``."""
    c_arr = np.asarray(c, dtype=float)
    lam = np.asarray(lam_rps, dtype=float)
    s = np.asarray(service_s, dtype=float)
    a = lam * s
    prob_wait = erlang_c(c_arr, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = (c_arr / s - lam) * 2.0 / (arrival_scv + np.asarray(scv, dtype=float))
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
                       scv: float, p: float, arrival_scv: float = 1.0) -> np.ndarray:
    """Predicted ``p``-quantile of the response time (s): wait quantile + service quantile."""
    return (wait_quantile_s(c, lam_rps, service_s, scv, p, arrival_scv)
            + service_quantile_s(service_s, scv, p))


def slo_attainment(c: int, lam_rps: float, service_s: float, scv: float, slo_s: float,
                   batch_size: int = 1, points: int = 400, arrival_scv: float = 1.0) -> float:
    """``P(W + S <= slo_s)`` for the model above (exact for M/M/1 and M/M/c): ``service_s`` is
    the mean service time of a batch of ``batch_size`` (the wait uses ``service_s / batch_size``
    per request); ``arrival_scv`` is the arrivals' SCV (1: Poisson)."""
    if lam_rps <= 0:
        return _cdf_grid(slo_s, service_s, scv, points)[2]
    if c <= 0:
        return 0.0
    per_request_s = service_s / batch_size
    a = lam_rps * per_request_s
    if a >= c:
        return 0.0
    prob_wait = float(erlang_c(c, a))
    theta = (c / per_request_s - lam_rps) * 2.0 / (arrival_scv + scv)
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
                     batch_sizes: list[int], *, accumulate: bool = True,
                     arrival_scv: float = 1.0) -> np.ndarray:
    """Predicted latency percentile (ms) for each batch size (rows) and ``c = 1..max_replicas``
    (columns), arrivals with SCV ``arrival_scv``. With ``accumulate`` each row lets the batcher
    use any batch size up to that row's limit (the minimum over the rows above); without, the
    row is that batch size only."""
    c = np.arange(1, max_replicas + 1)
    rows = []
    for b in batch_sizes:
        service_s = option.mean_service_s(b)
        wait = wait_quantile_s(c, rate_rps, service_s / b, option.scv, percentile, arrival_scv)
        rows.append((wait + service_quantile_s(service_s, option.scv, percentile)) * 1000.0)
    table = np.array(rows)
    return np.minimum.accumulate(table, axis=0) if accumulate else table


def predicted_latency_ms(option: SizeOption, rate_rps: float, replicas: int, batch_size: int,
                         percentile: float, arrival_scv: float = 1.0) -> float:
    """Predicted latency percentile (ms) of ``replicas`` replicas of ``option`` with batching
    limit ``batch_size`` at ``rate_rps``, arrivals with SCV ``arrival_scv`` (``inf`` when they
    cannot keep up)."""
    if replicas <= 0:
        return 0.0 if rate_rps <= 0 else math.inf
    sizes = [b for b in batch_limits(batch_size) if b <= batch_size]
    table = latency_table_ms(option, rate_rps, replicas, percentile, sizes,
                             arrival_scv=arrival_scv)
    return float(table[-1, replicas - 1])


def cheapest_config(rate_rps: float, slo_ms: float, options: tuple[SizeOption, ...] | list,
                    *, percentile: float = 0.95, min_replicas: int = 1, max_replicas: int = 10,
                    tune_batch_size: bool = True, batch_size: int = 1,
                    arrival_scv: float = 1.0) -> Config:
    """The cheapest configuration (replica count, size option, batching limit) whose predicted
    ``percentile`` latency at ``rate_rps`` is within ``slo_ms``.

    Cost is replicas x price per hour. Ties go to fewer replicas, then the smaller batching
    limit. When nothing is feasible within ``max_replicas``, the configuration with the lowest
    predicted latency is returned with ``feasible=False``. With ``tune_batch_size`` false every
    option is evaluated with the batching limit ``batch_size`` (capped at its own maximum).
    ``arrival_scv`` is the arrivals' SCV (1: Poisson; see :func:`arrival_scv_estimate`).
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
                               accumulate=False, arrival_scv=arrival_scv)
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


# ---------------------------------------------------------------------------------------------
# Arrival burstiness: the inter-arrival SCV the G/G/c model is given, measured from counts.

#: largest arrival SCV used (CV 20): beyond, the approximation says nothing useful
MAX_ARRIVAL_SCV = 400.0
#: buckets per doubling of the arrival SCV in :func:`bucket_scv` (steps of 2**(1/4) = 19%)
SCV_BUCKETS_PER_DOUBLING = 4


@dataclass(frozen=True)
class Dispersion:
    """The pooled index of dispersion of per-second counts and its Poisson test.

    ``index``: ``sum_b sum_i r_bi**2 / sum_b (k - 2) mean_b`` over blocks ``b`` of ``k`` bins,
    ``r_bi`` the bin counts' residuals about the block's least-squares line (a ratio
    estimator; 1 for Poisson, ``~ca2`` for a renewal process); ``statistic``: Fisher's
    dispersion statistic ``sum_b sum_i r_bi**2 / mean_b``, about chi-squared with
    ``dof = sum_b (k - 2)`` degrees of freedom when the arrivals are Poisson with a rate linear
    within each block; ``p_value``: its upper tail.
    """

    index: float
    statistic: float
    dof: int
    p_value: float


def dispersion_index(counts_per_s: np.ndarray, block_s: int = 10, scale_s: int = 1
                     ) -> Dispersion:
    """Index of dispersion of arrival counts in bins of ``scale_s`` seconds (summed from the
    per-second counts), pooled over blocks of ``block_s`` seconds.

    Within each block (the most recent bins form whole blocks; older ones left over are
    dropped) the bins' counts are compared with the block's own least-squares line (mean and
    slope), so rate changes between blocks and linear trends within one (a ramp, a diurnal
    swing) do not count as burstiness, while fluctuations faster than ``block_s`` do. For a
    stationary renewal process the index
    of dispersion of counts in windows of length ``T`` tends to the inter-arrival SCV ``ca2``
    as ``T`` grows (Cox & Lewis, *The Statistical Analysis of Series of Events*, 1966, §4.5):
    ``Var N(T) = ca2 rate T + O(1)``, so at ``T = scale_s`` it is ``ca2 + O(1 / (rate
    scale_s))``; for a modulated (MMPP) stream it grows with ``T`` towards its asymptotic
    index. Fendick & Whitt (Proc. IEEE 77(1), 1989) argue that the index at the queue's own
    time scale (seconds here: the SLO, and bursts the replicas cannot absorb) is the arrival
    variability a G/G/c approximation should be given (Whitt's QNA, Bell Syst. Tech. J. 62(9),
    1983, takes the asymptotic one). The Poisson test is Fisher's dispersion test (Cochran,
    Biometrics 10, 1954). Blocks with no arrivals carry no information and are skipped. With
    no usable block the index is 1 (Poisson) and the p-value 1.
    """
    counts = np.asarray(counts_per_s, dtype=float)
    scale = max(1, int(scale_s))
    n_bins = len(counts) // scale
    if scale > 1:
        counts = counts[len(counts) - n_bins * scale:].reshape(n_bins, scale).sum(axis=1)
    k = max(3, int(block_s) // scale)
    n_blocks = len(counts) // k
    if n_blocks == 0:
        return Dispersion(1.0, 0.0, 0, 1.0)
    blocks = counts[len(counts) - n_blocks * k:].reshape(n_blocks, k)
    means = blocks.mean(axis=1)
    used = means > 0
    if not used.any():
        return Dispersion(1.0, 0.0, 0, 1.0)
    blocks, means = blocks[used], means[used]
    x = np.arange(k) - (k - 1) / 2.0  # centred time within a block
    slopes = (blocks * x).sum(axis=1) / float((x * x).sum())
    residuals = blocks - means[:, None] - slopes[:, None] * x
    squares = (residuals ** 2).sum(axis=1)
    dof = int(len(means) * (k - 2))
    index = float(squares.sum() / ((k - 2) * means.sum()))
    statistic = float((squares / means).sum())
    from scipy import stats

    return Dispersion(index, statistic, dof, float(stats.chi2.sf(statistic, dof)))


def arrival_scv_estimate(counts_per_s: np.ndarray, block_s: int = 10,
                         significance: float = 1e-4, scale_s: int = 1) -> float:
    """The arrival SCV to plan with, from recent per-second counts: the pooled index of
    dispersion (:func:`dispersion_index`) when Fisher's test rejects Poisson arrivals at
    ``significance`` (over-dispersion only), else exactly 1.

    Poisson-like traffic thus keeps the M/M/c / M/G/c model bit for bit (a Poisson stream is
    taken for bursty with probability ``significance`` per decision), and traffic more regular
    than Poisson is still planned as Poisson (conservative). The estimate is capped at
    :data:`MAX_ARRIVAL_SCV`.
    """
    d = dispersion_index(counts_per_s, block_s, scale_s)
    if d.dof == 0 or d.p_value >= significance or d.index <= 1.0:
        return 1.0
    return min(d.index, MAX_ARRIVAL_SCV)


def bucket_scv(scv: float) -> float:
    """``scv`` rounded to a geometric grid (:data:`SCV_BUCKETS_PER_DOUBLING` steps per doubling),
    1 kept exactly, at most :data:`MAX_ARRIVAL_SCV`: the queueing answers are cached by their
    arguments (:class:`~simscale.strategies.cost_aware.QueueingMemo`), and a bucketed SCV lets
    nearby measurements share them (the grid's 9% half-step is below the estimator's noise)."""
    if not scv > 1.0:
        return 1.0
    steps = round(math.log2(min(scv, MAX_ARRIVAL_SCV)) * SCV_BUCKETS_PER_DOUBLING)
    return min(float(2.0 ** (steps / SCV_BUCKETS_PER_DOUBLING)), MAX_ARRIVAL_SCV)
