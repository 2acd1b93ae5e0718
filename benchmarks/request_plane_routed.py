"""Per-replica-queue request plane speed: the compiled loop vs the Python loop (the specification).

Workload: 8 replicas, each with its own queue fed by ``least_outstanding`` or ``power_of_two``
routing; batches of up to 4 with a 5 ms wait; a batch of ``b`` takes ``(1 + 0.35 (b - 1)) x`` the
head's draw (exponential, mean 10 ms); Poisson arrivals at 800 requests/s, which keeps the
replicas busy about 75 % of the time (printed: measured busy time / replica time). The plane is
advanced in control segments of ``--segment`` seconds (as an autoscaler's sync period cuts them)
by ``RequestPlane._advance_general`` (Python) or
:func:`simscale.simulator._kernels_routed.advance_routed_compiled` (compiled), with the cyclic
garbage collector off as ``RequestPlane.advance`` runs them.

Prints requests per CPU second (process time, one thread; medians of ``--repeats`` runs after a
warm-up, Python and compiled alternating round by round so machine load falls on both alike), the
ratio compiled / Python, and checks that both loops gave identical results on the Python-sized
run.

Usage: ``python benchmarks/request_plane_routed.py [--requests 2000000]
[--python-requests 300000] [--repeats 3] [--quick]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402 - the thread variables must be set before numpy loads
import gc  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from simscale.simulator._kernels_routed import advance_routed_compiled  # noqa: E402
from simscale.simulator.requestplane import RequestPlane  # noqa: E402

REPLICAS = 8
MAXB = 4
MAXW_S = 0.005
MEAN_S = 0.010
RATE_RPS = 800.0
FACTORS = [0.0] + [1.0 + 0.35 * (b - 1) for b in range(1, MAXB + 1)]


def workload(routing: str, n: int, seed: int = 1) -> dict:
    """Arrivals (s), unit draws (s) and routing uniforms of ``n`` requests."""
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1.0 / RATE_RPS, n))
    unit = rng.exponential(MEAN_S, n)
    ru = rng.random((n, 2)) if routing == "power_of_two" else None
    return dict(routing=routing, arr=arr, unit=unit, ru=ru)


def run(w: dict, compiled: bool, segment_s: float) -> tuple[float, RequestPlane]:
    """CPU seconds to advance the whole workload, and the plane."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        t0 = time.process_time()
        pl = RequestPlane(w["arr"], w["unit"], routing=w["routing"], max_batch_size=MAXB,
                          max_wait_s=MAXW_S, route_u=w["ru"], kernels="python")
        for r in range(REPLICAS):
            pl.add_replica(r, 0.0, FACTORS)
        end = float(w["arr"][-1]) + 10.0
        for t in np.arange(segment_s, end + segment_s, segment_s).tolist():
            if compiled:
                advance_routed_compiled(pl, t)
            else:
                pl._advance_general(t)
            pl.now = t
        return time.process_time() - t0, pl
    finally:
        if gc_was_on:
            gc.enable()


def utilization(pl: RequestPlane) -> float:
    """Busy replica time / available replica time (a batch of ``b`` counts 1/b per request)."""
    ok = pl.drop == 0
    busy = float(np.sum((pl.end_s[ok] - pl.start_s[ok]) / pl.batch_size[ok]))
    return busy / (REPLICAS * float(np.nanmax(pl.end_s)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2_000_000)
    ap.add_argument("--python-requests", type=int, default=300_000,
                    help="requests per Python-loop run (rates are per request)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--segment", type=float, default=15.0, help="control segment (s)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.python_requests, args.repeats = 200_000, 30_000, 2
    print(f"{'routing':18s} {'util':>5s} {'mean batch':>10s} {'Python req/CPU s':>17s} "
          f"{'compiled req/CPU s':>19s} {'ratio':>7s}")
    for routing in ("least_outstanding", "power_of_two"):
        big = workload(routing, args.requests)
        small = workload(routing, args.python_requests)
        # warm-up (compiles or loads the kernel) and identical results on the Python-sized run
        _, p1 = run(small, False, args.segment)
        _, p2 = run(small, True, args.segment)
        for name in ("start_s", "end_s", "drop", "replica", "batch_size"):
            if not np.array_equal(getattr(p1, name), getattr(p2, name), equal_nan=True):
                raise SystemExit(f"{routing}: {name} differs between the loops")
        py, co = [], []
        for _ in range(args.repeats):
            py.append(args.python_requests / run(small, False, args.segment)[0])
            co.append(args.requests / run(big, True, args.segment)[0])
        mp, mc = statistics.median(py), statistics.median(co)
        mean_b = float(np.mean(p1.batch_size[p1.drop == 0]))
        print(f"{routing:18s} {utilization(p1):5.2f} {mean_b:10.2f} {mp:17,.0f} {mc:19,.0f} "
              f"{mc / mp:6.1f}x")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
