"""How far a drift of the machine's speed while profiling moves the profile: configurations
timed one after another (the old way) against timing rounds that take turns (issue #15 item 3).

    python benchmarks/profile_drift.py [--repeats 3] [--burn-cores N] [--rounds 4]
                                       [--seconds 2.5] [--json drift.json]

Four timing units, each timed by the profiler's own code (``BatchTimer``, ``time_in_rounds``):
ResNet50 batch 1, linear regression batches 1 and 4, ResNet50 batch 4, XGBoost batches 1 and 4,
all on one thread, each with a budget of ``--seconds`` over ``--rounds`` timing rounds. (The
profiler times ResNet50's batch sizes as one configuration; here they are two units, so that
ResNet50 sits on both sides of the half-way point.) Per repeat, four runs, in this order:

- ``quiet``: interleaved, nothing else started;
- ``sequential``: one unit after another; ``benchmarks/cpu_load.py --cores N`` (default: one
  busy process per core) starts half-way through the run -- before the first step of the
  third unit, step 9 of 16 -- and runs to its end;
- ``interleaved``: the same with the rounds taking turns: the load starts before round 3 of
  4, step 9 of 16;
- ``loaded``: interleaved, with the load running from the start.

Per unit and batch size, the *drift* is ``loaded / quiet - 1`` (what the load does to that
median) and the *move* of a run is ``run / quiet - 1``; ``move / drift`` is the share of the
drift that reached the result (0: none, 1: all of it). Besides the profile's median of the
rounds' medians, the interleaved run reports two other ways to combine its rounds: their mean,
and their medians each scaled by a short speed score (``profiler/speed.py``, one work unit
after a warm-up one) measured just before the round, over the run's median score
(``normalised``). Both the service times (the run-queue wait taken out: what the profile
keeps) and the raw wall times are reported.

The machine is shared and its speed drifts by itself, so the figures are medians over the
repeats, and a drift under 5 % is not turned into a share. Prints two tables; ``--json`` writes
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

CPU_LOAD = Path(__file__).resolve().parent / "cpu_load.py"
#: (label, model, batch sizes) of the timing units, in the order one after another
UNITS = (("resnet50 b=1", "resnet50", (1,)), ("linear_regression", "linear_regression", (1, 4)),
         ("resnet50 b=4", "resnet50", (4,)), ("xgboost", "xgboost", (1, 4)))
#: drifts smaller than this are not turned into a share of the drift
MIN_DRIFT = 0.05


class Burner:
    """``cpu_load.py --cores N``: :meth:`start` starts it (once) and waits ``settle_s`` for
    its workers to run; :meth:`stop` stops it."""

    def __init__(self, cores: int, settle_s: float = 0.3) -> None:
        self.cores = cores
        self.settle_s = settle_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.proc is None:
            self.proc = subprocess.Popen(
                [sys.executable, str(CPU_LOAD), "--cores", str(self.cores), "--seconds", "600"],
                stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(self.settle_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def load_units(seconds: float, rounds: int) -> list[tuple[str, Any, dict[int, Any], Any]]:
    """(label, predict, batches, plan) of every unit, models loaded once."""
    from simscale.profiler.measure import TimingPlan
    from simscale.profiler.zoo import load_model

    out = []
    models: dict[str, Any] = {}
    for label, name, sizes in UNITS:
        model = models.setdefault(name, load_model(name, 1, "cpu"))
        plan = TimingPlan(warmup_s=0.3 if name == "resnet50" else 0.05, min_rounds=rounds,
                          budget_s=seconds, max_runs=100_000, timing_rounds=rounds,
                          rewarm_s=0.02)
        out.append((label, model.predict, {b: model.make_inputs(b) for b in sizes}, plan))
    return out


def one_run(units: list[tuple[str, Any, dict[int, Any], Any]], *, interleaved: bool,
            burner: Burner | None = None, load_from_step: int = 0, seed: int = 0
            ) -> dict[str, Any]:
    """Time every unit in the given order, starting ``burner`` before step ``load_from_step``
    (0-based) of the order; per unit and batch size, for the service and the wall times, the
    median of the rounds' medians, the mean of the rounds' medians and the speed-normalised
    median; and the run's steps with their times and speed scores."""
    from simscale.profiler.measure import BatchTimer, Timings
    from simscale.profiler.rounds import time_in_rounds
    from simscale.profiler.speed import measure_speed

    timers = [BatchTimer(predict, batches, plan, seed=seed + i)
              for i, (_, predict, batches, plan) in enumerate(units)]
    t0 = time.perf_counter()
    steps: list[dict[str, Any]] = []

    def on_step(c: int, r: int) -> None:
        if burner is not None and len(steps) == load_from_step:
            burner.start()
        score = measure_speed(rounds=1).score  # one work unit after a warm-up one: ~0.25 s
        steps.append({"unit": c, "round": r, "at_s": time.perf_counter() - t0, "score": score,
                      "loaded": burner is not None and burner.proc is not None})

    found = time_in_rounds(timers, interleaved=interleaved, on_step=on_step)
    ref_score = float(np.median([s["score"] for s in steps]))
    result: dict[str, Any] = {"elapsed_s": time.perf_counter() - t0, "steps": steps,
                              "units": {}}
    for c, ((label, _, batches, _), t) in enumerate(zip(units, found, strict=True)):
        scores = np.asarray([s["score"] for s in steps if s["unit"] == c]) / ref_score
        wall = Timings(samples_ms=t.wall_ms, wall_ms=t.wall_ms, round_of=t.round_of)
        for b in batches:
            result["units"][f"{label}|{b}"] = {
                kind: {"median_of_rounds_ms": x.p50_ms(b),
                       "mean_of_rounds_ms": float(np.mean(x.round_p50_ms(b))),
                       "normalised_ms": float(np.median(x.round_p50_ms(b) * scores)),
                       "rounds_ms": x.round_p50_ms(b).tolist()}
                for kind, x in (("service", t), ("wall", wall))}
    return result


