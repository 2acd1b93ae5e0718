"""Decision cost: microseconds per autoscaler decision (building the observation + ``decide``).

Simulates a one-hour flash crowd (``scenarios/flash_crowd.yaml`` stretched to 3600 s: the three
services at 200, 100 and 2 -> 20 requests/s, the crowd from 1200 s on) once per strategy and
times, for every decision of every service, ``Monitor.observe`` (the lagged
:class:`~simscale.strategies.base.Observation`) and the strategy's ``decide`` with
``time.perf_counter``. Prints, per strategy, the number of decisions and the medians (over all
decisions of ``--repeats`` runs, after one warm-up run) of observe, decide and their sum, in
microseconds. Thread pools are pinned to one thread (the machine is small and shared; medians,
not means, because of that).

Usage: ``python benchmarks/decision_cost.py [--strategies threshold hpa kpa cost_aware oracle]
[--repeats 3] [--duration 3600]``

Measured on the 2-core shared development machine (medians over all decisions of 3 runs, us
per decision, observe + decide; ``before``: this script on the code before issue #13 item 3,
which rebuilt the latency window, queue and per-replica figures from the request arrays at each
decision and solved the queueing model afresh each time; ``first pass``: the incremental
monitor and the memoized queueing answers; ``second``: latency percentiles computed only when a
strategy reads them, the compiled monitor also for small services once loaded, leaner
observation building and governors (load average about 2.5 on 2 cores); ``now``: completions,
utilization and arrivals also lazy (each observation queues its slab; the slabs are read,
oldest first and each as at its observation, when a strategy first reads one of them, a
latency percentile, or a streaming run its cursors), so ``hpa`` and ``kpa`` no longer pay for
the pass over the slab's requests; the queue, in-flight and per-replica figures come from one
compiled call with its own cursors; a leaner slab loop (running bin sums in registers);
``Decision`` and ``Step`` built without ``object.__setattr__``. ``second`` measured 49.6 /
52.8 / 32.0 (threshold / hpa / kpa) at the start of the session of ``now`` (load average
about 2.2), ``now`` at its end (load average about 0.9). For ``cost_aware`` and ``oracle``,
``now`` is the solver that searches replica counts one at a time in scalars and stops at the
first meeting the SLO (bit-identical decisions). ``last`` (2026-12-03, evening, load average
about 0.7): the request plane keeps the busy time per second as its batches start
(``RequestPlane.track_busy``) and the engine records when replicas start and stop serving, so
the utilization ``threshold`` reads needs no pass over the requests (the slab pass, which now
counts completions and latencies only, runs only when they are read); the serving time of a
slab is added when it is read (``hpa`` and ``kpa`` never pay for it); compiled ports of the
serving spans and the utilization step; the stabilization window drops its oldest record in
place.

============  =========  ==========  ======  =====  =====  ==================================
strategy      before     first pass  second  now    last   last, per service (linear_regr. /
                                                           xgboost / resnet50)
============  =========  ==========  ======  =====  =====  ==================================
threshold        311.9       107.9     48.0   48.4   26.4  29.1 / 26.4 / 23.8
hpa              320.9       109.8     51.6   33.3   23.6  26.1 / 23.3 / 21.0
kpa              227.4        48.4     32.2   21.4   17.7  18.3 / 17.7 / 17.0
cost_aware      1258.9       583.9      --    175.3  158.6  164.4 / 159.1 / 140.7
oracle          1734.7       223.5      --    149.0  137.5  152.7 / 124.1 / 138.0
============  =========  ==========  ======  =====  =====  ==================================

linear_regression and xgboost (720 000 and 360 000 requests) run the compiled request plane
and with it the compiled monitor (:mod:`simscale.simulator._kernels_monitor`); resnet50 (11 000
requests) runs its request plane in Python and, since the other services loaded it, the
compiled monitor. What remains is fixed Python cost: about 10 to 13 us in ``Monitor.observe``
(record counts, the queue and per-replica call, the observation) and 8 to 14 us in ``decide``
(reading the lazy figures, governor chains, ``Decision``); ``threshold``'s
linear_regression is the highest (29.1 us: its last second's 200 requests are read for the
per-replica figures).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402 - the thread variables must be set before numpy loads
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

STRATEGIES = ("threshold", "hpa", "kpa", "cost_aware", "oracle")


def scenario(duration_s: float):
    """The shipped flash crowd, ``duration_s`` long, the crowd a third of the way in."""
    from simscale.simulator.scenario import load_scenario, scenarios_dir

    return load_scenario(scenarios_dir() / "flash_crowd.yaml", overrides=[
        f"duration_s={duration_s:g}",
        f"services.resnet50.workload.start_s={duration_s / 3:g}",
        f"services.linear_regression.workload.period_s={duration_s:g}"])


class Timer:
    """Wraps the engine's ``Monitor.observe`` and ``call_strategy`` to time each decision."""

    def __init__(self) -> None:
        self.observe_us: list[float] = []
        self.decide_us: list[float] = []
        self.service: list[str] = []

    def install(self):  # noqa: ANN201
        from simscale.simulator import engine

        orig_observe = engine.Monitor.observe
        orig_call = engine.call_strategy
        timer = self

        def observe(mon, t_s):  # noqa: ANN001, ANN202
            t0 = time.perf_counter()
            obs = orig_observe(mon, t_s)
            timer.observe_us.append((time.perf_counter() - t0) * 1e6)
            timer.service.append(mon.sim.svc.name)
            return obs

        def call(strategy, method, *args):  # noqa: ANN001, ANN202
            if method != "decide":
                return orig_call(strategy, method, *args)
            t0 = time.perf_counter()
            out = orig_call(strategy, method, *args)
            timer.decide_us.append((time.perf_counter() - t0) * 1e6)
            return out

        engine.Monitor.observe = observe
        engine.call_strategy = call

        def restore() -> None:
            engine.Monitor.observe = orig_observe
            engine.call_strategy = orig_call

        return restore


