"""Validation: the simulator against a real run of the same scenario on this machine.

Not simulation: real replica processes doing real inference, started and stopped by the same
strategy object, then compared with the simulation of the same arrivals. The serving rules
(routing, scale-down order, observations, service context, decisions) are the simulator's own
(:mod:`simscale.simulator.serving`, :mod:`simscale.strategies.base`), never a copy.

- :mod:`~simscale.validation.replica`: one replica process (spawning, tracking, killing);
- :mod:`~simscale.validation.router`: one service on the real cluster (router, queues,
  batching, scaling, observations);
- :mod:`~simscale.validation.cluster`: :class:`RealCluster` (load generator, control loop);
- :mod:`~simscale.validation.records`: what a real run is given and measured, and that run in
  the simulator's result format;
- :mod:`~simscale.validation.fidelity`: calibration, diagnosis and the fidelity figures;
- :mod:`~simscale.validation.report`: the fidelity table, overlay figures and HTML report;
- :mod:`~simscale.validation.command`: ``simscale validate`` (:func:`validate`,
  :func:`validate_command`).

The names below are re-exported here lazily (nothing is imported until first used).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RealCluster", "ReplicaCrashError", "validate", "validate_command"]

_HOMES = {
    "RealCluster": "simscale.validation.cluster",
    "ReplicaCrashError": "simscale.validation.replica",
    "validate": "simscale.validation.command",
    "validate_command": "simscale.validation.command",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'simscale.validation' has no attribute {name!r}")
