"""The public Python API of simscale (re-exported from :mod:`simscale`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile
    from simscale.simulator.results import SimulationResult
    from simscale.simulator.scenario import Scenario


def simulate(
    scenario: Scenario | str | Path | dict[str, Any],
    *,
    strategies: list[str] | None = None,
    seed: int | None = None,
    replications: int = 1,
    profile: Profile | str | Path | None = None,
    overrides: list[str] | None = None,
    keep_requests: bool = False,
    progress: bool = False,
    force: bool = False,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    bounds: bool = False,
) -> SimulationResult:
    """Simulate a scenario's strategies on common random numbers.

    Parameters
    ----------
    scenario:
        A :class:`~simscale.simulator.scenario.Scenario`, a path to a YAML file (or the name of a
        shipped scenario such as ``"flash_crowd"``), or a dict in the YAML format.
    strategies:
        Names or labels of the scenario's strategies to run (default: all).
    seed:
        Overrides the scenario's seed. Replication ``r`` uses ``seed + r``.
    replications:
        How many seeds to run; with more than one, the result's ``aggregate`` holds the mean and
        a 95% confidence interval of every figure.
    profile:
        A loaded profile or a path; default: the scenario's ``profile`` field.
    overrides:
        ``dotted.key=value`` strings applied to the scenario before validation.
    keep_requests:
        Keep the per-request table (``result.requests``).
    progress:
        Show a progress bar on stderr.
    force:
        Run even when the estimate of memory or time is over the limits (more than half of the
        available memory, more than half an hour; see :mod:`simscale.simulator.budget`).
    workers:
        Run this many (strategy, replication) runs at a time in local processes; the result is
        the same as a serial run's (only wall times differ).
    executor, address:
        ``"ray"`` runs them as Ray tasks instead, on the cluster at ``address`` (default: a
        local Ray of ``workers`` CPUs; needs ``simscale[ray]``).
    bounds:
        Also compute each service's bounds on the optimal cost for the realized arrivals
        (``summary["bounds"]``: a proven lower bound and an achievable hindsight schedule;
        docs/BOUNDS.md), as ``simscale simulate`` does unless ``--no-bounds``.

    Returns
    -------
    SimulationResult
        ``.summary`` (the summary.json dict), ``.runs``, ``.timeseries``, ``.events`` and
        ``.requests`` as pandas DataFrames, and ``.save(outdir)``.
    """
    from simscale.simulator.runner import run_scenario
    from simscale.simulator.scenario import Scenario, load_scenario

    if not isinstance(scenario, Scenario) or overrides:
        if isinstance(scenario, Scenario):
            base_dir, source = scenario.base_dir, scenario.source
            scenario = scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
            scenario["__base_dir__"] = base_dir
            scenario["__source__"] = source
        scenario = load_scenario(scenario, overrides)
    return run_scenario(
        scenario,
        strategies=strategies,
        seed=seed,
        replications=replications,
        profile=profile,
        keep_requests=keep_requests,
        progress=progress,
        force=force,
        workers=workers,
        executor=executor,
        address=address,
        bounds=bounds,
    )
