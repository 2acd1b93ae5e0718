"""Run a scenario's strategies on common random numbers and gather a :class:`SimulationResult`.

Replication ``r`` uses seed ``seed + r``; its inputs (:mod:`simscale.simulator.inputs`: arrivals
and service draws, generated once per (replication, service), spooled to disk for long services)
are shared by every strategy, and the cold-start, fault and routing streams restart from the same
state for every strategy.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from simscale.errors import UserError
from simscale.simulator.accumulate import timeseries_bin_s
from simscale.simulator.budget import Budget, check_budget, decision_wall_s, estimate
from simscale.simulator.engine import run_strategy
from simscale.simulator.inputs import (
    ServiceInputs,
    service_inputs,
    service_seed_sequences,
)
from simscale.simulator.metrics import run_figures
from simscale.simulator.requestplane import COMPILED_MIN_REQUESTS, prepare_kernels
from simscale.simulator.results import SimulationResult, aggregate_runs
from simscale.simulator.scenario import Scenario, StrategySpec
from simscale.simulator.serving import select_strategies
from simscale.strategies.base import StrategyFailed, sync_period_of

if TYPE_CHECKING:
    from pathlib import Path

    from simscale.profiler.schema import Profile
    from simscale.simulator.requesttable import RequestStore

__all__ = ["check_executor_options", "replication_inputs", "run_scenario", "scenario_budget",
           "select_strategies"]


def _source(scenario: Scenario) -> str:
    """The scenario's file, for error messages (``scenario '<name>'`` when built in code)."""
    return scenario.source or f"scenario '{scenario.name}'"


def _naming_scenario(err: UserError, scenario: Scenario, field: str) -> UserError:
    """``err`` (e.g. about a trace file) re-raised as one line that names the scenario file
    and the field first."""
    return UserError(err.format(), source=_source(scenario), field=field)


def check_executor_options(executor: str, workers: int | None, address: str | None) -> None:
    """Refuse, with a :class:`UserError` naming the flag, an unknown executor, fewer than one
    worker, an address without Ray, or the Ray executor when Ray is not installed: the one
    check of ``simulate``, ``sweep`` and ``tune``."""
    if executor not in ("local", "ray"):
        raise UserError(f"unknown executor '{executor}' (local or ray)", source="--executor")
    if workers is not None and workers < 1:
        raise UserError(f"needs at least 1 worker, got {workers}", source="--workers")
    if address and executor != "ray":
        raise UserError("--address needs --executor ray", source="--address")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("the ray executor needs Ray: pip install 'simscale[ray]'",
                            source="--executor") from None


def _needs_profile(scenario: Scenario) -> bool:
    return any(s.service_time == "profile" or s.cold_start_s == "profile"
               for s in scenario.services)


def scenario_profile_path(scenario: Scenario) -> str:
    """Where the scenario's ``profile`` field points: ``"default"`` or the resolved path."""
    if scenario.profile == "default":
        return "default"
    return str(scenario.resolve_path(scenario.profile))


def load_scenario_profile(scenario: Scenario, profile: Profile | str | Path | None = None
                          ) -> Profile | None:
    """The profile to simulate ``scenario`` with: ``profile`` (a loaded one or a path) when
    given, else the scenario's; ``None`` when no service uses the profile and none was given."""
    if profile is None and not _needs_profile(scenario):
        return None  # (importing the profile schema pulls in scipy.stats: skip when unused)
    from simscale.profiler.schema import Profile, load_profile

    if isinstance(profile, Profile):
        return profile
    return load_profile(scenario_profile_path(scenario) if profile is None else profile)


def check_profile(scenario: Scenario, profile: Profile) -> None:
    """Raise a :class:`UserError` naming the scenario file and ``services.N.model`` when a
    service that takes its service time or cold start from the profile has no measurements
    of its (model, device, threads) there."""
    for k, svc in enumerate(scenario.services):
        if svc.service_time == "profile" or svc.cold_start_s == "profile":
            try:
                profile.config(svc.model, svc.device, svc.threads)
            except UserError as err:
                raise _naming_scenario(err, scenario, f"services.{k}.model") from None


