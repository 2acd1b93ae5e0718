"""How long does a whole ``simscale`` command take, start to exit (issue #13, "fast start")?

Times, as a user runs them (a fresh process each time, the ``simscale`` entry point next to this
interpreter, else ``python -m simscale.cli``):

- ``simscale --help`` (target: 0.3 s),
- ``simscale scenarios list``,
- a small ``simscale simulate``: a 20 s scenario, one service with an explicit exponential
  service time, two strategies, report.html written (target: 1 s),
- the same with ``--no-report``,
- a small simulation of a shipped scenario on the shipped profile (``step``, cut to 60 s,
  ``static`` only), which also loads the profile's noise distributions.

Each command runs once to warm the file cache (and numba's cache), then ``--runs`` times; the
table has the median wall time and the median CPU time (user + system of the child). On a
loaded machine wall time stretches with the load while CPU time mostly does not, so both are
printed. ``-X importtime`` and ``tests/test_fast_start.py`` say what is imported; this says how
long it takes. Only a report, never a pass/fail.

    python benchmarks/start_time.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY_SCENARIO = """\
name: tiny
duration_s: 20
seed: 1
services:
  - name: svc
    model: resnet50
    slo_ms: 500
    service_time: {dist: exponential, mean_ms: 50}
    cold_start_s: 2
    replicas: {initial: 1, min: 1, max: 3}
    workload: {kind: constant, rate_rps: 10}
strategies:
  - {name: static}
  - {name: threshold}
"""


def simscale_command() -> list[str]:
    """The ``simscale`` entry point of this interpreter's environment, else ``python -m``."""
    script = Path(sys.executable).with_name("simscale")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "simscale.cli"]


def run_once(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``; fails loudly on an error."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(argv: list[str], cwd: Path, runs: int) -> tuple[float, float, list[float]]:
    """Median wall and CPU seconds over ``runs`` runs after one warm-up run, and the walls."""
    run_once(argv, cwd)
    results = [run_once(argv, cwd) for _ in range(runs)]
    walls = [w for w, _ in results]
    return statistics.median(walls), statistics.median(c for _, c in results), walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command")
    args = parser.parse_args()

    exe = simscale_command()
    workdir = Path(tempfile.mkdtemp(prefix="simscale-start-"))
    try:
        (workdir / "tiny.yaml").write_text(TINY_SCENARIO, encoding="utf-8")
        cases = [
            ("simscale --help", ["--help"], 0.3),
            ("simscale scenarios list", ["scenarios", "list"], None),
            ("simscale simulate tiny.yaml", ["simulate", "tiny.yaml", "-o", "out"], 1.0),
            ("simscale simulate tiny.yaml --no-report",
             ["simulate", "tiny.yaml", "-o", "out-nr", "--no-report"], None),
            ("simscale simulate step (60 s, static)",
             ["simulate", "step", "--set", "duration_s=60", "--set", "warmup_s=0",
              "--strategy", "static", "-o", "out-step"], None),
        ]
        print(f"{' '.join(exe)}; {args.runs} runs after a warm-up; {os.cpu_count()} CPUs, "
              f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'command':<42} {'wall median':>12} {'CPU median':>11} {'target':>7}  walls (s)")
        for name, argv, target in cases:
            wall, cpu, walls = measure([*exe, *argv], workdir, args.runs)
            goal = f"{target:.1f} s" if target else ""
            print(f"{name:<42} {wall:>10.3f} s {cpu:>9.3f} s {goal:>7}  "
                  + " ".join(f"{w:.3f}" for w in walls))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
