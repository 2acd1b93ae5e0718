"""What the importers share: the result type, typed field access that fails with one line naming
the file and the field, and the unit parsers (Kubernetes quantities, Go durations)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from simscale.errors import UserError

#: what an opaque (Pods, Object, External, Prometheus) metric measures, as the scenario says
MetricHint = Literal["rps", "concurrency", "queue_length"]
METRIC_HINTS: tuple[str, ...] = ("rps", "concurrency", "queue_length")
#: why a memory metric or trigger is refused, whichever file names it
MEMORY_REASON = "cannot be simulated: a replica's memory in simscale does not change with load"


def object_name(obj: dict[str, Any]) -> str | None:
    """A Kubernetes object's ``metadata.name``, or ``None`` when it has none."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return str(name) if name is not None else None


@dataclass(frozen=True)
class ImportedStrategy:
    """A real autoscaler's configuration mapped onto a built-in strategy.

    ``strategy``: the built-in's name; ``params``: every parameter the file maps to (defaults
    of the autoscaler's own project filled in); ``notes``: ``"field: what was done, and why"``
    for every field ignored or approximated; ``kind``: what the file held (e.g.
    ``HorizontalPodAutoscaler autoscaling/v2``); ``name``: the object's name, when it has one;
    ``source``: the file; ``mapped``: the parameters the file set (the others are the
    strategy's defaults).
    """

    strategy: str
    params: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    kind: str = ""
    name: str | None = None
    source: str | None = None
    mapped: tuple[str, ...] = ()


class Fields:
    """Reads one object of a file: ``get`` checks types and ranges, and every failure is one
    :class:`UserError` naming the file and the dotted field."""

    def __init__(self, source: str | None):
        self.source = source

    def fail(self, where: str, message: str) -> UserError:
        """The error to raise for ``where`` (a dotted field)."""
        return UserError(message, source=self.source, field=where)

    def mapping(self, value: Any, where: str, *, required: bool = False) -> dict[str, Any]:
        """``value`` as a mapping (``{}`` when absent and not ``required``)."""
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, "missing" if value is None else "must be a mapping")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        """``value`` as a list (``[]`` when absent)."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, "must be a list")
        return value

    def number(self, data: dict[str, Any], key: str, where: str, default: Any = None, *,
               minimum: float | None = None, maximum: float | None = None,
               integer: bool = False, quantity: bool = False) -> Any:
        """``data[key]`` as a number within ``[minimum, maximum]`` (``default`` when absent);
        strings are accepted as Kubernetes quantities when ``quantity``."""
        at = f"{where}.{key}" if where else key
        if key not in data or data[key] is None:
            if default is None:
                raise self.fail(at, "missing")
            return default
        raw = data[key]
        if quantity and isinstance(raw, str):
            value: float = parse_quantity(raw, self, at)
        elif isinstance(raw, bool) or not isinstance(raw, int | float):
            raise self.fail(at, f"must be a number, got {raw!r:.40}")
        else:
            value = float(raw)
        if not math.isfinite(value):
            raise self.fail(at, "must be finite")
        if integer and value != int(value):
            raise self.fail(at, f"must be a whole number, got {raw!r:.40}")
        if minimum is not None and value < minimum:
            raise self.fail(at, f"must be at least {minimum:g}, got {raw!r:.40}")
        if maximum is not None and value > maximum:
            raise self.fail(at, f"must be at most {maximum:g}, got {raw!r:.40}")
        return int(value) if integer else value

    def choice(self, data: dict[str, Any], key: str, where: str, options: tuple[str, ...],
               default: str | None = None) -> str:
        """``data[key]``, one of ``options`` (``default`` when absent)."""
        at = f"{where}.{key}" if where else key
        value = data.get(key, default)
        if value is None:
            raise self.fail(at, "missing")
        if value not in options:
            raise self.fail(at, f"must be one of {', '.join(options)}, got {value!r:.40}")
        return str(value)

    def check_params(self, strategy: str, params: dict[str, Any], where: str, *,
                     same_names: bool = False) -> None:
        """Validate the mapped ``params`` with the built-in's ``Params`` model; a value it
        refuses is reported against ``where`` (the object in the file), or against
        ``where.<parameter>`` when the file's fields have the parameters' names."""
        from simscale.strategies import strategy_class

        try:
            strategy_class(strategy).Params.model_validate(params)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first.get("loc", ()))
            what = (f"maps to {strategy} parameter {name}={first.get('input')!r:.40}, which is"
                    if name else f"maps to {strategy} parameters that are")
            at = f"{where}.{name}" if same_names and name and where else where
            raise self.fail(at, f"{what} refused: {first.get('msg')}") from None


_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_SUFFIX = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50,
           "Ei": 2.0**60}


def parse_quantity(text: str, fields: Fields, where: str) -> float:
    """A Kubernetes resource quantity (``500m``, ``2``, ``1.5k``, ``1Gi``, ``1e3``) as a
    number (k8s.io/apimachinery ``resource.Quantity``)."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise fields.fail(where, f"not a Kubernetes quantity: {text!r:.40}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                    "h": 3600.0}


def parse_duration_s(text: Any, fields: Fields, where: str) -> float:
    """A Go duration (``60s``, ``1m30s``, ``1h``, ``0``) in seconds, as Knative reads its
    annotations with ``time.ParseDuration``."""
    value = str(text).strip()
    if value in ("0", "+0", "-0"):
        return 0.0
    pos, total = 0, 0.0
    while pos < len(value):
        match = _DURATION_PART.match(value, pos)
        if not match:
            raise fields.fail(where, f"not a duration such as 60s or 1m30s: {text!r:.40}")
        total += float(match.group(1)) * _DURATION_UNIT_S[match.group(2)]
        pos = match.end()
    if not value:
        raise fields.fail(where, "empty duration")
    return total


def hint_to_metric(hint: str | None, name: str, fields: Fields, where: str) -> str:
    """The built-in ``hpa`` metric for an opaque metric ``name`` that ``hint`` says measures
    requests per second, concurrency or queue length; a missing hint is an error."""
    if hint is None:
        raise fields.fail(where, f"metric '{name}' is opaque to simscale: say what it measures "
                          "with metric: rps | concurrency | queue_length in the strategy entry "
                          "(--metric with strategies import)")
    return {"rps": "rps", "concurrency": "in_flight", "queue_length": "queue_length"}[hint]
