"""Fitting the service-time model of one (model, device, threads) to measured latencies.

The model (see :mod:`simscale.profiler.schema`) is

    t(b) = t50(b) * (1 + s(b) * (X - 1)),   t50(b) = alpha_ms + beta_ms * b,   median(X) = 1.

1. **Median line.** ``alpha_ms, beta_ms >= 0`` minimise the squared *relative* error of the
   line against the measured medians (weighted least squares with weights ``1/median``), so a
   1 ms batch counts as much as a 1 s batch. ``r2`` is the ordinary R^2 of the line against the
   medians. If the line misses any measured median by more than ``tolerance`` (5 %), every
   measured (batch size, median) is stored as a knot and the median is interpolated between them.
2. **Noise.** The ratios ``sample / median(b)`` of every batch size are pooled, each batch size
   weighing the same (its ratios enter as ``POOL_POINTS`` quantiles), and each distribution of
   :data:`~simscale.profiler.schema.NOISE_DISTS` is fitted with its location free (maximum
   likelihood, refined by minimum Cramer-von Mises distance), then rescaled to median 1; among
   those with a finite variance (queueing formulas need E[S^2]) the one with the smallest
   Kolmogorov-Smirnov statistic is kept.
3. **Batch-size dependent spread.** When one pooled ``X`` cannot reproduce the measured p50 and p95
   of every batch size within ``tolerance`` (a 50 us tabular batch is relatively far noisier than
   a 2 s ResNet batch), a spread factor ``s(b)`` per measured batch size is fitted too. For each
   family, the parameters of ``X`` minimise the squared relative error of the model's quantiles
   ``1 + s(b) * (X_q - 1)`` against the measured quantiles of the slow side (75, 90, 95 and 99 %)
   of every batch size, ``s(b)`` being the best (closed-form) scale for each batch size given
   ``X``; a quantile beyond which fewer than one sample lies counts in proportion. The family with
   the smallest loss is kept (KS is then only reported: it measures the body, and here the slow
   side matters), ``s`` is normalised to geometric mean 1, and the result is used when its
   ``max_rel_error`` is smaller than the pooled fit's.

``max_rel_error`` is the worst relative error of the model's p50 and p95 against the measured
p50 and p95 (``numpy.percentile``, linear interpolation) over the measured batch sizes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

from simscale.profiler.schema import NOISE_DISTS, NoiseFit, ServiceTimeFit
from simscale.profiler.service_model import ServiceTimeModel

#: Relative miss of the median line (and of the model's p50/p95) above which the fit adds detail.
TOLERANCE = 0.05
#: Quantiles of each batch size's ratios that enter the pooled noise sample.
POOL_POINTS = 100
#: Quantiles matched when the spread factor s(b) is fitted: the slow side, which is what latency
#: targets are about. The 99th percentile of a few samples (little more than their maximum)
#: counts for less (see ``_quantile_targets``).
SCALE_QUANTILES = (0.75, 0.90, 0.95, 0.99)
#: Points of the pooled sample used for the minimum-distance refinement of each candidate.
CVM_POINTS = 400


def fit_service_time(
    samples_ms: Mapping[int, Sequence[float] | np.ndarray], *, tolerance: float = TOLERANCE
) -> ServiceTimeFit:
    """Fit the service-time model to latency samples (ms per batch) keyed by batch size."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # scipy warns while the optimisers try degenerate parameters; those are rejected
        warnings.simplefilter("ignore", RuntimeWarning)
        return _fit_service_time(samples_ms, tolerance)


def _fit_service_time(
    samples_ms: Mapping[int, Sequence[float] | np.ndarray], tolerance: float
) -> ServiceTimeFit:
    if not samples_ms:
        raise ValueError("no measurements to fit")
    bs = np.array(sorted(samples_ms), dtype=int)
    data = [np.asarray(samples_ms[int(b)], dtype=float) for b in bs]
    if any(len(d) == 0 or not np.all(np.isfinite(d)) or np.any(d <= 0) for d in data):
        raise ValueError("every batch size needs positive, finite samples")
    med = np.array([np.percentile(d, 50) for d in data])
    p95 = np.array([np.percentile(d, 95) for d in data])

    alpha, beta = fit_median_line(bs, med)
    line = alpha + beta * bs
    r2 = _r2(med, line)
    knots = None
    if np.max(np.abs(line - med) / med) > tolerance:
        knots = [(int(b), float(m)) for b, m in zip(bs, med, strict=True)]

    ratios = [d / m for d, m in zip(data, med, strict=True)]
    noise = fit_noise(np.concatenate([_sketch(r) for r in ratios]))
    best = _assemble(alpha, beta, noise, r2, knots, None, bs, med, p95)
    if best.max_rel_error > tolerance and len(bs) > 1:
        scaled = _fit_scaled(ratios)
        if scaled is not None:
            noise_s, scale = scaled
            cand = _assemble(
                alpha, beta, noise_s, r2, knots,
                [(int(b), float(s)) for b, s in zip(bs, scale, strict=True)], bs, med, p95,
            )
            if cand.max_rel_error < best.max_rel_error:
                best = cand
    return best


