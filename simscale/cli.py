"""The ``simscale`` command line.

Every problem with the user's input ends as one line on stderr naming the file or flag and the
field, and exit status 2; never a traceback. Ctrl-C exits with status 130.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from simscale import __version__
from simscale.console import make_console
from simscale.errors import UserError


def _int_list(flag: str, value: str | None, minimum: int = 1) -> list[int] | None:
    """Parse ``1,2,4`` into ints >= ``minimum`` or raise a :class:`UserError` naming ``flag``."""
    if value is None:
        return None
    out = []
    for part in value.split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            raise UserError(f"'{part}' is not a whole number", source=flag) from None
        if n < minimum:
            raise UserError(f"{n} is below the minimum of {minimum}", source=flag)
        out.append(n)
    if not out:
        raise UserError("needs at least one value", source=flag)
    return out


def _str_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [p.strip() for p in value.split(",") if p.strip()]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="simscale")
def cli() -> None:
    """Which scaling strategy keeps your models inside their latency target at the lowest cost?

    Measure real models (profile), simulate scaling strategies on scenarios (simulate, sweep),
    check the simulator against real inference (validate), and read HTML reports (report).
    """


# --------------------------------------------------------------------------- profile
@cli.group(invoke_without_command=True)
@click.option("--models", help="Comma-separated models (default: all three).")
@click.option("--device", "devices", multiple=True, help="cpu or cuda (repeatable; default cpu).")
@click.option("--threads", help="Comma-separated threads per replica (default 1,2 on CPU).")
@click.option("--batch-sizes", help="Comma-separated batch sizes (default per model).")
@click.option("--quick", is_flag=True, help="A short run (under a minute) for tests and demos.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("profile.json"), show_default=True, help="Where to write the profile.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path),
              help="A local ResNet50 weights file (default: weights=None, no download).")
@click.option("--colocation/--no-colocation", default=None,
              help="Measure the co-location slowdown (k replicas busy at once on this host, "
              "k = 1 up to its cores) of every CPU configuration (default: yes; no with --quick).")
@click.pass_context
def profile(ctx: click.Context, models: str | None, devices: tuple[str, ...],
            threads: str | None, batch_sizes: str | None, quick: bool, output: Path,
            weights: Path | None, colocation: bool | None) -> None:
    """Measure the real models on this machine and write a profile.

    \b
    simscale profile --quick -o p.json
    simscale profile show [PATH]
    """
    if ctx.invoked_subcommand is not None:
        return
    args = dict(
        models=_str_list(models),
        devices=list(devices) or None,
        threads=_int_list("--threads", threads),
        batch_sizes=_int_list("--batch-sizes", batch_sizes),
        quick=quick,
        output=output,
        weights=weights,
        colocation=colocation,
    )
    try:
        from simscale.profiler.command import profile_command
    except ImportError as exc:
        raise UserError(
            f"profiling needs the profile extra (pip install 'simscale[profile]'): {exc}",
            source="simscale profile",
        ) from None
    flags = {"models": "--models", "device": "--device", "devices": "--device",
             "threads": "--threads", "batch_sizes": "--batch-sizes", "weights": "--weights",
             "weights_path": "--weights"}
    try:
        profile_command(**args)
    except UserError as err:
        if err.source is None and err.field in flags:  # name the flag the user typed
            raise UserError(err.message, source=flags[err.field]) from None
        raise


@profile.command("show")
@click.argument("path", required=False, default="default")
def profile_show(path: str) -> None:
    """Print a profile (default: the one shipped with simscale) as tables."""
    from simscale.profiler.schema import load_profile
    from simscale.profiler.show import show_profile
    from simscale.profiler.speed import machine_speed, show_note, speed_summary

    prof = load_profile(path)
    console = make_console()
    show_profile(prof, console)
    here = machine_speed() if prof.machine.speed is not None else None
    summary = speed_summary(prof, here)
    if summary:
        console.print(summary, soft_wrap=True, markup=False)
    _warn_line(show_note(prof, here))


@profile.command("speed")
@click.option("--refresh", is_flag=True, help="Measure again even when a recent score is cached.")
def profile_speed(refresh: bool) -> None:
    """Print this machine's speed score (the fixed micro-benchmark profiles store; cached for a
    day; SIMSCALE_SPEED_SCORE overrides it)."""
    import time

    from simscale.profiler.speed import CACHE_FILE, cache_dir, machine_speed

    t0 = time.perf_counter()
    here = machine_speed(refresh=refresh)
    make_console().print(f"speed score {here.describe()} in "
                     f"{time.perf_counter() - t0:.2f} s; cache: {cache_dir() / CACHE_FILE}",
                     soft_wrap=True, markup=False)


def _warn_line(line: str | None) -> None:
    """Print ``line`` (when there is one) as one line on stderr, never wrapped."""
    if line:
        make_console(stderr=True).print(line, soft_wrap=True, markup=False, style="yellow")


def _simulate_profile(sc: Any, profile_path: str | None, rescale: bool) -> Any:
    """The profile ``simulate`` runs ``sc`` with, loaded once here (``None`` when no service
    uses one): with ``rescale``, rescaled to this machine's speed score (a line says by how
    much); without, a line warns when the scores differ by more than 15 %."""
    from simscale.simulator.runner import load_scenario_profile

    prof = load_scenario_profile(sc, profile_path)
    if prof is None:
        if rescale:
            raise UserError("no service of the scenario takes its times from a profile: "
                            "nothing to rescale", source="--rescale")
        return None
    from simscale.profiler.speed import rescaled_to_machine, speed_warning

    if rescale:
        prof, line = rescaled_to_machine(prof)
        make_console(stderr=True).print(line, soft_wrap=True, markup=False, style="dim")
    else:
        _warn_line(speed_warning(prof))
    return prof


# --------------------------------------------------------------------------- simulate
@cli.command()
@click.argument("scenario")
@click.option("--strategy", "strategies", multiple=True,
              help="Run only this strategy (name or label; repeatable).")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1),
              help="Override the scenario's seed.")
@click.option("--replications", type=click.IntRange(min=1, max=10_000), default=1,
              show_default=True,
              help="Run this many seeds and report means with 95% confidence intervals.")
@click.option("--profile", "profile_path", help="A profile file (default: the scenario's).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a scenario field, e.g. services.resnet50.slo_ms=300.")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: results/<scenario name>).")
@click.option("--save-requests", is_flag=True, help="Also write requests.parquet.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@click.option("--no-report", is_flag=True, help="Do not write report.html.")
@click.option("--force", is_flag=True,
              help="Run even when the estimate of memory or time is over the limits.")
@click.option("--workers", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
              help="Runs (strategy x replication) at a time, in local processes or Ray tasks.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where parallel runs go.")
@click.option("--address", help="Ray cluster address (with --executor ray).")
@click.option("--rescale", is_flag=True, help="Multiply the profile's CPU times (cold starts "
              "included) by its speed score / this machine's (see: simscale profile speed).")
@click.option("--no-bounds", is_flag=True, help="Skip the bounds on the optimal cost (a "
              "lower bound and a hindsight schedule per service; docs/BOUNDS.md).")
def simulate(scenario: str, strategies: tuple[str, ...], seed: int | None, replications: int,
             profile_path: str | None, overrides: tuple[str, ...], outdir: Path | None,
             save_requests: bool, as_json: bool, no_report: bool, force: bool, workers: int,
             executor: str, address: str | None, rescale: bool, no_bounds: bool) -> None:
    """Simulate every strategy of SCENARIO (a YAML file or a shipped scenario's name)."""
    from simscale.io import check_output_dir
    from simscale.simulator.runner import run_scenario as run
    from simscale.simulator.scenario import load_scenario

    sc = load_scenario(scenario, list(overrides))
    outdir = check_output_dir(outdir or Path("results") / _safe_name(sc.name))
    prof = _simulate_profile(sc, profile_path, rescale)
    result = run(sc, strategies=list(strategies) or None, seed=seed,
                 replications=replications, profile=prof, keep_requests=save_requests,
                 progress=not as_json, force=force, workers=workers, executor=executor,
                 address=address, bounds=not no_bounds)
    result.save(outdir, save_requests=save_requests)
    report = None
    if not no_report:
        report = _render_report(outdir)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, default=_json_default))
        return
    console = make_console()
    print_summary_table(result.summary, console)
    loops = result.summary.get("request_plane") or {}
    if loops.get("compiled_now"):
        console.print(f"[dim]compiled the request plane's loops in {loops['compile_s']:.1f} s "
                      "(first run only: numba caches them)[/dim]")
    console.print(f"[dim]results: {outdir}/summary.json, timeseries.parquet"
                  + (", requests.parquet" if save_requests else "")
                  + (f"; report: {report}" if report else "")
                  + f"; wall {result.summary.get('wall_s', 0):.2f} s[/dim]")


