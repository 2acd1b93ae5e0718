"""What ``simscale tune`` searches, and what it must meet.

:data:`TUNE_SPACES` is the one table of search ranges: per built-in strategy, the parameters
worth tuning and a sensible range for each. Every name is a field of the strategy's ``Params``
model (``strategies/<name>.py``; ``tests/test_tune.py`` checks it); the type (int or float)
and the hard limits (``gt``, ``ge``, ``lt``, ``le``) come from that model, so a range here can
never produce a value the strategy refuses. A range is a grid of whole numbers ``low..high``
and a ``divisor``: the value is ``k / divisor`` (``target_utilization`` 30..95 / 100 is 0.30 to
0.95 in steps of 0.01), so every value is one a real manifest can hold exactly (whole percents,
whole seconds) and writes back without rounding. ``when`` keeps a range to the entries it
applies to (``target_value`` only for an HPA on a non-CPU metric).

:func:`parse_target` reads ``--target``: ``FIGURE>=NUMBER`` or ``FIGURE<=NUMBER``, where
``FIGURE`` is a run figure of the result schema (``simulator/schema.py``: ``slo_attainment``,
``latency_ms.p95``, ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from simscale.errors import UserError

__all__ = ["TUNE_SPACES", "Dimension", "Target", "parse_target", "search_space"]

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Dimension:
    """One tuned parameter: the value ``k / divisor`` for whole ``k`` in ``low..high``.

    ``log``: sample ``k`` on a log scale (ranges spanning decades); ``when``: a predicate on
    the entry's parameters (the range applies only when it is true).
    """

    name: str
    low: int
    high: int
    divisor: int = 1
    log: bool = False
    when: Callable[[Params], bool] | None = None

    def value(self, k: int, integer: bool) -> int | float:
        """The parameter's value at grid point ``k`` (an int for an int parameter)."""
        return int(k) if integer else k / self.divisor

    def grid_point(self, value: Any) -> int | None:
        """The ``k`` whose value is exactly ``value``, within ``low..high``; ``None`` when the
        value is off the grid or out of the range (e.g. a default of 0.625 on a 0.01 grid)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(float(value)):
            return None
        k = round(float(value) * self.divisor)
        if k / self.divisor != float(value) or not self.low <= k <= self.high:
            return None
        return int(k)

    def describe(self, integer: bool) -> dict[str, Any]:
        """The range as tune.json shows it: ``{"name", "low", "high", "step", "log"}``."""
        return {"name": self.name, "low": self.value(self.low, integer),
                "high": self.value(self.high, integer), "step": 1 / self.divisor,
                "log": self.log}


def _utilization_metric(p: Params) -> bool:
    return p.get("metric", "utilization") == "utilization" and p.get("target_cpu_cores") is None


def _keda(p: Params) -> bool:
    return p.get("activation_threshold") is not None


#: strategy name -> the parameters ``simscale tune`` searches and their ranges (units are the
#: parameters': fractions, seconds, requests per replica, percent)
TUNE_SPACES: dict[str, tuple[Dimension, ...]] = {
    "hpa": (
        Dimension("target_utilization", 30, 95, 100, when=_utilization_metric),
        Dimension("target_cpu_cores", 10, 400, 100, log=True,
                  when=lambda p: p.get("target_cpu_cores") is not None),
        Dimension("target_value", 1, 400, 4, log=True,
                  when=lambda p: p.get("metric", "utilization") != "utilization"),
        Dimension("tolerance", 0, 30, 100, when=lambda p: p.get("scale_up_tolerance") is None
                  or p.get("scale_down_tolerance") is None),
        Dimension("scale_up_tolerance", 0, 30, 100,
                  when=lambda p: p.get("scale_up_tolerance") is not None),
        Dimension("scale_down_tolerance", 0, 30, 100,
                  when=lambda p: p.get("scale_down_tolerance") is not None),
        Dimension("scale_up_stabilization_s", 0, 120, when=lambda p: p.get("behavior", True)),
        Dimension("scale_down_stabilization_s", 0, 600),
        Dimension("sync_period_s", 5, 60),
        Dimension("cooldown_s", 0, 600, when=_keda),
        Dimension("polling_interval_s", 5, 60, when=_keda),
    ),
    "kpa": (
        Dimension("target_concurrency", 2, 80, 2, log=True),
        Dimension("target_utilization", 50, 100, 100),
        Dimension("stable_window_s", 6, 300, log=True),
        Dimension("panic_window_percentage", 5, 50),
        Dimension("panic_threshold_percentage", 110, 400),
        Dimension("scale_down_delay_s", 0, 300),
    ),
    "ray_serve": (
        Dimension("target_ongoing_requests", 5, 100, 10, log=True),
        Dimension("upscale_delay_s", 0, 60),
        Dimension("downscale_delay_s", 0, 600),
        Dimension("look_back_period_s", 5, 60),
    ),
    "threshold": (
        Dimension("upper_threshold", 50, 95, 100,
                  when=lambda p: p.get("metric", "utilization") == "utilization"),
        Dimension("lower_threshold", 5, 45, 100,
                  when=lambda p: p.get("metric", "utilization") == "utilization"),
        Dimension("step", 1, 4),
        Dimension("evaluation_window_s", 10, 300, log=True),
        Dimension("cooldown_s", 0, 300),
    ),
    "predictive": (
        Dimension("target_utilization", 40, 95, 100),
        Dimension("scale_down_stabilization_s", 0, 600),
    ),
    "static": (
        Dimension("replicas", 1, 64),
    ),
}


@dataclass(frozen=True)
class SpaceDim:
    """A :class:`Dimension` resolved for one entry: its range narrowed to what the
    strategy's ``Params`` model and the write-back format allow; ``integer``: an int
    parameter."""

    dim: Dimension
    integer: bool

    @property
    def name(self) -> str:
        return self.dim.name


def _field_limits(field: Any, divisor: int) -> tuple[float, float]:
    """The grid range ``(low_k, high_k)`` a pydantic field's ``gt``/``ge``/``lt``/``le``
    constraints allow (``-inf``/``inf`` when unbounded)."""
    low, high = -math.inf, math.inf
    for meta in getattr(field, "metadata", ()):
        for attr, side in (("ge", 0), ("gt", 1), ("le", 2), ("lt", 3)):
            bound = getattr(meta, attr, None)
            if bound is None:
                continue
            k = float(bound) * divisor
            if side == 0:
                low = max(low, math.ceil(k))
            elif side == 1:
                low = max(low, math.floor(k) + 1)
            elif side == 2:
                high = min(high, math.floor(k))
            else:
                high = min(high, math.ceil(k) - 1)
    return low, high


def _is_int_field(field: Any) -> bool:
    annotation = field.annotation
    args = getattr(annotation, "__args__", None)
    kinds = [a for a in args if a is not type(None)] if args else [annotation]
    return kinds == [int]


def search_space(strategy: str, params: Params, params_model: Any,
                 writable: Mapping[str, tuple[float | None, float | None]] | None = None,
                 ) -> list[SpaceDim]:
    """The dimensions searched for a ``strategy`` entry with ``params`` (its parameters as
    given): those of :data:`TUNE_SPACES` that apply (``when``), narrowed to the field limits
    of ``params_model`` (the strategy's ``Params``) and, for an imported entry, kept to the
    ``writable`` parameters with their bounds (see
    :func:`simscale.strategies.importers.export.writable_params`). A dimension left with no
    value is dropped. Raises :class:`UserError` (``--strategy``) when nothing is left."""
    dims = TUNE_SPACES.get(strategy)
    if dims is None:
        raise UserError(f"strategy '{strategy}' has no search space (tunable: "
                        f"{', '.join(TUNE_SPACES)})", source="--strategy")
    out: list[SpaceDim] = []
    for dim in dims:
        field = params_model.model_fields.get(dim.name)
        if field is None or (dim.when is not None and not dim.when(params)):
            continue
        if writable is not None and dim.name not in writable:
            continue
        low_k, high_k = _field_limits(field, dim.divisor)
        low, high = max(dim.low, low_k), min(dim.high, high_k)
        extra_low, extra_high = (writable or {}).get(dim.name, (None, None))
        if extra_low is not None:
            low = max(low, math.ceil(extra_low * dim.divisor))
        if extra_high is not None:
            high = min(high, math.floor(extra_high * dim.divisor))
        if low > high:
            continue
        if dim.log and low < 1:
            low = 1
        resolved = Dimension(dim.name, int(low), int(high), dim.divisor, dim.log, dim.when)
        out.append(SpaceDim(resolved, _is_int_field(field)))
    if not out:
        raise UserError(f"nothing to tune in strategy '{strategy}' with these parameters "
                        "(or none of them can be written back to its file)",
                        source="--strategy")
    return out


# ---------------------------------------------------------------------------- the target
_TARGET = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=)\s*([-+]?(?:\d+\.?\d*|\.\d+)"
                     r"(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Target:
    """``figure op value``: a run figure (dotted name of the result schema) that must be at
    least (``>=``) or at most (``<=``) ``value``, in the figure's own unit."""

    figure: str
    op: Literal[">=", "<="]
    value: float

    @property
    def text(self) -> str:
        return f"{self.figure}{self.op}{self.value:g}"

    def met(self, x: float) -> bool:
        """Whether ``x`` meets the target (a NaN never does)."""
        if not math.isfinite(x):
            return False
        return x >= self.value if self.op == ">=" else x <= self.value

    def violation(self, x: float) -> float:
        """How far ``x`` is from meeting the target, relative to the target's size (0 when it
        is met; ``slo_attainment`` 0.95 against >= 0.99 is 0.0404); a NaN is 1e9."""
        if not math.isfinite(x):
            return 1e9
        gap = self.value - x if self.op == ">=" else x - self.value
        return max(0.0, gap) / (abs(self.value) or 1.0)

    def worst(self, xs: list[float]) -> float:
        """The replication furthest from the target: the lowest for ``>=``, the highest for
        ``<=`` (NaN when any is NaN)."""
        if not xs or any(not math.isfinite(x) for x in xs):
            return math.nan
        return min(xs) if self.op == ">=" else max(xs)


def parse_target(text: str) -> Target:
    """``FIGURE>=NUMBER`` or ``FIGURE<=NUMBER`` as a :class:`Target`; anything else is a
    :class:`UserError` naming ``--target``."""
    from simscale.simulator.schema import RUN_FIGURE_NAMES

    match = _TARGET.match(text or "")
    if not match:
        raise UserError(f"'{text}' is not FIGURE>=NUMBER or FIGURE<=NUMBER (e.g. "
                        "slo_attainment>=0.99, latency_ms.p95<=500)", source="--target")
    figure, op, number = match.groups()
    if figure not in RUN_FIGURE_NAMES or figure == "wall_s":
        raise UserError(f"'{figure}' is not a figure of a run (e.g. slo_attainment, "
                        "latency_ms.p95, cost_usd, dropped)", source="--target")
    value = float(number)
    if not math.isfinite(value):
        raise UserError(f"'{number}' is not a finite number", source="--target")
    return Target(figure, op, value)  # type: ignore[arg-type]
