"""``static``: a fixed number of replicas, whatever the load.

The baseline every autoscaler is compared with: the cost of always being provisioned for
``replicas`` (by default the service's ``replicas.initial``). Crashed replicas are replaced at
the next sync period.
"""

from __future__ import annotations

from pydantic import Field

from simscale.strategies.base import Decision, Observation, ServiceContext
from simscale.strategies.params import ParameterizedStrategy, StrategyParams, sync_period_field


class StaticParams(StrategyParams):
    """Parameters of :class:`Static`."""

    replicas: int | None = Field(
        default=None, ge=0, description="fixed replica count; default: the service's initial"
    )
    sync_period_s: float = sync_period_field("how often to re-check (s)")


class Static(ParameterizedStrategy):
    """Keep ``replicas`` replicas (clamped to the service's bounds); parameters:
    :class:`StaticParams`."""

    name = "static"
    source = "baseline: fixed provisioning (no autoscaler)"
    Params = StaticParams

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        self._target = ctx.initial_replicas if self.replicas is None else self.replicas

    def decide(self, obs: Observation) -> Decision:
        return Decision(replicas=min(max(self._target, obs.min_replicas), obs.max_replicas))
