"""What a profile run measures: its arguments validated into configurations and a :class:`RunPlan`.

Every check here runs before anything is measured or written, so a bad argument raises
:class:`~simscale.errors.UserError` and leaves no file behind. A configuration
(:class:`Config`) is one (model, device, intra-op threads) with the batch sizes timed for it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simscale.errors import UserError
from simscale.profiler.measure import TimingPlan
from simscale.profiler.zoo import MODEL_NAMES, MODELS, check_model_name

DEVICES = ("cpu", "cuda")
#: timing rounds of every configuration (see :mod:`simscale.profiler.rounds`): an even number,
#: so that a change of the machine's speed half-way through moves the median of the rounds by
#: half of it, and the reversed order of every other round cancels a steady drift
TIMING_ROUNDS = 6
#: the same for ``--quick`` (fewer samples per round, still several rounds)
TIMING_ROUNDS_QUICK = 4
REQUIRED_MODULES = ("torch", "torchvision", "xgboost", "sklearn", "threadpoolctl", "PIL")


@dataclass(frozen=True)
class ColocationPlan:
    """How the co-location slowdown of a configuration is measured
    (:mod:`simscale.profiler.colocation`).

    ``rounds``: rounds per number ``k`` of replicas busy at once, taking turns across ``k``
    (an even number: the order reverses every other round). Per step (one round of one ``k``):
    each replica first runs ``warmup_batches`` batches, then the step lasts until every replica
    ran at least ``min_batches`` batches while all ``k`` were busy and all were busy for at least
    ``min_window_s`` seconds, or ``max_step_s`` seconds passed. The batch size is the
    configuration's largest measured one up to ``max_batch_size`` (its smallest when none is);
    ``k`` runs from 1 to ``max_replicas`` (``None``: the host's cores, ``os.cpu_count()``).
    """

    rounds: int = 4
    min_batches: int = 5
    min_window_s: float = 0.5
    max_step_s: float = 60.0
    warmup_batches: int = 1
    max_batch_size: int = 4
    max_replicas: int | None = None


@dataclass(frozen=True)
class RunPlan:
    """How much to measure: timing plans per model kind and the number of fresh-process probes.

    ``serving_batches``: batches per idle gap sent to each serving replica, spread over the
    timing rounds.

    ``colocation``: how the co-location slowdown is measured (when the run measures it).

    ``retry_wait_share``: a configuration whose timing lost more than this share of its wall time
    to other processes is timed again (once, and only within ``retry_until_s`` of the start).
    """

    tabular: TimingPlan
    resnet_cpu: TimingPlan
    resnet_cuda: TimingPlan
    cold_start_samples: int
    preprocessing_samples: int
    memory_parallel: int
    serving_batches: int = 20
    retry_wait_share: float | None = None
    retry_until_s: float = 0.0
    colocation: ColocationPlan = ColocationPlan()

    def timing_for(self, cfg: Config) -> TimingPlan:
        """The timing plan of configuration ``cfg`` (ResNet50 by device, the rest tabular)."""
        if cfg.model != "resnet50":
            return self.tabular
        return self.resnet_cpu if cfg.device == "cpu" else self.resnet_cuda

    @classmethod
    def full(cls) -> RunPlan:
        return cls(
            tabular=TimingPlan(warmup_s=0.1, min_rounds=20, budget_s=2.0, max_runs=2000,
                               timing_rounds=TIMING_ROUNDS),
            resnet_cpu=TimingPlan(warmup_s=1.0, min_rounds=8, budget_s=30.0, max_runs=2000,
                                  hard_limit_s=240.0, timing_rounds=TIMING_ROUNDS),
            resnet_cuda=TimingPlan(warmup_s=2.0, min_rounds=10, budget_s=15.0, max_runs=2000,
                                   timing_rounds=TIMING_ROUNDS),
            cold_start_samples=5,
            preprocessing_samples=100,
            memory_parallel=2,
            serving_batches=20,
            retry_wait_share=0.10,
            retry_until_s=300.0,
        )

    @classmethod
    def quick(cls) -> RunPlan:
        return cls(
            tabular=TimingPlan(warmup_s=0.05, min_rounds=10, budget_s=0.3, max_runs=1000,
                               timing_rounds=TIMING_ROUNDS_QUICK),
            resnet_cpu=TimingPlan(warmup_s=0.3, min_rounds=5, budget_s=2.5, max_runs=500,
                                  hard_limit_s=15.0, timing_rounds=TIMING_ROUNDS_QUICK),
            resnet_cuda=TimingPlan(warmup_s=1.0, min_rounds=5, budget_s=3.0, max_runs=500,
                                   timing_rounds=TIMING_ROUNDS_QUICK),
            cold_start_samples=2,
            preprocessing_samples=20,
            memory_parallel=2,
            serving_batches=8,
            # (4 rounds as the full plan: validate relies on these factors, and 2 rounds were
            # off by up to 80% on this shared machine when its speed moved between them)
            colocation=ColocationPlan(rounds=4, min_batches=3, min_window_s=0.2),
        )



@dataclass(frozen=True)
class Config:
    """One configuration measured: ``model`` on ``device`` with ``threads`` intra-op threads,
    timed at ``batch_sizes`` (items per batch)."""

    model: str
    device: str
    threads: int
    batch_sizes: tuple[int, ...]


# -- argument validation ----------------------------------------------------------------------


def _as_list(value: Any, what: str) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, int | float):
        items = [value]
    else:
        try:
            items = list(value)
        except TypeError:
            raise UserError(f"expected a list, got {value!r}", field=what) from None
    if not items:
        raise UserError("must not be empty", field=what)
    return items


def _positive_ints(values: Sequence[Any], what: str) -> list[int]:
    out = []
    for v in values:
        try:
            if isinstance(v, bool) or float(v) != int(float(v)):
                raise ValueError
            n = int(float(v))
        except (TypeError, ValueError):
            raise UserError(f"{v!r} is not a whole number", field=what) from None
        if n < 1:
            raise UserError(f"must be at least 1 (got {n})", field=what)
        out.append(n)
    return sorted(set(out))


def cuda_available() -> bool:
    """Whether torch sees a GPU (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


def check_dependencies() -> None:
    """Raise :class:`UserError` when a library the profiler needs is not installed."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            "profiling needs the profile extra (pip install 'simscale[profile]'); missing: "
            + ", ".join(missing)
        )


def plan_configs(
    models: Sequence[str] | str | None = None,
    devices: Sequence[str] | str | None = None,
    threads: Sequence[int] | int | str | None = None,
    batch_sizes: Sequence[int] | Mapping[str, Sequence[int]] | int | str | None = None,
    quick: bool = False,
    *,
    has_cuda: Callable[[], bool] | None = None,
) -> tuple[list[str], list[Config], list[str]]:
    """Validate the arguments; return (models, configs to measure, notes on skipped ones).

    ``has_cuda`` answers whether a GPU is there when ``cuda`` is asked for (default
    :func:`cuda_available`)."""
    model_list = _as_list(models, "models") or list(MODEL_NAMES)
    for name in model_list:
        check_model_name(str(name))
    model_list = list(dict.fromkeys(str(m) for m in model_list))
    device_list = _as_list(devices, "device") or ["cpu"]
    for dev in device_list:
        if dev not in DEVICES:
            raise UserError(f"unknown device '{dev}' (valid: cpu, cuda)", field="device")
    device_list = list(dict.fromkeys(device_list))
    if "cuda" in device_list and not (has_cuda or cuda_available)():
        raise UserError(
            "cuda was requested but no GPU is available (torch.cuda.is_available() is false)",
            field="device",
        )
    thread_list = _as_list(threads, "threads")
    threads_given = _positive_ints(thread_list, "threads") if thread_list is not None else None
    per_model: dict[str, list[int]] | None = None
    common: list[int] | None = None
    if isinstance(batch_sizes, Mapping):
        per_model = {}
        for name, sizes in batch_sizes.items():
            check_model_name(str(name))
            per_model[str(name)] = _positive_ints(
                _as_list(sizes, "batch_sizes") or [], "batch_sizes"
            )
    elif batch_sizes is not None:
        common = _positive_ints(_as_list(batch_sizes, "batch_sizes") or [], "batch_sizes")

    configs: list[Config] = []
    skipped: list[str] = []
    for name in model_list:
        spec = MODELS[name]
        for dev in device_list:
            if dev not in spec.devices:
                runs_on = ", ".join(spec.devices)
                skipped.append(f"{name} on {dev}: {spec.framework} runs on {runs_on}")
                continue
            if per_model is not None and name in per_model:
                sizes = per_model[name]
            elif common is not None:
                sizes = common
            elif quick:
                sizes = list(spec.batch_sizes_quick)
            else:
                sizes = list(spec.batch_sizes_cpu if dev == "cpu" else spec.batch_sizes_cuda)
            if threads_given is not None:
                thread_counts = threads_given
            else:
                thread_counts = [1] if (quick or dev == "cuda") else [1, 2]
            for t in thread_counts:
                configs.append(Config(name, dev, t, tuple(sizes)))
    if not configs:
        raise UserError("nothing to measure: " + "; ".join(skipped), field="device")
    return model_list, configs, skipped


def check_output(output: str | Path | None) -> Path | None:
    """``output`` as a path that can be written (``None`` stays ``None``); raises
    :class:`UserError` for a directory, or when the nearest existing folder above it is not
    a directory or not writable."""
    if output is None:
        return None
    path = Path(output)
    if path.is_dir():
        raise UserError("is a directory, expected a file path", source=path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"'{parent}' is not a directory", source=path)
            if not os.access(parent, os.W_OK):
                raise UserError(f"folder '{parent}' is not writable", source=path)
            break
    return path