def _render_report(outdir: Path) -> Path | None:
    try:
        from simscale.reports.html import render_report
    except ImportError:
        return None
    return render_report(outdir)


def _safe_name(name: str) -> str:
    """``name`` as one folder name: letters, digits, ``-_.`` (others become ``_``), never
    starting with a dot (so never ``.`` or ``..``), at most 100 characters."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100]
    return "_" + safe[1:] if safe.startswith(".") else (safe or "scenario")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def print_summary_table(summary: dict[str, Any], console: Any) -> None:
    """Print one table per service of a summary's runs, fitted to the console's width, with
    95% confidence intervals when there are replications (see
    :func:`simscale.reports.terminal.print_summary_table`)."""
    from simscale.reports.terminal import print_summary_table as print_tables

    print_tables(summary, console)


# --------------------------------------------------------------------------- report
@cli.command()
@click.argument("outdir", type=click.Path(path_type=Path))
def report(outdir: Path) -> None:
    """Render OUTDIR/report.html again from saved results."""
    from simscale.reports.html import render_report

    path = render_report(outdir)
    make_console().print(f"report: {path}")


# --------------------------------------------------------------------------- scenarios
@cli.group()
def scenarios() -> None:
    """List, show and check scenario files."""


@scenarios.command("list")
def scenarios_list() -> None:
    """List the scenarios shipped with simscale."""
    from rich.table import Table

    from simscale.safeload import MAX_YAML_BYTES, load_yaml, read_text
    from simscale.simulator.scenario import scenarios_dir

    table = Table("name", "description", title="shipped scenarios", title_justify="left")
    for path in sorted(scenarios_dir().glob("*.yaml")):
        try:
            data = load_yaml(read_text(path, what="scenario", max_bytes=MAX_YAML_BYTES),
                             source=path) or {}
        except UserError:
            data = {}
        description = data.get("description", "") if isinstance(data, dict) else ""
        table.add_row(path.stem, str(description).strip().split("\n")[0])
    make_console().print(table)


@scenarios.command("show")
@click.argument("name")
def scenarios_show(name: str) -> None:
    """Print a shipped scenario's YAML."""
    from simscale.safeload import MAX_YAML_BYTES, read_text
    from simscale.simulator.scenario import shipped_scenario_path

    path = Path(name) if Path(name).exists() else shipped_scenario_path(name)
    if path is None:
        raise UserError(f"no shipped scenario called '{name}' (see: simscale scenarios list)",
                        source="simscale scenarios show")
    click.echo(read_text(path, what="scenario", max_bytes=MAX_YAML_BYTES), nl=False)


