"""How fast are the arrival generators, relative to numpy drawing the same number of numbers?

Two cases, each timed against a plain numpy baseline on the same machine in the same run, so that
the ratio says how much the generator adds to the cost of the random numbers themselves (a
machine's speed and load change both alike):

- ``constant``: a constant rate of 2e5 requests/s for 10 s (2e6 arrivals), against
  ``numpy.cumsum(rng.exponential(...))`` of the same count. Also printed: arrivals per second
  (the tests once asked for 1e7 on the 2-core reference machine).
- ``mmpp``: a two-state MMPP (1000 requests/s, then none) with 1 ms mean sojourns for 1000 s
  (about 1e6 state changes, 5e5 arrivals), against a constant rate of the same count: the cost of
  the state changes (the tests once asked for under 5 s).

Each figure is the best (smallest time) of ``--repeats`` runs, the two of a case alternating, so
that load from other processes falls on both. ``--max-ratio`` makes the exit status 1 when a
case is slower than that many times its baseline (for CI; default: report only).

    python benchmarks/workload_speed.py [--repeats 5] [--max-ratio 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from simscale.simulator.scenario import Workload
from simscale.simulator.workloads import generate_arrivals


def best_of(repeats: int, *fns: Callable[[], Any]) -> list[tuple[float, Any]]:
    """For each function, the smallest wall time (s) over ``repeats`` calls (the functions
    alternate) and the last result."""
    best = [np.inf] * len(fns)
    last: list[Any] = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            last[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(best, last, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-ratio", type=float, default=None,
                        help="exit 1 when a generator takes more than this many times its "
                             "baseline")
    args = parser.parse_args(argv)
    adapter: TypeAdapter[Any] = TypeAdapter(Workload)
    load_before = os.getloadavg()[0]
    rows = []

    rate = 2e5
    const = adapter.validate_python({"kind": "constant", "rate_rps": rate})
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(1)
    n = int(rate * 10)
    (t_gen, a), (t_np, _) = best_of(
        args.repeats,
        lambda: generate_arrivals(const, 10.0, rng_a),
        lambda: np.cumsum(rng_b.exponential(1 / rate, n)))
    rows.append(("constant 2e5/s x 10 s", a.size, t_gen, t_np,
                 f"{a.size / t_gen:.3g} arrivals/s"))

    mmpp = adapter.validate_python({"kind": "mmpp", "states": [
        {"rate_rps": 1000, "mean_sojourn_s": 0.001}, {"rate_rps": 0, "mean_sojourn_s": 0.001}]})
    rng_c, rng_d = np.random.default_rng(0), np.random.default_rng(1)
    (t_mmpp, m), (t_ref, _) = best_of(
        args.repeats,
        lambda: generate_arrivals(mmpp, 1000.0, rng_c),
        lambda: np.cumsum(rng_d.exponential(1 / 500.0, 500_000)))
    rows.append(("mmpp 1 ms sojourns x 1000 s", m.size, t_mmpp, t_ref, f"{t_mmpp:.2f} s"))

    print(f"best of {args.repeats}; {os.cpu_count()} cores, 1-min load average "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'case':<30}{'arrivals':>10}{'generator s':>13}{'numpy s':>10}{'ratio':>8}  note")
    worst = 0.0
    for name, count, t, base, note in rows:
        worst = max(worst, t / base)
        print(f"{name:<30}{count:>10}{t:>13.4f}{base:>10.4f}{t / base:>7.1f}x  {note}")
    if args.max_ratio is not None and worst > args.max_ratio:
        print(f"slower than {args.max_ratio:g}x the baseline", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
