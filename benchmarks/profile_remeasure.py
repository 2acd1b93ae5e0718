"""Re-measure one profile entry and compare it with the shipped default profile.

    python benchmarks/profile_remeasure.py [--model resnet50] [--threads 1] [--batch-size 1]
                                           [--profile PATH] [--tolerance 0.25] [--seconds 10]

Loads the model the way the profiler does (same zoo code, same thread settings), times the batch
size for ``--seconds`` seconds after a warm-up, and prints the fresh p50 next to the profile's.
Exits 1 when they differ by more than ``--tolerance`` (relative to the profile's p50). The load
average is printed too: on a busy machine a disagreement says little.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--tolerance", type=float, default=0.25)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)

    from simscale.profiler.measure import TimingPlan, time_interleaved
    from simscale.profiler.schema import load_profile
    from simscale.profiler.zoo import load_model

    profile = load_profile(args.profile, warn=False)
    cfg = profile.config(args.model, "cpu", args.threads)
    stored = next((b for b in cfg.batches if b.batch_size == args.batch_size), None)
    if stored is None:
        print(f"batch size {args.batch_size} is not in the profile", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    model = load_model(args.model, args.threads, "cpu")
    plan = TimingPlan(warmup_s=1.0, min_rounds=1, budget_s=args.seconds, max_runs=100_000)
    timings = time_interleaved(model.predict, {args.batch_size: model.make_inputs(args.batch_size)},
                               plan)
    fresh = timings.samples_ms[args.batch_size]
    wall = timings.wall_ms[args.batch_size]
    p50 = float(np.percentile(fresh, 50))
    diff = (p50 - stored.p50_ms) / stored.p50_ms
    print(
        f"{args.model} cpu {args.threads} thread(s) b={args.batch_size}: "
        f"profile p50 {stored.p50_ms:.2f} ms, fresh p50 {p50:.2f} ms "
        f"(wall {np.percentile(wall, 50):.2f} ms, n={len(fresh)}), difference {diff:+.1%}; "
        f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    return 0 if abs(diff) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
