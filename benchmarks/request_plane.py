"""Request-plane speed: the compiled loops vs the Python loops (the specification), same run.

Two workloads, each advanced in control segments of ``--segment`` seconds (as an autoscaler's
sync period cuts them), on one :class:`~simscale.simulator.requestplane.RequestPlane`:

- (a) M/M/10: utilization 0.8, mean service 10 ms, no batching, shared queue;
- (b) batching: 4 replicas, batches of up to 8 with a 5 ms wait, a batch of ``b`` takes
  ``(1 + 0.35 (b - 1)) x`` the head's draw (mean 20 ms), plus an idle-dependent serving overhead
  (0.2 ms back to back, 2 ms after 20 ms idle, 5 ms after 100 ms), utilization about 0.7.

For each it prints requests per CPU second (process time; medians of ``--repeats`` runs after a
warm-up, Python and compiled alternating round by round so machine load falls on both alike),
the ratio compiled / Python, and checks that both gave identical results. Also the first-run
compile time and the cached load time of the kernels (each in a fresh subprocess).

Usage: ``python benchmarks/request_plane.py [--requests 5000000] [--repeats 5] [--quick]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 - the thread variables must be set before numpy loads
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from simscale.simulator.requestplane import RequestPlane  # noqa: E402

IDLE = ([0.0, 0.02, 0.1], [0.0002, 0.002, 0.005])


def workload(kind: str, n: int, seed: int = 1) -> dict:
    """Arrivals, draws and the plane's settings of workload ``kind`` (``"a"`` or ``"b"``)."""
    rng = np.random.default_rng(seed)
    if kind == "a":
        lam = 0.8 * 10 / 0.010
        return dict(arr=np.cumsum(rng.exponential(1 / lam, n)), unit=rng.exponential(0.010, n),
                    replicas=10, maxb=1, maxw=0.0, fac=[1.0, 1.0], idle=None)
    fac = [0.0] + [1.0 + 0.35 * (b - 1) for b in range(1, 9)]
    lam = 4 * 0.7 / (0.020 * fac[4] / 4)
    return dict(arr=np.cumsum(rng.exponential(1 / lam, n)), unit=rng.exponential(0.020, n),
                replicas=4, maxb=8, maxw=0.005, fac=fac, idle=IDLE)


def run(w: dict, kernels: str, segment_s: float) -> tuple[float, RequestPlane]:
    """CPU seconds to advance the whole workload, and the plane."""
    t0 = time.process_time()
    pl = RequestPlane(w["arr"], w["unit"], max_batch_size=w["maxb"], max_wait_s=w["maxw"],
                      kernels=kernels)
    for r in range(w["replicas"]):
        pl.add_replica(r, 0.0, w["fac"], idle=w["idle"])
    end = float(w["arr"][-1]) + 10.0
    for t in np.arange(segment_s, end + segment_s, segment_s):
        pl.advance(float(t))
    return time.process_time() - t0, pl


def compile_times() -> tuple[float, float]:
    """(first compile s, cached load s), each measured in a fresh process with its own cache."""
    code = ("from simscale.simulator import _kernels as K; s, c = K.warm_up(); "
            "print(s, int(c))")
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               text=True, check=True)
            out.append(float(p.stdout.split()[0]))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5_000_000)
    ap.add_argument("--python-requests", type=int, default=500_000,
                    help="requests per Python-loop run (rates are per request)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--segment", type=float, default=15.0, help="control segment (s)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.python_requests, args.repeats = 200_000, 50_000, 2
    first, cached = compile_times()
    print(f"kernels: first compile {first:.2f} s, cached load {cached:.2f} s")
    print(f"{'workload':12s} {'Python req/CPU s':>17s} {'compiled req/CPU s':>19s} {'ratio':>7s}")
    for kind in ("a", "b"):
        big = workload(kind, args.requests)
        small = workload(kind, args.python_requests)
        # identical results on the Python-sized run
        _, p1 = run(small, "python", args.segment)
        _, p2 = run(small, "compiled", args.segment)
        for name in ("start_s", "end_s", "drop", "replica", "batch_size"):
            if not np.array_equal(getattr(p1, name), getattr(p2, name), equal_nan=True):
                raise SystemExit(f"workload {kind}: {name} differs between the loops")
        py, co = [], []
        for _ in range(args.repeats):
            py.append(args.python_requests / run(small, "python", args.segment)[0])
            co.append(args.requests / run(big, "compiled", args.segment)[0])
        mp, mc = statistics.median(py), statistics.median(co)
        label = "(a) M/M/10" if kind == "a" else "(b) batching"
        print(f"{label:12s} {mp:17,.0f} {mc:19,.0f} {mc / mp:6.1f}x")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
