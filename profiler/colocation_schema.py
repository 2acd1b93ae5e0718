"""The co-location slowdown of a configuration, as stored in a profile (``ConfigProfile.
colocation``; see :mod:`simscale.profiler.colocation` for how it is measured).

Replicas that share a host share its cores, caches and memory bandwidth: a batch takes longer
while other batches are in service on the same host. The profiler starts ``k`` replicas of one
(model, device, threads) on this host, keeps all ``k`` busy with back-to-back batches of
``batch_size`` items at once, for ``k = 1`` up to the host's cores, and stores per ``k`` the
median service time (ms) of a batch while all ``k`` were busy. A batch that starts while
``n`` other batches are in service on its host takes ``slowdown(n)`` times its time alone.

Units are in the names: ``_ms`` milliseconds. The factors are ratios of two medians measured on
the same machine, so :meth:`Colocation.scaled` (a profile rescaled to another machine's speed)
keeps them and multiplies only the times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

_NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Colocation(BaseModel):
    """Co-location slowdown of one (model, device, threads): index ``i`` of every list is
    ``i`` other batches in service on the same host (``k = i + 1`` replicas busy at once).

    ``slowdown_by_others[n]`` is ``p50_ms[n] / p50_ms[0]``: ``[0]`` is exactly 1. A factor below
    1 is stored as measured (noise, or a faster clock with more cores busy is possible): it is
    never clamped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(ge=1, description="items per batch of every replica")
    host_cores: int = Field(ge=1, description="the host's cores (os.cpu_count()) when measured")
    slowdown_by_others: Annotated[list[_Positive], Field(min_length=1)] = Field(
        description="[n]: the median service time with n other batches in service on the host "
        "over the median alone; [0] == 1.0")
    p50_ms: Annotated[list[_Positive], Field(min_length=1)] = Field(
        description="[n]: the median of the rounds' medians (ms) of a batch's service time (the "
        "replica's own time around predict) while n + 1 replicas were busy at once")
    round_p50_ms: list[Annotated[list[_NonNeg], Field(min_length=1)]] = Field(
        description="[n]: the median (ms) of each round with n + 1 replicas busy, in the order "
        "the rounds ran")
    samples: list[Annotated[int, Field(ge=1)]] = Field(
        description="[n]: batches that ran while all n + 1 replicas were busy, over all rounds "
        "and replicas")

    @model_validator(mode="after")
    def _consistent(self) -> Colocation:
        n = len(self.slowdown_by_others)
        if self.slowdown_by_others[0] != 1.0:
            raise ValueError("slowdown_by_others[0] must be 1.0 (no other batch in service)")
        if not len(self.p50_ms) == len(self.round_p50_ms) == len(self.samples) == n:
            raise ValueError("slowdown_by_others, p50_ms, round_p50_ms and samples must have "
                             "one entry per number of replicas busy")
        return self

    @property
    def max_replicas(self) -> int:
        """The most replicas measured busy at once (``len(slowdown_by_others)``)."""
        return len(self.slowdown_by_others)

    def slowdown(self, n_others: int) -> float:
        """The factor on a batch's service time while ``n_others`` (>= 0) other batches are in
        service on the same host.

        Measured for ``n_others < max_replicas``; beyond, extrapolated linearly in ``n_others``
        from the last two measured factors, with the slope held at 0 when it is negative (more
        batches never make a host faster; a falling last step is measurement noise), so the
        factor stays at least the last measured one and > 0. With one measured point (a
        one-core host) there is no slope: the factor is 1.
        """
        n = int(n_others)
        if n < 0:
            raise ValueError(f"n_others must be >= 0, not {n_others!r}")
        return slowdown_factor(self.slowdown_by_others, n)

    def scaled(self, factor: float) -> Colocation:
        """A copy with the times (``p50_ms``, ``round_p50_ms``) multiplied by ``factor``; the
        factors are ratios and stay."""
        return self.model_copy(update={
            "p50_ms": [v * factor for v in self.p50_ms],
            "round_p50_ms": [[v * factor for v in r] for r in self.round_p50_ms]})


def slowdown_factor(factors: Sequence[float], n: int) -> float:
    """``factors[n]`` (the factor with ``n >= 0`` other batches in service), or beyond the list
    its linear extrapolation from the last two, the slope held at 0 when negative (the rule of
    :meth:`Colocation.slowdown`, shared with the simulator's factor tables)."""
    if n < len(factors):
        return float(factors[n])
    last = float(factors[-1])
    if len(factors) < 2:
        return last
    return last + max(0.0, last - float(factors[-2])) * (n - (len(factors) - 1))


def colocation_slowdown(colocation: Colocation | None, n_others: int) -> float:
    """:meth:`Colocation.slowdown` of ``colocation``, or 1.0 when it was not measured (older
    profiles, CUDA configurations)."""
    return 1.0 if colocation is None else colocation.slowdown(n_others)
