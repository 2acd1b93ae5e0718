"""Arrival burstiness: the inter-arrival SCV the G/G/c model of
:mod:`simscale.strategies.queueing` is given, measured from per-second arrival counts.

:func:`dispersion_index` is a pooled index of dispersion of the counts with Fisher's Poisson
test, :func:`arrival_scv_estimate` the SCV to plan with (exactly 1 unless the test rejects
Poisson), :func:`bucket_scv` its value on a geometric grid so that cached queueing answers are
reused. (Re-exported by :mod:`simscale.strategies.queueing`, where they used to live.)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: numpy's sum reduction, called directly: what ``ndarray.sum`` and ``mean`` reduce with
_sum = np.add.reduce


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
    parts = _dispersion_parts(counts_per_s, block_s, scale_s)
    if parts is None:
        return Dispersion(1.0, 0.0, 0, 1.0)
    index, statistic, dof = parts
    return Dispersion(index, statistic, dof, _chi2_sf(statistic, dof))


def _dispersion_parts(counts_per_s: np.ndarray, block_s: int, scale_s: int
                      ) -> tuple[float, float, int] | None:
    """:func:`dispersion_index`'s index, statistic and degrees of freedom (None: no usable
    block), without the p-value."""
    counts = np.asarray(counts_per_s, dtype=float)
    scale = max(1, int(scale_s))
    n_bins = len(counts) // scale
    if scale > 1:
        counts = _sum(counts[len(counts) - n_bins * scale:].reshape(n_bins, scale), axis=1)
    k = max(3, int(block_s) // scale)
    n_blocks = len(counts) // k
    if n_blocks == 0:
        return None
    blocks = counts[len(counts) - n_blocks * k:].reshape(n_blocks, k)
    # the reductions of ``sum`` and ``mean`` (numpy's own), without their wrappers' overhead
    means = _sum(blocks, axis=1) / k
    used = means > 0
    if not used.all():
        if not used.any():
            return None
        blocks, means = blocks[used], means[used]
    x, xx = _centred_times(k)
    slopes = _sum(blocks * x, axis=1) / xx
    residuals = blocks - means[:, None] - slopes[:, None] * x
    squares = _sum(residuals ** 2, axis=1)
    dof = int(len(means) * (k - 2))
    index = float(_sum(squares) / ((k - 2) * _sum(means)))
    statistic = float(_sum(squares / means))
    return index, statistic, dof



@functools.lru_cache(maxsize=64)
def _centred_times(k: int) -> tuple[np.ndarray, float]:
    """Centred times ``0..k-1`` within a block (read-only) and the sum of their squares."""
    x = np.arange(k) - (k - 1) / 2.0
    xx = float((x * x).sum())
    x.flags.writeable = False
    return x, xx


def _chi2_sf(statistic: float, dof: int) -> float:
    """``float(scipy.stats.chi2.sf(statistic, dof))``: for ``dof > 0`` and a finite positive
    statistic that is ``scipy.special.chdtrc(dof, statistic)`` (what ``chi2.sf`` calls after its
    argument checks), without the checks' overhead."""
    if dof > 0 and 0.0 < statistic < math.inf:
        from scipy import special

        return float(special.chdtrc(float(dof), float(statistic)))
    from scipy import stats

    return float(stats.chi2.sf(statistic, dof))


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
    parts = _dispersion_parts(counts_per_s, block_s, scale_s)
    if parts is None:  # no usable block: dispersion_index's (1, 0, 0, 1)
        return 1.0
    index, statistic, dof = parts  # the p-value only when it decides
    if dof == 0 or index <= 1.0 or _chi2_sf(statistic, dof) >= significance:
        return 1.0
    return min(index, MAX_ARRIVAL_SCV)


def bucket_scv(scv: float) -> float:
    """``scv`` rounded to a geometric grid (:data:`SCV_BUCKETS_PER_DOUBLING` steps per doubling),
    1 kept exactly, at most :data:`MAX_ARRIVAL_SCV`: the queueing answers are cached by their
    arguments (:class:`~simscale.strategies.cost_aware.QueueingMemo`), and a bucketed SCV lets
    nearby measurements share them (the grid's 9% half-step is below the estimator's noise)."""
    if not scv > 1.0:
        return 1.0
    steps = round(math.log2(min(scv, MAX_ARRIVAL_SCV)) * SCV_BUCKETS_PER_DOUBLING)
    return min(float(2.0 ** (steps / SCV_BUCKETS_PER_DOUBLING)), MAX_ARRIVAL_SCV)


# ---------------------------------------------------------------------------------------------
# GI/M/c with gamma inter-arrival times: the delay probability and the waiting-time decay.


