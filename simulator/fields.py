"""Building blocks shared by every model of the scenario format.

The scenario models (:mod:`simscale.simulator.scenario`) and the workload kinds
(:mod:`simscale.simulator.workloads`) both use them, so they live below both: neither imports
the other for them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FrozenModel", "NonNegFloat", "PositiveFloat"]

#: a finite number > 0 (units come from the field's name)
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: a finite number >= 0 (units come from the field's name)
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class FrozenModel(BaseModel):
    """A scenario model: immutable once validated, and unknown keys are errors (a misspelt key
    never passes silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
