"""Scaling strategies: one class per strategy with ``decide(obs) -> Decision``.

:func:`make_strategy` builds a strategy from a scenario's strategy entry: a built-in name from
:data:`BUILTINS`, or ``package.module:ClassName`` for a custom strategy. Parameters are validated
by the class's ``Params`` pydantic model when it has one; errors name the strategy and field.
The built-ins derive from :class:`ParameterizedStrategy`, whose ``Params`` model is the one
declaration of their parameters (a custom strategy may do the same, or not).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
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
    StrategyFailed,
    StrategyLike,
    describe_exception,
)
from simscale.strategies.params import ParameterizedStrategy, StrategyParams

__all__ = [
    "BUILTINS",
    "Decision",
    "Observation",
    "ParameterizedStrategy",
    "ReplicaCounts",
    "ServiceContext",
    "SizeOption",
    "Strategy",
    "StrategyFailed",
    "StrategyLike",
    "StrategyParams",
    "describe_strategy",
    "list_strategies",
    "make_strategy",
    "strategy_class",
]

#: built-in strategy name -> "module:Class" (imported on demand)
BUILTINS: dict[str, str] = {
    "static": "simscale.strategies.static:Static",
    "threshold": "simscale.strategies.threshold:Threshold",
    "hpa": "simscale.strategies.hpa:Hpa",
    "kpa": "simscale.strategies.kpa:Kpa",
    "ray_serve": "simscale.strategies.ray_serve:RayServe",
    "predictive": "simscale.strategies.predictive:Predictive",
    "cost_aware": "simscale.strategies.cost_aware:CostAware",
    "oracle": "simscale.strategies.oracle:Oracle",
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
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a broken module (syntax error, exit) too
        what = str(exc) if isinstance(exc, ImportError) else describe_exception(exc)
        if isinstance(exc, SyntaxError):
            what = f"SyntaxError: {exc.msg} at {exc.filename}:{exc.lineno}"
        raise UserError(f"cannot import strategy module '{module_name}': {what}", source=source,
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
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the strategy's own __init__ failed
        raise UserError(f"strategy '{name}' could not be built: {describe_exception(exc)}",
                        source=source, field=f"strategies.{name}") from None


def _first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines()]
    return re.sub(r"^``[\w.:]+``:\s*", "", lines[0]) if lines else ""


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return re.sub(r"\b[\w]+\.", "", str(annotation).replace("typing.", ""))


def describe_strategy(name: str) -> dict[str, Any]:
    """What ``simscale strategies show NAME`` prints, for a built-in name or ``module:Class``.

    Returns ``{"name", "summary", "source", "params": [{"name", "type", "default",
    "description"}]}``: ``summary`` is the first line of the module docstring (the class's when
    the module has none), ``source`` the algorithm's origin (the class's ``source`` attribute,
    or the module docstring's ``Source:`` paragraph), ``params`` one entry per field of the
    class's ``Params`` model (empty when it has none; ``default`` is ``None`` when required).
    """
    cls = strategy_class(name)
    module = sys.modules.get(cls.__module__)
    module_doc = inspect.getdoc(module) if module is not None else None
    summary = _first_line(module_doc) or _first_line(inspect.getdoc(cls))
    source = getattr(cls, "source", None)
    if not source and module_doc and "Source:" in module_doc:
        source = " ".join(module_doc.split("Source:", 1)[1].split("\n\n", 1)[0].split())
    params: list[dict[str, Any]] = []
    schema = getattr(cls, "Params", None)
    if schema is not None:
        for field_name, info in schema.model_fields.items():
            default = None if info.is_required() else info.get_default(call_default_factory=True)
            if hasattr(default, "__iter__") and not isinstance(default, str | dict):
                default = [d.model_dump() if hasattr(d, "model_dump") else d for d in default]
            params.append({"name": field_name, "type": _type_name(info.annotation),
                           "default": default, "description": info.description or ""})
    return {"name": name, "summary": summary, "source": source or "", "params": params}


def list_strategies() -> list[dict[str, Any]]:
    """:func:`describe_strategy` of every built-in, in :data:`BUILTINS` order."""
    return [describe_strategy(name) for name in BUILTINS]
