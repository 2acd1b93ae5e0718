"""simscale: which scaling strategy keeps ML models inside their latency target at the lowest
cost when traffic swings?

Public API (heavy modules are imported lazily so that ``import simscale`` stays fast):

- :func:`simulate` — run a scenario's strategies, returning a result with pandas DataFrames.
- :func:`load_scenario` — load and validate a scenario file.
- :func:`profile` — measure the real models on this machine (needs ``simscale[profile]``).
- :func:`load_profile` — load and validate a profile file.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_profile", "load_scenario", "profile", "simulate", "UserError"]

from simscale.errors import UserError  # noqa: E402


def __getattr__(name: str) -> Any:
    if name == "load_profile":
        from simscale.profiler.schema import load_profile

        return load_profile
    if name == "profile":
        from simscale.profiler import run_profile

        return run_profile
    if name == "load_scenario":
        from simscale.simulator.scenario import load_scenario

        return load_scenario
    if name == "simulate":
        from simscale.api import simulate

        return simulate
    if name in ("profiler", "reports", "simulator", "strategies"):
        import importlib

        return importlib.import_module(f"simscale.{name}")
    raise AttributeError(f"module 'simscale' has no attribute {name!r}")
