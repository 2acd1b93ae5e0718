"""Scaling strategies: one class per strategy with ``decide(obs) -> Decision``.

:func:`make_strategy` builds a strategy from a scenario's strategy entry: a built-in name from
:data:`BUILTINS`, or ``package.module:ClassName`` for a custom strategy. Parameters are validated
by the class's ``Params`` pydantic model when it has one; errors name the strategy and field.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from simscale.errors import UserError, pydantic_error_to_user_error
from simscale.strategies.base import (
    Decision,
    Observation,
    ReplicaCounts,
    ServiceContext,
    SizeOption,
    Strategy,
    StrategyLike,
)

__all__ = [
    "BUILTINS",
    "Decision",
    "Observation",
    "ReplicaCounts",
    "ServiceContext",
    "SizeOption",
    "Strategy",
    "StrategyLike",
    "make_strategy",
    "strategy_class",
]

#: built-in strategy name -> "module:Class" (imported on demand)
BUILTINS: dict[str, str] = {
    "static": "simscale.strategies.static:Static",
}


def strategy_class(name: str, *, source: str | None = None) -> type:
    """The class of built-in strategy ``name`` or of ``module:Class``."""
    target = BUILTINS.get(name, name)
    if ":" not in target:
        raise UserError(
            f"unknown strategy '{name}' (built-in: {', '.join(sorted(BUILTINS))}; "
            "or give module:Class)",
            source=source,
            field="strategies",
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import strategy module '{module_name}': {exc}", source=source,
                        field="strategies") from None
    cls = getattr(module, class_name, None)
    if cls is None or not callable(getattr(cls, "decide", None)):
        raise UserError(f"'{target}' is not a class with a decide(obs) method", source=source,
                        field="strategies")
    return cls


def make_strategy(name: str, params: dict[str, Any] | None = None, *,
                  source: str | None = None) -> Any:
    """Build strategy ``name`` with ``params``; validate them with its ``Params`` model."""
    cls = strategy_class(name, source=source)
    params = dict(params or {})
    schema = getattr(cls, "Params", None)
    if schema is not None:
        try:
            params = schema.model_validate(params).model_dump()
        except ValidationError as exc:
            err = pydantic_error_to_user_error(exc, source)
            field = f"strategies.{name}" + (f".{err.field}" if err.field else "")
            raise UserError(err.message, source=source, field=field) from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise UserError(f"bad parameters for strategy '{name}': {exc}", source=source,
                        field=f"strategies.{name}") from None