def scenario_budget(scenario: Scenario, specs: list[StrategySpec], replications: int = 1, *,
                    keep_requests: bool = False, workers: int = 1) -> Budget:
    """The memory and time estimate of simulating ``specs`` on ``scenario``, ``workers`` runs
    at a time (each strategy is built once, which also checks its parameters)."""
    from simscale.strategies import make_strategy

    src = _source(scenario)
    built = [(s.display_label, make_strategy(s.name, s.params, source=src)) for s in specs]
    return estimate(scenario, built, replications, keep_requests=keep_requests,
                    workers=workers)


class _ProgressBar:
    """A transient rich progress bar on stderr over the simulated seconds of all runs (each
    (strategy, replication) run counts ``duration_s``), with the time left."""

    def __init__(self, runs: int, duration_s: float, *, enabled: bool) -> None:
        self._progress = None
        self.duration_s = float(duration_s)
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(TextColumn("simulating"), BarColumn(), TaskProgressColumn(),
                                  TimeRemainingColumn(), TextColumn("{task.description}"),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        self._task = self._progress.add_task("", total=runs * self.duration_s)
        self._runs_done = 0
        self._runs = runs

    def simulated(self, dt_s: float) -> None:
        """``dt_s`` more simulated seconds are done (within a run)."""
        if self._progress is not None:
            self._progress.update(self._task, advance=dt_s)

    def advance(self, description: str, *, whole_run: bool = False) -> None:
        """A run finished (``whole_run``: its simulated seconds were not reported as they
        went)."""
        if self._progress is not None:
            self._runs_done += 1
            self._progress.update(self._task, advance=self.duration_s if whole_run else 0.0,
                                  description=f"{self._runs_done}/{self._runs} runs; last: "
                                              f"{description}")

    @property
    def callback(self) -> Any:
        """What ``run_strategy`` reports progress to (``None`` when the bar is off)."""
        return self.simulated if self._progress is not None else None

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def services_summary(scenario: Scenario) -> list[dict[str, Any]]:
    """The ``services`` list of summary.json: what each service is and how it is served."""
    return [{"name": s.name, "model": s.model, "device": s.device, "threads": s.threads,
             "slo_ms": s.slo_ms, "routing": s.routing,
             "max_batch_size": s.batching.max_batch_size,
             "cost_per_replica_hour": s.cost_per_replica_hour} for s in scenario.services]


def _run_spec(scenario: Scenario, spec: StrategySpec, rep: int, seed_r: int,
              inputs: dict[str, ServiceInputs], prof: Profile | None, runs: list[dict[str, Any]],
              ts_parts: list[pd.DataFrame], requests: RequestStore | None,
              on_progress: Any = None) -> float:
    """Simulate one strategy entry on one replication's inputs and append its runs, time series
    and (into ``requests`` when given) requests; returns the wall time in seconds. A strategy
    that fails is a :class:`UserError` naming its entry and the scenario file."""
    from simscale.strategies import make_strategy

    src = _source(scenario)
    t0 = time.perf_counter()
    strats = {svc.name: make_strategy(spec.name, spec.params, source=src)
              for svc in scenario.services}
    try:
        # with requests kept, streaming services write theirs to files as they go
        out = run_strategy(scenario, strats, inputs, prof, on_progress=on_progress,
                           requests_dir=None if requests is None
                           else requests.run_folder(f"{rep}-{uuid.uuid4().hex}"))
    except StrategyFailed as exc:
        raise UserError(f"strategy '{spec.display_label}' failed: {exc.message}",
                        source=src, field=f"strategies.{spec.display_label}") from None
    wall = time.perf_counter() - t0
    for srun in out:
        keep = requests is not None and srun.requests_file is None
        summ, ts, req = run_figures(srun, scenario.warmup_s, keep_requests=keep,
                                    bin_s=timeseries_bin_s(scenario.duration_s,
                                                           scenario.metrics.timeseries_bin_s))
        ident = {"strategy": spec.name, "label": spec.display_label,
                 "service": srun.service.name, "replication": rep}
        runs.append({**ident, "seed": seed_r, **summ, "wall_s": wall})
        for col, val in reversed(list(ident.items())):
            ts.insert(0, col, val)
        ts_parts.append(ts)
        if requests is not None:
            requests.add(ident, req, srun.requests_file)
    return wall


def run_scenario(
    scenario: Scenario,
    *,
    strategies: list[str] | None = None,
    seed: int | None = None,
    replications: int = 1,
    profile: Profile | str | Path | None = None,
    keep_requests: bool = False,
    progress: bool = False,
    force: bool = False,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    bounds: bool = False,
) -> SimulationResult:
    """Simulate the scenario's strategies (or those named/labelled in ``strategies``) for
    ``replications`` seeds (``seed + r``; default seed: the scenario's) on common random
    numbers. With ``workers > 1`` (local processes) or ``executor="ray"`` (``address``: a Ray
    cluster, default a local Ray of ``workers`` CPUs) the (strategy, replication) runs go in
    parallel, each regenerating its replication's inputs from the seed; the result is the same
    as a serial run's (same runs in the same order; only wall times differ).
    ``profile``: a loaded profile or a path; by default the scenario's ``profile``
    field, loaded only when some service uses ``service_time: profile`` or
    ``cold_start_s: profile``. Raises :class:`UserError` for unknown strategies, for a strategy
    that fails (raises, exits or returns something that is not a decision), and, unless
    ``force``, when the run would need more than half of the available memory or more than
    half an hour (see :mod:`simscale.simulator.budget`). ``bounds``: also compute each
    service's bounds on the optimal cost (:mod:`simscale.simulator.bounds`; summary
    ``bounds``)."""

    if replications < 1:
        raise UserError("replications must be at least 1", field="replications")
    t_all = time.perf_counter()
    specs = select_strategies(scenario, strategies)
    base_seed = scenario.seed if seed is None else int(seed)
    prof = load_scenario_profile(scenario, profile)
    src = _source(scenario)
    check_profile(scenario, prof)
    check_executor_options(executor, workers, address)
    parallel = executor == "ray" or (workers > 1 and len(specs) * replications > 1)
    check_budget(scenario_budget(scenario, specs, replications, keep_requests=keep_requests,
                                 workers=workers if parallel else 1),
                 source=src, force=force)
    runs: list[dict[str, Any]] = []
    ts_parts: list[pd.DataFrame] = []
    #: the bounds entries (``bounds``), computed on each replication's inputs by the loops
    bounds_out: list[dict[str, Any]] | None = [] if bounds else None
    store = None
    if keep_requests:
        from simscale.simulator.requesttable import RequestStore

        store = RequestStore()
    bar = _ProgressBar(len(specs) * replications, scenario.duration_s, enabled=progress)
    try:
        if parallel:
            loops = _run_parallel(scenario, specs, replications, base_seed, prof, workers,
                                  executor, address, bar, runs, ts_parts, store, bounds_out)
        else:
            loops = _run_serial(scenario, specs, replications, base_seed, prof, bar, runs,
                                ts_parts, store, bounds_out)
    finally:
        bar.close()
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "seed": base_seed,
        "duration_s": float(scenario.duration_s),
        "warmup_s": float(scenario.warmup_s),
        "simscale_version": _version(),
        "replications": replications,
        "wall_s": 0.0,
        "profile": None if prof is None else {
            "source": str(prof.source), "machine": prof.machine.model_dump(mode="json"),
            "created_at": prof.created_at},
        "services": services_summary(scenario),
        "request_plane": loops,
        "runs": runs,
    }
    if replications > 1:
        summary["aggregate"] = aggregate_runs(runs)
    if bounds_out is not None:  # lower bound and hindsight schedule on the same inputs
        summary["bounds"] = bounds_out
    timeseries = pd.concat(ts_parts, ignore_index=True) if ts_parts else pd.DataFrame()
    for col in ("strategy", "label", "service"):
        if col in timeseries:
            timeseries[col] = timeseries[col].astype("category")
    summary["wall_s"] = time.perf_counter() - t_all
    return SimulationResult(summary, timeseries, store)


