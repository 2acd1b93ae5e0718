"""Parameter sweeps: many simulations of one scenario, on a local process pool or on Ray.

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
services, by :func:`simscale.simulator.runner.run_scenario`. Seeds given as a count ``n`` are
the variant's ``seed``, ``seed + 1``, …, ``seed + n - 1``, so every job's numbers are fixed by
its configuration whichever executor or worker runs it, and in whatever order.

Nothing is lost: each finished job is written as soon as it finishes to
``OUTDIR/runs/<key>.json`` (atomically), where ``key`` is the SHA-256 of the job's full
configuration (the validated scenario variant reduced to the job's strategy, the strategy
label, the seed, the simscale version with a fingerprint of the simulator's code, and the
contents of the files the scenario reads: a profile other than the shipped one, traces). Running
the same sweep again (after Ctrl-C, a crash or a killed worker, or with more grid values)
computes only the jobs whose file is missing; jobs that are identical across grid points (e.g.
``static`` when only an ``hpa`` parameter varies) are computed once. A job that raises is
written to ``OUTDIR/runs/<key>.error.json`` with its error and traceback, the other jobs go on,
and it is tried again on the next run.

The results table (``OUTDIR/results.parquet`` and ``OUTDIR/results.csv``) has one row per
(job row, service); :mod:`simscale.sweeps.table` lists its columns.

Modules, in the order a sweep uses them:

- :mod:`~simscale.sweeps.plan`: the sweep file, its checks, the rows and the jobs, job keys;
- :mod:`~simscale.sweeps.store`: running one job, the resumable store of job records;
- :mod:`~simscale.sweeps.executors`: the local process pool and the Ray executor;
- :mod:`~simscale.sweeps.table`: the results table;
- :mod:`~simscale.sweeps.run`: :func:`run_sweep`, which does all of the above (``simscale
  sweep`` calls it).

The simulator never imports this package.
"""

from __future__ import annotations

from simscale.sweeps.plan import (
    MAX_SWEEP_RUNS,
    Job,
    Row,
    SweepFile,
    SweepPlan,
    code_fingerprint,
    job_key,
    load_sweep,
    plan_sweep,
)
from simscale.sweeps.run import Executor, SweepResult, run_sweep
from simscale.sweeps.store import execute_job
from simscale.sweeps.table import build_table, write_table

__all__ = [
    "MAX_SWEEP_RUNS",
    "Executor",
    "Job",
    "Row",
    "SweepFile",
    "SweepPlan",
    "SweepResult",
    "build_table",
    "code_fingerprint",
    "execute_job",
    "job_key",
    "load_sweep",
    "plan_sweep",
    "run_sweep",
    "write_table",
]