def fit_median_line(batch_sizes: np.ndarray, medians_ms: np.ndarray) -> tuple[float, float]:
    """``(alpha_ms, beta_ms)``, both >= 0, minimising the squared relative error of
    ``alpha + beta*b`` against the medians. With one batch size the line goes through zero."""
    b = np.asarray(batch_sizes, dtype=float)
    m = np.asarray(medians_ms, dtype=float)
    if len(b) == 1:
        return 0.0, float(m[0] / b[0])
    a = np.column_stack([1.0 / m, b / m])
    res = optimize.lsq_linear(a, np.ones_like(m), bounds=(0.0, np.inf), method="bvls")
    alpha, beta = (float(v) for v in res.x)
    return alpha, beta


def fit_noise(ratios: np.ndarray) -> NoiseFit:
    """Fit each distribution of ``NOISE_DISTS`` (location free) to ``ratios`` and rescale it to
    median 1; return the one with the smallest Kolmogorov-Smirnov statistic."""
    x = np.asarray(ratios, dtype=float)
    x = x[np.isfinite(x)]
    best: NoiseFit | None = None
    for name in NOISE_DISTS:
        params = _fit_one(name, x)
        if params is None:
            continue
        frozen = getattr(stats, name)(*params)
        with np.errstate(all="ignore"):
            var = float(frozen.var())
        if not np.isfinite(var):  # e.g. fisk with c <= 2: no finite E[S^2] for the simulator
            continue
        ks = float(stats.kstest(x, frozen.cdf).statistic)
        if best is None or ks < (best.ks_statistic or np.inf):
            best = NoiseFit(dist=name, params=params, ks_statistic=ks)
    if best is None:  # degenerate data (e.g. all ratios equal): a very narrow normal
        spread = float(np.std(x)) if len(x) > 1 else 0.0
        return NoiseFit(dist="norm", params=[1.0, max(spread, 1e-6)], ks_statistic=None)
    return best


def model_errors(
    fit: ServiceTimeFit, batch_sizes: Sequence[int], p50_ms: Sequence[float],
    p95_ms: Sequence[float],
) -> np.ndarray:
    """Per batch size, the worse relative error of the model's p50 and p95 against measured."""
    b = np.asarray(batch_sizes, dtype=float)
    model = ServiceTimeModel(fit)
    e50 = np.abs(model.quantile_s(b, 0.50) * 1000.0 - p50_ms) / np.asarray(p50_ms)
    e95 = np.abs(model.quantile_s(b, 0.95) * 1000.0 - p95_ms) / np.asarray(p95_ms)
    return np.maximum(e50, e95)


# -- internals -------------------------------------------------------------------------------


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot <= 0.0:
        return 1.0
    return 1.0 - float(np.sum((y - yhat) ** 2)) / ss_tot


def _sketch(r: np.ndarray) -> np.ndarray:
    """``POOL_POINTS`` evenly spaced quantiles of ``r``: every batch size weighs the same."""
    grid = (np.arange(POOL_POINTS) + 0.5) / POOL_POINTS
    return np.quantile(r, grid)


def _fit_one(name: str, x: np.ndarray) -> list[float] | None:
    """Fit scipy.stats ``name`` (location free) to ``x``; rescale it to median 1.

    Maximum likelihood gives the starting point; the parameters are then refined by minimising
    the Cramer-von Mises distance to the data (a minimum-distance estimate), because the MLE of a
    free location chases the few extreme samples that timing on a shared machine always has.
    """
    dist = getattr(stats, name)
    xs = np.sort(x)
    if len(xs) > CVM_POINTS:
        xs = xs[np.round(np.linspace(0, len(xs) - 1, CVM_POINTS)).astype(int)]
    pos = (np.arange(len(xs)) + 0.5) / len(xs)

    def cvm(theta: np.ndarray) -> float:
        if theta[-1] <= 0:
            return np.inf
        cdf = dist.cdf(xs, *theta)
        if not np.all(np.isfinite(cdf)):
            return np.inf
        return float(np.mean((cdf - pos) ** 2))

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            start = np.asarray(dist.fit(x), dtype=float)
            if not np.all(np.isfinite(start)):
                return None
            res = optimize.minimize(
                cvm, start, method="Nelder-Mead",
                options={"maxiter": 600, "xatol": 1e-6, "fatol": 1e-10},
            )
            params = list(res.x if res.fun <= cvm(start) else start)
            median = float(dist(*params).median())
    except Exception:
        return None
    if not np.all(np.isfinite(params)) or not np.isfinite(median) or median <= 0:
        return None
    # every candidate is a location-scale family: X / median keeps the shapes and divides
    # loc and scale by the median
    params[-2] /= median
    params[-1] /= median
    if params[-1] <= 0:
        return None
    return [float(p) for p in params]


