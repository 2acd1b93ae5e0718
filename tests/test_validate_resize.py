"""``simscale validate`` covers vertical scaling: the real cluster resizes replicas by a rolling
restart (maxSurge 1, maxUnavailable 0), as a Kubernetes Deployment does when its pod's CPU
changes.

The fast tests run the real cluster (router, dispatchers, control loop, replica processes and
pipes) with a *fake* replica program in place of the model replica: a few lines of Python that
speak the replica's protocol, report the ``--threads`` argument and the thread-pool environment
they were started with, and start in a configurable time (per thread count), so a rollout spans
several control ticks. Every wait is on an event with a generous deadline; the run is ended once
what the test waits for has happened, never after a fixed sleep. The ``slow`` test runs the whole
``validate`` command with real linear-regression replicas and a custom strategy that asks for
two threads.
"""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

from simscale.strategies.base import Decision, Observation, SizeOption
from simscale.validation.cluster import RealCluster
from simscale.validation.records import RealServiceSpec

#: seconds a test waits for an event before it fails: generous, so that a loaded machine only
#: makes the test slower, never failing
EVENT_DEADLINE_S = 180.0

FAKE_REPLICA = '''\
"""A fake replica: the serving protocol of simscale.profiler.replica, no model."""
import json, os, sys, time

args = sys.argv[1:]
threads = int(args[args.index("--threads") + 1])
t0 = time.perf_counter()
time.sleep(float(os.environ.get(f"FAKE_REPLICA_READY_S_{threads}", "0.05")))
print(json.dumps({"event": "ready", "pid": os.getpid(), "threads_arg": threads,
                  "threads_env": int(os.environ.get("OMP_NUM_THREADS", "0")),
                  "import_and_load_s": time.perf_counter() - t0}), flush=True)
for line in sys.stdin:
    line = line.strip()
    if not line:
        break
    n = int(line)
    t = time.perf_counter()
    time.sleep(0.0005 * n)
    print(json.dumps({"event": "done", "batch_size": n,
                      "service_ms": (time.perf_counter() - t) * 1000.0}), flush=True)
'''