@scenarios.command("check")
@click.argument("file")
@click.option("--profile", "profile_path", help="Also check models against this profile.")
def scenarios_check(file: str, profile_path: str | None) -> None:
    """Validate a scenario file as `simulate` does, without simulating: the file, its
    profile and the models in it, its traces, every strategy (imported and built with its
    parameters) and the memory and time the run would need."""
    from simscale.simulator.budget import check_budget
    from simscale.simulator.runner import check_profile, load_scenario_profile, scenario_budget
    from simscale.simulator.scenario import load_scenario

    sc = load_scenario(file)
    prof = load_scenario_profile(sc, profile_path)
    if prof is not None:
        check_profile(sc, prof)
    budget = scenario_budget(sc, list(sc.strategies))
    check_budget(budget, source=file)
    make_console().print(f"{file}: ok ({len(sc.services)} services, {len(sc.strategies)} "
                         f"strategies, {sc.duration_s:g} s; {budget.summary()})")


@scenarios.command("schema")
def scenarios_schema() -> None:
    """Print the JSON Schema of scenario files (for editors)."""
    from simscale.simulator.scenario import Scenario

    click.echo(json.dumps(Scenario.model_json_schema(), indent=2))


# --------------------------------------------------------------------------- strategies
@cli.group()
def strategies() -> None:
    """List the built-in strategies and their parameters; import a real autoscaler's."""


@strategies.command("list")
def strategies_list() -> None:
    """List the built-in strategies."""
    from rich.table import Table

    from simscale.strategies import BUILTINS, describe_strategy

    table = Table("name", "summary", title="built-in strategies", title_justify="left")
    for name in BUILTINS:
        table.add_row(name, describe_strategy(name)["summary"])
    make_console().print(table)


