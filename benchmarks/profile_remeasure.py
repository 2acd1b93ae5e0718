"""Re-measure one profile entry and compare it with the shipped default profile.

    python benchmarks/profile_remeasure.py [--model resnet50] [--threads 1] [--batch-size 1]
                                           [--profile PATH] [--tolerance 0.25] [--seconds 10]
                                           [--rescale]

Loads the model the way the profiler does (same zoo code, same thread settings), times the batch
size for ``--seconds`` seconds after a warm-up, and prints the fresh p50 next to the profile's.
Exits 1 when they differ by more than ``--tolerance`` (relative to the profile's p50). The load
average is printed too: on a busy machine a disagreement says little.

``--rescale`` checks ``simscale simulate --rescale``: it measures this machine's speed score
fresh (the median of three runs of the benchmark before and three after the timing, never the
cache) and also prints the p50 the simulator draws from (the fit's median at the batch size)
before and after :func:`simscale.profiler.speed.rescaled_to_machine` (the code ``--rescale``
runs), each against the fresh p50; the exit status then judges the rescaled one.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--tolerance", type=float, default=0.25)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rescale", action="store_true",
                        help="also judge the profile rescaled to this machine's speed score")
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
    scores = _scores() if args.rescale else []
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
    if not args.rescale:
        return 0 if abs(diff) <= args.tolerance else 1
    from simscale.profiler.speed import MachineSpeed, profile_score, rescaled_to_machine

    scores += _scores()
    here = MachineSpeed(float(np.median(scores)), "measured")
    there = profile_score(profile)
    if there is None:
        print(f"{args.profile}: the profile has no speed score to rescale from", file=sys.stderr)
        return 2
    scaled, _ = rescaled_to_machine(profile, here)
    before = _fit_p50_ms(profile, args)
    after = _fit_p50_ms(scaled, args)
    print(f"speed score: the profile's {there:.4g}, this machine's {here.score:.4g} "
          f"(runs {', '.join(f'{s:.4g}' for s in scores)}); the profile's CPU times "
          f"x{there / here.score:.3f}")
    print(f"simulated p50 (the fit's median at b={args.batch_size}): {before:.2f} ms as "
          f"profiled ({(before - p50) / p50:+.1%} against the fresh p50), {after:.2f} ms "
          f"rescaled ({(after - p50) / p50:+.1%})")
    return 0 if abs(after - p50) / p50 <= args.tolerance else 1


def _scores(runs: int = 3) -> list[float]:
    """``runs`` fresh scores of this machine's speed benchmark (never the cache)."""
    from simscale.profiler.speed import measure_speed

    return [measure_speed().score for _ in range(runs)]


def _fit_p50_ms(profile: Profile, args: argparse.Namespace) -> float:
    """The service-time fit's median (ms) of ``args``' configuration and batch size: what the
    simulator draws each batch around (the serving overhead aside)."""
    model = profile.service_model(args.model, "cpu", args.threads, serving=False)
    return float(model.median_s(args.batch_size)) * 1000.0


if __name__ == "__main__":
    sys.exit(main())
