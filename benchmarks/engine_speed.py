"""Engine speed: simscale vs a textbook SimPy model vs Ciw on the same M/M/c workload.

One M/M/c queue (10 servers, utilization 0.8, mean service 10 ms, no batching) is simulated by

- simscale, end to end (``run_scenario``: arrivals, SimPy control plane with a static
  strategy, the request-plane kernel, all figures) and the engine alone (``run_strategy``);
- a textbook SimPy model: a process per request holding a ``simpy.Resource``;
- Ciw (``ciw.Simulation``).

For each it prints simulated requests per wall second and per CPU second (medians of ``--repeats``
timed runs, ``--repeats - 2`` for the peers, after one warm-up run each; the runs of all four
alternate, round by round, so that load from other processes on a shared machine falls on all
of them alike), the ratio of simscale to the others, the mean queueing wait with a 95%
batch-means interval next to Erlang-C, and simscale's memory per kept request. Finally, the
wall time of ``simscale simulate scenarios/flash_crowd.yaml`` (subprocess) when that file
exists.

Usage: ``python benchmarks/engine_speed.py [--requests 1250000] [--repeats 5] [--quick]``
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import stats

SERVERS = 10
RHO = 0.8
MEAN_S = 0.010
LAM = RHO * SERVERS / MEAN_S


def erlang_c_wait_s(lam: float, mu: float, c: int) -> float:
    a = lam / mu
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / math.factorial(c) / (1 - a / c)
    return tail / (head + tail) / (c * mu - lam)


def batch_means(x: np.ndarray, n_batches: int = 30) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    x = x[len(x) // 20:]
    m = x[: len(x) // n_batches * n_batches].reshape(n_batches, -1).mean(axis=1)
    return float(m.mean()), float(stats.t.ppf(0.975, n_batches - 1) * m.std(ddof=1)
                                  / math.sqrt(n_batches))


# ---------------------------------------------------------------------------- simscale
def scenario_data(n_requests: int, seed: int) -> dict:
    """The M/M/c scenario of ``n_requests`` requests (expected) as a scenario file holds it:
    ``static`` on ``SERVERS`` replicas."""
    return {"name": "mmc_bench", "duration_s": round(n_requests / LAM), "seed": seed,
            "services": [{"name": "s", "model": "m", "slo_ms": 100,
                          "service_time": {"dist": "exponential", "mean_s": MEAN_S},
                          "cold_start_s": 0,
                          "replicas": {"initial": SERVERS, "min": SERVERS, "max": SERVERS},
                          "workload": {"kind": "constant", "rate_rps": LAM}}],
            "strategies": [{"name": "static"}]}


def scenario(n_requests: int, seed: int):
    from simscale.simulator.scenario import load_scenario

    return load_scenario(scenario_data(n_requests, seed))


def simscale_end_to_end(n: int, seed: int) -> tuple[float, int, object]:
    from simscale.simulator.runner import run_scenario

    sc = scenario(n, seed)
    t, c = time.perf_counter(), time.process_time()
    res = run_scenario(sc)
    return (time.perf_counter() - t, time.process_time() - c, res.summary["runs"][0]["arrivals"],
            res)


def simulate_command(n: int, seed: int, report: bool) -> tuple[float, float, float]:
    """``(wall, user, system)`` seconds of the whole ``simscale simulate`` command (a fresh
    process: start-up, simulation, results written; the report too when ``report``) on the
    same M/M/10. System time apart because on a VM that pays for every page a process touches
    first it moves the wall time from run to run while user time stays put."""
    import yaml

    data = scenario_data(n, seed)
    exe = shutil.which("simscale") or str(Path(sys.executable).with_name("simscale"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mmc.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        cmd = [exe, "simulate", str(path), "-o", str(Path(tmp) / "out"), "--force"]
        r0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        proc = subprocess.run(cmd + ([] if report else ["--no-report"]), capture_output=True,
                              text=True)
        wall = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    return wall, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime


def simscale_engine(n: int, seed: int) -> tuple[float, int, object]:
    """The engine alone, keeping every request (``stream=False``) so that its waits can be
    checked against Erlang-C; the end-to-end run streams (2 million requests or more)."""
    from simscale.simulator.engine import run_strategy
    from simscale.simulator.inputs import service_inputs
    from simscale.strategies import make_strategy

    sc = scenario(n, seed)
    svc = sc.services[0]
    inputs = {svc.name: service_inputs(svc, sc, np.random.SeedSequence(seed).spawn(1)[0], None)}
    t, c = time.perf_counter(), time.process_time()
    out = run_strategy(sc, {svc.name: make_strategy("static")}, inputs, None, stream=False)
    return (time.perf_counter() - t, time.process_time() - c, len(out[0].plane.arrival_s),
            out[0].plane)


# ---------------------------------------------------------------------------- textbook SimPy
def textbook_simpy(n: int, seed: int) -> tuple[float, int, np.ndarray]:
    import simpy

    rng = np.random.default_rng(seed)
    inter = rng.exponential(1 / LAM, n).tolist()
    service = rng.exponential(MEAN_S, n).tolist()
    waits = [0.0] * n
    t, c = time.perf_counter(), time.process_time()
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=SERVERS)

    def request(i: int):
        arrived = env.now
        with servers.request() as req:
            yield req
            waits[i] = env.now - arrived
            yield env.timeout(service[i])

    def source():
        for i in range(n):
            yield env.timeout(inter[i])
            env.process(request(i))

    env.process(source())
    env.run()
    return time.perf_counter() - t, time.process_time() - c, n, np.asarray(waits)


# ---------------------------------------------------------------------------- Ciw
def ciw_run(n: int, seed: int) -> tuple[float, int, np.ndarray]:
    import ciw

    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=LAM)],
        service_distributions=[ciw.dists.Exponential(rate=1 / MEAN_S)],
        number_of_servers=[SERVERS],
    )
    ciw.seed(seed)
    t, c = time.perf_counter(), time.process_time()
    sim = ciw.Simulation(network)
    sim.simulate_until_max_time(n / LAM)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    recs = sorted(sim.get_all_records(), key=lambda r: r.arrival_date)
    return wall, cpu, len(recs), np.asarray([r.waiting_time for r in recs])


# ---------------------------------------------------------------------------- driver
def timed(fn, n: int, repeats: int) -> tuple[float, float, object]:
    """Median requests per wall second and per CPU second over ``repeats`` runs after one
    warm-up run (CPU seconds show the speed when the machine is shared)."""
    (rate, cpu_rate), last = timed_rounds({"x": (fn, n, repeats)}, repeats)["x"]
    return rate, cpu_rate, last


def timed_rounds(jobs: dict[str, tuple], rounds: int) -> dict[str, tuple]:
    """``jobs``: name -> (fn, requests, runs). One warm-up run each, then ``rounds`` rounds
    in which every job still owed a run runs once, in turn: on a shared machine a burst of
    load then falls on all of them alike instead of on whichever was being timed. Returns
    name -> ((median requests per wall s, per CPU s), the last run's result)."""
    for fn, n, _ in jobs.values():
        fn(min(n, 20_000), 0)
    rates: dict[str, list[tuple[float, float]]] = {k: [] for k in jobs}
    last: dict[str, object] = {}
    for r in range(rounds):
        for name, (fn, n, runs) in jobs.items():
            if r >= runs:
                continue
            wall, cpu, count, last[name] = fn(n, r + 1)
            rates[name].append((count / wall, count / max(cpu, 1e-9)))
    return {k: ((statistics.median(x for x, _ in v), statistics.median(y for _, y in v)),
                last[k]) for k, v in rates.items()}


def memory_per_request(n: int) -> tuple[float, float]:
    """(bytes of the per-request arrays the engine keeps when it keeps every request, peak
    traced bytes of a whole ``run_scenario``, which streams from 2 million requests on)
    per request."""
    _, _, count, plane = simscale_engine(n, 99)
    kept = sum(getattr(plane, a).nbytes for a in ("arrival_s", "unit_service", "start_s",
                                                    "end_s", "batch_size", "replica", "drop"))
    tracemalloc.start()
    _, _, count2, _ = simscale_end_to_end(n, 99)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return kept / count, peak / count2


def flash_crowd_wall() -> str:
    root = Path(__file__).resolve().parents[1]
    path = root / "scenarios" / "flash_crowd.yaml"
    if not path.exists():
        return "scenarios/flash_crowd.yaml not found"
    exe = shutil.which("simscale") or str(Path(sys.executable).with_name("simscale"))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.run([exe, "simulate", str(path), "-o", tmp], capture_output=True,
                              text=True)
        wall = time.perf_counter() - t
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"failed (exit {proc.returncode}) after {wall:.2f} s: {last}"
    return f"{wall:.2f} s"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_250_000, help="requests per simscale run")
    ap.add_argument("--peer-requests", type=int, default=150_000,
                    help="requests per textbook-SimPy and Ciw run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small runs (a smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.peer_requests, args.repeats = 100_000, 20_000, 2
    theory = erlang_c_wait_s(LAM, 1 / MEAN_S, SERVERS)
    print(f"M/M/{SERVERS}, utilization {RHO}, mean service {MEAN_S * 1000:g} ms; "
          f"Erlang-C mean wait {theory * 1000:.4f} ms")
    peers = max(args.repeats - 2, 1)
    load0 = os.getloadavg()
    out = timed_rounds({"e2e": (simscale_end_to_end, args.requests, args.repeats),
                        "engine": (simscale_engine, args.requests, args.repeats),
                        "simpy": (textbook_simpy, args.peer_requests, peers),
                        "ciw": (ciw_run, args.peer_requests, peers)}, args.repeats)
    load1 = os.getloadavg()
    (e2e, e2e_cpu), _ = out["e2e"]
    (eng, eng_cpu), plane = out["engine"]
    (sp, sp_cpu), sp_waits = out["simpy"]
    (cw, cw_cpu), cw_waits = out["ciw"]
    ss_waits = plane.start_s - plane.arrival_s  # type: ignore[attr-defined]
    rows = [("simscale end to end (run_scenario)", e2e, e2e_cpu, ss_waits),
            ("simscale engine (run_strategy)", eng, eng_cpu, ss_waits),
            ("textbook SimPy (process/request)", sp, sp_cpu, sp_waits),
            ("Ciw", cw, cw_cpu, cw_waits)]
    print(f"\n{'model':36s} {'req/wall s':>11s} {'req/CPU s':>11s}   mean wait ms (95% CI)")
    for name, rate, cpu_rate, waits in rows:
        m, h = batch_means(waits)
        print(f"{name:36s} {rate:11,.0f} {cpu_rate:11,.0f}   {m * 1000:.4f} +- {h * 1000:.4f}")
    for unit, (a, b, c, d) in (("wall", (e2e, eng, sp, cw)),
                               ("CPU", (e2e_cpu, eng_cpu, sp_cpu, cw_cpu))):
        print(f"ratios per {unit} s (simscale end to end / engine): vs textbook SimPy "
              f"{a / c:.1f}x / {b / c:.1f}x, vs Ciw {a / d:.1f}x / {b / d:.1f}x")
    for report in (False, True):
        runs = [simulate_command(args.requests, 11 + k, report) for k in range(args.repeats)]
        w, user, system = (statistics.median(col) for col in zip(*runs, strict=True))
        print(f"simscale simulate, whole command{' with report' if report else ' --no-report'}:"
              f" {w:.2f} s median of {args.repeats} ({args.requests / w:,.0f} requests per wall "
              f"s, {args.requests / w / sp:.1f}x textbook SimPy; user {user:.2f} s, system "
              f"{system:.2f} s; walls {' '.join(f'{r[0]:.2f}' for r in runs)})")
    kept, peak = memory_per_request(args.requests)
    print(f"memory per kept request: {kept:.0f} bytes (engine arrays, every request kept); "
          f"peak of a whole run_scenario: {peak:.0f} bytes per request")
    print(f"load average (1 min) before / after the timed runs: {load0[0]:.2f} / {load1[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"simscale simulate scenarios/flash_crowd.yaml: {flash_crowd_wall()}")


if __name__ == "__main__":
    main()
