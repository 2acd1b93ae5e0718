"""The sweep plan: a sweep file, checked, expanded into rows and the distinct jobs behind them.

:func:`load_sweep` reads and validates a sweep file (:class:`SweepFile`). :func:`plan_sweep`
applies every grid value to the scenario and validates each variant (scenario fields, strategy
parameters, profile, memory and time estimate) before anything runs, then lists one
:class:`Row` per (grid point, seed, strategy) and one :class:`Job` per distinct configuration.
A job's key (:func:`job_key`) is the SHA-256 of everything that decides its numbers: the
variant reduced to the job's strategy, the strategy label, the seed, the simscale version with
the :func:`code_fingerprint`, and the SHA-256 of each file the scenario reads. Nothing here
runs a simulation.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simscale import __version__
from simscale.errors import UserError, pydantic_error_to_user_error
from simscale.safeload import MAX_YAML_BYTES, load_yaml, read_text
from simscale.simulator.scenario import (
    Scenario,
    load_scenario,
    set_dotted,
    shipped_scenario_path,
)
from simscale.simulator.serving import select_strategies
from simscale.simulator.workloads import input_files

__all__ = [
    "MAX_SWEEP_RUNS",
    "Job",
    "Row",
    "SweepFile",
    "SweepPlan",
    "canonical_json",
    "code_fingerprint",
    "job_key",
    "load_sweep",
    "plan_sweep",
]

#: most simulations (grid points x strategies x seeds) a sweep plans without ``--force``
MAX_SWEEP_RUNS = 20_000


def canonical_json(obj: Any) -> str:
    """``obj`` as compact JSON with sorted keys (anything JSON cannot hold as its ``str``): the
    same text for equal values, so it can be hashed or compared."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def short_text(value: Any, width: int = 40) -> str:
    """``value`` as JSON, cut to ``width`` characters (with an ellipsis) for error messages."""
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


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
            canon = [canonical_json(v) for v in values]
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
    result file. The job is simulated by :func:`simscale.simulator.runner.run_scenario`.
    """

    key: str
    scenario: dict[str, Any]
    label: str
    seed: int
    services: tuple[str, ...]
    strategy_name: str
    base_dir: str | None = None
    source: str | None = None
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


def _fingerprint_files() -> list[tuple[str, Path]]:
    """``(name, path)`` of every file :func:`code_fingerprint` hashes, in a fixed order; the
    name is the path relative to the folder above the package's folder (e.g.
    ``simulator/workloads/trace.py``), so the same code gives the same names wherever it is
    installed."""
    import simscale.profiler.schema as schema_mod
    import simscale.simulator as sim_pkg
    import simscale.strategies as strat_pkg

    files: list[tuple[str, Path]] = []
    for pkg in (sim_pkg, strat_pkg):
        folder = Path(pkg.__file__).parent
        files += [(f"{folder.name}/{p.relative_to(folder).as_posix()}", p)
                  for p in sorted(folder.rglob("*.py"))]
    schema_path = Path(schema_mod.__file__)
    data = schema_path.parent / "data"
    files.append((f"{schema_path.parent.name}/{schema_path.name}", schema_path))
    files += [(f"{schema_path.parent.name}/data/{p.name}", p)
              for p in sorted(data.glob("*.json"))]
    return files


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (hex, first 16 digits) of the code and data that decide a simulation's numbers:
    every Python source of the simulator package (``simulator/``, its subpackages such as
    ``simulator/workloads/`` included) and of the strategies package (``strategies/``), the
    profile schema (``profiler/schema.py``) and the shipped profiles (``profiler/data/*.json``),
    each file's relative name and bytes in a fixed order. It does not hash the sweeps package,
    the CLI or the reports: they do not change a run's numbers. Stored runs of an older
    simulator are then recomputed, not reused, even at the same version."""
    h = hashlib.sha256()
    for name, path in _fingerprint_files():
        h.update(name.encode())
        h.update(path.read_bytes())
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
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _input_files(sc: Scenario) -> list[str]:
    """The files a scenario reads besides itself (as written in it): its profile when it is not
    the shipped one, and every file its workloads read (trace CSVs), in service order."""
    files = [] if sc.profile == "default" else [sc.profile]
    for service in sc.services:
        files.extend(input_files(service.workload))
    return files


