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
- Waiting-time tail at Poisson arrivals (``ca2 = 1``): ``P(W > t) ~= C exp(-theta t)`` with
  ``theta = (c/s - lam) * 2 / (1 + scv)``, the exponential tail whose mean is the Allen-Cunneen
  wait (exact for M/M/c); the service time is modelled as a gamma distribution with the
  profiled mean and scv.
- Waiting-time tail at other arrival SCVs: ``P(W > t) ~= P_w exp(-theta t)`` from the GI/M/c
  queue with gamma inter-arrival times of SCV ``ca2`` (:func:`gim_c_delay`, exact for
  exponential service): ``P_w`` its delay probability and ``theta = c/s (1 - sigma) (ca2 + 1) /
  (ca2 + scv)``, GI/M/c's decay rate with Allen-Cunneen's service-variability factor (at
  ``ca2 = 1`` both are the Poisson figures). Allen-Cunneen keeps Erlang C's delay probability,
  which clustered arrivals exceed many times over (CV 5, four servers at 30% load: 0.04 against
  0.75 simulated; GI/M/c gives 0.75), so its tail is far too light for bursty traffic.
- Arrival burstiness is measured by :func:`arrival_scv_estimate` (a pooled index of dispersion
  of per-second counts) and bucketed by :func:`bucket_scv` so cached answers are reused (both
  in :mod:`simscale.strategies.burstiness`, re-exported here).
- Batching: a replica that serves batches of ``b`` takes ``t(b) = (alpha + beta b) * mean_factor``
  and so serves ``b / t(b)`` requests/s; a request then waits like a customer of an M/G/c queue
  with that throughput and is served in ``t(b)``. A dynamic batcher with limit ``B`` uses the
  batch size ``b <= B`` that is best at the load, so the predicted latency for limit ``B`` is the
  minimum over ``b <= B`` (an approximation; it is monotone in load and in ``c``).

Evaluation: the functions above work on numpy arrays. The solver (:func:`cheapest_config`) and
:func:`predicted_latency_ms` instead evaluate the same formulas one replica count at a time in
Python floats (the Erlang B recursion carried from ``c`` to ``c + 1``, ``numpy.log`` for the
logarithm) and stop at the first count that meets the SLO: the same floats, bit for bit, as the
vectorised table, which stays the specification (:func:`_cheapest_config_reference`) and the
fallback for inputs the scalar path declines (no load, nothing feasible, non-finite figures).

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
from simscale.strategies.burstiness import (  # noqa: F401 - re-exported (they lived here)
    MAX_ARRIVAL_SCV,
    SCV_BUCKETS_PER_DOUBLING,
    Dispersion,
    arrival_scv_estimate,
    bucket_scv,
    dispersion_index,
    gim_c_delay,
)