def replication_inputs(scenario: Scenario, seed_r: int, prof: Profile | None,
                       services: set[str] | None = None, *, spool: bool = False,
                       live: bool = False) -> dict[str, ServiceInputs]:
    """Every service's inputs of replication seed ``seed_r`` (only those named in
    ``services`` when given: each service's streams are its own, so the others' are not
    needed); a workload that cannot be read is a :class:`UserError` naming
    ``services.N.workload``. ``spool``: services that will stream (about
    :data:`~simscale.simulator.streaming.STREAM_MIN_REQUESTS` requests or more expected) get
    their inputs on disk (:mod:`simscale.simulator.spool`), read a chunk at a time by each run;
    with ``live`` too (for inputs that a single run will read), they are not drawn now: that
    run's plane draws them as it reads them (:mod:`simscale.simulator.feeds`)."""
    from simscale.simulator.streaming import streams
    from simscale.simulator.workloads import expected_arrivals

    children = service_seed_sequences(scenario, seed_r)
    inputs = {}
    for k, (svc, ss) in enumerate(zip(scenario.services, children, strict=True)):
        if services is not None and svc.name not in services:
            continue
        try:
            on_disk = spool and streams(None, int(expected_arrivals(
                svc.workload, scenario.duration_s, base_dir=scenario.base_dir)))
            inputs[svc.name] = service_inputs(svc, scenario, ss, prof, spool=on_disk and not live,
                                              live=on_disk and live)
        except UserError as err:
            raise _naming_scenario(err, scenario, f"services.{k}.workload") from None
    return inputs


