"""Running a whole sweep: :func:`run_sweep` plans it, runs the jobs that have no stored result
(on the local process pool or on Ray, with a progress bar), then writes the results table,
``sweep.json`` (what was run) and the sweep report; :class:`SweepResult` says what it did.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from simscale import __version__
from simscale.io import write_json_atomic
from simscale.simulator.runner import check_executor_options
from simscale.sweeps.executors import cpu_count, ray_session, run_local, run_ray
from simscale.sweeps.plan import Job, SweepPlan, plan_sweep
from simscale.sweeps.store import Store, error_text
from simscale.sweeps.table import build_table, write_table

__all__ = ["Executor", "SweepResult", "run_sweep"]

#: Where the jobs run: ``"local"`` (a process pool on this machine) or ``"ray"``.
Executor = Literal["local", "ray"]


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    table:
        The results table (pandas DataFrame; see :mod:`simscale.sweeps.table` for its columns).
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
    force: bool = False,
) -> SweepResult:
    """Run every job of a sweep that has no stored result yet, then write the results table.

    Parameters
    ----------
    sweep_path:
        The sweep YAML file (see :mod:`simscale.sweeps`).
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
    force:
        Plan and run even beyond :data:`~simscale.sweeps.plan.MAX_SWEEP_RUNS` simulations or
        the memory and time limits of one run.

    Returns
    -------
    SweepResult
        The table and the counts of computed, reused and failed jobs. Failed jobs do not raise;
        check ``result.failed``. Bad input raises :class:`UserError` before anything runs;
        Ctrl-C raises ``KeyboardInterrupt`` with every job finished so far already stored.
    """
    t0 = time.perf_counter()
    check_executor_options(executor, workers, address)
    n_workers = workers or cpu_count()
    plan = plan_sweep(sweep_path, force=force)
    outdir = Path(outdir)
    store = Store(outdir)

    records: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for key, job in plan.jobs.items():
        rec = store.load(key)
        if rec is not None:
            records[key] = rec
        else:
            todo.append(job)
    reused = len(records)
    errors = _run_jobs(plan, todo, store, records, executor=executor, workers=n_workers,
                       address=address, progress=progress)

    table = build_table(plan, records)
    parquet, csv = write_table(table, outdir)
    write_json_atomic(outdir / "sweep.json", {
        "sweep": str(plan.path), "scenario": str(plan.scenario_path),
        "simscale_version": __version__, "grid": plan.spec.grid,
        "strategies": plan.spec.strategies, "seeds": plan.spec.seeds,
        "rows": len(plan.rows), "jobs": len(plan.jobs), "computed": len(todo),
        "reused": reused, "failed": len(errors), "executor": executor,
        "workers": n_workers, "wall_s": time.perf_counter() - t0,
    })
    report_path = (_render_report(table, outdir, list(table.columns[: len(plan.grid_paths)]),
                                  title=f"Sweep {plan.path.stem}") if report else None)
    return SweepResult(table=table, jobs=len(plan.jobs), computed=len(todo), reused=reused,
                       failed=len(errors), outdir=outdir, parquet=parquet, csv=csv,
                       report=report_path, wall_s=time.perf_counter() - t0, errors=errors)


def _run_jobs(plan: SweepPlan, todo: list[Job], store: Store,
              records: dict[str, dict[str, Any]], *, executor: Executor, workers: int,
              address: str | None, progress: bool) -> dict[str, str]:
    """Run ``todo`` on ``executor``, storing each record as its job finishes (into ``store``
    and ``records``, by job key); return job key -> one-line error for the jobs that failed."""
    errors: dict[str, str] = {}
    with ExitStack() as stack:
        # Ray starts (or fails to connect) before the progress bar shows
        ray = stack.enter_context(ray_session(workers, address)) if (
            executor == "ray" and todo) else None
        advance = stack.enter_context(_progress_bar(
            progress, len(plan.jobs), len(plan.jobs) - len(todo), f"sweep {plan.path.name}"))

        def on_done(job: Job, record: dict[str, Any]) -> None:
            records[job.key] = store.save(job, record)
            if "error" in record:
                errors[job.key] = record["error"]
            advance("error" in record)

        if ray is not None:
            run_ray(ray, todo, on_done)
        elif todo:
            run_local(todo, workers, on_done)
    return errors


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
        print(f"simscale: warning: sweep report not written: {error_text(exc)}",
              file=sys.stderr)
        return None
    return Path(out) if out is not None else None
