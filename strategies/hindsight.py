"""``hindsight``: a fixed schedule of replica counts, one per decision period.

Not a real autoscaler: the schedule is found offline over the realized arrivals by
:mod:`simscale.simulator.bounds` and handed to the exact engine, so that its cost is what an
achievable schedule costs (an upper bound on the optimal cost at the attainment it reaches).
Decision ``k`` (at ``(k + 1) * period_s`` seconds, the engine's ``k``-th call) asks for
``counts[k]`` replicas (the last count after the schedule ends); the engine clamps it to the
service's ``replicas.min..max`` as for every strategy. The size and batching stay the service's.
"""

from __future__ import annotations

from collections.abc import Sequence

from simscale.strategies.base import Decision, Observation, Strategy

__all__ = ["Schedule"]


class Schedule(Strategy):
    """Replica counts decided in advance: ``counts[k]`` at the ``k``-th decision, every
    ``period_s`` seconds (first at ``period_s``)."""

    name = "hindsight"

    def __init__(self, counts: Sequence[int], period_s: float = Strategy.sync_period_s) -> None:
        self.counts = [int(c) for c in counts]
        self.sync_period_s = float(period_s)

    def decide(self, obs: Observation) -> Decision:
        """The scheduled count of the decision at ``obs.time_s``."""
        if not self.counts:
            return Decision(replicas=obs.replicas.desired_total)
        k = int(round(obs.time_s / self.sync_period_s)) - 1
        return Decision(replicas=self.counts[min(max(k, 0), len(self.counts) - 1)])