def command_requests(n_requests: dict[str, int], n_specs: int, replications: int,
                     bounds: bool) -> int:
    """About how many requests a ``simulate`` command's request planes process in all:
    every service's ``n_requests`` once per (strategy, replication), and, with ``bounds``, up
    to :data:`~simscale.simulator.bounds.HINDSIGHT_RUNS` more exact runs per replication of
    the services the hindsight search takes. What decides whether loading the compiled loops
    pays (:data:`~simscale.simulator.requestplane.COMPILED_MIN_REQUESTS`): the shipped flash
    crowd's planes are each smaller than that, but its 7 strategies and the hindsight runs
    take 19 passes over 190,000 requests."""
    from simscale.simulator.bounds import HINDSIGHT_MAX_REQUESTS, HINDSIGHT_RUNS

    total = sum(n_requests.values()) * n_specs * replications
    if bounds:
        small = sum(n for n in n_requests.values() if n <= HINDSIGHT_MAX_REQUESTS)
        total += small * HINDSIGHT_RUNS * replications
    return int(total)


def _run_serial(scenario: Scenario, specs: list[StrategySpec], replications: int,
                base_seed: int, prof: Profile | None, bar: _ProgressBar,
                runs: list[dict[str, Any]], ts_parts: list[pd.DataFrame],
                requests: RequestStore | None, bounds_out: list[dict[str, Any]] | None = None
                ) -> dict[str, Any] | None:
    """Every (replication, strategy) run in this process, in order, and each replication's
    bounds into ``bounds_out`` (when given) on the same inputs; returns what
    :func:`prepare_kernels` said."""
    loops = None
    for rep in range(replications):
        seed_r = base_seed + rep
        # one strategy: the only run reads the inputs, so it draws them as it goes (the bounds'
        # pass over them taps that draw) instead of a spool being written and read once
        inputs = replication_inputs(scenario, seed_r, prof, spool=True, live=len(specs) == 1)
        passes = None
        if bounds_out is not None:
            from simscale.simulator.bounds import tap_inputs

            passes = tap_inputs(scenario, inputs)
        if loops is None:  # compile (first run) or load the loops once, measured
            loops = prepare_kernels(command_requests(
                {k: i.n_requests for k, i in inputs.items()}, len(specs), replications,
                bounds_out is not None))
        for spec in specs:
            wall = _run_spec(scenario, spec, rep, seed_r, inputs, prof, runs, ts_parts,
                             requests, on_progress=bar.callback)
            bar.advance(f"{spec.display_label} (replication {rep}) {wall:.2f} s")
        if bounds_out is not None:
            from simscale.simulator.bounds import replication_bounds

            bounds_out += replication_bounds(scenario, rep, inputs, prof, passes=passes)
    return loops


