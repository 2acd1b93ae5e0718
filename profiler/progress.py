"""The progress bar of a profile run and the rough weights (seconds) of its steps.

The bar redraws only when told to, never during a timed call, so drawing it does not disturb
a measurement. The weights are rough seconds per step, so that the bar moves evenly; they
change nothing that is measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from simscale.profiler.plan import Config, RunPlan
from simscale.profiler.steps import SERVING_GAPS_S

#: rough seconds to build (train) each model
TRAIN_WEIGHT_S = {"linear_regression": 0.5, "xgboost": 1.0, "resnet50": 3.0}
#: rough seconds of one fresh replica process (start, load, first prediction)
PROBE_WEIGHT_S = {"linear_regression": 1.2, "xgboost": 1.3, "resnet50": 3.0}
#: rough seconds per batch of one item sent to a serving replica
SERVE_WEIGHT_S = {"linear_regression": 0.001, "xgboost": 0.002, "resnet50": 0.1}
#: rough seconds of timing ResNet50's image preprocessing
PREPROCESSING_WEIGHT_S = 2.0


def timing_weight(plan: RunPlan, cfg: Config) -> float:
    """Rough seconds of timing the batches of ``cfg`` (its budget and warm-up)."""
    return plan.timing_for(cfg).budget_s * (2.0 if cfg.model == "resnet50" else 1.5)


def serve_weight(plan: RunPlan, cfg: Config) -> float:
    """Rough seconds of a serving replica of ``cfg``: its start, then every gap and batch."""
    return PROBE_WEIGHT_S[cfg.model] + plan.serving_batches * (
        sum(SERVING_GAPS_S) + len(SERVING_GAPS_S) * SERVE_WEIGHT_S[cfg.model])


def total_weight(
    plan: RunPlan,
    models: Sequence[str],
    configs: Sequence[Config],
    memory_jobs: Sequence[tuple[Config, int]],
    cold_starts: Sequence[tuple[str, str]],
) -> float:
    """Rough seconds of a whole run: building ``models``, timing ``configs``, a memory probe
    per ``(config, batch size)`` of ``memory_jobs``, cold starts per ``(model, device)`` of
    ``cold_starts`` and a serving replica per configuration."""
    return (
        sum(TRAIN_WEIGHT_S[m] for m in models)
        + (PREPROCESSING_WEIGHT_S if "resnet50" in models else 0.0)
        + sum(timing_weight(plan, c) for c in configs)
        + sum(PROBE_WEIGHT_S[c.model] for c, _ in memory_jobs) / max(1, plan.memory_parallel)
        + sum(PROBE_WEIGHT_S[m] * plan.cold_start_samples for m, _ in cold_starts)
        + sum(serve_weight(plan, c) for c in configs)
    )


class ProgressBar:
    """A rich progress bar that only redraws when told to (never during a timed call)."""

    def __init__(self, enabled: bool, total: float, console: Any = None):
        self._bar = None
        self._last = 0.0
        self.done = 0.0
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]profile[/]"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console or Console(stderr=True),
            auto_refresh=False,
            transient=False,
        )
        self._task = self._bar.add_task("starting", total=total)

    def __enter__(self) -> ProgressBar:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()

    def step(self, description: str | None = None, advance: float = 0.0) -> None:
        self.done += advance
        if self._bar is None:
            return
        self._bar.update(self._task, completed=self.done, description=description or None)
        now = time.monotonic()
        if advance or description or now - self._last > 0.25:
            self._last = now
            self._bar.refresh()

    def partial(self, base: float, weight: float) -> Callable[[float], None]:
        """A callback showing ``fraction`` of a step of ``weight`` that started at ``base``."""

        def show(fraction: float) -> None:
            if self._bar is None:
                return
            now = time.monotonic()
            if now - self._last < 0.25:
                return
            self._last = now
            self._bar.update(self._task, completed=base + weight * fraction)
            self._bar.refresh()

        return show
