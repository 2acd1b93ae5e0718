"""The profile's noise distributions without scipy.stats: quantiles, mean and variance.

A profile's service-time noise (:class:`~simscale.profiler.schema.NoiseFit`) is one of five
scipy.stats families. Importing scipy.stats takes about half a second, longer than a small
simulation, and a simulation only needs each family's quantile function (to turn a uniform into
a noise draw) and its mean and variance (for the queueing models). :class:`NoiseDistribution`
computes them with :mod:`scipy.special` and numpy the way scipy.stats does inside (its
``_ppf``/``_stats``/``_munp``, then ``* scale + loc``), operation for operation, so the numbers
are scipy.stats' own, bit for bit (``tests/test_noise_distribution.py`` compares them on the
shipped profile's fits and on random parameters).

Parameters are scipy's positional ones: the shape(s), then ``loc`` and ``scale`` (both
optional: 0 and 1). Invalid parameters (a non-positive shape or scale) give NaN, as
scipy.stats does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FAMILIES", "NoiseDistribution"]

#: the families and their number of shape parameters
FAMILIES: dict[str, int] = {"lognorm": 1, "gamma": 1, "weibull_min": 1, "fisk": 1, "norm": 0}


class NoiseDistribution:
    """``dist(*params)`` of scipy.stats, frozen: :meth:`ppf`, :meth:`mean`, :meth:`var`."""

    def __init__(self, dist: str, params: Sequence[float]) -> None:
        if dist not in FAMILIES:
            raise ValueError(f"unknown noise family {dist!r}")
        k = FAMILIES[dist]
        values = [float(p) for p in params]
        if not k <= len(values) <= k + 2:
            raise ValueError(f"{dist} takes {k} shape parameter(s), loc and scale; "
                             f"got {len(values)} values")
        self.dist = dist
        self.shape = values[0] if k else math.nan
        self.loc = values[k] if len(values) > k else 0.0
        self.scale = values[k + 1] if len(values) > k + 1 else 1.0
        #: scipy's argument check: a positive shape, a positive scale, a loc that is a number
        self.valid = ((not k or self.shape > 0) and self.scale > 0
                      and self.loc == self.loc)

    # ------------------------------------------------------------------ quantiles
    def ppf(self, q: Any) -> Any:
        """The ``q`` quantile(s), as ``scipy.stats.<dist>(*params).ppf(q)``: ``_ppf(q) *
        scale + loc`` inside (0, 1), the support's ends at 0 and 1, NaN outside or for invalid
        parameters. A scalar for a scalar ``q``."""
        q = np.asarray(q, dtype=np.float64)
        out = np.full(q.shape, np.nan)
        if self.valid:
            inner = (q > 0) & (q < 1)
            lo, hi = self._support()
            out[q == 0] = lo * self.scale + self.loc
            out[q == 1] = hi * self.scale + self.loc
            if np.any(inner):
                # scipy's argsreduce: with every q inside, the parameters are broadcast to q's
                # shape (contiguous copies); else they stay one-element arrays (numpy's power
                # takes another loop for each, and the two can differ in the last bit)
                width = q.size if bool(np.all(inner)) else 1
                shape, scale, loc = (np.full(width, v)
                                     for v in (self.shape, self.scale, self.loc))
                out[inner] = self._ppf(q[inner], shape) * scale + loc
        return out[()] if out.ndim == 0 else out

    def _support(self) -> tuple[float, float]:
        return (-math.inf, math.inf) if self.dist == "norm" else (0.0, math.inf)

    def _ppf(self, q: np.ndarray, s: np.ndarray) -> np.ndarray:
        from scipy import special as sc

        if self.dist == "norm":
            return sc.ndtri(q)
        if self.dist == "lognorm":
            return np.exp(s * sc.ndtri(q))
        if self.dist == "gamma":
            return sc.gammaincinv(s, q)
        if self.dist == "weibull_min":
            return pow(-sc.log1p(-q), 1.0 / s)
        d = 1.0  # fisk is burr with d = 1
        return (q**(-1.0 / d) - 1)**(-1.0 / s)

    # ------------------------------------------------------------------ moments
    def mean(self) -> float:
        """The mean, as ``scipy.stats.<dist>(*params).mean()`` (NaN or inf where it has
        none)."""
        if not self.valid:
            return math.nan
        mu, _ = self._moments()
        return float((mu * np.full(1, self.scale) + np.full(1, self.loc))[0])

    def var(self) -> float:
        """The variance, as ``scipy.stats.<dist>(*params).var()``."""
        if not self.valid:
            return math.nan
        _, mu2 = self._moments()
        scale = np.full(1, self.scale)
        return float((mu2 * scale * scale)[0])

    def _moments(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, mu2)`` of the standard form (loc 0, scale 1): each family's ``_stats``, or
        ``_munp`` where it has none, as scipy.stats' ``stats()`` combines them, on
        one-element arrays as its argsreduce hands them over (a numpy scalar's ``** 2`` calls
        ``pow`` and can differ in the last bit from an array's, which squares)."""
        from scipy import special as sc

        s = np.full(1, self.shape)
        if self.dist == "norm":
            return np.full(1, 0.0), np.full(1, 1.0)
        if self.dist == "lognorm":
            p = np.exp(s * s)
            return np.sqrt(p), p * (p - 1)
        if self.dist == "gamma":
            return s, s
        if self.dist == "weibull_min":
            mu = sc.gamma(1.0 + 1 * 1.0 / s)
            mu2p = sc.gamma(1.0 + 2 * 1.0 / s)
            with np.errstate(invalid="ignore"):
                return mu, np.where(~np.isinf(mu), mu2p - mu**2, np.inf)
        # fisk: burr's _stats with d = 1
        d = 1.0
        nc = np.arange(1, 5).reshape(4, 1) / s
        e1, e2, _, _ = sc.beta(d + nc, 1. - nc) * d
        mu = np.where(s > 1.0, e1, np.nan)
        return mu, np.where(s > 2.0, e2 - mu**2, np.nan)