@functools.lru_cache(maxsize=8192)
def gim_c_delay(c: int, a: float, ca2: float) -> tuple[float, float]:
    """``(P(wait), 1 - sigma)`` of a GI/M/c queue whose inter-arrival times are gamma with
    squared coefficient of variation ``ca2 >= 0`` (0: deterministic gaps), offered
    ``a = lam / mu`` erlangs on ``c`` servers (``0 <= a < c``; no load: ``(0, 1)``; a NaN:
    NaNs; other arguments out of range: :class:`ValueError`).

    An arrival finds all servers busy with probability ``P(wait)``; its wait given that is
    exponential with rate ``c mu (1 - sigma)``, where ``sigma`` is the root in ``(0, 1)`` of
    ``sigma = A*(c mu (1 - sigma))`` and ``A*(s) = (1 + s ca2 / lam) ** (-1 / ca2)`` the gamma
    inter-arrival time's Laplace-Stieltjes transform. Both are exact for this queue (Takacs
    1962; Gross et al., *Fundamentals of Queueing Theory*, 4th ed., §6.3):
    ``P(wait) = 1 / (1 + (1 - sigma) sum_j binom(c, j) / (C_j (1 - A_j)) (1 + c D_j))`` over
    ``j = 1..c``, ``A_j = A*(j mu)``, ``C_j = prod_{i<=j} A_i / (1 - A_i)`` and ``D_j`` the
    divided difference ``(sigma - A_j) / (c (1 - sigma) - j)`` of ``A*`` (in units of ``mu``;
    its derivative where the two points meet), which is the usual
    ``(c (1 - A_j) - j) / (c (1 - sigma) - j)`` written without its removable singularity.
    The terms are summed in logarithms, so ``c`` in the hundreds neither overflows nor loses
    the answer (checked against Erlang C at ``ca2 -> 1`` up to ``c = 120``; at ``ca2 = 1`` it
    is Erlang C and ``sigma = a / c``). For ``c = 1``, ``P(wait) = sigma``.
    """
    n = int(c)
    if n != c or n < 1:
        raise ValueError(f"gim_c_delay needs a whole number of servers >= 1 (c={c})")
    if a != a or ca2 != ca2:  # NaN in, NaN out (as the Poisson formulas)
        return math.nan, math.nan
    if not 0.0 <= ca2 < math.inf:
        raise ValueError(f"gim_c_delay needs a finite arrival SCV >= 0 (ca2={ca2})")
    if not 0.0 <= a < n:
        raise ValueError(f"gim_c_delay needs 0 <= a < c (c={n}, a={a})")
    rho = a / n
    if rho == 0.0:  # no load (or one that underflows): nobody waits
        return 0.0, 1.0
    x = _one_minus_sigma(rho, ca2)
    if not x > 0.0:  # a load within rounding of c: everyone waits, for ever
        return 1.0, 0.0
    s0 = n * x  # c mu (1 - sigma), in units of mu
    sigma = 1.0 - x
    log_c_j = 0.0
    log_fact_c = math.lgamma(n + 1.0)
    logs: list[float] = []
    factors: list[float] = []
    for j in range(1, n + 1):
        log_a_j = _log_lst(j / a, ca2)
        a_j = math.exp(log_a_j)
        log_one_minus = math.log(-math.expm1(log_a_j))
        log_c_j += log_a_j - log_one_minus
        d = s0 - j
        if abs(d) <= 1e-6 * j:  # the derivative of A* at the midpoint
            u = (s0 + j) / 2.0 / a
            slope = -math.exp(_log_lst(u, ca2)) / (1.0 + u * ca2) / a
        else:
            slope = (sigma - a_j) / d
        log_term = (log_fact_c - math.lgamma(j + 1.0) - math.lgamma(n - j + 1.0)
                    - log_c_j - log_one_minus)
        logs.append(log_term)
        factors.append(1.0 + n * slope)  # positive: c (1 - A*(s)) - s is concave in s
    top = max(logs)
    if not top < math.inf:  # a load so small that the A_j underflow: no wait
        return 0.0, x
    scaled = math.fsum(math.exp(v - top) * f for v, f in zip(logs, factors, strict=True))
    if not scaled > 0.0:  # cannot happen (every factor is positive); be pessimistic if it did
        return 1.0, x
    # 1 / (1 + x e^top scaled) without overflowing e^top
    log_rest = math.log(x * scaled) + top
    prob_wait = 1.0 / (1.0 + math.exp(log_rest)) if log_rest < 700.0 else math.exp(-log_rest)
    return min(max(prob_wait, 0.0), 1.0), x


def _log_lst(u: float, ca2: float) -> float:
    """``log A*(s)`` of a gamma inter-arrival time with mean ``1 / lam`` and SCV ``ca2`` at
    ``s = u lam``: ``-log1p(u ca2) / ca2``, and ``-u`` for ``ca2 = 0`` (deterministic gaps)."""
    return -math.log1p(u * ca2) / ca2 if ca2 > 0.0 else -u


def _one_minus_sigma(rho: float, ca2: float) -> float:
    """``x = 1 - sigma`` for GI/M/c at utilisation ``0 < rho < 1``: the root in ``(0, 1)`` of
    ``h(x) = (1 - A*(x / rho)) - x`` (``A*`` at ``s = c mu x``, in units of ``lam``). ``h`` is
    concave with ``h(0) = 0``, ``h'(0) = 1 / rho - 1 > 0`` and ``h(1) < 0``, so Newton's method
    from ``x = 1`` decreases monotonically to the root. ``1 - A*`` is computed with ``expm1``,
    so ``h`` keeps its relative accuracy near the root even when ``rho`` is close to 1 (where
    ``1 - x - A*`` would be rounding noise); the iteration stops when a step no longer
    decreases ``x`` or would leave ``(0, 1]``."""
    x = 1.0
    for _ in range(400):
        log_g = _log_lst(x / rho, ca2)
        g = math.exp(log_g)
        step = (-math.expm1(log_g) - x) / (g / (rho + x * ca2) - 1.0)
        nxt = x - step
        if not 0.0 < nxt < x:
            break
        x = nxt
    return x
