"""Does the speed score follow a real model's speed? (``simscale profile speed``'s benchmark
against ResNet50's batch of one, on one machine whose speed moves.)

    python benchmarks/speed_tracking.py [--seconds 300] [--block 6] [--json OUT]

A shared virtual machine's speed moves by several per cent in phases lasting tens of seconds
(its neighbours' memory traffic, a hypervisor). ``--rescale`` multiplies a profile's times by
the ratio of two scores, so a score is only useful if it moves with the models' times. This
script alternates, for ``--seconds``, one run of the speed benchmark (this version's, and
version 1's work unit for comparison: 4000 products of 64x64 matrices and the Python loop, all
inside the core's caches) with five ResNet50 predicts of one item (one thread, the profiler's
model), all on one BLAS/torch thread. Over blocks of ``--block`` iterations (medians), it prints
per score the correlation of ``1 / score`` with ResNet50's time, and how far ResNet50's time
scaled by the score's ratio to its overall median lands from the block's measured time (the
error ``--rescale`` would make between two moments of this machine). It says nothing about two
different machines; it is the one check that can run on one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def _v1_work() -> Any:
    """Version 1's work unit (``simscale.speed/1``), kept here for comparison."""
    n = 64
    a = (np.arange(n * n, dtype=np.float64).reshape(n, n) % 13.0) / 13.0
    b = np.ascontiguousarray(a.T)

    def work() -> int:
        for _ in range(4000):
            np.matmul(a, b)
        acc = 0
        table: dict[int, int] = {}
        for i in range(250_000):
            acc = (acc * 31 + i) % 1_000_003
            table[i & 1023] = acc
        return acc + len(table)

    return work


def _blocks(x: np.ndarray, k: int) -> np.ndarray:
    return np.array([np.median(x[i:i + k]) for i in range(0, len(x) - k + 1, k)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--block", type=int, default=6)
    parser.add_argument("--json", default=None, help="write every sample here")
    args = parser.parse_args(argv)

    import torch

    from simscale.profiler.speed import BENCHMARK, measure_speed, one_blas_thread, round_work
    from simscale.profiler.zoo import load_model

    torch.set_num_threads(1)
    model = load_model("resnet50", 1, "cpu")
    x = model.make_inputs(1)
    for _ in range(3):
        model.predict(x)
    works = {BENCHMARK: round_work(), "simscale.speed/1": _v1_work()}
    rows: list[dict[str, float]] = []
    t_end = time.monotonic() + args.seconds
    with one_blas_thread():
        while time.monotonic() < t_end:
            row = {name: measure_speed(work=w).score for name, w in works.items()}
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                model.predict(x)
                times.append(time.perf_counter() - t0)
            row["resnet50_ms"] = float(np.median(times)) * 1000.0
            rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    rn = np.array([r["resnet50_ms"] for r in rows])
    if len(rn) < 2 * args.block:
        print(f"only {len(rn)} samples: run longer", file=sys.stderr)
        return 1
    big = _blocks(rn, args.block)
    print(f"{len(rn)} samples over {args.seconds:.0f} s; ResNet50 b=1 {rn.min():.1f}.."
          f"{rn.max():.1f} ms, blocks of {args.block} {big.min():.1f}..{big.max():.1f} ms")
    for name in works:
        inv = 1.0 / np.array([r[name] for r in rows])
        predicted = np.median(rn) * inv / np.median(inv)
        err = _blocks(predicted, args.block) / big - 1.0
        print(f"{name}: score {1 / inv.max():.3g}..{1 / inv.min():.3g}; correlation with "
              f"ResNet50's time {np.corrcoef(inv, rn)[0, 1]:.2f} (samples), "
              f"{np.corrcoef(_blocks(inv, args.block), big)[0, 1]:.2f} (blocks); rescaled "
              f"ResNet50 off by at most {np.abs(err).max():.1%} (blocks), "
              f"p95 {np.percentile(np.abs(predicted / rn - 1.0), 95):.1%} (samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
