"""The simulator: scenarios, workloads, the request plane, the SimPy control plane, metrics.

Main entry point: :func:`simscale.simulator.runner.run_scenario` (re-exported here lazily, as
are :class:`~simscale.simulator.results.SimulationResult` and
:class:`~simscale.simulator.requestplane.RequestPlane`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RequestPlane", "SimulationResult", "run_scenario"]


def __getattr__(name: str) -> Any:
    if name == "run_scenario":
        from simscale.simulator.runner import run_scenario

        return run_scenario
    if name == "SimulationResult":
        from simscale.simulator.results import SimulationResult

        return SimulationResult
    if name == "RequestPlane":
        from simscale.simulator.requestplane import RequestPlane

        return RequestPlane
    raise AttributeError(f"module 'simscale.simulator' has no attribute {name!r}")
