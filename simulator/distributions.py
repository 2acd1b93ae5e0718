"""Random durations (service times, cold starts) by inverse CDF.

A :class:`~simscale.simulator.scenario.Distribution` is given by its mean and coefficient of
variation (``cv`` = std / mean). :func:`duration_sampler` turns it into a vectorised function
from uniforms ``u`` in [0, 1) to durations in **seconds**, so the caller owns the random stream
(common random numbers: the same uniforms give the same durations for every strategy, and a
larger mean gives a pointwise larger duration).

Parameterisations (``m`` = mean in seconds, ``c`` = cv):

- ``exponential``: rate ``1/m``; cv is always 1.
- ``deterministic``: always ``m``; cv is always 0.
- ``lognormal``: ``sigma^2 = ln(1 + c^2)``, ``mu = ln(m) - sigma^2 / 2``.
- ``gamma``: shape ``1/c^2``, scale ``m*c^2``.
- ``uniform``: on ``[m(1 - sqrt(3) c), m(1 + sqrt(3) c)]`` (``c <= 1/sqrt(3)``).

With ``c == 0`` the lognormal, gamma and uniform distributions are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from simscale.simulator.scenario import Distribution

__all__ = ["duration_sampler", "distribution_moments", "sample_durations"]

Sampler = Callable[[np.ndarray], np.ndarray]


def distribution_moments(dist: Distribution) -> tuple[float, float]:
    """Return ``(mean_s, scv)``: the mean in seconds and the squared coefficient of variation
    actually used (1 for exponential, 0 for deterministic, ``cv**2`` otherwise)."""
    cv = dist.effective_cv
    return float(dist.mean_seconds), float(cv * cv)


def duration_sampler(dist: Distribution) -> Sampler:
    """Return ``f(u) -> durations_s``: the inverse CDF of ``dist``, vectorised.

    ``u`` is an array of uniforms in [0, 1) (``u = 0`` maps to the lower end of the support);
    the result is a float64 array of the same shape, in seconds, non-negative. The function is
    monotone non-decreasing in ``u``.
    """
    mean = float(dist.mean_seconds)
    cv = float(dist.effective_cv)
    kind = dist.dist
    if kind == "deterministic" or cv == 0.0:

        def deterministic(u: np.ndarray) -> np.ndarray:
            return np.full(np.shape(u), mean, dtype=np.float64)

        return deterministic
    if kind == "exponential":

        def exponential(u: np.ndarray) -> np.ndarray:
            out = np.negative(np.asarray(u, dtype=np.float64))
            np.log1p(out, out=out)
            out *= -mean  # (in place: the same floats as -mean * log1p(-u))
            return out

        return exponential
    if kind == "lognormal":
        from scipy import special

        sigma2 = math.log1p(cv * cv)
        sigma = math.sqrt(sigma2)
        mu = math.log(mean) - sigma2 / 2.0

        def lognormal(u: np.ndarray) -> np.ndarray:
            return np.exp(mu + sigma * special.ndtri(np.asarray(u, dtype=np.float64)))

        return lognormal
    if kind == "gamma":
        from scipy import special

        shape = 1.0 / (cv * cv)
        scale = mean * cv * cv

        def gamma(u: np.ndarray) -> np.ndarray:
            return scale * special.gammaincinv(shape, np.asarray(u, dtype=np.float64))

        return gamma
    if kind == "uniform":
        half_width = math.sqrt(3.0) * cv * mean
        low = mean - half_width

        def uniform(u: np.ndarray) -> np.ndarray:
            return low + 2.0 * half_width * np.asarray(u, dtype=np.float64)

        return uniform
    raise ValueError(f"unknown distribution {kind!r}")  # unreachable: the model validates it


def sample_durations(dist: Distribution, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw ``size`` durations in seconds from ``dist`` using ``rng`` (one uniform each)."""
    return duration_sampler(dist)(rng.random(size))