@dataclass(frozen=True)
class _SimJob:
    """One (strategy, replication) run of a parallel ``simulate`` (``key``, ``label`` and
    ``seed`` identify it to the executors of :mod:`simscale.sweeps.executors`)."""

    key: str
    label: str
    seed: int
    order: int
    rep: int
    spec: StrategySpec
    scenario: Scenario
    profile: Profile | None
    #: the parent's :class:`RequestStore` folder when requests are kept (``None``: not kept)
    requests_dir: str | None
    #: one token per ``run_scenario`` call: a worker reuses the inputs of (token, seed)
    run_token: str = ""
    #: compute replication ``rep``'s bounds instead of running ``spec``
    bounds: bool = False
    #: load the compiled loops before running (the runs' requests in all make it pay; the
    #: worker's planes then use them however small each is)
    compiled: bool = False


#: the inputs a worker generated last: ``((run token, seed), inputs)``; jobs go out
#: replication by replication, so a worker mostly runs several strategies on the same inputs
_WORKER_INPUTS: list[Any] = [None, None]


def _execute_sim_job(job: _SimJob) -> dict[str, Any]:
    """Run one :class:`_SimJob` in a worker: ``{"runs", "ts", "req", "wall_s"}`` (``req``:
    the kept frames and streamed files of the run's requests, or ``None``), or
    ``{"error", "user_error": (message, source, field)}`` for a user's error (re-raised by the
    parent as the serial run would raise it)."""
    runs: list[dict[str, Any]] = []
    ts: list[pd.DataFrame] = []
    req = None
    if job.requests_dir is not None:
        from simscale.simulator.requesttable import RequestStore

        req = RequestStore(job.requests_dir)
    if job.compiled:
        prepare_kernels(COMPILED_MIN_REQUESTS)  # (loaded once per worker process)
    try:
        if _WORKER_INPUTS[0] != (job.run_token, job.seed):
            _WORKER_INPUTS[:] = [None, None]  # free the previous ones first
            _WORKER_INPUTS[:] = [(job.run_token, job.seed),
                                 replication_inputs(job.scenario, job.seed, job.profile,
                                                    spool=True)]
        inputs = _WORKER_INPUTS[1]
        if job.bounds:
            from simscale.simulator.bounds import replication_bounds

            t0 = time.perf_counter()
            entries = replication_bounds(job.scenario, job.rep, inputs, job.profile)
            return {"bounds": entries, "wall_s": time.perf_counter() - t0}
        wall = _run_spec(job.scenario, job.spec, job.rep, job.seed, inputs, job.profile, runs,
                         ts, req)
    except UserError as err:
        return {"error": err.format(), "user_error": (err.message, err.source, err.field)}
    _release_memory()  # (a worker idle while the others finish holds no run's leftovers)
    return {"runs": runs, "ts": ts, "wall_s": wall,
            "req": None if req is None else (req.frames, req.files)}


def _release_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc's
    ``malloc_trim``; nothing elsewhere): a long run frees hundreds of thousands of small objects
    (replica records, events) that would otherwise stay in the process's resident memory."""
    import ctypes
    import gc

    gc.collect()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # (the process's own symbols)
    if trim is not None:
        trim(0)


