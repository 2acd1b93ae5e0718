"""``simscale tune``: search a strategy's parameters for the lowest cost that meets a target.

:func:`tune` runs one Optuna study per tuned service: the strategy entry's parameters named in
:data:`~simscale.sweeps.tune_space.TUNE_SPACES` are searched (on whole-number grids that real
manifests can hold), every other parameter stays as given. Each trial is simulated on the same
``replications`` seeds as every other trial (common random numbers, see
:mod:`~simscale.sweeps.tune_jobs`), so trials differ only by their parameters.

Objective and constraint
    The objective is the trial's mean ``cost_usd`` over the replications (USD over the run).
    The target (``--target``, e.g. ``slo_attainment>=0.99``) is a constraint checked on the
    *mean* of its figure over the replications; the replication furthest from it (``worst``)
    is reported beside it. Constraint handling is the ``TPESampler``'s own (Optuna 5:
    ``Trial.set_constraint``; Optuna 4: ``constraints_func``) rather than a penalty added to
    the cost: a penalty needs a rate of exchange between dollars and SLO points that no user
    has, and a too small one lets a cheap infeasible trial win. With the constraint (the
    trial's relative violation, :meth:`~simscale.sweeps.tune_space.Target.violation`, 0 when
    met) TPE ranks every feasible
    trial above every infeasible one, and infeasible ones by how far they miss; the cost
    decides only among feasible trials. The best trial is picked the same way: the cheapest
    feasible one (ties: the better target figure, then the earlier trial); when no trial is
    feasible, the one that misses the target least (ties: the cheaper). The strategy as given
    (the baseline) competes too, so the best is never worse than the baseline.

Reproducibility and parallelism
    ``TPESampler(seed=seed, multivariate=True)``. Trials are asked in batches of fixed size
    (the random start-up trials, with the baseline, in the first batch; then ``batch_size``
    trials at a time) and told in trial order when their batch is done, so the same seed gives
    the same trials and the same best parameters whether the batch runs serially in this
    process (``workers=1``), on the local process pool (``workers > 1``) or on Ray
    (``executor="ray"``): the executors of :mod:`simscale.sweeps.executors`, one
    (trial, replication) per job. The baseline is trial 0 when its values lie on the search
    grid (Optuna then learns from it); otherwise it is simulated beside the first batch.

Optuna is imported only here, inside :func:`tune`; without it, :func:`tune` raises a
:class:`~simscale.errors.UserError` saying ``pip install simscale[tune]``. The output files
are written by :mod:`~simscale.sweeps.tune_output`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from simscale.errors import UserError
from simscale.simulator.runner import check_executor_options
from simscale.simulator.scenario import Scenario, StrategySpec
from simscale.sweeps.executors import ray_session
from simscale.sweeps.tune_jobs import Evaluation, Evaluator
from simscale.sweeps.tune_space import SpaceDim, Target, parse_target, search_space

__all__ = ["DEFAULT_TARGET", "best_of", "tune"]

#: what ``--target`` is when not given
DEFAULT_TARGET = "slo_attainment>=0.99"
#: random start-up trials of the TPE sampler (fewer when fewer trials are asked for)
STARTUP_TRIALS = 10
#: trials asked at a time after the start-up (fixed, so results do not depend on --workers)
BATCH_SIZE = 4


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError("tuning needs Optuna: pip install 'simscale[tune]'",
                        source="simscale tune") from None
    return optuna


def _constraints(trial: Any) -> list[float]:
    """Optuna 4's ``constraints_func``: the trial's relative violation of the target (<= 0 is
    feasible). Optuna 5 takes it from ``Trial.set_constraint`` instead."""
    return list(trial.user_attrs.get("constraint", [1e9]))


def _pick_spec(scenario: Scenario, strategy: str) -> StrategySpec:
    from simscale.simulator.serving import select_strategies

    specs = select_strategies(scenario, [strategy], source="--strategy", field="")
    if len(specs) > 1:
        raise UserError(f"'{strategy}' names {len(specs)} entries of the scenario ("
                        + ", ".join(s.display_label for s in specs) + "): give a label",
                        source="--strategy")
    return specs[0]


def _services(scenario: Scenario, service: str | None) -> list[str]:
    names = [s.name for s in scenario.services]
    if service is None:
        return names
    if service not in names:
        raise UserError(f"no service '{service}' in the scenario (it has: {', '.join(names)})",
                        source="--service")
    return [service]


def _writable(spec: StrategySpec) -> dict[str, Any] | None:
    """For an imported entry, the parameters its file can carry (see
    :func:`~simscale.strategies.importers.export.writable_params`); ``None`` otherwise."""
    if spec.imported_from is None:
        return None
    from simscale.strategies.importers.export import writable_params

    return writable_params(spec.imported_from)


def _check(trials: int, replications: int, workers: int, executor: str,
           address: str | None) -> None:
    if trials < 1:
        raise UserError(f"needs at least 1 trial, got {trials}", source="--trials")
    if replications < 1:
        raise UserError(f"needs at least 1 replication, got {replications}",
                        source="--replications")
    check_executor_options(executor, workers, address)


def tune(scenario: Scenario, strategy: str, *, service: str | None = None,
         target: str | Target = DEFAULT_TARGET, trials: int = 30, replications: int = 1,
         workers: int = 1, executor: str = "local", address: str | None = None,
         seed: int | None = None, batch_size: int = BATCH_SIZE, progress: bool = False,
         force: bool = False) -> dict[str, Any]:
    """Tune strategy entry ``strategy`` (a label or name of the scenario's entries) for the
    lowest mean cost (USD) that meets ``target`` on each tuned service (``service``, else
    every service, one study each). See the module docstring for the method.

    ``trials``: searched parameter sets per service (the baseline comes on top);
    ``replications``: seeds ``seed .. seed + R - 1`` (default seed: the scenario's), shared by
    every trial; ``seed`` also seeds the sampler. Returns what ``tune.json`` holds
    (:func:`simscale.sweeps.tune_output.write_outputs` writes it): ``{"scenario", "strategy",
    "target", "space", "services": {name: {"baseline", "best", "trials", "entry"}}, ...}``.
    Raises :class:`UserError` (one line naming the flag or file) for bad input.
    """
    t0 = time.perf_counter()
    optuna = _optuna()
    goal = parse_target(target) if isinstance(target, str) else target
    _check(trials, replications, workers, executor, address)
    spec = _pick_spec(scenario, strategy)
    names = _services(scenario, service)
    from simscale.strategies import strategy_class

    model = getattr(strategy_class(spec.name), "Params", None)
    if model is None:
        raise UserError(f"strategy '{spec.display_label}' has no Params model to tune",
                        source="--strategy")
    given = model.model_validate(spec.params).model_dump()
    space = search_space(spec.name, given, model, _writable(spec))
    base_seed = scenario.seed if seed is None else int(seed)
    seeds = [base_seed + r for r in range(replications)]
    profile = _prepare(scenario, spec, names, replications, force)
    result: dict[str, Any] = {
        "scenario": scenario.name, "source": scenario.source, "strategy": spec.display_label,
        "strategy_name": spec.name, "imported_from": _imported(spec), "target": {
            "figure": goal.figure, "op": goal.op, "value": goal.value, "text": goal.text},
        "checked_on": "mean over replications (worst replication reported)",
        "trials": trials, "replications": replications, "seed": base_seed, "seeds": seeds,
        "sampler": f"optuna {optuna.__version__} TPESampler(seed={base_seed}, "
                   f"n_startup_trials={min(STARTUP_TRIALS, trials)}, multivariate=True), "
                   "constraint: the target's relative violation", "batch_size": batch_size,
        "executor": executor, "workers": workers,
        "space": [d.dim.describe(d.integer) for d in space], "services": {},
    }
    with ExitStack() as stack:
        ray = stack.enter_context(ray_session(workers, address)) if executor == "ray" else None
        advance = stack.enter_context(_progress(progress, len(names) * (trials + 1)))
        for name in names:
            ev = Evaluator(scenario, name, spec.name, profile, goal, seeds, workers=workers,
                           ray=ray)
            result["services"][name] = _study(optuna, ev, space, given, spec, trials,
                                              base_seed, batch_size, advance)
    result["wall_s"] = time.perf_counter() - t0
    from simscale import __version__

    result["simscale_version"] = __version__
    return result


def _imported(spec: StrategySpec) -> dict[str, Any] | None:
    if spec.imported_from is None:
        return None
    keep = ("file", "document", "metric", "kind")
    return {k: spec.imported_from.get(k) for k in keep}


def _prepare(scenario: Scenario, spec: StrategySpec, names: list[str], replications: int,
             force: bool) -> Any:
    """Load and check the profile, check the memory and time of one trial's runs (as
    ``simulate`` would), and compile or load the request plane's loops once, here."""
    from simscale.simulator.budget import check_budget
    from simscale.simulator.requestplane import prepare_kernels
    from simscale.simulator.runner import check_profile, load_scenario_profile, scenario_budget
    from simscale.simulator.workloads import expected_arrivals

    profile = load_scenario_profile(scenario)
    if profile is not None:
        check_profile(scenario, profile)
    sub = scenario if scenario.cluster is not None else scenario.model_copy(
        update={"services": [s for s in scenario.services if s.name in names]})
    check_budget(scenario_budget(sub, [spec], replications),
                 source=scenario.source or scenario.name, force=force)
    n_max = max(int(expected_arrivals(s.workload, scenario.duration_s,
                                      base_dir=scenario.base_dir)) for s in sub.services)
    prepare_kernels(n_max)
    return profile


def _progress(enabled: bool, total: int) -> Any:
    from simscale.sweeps.run import _progress_bar

    return _progress_bar(enabled, total, 0, "tuning")


def _suggest(trial: Any, space: list[SpaceDim], given: dict[str, Any]
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tuned values, full parameters)`` of an Optuna trial."""
    values = {d.name: d.dim.value(trial.suggest_int(d.name, d.dim.low, d.dim.high,
                                                    log=d.dim.log), d.integer)
              for d in space}
    return values, {**given, **values}


def _study(optuna: Any, ev: Evaluator, space: list[SpaceDim], given: dict[str, Any],
           spec: StrategySpec, trials: int, seed: int, batch_size: int,
           advance: Callable[[bool], None]) -> dict[str, Any]:
    """One service's study; returns its part of tune.json."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = min(STARTUP_TRIALS, trials)
    native = hasattr(optuna.trial.Trial, "set_constraint")  # Optuna 5: constraints on trials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=True,
            **({} if native else {"constraints_func": _constraints}))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    base_values = {d.name: given[d.name] for d in space}
    grid = {d.name: d.dim.grid_point(given[d.name]) for d in space}
    enqueued = all(k is not None for k in grid.values())
    if enqueued:
        study.enqueue_trial(grid)
    evaluated: list[tuple[int | None, Evaluation]] = []
    baseline: Evaluation | None = None
    remaining = trials + int(enqueued)
    first = True
    while remaining > 0:
        n = min(remaining, (startup + int(enqueued)) if first else batch_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            asked = [study.ask() for _ in range(n)]
            batch = [_suggest(t, space, given) for t in asked]
        extra = first and not enqueued
        if extra:
            batch.append((base_values, dict(given)))
        evals = ev.evaluate(batch, on_done=lambda: advance(False))
        if extra:
            baseline = evals.pop()
        for trial, e in zip(asked, evals, strict=True):
            if native:
                trial.set_constraint("target", e.violation)
            else:
                trial.set_user_attr("constraint", [e.violation])
            if e.error is not None or not math.isfinite(e.mean.get("cost_usd", math.nan)):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, e.mean["cost_usd"])
            evaluated.append((trial.number, e))
        if first and enqueued:
            baseline = evaluated[0][1]
        remaining -= n
        first = False
    assert baseline is not None
    if baseline.error is not None:
        raise UserError(f"the strategy as given cannot be simulated: {baseline.error}",
                        source="--strategy")
    return _service_result(spec, baseline, evaluated, enqueued, ev.target.figure)


