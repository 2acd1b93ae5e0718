"""Long-trace benchmark: replay weeks of per-second traffic against every strategy, end to end.

    python benchmarks/long_trace.py [--days 21] [--strategies static,hpa,...] [--seed 1]
                                    [--max-replicas 40] [--no-report] [--no-bounds] [--workers N]
                                    [--keep] [--json FILE]

Generates a trace of ``--days`` days (fractional allowed) with ``make_long_trace.py`` (a
per-second request count: diurnal cycle, weekend dip, 3-4x bursts, 64 requests/s on average
over whole weeks) into a temporary folder, writes a scenario there that replays it
(``kind: trace``, ``count_column: count``, ``interval_s: 1``) to one ResNet50 service (the
shipped profile's measured service times, one thread per replica, batches of up to 4 with a
20 ms wait, SLO 1000 ms, replicas 1..``--max-replicas``, raised when the trace's busiest minute
would need more at 75% utilization) and runs every built-in strategy (``static`` is provisioned
for that busiest minute), or those of ``--strategies``. It prints simscale's own estimate
(``simscale scenarios check``), then runs ``simscale simulate SCENARIO -o OUT --force`` as a
child process with one thread per numeric library (``OMP_NUM_THREADS=1`` and the like) and
reports:

- wall time of the whole command (start of the process to its exit);
- peak memory: the largest resident set of the child as the kernel reports it at exit
  (``wait4`` rusage, exact) and the largest sums of the resident sets and of the proportional
  set sizes of the process tree seen by polling every 0.1 s (psutil; with ``--workers`` the
  PSS sum is the machine's memory taken: the libraries every process maps count once);
- requests simulated: the arrivals of each strategy (each replays the whole trace on common
  random numbers) and their sum over strategies, per wall second of the whole command;
- per strategy, from ``summary.json``: its simulation wall time (``runs[].wall_s``), arrivals,
  requests per second of that time, SLO attainment, drops and mean replicas.

The 21-day default is about 116 million requests per strategy; check the estimate before you
run it. ``--keep`` keeps the folder (trace, scenario, results); ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

HERE = Path(__file__).resolve().parent
STRATEGIES = ("static", "threshold", "hpa", "kpa", "predictive", "cost_aware", "oracle")
#: ResNet50, CPU, one thread, batch of 4 in the shipped profile: about 14.1 images/s a replica
RESNET50_ITEMS_PER_S = 14.1
TARGET_UTILIZATION = 0.75
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_long_trace", HERE / "make_long_trace.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _simscale_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "simscale"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("simscale")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from simscale.cli import main; sys.exit(main())"]


def scenario_dict(trace_csv: str, seconds: int, strategies: list[str], *, seed: int,
                  initial: int, max_replicas: int, static_replicas: int) -> dict:
    """The benchmark scenario: one ResNet50 service replaying the count trace."""
    strats = []
    for name in strategies:
        entry: dict = {"name": name}
        if name == "static":
            entry["replicas"] = static_replicas
        strats.append(entry)
    return {
        "name": "long_trace",
        "description": f"{seconds / 86400:g} days of per-second traffic (benchmarks/"
                       "make_long_trace.py) served by ResNet50",
        "duration_s": seconds,
        "seed": seed,
        "warmup_s": min(300, seconds // 10),
        "profile": "default",
        "services": [{
            "name": "resnet50",
            "model": "resnet50",
            "device": "cpu",
            "threads": 1,
            "slo_ms": 1000,
            "batching": {"max_batch_size": 4, "max_wait_ms": 20},
            "queue": {"capacity": 2000, "timeout_ms": 10000},
            "routing": "shared_queue",
            "replicas": {"initial": initial, "min": 1, "max": max_replicas},
            "cold_start_s": "profile",
            "service_time": "profile",
            "cost_per_replica_hour": 0.10,
            "workload": {"kind": "trace", "path": trace_csv, "count_column": "count",
                         "interval_s": 1},
        }],
        "strategies": strats,
    }


class TreeRssPoller:
    """Polls the summed resident set of a process and its descendants; keeps the maximum, and
    the maximum of their summed proportional set size (PSS: each shared page divided among the
    processes that map it, so libraries loaded by several processes count once, as they do in
    the machine's memory; the honest total for a run with ``--workers``)."""

    def __init__(self, pid: int, interval_s: float = 0.1):
        self.pid = pid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.peak_pss_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            pss = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    m = p.memory_full_info()
                except psutil.Error:
                    continue
                total += m.rss
                pss += getattr(m, "pss", m.rss)
            self.peak_bytes = max(self.peak_bytes, total)
            self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
            self.samples += 1
            self._stop.wait(self.interval_s)


def run_child(cmd: list[str], env: dict, log: Path) -> dict:
    """Run ``cmd``; its wall time, exit status and peak memory (rusage and polled tree)."""
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        with TreeRssPoller(proc.pid) as poll:
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc  # reaped here, with its rusage
    return {"rc": rc, "wall_s": wall, "maxrss_mb": usage.ru_maxrss / 1024.0,
            "tree_peak_mb": poll.peak_bytes / 2**20,
            "tree_peak_pss_mb": poll.peak_pss_bytes / 2**20, "polls": poll.samples,
            "cpu_s": usage.ru_utime + usage.ru_stime}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=21.0, help="trace length (fractional ok)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES),
                    help="comma-separated strategy names (default: all seven built-ins)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the trace and of the run")
    ap.add_argument("--start-hour", type=float, default=0.0,
                    help="clock time of the trace's first second, hours after Monday 00:00")
    ap.add_argument("--max-replicas", type=int, default=40)
    ap.add_argument("--no-report", action="store_true", help="pass --no-report to simulate")
    ap.add_argument("--no-bounds", action="store_true", help="pass --no-bounds to simulate")
    ap.add_argument("--workers", type=int, default=1,
                    help="pass --workers N to simulate (strategies run N at a time)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--workdir", help="use this folder instead of a temporary one (kept)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    if not a.days > 0:
        ap.error("--days must be positive")
    strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    if not strategies:
        ap.error("--strategies names none")

    gen = _load_generator()
    if a.workdir:
        work = Path(a.workdir).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="simscale_long_trace_"))
    try:
        t0 = time.perf_counter()
        tr = gen.generate(a.days, seed=a.seed, start_hour=a.start_hour)
        trace_csv = gen.write_csv(work / "trace.csv", tr.counts)
        gen_s = time.perf_counter() - t0
        st = tr.stats()
        need_peak = math.ceil(st["peak_minute_rps"]
                              / (RESNET50_ITEMS_PER_S * TARGET_UTILIZATION))
        need_start = math.ceil(float(tr.rate[:60].mean())
                               / (RESNET50_ITEMS_PER_S * TARGET_UTILIZATION))
        max_replicas = max(a.max_replicas, need_peak)
        sc = scenario_dict(trace_csv.name, st["seconds"], strategies, seed=a.seed,
                           initial=min(max(1, need_start), max_replicas),
                           max_replicas=max_replicas, static_replicas=need_peak)
        scen = work / "long_trace.yaml"
        scen.write_text(yaml.safe_dump(sc, sort_keys=False), encoding="utf-8")
        print(f"trace: {st['days']:g} days, {st['seconds']:,} rows, "
              f"{trace_csv.stat().st_size / 2**20:.1f} MiB, made in {gen_s:.1f} s; "
              f"{st['total_requests']:,} requests, mean {st['mean_rps']:.1f}/s, busiest "
              f"minute {st['peak_minute_rps']:.0f}/s, busiest second {st['peak_second']}, "
              f"{st['bursts']} bursts")
        print(f"service: resnet50, replicas {sc['services'][0]['replicas']} (busiest minute "
              f"needs {need_peak} at {TARGET_UTILIZATION:.0%} of {RESNET50_ITEMS_PER_S} "
              f"images/s; static gets {need_peak}); strategies: {', '.join(strategies)}")
        print(f"folder: {work}")

        env = dict(os.environ)
        env.update({v: "1" for v in THREAD_VARS})
        cmd = _simscale_cmd()
        check = subprocess.run([*cmd, "scenarios", "check", str(scen)], env=env,
                               capture_output=True, text=True)
        estimate = " ".join((check.stdout + check.stderr).split())
        print(f"estimate (scenarios check, rc {check.returncode}): {estimate}")

        out = work / "out"
        sim = [*cmd, "simulate", str(scen), "-o", str(out), "--force"]
        if a.no_report:
            sim.append("--no-report")
        if a.no_bounds:
            sim.append("--no-bounds")
        if a.workers > 1:
            sim += ["--workers", str(a.workers)]
        print("running:", " ".join(sim), flush=True)
        res = run_child(sim, env, work / "simulate.log")
        log_tail = (work / "simulate.log").read_text(encoding="utf-8", errors="replace")
        if res["rc"] != 0:
            print(f"simscale simulate failed (exit {res['rc']}) after {res['wall_s']:.1f} s, "
                  f"peak {res['maxrss_mb']:.0f} MB:")
            print(log_tail[-4000:])
        runs = []
        summary_wall = None
        summary_path = out / "summary.json"
        if res["rc"] == 0 and summary_path.exists():
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            summary_wall = summary.get("wall_s")
            for r in summary.get("runs", []):
                w = r.get("wall_s")
                runs.append({"label": r.get("label") or r.get("strategy"),
                             "wall_s": w, "arrivals": r.get("arrivals"),
                             "requests_per_s": (r["arrivals"] / w) if w else None,
                             "slo_attainment": r.get("slo_attainment"),
                             "dropped": r.get("dropped"),
                             "mean_replicas": r.get("mean_replicas"),
                             "max_replicas": r.get("max_replicas")})
        total = sum(r["arrivals"] or 0 for r in runs)
        per_strategy = runs[0]["arrivals"] if runs else None
        print()
        print(f"days {a.days:g}: wall {res['wall_s']:.1f} s (cpu {res['cpu_s']:.1f} s), "
              f"peak RSS {res['maxrss_mb']:.0f} MB (rusage), {res['tree_peak_mb']:.0f} MB "
              f"(polled tree, RSS summed), {res['tree_peak_pss_mb']:.0f} MB (polled tree, PSS "
              f"summed), exit {res['rc']}")
        if runs:
            print(f"requests simulated: {per_strategy:,} per strategy x {len(runs)} = "
                  f"{total:,}; {total / res['wall_s']:,.0f} requests/s end to end"
                  + (f"; summary wall_s {summary_wall:.1f}" if summary_wall else ""))
            print(f"{'strategy':<12}{'wall s':>9}{'arrivals':>13}{'req/s':>11}{'SLO met':>9}"
                  f"{'dropped':>10}{'replicas':>10}{'max':>5}")
            for r in runs:
                wall = f"{r['wall_s']:.1f}" if r["wall_s"] is not None else "-"
                rps = f"{r['requests_per_s']:,.0f}" if r["requests_per_s"] else "-"
                print(f"{r['label']:<12}{wall:>9}{r['arrivals']:>13,}{rps:>11}"
                      f"{r['slo_attainment']:>9.1%}{r['dropped']:>10,}"
                      f"{r['mean_replicas']:>10.2f}{r['max_replicas']:>5}")
        if a.json:
            Path(a.json).write_text(json.dumps({
                "days": a.days, "seed": a.seed, "strategies": strategies, "trace": st,
                "workers": a.workers, "bounds": not a.no_bounds, "report": not a.no_report,
                "estimate": estimate, "max_replicas": max_replicas, "static_replicas": need_peak,
                "command": res, "summary_wall_s": summary_wall,
                "requests_per_strategy": per_strategy, "requests_total": total,
                "requests_per_s": total / res["wall_s"] if runs else None, "runs": runs,
            }, indent=2) + "\n", encoding="utf-8")
        return 0 if res["rc"] == 0 else 1
    finally:
        if not (a.keep or a.workdir):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
