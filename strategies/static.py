"""``static``: a fixed number of replicas, whatever the load.

The baseline every autoscaler is compared with: the cost of always being provisioned for
``replicas`` (by default the service's ``replicas.initial``). Crashed replicas are replaced at
the next sync period.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from simscale.strategies.base import Decision, Observation, ServiceContext, Strategy


class StaticParams(BaseModel):
    """Parameters of :class:`Static`."""

    model_config = ConfigDict(extra="forbid")

    replicas: int | None = Field(
        default=None, ge=0, description="fixed replica count; default: the service's initial"
    )
    sync_period_s: float = Field(default=15.0, gt=0, description="how often to re-check (s)")


class Static(Strategy):
    """Keep ``replicas`` replicas (clamped to the service's bounds)."""

    name = "static"
    source = "baseline: fixed provisioning (no autoscaler)"
    Params = StaticParams

    def __init__(self, replicas: int | None = None, sync_period_s: float = 15.0):
        self.replicas = replicas
        self.sync_period_s = sync_period_s

    def setup(self, ctx: ServiceContext) -> None:
        super().setup(ctx)
        self._target = ctx.initial_replicas if self.replicas is None else self.replicas

    def decide(self, obs: Observation) -> Decision:
        return Decision(replicas=min(max(self._target, obs.min_replicas), obs.max_replicas))