def best_of(candidates: list[tuple[int | None, Evaluation]]) -> tuple[int | None, Evaluation]:
    """The best ``(trial number, evaluation)``: the cheapest feasible one (ties: the better
    target figure, then the earlier); else the one that misses the target least (ties: the
    cheaper, then the earlier). Evaluations that failed are never picked unless all did."""
    ok = [(i, c) for i, c in enumerate(candidates) if c[1].error is None] or list(
        enumerate(candidates))
    feasible = [(i, c) for i, c in ok if c[1].feasible]

    def cost(e: Evaluation) -> float:
        value = e.mean.get("cost_usd", math.nan)
        return value if math.isfinite(value) else math.inf

    if feasible:
        return min(feasible, key=lambda ic: (cost(ic[1][1]), ic[1][1].violation, ic[0]))[1]
    return min(ok, key=lambda ic: (ic[1][1].violation, cost(ic[1][1]), ic[0]))[1]


def _record(number: int | None, e: Evaluation, target_figure: str) -> dict[str, Any]:
    """An evaluation as tune.json holds it."""
    rec: dict[str, Any] = {
        "trial": number, "params": e.values,
        "cost_usd": e.mean.get("cost_usd", math.nan),
        "slo_attainment": e.mean.get("slo_attainment", math.nan),
        "feasible": bool(e.feasible),
        "target_value": e.mean.get(target_figure, math.nan), "target_worst": e.worst,
        "violation": e.violation, "mean": e.mean, "replications": e.runs,
        "wall_s": e.wall_s,
    }
    if e.error is not None:
        rec["error"] = e.error
    return rec


def _service_result(spec: StrategySpec, baseline: Evaluation,
                    evaluated: list[tuple[int | None, Evaluation]], enqueued: bool,
                    target_figure: str) -> dict[str, Any]:
    """A service's part of tune.json: baseline, best, every trial and the winning entry
    (``entry``: the built-in strategy entry with the best values: the entry's own parameters
    as given plus the tuned ones; every parameter for an imported entry)."""
    candidates = list(evaluated) if enqueued else [(None, baseline), *evaluated]
    number, best = best_of(candidates)
    base_rec = _record(0 if enqueued else None, baseline, target_figure)
    best_rec = _record(number, best, target_figure)
    best_rec["changed"] = {k: {"from": baseline.values[k], "to": v}
                           for k, v in best.values.items() if v != baseline.values[k]}
    trial_recs = []
    for n, e in evaluated:
        rec = _record(n, e, target_figure)
        rec["baseline"] = bool(enqueued and n == 0)
        trial_recs.append(rec)
    entry = {"name": spec.name, **spec.params, **best.values}
    return {"baseline": base_rec, "best": best_rec, "trials": trial_recs, "entry": entry}
