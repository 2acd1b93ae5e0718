"""One source of parameters per strategy: its ``Params`` pydantic model.

scikit-learn keeps a single source of an estimator's parameters, its constructor signature, and
does no work in ``__init__``. Here the single source is the strategy's ``Params`` model: every
parameter's name, type, default, constraints and description is declared there once.
:class:`ParameterizedStrategy` gives the built-ins an ``__init__(**params)`` that validates the
keyword arguments through that model and stores each validated value as an instance attribute
of the same name (the model's ``model_dump()`` form: plain values, nested models as dicts), and
nothing else; state a strategy needs for a run is built in ``setup``.

A custom strategy need not use any of this: any class with ``decide`` works (its parameters
arrive as keyword arguments to its own ``__init__``, validated first by its ``Params`` model
when it has one).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from simscale.strategies.base import Strategy


class StrategyParams(BaseModel):
    """Base of the built-in strategies' ``Params`` models: a misspelled parameter is an error."""

    model_config = ConfigDict(extra="forbid")


def sync_period_field(description: str, default: float = Strategy.sync_period_s) -> Any:
    """The ``sync_period_s`` field (how often, in seconds, the autoscaler calls ``decide``; > 0).

    ``default`` is :attr:`Strategy.sync_period_s` (15 s) unless the strategy's own controller
    ticks at another period (Knative's KPA: 2 s).
    """
    return Field(default=default, gt=0, description=description)


class ParameterizedStrategy(Strategy):
    """A strategy whose parameters are the fields of its ``Params`` model.

    ``Cls(**params)`` validates ``params`` with ``Cls.Params`` (pydantic's ``ValidationError``
    names the field when one is wrong; unknown names are rejected) and sets one attribute per
    field to its validated value, defaults filled in. Parameters are keyword-only: the model,
    not a signature, is their one declaration.
    """

    Params: ClassVar[type[BaseModel]]

    def __init__(self, **params: Any) -> None:
        for name, value in type(self).Params.model_validate(params).model_dump().items():
            setattr(self, name, value)

    def get_params(self) -> dict[str, Any]:
        """The current value of every parameter, by name (scikit-learn's ``get_params``)."""
        return {name: getattr(self, name) for name in type(self).Params.model_fields}