#: numpy's logarithm, called on one float at a time by the scalar paths: its float64 answers do
#: not depend on the array around them, and ``math.log`` differs from it in the last bit now and
#: then (numpy's SIMD kernels), so only it gives the vectorised formulas' figures
_np_log = np.log
#: numpy's sum reduction, called directly: what ``ndarray.sum`` reduces with
_sum = np.add.reduce


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
    """The ``p``-quantile of the time in queue (s): ``P(W > t) = P_w exp(-theta t)`` (Erlang C
    and Allen-Cunneen's rate at ``arrival_scv = 1``, else GI/M/c's: see the module notes)."""
    c_arr = np.asarray(c, dtype=float)
    lam = np.asarray(lam_rps, dtype=float)
    s = np.asarray(service_s, dtype=float)
    a = lam * s
    if arrival_scv != 1.0:
        prob_wait, theta = _bursty_arrays(c_arr, lam, s, np.asarray(scv, dtype=float),
                                          arrival_scv)
    else:
        prob_wait = erlang_c(c_arr, a)
        with np.errstate(divide="ignore", invalid="ignore"):
            theta = (c_arr / s - lam) * 2.0 / (arrival_scv + np.asarray(scv, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.log(prob_wait / (1.0 - p)) / theta
    q = np.where(prob_wait <= 1.0 - p, 0.0, q)
    return np.where(a >= c_arr, np.inf, q)


def bursty_wait(c: int, lam_rps: float, service_s: float, scv: float,
                arrival_scv: float) -> tuple[float, float]:
    """``(P(wait), theta)`` (theta in 1/s) of the model at arrival SCV ``arrival_scv != 1``:
    GI/M/c's delay probability and decay rate (:func:`gim_c_delay`) with Allen-Cunneen's
    service factor ``(ca2 + 1) / (ca2 + scv)``; ``c`` servers of mean service time
    ``service_s``, load ``lam_rps * service_s < c``. Python floats: the scalar and the
    vectorised paths both call it, so their figures are the same bit for bit."""
    prob_wait, one_minus_sigma = gim_c_delay(c, lam_rps * service_s, arrival_scv)
    return prob_wait, c / service_s * one_minus_sigma * (
        (arrival_scv + 1.0) / (arrival_scv + scv))


def _bursty_arrays(c: np.ndarray, lam: np.ndarray, s: np.ndarray, scv: np.ndarray,
                   arrival_scv: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bursty_wait` element by element (broadcast); no load: no wait; unstable: wait 1
    with rate ``nan`` (the callers make the quantile ``inf``); a NaN load: NaNs."""
    c_b, lam_b, s_b, scv_b = np.broadcast_arrays(c, lam, s, scv)
    prob_wait = np.zeros(c_b.shape)
    theta = np.full(c_b.shape, np.inf)
    for i, (ci, li, si, vi) in enumerate(zip(c_b.flat, lam_b.flat, s_b.flat, scv_b.flat,
                                                 strict=True)):
        if li * si != li * si:  # NaN in, NaN out (as the Poisson path)
            prob_wait.flat[i], theta.flat[i] = np.nan, np.nan
            continue
        if not li * si > 0:  # no load (an underflow too, as in _Row): no wait
            continue
        if li * si >= ci or ci != int(ci):
            prob_wait.flat[i], theta.flat[i] = 1.0, np.nan
            continue
        prob_wait.flat[i], theta.flat[i] = bursty_wait(int(ci), float(li), float(si),
                                                       float(vi), arrival_scv)
    return prob_wait, theta


@functools.lru_cache(maxsize=4096)
def service_quantile_s(mean_s: float, scv: float, p: float) -> float:
    """The ``p``-quantile (s) of a gamma service time with mean ``mean_s`` and ``scv``."""
    if scv <= 1e-9:
        return float(mean_s)
    if not 0.0 < p < 1.0:
        from scipy import stats

        return float(stats.gamma.ppf(p, a=1.0 / scv, scale=mean_s * scv))
    if scv == 1.0:  # exponential: the closed form (no scipy.special import, about 0.2 s)
        return float(-mean_s * math.log1p(-p))
    # what gamma.ppf computes inside (its _ppf, then times the scale), without importing
    # scipy.stats (about 0.3 s of a small simulate's start)
    from scipy import special

    return float(special.gammaincinv(1.0 / scv, p) * (mean_s * scv) + 0.0)


def latency_quantile_s(c: np.ndarray | int, lam_rps: np.ndarray | float, service_s: float,
                       scv: float, p: float, arrival_scv: float = 1.0) -> np.ndarray:
    """Predicted ``p``-quantile of the response time (s): wait quantile + service quantile."""
    return (wait_quantile_s(c, lam_rps, service_s, scv, p, arrival_scv)
            + service_quantile_s(service_s, scv, p))


def slo_attainment(c: int, lam_rps: float, service_s: float, scv: float, slo_s: float,
                   batch_size: int = 1, points: int = 400, arrival_scv: float = 1.0) -> float:
    """``P(W + S <= slo_s)`` for the model above (exact for M/M/c and GI/M/c): ``service_s`` is
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
    if arrival_scv == 1.0:
        prob_wait = _erlang_c_one(c, a)
        theta = (c / per_request_s - lam_rps) * 2.0 / (arrival_scv + scv)
    else:
        prob_wait, theta = bursty_wait(c, lam_rps, per_request_s, scv, arrival_scv)
    w, cdf, no_wait = _cdf_grid(slo_s, service_s, scv, points)
    integrand = theta * np.exp(-theta * w) * cdf
    # np.trapezoid(integrand, w), its operations on the grid's cached steps
    waited = float(_sum(_grid_steps(slo_s, points) * (integrand[1:] + integrand[:-1]) / 2.0))
    out = (1.0 - prob_wait) * no_wait + prob_wait * waited
    if 0.0 < out <= 1.0:  # np.clip's answer, without the call
        return out
    return 1.0 if out > 1.0 else float(np.clip(out, 0.0, 1.0))


@functools.lru_cache(maxsize=1024)
def _grid_steps(slo_s: float, points: int) -> np.ndarray:
    """``np.diff`` of :func:`_cdf_grid`'s grid (read-only)."""
    d = np.diff(np.linspace(0.0, slo_s, points))
    d.flags.writeable = False
    return d


def _erlang_c_one(c: int, a: float) -> float:
    """``float(erlang_c(c, a))`` for one count and one load, in Python floats: the same
    operations on the same values (the recursion of :func:`_erlang_b_upto`)."""
    if type(c) is not int or not (isinstance(a, float) and math.isfinite(a) and 0 <= a < c):
        return float(erlang_c(c, a))
    a = float(a)
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    cf = float(c)
    return min(max(cf * b / (cf - a * (1.0 - b)), 0.0), 1.0)


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
    x = np.asarray(x, dtype=float)
    if scv == 1.0:  # exponential: the closed form (no scipy.special import)
        return np.where(x > 0.0, -np.expm1(-np.maximum(x, 0.0) / mean_s), 0.0)
    # gamma.cdf(x, a, scale=s) is gammainc(a, (x - 0) / s) for x > 0 and 0 below (its _cdf
    # after the checks), without importing scipy.stats
    from scipy import special

    z = (np.asarray(x, dtype=float) - 0.0) / (mean_s * scv)
    return np.where(z > 0.0, special.gammainc(1.0 / scv, np.maximum(z, 0.0)), 0.0)


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
    try:  # the element the table's last row ends with, computed alone (see _Row)
        if not sizes or not rate_rps >= 0 or not isinstance(replicas, int):
            raise _Reference
        lam, p, scv_in = (_exact_float(rate_rps), _exact_float(percentile),
                          _exact_float(arrival_scv))
        return min(_Row(lam, option.mean_service_s(b), b, option.scv, p, scv_in).at(replicas)
                   for b in sizes)
    except (_Reference, TypeError, ValueError):
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

    Each option's best configuration is found by a scalar search over the replica counts that
    stops at the first feasible one (:func:`_option_best`, cached by its exact arguments), with
    the floating-point operations of :func:`latency_table_ms` (``numpy.log`` included), so the
    answer is :func:`_cheapest_config_reference`'s, bit for bit; that whole computation is
    done instead when no option is feasible, at no load, or with non-finite figures.
    """
    max_replicas = max(1, int(max_replicas))
    try:
        if not (rate_rps > 0 and math.isfinite(rate_rps)) or not options:
            raise _Reference
        lam, slo = _exact_float(rate_rps), _exact_float(slo_ms)
        best: Config | None = None
        for option in options:  # each option's best, then the first cheapest of those: the
            # same as the first cheapest of all (the order on costs is total: prices finite)
            config = _option_best(lam, slo, option, _exact_float(percentile), min_replicas,
                                  max_replicas, tune_batch_size, batch_size,
                                  _exact_float(arrival_scv))
            if config is not None and (best is None or _cheaper(config, best)):
                best = config
        if best is None:
            raise _Reference
        return best
    except (_Reference, TypeError, ValueError):
        # declined, or odd arguments: what the vectorised code does with them, errors included
        return _cheapest_config_reference(
            rate_rps, slo_ms, options, percentile=percentile, min_replicas=min_replicas,
            max_replicas=max_replicas, tune_batch_size=tune_batch_size, batch_size=batch_size,
            arrival_scv=arrival_scv)


class _Reference(Exception):
    """The scalar path declines: the vectorised computation gives the answer."""


def _exact_float(x: float) -> float:
    """``x`` as a Python float when that is exact and finite (else :class:`_Reference`): numpy
    compares and computes with it as a float64 either way."""
    f = float(x)
    if not math.isfinite(f) or (not isinstance(x, float) and f != x):
        raise _Reference
    return f


class _Row:
    """One batch size's predicted latency percentile (ms) at ``c = 1, 2, ...`` replicas, grown
    on demand: the Erlang B recursion carried from one ``c`` to the next, and at each ``c``
    exactly the operations :func:`wait_quantile_s` and :func:`latency_table_ms` do on that
    element (``numpy.log``, whose float64 answers do not depend on the array around them;
    ``math.log`` does differ from it in the last bit)."""

    __slots__ = ("lam", "s", "a", "scv", "arrival_scv", "scv_sum", "tail", "service_q", "b_k",
                 "values")

    def __init__(self, lam: float, service_s: float, batch: int, scv: float, p: float,
                 arrival_scv: float) -> None:
        s = service_s / batch
        scv_sum = arrival_scv + scv
        if not (s > 0 and math.isfinite(s) and 0.0 < p < 1.0 and lam >= 0
                and math.isfinite(scv_sum) and scv_sum != 0):
            raise _Reference
        self.service_q = service_quantile_s(service_s, scv, p)
        if not math.isfinite(self.service_q):
            raise _Reference
        # from here on no figure is NaN (the check in _grow is a safety net), so the minimum
        # over rows at a count is NaN-free, as _option_best's decomposition assumes
        self.lam = lam
        self.s = s
        self.a = lam * s
        self.scv, self.arrival_scv = scv, arrival_scv
        self.scv_sum = scv_sum
        self.tail = 1.0 - p
        self.b_k = 1.0  # Erlang B of len(values) servers
        self.values: list[float] = []

    def at(self, c: int) -> float:
        """The latency (ms) with ``c >= 1`` replicas."""
        values = self.values
        if len(values) < c:
            self._grow(c)
        return values[c - 1]

    def _grow(self, upto: int, slo_ms: float = -math.inf) -> int | None:
        """Extend :attr:`values` to ``upto`` counts, stopping early at the first new count
        whose latency is within ``slo_ms`` (returned; None when none is)."""
        values = self.values
        a, b, lam, s = self.a, self.b_k, self.lam, self.s
        tail, scv_sum, service_q = self.tail, self.scv_sum, self.service_q
        bursty = self.arrival_scv != 1.0 and a > 0.0
        found = None
        for k in range(len(values) + 1, upto + 1):
            b = a * b / (k + a * b)
            cf = float(k)
            if a >= cf:
                wait = math.inf
            else:
                if bursty:
                    prob_wait, theta = bursty_wait(k, lam, s, self.scv, self.arrival_scv)
                else:
                    prob_wait = min(max(cf * b / (cf - a * (1.0 - b)), 0.0), 1.0)
                if prob_wait <= tail:
                    wait = 0.0
                else:
                    if not bursty:
                        theta = (cf / s - lam) * 2.0 / scv_sum
                    if theta == 0.0:
                        raise _Reference
                    wait = float(_np_log(prob_wait / tail)) / theta
            value = (wait + service_q) * 1000.0
            if value != value:  # NaN: the vectorised minimum propagates it
                raise _Reference
            values.append(value)
            if value <= slo_ms:
                found = k
                break
        self.b_k = b
        return found

    def first_within(self, slo_ms: float, below: int) -> int | None:
        """The smallest ``c < below`` whose latency is within ``slo_ms`` (None if none)."""
        values = self.values
        for c in range(1, min(below, len(values) + 1)):
            if values[c - 1] <= slo_ms:
                return c
        if len(values) + 1 >= below:
            return None
        return self._grow(below - 1, slo_ms)



@functools.lru_cache(maxsize=8192, typed=True)
def _option_best(lam: float, slo_ms: float, option: SizeOption, percentile: float,
                 min_replicas: int, max_replicas: int, tune_batch_size: bool, batch_size: int,
                 arrival_scv: float) -> Config | None:
    """The first cheapest feasible configuration of one option (None when none is), as
    :func:`_cheapest_config_reference` finds it among that option's rows: row ``i`` (batching
    limit ``sizes[i]``) is the minimum of the raw rows ``0..i``, so its first feasible count is
    the smallest of theirs, and only the counts up to it are computed."""
    price = option.price_per_hour_usd
    if not math.isfinite(price):
        raise _Reference
    cap = max(1, int(option.max_batch_size))
    sizes = batch_limits(cap) if tune_batch_size else batch_limits(min(batch_size, cap))
    if not tune_batch_size:
        sizes = [b for b in sizes if b <= min(batch_size, cap)]
    scv = option.scv
    rows: list[_Row] = []
    best: Config | None = None
    first: int | None = None  # first feasible count of the rows so far
    for limit in sizes:
        row = _Row(lam, option.mean_service_s(limit), limit, scv, percentile, arrival_scv)
        rows.append(row)
        mine = row.first_within(slo_ms, max_replicas + 1 if first is None else first)
        if mine is not None:
            first = mine
        if first is None:
            continue
        n = min(max(first, min_replicas), max_replicas)
        if best is not None and not (n * price, n, limit) < (
                best.cost_per_hour_usd, best.replicas, best.batch_size):  # _cheaper
            continue
        column = [r.at(n) for r in rows]
        latency = min(column)
        best = Config(n, option, limit, sizes[column.index(latency)], latency, n * price, True)
    return best


def _cheaper(a: Config, b: Config) -> bool:
    return (a.cost_per_hour_usd, a.replicas, a.batch_size) < (
        b.cost_per_hour_usd, b.replicas, b.batch_size)


def _cheapest_config_reference(rate_rps: float, slo_ms: float,
                               options: tuple[SizeOption, ...] | list, *,
                               percentile: float = 0.95, min_replicas: int = 1,
                               max_replicas: int = 10, tune_batch_size: bool = True,
                               batch_size: int = 1, arrival_scv: float = 1.0) -> Config:
    """:func:`cheapest_config` computed whole with the vectorised formulas: the specification
    the scalar search (:func:`_option_best`) is checked against, and what it falls back on
    (nothing feasible, no load, non-finite figures)."""
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