@pytest.fixture()
def fake_python(tmp_path: Path) -> str:
    """An executable that stands in for the replicas' Python interpreter (``RealCluster``'s
    ``python``): it runs the fake replica whatever module it is asked to run."""
    path = tmp_path / "fake_replica.py"
    path.write_text(f"#!{sys.executable}\n" + FAKE_REPLICA, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


class Scripted:
    """A strategy that returns ``decisions`` in turn (the last one from then on), deciding every
    ``sync_period_s``; it records the replica counts it observed."""

    def __init__(self, decisions: list[Decision], sync_period_s: float = 0.5) -> None:
        self.decisions = decisions
        self.sync_period_s = sync_period_s
        self.seen: list[tuple[float, int, int, int]] = []
        self.calls = 0

    def decide(self, obs: Observation) -> Decision:
        self.seen.append((obs.time_s, obs.replicas.desired_total, obs.replicas.ready,
                          obs.current_size.threads))
        d = self.decisions[min(self.calls, len(self.decisions) - 1)]
        self.calls += 1
        return d


def make_spec(strategy: Any, arrivals_s: np.ndarray, initial: int = 1, max_replicas: int = 3,
              routing: str = "shared_queue") -> RealServiceSpec:
    size = SizeOption("cpu", 1, 0.5, 0.5, 1.0, 0.1, 4, 1.0, 0.1)
    return RealServiceSpec(
        name="lr", model="linear_regression", device="cpu", threads=1, slo_ms=100.0,
        max_batch_size=4, max_wait_ms=2.0, queue_capacity=None, queue_timeout_ms=None,
        routing=routing, initial_replicas=initial, min_replicas=1, max_replicas=max_replicas,
        cost_per_replica_hour=1.0, arrivals_s=arrivals_s, strategy=strategy, context=None,
        size=size)


def run_until(cluster: RealCluster, done: Any) -> Any:
    """Run ``cluster`` (its ``duration_s`` a bound far beyond the test) and end the run once
    ``done()`` holds, with every arrival sent and answered: the event, never a fixed time."""
    svc = cluster.services[0]
    last_arrival_s = float(svc.arrival_s[-1]) if len(svc.arrival_s) else 0.0
    ended = threading.Event()

    def watcher() -> None:
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while time.monotonic() < deadline and not ended.is_set():
            if cluster.started and cluster.now() > last_arrival_s:
                with svc.cond:
                    answered = bool(np.all(np.isfinite(svc.end_s) | (svc.drop_reason != "")))
                    ok = answered and done(svc)
                if ok:
                    cluster.duration_s = cluster.now() + 0.2  # end the run now
                    return
            time.sleep(0.05)
        cluster.duration_s = min(cluster.duration_s, max(0.0, cluster.now()))  # give up

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    try:
        return cluster.run()
    finally:
        ended.set()
        thread.join(timeout=EVENT_DEADLINE_S)


def rollout_done(svc: Any) -> bool:
    return bool(svc.rollouts) and svc.rollouts[-1].ended == "done" and all(
        r.state in ("stopped", "removed") for r in svc.replicas if r.threads != svc.threads)


def serving_at(replicas: list[dict[str, Any]], t: float) -> int:
    """Replicas taking new work at ``t`` (s): ready, not draining, not stopped."""
    n = 0
    for r in replicas:
        ready, drain, stop = r["ready_s"], r["drain_s"], r["stop_s"]
        end = min(x for x in (drain, stop, math.inf) if x == x)
        if ready == ready and ready <= t < end:
            n += 1
    return n


def assert_never_below_desired(rec: Any, initial: int, duration_s: float) -> None:
    """At every instant a replica changed state, the replicas taking new work were at least
    the desired count then (``initial``, then each scale-down's target): a rollout never
    lowers it (maxUnavailable 0). For runs without scale-ups (whose new replicas start)."""
    assert not any(e["action"] == "scale_up" for e in rec.events)
    desired = [(0.0, initial)] + [(e["time_s"], e["to_replicas"]) for e in rec.events
                                  if e["action"] == "scale_down"]
    times = sorted({x for r in rec.replicas for x in (r["ready_s"], r["drain_s"], r["stop_s"])
                    if x == x and 0.0 <= x < duration_s} | {0.0})
    for t in times:
        want = [n for (s, n) in desired if s <= t][-1]
        assert serving_at(rec.replicas, t) >= want, (t, want, rec.replicas)


def validate_helpers() -> Any:
    """``tests/test_validate.py`` as a module (its profile and process helpers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_test_validate_helpers", Path(__file__).with_name("test_validate.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- fast tests
@pytest.mark.timeout(600)
def test_rolling_restart_replaces_the_replica_after_its_replacement_is_ready(
        fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One replica at 1 thread, then a decision for 2 threads: a surge replica starts with
    ``--threads 2`` and 2 in its thread-pool environment; the old one drains only once the new
    one is ready; the strategy never sees the surge in its counts; events say it; no request is
    lost; each replica is billed at its own threads."""
    monkeypatch.setenv("FAKE_REPLICA_READY_S_2", "1.0")  # a rollout that spans ticks
    strategy = Scripted([Decision(replicas=1), Decision(replicas=1, threads=2,
                                                        resize_delay_s=3.0)])
    arrivals = np.sort(np.random.default_rng(1).uniform(0.0, 4.0, 120))
    cluster = RealCluster([make_spec(strategy, arrivals)], 600.0, warmup_batches=2,
                          python=fake_python)
    res = run_until(cluster, rollout_done)
    rec = res.services["lr"]
    by = {r["replica"]: r for r in rec.replicas}
    old, new = by[0], next(r for r in rec.replicas if r["replaces"] == 0)
    assert old["threads"] == 1 and new["threads"] == 2
    # the new process was started with the new size: argument and thread-pool environment
    assert new["replica_threads_arg"] == 2 and new["replica_threads_env"] == 2
    assert old["replica_threads_arg"] == 1 and old["replica_threads_env"] == 1
    # drained only after its replacement was ready, and it exited as planned
    assert new["ready_s"] <= old["drain_s"] <= old["stop_s"]
    assert old["state"] == "stopped" and not old["crashed"] and old["exit_code"] == 0
    assert_never_below_desired(rec, 1, res.duration_s)
    # the surge replica never counted towards the decision
    assert all(desired == 1 for _, desired, _, _ in strategy.seen)
    assert any(th == 2 for *_, th in strategy.seen)  # the observation reports the new size
    actions = [e["action"] for e in rec.events]
    assert actions.count("resize") == 1 and actions.count("resize_done") == 1
    start = next(e for e in rec.events if e["action"] == "resize")
    done = next(e for e in rec.events if e["action"] == "resize_done")
    assert (start["from_threads"], start["to_threads"]) == (1, 2) == (done["from_threads"],
                                                                       done["to_threads"])
    assert done["time_s"] == pytest.approx(old["drain_s"]) and done["replaced"] == 1
    assert done["time_s"] >= start["time_s"]
    assert not any(a in ("scale_up", "scale_down") for a in actions)
    assert rec.size_timeline == [(0.0, 1), (start["time_s"], 2)]
    assert any("rolling restart" in n and "in place 3 s" in n and "replica-s" in n
               for n in rec.notes)
    # no request lost: every arrival answered, none dropped
    assert np.all(np.isfinite(rec.end_s)) and not np.any(rec.drop)
    assert set(np.unique(rec.replica)) <= {0, new["replica"]}
    _check_billing(rec, res.duration_s)


def _check_billing(rec: Any, duration_s: float) -> None:
    """The real run's cost counts each replica at its own threads (the simulator's rule:
    ``cost_per_replica_hour * threads / service.threads``, here 1 USD per thread-hour)."""
    from simscale.simulator.metrics import run_figures
    from simscale.simulator.scenario import load_scenario
    from simscale.validation.records import real_service_run

    sc = load_scenario({**SCENARIO, "strategies": [{"name": "static"}]})
    svc = sc.services[0].model_copy(update={"cost_per_replica_hour": 1.0})
    figs, ts, _ = run_figures(real_service_run(svc, rec, duration_s), 0.0)
    expected = sum(r["threads"] * (min(r["stop_s"], duration_s) - max(0.0, r["spawn_s"]))
                   for r in rec.replicas) / 3600.0
    assert figs["cost_usd"] == pytest.approx(expected, rel=1e-6)
    assert set(ts["threads"]) <= {1, 2} and int(ts["threads"].iloc[-1]) == 2
    assert figs["scale_events"] == 1  # the resize, as the simulator counts it


@pytest.mark.timeout(600)
def test_two_replicas_one_surge_at_a_time_with_a_scale_down_during_the_rollout(
        fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replicas at 1 thread resized to 2 threads, then scaled down to one while the
    rollout runs: the scale-down acts on the desired count (both sizes counted), takes an
    old-size replica first, at most one surge replica starts at a time, and the service ends
    with one replica of 2 threads; it never serves with fewer replicas than desired."""
    monkeypatch.setenv("FAKE_REPLICA_READY_S_2", "2.0")
    strategy = Scripted([Decision(replicas=2), Decision(replicas=2, threads=2),
                         Decision(replicas=1, threads=2)])
    arrivals = np.sort(np.random.default_rng(2).uniform(0.0, 5.0, 150))
    cluster = RealCluster([make_spec(strategy, arrivals, initial=2, routing="round_robin")],
                          600.0, warmup_batches=2, python=fake_python)
    res = run_until(cluster, rollout_done)
    rec = res.services["lr"]
    down = [e for e in rec.events if e["action"] == "scale_down"]
    assert len(down) == 1 and (down[0]["from_replicas"], down[0]["to_replicas"]) == (2, 1)
    resize = next(e for e in rec.events if e["action"] == "resize")
    assert resize["time_s"] < down[0]["time_s"]
    # the scale-down took an old-size replica when one was serving then
    by = {r["replica"]: r for r in rec.replicas}
    t_down = down[0]["time_s"]
    victims = [r for r in rec.replicas if r["drain_s"] == t_down or (
        r["stop_s"] == t_down and r["state"] == "removed")]
    old_then = [r for r in rec.replicas if r["threads"] == 1 and r["ready_s"] <= t_down
                and not r["drain_s"] < t_down]
    assert len(victims) == 1
    if old_then:
        assert victims[0]["threads"] == 1
    # one surge at a time: a surge replica (2 threads) spawned only after the previous was ready
    surges = sorted((r for r in rec.replicas if r["threads"] == 2), key=lambda r: r["spawn_s"])
    for a, b in zip(surges, surges[1:], strict=False):
        assert b["spawn_s"] >= a["ready_s"] or a["state"] == "removed"
    # each replaced replica drained after its replacement was ready
    for r in rec.replicas:
        if r["replaces"] >= 0:
            assert r["ready_s"] <= by[r["replaces"]]["drain_s"]
    live_at_end = [r for r in rec.replicas if r["drain_s"] != r["drain_s"]
                   and r["state"] not in ("removed", "crashed")]
    assert [r["threads"] for r in live_at_end] == [2]
    assert_never_below_desired(rec, 2, res.duration_s)
    assert all(desired <= 2 for _, desired, _, _ in strategy.seen)
    assert np.all(np.isfinite(rec.end_s)) and not np.any(rec.drop)
    assert next(e for e in rec.events if e["action"] == "resize_done")["to_threads"] == 2


@pytest.mark.timeout(600)
def test_unmeasured_thread_counts_resolve_as_in_the_simulator(
        fake_python: str) -> None:
    """With the profile's sizes given, a request for 3 threads takes the nearest measured
    count (2), as the simulator does, with a note; a device the profile lacks is a note and no
    resize."""
    sizes = tuple(SizeOption("cpu", t, 0.5, 0.5, 1.0, 0.1, 4, 1.0 * t, 0.1) for t in (1, 2))
    strategy = Scripted([Decision(replicas=1, device="cuda"), Decision(replicas=1, threads=3)])
    spec = make_spec(strategy, np.sort(np.random.default_rng(3).uniform(0.0, 2.0, 40)))
    spec = RealServiceSpec(**{**spec.__dict__, "size": sizes[0], "size_options": sizes})
    cluster = RealCluster([spec], 600.0, warmup_batches=2, python=fake_python)
    rec = run_until(cluster, rollout_done).services["lr"]
    assert {r["threads"] for r in rec.replicas if r["replaces"] >= 0} == {2}
    assert any("asked for 3 threads" in n and "so 2 was used" in n for n in rec.notes)
    assert any("device cuda" in n for n in rec.notes)
    assert [e["to_threads"] for e in rec.events if e["action"] == "resize"] == [2]


@pytest.mark.timeout(600)
def test_a_resize_back_before_the_surge_is_ready_supersedes_the_rollout(
        fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """1 -> 2 threads, then back to 1 while the 2-thread surge replica still starts: the
    first rollout is superseded, its surge replica removed (never served), and the original
    replica, of the size asked for again, keeps serving without a restart."""
    monkeypatch.setenv("FAKE_REPLICA_READY_S_2", "30.0")  # never ready within this test
    strategy = Scripted([Decision(replicas=1, threads=2), Decision(replicas=1, threads=1)])
    arrivals = np.sort(np.random.default_rng(4).uniform(0.0, 2.0, 40))
    cluster = RealCluster([make_spec(strategy, arrivals)], 600.0, warmup_batches=2,
                          python=fake_python)
    rec = run_until(cluster, lambda svc: len(svc.rollouts) == 2 and rollout_done(svc)
                    ).services["lr"]
    assert [(e["action"], e["to_threads"]) for e in rec.events] == [
        ("resize", 2), ("resize", 1), ("resize_done", 1)]
    surge = next(r for r in rec.replicas if r["threads"] == 2)
    assert surge["state"] == "removed" and surge["ready_s"] != surge["ready_s"]
    first = next(r for r in rec.replicas if r["replica"] == 0)
    assert first["drain_s"] != first["drain_s"]  # never drained: it has the size asked for
    assert set(np.unique(rec.replica)) == {0} and not np.any(rec.drop)
    assert any("superseded" in n for n in rec.notes)


# ----------------------------------------------------------------------------- slow test
SCENARIO: dict[str, Any] = {
    "name": "tiny_vertical",
    "duration_s": 14,
    "seed": 5,
    "services": [{
        "name": "lr",
        "model": "linear_regression",
        "threads": 1,
        "slo_ms": 50,
        "batching": {"max_batch_size": 4, "max_wait_ms": 2},
        "replicas": {"initial": 1, "min": 1, "max": 2},
        "workload": {"kind": "constant", "rate_rps": 20},
    }],
    "strategies": [{"name": "resize_strategy:GoTwoThreads"}],
}

STRATEGY_MODULE = '''\
from simscale.strategies.base import Decision


class GoTwoThreads:
    """One replica; from the second decision on, of two threads."""

    name = "go_two_threads"
    sync_period_s = 2.0

    def __init__(self):
        self.calls = 0

    def decide(self, obs):
        self.calls += 1
        return Decision(replicas=1, threads=2 if self.calls >= 2 else None)
'''


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_validate_with_a_resize_end_to_end(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole command with real linear-regression replicas and a custom strategy (module:
    Class in the YAML) that asks for 2 threads at its second decision: the real replica is
    replaced by one whose process runs with 2 threads, the simulation resizes in place, and
    the fidelity document and report say how the two differ."""
    from simscale.simulator.scenario import load_scenario
    from simscale.validation.command import validate

    helpers = validate_helpers()
    replica_children, synthetic_profile = helpers.replica_children, helpers.synthetic_profile
    (tmp_path / "resize_strategy.py").write_text(STRATEGY_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path),
                                                      os.environ.get("PYTHONPATH", "")]))
    doc = synthetic_profile()
    configs = doc["models"]["linear_regression"]["configs"]
    configs.append({**json.loads(json.dumps(configs[0])), "threads": 2})
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(doc), encoding="utf-8")
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")

    seen: dict[int, tuple[list[str], str]] = {}
    stop = threading.Event()

    def spy() -> None:
        # the replicas' own command lines and environments, read while they run
        while not stop.is_set():
            for p in replica_children():
                try:
                    if p.pid not in seen and "--serve" in p.cmdline():
                        seen[p.pid] = (p.cmdline(), p.environ().get("OMP_NUM_THREADS", ""))
                except psutil.Error:
                    continue
            stop.wait(0.05)

    thread = threading.Thread(target=spy, daemon=True)
    thread.start()
    try:
        out = validate(load_scenario(scenario), outdir=tmp_path / "out", profile=profile)
    finally:
        stop.set()
        thread.join(timeout=EVENT_DEADLINE_S)
    two = [(cmd, env) for cmd, env in seen.values() if cmd[cmd.index("--threads") + 1] == "2"]
    assert two and all(env == "2" for _, env in two), seen
    import pandas as pd

    reps = pd.read_csv(tmp_path / "out" / "real" / "replicas.csv")
    assert sorted(reps["threads"]) == [1, 2]
    old = reps[reps["threads"] == 1].iloc[0]
    new = reps[reps["threads"] == 2].iloc[0]
    assert new["replaces"] == old["replica"] and new["ready_s"] <= old["drain_s"]
    real = json.loads((tmp_path / "out" / "real" / "summary.json").read_text())["runs"][0]
    sim = json.loads((tmp_path / "out" / "simulated" / "summary.json").read_text())["runs"][0]
    assert real["arrivals"] == real["completed"] + real["dropped"] + real["in_flight_at_end"]
    assert real["dropped"] == 0
    assert any(e["action"] == "resize_done" for e in real["events"])
    assert any(e["action"] == "resize" and e["threads"] == 2 for e in sim["events"])
    resizes = out["services"]["lr"]["diagnosis"]["resizes"]
    assert resizes["real"][0]["to_threads"] == 2 and resizes["simulated"][0]["to_threads"] == 2
    assert math.isfinite(resizes["real"][0]["done_after_s"])
    assert any("rolling restart" in n for n in out["notes"])
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "replicas by size" in html and "rolling restart" in html
    assert not replica_children()


def test_fake_replica_program_is_valid_python() -> None:
    """The fake replica compiles (a syntax error would show as a crash in the fast tests)."""
    compile(textwrap.dedent(FAKE_REPLICA), "fake_replica.py", "exec")