@strategies.command("show")
@click.argument("name")
def strategies_show(name: str) -> None:
    """Show a strategy's parameters with their defaults."""
    from rich.table import Table

    from simscale.strategies import describe_strategy

    info = describe_strategy(name)
    console = make_console()
    console.print(f"[bold]{info['name']}[/bold]: {info['summary']}")
    if info.get("source"):
        console.print(f"[dim]source: {info['source']}[/dim]")
    table = Table("parameter", "type", "default", "description")
    for p in info["params"]:
        table.add_row(p["name"], str(p["type"]), repr(p["default"]), p.get("description") or "")
    console.print(table)


@strategies.command("import")
@click.argument("file")
@click.option("--document", help="The object to import from a multi-object file (its name; "
              "for a Serve config: app/deployment or the deployment's name).")
@click.option("--metric", type=click.Choice(["rps", "concurrency", "queue_length"]),
              help="What an opaque external or Prometheus metric measures.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def strategies_import(file: str, document: str | None, metric: str | None,
                      as_json: bool) -> None:
    """Map a real autoscaler's configuration (Kubernetes HPA, KEDA ScaledObject, Knative
    Service, Ray Serve config) onto a built-in strategy: print the strategy, every parameter,
    and every field ignored or approximated, with why."""
    from rich.table import Table

    from simscale.strategies.importers import import_file

    result = import_file(file, document=document, metric=metric)
    if as_json:
        click.echo(json.dumps({"strategy": result.strategy, "params": result.params,
                               "notes": result.notes, "kind": result.kind,
                               "name": result.name, "source": result.source,
                               "mapped": list(result.mapped)}, indent=2))
        return
    console = make_console()
    named = f" '{result.name}'" if result.name else ""
    console.print(f"[bold]{file}[/bold]: {result.kind}{named} -> strategy "
                  f"[bold]{result.strategy}[/bold]", highlight=False)
    table = Table("parameter", "value", "from")  # the import, or unused: simscale default
    for key, value in result.params.items():
        table.add_row(key, json.dumps(value), "import" if key in result.mapped else
                      f"{result.strategy} default")
    console.print(table)
    if result.notes:
        console.print("ignored or approximated:")
        for note in result.notes:
            console.print(f"  - {note}", highlight=False, markup=False)
    entry = {"import": file, **({"document": document} if document else {}),
             **({"metric": metric} if metric else {})}
    console.print("as a scenario strategy entry: " + json.dumps(entry).replace('"', ""),
                  highlight=False, markup=False)


# --------------------------------------------------------------------------- sweep
@cli.command()
@click.argument("sweep_file", type=click.Path(path_type=Path))
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: results/sweeps/<sweep file name>).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True)
@click.option("--workers", type=click.IntRange(min=1), help="Parallel workers (default: cores).")
@click.option("--address", help="Ray cluster address (with --executor ray).")
@click.option("--force", is_flag=True,
              help="Run even when the grid or a run's estimate is over the limits.")
def sweep(sweep_file: Path, outdir: Path | None, executor: str, workers: int | None,
          address: str | None, force: bool) -> None:
    """Run a parameter sweep (many simulations) locally or on Ray."""
    from simscale.io import check_output_dir
    from simscale.sweeps import run_sweep

    outdir = check_output_dir(outdir or Path("results") / "sweeps" / _safe_name(sweep_file.stem))
    result = run_sweep(sweep_file, outdir=outdir, executor=executor, workers=workers,
                       address=address, progress=True, force=force)
    console = make_console()
    console.print(f"{len(result.table)} rows; computed {result.computed}, reused "
                  f"{result.reused}, failed {result.failed}; results in {outdir}")
    if result.failed:
        console.print(f"[red]{result.failed} run(s) failed; see the error column of "
                      f"{outdir}/results.csv[/red]")
        sys.exit(1)


# --------------------------------------------------------------------------- tune
@cli.command()
@click.argument("scenario")
@click.option("--strategy", "strategy", required=True,
              help="The strategy entry to tune (a label or name of the scenario's entries).")
@click.option("--service", help="Tune for this service only (default: each service).")
@click.option("--target", default="slo_attainment>=0.99", show_default=True,
              help="What the tuned strategy must meet: FIGURE>=NUMBER or FIGURE<=NUMBER "
              "(a run figure, e.g. latency_ms.p95<=500), on the mean over replications.")
@click.option("--trials", type=click.IntRange(min=1, max=10_000), default=30,
              show_default=True, help="Parameter sets to try per service (baseline aside).")
@click.option("--replications", type=click.IntRange(min=1, max=1000), default=1,
              show_default=True, help="Seeds every trial runs on (the same for all trials).")
@click.option("--workers", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
              help="Simulations at a time, in local processes or Ray tasks.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where parallel simulations go.")
