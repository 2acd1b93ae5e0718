"""A custom strategy: scale in proportion to the queue, usable from a scenario as

.. code-block:: yaml

    strategies:
      - name: examples.custom_strategy:QueueProportional
        requests_per_replica: 8
        sync_period_s: 10

A custom strategy is any importable class with ``decide(obs) -> Decision``; its parameters arrive
as keyword arguments to ``__init__`` and are validated by its ``Params`` pydantic model when it
has one. ``examples`` is not part of the installed package, so run simscale from the repository
root with it on the import path, e.g. ``PYTHONPATH=. simscale simulate scenario.yaml`` (or put
your own module anywhere on ``PYTHONPATH`` and name it ``your_module:YourClass``).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from simscale.strategies import Decision, Observation, Strategy


class QueueProportionalParams(BaseModel):
    """Parameters of :class:`QueueProportional`."""

    model_config = ConfigDict(extra="forbid")

    requests_per_replica: float = Field(default=8.0, gt=0,
                                        description="requests in flight one replica should hold")
    sync_period_s: float = Field(default=10.0, gt=0, description="how often to decide (s)")


class QueueProportional(Strategy):
    """Ask for ``ceil(in_flight / requests_per_replica)`` replicas, within the bounds."""

    name = "queue_proportional"
    source = "example custom strategy (examples/custom_strategy.py)"
    Params = QueueProportionalParams

    def __init__(self, requests_per_replica: float = 8.0, sync_period_s: float = 10.0):
        self.requests_per_replica = requests_per_replica
        self.sync_period_s = sync_period_s

    def decide(self, obs: Observation) -> Decision:
        wanted = math.ceil(obs.in_flight / self.requests_per_replica)
        return Decision(replicas=min(max(wanted, obs.min_replicas), obs.max_replicas),
                        info={"in_flight": float(obs.in_flight)})
