"""The ``sum`` kind: the superposition of independent workloads of any registered kinds.

Each part is generated in turn from the same ``rng`` (in the order written) and the results are
merged by a stable sort; rates and expected counts add; input files are the parts', in order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from simscale.simulator.workloads.base import (
    EMPTY,
    RateFunction,
    Workload,
    WorkloadContext,
    WorkloadKind,
    rebuild_on_register,
    register,
)

__all__ = ["SumWorkload"]


@register
class SumWorkload(WorkloadKind):
    """The superposition of several workloads (rates add; traces are merged)."""

    kind: Literal["sum"]
    workloads: list[Workload] = Field(min_length=1)

    def arrivals(self, duration_s: float, rng: np.random.Generator, ctx: WorkloadContext
                 ) -> np.ndarray:
        """Every part's arrivals, merged (stable sort)."""
        parts = [p.arrivals(duration_s, rng, ctx) for p in self.workloads]
        out = np.concatenate(parts) if parts else EMPTY.copy()
        out.sort(kind="stable")
        return out

    def rate(self, ctx: WorkloadContext) -> RateFunction:
        """The sum of the parts' rates."""
        parts = [p.rate(ctx) for p in self.workloads]

        def total(t: np.ndarray) -> np.ndarray:
            t = np.asarray(t, dtype=np.float64)
            out = np.zeros(t.shape, dtype=np.float64)
            for f in parts:
                out += f(t)
            return out

        return total

    def expected(self, duration_s: float, ctx: WorkloadContext) -> float:
        """The sum of the parts' expected counts."""
        return sum(p.expected(duration_s, ctx) for p in self.workloads)

    def input_files(self) -> list[str]:
        """The parts' input files, in order."""
        return [f for p in self.workloads for f in p.input_files()]


# its parts may be of any kind, including ones registered later
rebuild_on_register(SumWorkload)