def _decisions_wall_s(scenario: Scenario, spec: StrategySpec) -> float:
    """The estimated wall time of ``spec``'s decisions in one run (:func:`~simscale.simulator.
    budget.decision_wall_s` per decision, ``duration_s`` over its sync period of them): the
    part of a run's time that differs between strategies, which orders the parallel runs."""
    from simscale.strategies import make_strategy

    strat = make_strategy(spec.name, spec.params, source=_source(scenario))
    return float(scenario.duration_s) / sync_period_of(strat) * decision_wall_s(strat)


def _run_parallel(scenario: Scenario, specs: list[StrategySpec], replications: int,
                  base_seed: int, prof: Profile | None, workers: int, executor: str,
                  address: str | None, bar: _ProgressBar, runs: list[dict[str, Any]],
                  ts_parts: list[pd.DataFrame], requests: RequestStore | None,
                  bounds_out: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The runs on the sweep executors (local processes or Ray), gathered in serial order;
    with ``bounds_out``, one more job per replication computes its bounds (in a worker, on the
    inputs it draws for that replication)."""
    from simscale.simulator.workloads import expected_arrivals
    from simscale.sweeps.executors import ray_session, run_local, run_ray

    expected = {s.name: int(expected_arrivals(s.workload, scenario.duration_s,
                                              base_dir=scenario.base_dir))
                for s in scenario.services}
    # compiled once here (the workers load numba's cache) when each worker's share of the runs
    # has enough requests in all
    loops = prepare_kernels(command_requests(expected, len(specs), replications,
                                             bounds_out is not None) // max(1, workers))
    compiled = loops["loops"] == "compiled"
    token = uuid.uuid4().hex
    jobs = [_SimJob(f"{spec.display_label}#{rep}", spec.display_label, base_seed + rep,
                    rep * len(specs) + k, rep, spec, scenario, prof,
                    None if requests is None else str(requests.folder), token,
                    compiled=compiled)
            for rep in range(replications) for k, spec in enumerate(specs)]
    if bounds_out is not None:
        jobs += [_SimJob(f"bounds#{rep}", "bounds", base_seed + rep,
                         len(jobs) + rep, rep, specs[0], scenario, prof, None, token, bounds=True,
                         compiled=compiled)
                 for rep in range(replications)]
    # longest first (list scheduling's LPT rule): runs differ mostly in their decisions' time
    # (how often they decide, how long a decision takes), so those start first and the others
    # fill in around them; the results are gathered in the serial order whatever the order
    # (the bounds jobs first: hindsight's exact runs can be the longest job of all)
    started = sorted(jobs, key=lambda job: -math.inf if job.bounds
                     else -_decisions_wall_s(scenario, job.spec))
    done: dict[int, dict[str, Any]] = {}

    def on_done(job: _SimJob, record: dict[str, Any]) -> None:
        done[job.order] = record
        if not job.bounds:
            bar.advance(f"{job.label} (replication {job.rep}) "
                        f"{record.get('wall_s', 0.0):.2f} s", whole_run=True)

    if executor == "ray":
        with ray_session(workers, address) as ray:
            run_ray(ray, started, on_done, execute=_execute_sim_job)
    else:
        run_local(started, workers, on_done, execute=_execute_sim_job)
    for job in jobs:  # the serial order, and the first error as the serial run meets it
        record = done[job.order]
        if "user_error" in record:
            message, source, field_name = record["user_error"]
            raise UserError(message, source=source, field=field_name)
        if "error" in record:
            raise UserError(f"strategy '{job.label}' (replication {job.rep}) failed: "
                            f"{record['error']}", source=_source(scenario),
                            field=f"strategies.{job.label}")
        if job.bounds:
            bounds_out += record["bounds"]  # type: ignore[operator]
            continue
        runs.extend(record["runs"])
        ts_parts.extend(record["ts"])
        if requests is not None and record["req"] is not None:
            frames, files = record["req"]
            requests.frames.extend(frames)
            for ident, file in files:
                requests.add(ident, None, file)
    return loops


def _version() -> str:
    from simscale import __version__

    return __version__
