"""How fast does a sweep run, and what does Ray cost against the process pool?

Runs the shipped 48-simulation sweep (``scenarios/sweeps/flash_crowd_grid.yaml``) from scratch
(a fresh output folder each time, so every job is computed) with the local process pool on 1
and 2 workers, and on a local Ray instance with 2 workers, and prints a table of wall-clock
seconds (median and min of ``--repeats`` runs), jobs per second, the speed-up over one worker,
and the parallel efficiency (seconds spent inside the jobs / (wall seconds x workers)). Ray's
times include starting and stopping its local instance, as ``simscale sweep --executor ray``
does on every call. The report is not rendered (``report=False``). The load average is
printed because other processes on the machine change the numbers.

    python benchmarks/sweep_speed.py                 # 3 repeats each
    python benchmarks/sweep_speed.py --repeats 1 --no-ray
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from simscale.sweeps import run_sweep

HERE = Path(__file__).resolve().parent
DEFAULT_SWEEP = HERE.parent / "scenarios" / "sweeps" / "flash_crowd_grid.yaml"


@dataclass
class Timing:
    """Repeated timings of one (executor, workers) configuration; times in seconds."""

    executor: str
    workers: int
    jobs: int
    walls_s: list[float]
    job_s: list[float]  # seconds spent inside the jobs (sum over jobs), per repeat
    failed: int

    @property
    def median_s(self) -> float:
        return statistics.median(self.walls_s)

    @property
    def efficiency(self) -> float:
        """Seconds inside jobs / (wall seconds x workers), median over repeats (0..1)."""
        return statistics.median(j / (w * self.workers) for j, w in zip(self.job_s, self.walls_s,
                                                                        strict=True))


def time_once(sweep: Path, t: Timing) -> None:
    """Run ``sweep`` once from scratch (a fresh output folder) and add the times to ``t``."""
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        res = run_sweep(sweep, outdir=tmp, executor=t.executor, workers=t.workers,  # type: ignore[arg-type]
                        progress=False, report=False)
        t.walls_s.append(res.wall_s)
        t.job_s.append(sum(json.loads(p.read_text())["wall_s"]
                           for p in (Path(tmp) / "runs").glob("*.json")))
        t.jobs, t.failed = res.jobs, max(t.failed, res.failed)


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def cpu_control(n: int = 10_000_000) -> float:
    """Speed-up of 2 spawned processes over 1 on four equal pure-Python loops: about 2 on an
    idle machine with 2 free cores, about 1 when other processes hold one of them. It says how
    far the sweep's speed-up could go here."""
    import multiprocessing
    import time

    ctx = multiprocessing.get_context("spawn")
    took = {}
    for w in (1, 2):
        with ctx.Pool(w) as pool:
            pool.map(_burn, [1000] * w)  # start the workers first
            t0 = time.perf_counter()
            pool.map(_burn, [n] * 4)
            took[w] = time.perf_counter() - t0
    return took[1] / took[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, default=DEFAULT_SWEEP)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    args = parser.parse_args(argv)

    configs = [("local", 1), ("local", 2)]
    if not args.no_ray:
        if importlib.util.find_spec("ray") is None:
            print("ray is not installed: skipping the Ray executor", file=sys.stderr)
        else:
            configs.append(("ray", 2))
    timings = [Timing(executor, workers, 0, [], [], 0) for executor, workers in configs]
    loads = []
    for r in range(args.repeats):  # interleaved, so that a change in machine load hits all
        for t in timings:
            time_once(args.sweep, t)
            loads.append(os.getloadavg()[0])
            print(f"  repeat {r + 1}: {t.executor} x{t.workers}: {t.walls_s[-1]:.1f} s "
                  f"(load {loads[-1]:.1f})", file=sys.stderr, flush=True)

    control = cpu_control()
    base = timings[0].median_s
    pool2 = next((t.median_s for t in timings if t.executor == "local" and t.workers == 2), None)
    print(f"\n{args.sweep.name}: {timings[0].jobs} jobs, median of {args.repeats} run(s); "
          f"{os.cpu_count()} cores, 1-min load average {min(loads):.1f}..{max(loads):.1f}")
    print(f"{'executor':<9}{'workers':>8}{'median s':>10}{'min s':>8}{'jobs/s':>8}"
          f"{'speed-up':>10}{'efficiency':>12}{'failed':>8}")
    for t in timings:
        print(f"{t.executor:<9}{t.workers:>8}{t.median_s:>10.2f}{min(t.walls_s):>8.2f}"
              f"{t.jobs / t.median_s:>8.2f}{base / t.median_s:>9.2f}x{t.efficiency:>11.0%}"
              f"{t.failed:>8}")
    print(f"control: 2 processes vs 1 on pure-Python loops: {control:.2f}x (the most the "
          f"machine gives now)")
    ray_t = next((t for t in timings if t.executor == "ray"), None)
    if ray_t is not None and pool2 is not None:
        print(f"Ray overhead against the process pool (2 workers): "
              f"{ray_t.median_s - pool2:+.2f} s ({ray_t.median_s / pool2:.2f}x)")
    return 1 if any(t.failed for t in timings) else 0


if __name__ == "__main__":
    sys.exit(main())