#: the ways of combining a run's rounds that are compared: (name, figure of a unit)
COMBINED = (("median", "median_of_rounds_ms"), ("mean", "mean_of_rounds_ms"),
            ("normalised", "normalised_ms"))


def summarise(repeats: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Per unit and batch size, for ``kind`` (``service``: what the profile keeps, the run-queue
    wait taken out; ``wall``: the raw wall times): the drift, and the move of each run (one
    after another; interleaved, with each way of combining the rounds) and its share of the
    drift; medians over the repeats."""
    out: dict[str, Any] = {}
    for key in repeats[0]["quiet"]["units"]:
        rows = []
        for rep in repeats:
            u = {k: rep[k]["units"][key][kind] for k in
                 ("quiet", "sequential", "interleaved", "loaded")}
            q = u["quiet"]["median_of_rounds_ms"]
            row = {"quiet_ms": q, "drift": u["loaded"]["median_of_rounds_ms"] / q - 1.0,
                   "sequential": u["sequential"]["median_of_rounds_ms"] / q - 1.0}
            for name, fig in COMBINED:
                row[f"interleaved_{name}"] = u["interleaved"][fig] / u["quiet"][fig] - 1.0
            rows.append(row)
        med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
        shares = {}
        for k in med:
            if k in ("quiet_ms", "drift"):
                continue
            vals = [r[k] / r["drift"] for r in rows if abs(r["drift"]) >= MIN_DRIFT]
            shares[k] = float(np.median(vals)) if vals else None
        out[key] = {"median": med, "share_of_drift": shares, "repeats": rows}
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0%}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_table(summary: dict[str, Any], title: str) -> None:
    print(title)
    cols = ["sequential", *(f"interleaved_{n}" for n, _ in COMBINED)]
    head = (f"{'unit':<18} {'b':>2} {'quiet ms':>9} {'drift':>6} | move: "
            + " ".join(f"{c.replace('interleaved_', 'int. '):>13}" for c in cols)
            + " | share of drift: " + " / ".join(c.replace("interleaved_", "int. ")
                                                for c in cols))
    print(head)
    print("-" * len(head))
    for key, s in summary.items():
        label, b = key.split("|")
        m, sh = s["median"], s["share_of_drift"]
        print(f"{label:<18} {b:>2} {m['quiet_ms']:>9.3f} {_pct(m['drift']):>6} | move: "
              + " ".join(f"{_pct(m[c]):>13}" for c in cols) + " | "
              + " / ".join(_share(sh[c]) for c in cols))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--burn-cores", type=int, default=os.cpu_count() or 1,
                        help="busy processes of the load (default: one per core)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.5, help="timing budget per unit")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    units = load_units(args.seconds, args.rounds)
    half = len(units) * args.rounds // 2
    repeats = []
    load_before = os.getloadavg()
    for i in range(args.repeats):
        rep: dict[str, Any] = {}
        for name, interleaved, from_step in (("quiet", True, None), ("sequential", False, half),
                                             ("interleaved", True, half),
                                             ("loaded", True, 0)):
            burner = Burner(args.burn_cores) if from_step is not None else None
            try:
                rep[name] = one_run(units, interleaved=interleaved, burner=burner,
                                    load_from_step=from_step or 0, seed=10 * i)
            finally:
                if burner is not None:
                    burner.stop()
        repeats.append(rep)
        print(f"repeat {i + 1}/{args.repeats}: "
              + ", ".join(f"{k} {rep[k]['elapsed_s']:.1f} s" for k in rep), flush=True)
    summary = {kind: summarise(repeats, kind) for kind in ("service", "wall")}
    print(f"\n{args.repeats} repeats, {args.rounds} rounds of {args.seconds:g} s per unit, "
          f"load: {args.burn_cores} busy process(es) from step {half + 1} of "
          f"{len(units) * args.rounds}; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; medians over the repeats\n")
    print_table(summary["service"], "service times (the run-queue wait taken out: what the "
                "profile keeps)")
    print_table(summary["wall"], "wall times")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "summary": summary, "repeats": repeats}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
