"""Workloads: request arrival times for every workload kind of a scenario, one class per kind.

All times are in seconds of simulated time, counted from the start of the run (0); rates are in
requests per second. Four functions make the API the engine codes against:

- :func:`generate_arrivals` draws one realisation: a sorted float64 array of arrival times in
  ``[0, duration_s)``.
- :func:`rate_function` returns the intensity ``lambda(t)`` in requests per second.
- :func:`expected_arrivals` returns ``E[N(0, duration_s)]`` cheaply (to refuse scenarios that
  would not fit in memory before generating anything).
- :func:`input_files` lists the files a workload reads (trace CSVs), as written in the scenario.

Each *kind* is a class (:class:`~simscale.simulator.workloads.base.WorkloadKind`): a pydantic
model of its parameters, validated from the scenario, with its behaviour as methods
(``arrivals``, ``rate``, ``expected``, ``input_files``); it lives in its own module, which says
how it is generated (all built-in kinds are exact in distribution and vectorised with numpy):

- :mod:`.patterns`: ``constant``, ``step``, ``ramp``, ``diurnal``, ``flash_crowd`` (Poisson with a
  deterministic rate; exact inversion of the cumulative rate, :mod:`.pwl`, or thinning);
- :mod:`.mmpp`: ``mmpp`` (Markov-modulated Poisson, started stationary);
- :mod:`.trace`: ``trace`` (a CSV of timestamps or of counts per interval);
- :mod:`.sum`: ``sum`` (the superposition of independent workloads of any kinds);
- :mod:`.gamma`: ``gamma`` (a stationary renewal process with gamma gaps, parameter ``cv``).

The kinds are registered by name (:data:`KINDS`); :data:`Workload`, the type of a service's
``workload``, is the pydantic discriminated union on ``kind`` of every registered kind, so the
scenario format and its JSON schema (``simscale scenarios schema``) follow the registry.

Determinism: the same workload, duration and generator state give the same array, always.

**To add a workload kind**: write one module (here, or anywhere importable) with a subclass of
:class:`~simscale.simulator.workloads.base.WorkloadKind` that declares ``kind: Literal["name"]``
and its parameters as fields (units in their names), implements ``arrivals(duration_s, rng,
ctx)``, ``rate(ctx)``, ``expected(duration_s, ctx)`` and, if it reads files, ``input_files()``,
and is decorated with ``@register``; then add one import line to the registry block below (for
a kind outside this package: import its module before loading scenarios). Scenarios accept it
at once, inside ``sum`` too; :mod:`.gamma` is the worked example. Document it in the README's
list of kinds and test it (``tests/test_workload_kinds.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from simscale.simulator.workloads.base import (
    EMPTY,
    KINDS,
    RateFunction,
    Workload,
    WorkloadContext,
    WorkloadKind,
    check_duration,
    rebuild_on_register,
    register,
    unregister,
)

# ---------------------------------------------------------------------------------- registry
# One line per module of kinds. The order is the order of the kinds in the union (and so in error
# messages and the JSON schema): keep it, and add new kinds at the end.
# isort: off
from simscale.simulator.workloads.patterns import (  # constant, step, ramp, diurnal, flash_crowd
    ConstantWorkload as ConstantWorkload,
    DiurnalWorkload as DiurnalWorkload,
    FlashCrowdWorkload as FlashCrowdWorkload,
    RampWorkload as RampWorkload,
    StepPoint as StepPoint,
    StepWorkload as StepWorkload,
)
from simscale.simulator.workloads.mmpp import MmppState as MmppState, MmppWorkload as MmppWorkload
from simscale.simulator.workloads.trace import TraceWorkload as TraceWorkload
from simscale.simulator.workloads.sum import SumWorkload as SumWorkload
from simscale.simulator.workloads.gamma import GammaWorkload as GammaWorkload
# isort: on

__all__ = [
    "KINDS",
    "ConstantWorkload",
    "DiurnalWorkload",
    "FlashCrowdWorkload",
    "GammaWorkload",
    "MmppState",
    "MmppWorkload",
    "RampWorkload",
    "RateFunction",
    "StepPoint",
    "StepWorkload",
    "SumWorkload",
    "TraceWorkload",
    "Workload",
    "WorkloadContext",
    "WorkloadKind",
    "clear_trace_cache",
    "expected_arrivals",
    "generate_arrival_chunks",
    "generate_arrivals",
    "input_files",
    "rate_function",
    "rebuild_on_register",
    "register",
    "unregister",
]


def _kind(workload: Any) -> WorkloadKind:
    if not isinstance(workload, WorkloadKind):
        raise TypeError(f"not a workload: {type(workload).__name__}")
    return workload


def generate_arrivals(
    workload: Workload,
    duration_s: float,
    rng: np.random.Generator,
    *,
    base_dir: str | None = None,
    paths: list[Any] | None = None,
) -> np.ndarray:
    """Draw the arrival times of ``workload`` over ``[0, duration_s)``.

    Returns a sorted float64 array of times in seconds, each in ``[0, duration_s)``. ``rng`` is
    the only source of randomness (same state, same result). ``base_dir`` is the folder trace
    paths are relative to (the scenario file's folder; the working directory when ``None``).
    Raises :class:`~simscale.errors.UserError` for a bad trace, or for an MMPP that would change
    state more than 5e7 times (its path would not fit in memory); ``ValueError`` for a negative or
    non-finite ``duration_s``; ``TypeError`` for an object that is not a workload. When ``paths``
    is a list, the random rate paths drawn (one per MMPP, in depth-first workload order) are
    appended to it, for :func:`rate_function`'s ``paths``.
    """
    duration = check_duration(duration_s)
    if duration == 0.0:
        return EMPTY.copy()
    ctx = WorkloadContext(base_dir=base_dir, drawn_paths=paths)
    return _kind(workload).arrivals(duration, rng, ctx)


def generate_arrival_chunks(
    workload: Workload,
    duration_s: float,
    rng: np.random.Generator,
    *,
    chunk: int,
    base_dir: str | None = None,
    paths: list[Any] | None = None,
) -> Iterator[np.ndarray]:
    """:func:`generate_arrivals`'s times (same ``rng`` state, same numbers), at most ``chunk``
    at a time, in order: for Poisson kinds and count traces drawn a chunk at a time (memory
    that does not grow with the number of arrivals); other kinds draw the whole array first.
    Errors as :func:`generate_arrivals` (raised when the first chunk is asked for)."""
    duration = check_duration(duration_s)
    if duration == 0.0:
        return
    ctx = WorkloadContext(base_dir=base_dir, drawn_paths=paths)
    yield from _kind(workload).arrival_chunks(duration, rng, ctx, int(chunk))


def rate_function(workload: Workload, *, base_dir: str | None = None,
                  paths: list[Any] | None = None) -> RateFunction:
    """Return the arrival rate ``lambda(t)`` in requests per second, for times ``t >= 0`` in
    seconds (0 for negative times).

    Exact for the rate patterns (right-continuous at steps). For MMPP the path is random, so this
    is the stationary mean rate ``sum_i pi_i * rate_i`` (constant in time); for ``gamma``, the
    constant ``rate_rps``. For a timestamp trace it is the empirical rate: the number of replayed
    requests in each 1-second bin ``[k, k+1)`` of simulated time, times ``rate_scale``; for a
    count trace, each interval's ``count * rate_scale / (interval_s * time_scale)``; 0 after the
    trace ends. A sum adds its parts. With ``paths`` (filled by :func:`generate_arrivals`), each
    MMPP's rate is the path that was actually drawn instead of its stationary mean: the true rate
    of that realization.
    """
    recorded = iter(paths) if paths is not None else None
    return _kind(workload).rate(WorkloadContext(base_dir=base_dir, recorded_paths=recorded))


def expected_arrivals(workload: Workload, duration_s: float, *, base_dir: str | None = None
                      ) -> float:
    """Return the expected number of arrivals in ``[0, duration_s)``: ``integral of lambda``.

    Cheap (closed forms; traces are read once and cached). For MMPP it is ``stationary mean rate *
    duration_s`` (exact, since the path starts stationary); for ``gamma``, ``rate_rps *
    duration_s`` (exact, since it starts in equilibrium). For a timestamp trace it is the number
    of trace requests that fall in the run, times ``rate_scale``.
    """
    duration = check_duration(duration_s)
    if duration == 0.0:
        return 0.0
    return float(_kind(workload).expected(duration, WorkloadContext(base_dir=base_dir)))


def input_files(workload: Workload) -> list[str]:
    """The files ``workload`` reads, as written in the scenario (relative to the scenario file's
    folder unless absolute): every trace's ``path``, depth-first through sums, repeats kept."""
    return list(_kind(workload).input_files())


def clear_trace_cache() -> None:
    """Forget every parsed trace (they are otherwise kept per file, mtime, size and column)."""
    from simscale.simulator.workloads.trace import clear_cache

    clear_cache()