def _file_digest(path: Path, cache: dict[Path, str]) -> str:
    """SHA-256 of a file's bytes (``"missing"`` when it cannot be read), cached by path."""
    if path not in cache:
        try:
            cache[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            cache[path] = "missing"
    return cache[path]


def plan_sweep(path: str | Path, *, force: bool = False) -> SweepPlan:
    """Validate a sweep file and every scenario variant it makes, and list its jobs.

    Every grid value is applied and validated (with :func:`load_scenario` and the strategies'
    parameter models) before anything runs, so a bad path or value fails fast with a
    :class:`UserError` naming the sweep file and the ``grid.<path>`` field. Unless ``force``, a
    sweep of more than :data:`MAX_SWEEP_RUNS` simulations is refused before its grid is
    expanded, and so is a grid point whose runs would need more memory or time than
    :func:`simscale.simulator.budget.check_budget` allows. ``force`` is also passed on to every
    job (:attr:`Job.force`).
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
        return _variant(raw, assignments, sweep_path=path, scenario_path=scenario_path)

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
        selected, built = _check_strategies(sc, spec, path,
                                            field_name="grid" if grid_paths else None)
        _check_profile(sc, profiles, path, field_name="grid" if grid_paths else "scenario")
        _check_point_budget(sc, built, path, point, force)
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
                                    force=force)
                rows.append(Row(point=tuple(point), job_key=key))
    return SweepPlan(path=path, spec=spec, scenario_path=scenario_path, grid_paths=grid_paths,
                     rows=tuple(rows), jobs=jobs)


def _variant(raw: Any, assignments: list[tuple[str, Any]], *, sweep_path: Path,
             scenario_path: Path) -> Scenario:
    """The scenario ``raw`` (its YAML data) with each ``(dotted path, value)`` of
    ``assignments`` set, validated. A path that does not exist or a value that makes an invalid
    scenario is a :class:`UserError` naming the sweep file and the grid field."""
    data = copy.deepcopy(raw)
    for gpath, value in assignments:
        try:
            set_dotted(data, gpath, copy.deepcopy(value), source=str(sweep_path))
        except UserError as exc:
            raise UserError(f"{exc.message} in {scenario_path.name}", source=sweep_path,
                            field=f"grid.{gpath}") from None
    data["__source__"] = str(scenario_path)
    data["__base_dir__"] = str(scenario_path.resolve().parent)
    try:
        return load_scenario(data)
    except UserError as exc:
        what = ", ".join(f"{p}={short_text(v)}" for p, v in assignments)
        where = f"{exc.field}: " if exc.field else ""
        field_name = f"grid.{assignments[0][0]}" if len(assignments) == 1 else "grid"
        raise UserError(f"{what} makes an invalid scenario ({where}{exc.message})",
                        source=sweep_path, field=field_name) from None


# ---------------------------------------------------------------------------- checks
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


def _check_point_budget(sc: Scenario, built: list[tuple[str, Any]], sweep_path: Path,
                        point: tuple[Any, ...], force: bool) -> None:
    """The memory and time estimate of one job of a grid point (one seed: the limits apply per
    job, whatever the number of seeds), as ``simulate`` checks it; ``built`` are the point's
    strategies as :func:`_check_strategies` built them (``(label, strategy)`` pairs)."""
    from simscale.simulator.budget import check_budget, estimate

    try:
        check_budget(estimate(sc, built, 1), source=str(sweep_path), force=force)
    except UserError as exc:
        where = f" at grid point {short_text(point, 60)}" if point else ""
        raise UserError(f"{exc.field}{where}: {exc.message}", source=sweep_path,
                        field="grid" if point else "scenario") from None


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
    """The sweep's scenario file: ``scenario`` relative to the sweep file's folder (unless
    absolute), else the shipped scenario of that name; else a :class:`UserError`."""
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
                      field_name: str | None) -> tuple[list[Any], list[tuple[str, Any]]]:
    """The variant's strategies that the sweep runs (their entries), and each of them built
    once to check its parameters (``(label, strategy)`` pairs, for the estimate)."""
    from simscale.strategies import make_strategy

    selected = []
    for i, name in enumerate(spec.strategies or [None]):
        names = None if name is None else [name]
        selected.extend(s for s in select_strategies(sc, names, source=str(sweep_path),
                                                     field=f"strategies.{i}")
                        if s not in selected)
    built = []
    for strat in selected:
        try:
            built.append((strat.display_label,
                          make_strategy(strat.name, strat.params, source=str(sweep_path))))
        except UserError as exc:
            where = f" ({exc.field})" if exc.field else ""
            raise UserError(f"strategy '{strat.display_label}'{where}: {exc.message}",
                            source=sweep_path, field=field_name or "strategies") from None
    return selected, built
