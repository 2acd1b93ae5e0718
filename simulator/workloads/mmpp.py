"""The ``mmpp`` kind: a Markov-modulated Poisson process.

The state path is drawn first (vectorised in chunks): the first state from the stationary
distribution (``P(i)`` proportional to ``mean_sojourn_s[i]``; the first stay is a full
exponential, which is exact by memorylessness), exponential stays, each next state uniform among
the *other* states. Given the path the rate is piecewise constant, so arrivals are drawn by
:func:`~simscale.simulator.workloads.pwl.pwl_arrivals`. With one state it is a constant-rate
Poisson process.

Because the path starts stationary, ``expected`` is exactly ``stationary mean rate *
duration_s``, and ``rate`` is that mean (constant in time) unless the context carries the path
that was actually drawn (:class:`~simscale.simulator.workloads.base.WorkloadContext`). A run that
would change state more than 5e7 times (its path would not fit in memory) is refused with a
:class:`~simscale.errors.UserError`. Times in seconds, rates in requests per second.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from simscale.errors import UserError
from simscale.simulator.fields import FrozenModel, NonNegFloat, PositiveFloat
from simscale.simulator.workloads.base import (
    RateFunction,
    WorkloadContext,
    WorkloadKind,
    register,
)
from simscale.simulator.workloads.pwl import Pwl, pwl_arrivals

__all__ = ["MmppState", "MmppWorkload", "mmpp_mean_rate", "mmpp_path", "mmpp_stationary"]

#: refuse MMPP paths with more expected state changes than this (memory: ~24 bytes each)
_MMPP_MAX_STAYS = 5e7


class MmppState(FrozenModel):
    rate_rps: NonNegFloat
    mean_sojourn_s: PositiveFloat


@register
class MmppWorkload(WorkloadKind):
    """Markov-modulated Poisson process: Poisson arrivals at the current state's ``rate_rps``;
    each stay is exponential with ``mean_sojourn_s``, then the next state is drawn uniformly
    among the others. The first state is drawn from the stationary distribution."""

    kind: Literal["mmpp"]
    states: list[MmppState] = Field(min_length=1)

    def arrivals(self, duration_s: float, rng: np.random.Generator, ctx: WorkloadContext
                 ) -> np.ndarray:
        """Draw the state path (recorded in ``ctx.drawn_paths``), then Poisson arrivals on it."""
        path = mmpp_path(self, duration_s, rng)
        if ctx.drawn_paths is not None:
            ctx.drawn_paths.append(path)
        return pwl_arrivals(path, duration_s, rng)

    def rate(self, ctx: WorkloadContext) -> RateFunction:
        """The next recorded path's rate, or the stationary mean rate when none are given."""
        if ctx.recorded_paths is not None:
            return next(ctx.recorded_paths).rate
        mean = mmpp_mean_rate(self)
        return lambda t: np.where(np.asarray(t, dtype=np.float64) >= 0, mean, 0.0)

    def expected(self, duration_s: float, ctx: WorkloadContext) -> float:
        """Stationary mean rate times ``duration_s`` (exact: the path starts stationary)."""
        return mmpp_mean_rate(self) * duration_s


def mmpp_stationary(w: MmppWorkload) -> np.ndarray:
    """The stationary distribution of the states (proportional to their mean sojourns)."""
    soj = np.array([s.mean_sojourn_s for s in w.states], dtype=np.float64)
    return soj / soj.sum()


def mmpp_mean_rate(w: MmppWorkload) -> float:
    """The stationary mean rate ``sum_i pi_i * rate_rps[i]``, requests per second."""
    rates = np.array([s.rate_rps for s in w.states], dtype=np.float64)
    return float(np.dot(mmpp_stationary(w), rates))


def mmpp_path(w: MmppWorkload, duration: float, rng: np.random.Generator) -> Pwl:
    """Draw the state path over ``[0, duration)`` (seconds) and return its (step) rate."""
    n = len(w.states)
    rates = np.array([s.rate_rps for s in w.states], dtype=np.float64)
    if n == 1:
        return Pwl.build([0.0], [], [], rates[0])
    soj = np.array([s.mean_sojourn_s for s in w.states], dtype=np.float64)
    cur = int(rng.choice(n, p=mmpp_stationary(w)))
    cycle = float(soj.mean())  # mean stay under the uniform jump chain
    if duration / cycle > _MMPP_MAX_STAYS:
        raise UserError(
            f"the MMPP would change state about {duration / cycle:.3g} times in "
            f"{duration:g} s (at most {_MMPP_MAX_STAYS:.0e}); lengthen mean_sojourn_s",
            field="workload.states")
    t = 0.0
    starts: list[np.ndarray] = []
    states: list[np.ndarray] = []
    while t < duration:
        m = int(min(max(64, 1.25 * (duration - t) / cycle + 16), 1 << 22))
        jumps = rng.integers(1, n, size=m)  # next state: uniform among the others
        steps = np.empty(m, dtype=np.int64)
        steps[0] = 0
        np.cumsum(jumps[:-1], out=steps[1:])
        st = (cur + steps) % n
        ends = t + np.cumsum(rng.standard_exponential(m) * soj[st])
        starts.append(np.concatenate(([t], ends[:-1])))
        states.append(st)
        cur = int((st[-1] + jumps[-1]) % n)
        t = float(ends[-1])
    start = np.concatenate(starts)
    state = np.concatenate(states)
    keep = start < duration
    start, state = start[keep], state[keep]
    r = rates[state]
    knots = np.append(start, duration)
    return Pwl(knots, r, r, 0.0)