def run_once(sc, strategy: str) -> Timer:  # noqa: ANN001
    from simscale.simulator.runner import run_scenario

    timer = Timer()
    restore = timer.install()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_scenario(sc, strategies=[strategy], force=True)
    finally:
        restore()
    return timer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3600.0)
    args = ap.parse_args()
    sc = scenario(args.duration)
    print(f"flash crowd, {args.duration:g} s, services: "
          f"{', '.join(s.name for s in sc.services)}; medians over all decisions of "
          f"{args.repeats} runs (after one warm-up run)")
    print(f"{'strategy':<12} {'decisions':>9} {'observe us':>11} {'decide us':>10} "
          f"{'total us':>9}")
    per_service: dict[str, dict[str, float]] = {}
    for name in args.strategies:
        run_once(sc, name)  # warm-up: imports, compiled loops, caches of the profile
        obs_us: list[float] = []
        dec_us: list[float] = []
        svc: list[str] = []
        for _ in range(args.repeats):
            t = run_once(sc, name)
            obs_us += t.observe_us
            dec_us += t.decide_us
            svc += t.service
        total = [a + b for a, b in zip(obs_us, dec_us, strict=True)]
        print(f"{name:<12} {len(total) // args.repeats:>9} {statistics.median(obs_us):>11.1f} "
              f"{statistics.median(dec_us):>10.1f} {statistics.median(total):>9.1f}",
              flush=True)
        per_service[name] = {s.name: statistics.median(
            [x for x, n in zip(total, svc, strict=True) if n == s.name]) for s in sc.services}
    print("\nmedian total us per service:")
    print(f"{'strategy':<12} " + " ".join(f"{s.name:>18}" for s in sc.services))
    for name, row in per_service.items():
        print(f"{name:<12} " + " ".join(f"{row[s.name]:>18.1f}" for s in sc.services))

if __name__ == "__main__":
    main()
