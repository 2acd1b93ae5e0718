"""Running the tuner's simulations: one :class:`TrialJob` per (parameter set, replication), run
in this process or on the sweep executors (:func:`simscale.sweeps.executors.run_local`,
:func:`~simscale.sweeps.executors.run_ray`), and gathered per parameter set
(:class:`Evaluator`).

Common random numbers: replication ``r`` of every parameter set uses seed ``seed + r`` and the
service's own random stream of the whole scenario (child ``k`` of the seed's ``SeedSequence``,
as :func:`simscale.simulator.inputs.service_inputs` draws it for ``simulate``), so every trial
sees the same arrivals and service-time draws, and a trial's figures equal those ``simulate``
prints for the same parameters. Only the tuned service is simulated, unless the scenario has a
shared ``cluster`` (then its services compete for cores and all of them run, each with the
trial's parameters, as the scenario's strategy entry would).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from simscale.errors import UserError
from simscale.simulator.scenario import Scenario
from simscale.sweeps.tune_space import Target

__all__ = ["Evaluation", "Evaluator", "TrialJob", "execute_trial"]

#: figures kept from each run (with the target's figure)
KEPT_FIGURES: tuple[str, ...] = ("cost_usd", "slo_attainment", "latency_ms.p95",
                                 "mean_replicas", "dropped", "scale_events")


@dataclass(frozen=True)
class TrialJob:
    """One parameter set on one replication of one service (``key``, ``label`` and ``seed``
    identify it to the executors).

    ``scenario`` is the whole validated scenario; ``service`` the tuned service's name;
    ``strategy``/``params`` the built-in and its full parameters; ``token`` one per tuning run
    (a worker reuses the inputs of ``(token, seed)``); ``figures`` the dotted figures to
    return.
    """

    key: str
    label: str
    seed: int
    order: int
    scenario: Scenario
    service: str
    strategy: str
    params: dict[str, Any]
    profile: Any
    token: str
    figures: tuple[str, ...]


#: a worker's inputs of the last ``(token, seed)`` pairs: ``{(token, seed): inputs by service}``
_INPUTS: dict[tuple[str, int], dict[str, Any]] = {}
#: at most this many replications' inputs are kept per worker
_INPUTS_KEPT = 16


def _simulated(scenario: Scenario, service: str) -> Scenario:
    """The scenario reduced to what must run: the tuned service alone, or every service when
    they share a cluster."""
    if scenario.cluster is not None:
        return scenario
    return scenario.model_copy(update={"services": [s for s in scenario.services
                                                    if s.name == service]})


def _inputs_for(job: TrialJob, run_scenario: Scenario) -> dict[str, Any]:
    """The inputs of ``job``'s replication for the services that run (cached per worker)."""
    from simscale.simulator.runner import replication_inputs

    key = (job.token, job.seed)
    if key not in _INPUTS:
        if any(k[0] != job.token for k in _INPUTS) or len(_INPUTS) >= _INPUTS_KEPT:
            _INPUTS.clear()
        _INPUTS[key] = replication_inputs(job.scenario, job.seed, job.profile,
                                          {s.name for s in run_scenario.services})
    return _INPUTS[key]