@click.option("--address", help="Ray cluster address (with --executor ray).")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1),
              help="Seed of the simulations and of the sampler (default: the scenario's).")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: results/tune/<scenario>-<strategy>).")
@click.option("--force", is_flag=True,
              help="Run even when a trial's estimate of memory or time is over the limits.")
def tune(scenario: str, strategy: str, service: str | None, target: str, trials: int,
         replications: int, workers: int, executor: str, address: str | None,
         seed: int | None, outdir: Path | None, force: bool) -> None:
    """Search a strategy's parameters for the lowest cost that meets a target on SCENARIO,
    and write the winner back as a strategy entry (and, for an imported autoscaler, as the
    same kind of file)."""
    import time

    from simscale.io import check_output_dir
    from simscale.reports.tune_report import print_tune_table
    from simscale.simulator.scenario import load_scenario
    from simscale.sweeps.tune import tune as run_tune
    from simscale.sweeps.tune_output import write_outputs
    from simscale.sweeps.tune_space import parse_target

    t0 = time.perf_counter()
    goal = parse_target(target)
    sc = load_scenario(scenario)
    outdir = check_output_dir(outdir or Path("results") / "tune" / _safe_name(
        f"{sc.name}-{strategy}"))
    result = run_tune(sc, strategy, service=service, target=goal, trials=trials,
                      replications=replications, workers=workers, executor=executor,
                      address=address, seed=seed, progress=True, force=force)
    paths = write_outputs(result, outdir)
    console = make_console()
    print_tune_table(result, console)
    shown = ", ".join(p.name for role, p in paths.items() if role != "tune_json")
    console.print(f"[dim]results: {outdir}/tune.json, {shown}[/dim]")
    console.print(f"[dim]wall {time.perf_counter() - t0:.2f} s (simulating and searching "
                  f"{result['wall_s']:.2f} s)[/dim]")


# --------------------------------------------------------------------------- validate
@cli.command()
@click.argument("scenario")
@click.option("--strategy", help="The strategy to validate (default: the scenario's first).")
@click.option("--duration-s", type=click.FloatRange(min=1.0),
              help="Cut the scenario to this many seconds.")
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: results/validate/<scenario name>).")
@click.option("--profile", "profile_path",
              help="Simulate with this profile instead of profiling the models first.")
@click.option("--colocation/--no-colocation", default=True, show_default=True,
              help="Simulate this machine as one host whose replicas' batches slow each other "
                   "(the profile's co-location factors), and also without, to compare.")
def validate(scenario: str, strategy: str | None, duration_s: float | None,
             outdir: Path | None, profile_path: str | None, colocation: bool) -> None:
    """Run SCENARIO against real inference here and compare it with the simulation."""
    try:
        from simscale.validation.command import validate_command
    except ImportError as exc:
        raise UserError(
            f"validation needs the profile extra (pip install 'simscale[profile]'): {exc}",
            source="simscale validate",
        ) from None
    from simscale.io import check_output_dir

    outdir = check_output_dir(outdir or Path("results") / "validate"
                              / _safe_name(Path(scenario).stem))
    if profile_path is not None:  # (without one, validate measures a profile here and now)
        from simscale.profiler.schema import load_profile
        from simscale.profiler.speed import speed_warning

        _warn_line(speed_warning(load_profile(profile_path, warn=False)))
    validate_command(scenario, strategy=strategy, duration_s=duration_s, outdir=outdir,
                     profile=profile_path, colocation=colocation)


# --------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user errors become one line on stderr and exit status 2."""
    from simscale.interrupts import Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # (a stopped command cleans up as after Ctrl-C)
            rv = cli.main(args=argv, prog_name="simscale", standalone_mode=False)
    except UserError as exc:
        click.echo(f"simscale: error: {exc.format()}", err=True)
        sys.exit(2)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())
        sys.exit(2)
    except click.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        click.echo(f"simscale: error: {where}{exc.format_message()}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"simscale: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort) as exc:
        if isinstance(exc, Terminated) or isinstance(exc.__context__, Terminated):
            click.echo("simscale: terminated", err=True)
            sys.exit(143)  # (128 + SIGTERM, as a shell reports it)
        click.echo("simscale: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # pragma: no cover - e.g. `simscale ... | head`
        sys.exit(0)
    except MemoryError:
        click.echo("simscale: error: ran out of memory (run without --force to see the "
                   "estimate, or make the run smaller)", err=True)
        sys.exit(2)
    except RecursionError:
        click.echo("simscale: error: input nested too deeply", err=True)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
