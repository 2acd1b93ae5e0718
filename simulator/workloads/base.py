"""The contract of a workload kind, and the registry that turns kinds into the scenario format.

A *kind* is a pydantic model (its parameters, validated from the scenario's YAML) that subclasses
:class:`WorkloadKind`, names itself with a ``kind: Literal["<name>"]`` field, implements the four
methods below, and is registered with :func:`register`. :data:`Workload` is the discriminated
union (on ``kind``) of every registered kind: the type of ``service.workload`` and of a ``sum``'s
parts. It is built from the registry whenever a model using it is built, and the models that use
it are rebuilt when a kind is registered later (:func:`rebuild_on_register`), so a kind
registered by a third party after import is accepted by :func:`load_scenario` like a built-in.

Times are seconds of simulated time from the start of the run (0); rates are requests per second.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import numpy as np
from pydantic import BaseModel, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema

from simscale.simulator.fields import FrozenModel

__all__ = [
    "EMPTY",
    "KINDS",
    "RateFunction",
    "Workload",
    "WorkloadContext",
    "WorkloadKind",
    "check_duration",
    "rebuild_on_register",
    "register",
    "unregister",
]

#: ``f(times_s) -> rates_rps``, vectorised over a float array of times in seconds.
RateFunction = Callable[[np.ndarray], np.ndarray]

#: an empty array of arrival times (copy it before returning it)
EMPTY = np.empty(0, dtype=np.float64)


@dataclass(frozen=True)
class WorkloadContext:
    """What a kind may need besides its own parameters and the random generator.

    ``base_dir``: the folder that relative input paths (traces) are relative to: the scenario
    file's folder; the working directory when ``None``.

    ``drawn_paths``: while generating, a kind whose rate is itself random (MMPP) appends the rate
    path it drew here, one object per workload in depth-first order, when it is a list (``None``:
    do not record). ``recorded_paths``: when building a rate function, such a kind takes its path
    from this iterator, in the same order, and returns the rate of that realization instead of its
    mean (``None``: the mean rate). Kinds with a deterministic rate ignore both.
    """

    base_dir: str | None = None
    drawn_paths: list[Any] | None = None
    recorded_paths: Iterator[Any] | None = None


class WorkloadKind(FrozenModel):
    """Base class of every workload kind: its parameters are the model's fields, its behaviour
    the four methods. Subclasses declare ``kind: Literal["<name>"]`` and are registered with
    :func:`register`. The public functions of :mod:`simscale.simulator.workloads` validate the
    duration and handle ``duration_s == 0``, so the methods see a finite ``duration_s > 0``.
    """

    @abstractmethod
    def arrivals(self, duration_s: float, rng: np.random.Generator, ctx: WorkloadContext
                 ) -> np.ndarray:
        """Draw one realization: a sorted float64 array of arrival times in ``[0, duration_s)``
        seconds. ``rng`` is the only source of randomness (same state, same array)."""

    def arrival_chunks(self, duration_s: float, rng: np.random.Generator,
                       ctx: WorkloadContext, chunk: int) -> Iterator[np.ndarray]:
        """The arrivals of :meth:`arrivals` (same ``rng`` state, same times), at most ``chunk``
        at a time, in order. By default the whole array is drawn and handed out in slices;
        kinds that can draw a piece at a time (Poisson by inversion) override it so that
        memory does not grow with the number of arrivals."""
        whole = self.arrivals(duration_s, rng, ctx)
        for i in range(0, len(whole), chunk):
            yield whole[i:i + chunk]

    @abstractmethod
    def rate(self, ctx: WorkloadContext) -> RateFunction:
        """The arrival rate ``lambda(t)`` in requests per second for times ``t`` in seconds (0 for
        ``t < 0``), vectorised over arrays of times."""

    @abstractmethod
    def expected(self, duration_s: float, ctx: WorkloadContext) -> float:
        """``E[N(0, duration_s)]``: the expected number of arrivals in ``[0, duration_s)``. Cheap
        (no arrivals are drawn): it is used to refuse runs that would not fit in memory."""

    def input_files(self) -> list[str]:
        """The files this workload reads, as written in the scenario (relative to the scenario
        file's folder unless absolute), in depth-first order, repeats kept. None by default."""
        return []


K = TypeVar("K", bound=type[WorkloadKind])

_REGISTRY: dict[str, type[WorkloadKind]] = {}
#: the registered kinds, by name, in registration order (a read-only live view)
KINDS: MappingProxyType[str, type[WorkloadKind]] = MappingProxyType(_REGISTRY)
_DEPENDENTS: list[type[BaseModel]] = []


def kind_name(cls: type[WorkloadKind]) -> str:
    """The name in a kind's ``kind: Literal["<name>"]`` field."""
    field = cls.model_fields.get("kind")
    args = get_args(field.annotation) if field is not None else ()
    if field is None or get_origin(field.annotation) is not Literal or len(args) != 1 \
            or not isinstance(args[0], str):
        raise TypeError(f"{cls.__name__} needs a field kind: Literal['<name>']")
    return args[0]


def register(cls: K) -> K:
    """Register a workload kind under the name in its ``kind`` field (usable as a decorator).

    The kind joins :data:`Workload` at the end of the union (the order of the kinds in error
    messages and in the JSON schema), and every model passed to :func:`rebuild_on_register` is
    rebuilt so that it accepts the new kind. Registering the same class again does nothing;
    another class under a taken name raises ``ValueError``; a class that is not a
    :class:`WorkloadKind`, lacks a ``kind`` literal or leaves a method abstract raises
    ``TypeError``. A kind whose schema cannot be built is removed again before the error
    propagates, so a failed registration leaves the registry as it was.
    """
    if not (isinstance(cls, type) and issubclass(cls, WorkloadKind)):
        raise TypeError(f"{cls!r} is not a WorkloadKind subclass")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise TypeError(f"{cls.__name__} does not implement {missing}")
    name = kind_name(cls)
    if _REGISTRY.get(name) is cls:
        return cls
    if name in _REGISTRY:
        raise ValueError(f"workload kind {name!r} is already registered "
                         f"({_REGISTRY[name].__qualname__})")
    _REGISTRY[name] = cls
    try:
        _rebuild()
    except Exception:
        del _REGISTRY[name]
        _rebuild()
        raise
    return cls


def unregister(name: str) -> None:
    """Remove the kind called ``name`` (for tests and plugins that clean up after themselves)
    and rebuild the models that use :data:`Workload`. Raises ``KeyError`` if it is unknown."""
    del _REGISTRY[name]
    _rebuild()


def rebuild_on_register(*models: type[BaseModel]) -> None:
    """Keep ``models`` (pydantic models with a field of type :data:`Workload`) in step with the
    registry: build them now and rebuild them, in the order given here, whenever a kind is
    registered or removed. A model that embeds one of them must be given too, after it."""
    for model in models:
        if model not in _DEPENDENTS:
            _DEPENDENTS.append(model)
        model.model_rebuild(force=True)


def _rebuild() -> None:
    for model in _DEPENDENTS:
        model.model_rebuild(force=True)


class _RegisteredKinds:
    """Pydantic metadata: validate as the discriminated union (on ``kind``) of the kinds
    registered when the schema is built."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> CoreSchema:
        kinds = tuple(_REGISTRY.values())
        if not kinds:
            raise TypeError("no workload kind is registered")
        if len(kinds) == 1:
            return handler.generate_schema(kinds[0])
        union = functools.reduce(operator.or_, kinds)  # A | B | ..., in registration order
        return handler.generate_schema(Annotated[union, Field(discriminator="kind")])

    def __repr__(self) -> str:
        return f"RegisteredKinds({', '.join(_REGISTRY)})"


#: A workload of any registered kind (a pydantic discriminated union on ``kind``).
Workload = Annotated[WorkloadKind, _RegisteredKinds()]


def check_duration(duration_s: float) -> float:
    """``duration_s`` as a float; ``ValueError`` unless it is finite and >= 0."""
    d = float(duration_s)
    if not math.isfinite(d) or d < 0:
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s!r}")
    return d
