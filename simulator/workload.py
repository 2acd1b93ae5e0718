"""The workload API under its former name: everything now lives in
:mod:`simscale.simulator.workloads` (one module per kind, a registry of kinds). Import from there
in new code; this module only re-exports, so that existing imports keep working."""

from __future__ import annotations

from simscale.simulator.workloads import (
    RateFunction,
    clear_trace_cache,
    expected_arrivals,
    generate_arrivals,
    input_files,
    rate_function,
)

# private helpers that tests reach for under their old names
from simscale.simulator.workloads.mmpp import mmpp_mean_rate as _mmpp_mean_rate  # noqa: F401
from simscale.simulator.workloads.mmpp import mmpp_path as _mmpp_path  # noqa: F401
from simscale.simulator.workloads.mmpp import mmpp_stationary as _mmpp_stationary  # noqa: F401
from simscale.simulator.workloads.pwl import Pwl as _Pwl  # noqa: F401
from simscale.simulator.workloads.pwl import pwl_arrivals as _pwl_arrivals  # noqa: F401

__all__ = [
    "RateFunction",
    "clear_trace_cache",
    "expected_arrivals",
    "generate_arrivals",
    "input_files",
    "rate_function",
]