def _stretch(noise: NoiseFit, g: float) -> NoiseFit:
    """The noise ``1 + g*(X - 1)``: same family, median still 1."""
    params = list(noise.params)
    params[-2] = 1.0 + g * (params[-2] - 1.0)
    params[-1] = g * params[-1]
    return NoiseFit(dist=noise.dist, params=params, ks_statistic=noise.ks_statistic)


def _assemble(
    alpha: float, beta: float, noise: NoiseFit, r2: float,
    knots: list[tuple[int, float]] | None, scale: list[tuple[int, float]] | None,
    bs: np.ndarray, med: np.ndarray, p95: np.ndarray,
) -> ServiceTimeFit:
    fit = ServiceTimeFit(
        alpha_ms=alpha, beta_ms=beta, noise=noise, r2=r2, max_rel_error=0.0, knots=knots,
        noise_scale=scale,
    )
    err = float(np.max(model_errors(fit, bs, med, p95)))
    return fit.model_copy(update={"max_rel_error": err})


def _quantile_targets(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The measured quantiles ``SCALE_QUANTILES`` of one batch size's ratios, and the weight of
    each one's relative residual: ``min(1, n*(1 - q))``, so a quantile beyond which less than one
    sample lies (the 99th percentile of 20 samples) counts in proportion."""
    q = np.asarray(SCALE_QUANTILES)
    return np.quantile(r, q), np.minimum(1.0, len(r) * (1.0 - q))


def _best_scales(xq: np.ndarray, rq: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Per batch size, s minimising sum(w*((1 + s*(xq - 1) - rq)/rq)^2); and the total loss."""
    d = xq - 1.0  # (nq,)
    ww = w / rq**2  # (nb, nq)
    den = np.maximum((ww * d * d).sum(axis=1), 1e-300)
    s = np.maximum((ww * d * (rq - 1.0)).sum(axis=1) / den, 1e-3)
    res = (1.0 + s[:, None] * d - rq) / rq
    return s, float((w * res**2).sum())


def _fit_scaled(ratios: list[np.ndarray]) -> tuple[NoiseFit, np.ndarray] | None:
    """Fit ``X`` and ``s(b)`` jointly to the slow-side quantiles of every batch size.

    For each candidate family, the parameters of ``X`` minimise the weighted squared
    relative error of the model's quantiles ``1 + s(b)*(X_q - 1)`` against the measured ones
    (``SCALE_QUANTILES``) over all batch sizes, ``s(b)`` being the best scale for each batch size
    given ``X`` (closed form). The family with the smallest loss is kept; ``s`` is normalised to
    geometric mean 1 (the overall spread belongs to ``X``).
    """
    q = np.asarray(SCALE_QUANTILES)
    targets = [_quantile_targets(r) for r in ratios]
    rq = np.array([t[0] for t in targets])
    w = np.array([t[1] for t in targets])
    pooled = np.concatenate([_sketch(r) for r in ratios])
    best: tuple[float, NoiseFit, np.ndarray] | None = None
    for name in NOISE_DISTS:
        start = _fit_one(name, pooled)
        if start is None:
            continue
        dist = getattr(stats, name)

        def loss(theta: np.ndarray, dist: Any = dist) -> float:
            if theta[-1] <= 0:
                return np.inf
            with np.errstate(all="ignore"):
                xq = dist.ppf(q, *theta)
                med = dist.median(*theta)
            if not (np.all(np.isfinite(xq)) and np.isfinite(med) and med > 0):
                return np.inf
            if np.any(xq <= med):
                return np.inf
            return _best_scales(xq / med, rq, w)[1]

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = optimize.minimize(
                loss, np.asarray(start), method="Nelder-Mead",
                options={"maxiter": 800, "xatol": 1e-7, "fatol": 1e-12},
            )
            theta = res.x if res.fun < loss(np.asarray(start)) else np.asarray(start)
            value = loss(theta)
            if not np.isfinite(value):
                continue
            frozen = dist(*theta)
            med = float(frozen.median())
            if not np.isfinite(float(frozen.var())):
                continue
        params = [float(v) for v in theta]
        params[-2] /= med
        params[-1] /= med
        noise = NoiseFit(dist=name, params=params)
        scale, _ = _best_scales(np.asarray(noise.frozen.ppf(q)), rq, w)
        g = float(np.exp(np.mean(np.log(scale))))
        noise = _stretch(noise, g)
        scale = scale / g
        standardised = np.concatenate(
            [1.0 + (_sketch(r) - 1.0) / s for r, s in zip(ratios, scale, strict=True)]
        )
        ks = float(stats.kstest(standardised, noise.frozen.cdf).statistic)
        noise = NoiseFit(dist=name, params=noise.params, ks_statistic=ks)
        if best is None or value < best[0]:
            best = (value, noise, scale)
    if best is None:
        return None
    return best[1], best[2]
