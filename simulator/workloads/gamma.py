"""The ``gamma`` kind: a stationary renewal process with gamma-distributed inter-arrival times.

Parameters: ``rate_rps`` (mean arrivals per second, so the mean gap is ``1 / rate_rps`` seconds)
and ``cv``, the coefficient of variation (std / mean) of the gaps. The gaps are independent
``Gamma(shape = 1/cv**2, scale = cv**2 / rate_rps)``: ``cv = 1`` is a Poisson process, ``cv < 1``
is more regular (``cv = 0``: exactly periodic), ``cv > 1`` is burstier. The arrivals are not
Poisson unless ``cv = 1``: the number in a long window of length ``T`` has mean
``rate_rps * T`` and variance about ``cv**2 * rate_rps * T``.

**The first arrival** is drawn from the equilibrium (stationary) renewal distribution, not as a
plain first gap: the gap that straddles time 0 is length-biased, with density ``x f(x) / mean``,
which for a gamma density is ``Gamma(shape + 1, scale)``, and time 0 falls uniformly inside it, so
the first arrival is ``U * Gamma(shape + 1, scale)`` with ``U`` uniform on ``[0, 1)`` (for
``cv = 0``: uniform on ``[0, 1/rate_rps)``). This makes the process stationary from time 0 (as if
it had been running forever, like the ``mmpp`` kind's stationary start), so that:

- ``rate`` is the constant ``rate_rps`` for ``t >= 0``: the true intensity at every time;
- ``expected`` is ``rate_rps * duration_s``, **exact** for every duration.

Starting with a plain first gap instead would make time 0 a hidden arrival epoch, an artefact
at the start of every run: the expected count would be the renewal function ``m(T) = sum_n
P(Gamma(n * shape, scale) <= T)``, which tends to ``rate_rps * T + (cv**2 - 1) / 2`` (more early
arrivals when ``cv > 1``, fewer when ``cv < 1``); only at ``cv = 1`` do both starts agree.

Generation is exact in distribution and vectorised: the gaps are drawn in chunks sized to the
expected remaining count plus four standard deviations (so one chunk almost always suffices; at
most 2**22 gaps, 32 MiB, per chunk), cumulated from the previous arrival, and cut at
``duration_s``. The chunk sizes depend only on the parameters and the duration, so the same
generator state gives the same arrays. ``cv`` is at most 10: beyond, most gaps underflow to 0
and arrivals would come in coincident bursts that the floats cannot separate.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from simscale.simulator.fields import NonNegFloat
from simscale.simulator.workloads.base import (
    EMPTY,
    RateFunction,
    WorkloadContext,
    WorkloadKind,
    register,
)

__all__ = ["GammaWorkload"]

#: most gaps drawn at once (memory: 8 bytes each, twice)
_MAX_CHUNK = 1 << 22


@register
class GammaWorkload(WorkloadKind):
    """Renewal arrivals with independent gamma gaps: mean ``1 / rate_rps`` seconds, coefficient of
    variation ``cv`` (1: Poisson; 0: periodic; > 1: bursty), started in equilibrium."""

    kind: Literal["gamma"]
    rate_rps: NonNegFloat
    cv: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]

    def arrivals(self, duration_s: float, rng: np.random.Generator, ctx: WorkloadContext
                 ) -> np.ndarray:
        """The arrival times in ``[0, duration_s)``, sorted; none when ``rate_rps`` is 0."""
        if self.rate_rps == 0:
            return EMPTY.copy()
        if self.cv == 0:
            first = rng.random() / self.rate_rps
            n = math.ceil((duration_s - first) * self.rate_rps)
            out = first + np.arange(max(n, 0), dtype=np.float64) / self.rate_rps
            return out[out < duration_s]
        cv2 = self.cv * self.cv
        shape, scale = 1.0 / cv2, cv2 / self.rate_rps
        t = rng.random() * rng.gamma(shape + 1.0, scale)  # equilibrium first arrival
        chunks: list[np.ndarray] = []
        while t < duration_s:
            n_left = (duration_s - t) * self.rate_rps
            m = int(min(max(64.0, n_left + 4.0 * self.cv * math.sqrt(n_left) + 16.0), _MAX_CHUNK))
            ends = np.cumsum(rng.gamma(shape, scale, size=m))
            ends += t  # ends[k]: the arrival k + 1 gaps after t
            chunk = np.concatenate(([t], ends[:-1]))
            chunks.append(chunk[chunk < duration_s])
            t = float(ends[-1])
        return np.concatenate(chunks) if chunks else EMPTY.copy()

    def rate(self, ctx: WorkloadContext) -> RateFunction:
        """The constant ``rate_rps`` for ``t >= 0`` (the intensity of the stationary process)."""
        rate_rps = self.rate_rps
        return lambda t: np.where(np.asarray(t, dtype=np.float64) >= 0, rate_rps, 0.0)

    def expected(self, duration_s: float, ctx: WorkloadContext) -> float:
        """``rate_rps * duration_s``: exact, because the process starts in equilibrium."""
        return self.rate_rps * duration_s
