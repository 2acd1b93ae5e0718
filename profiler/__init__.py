"""The profiler: measures the real models on this machine and writes ``simscale.profile/1``.

Public API (imported lazily, so that ``import simscale.profiler`` and replica processes stay
light):

- :func:`run_profile` -- measure and return a :class:`~simscale.profiler.schema.Profile`.
- :func:`load_profile`, :func:`save_profile` -- read (validated) and write (atomically) a profile.
- :func:`build_model` -- ``(predict_fn, make_inputs)`` of a serving replica of a zoo model.
- :func:`show_profile` -- print a profile as rich tables.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MODEL_NAMES",
    "Profile",
    "ServiceTimeModel",
    "build_model",
    "fit_service_time",
    "load_model",
    "load_profile",
    "machine_fingerprint",
    "run_profile",
    "save_profile",
    "show_profile",
]

_WHERE = {
    "run_profile": "runner",
    "save_profile": "runner",
    "load_profile": "schema",
    "Profile": "schema",
    "ServiceTimeModel": "service_model",
    "build_model": "zoo",
    "load_model": "zoo",
    "MODEL_NAMES": "zoo",
    "fit_service_time": "fit",
    "machine_fingerprint": "fingerprint",
    "show_profile": "show",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'simscale.profiler' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"simscale.profiler.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