def execute_trial(job: TrialJob) -> dict[str, Any]:
    """Simulate one :class:`TrialJob` (in a worker, a Ray task or this process). Returns
    ``{"figures": {name: value}, "wall_s"}``, or ``{"error": one line, "wall_s"}`` when the
    parameters are refused, the strategy fails or the run raises (as a sweep's job records
    it); only Ctrl-C propagates."""
    from simscale.simulator.engine import run_strategy
    from simscale.simulator.metrics import run_figures
    from simscale.simulator.schema import flatten
    from simscale.strategies import make_strategy
    from simscale.strategies.base import StrategyFailed
    from simscale.sweeps.store import error_text

    t0 = time.perf_counter()
    try:
        run_sc = _simulated(job.scenario, job.service)
        inputs = _inputs_for(job, run_sc)
        strats = {s.name: make_strategy(job.strategy, job.params, source=job.scenario.source)
                  for s in run_sc.services}
        out = run_strategy(run_sc, strats, inputs, job.profile)
        srun = next(r for r in out if r.service.name == job.service)
        summary, _, _ = run_figures(srun, job.scenario.warmup_s, keep_requests=False)
    except UserError as err:
        return {"error": err.format(), "wall_s": time.perf_counter() - t0}
    except StrategyFailed as exc:
        return {"error": f"strategy failed: {exc.message}", "wall_s": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - recorded as the trial's error, as a sweep does
        return {"error": error_text(exc), "wall_s": time.perf_counter() - t0}
    flat = flatten(summary, numbers_only=True)
    figures = {name: float(flat.get(name, float("nan"))) for name in job.figures}
    return {"figures": figures, "wall_s": time.perf_counter() - t0}


@dataclass
class Evaluation:
    """One parameter set evaluated over the replications.

    ``values``: the tuned parameters' values; ``params``: the entry's full parameters;
    ``runs``: one ``{"seed", figure: value...}`` per replication; ``mean``: each figure's mean
    over the replications; ``worst``: the target figure's replication furthest from the
    target; ``feasible``: the mean meets the target; ``violation``: how far the mean is from
    it (0 when met; see :meth:`Target.violation`); ``error``: why it could not be simulated.
    """

    values: dict[str, Any]
    params: dict[str, Any]
    runs: list[dict[str, Any]]
    mean: dict[str, float]
    worst: float
    feasible: bool
    violation: float
    error: str | None = None
    wall_s: float = 0.0


def _mean(xs: Sequence[float]) -> float:
    import math

    return math.fsum(xs) / len(xs) if xs else math.nan


class Evaluator:
    """Evaluates batches of parameter sets on the tuned service, every seed of ``seeds`` each:
    on Ray when ``ray`` is a connected ``ray`` module (see
    :func:`simscale.sweeps.executors.ray_session`), on the local process pool when
    ``workers > 1``, else serially in this process. The numbers are the same either way (each
    job's numbers follow from its seed and parameters); only wall time differs."""

    def __init__(self, scenario: Scenario, service: str, strategy: str, profile: Any,
                 target: Target, seeds: list[int], *, workers: int = 1,
                 ray: Any = None) -> None:
        self.scenario = scenario
        self.service = service
        self.strategy = strategy
        self.profile = profile
        self.target = target
        self.seeds = seeds
        self.workers = workers
        self.figures = tuple(dict.fromkeys((*KEPT_FIGURES, target.figure)))
        self.token = uuid.uuid4().hex
        self._ray = ray

    def evaluate(self, batch: list[tuple[dict[str, Any], dict[str, Any]]],
                 on_done: Callable[[], None] | None = None) -> list[Evaluation]:
        """Evaluate each ``(values, params)`` of ``batch`` over every seed; results in the
        batch's order. ``on_done()`` is called as each parameter set's last run finishes."""
        jobs = [TrialJob(f"{i}#{r}", f"trial {i}", seed, i * len(self.seeds) + r,
                         self.scenario, self.service, self.strategy, params, self.profile,
                         self.token, self.figures)
                for i, (_, params) in enumerate(batch) for r, seed in enumerate(self.seeds)]
        records: dict[int, dict[str, Any]] = {}
        left = [len(self.seeds)] * len(batch)

        def done(job: TrialJob, record: dict[str, Any]) -> None:
            records[job.order] = record
            i = job.order // len(self.seeds)
            left[i] -= 1
            if left[i] == 0 and on_done is not None:
                on_done()

        self._run(jobs, done)
        out = []
        for i, (values, params) in enumerate(batch):
            recs = [records[i * len(self.seeds) + r] for r in range(len(self.seeds))]
            out.append(self._gather(values, params, recs))
        return out

    def _run(self, jobs: list[TrialJob], done: Callable[[TrialJob, dict[str, Any]], None]
             ) -> None:
        from simscale.sweeps.executors import run_local, run_ray

        if self._ray is not None:
            run_ray(self._ray, jobs, done, execute=execute_trial)
        elif self.workers > 1 and len(jobs) > 1:
            run_local(jobs, self.workers, done, execute=execute_trial)
        else:
            for job in jobs:
                done(job, execute_trial(job))

    def _gather(self, values: dict[str, Any], params: dict[str, Any],
                records: list[dict[str, Any]]) -> Evaluation:
        import math

        wall = sum(float(r.get("wall_s", 0.0)) for r in records)
        errors = [r["error"] for r in records if "error" in r]
        if errors:
            return Evaluation(values, params, [], {}, math.nan, False, 1e9, errors[0], wall)
        runs = [{"seed": seed, **r["figures"]} for seed, r in zip(self.seeds, records,
                                                                  strict=True)]
        mean = {f: _mean([run[f] for run in runs]) for f in self.figures}
        fig = self.target.figure
        value = mean[fig]
        return Evaluation(values, params, runs, mean,
                          self.target.worst([run[fig] for run in runs]),
                          self.target.met(value), self.target.violation(value), None, wall)
