"""Parameter sweeps: many simulations of one scenario, on a process pool or on Ray.

A sweep file (YAML) names a scenario and the values to try::

    scenario: ../flash_crowd.yaml          # relative to the sweep file (or a shipped name)
    grid:                                  # dotted paths into the scenario -> values to try
      services.resnet50.workload.peak_rps: [10, 20, 40]
      strategies.hpa.target_utilization: [0.5, 0.7]
    strategies: [static, hpa, oracle]      # optional: a subset (names or labels)
    seeds: 2                               # optional: how many seeds (or a list of seeds)

List items are addressed by position or by their ``name``/``label`` (as with ``--set``). Every
grid point (the cartesian product of the grid's lists, in file order) × seed × strategy is one
*job*: one strategy simulated on one variant of the scenario with one seed, for all of its
services. Seeds given as a count ``n`` are the variant's ``seed``, ``seed + 1``, …,
``seed + n - 1``, so every job's numbers are fixed by its configuration whichever executor or
worker runs it, and in whatever order.

Nothing is lost: each finished job is written as soon as it finishes to
``OUTDIR/runs/<key>.json`` (atomically), where ``key`` is the SHA-256 of the job's full
configuration (the validated scenario variant reduced to the job's strategy, the strategy
label, the seed, the simscale version, and the contents of the files the scenario reads: a
profile other than the shipped one, traces). Running the same sweep again (after Ctrl-C, a crash
or a killed worker, or with more grid values) computes only the jobs whose file is missing;
jobs that are identical across grid points (e.g. ``static`` when only an ``hpa`` parameter
varies) are computed once. A job that raises is written to ``OUTDIR/runs/<key>.error.json``
with its error and traceback, the other jobs go on, and it is tried again on the next run.

The results table (``OUTDIR/results.parquet`` and ``OUTDIR/results.csv``) has one row per
(job, service): a column per grid path (named by the path; ``grid.<path>`` if that name is taken),
``strategy``, ``label``, ``seed``, ``service``, ``replication``, every figure of the run as in
``summary.json`` (``simulator/RESULTS.md``; nested names joined by dots, e.g.
``latency_ms.p95``, ``info.<name>``; the ``events`` list is left out), ``error`` (empty unless
the job failed) and ``job`` (the key).

Python API: :func:`run_sweep`; :func:`sweep_command` is the CLI's click-free entry point.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
import os
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simscale import __version__
from simscale.errors import UserError, pydantic_error_to_user_error
from simscale.io import write_json_atomic, write_with_atomic
from simscale.safeload import MAX_YAML_BYTES, load_yaml, read_text
from simscale.simulator.scenario import (
    Scenario,
    load_scenario,
    set_dotted,
    shipped_scenario_path,
)

__all__ = [
    "DEFAULT_RUNNER",
    "Job",
    "SweepFile",
    "SweepPlan",
    "SweepResult",
    "load_sweep",
    "plan_sweep",
    "run_sweep",
    "sweep_command",
]

#: The function that runs one job: ``module:function`` with the signature of
#: :func:`simscale.simulator.runner.run_scenario`.
DEFAULT_RUNNER = "simscale.simulator.runner:run_scenario"

#: Columns of the results table that are not figures of a run.
KEY_COLUMNS: tuple[str, ...] = ("strategy", "label", "seed", "service", "replication")
#: Run fields left out of the table (``events`` is a list of scaling actions).
SKIPPED_FIELDS: frozenset[str] = frozenset({"events"})

Executor = Literal["local", "ray"]
#: most simulations (grid points x strategies x seeds) a sweep plans without ``--force``
MAX_SWEEP_RUNS = 20_000


# ---------------------------------------------------------------------------- the sweep file
class SweepFile(BaseModel):
    """A sweep file. Unknown keys are rejected.

    Attributes
    ----------
    scenario:
        The scenario's path, relative to the sweep file's folder (or a shipped scenario's name).
    description:
        Free text.
    grid:
        Dotted path into the scenario -> the values to try (at least one each). The sweep runs
        the cartesian product of these lists, in file order.
    strategies:
        Names or labels of the scenario's strategies to run (default: all of them).
    seeds:
        How many seeds to run each grid point with (the scenario's ``seed``, ``seed + 1``, …),
        or the list of seeds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str = Field(min_length=1)
    description: str = ""
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    strategies: Annotated[list[Annotated[str, Field(min_length=1)]],
                          Field(min_length=1)] | None = None
    seeds: Annotated[int, Field(ge=1)] | Annotated[
        list[Annotated[int, Field(ge=0)]], Field(min_length=1)] = 1

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in grid.items():
            if not path or any(not part.strip() for part in path.split(".")):
                raise ValueError(f"'{path}' is not a dotted path (e.g. services.0.slo_ms)")
            canon = [_canonical_json(v) for v in values]
            if len(set(canon)) != len(canon):
                raise ValueError(f"'{path}' lists a value more than once")
        return grid

    @field_validator("strategies")
    @classmethod
    def _unique_strategies(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(set(names)) != len(names):
            raise ValueError("a strategy is listed more than once")
        return names

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: int | list[int]) -> int | list[int]:
        if isinstance(seeds, list) and len(set(seeds)) != len(seeds):
            raise ValueError("a seed is listed more than once")
        return seeds


def load_sweep(path: str | Path) -> SweepFile:
    """Read and validate a sweep file; any problem is a :class:`UserError` naming the file and
    field."""
    path = Path(path)
    data = load_yaml(read_text(path, what="sweep", max_bytes=MAX_YAML_BYTES), source=path,
                     what="sweep file")
    if not isinstance(data, dict):
        raise UserError("a sweep file must be a YAML mapping", source=path)
    try:
        return SweepFile.model_validate(data)
    except ValidationError as exc:
        raise pydantic_error_to_user_error(exc, path) from None


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Job:
    """One simulation: one strategy on one scenario variant with one seed (all services).

    ``scenario`` is the validated variant as a plain dict (the YAML format) holding only this
    job's strategy; ``base_dir`` is the scenario file's folder (trace and profile paths are
    relative to it); ``key`` is the SHA-256 (hex) of the configuration, the name of the job's
    result file.
    """

    key: str
    scenario: dict[str, Any]
    label: str
    seed: int
    services: tuple[str, ...]
    strategy_name: str
    base_dir: str | None = None
    source: str | None = None
    runner: str = DEFAULT_RUNNER
    #: run even over the memory and time limits (``simscale sweep --force``)
    force: bool = False


@dataclass(frozen=True)
class Row:
    """One (grid point, seed, strategy) of the sweep and the job that computes it."""

    point: tuple[Any, ...]
    job_key: str


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: its grid, its rows (in table order) and its distinct jobs."""

    path: Path
    spec: SweepFile
    scenario_path: Path
    grid_paths: tuple[str, ...]
    rows: tuple[Row, ...]
    jobs: dict[str, Job]

    @property
    def n_points(self) -> int:
        """Grid points (the product of the grid's list lengths)."""
        n = 1
        for values in self.spec.grid.values():
            n *= len(values)
        return n


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (hex, 16 digits) of the code and data that decide a simulation's numbers: the
    simulator's and strategies' sources, the profile schema and the shipped profiles. Stored
    runs of an older simulator are then recomputed, not reused, even at the same version."""
    import simscale.profiler.schema as schema_mod
    import simscale.simulator as sim_pkg
    import simscale.strategies as strat_pkg

    files: list[Path] = []
    for pkg in (sim_pkg, strat_pkg):
        files += sorted(Path(pkg.__file__).parent.glob("*.py"))
    schema_path = Path(schema_mod.__file__)
    files += [schema_path, *sorted((schema_path.parent / "data").glob("*.json"))]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def job_key(scenario: dict[str, Any], label: str, seed: int, version: str | None = None,
            inputs: dict[str, str] | None = None) -> str:
    """SHA-256 (hex) of a job's full configuration: the scenario dict (reduced to the job's
    strategy), the strategy label, the seed, the simscale version with the
    :func:`code_fingerprint` (default) and ``inputs`` (the SHA-256 of each file the scenario
    reads: a profile other than the shipped one, trace files)."""
    if version is None:
        version = f"{__version__}+{code_fingerprint()}"
    payload = {"scenario": scenario, "strategy": label, "seed": seed, "simscale_version": version}
    if inputs:
        payload["inputs"] = inputs
    return hashlib.sha256(_canonical_json(payload).encode("utf-8")).hexdigest()


def _input_files(sc: Scenario) -> list[str]:
    """The files a scenario reads besides itself (as written in it): its profile when it is not
    the shipped one, and every trace workload's CSV."""
    files = [] if sc.profile == "default" else [sc.profile]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("kind") == "trace" and isinstance(node.get("path"), str):
                files.append(node["path"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk([s.model_dump(mode="json")["workload"] for s in sc.services])
    return files


def _file_digest(path: Path, cache: dict[Path, str]) -> str:
    """SHA-256 of a file's bytes (``"missing"`` when it cannot be read), cached by path."""
    if path not in cache:
        try:
            cache[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            cache[path] = "missing"
    return cache[path]


def plan_sweep(path: str | Path, *, runner: str = DEFAULT_RUNNER,
               force: bool = False) -> SweepPlan:
    """Validate a sweep file and every scenario variant it makes, and list its jobs.

    Every grid value is applied and validated (with :func:`load_scenario` and the strategies'
    parameter models) before anything runs, so a bad path or value fails fast with a
    :class:`UserError` naming the sweep file and the ``grid.<path>`` field. Unless ``force``, a
    sweep of more than :data:`MAX_SWEEP_RUNS` simulations is refused before its grid is
    expanded, and so is a grid point whose runs would need more memory or time than
    :func:`simscale.simulator.budget.check_budget` allows.
    """
    path = Path(path)
    spec = load_sweep(path)
    scenario_path = _resolve_scenario_path(path, spec.scenario)
    base = load_scenario(scenario_path)  # errors name the scenario file and its field
    _check_sweep_size(spec, base, path, force)
    raw = load_yaml(read_text(scenario_path, what="scenario", max_bytes=MAX_YAML_BYTES),
                    source=scenario_path, what="scenario")
    src = str(scenario_path)
    base_dir = str(scenario_path.resolve().parent)
    grid_paths = tuple(spec.grid)

    def variant(assignments: list[tuple[str, Any]]) -> Scenario:
        data = copy.deepcopy(raw)
        for gpath, value in assignments:
            try:
                set_dotted(data, gpath, copy.deepcopy(value), source=str(path))
            except UserError as exc:
                raise UserError(f"{exc.message} in {scenario_path.name}", source=path,
                                field=f"grid.{gpath}") from None
        data["__source__"] = src
        data["__base_dir__"] = base_dir
        try:
            return load_scenario(data)
        except UserError as exc:
            what = ", ".join(f"{p}={_short(v)}" for p, v in assignments)
            where = f"{exc.field}: " if exc.field else ""
            field_name = f"grid.{assignments[0][0]}" if len(assignments) == 1 else "grid"
            raise UserError(f"{what} makes an invalid scenario ({where}{exc.message})",
                            source=path, field=field_name) from None

    # each value alone first, so that an error names the grid path at fault
    profiles: dict[str, Any] = {}
    _check_profile(base, profiles, path, field_name="scenario")
    for gpath, values in spec.grid.items():
        for value in values:
            sc = variant([(gpath, value)])
            _check_strategies(sc, spec, path, field_name=f"grid.{gpath}")
            _check_profile(sc, profiles, path, field_name=f"grid.{gpath}")

    seeds_for: Callable[[Scenario], list[int]]
    if isinstance(spec.seeds, int):
        n_seeds = spec.seeds
        seeds_for = lambda sc: [sc.seed + i for i in range(n_seeds)]  # noqa: E731
    else:
        fixed = list(spec.seeds)
        seeds_for = lambda sc: fixed  # noqa: E731

    rows: list[Row] = []
    jobs: dict[str, Job] = {}
    digests: dict[Path, str] = {}
    value_lists = [spec.grid[p] for p in grid_paths]
    for point in itertools.product(*value_lists):
        sc = variant(list(zip(grid_paths, point, strict=True))) if grid_paths else base
        selected = _check_strategies(sc, spec, path, field_name="grid" if grid_paths else None)
        _check_profile(sc, profiles, path, field_name="grid" if grid_paths else "scenario")
        _check_point_budget(sc, selected, len(seeds_for(sc)), path, point, force)
        dumped = sc.model_dump(mode="json", by_alias=True, exclude_none=True)
        inputs = {f: _file_digest(sc.resolve_path(f), digests) for f in _input_files(sc)}
        for seed in seeds_for(sc):
            for strat in selected:
                data = {**dumped, "strategies": [strat.model_dump(mode="json", by_alias=True,
                                                                  exclude_none=True)]}
                label = strat.display_label
                key = job_key(data, label, seed, inputs=inputs)
                if key not in jobs:
                    jobs[key] = Job(key=key, scenario=data, label=label, seed=seed,
                                    services=tuple(s.name for s in sc.services),
                                    strategy_name=strat.name, base_dir=base_dir, source=src,
                                    runner=runner, force=force)
                rows.append(Row(point=tuple(point), job_key=key))
    return SweepPlan(path=path, spec=spec, scenario_path=scenario_path, grid_paths=grid_paths,
                     rows=tuple(rows), jobs=jobs)


def _check_sweep_size(spec: SweepFile, base: Scenario, sweep_path: Path, force: bool) -> None:
    """Refuse, before the grid is expanded, a sweep of more than :data:`MAX_SWEEP_RUNS`
    simulations (grid points x strategies x seeds) unless ``force``."""
    points = math.prod(len(v) for v in spec.grid.values())
    strategies = len(spec.strategies) if spec.strategies is not None else len(base.strategies)
    seeds = spec.seeds if isinstance(spec.seeds, int) else len(spec.seeds)
    runs = points * strategies * seeds
    if runs > MAX_SWEEP_RUNS and not force:
        raise UserError(f"{points:,} grid points x {strategies} strategies x {seeds} seeds = "
                        f"{runs:,} simulations, over the limit of {MAX_SWEEP_RUNS:,}; shrink "
                        "the grid, or pass --force", source=sweep_path, field="grid")


def _check_point_budget(sc: Scenario, selected: list[Any], seeds: int, sweep_path: Path,
                        point: tuple[Any, ...], force: bool) -> None:
    """The memory and time estimate of one grid point's runs, as ``simulate`` checks it."""
    from simscale.simulator.budget import check_budget
    from simscale.simulator.runner import scenario_budget

    try:
        check_budget(scenario_budget(sc, selected, 1), source=str(sweep_path), force=force)
    except UserError as exc:
        where = f" at grid point {_short(point, 60)}" if point else ""
        raise UserError(f"{exc.field}{where}: {exc.message}", source=sweep_path,
                        field="grid" if point else "scenario") from None
    del seeds  # each job runs one seed: the limits apply per job


def _check_profile(sc: Scenario, cache: dict[str, Any], sweep_path: Path,
                   field_name: str) -> None:
    """Load the variant's profile (once per file) and look up what its services need from it,
    as the simulator will, so that a missing profile or measurement fails before anything
    runs rather than in every job."""
    if not any(s.service_time == "profile" or s.cold_start_s == "profile" for s in sc.services):
        return
    from simscale.profiler.schema import load_profile
    from simscale.simulator.runner import check_profile, scenario_profile_path

    where = scenario_profile_path(sc)
    try:
        if where not in cache:
            cache[where] = load_profile(where, warn=False)
        check_profile(sc, cache[where])
    except UserError as exc:
        raise UserError(f"the scenario's profile does not serve it: {exc.format()}",
                        source=sweep_path, field=field_name) from None


def _resolve_scenario_path(sweep_path: Path, scenario: str) -> Path:
    p = Path(scenario)
    if not p.is_absolute():
        p = sweep_path.parent / p
    if p.is_file():
        return p
    shipped = shipped_scenario_path(scenario)
    if shipped is not None:
        return shipped
    raise UserError(f"scenario file not found: {p}", source=sweep_path, field="scenario")


def _check_strategies(sc: Scenario, spec: SweepFile, sweep_path: Path,
                      field_name: str | None) -> list[Any]:
    """The variant's strategies that the sweep runs, each built once to check its parameters."""
    from simscale.strategies import make_strategy

    if spec.strategies is None:
        selected = list(sc.strategies)
    else:
        selected = []
        for i, name in enumerate(spec.strategies):
            match = [s for s in sc.strategies if s.display_label == name]
            match = match or [s for s in sc.strategies if s.name == name]
            if not match:
                have = ", ".join(s.display_label for s in sc.strategies)
                raise UserError(f"no strategy '{name}' in the scenario (it has: {have})",
                                source=sweep_path, field=f"strategies.{i}")
            selected.extend(s for s in match if s not in selected)
    for strat in selected:
        try:
            make_strategy(strat.name, strat.params, source=str(sweep_path))
        except UserError as exc:
            where = f" ({exc.field})" if exc.field else ""
            raise UserError(f"strategy '{strat.display_label}'{where}: {exc.message}",
                            source=sweep_path, field=field_name or "strategies") from None
    return selected


# ---------------------------------------------------------------------------- one job
def execute_job(job: Job) -> dict[str, Any]:
    """Run one job (in a worker process or a Ray task) and return its record.

    The record is ``{"key", "label", "seed", "runs": [summary.json's run dicts],
    "wall_s": seconds, "simscale_version"}`` or, when the simulation raised,
    ``{"key", "label", "seed", "error": "Type: message", "traceback": str, ...}``.
    Whatever the job raises is caught here, so that one failing job never stops a sweep: any
    exception, ``SystemExit`` (a strategy that calls ``sys.exit``) and every other
    ``BaseException`` subclass; only ``KeyboardInterrupt`` (Ctrl-C) propagates.
    """
    import importlib

    t0 = time.perf_counter()
    record: dict[str, Any] = {"key": job.key, "label": job.label, "seed": job.seed,
                              "simscale_version": __version__}
    try:
        module_name, _, func_name = job.runner.partition(":")
        run_scenario = getattr(importlib.import_module(module_name), func_name)
        scenario = load_scenario({**job.scenario, "__source__": job.source,
                                  "__base_dir__": job.base_dir})
        extra = {"force": True} if job.force else {}
        result = run_scenario(scenario, strategies=[job.label], seed=job.seed, replications=1,
                              **extra)
        summary = result.summary if hasattr(result, "summary") else result
        record["runs"] = list(summary["runs"])
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing job is recorded, not raised
        record["error"] = _error_text(exc)
        record["traceback"] = traceback.format_exc()
    record["wall_s"] = time.perf_counter() - t0
    return record


def _error_text(exc: BaseException) -> str:
    """``Type: message`` on one line (``SystemExit`` says that the job exited)."""
    if isinstance(exc, SystemExit):
        return (f"SystemExit: the job called sys.exit({exc.code!r}) (a strategy or runner "
                "must return, not exit)")
    msg = exc.format() if isinstance(exc, UserError) else str(exc)
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return " ".join(text.split())  # one line


# ---------------------------------------------------------------------------- storage
class _Store:
    """``OUTDIR/runs/<key>.json`` (finished jobs) and ``<key>.error.json`` (failed ones)."""

    def __init__(self, outdir: Path):
        self.dir = outdir / "runs"
        self.dir.mkdir(parents=True, exist_ok=True)

    def ok_path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def error_path(self, key: str) -> Path:
        return self.dir / f"{key}.error.json"

    def load(self, key: str) -> dict[str, Any] | None:
        """The finished record of job ``key``, or ``None`` when it has none (or it is bad)."""
        p = self.ok_path(key)
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("key") != key or not isinstance(
                rec.get("runs"), list):
            return None
        return rec

    def save(self, job: Job, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` atomically; return it as it reads back from JSON."""
        record = {**record, "config": {"scenario": job.scenario, "strategy": job.label,
                                       "seed": job.seed}}
        if "error" in record:
            write_json_atomic(self.error_path(job.key), record)
            return json.loads(json.dumps(record, default=str))
        p = self.ok_path(job.key)
        write_json_atomic(p, record)
        self.error_path(job.key).unlink(missing_ok=True)
        return json.loads(p.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- executors
OnDone = Callable[[Job, dict[str, Any]], None]


def _lost_record(job: Job, what: str) -> dict[str, Any]:
    return {"key": job.key, "label": job.label, "seed": job.seed,
            "simscale_version": __version__, "error": what, "traceback": "", "wall_s": 0.0}


#: Seconds between a pool worker's checks that the sweep process is still its parent.
PARENT_POLL_S = 0.5


def _pool_worker_init(parent_pid: int) -> None:
    """Initializer of every pool worker: exit when the sweep process ``parent_pid`` dies.

    On Linux the kernel kills the worker at once (``prctl(PR_SET_PDEATHSIG, SIGKILL)``; it fires
    when the *thread* that started the worker ends, which is the thread running the sweep: it
    outlives every job). Everywhere, a daemon thread checks every :data:`PARENT_POLL_S` seconds
    that ``parent_pid`` is still the parent (an orphan is adopted by another process) and ends
    the worker with ``os._exit(1)`` when it is not; a worker whose parent died before this ran
    exits at once. Never raises (a failing initializer would break the pool).
    """
    import signal
    import threading

    try:
        if sys.platform.startswith("linux"):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no libc or no prctl: the thread below still works
        pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    try:
        threading.Thread(target=watch, name="simscale-parent-watch", daemon=True).start()
    except RuntimeError:  # pragma: no cover - no thread can be started
        pass


def _run_local(jobs: list[Job], workers: int, on_done: OnDone) -> None:
    """Run ``jobs`` on a spawn-context process pool of ``workers`` processes.

    At most ``workers`` jobs are in flight, so when a worker dies (killed, out of memory, a
    crash in native code) only those jobs are lost. Each is retried once, alone in a process of
    its own (so the job that kills its worker cannot take others with it), and recorded as
    failed if that process dies too; the other jobs go on in a fresh pool.

    No worker outlives this process, however it ends (even ``kill -9``): each worker runs
    :func:`_pool_worker_init`, which makes it exit when this process is gone. Multiprocessing's
    resource tracker then exits too (it stops at the end of its pipe, whose last writers are this
    process and the workers).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    queue: deque[Job] = deque(jobs)
    strikes: dict[str, int] = {}
    pools: list[ProcessPoolExecutor] = []

    def new_pool(n: int) -> ProcessPoolExecutor:
        # the workers are started by this thread (submit), which waits for all of their jobs
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_pool_worker_init,
                                   initargs=(os.getpid(),))
        pools.append(pool)
        return pool

    main = new_pool(max(1, min(workers, len(jobs))))
    inflight: dict[Future[dict[str, Any]], tuple[Job, ProcessPoolExecutor, bool]] = {}
    interrupted = False
    try:
        while queue or inflight:
            while queue and len(inflight) < workers:
                job = queue.popleft()
                alone = strikes.get(job.key, 0) >= 1
                pool = new_pool(1) if alone else main
                try:
                    inflight[pool.submit(execute_job, job)] = (job, pool, alone)
                except BrokenProcessPool:  # it broke before we saw a failed future
                    queue.appendleft(job)
                    main.shutdown(wait=False, cancel_futures=True)
                    main = new_pool(max(1, min(workers, len(queue) + len(inflight))))
                    break
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in done:
                job, pool, alone = inflight.pop(fut)
                try:
                    record = fut.result()
                except BrokenProcessPool:
                    if alone:
                        on_done(job, _lost_record(
                            job, "WorkerDied: the worker process running this job died "
                                 "(killed, out of memory or crashed; if every job fails so, "
                                 "guard the script calling run_sweep with "
                                 "if __name__ == '__main__')"))
                    else:
                        strikes[job.key] = strikes.get(job.key, 0) + 1
                        queue.appendleft(job)
                        if pool is main:  # replace the broken pool once
                            main.shutdown(wait=False, cancel_futures=True)
                            main = new_pool(max(1, min(workers, len(queue) + len(inflight))))
                    continue
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - e.g. a result that cannot be
                    # pickled, or a SystemExit that escaped execute_job: the job failed
                    record = _lost_record(job, _error_text(exc))
                on_done(job, record)
                if alone:
                    pool.shutdown(wait=False)
    except BaseException:
        interrupted = True
        raise
    finally:
        # no waiting for the idle workers to exit (about a second: interpreter teardown)
        for pool in pools:
            if interrupted:
                _terminate_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)


def _terminate_workers(pool: Any) -> None:
    """Stop a pool's worker processes now (Ctrl-C): no job is left running in the background."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass


@contextmanager
def _ray_session(workers: int, address: str | None) -> Iterator[Any]:
    """Yield the ``ray`` module, connected: to the cluster at ``address``, to the Ray instance
    this process already uses, or to a new local instance of ``workers`` CPUs (stopped on
    exit)."""
    import logging

    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray: pip install 'simscale[ray]'",
                        source="--executor") from None

    started = False
    if not ray.is_initialized():
        try:
            if address:
                _check_reachable(address)
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                # local workers see the modules the driver sees (custom strategies), as the
                # spawned workers of the process pool do
                paths = [p for p in sys.path if p and os.path.isdir(p)]
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING,
                         runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}})
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UserError(f"cannot start or reach Ray: {exc}",
                            source="--address" if address else "--executor") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast with a :class:`UserError` when ``host:port`` (or ``ray://host:port``) does not
    accept a TCP connection within ``timeout_s`` seconds (Ray itself retries for minutes).
    Other forms (``auto``, ``local``) are left to Ray."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}",
                        source="--address") from None


def _run_ray(ray: Any, jobs: list[Job], on_done: OnDone) -> None:
    """Run ``jobs`` as Ray tasks of one CPU each (see :func:`_ray_session`). A task whose worker
    dies is retried once by Ray, then recorded as failed."""
    remote = ray.remote(num_cpus=1, max_retries=1)(execute_job)
    refs = {remote.remote(job): job for job in jobs}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=min(len(pending), 8), timeout=0.2)
            for ref in done:
                job = refs[ref]
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    record = _lost_record(job, _error_text(exc))
                on_done(job, record)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


# ---------------------------------------------------------------------------- progress
@contextmanager
def _progress_bar(enabled: bool, total: int, done: int, label: str) -> Iterator[Callable[[bool],
                                                                                      None]]:
    """Yield ``advance(failed)``; shows a rich progress bar on stderr when ``enabled``."""
    if not enabled:
        yield lambda failed: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    failed_n = 0
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[failed]}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, completed=done, failed="")

        def advance(failed: bool) -> None:
            nonlocal failed_n
            failed_n += failed
            bar.update(task, advance=1,
                       failed=f"[red]{failed_n} failed[/red]" if failed_n else "")

        yield advance


# ---------------------------------------------------------------------------- the table
def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def _grid_column_values(values: list[Any]) -> Callable[[Any], Any]:
    """How a grid path's values go into a column: numbers and strings as they are, anything
    else (or a mix) as canonical JSON, so that the column has one type (parquet needs it)."""
    kinds = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, (int, float)):
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            kinds.add("other")
    if len(kinds) == 1 and "other" not in kinds:
        return lambda v: v
    return _canonical_json


def build_table(plan: SweepPlan, records: dict[str, dict[str, Any]]) -> Any:
    """The results table (a pandas DataFrame), one row per (sweep row, service), in plan order.

    ``records`` maps job keys to their records; a job with an error (or none) gives one row per
    service of its scenario with the figures empty and ``error`` set.
    """
    import pandas as pd

    fixed = set(KEY_COLUMNS) | {"error", "job"}
    figure_names: dict[str, None] = {}
    flat_rows: list[tuple[Row, Job, dict[str, Any], dict[str, Any] | None]] = []
    for row in plan.rows:
        job = plan.jobs[row.job_key]
        rec = records.get(row.job_key)
        runs = rec.get("runs") if rec is not None and "error" not in rec else None
        if runs:
            for run in runs:
                figures: dict[str, Any] = {}
                for k, v in run.items():
                    if k in fixed or k in SKIPPED_FIELDS:
                        continue
                    _flatten(k, v, figures)
                figure_names.update(dict.fromkeys(figures))
                flat_rows.append((row, job, run, figures))
        else:
            for service in job.services:
                flat_rows.append((row, job, {"service": service}, None))

    taken = fixed | set(figure_names)
    grid_cols = [f"grid.{p}" if p in taken else p for p in plan.grid_paths]
    convert = [_grid_column_values(plan.spec.grid[p]) for p in plan.grid_paths]
    data: list[dict[str, Any]] = []
    for row, job, run, figures in flat_rows:
        rec = records.get(row.job_key)
        out: dict[str, Any] = {c: f(v) for c, f, v in zip(grid_cols, convert, row.point,
                                                           strict=True)}
        out["strategy"] = run.get("strategy", job.strategy_name)
        out["label"] = run.get("label", job.label)
        out["seed"] = job.seed
        out["service"] = run["service"]
        out["replication"] = run.get("replication", 0)
        for name in figure_names:
            out[name] = (figures or {}).get(name)
        if figures is None:
            out["error"] = rec.get("error", "not run") if rec is not None else "not run"
        else:
            out["error"] = None
        out["job"] = row.job_key
        data.append(out)
    columns = [*grid_cols, *KEY_COLUMNS, *figure_names, "error", "job"]
    df = pd.DataFrame(data, columns=columns)
    for name in figure_names:  # None from failed rows -> NaN in numeric columns
        if df[name].map(lambda v: v is None or isinstance(v, (int, float))).all():
            df[name] = pd.to_numeric(df[name])
    df["error"] = df["error"].astype("string")
    return df


def write_table(df: Any, outdir: Path) -> tuple[Path, Path]:
    """Write ``results.parquet`` and ``results.csv`` into ``outdir`` atomically."""
    parquet = outdir / "results.parquet"
    csv = outdir / "results.csv"
    write_with_atomic(parquet, lambda p: df.to_parquet(p, index=False))
    write_with_atomic(csv, lambda p: df.to_csv(p, index=False))
    return parquet, csv


# ---------------------------------------------------------------------------- run_sweep
@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    table:
        The results table (pandas DataFrame; see the module docstring for its columns).
    jobs:
        Distinct jobs in the sweep (identical configurations count once).
    computed:
        Jobs run by this call (whether they succeeded or failed).
    reused:
        Jobs whose result was already in ``OUTDIR/runs`` from an earlier call.
    failed:
        Jobs that failed in this call (each has ``OUTDIR/runs/<key>.error.json`` and an
        ``error`` in its table rows).
    outdir:
        The output folder; ``parquet``, ``csv`` and ``report`` (``None`` if no sweep report was
        made) are the files written there.
    wall_s:
        Wall-clock seconds of the whole call.
    errors:
        Job key -> one-line error, for the failed jobs.
    """

    table: Any
    jobs: int
    computed: int
    reused: int
    failed: int
    outdir: Path
    parquet: Path
    csv: Path
    report: Path | None = None
    wall_s: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no job failed."""
        return self.failed == 0


def run_sweep(
    sweep_path: str | Path,
    *,
    outdir: str | Path,
    executor: Executor = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    report: bool = True,
    runner: str = DEFAULT_RUNNER,
    force: bool = False,
) -> SweepResult:
    """Run every job of a sweep that has no stored result yet, then write the results table.

    Parameters
    ----------
    sweep_path:
        The sweep YAML file (see the module docstring).
    outdir:
        Output folder: ``runs/`` (one JSON per job), ``results.parquet``, ``results.csv``,
        ``sweep.json`` (what was run) and, when :mod:`simscale.reports.html` provides it, the
        sweep report.
    executor:
        ``"local"``: a process pool (spawn context: a script that calls this needs the
        ``if __name__ == "__main__":`` guard) on this machine. ``"ray"``: one Ray task per
        job, on a local Ray instance of ``workers`` CPUs or on the cluster at ``address`` (Ray
        workers there must have simscale installed and see the scenario's data files).
    workers:
        Parallel jobs (default: the CPUs this process may use; ignored with a Ray
        ``address``).
    address:
        A Ray cluster address (``"auto"``, ``"ray://host:10001"``); only with ``executor="ray"``.
    progress:
        Show a progress bar on stderr.
    report:
        Also write the sweep report (``OUTDIR/report.html``) when
        :func:`simscale.reports.html.render_sweep_report` is available.
    runner:
        ``module:function`` that runs one job, with the signature of
        :func:`simscale.simulator.runner.run_scenario` (the default).
    force:
        Plan and run even beyond :data:`MAX_SWEEP_RUNS` simulations or the memory and time
        limits of one run.

    Returns
    -------
    SweepResult
        The table and the counts of computed, reused and failed jobs. Failed jobs do not raise;
        check ``result.failed``. Bad input raises :class:`UserError` before anything runs;
        Ctrl-C raises ``KeyboardInterrupt`` with every job finished so far already stored.
    """
    t0 = time.perf_counter()
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
    n_workers = workers or _cpu_count()
    plan = plan_sweep(sweep_path, runner=runner, force=force)
    outdir = Path(outdir)
    store = _Store(outdir)

    records: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for key, job in plan.jobs.items():
        rec = store.load(key)
        if rec is not None:
            records[key] = rec
        else:
            todo.append(job)
    reused = len(records)
    errors: dict[str, str] = {}

    with ExitStack() as stack:
        # Ray starts (or fails to connect) before the progress bar shows
        ray = stack.enter_context(_ray_session(n_workers, address)) if (
            executor == "ray" and todo) else None
        advance = stack.enter_context(
            _progress_bar(progress, len(plan.jobs), reused, f"sweep {plan.path.name}"))

        def on_done(job: Job, record: dict[str, Any]) -> None:
            records[job.key] = store.save(job, record)
            if "error" in record:
                errors[job.key] = record["error"]
            advance("error" in record)

        if ray is not None:
            _run_ray(ray, todo, on_done)
        elif todo:
            _run_local(todo, n_workers, on_done)

    table = build_table(plan, records)
    parquet, csv = write_table(table, outdir)
    wall_s = time.perf_counter() - t0
    write_json_atomic(outdir / "sweep.json", {
        "sweep": str(plan.path), "scenario": str(plan.scenario_path),
        "simscale_version": __version__, "grid": plan.spec.grid,
        "strategies": plan.spec.strategies, "seeds": plan.spec.seeds,
        "rows": len(plan.rows), "jobs": len(plan.jobs), "computed": len(todo),
        "reused": reused, "failed": len(errors), "executor": executor,
        "workers": n_workers, "wall_s": wall_s,
    })
    report_path = (_render_report(table, outdir, list(table.columns[: len(plan.grid_paths)]),
                                  title=f"Sweep {plan.path.stem}") if report else None)
    return SweepResult(table=table, jobs=len(plan.jobs), computed=len(todo), reused=reused,
                       failed=len(errors), outdir=outdir, parquet=parquet, csv=csv,
                       report=report_path, wall_s=time.perf_counter() - t0, errors=errors)


def _render_report(table: Any, outdir: Path, params: list[str], title: str) -> Path | None:
    """The sweep report (``params``: the grid columns), when :mod:`simscale.reports.html` has
    ``render_sweep_report``; a failure to render it is a warning (the tables are written)."""
    try:
        from simscale.reports.html import render_sweep_report
    except ImportError:
        return None
    try:
        out = render_sweep_report(table, outdir, params=params, title=title)
    except Exception as exc:  # noqa: BLE001 - the tables are written; say why no report
        print(f"simscale: warning: sweep report not written: {_error_text(exc)}",
              file=sys.stderr)
        return None
    return Path(out) if out is not None else None


def sweep_command(
    sweep_path: str | Path,
    *,
    outdir: str | Path | None = None,
    executor: Executor = "local",
    workers: int | None = None,
    address: str | None = None,
    console: Any = None,
) -> int:
    """The ``simscale sweep`` command without click: run, print a short summary, return the exit
    status (0 all jobs succeeded, 1 some failed). :class:`UserError` propagates (exit 2).

    ``outdir`` defaults to ``results/sweeps/<sweep file stem>``.
    """
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    sweep_path = Path(sweep_path)
    outdir = Path(outdir) if outdir is not None else Path("results") / "sweeps" / sweep_path.stem
    res = run_sweep(sweep_path, outdir=outdir, executor=executor, workers=workers,
                    address=address, progress=True)
    console.print(f"{res.jobs} jobs, {len(res.table)} rows: computed {res.computed}, reused "
                  f"{res.reused}, failed {res.failed} ({res.wall_s:.1f} s); results: "
                  f"{res.parquet}, {res.csv}" + (f"; report: {res.report}" if res.report else ""))
    if res.failed:
        first = next(iter(res.errors.values()))
        console.print(f"[red]{res.failed} of {res.jobs} jobs failed (see the error column and "
                      f"{outdir}/runs/*.error.json); first: {first}[/red]")
        return 1
    return 0


# ---------------------------------------------------------------------------- helpers
def _cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"
