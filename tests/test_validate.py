"""``simscale validate``: a real serving cluster on this machine against the simulation.

Fast tests check the fidelity document and the conversion of a real run into the simulator's
result format on synthetic data. The ``slow`` tests start real replica processes (the tabular
model only, so they stay short): a whole validation, Ctrl-C (SIGINT) on the command, and a
replica killed mid-run. Each checks with psutil that no child process survives.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

from simscale.errors import UserError
from simscale.profiler.schema import Profile
from simscale.simulator.scenario import load_scenario
from simscale.validation.command import prepare_scenario
from simscale.validation.fidelity import FIGURES, calibrate, fidelity, profile_adjusted
from simscale.validation.records import summarize_real

TINY = {
    "name": "tiny_tabular",
    "duration_s": 12,
    "seed": 3,
    "services": [{
        "name": "lr",
        "model": "linear_regression",
        "threads": 1,
        "slo_ms": 50,
        "batching": {"max_batch_size": 4, "max_wait_ms": 2},
        "replicas": {"initial": 1, "min": 1, "max": 2},
        "workload": {"kind": "step", "steps": [{"at_s": 0, "rate_rps": 15},
                                                {"at_s": 6, "rate_rps": 40}]},
    }],
    "strategies": [{"name": "static"}],
}


def synthetic_profile(models: tuple[str, ...] = ("linear_regression",)) -> dict[str, Any]:
    """A valid profile document with made-up (plausible) numbers: no measuring needed."""
    from simscale.profiler.fingerprint import machine_fingerprint

    def model(name: str) -> dict[str, Any]:
        samples = [0.05, 0.06, 0.055, 0.07, 0.052]
        return {
            "name": name, "description": name, "framework": "test", "n_parameters": 11,
            "model_size_mb": 0.01,
            "cold_start": [{"samples_s": [2.0, 2.5], "mean_s": 2.25, "p50_s": 2.25,
                            "p95_s": 2.5}],
            "configs": [{
                "device": "cpu", "threads": 1,
                "batches": [{"batch_size": 1, "samples_ms": samples, "mean_ms": 0.057,
                             "std_ms": 0.007, "p50_ms": 0.055, "p95_ms": 0.07,
                             "p99_ms": 0.07, "items_per_s": 18000.0}],
                "fit": {"alpha_ms": 0.05, "beta_ms": 0.005,
                        "noise": {"dist": "lognorm", "params": [0.2, 0.0, 1.0]},
                        "r2": 1.0, "max_rel_error": 0.0},
            }],
        }

    return {"schema": "simscale.profile/1",
            "created_at": dt.datetime.now(dt.UTC).isoformat(), "quick": True,
            "machine": machine_fingerprint().model_dump(mode="json"),
            "models": {m: model(m) for m in models}}


@pytest.fixture()
def tiny_files(tmp_path: Path) -> tuple[Path, Path]:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(synthetic_profile()), encoding="utf-8")
    return scenario, profile


def replica_children(proc: psutil.Process | None = None) -> list[psutil.Process]:
    """Live replica processes (``simscale.profiler.replica``) below ``proc`` (default: us)."""
    proc = proc or psutil.Process()
    out = []
    for child in proc.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "simscale.profiler.replica" in " ".join(
                    child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


#: Seconds a process test waits for an event (a replica serving, a process gone) before it
#: fails: generous, so that a loaded machine only makes the test slower, never failing.
EVENT_DEADLINE_S = 180.0


def serving_logged(log: Path) -> bool:
    """Whether ``log`` (a validate command's output) holds the real cluster's ``serving`` line:
    the initial replicas are ready, have answered their warm-up batches, and the load generator
    starts. (Only the whole line counts: the profiler's progress also says "serving ...".)"""
    text = log.read_text(errors="replace") if log.exists() else ""
    return re.search(r"^\d\d:\d\d:\d\d serving\s*$", text, re.MULTILINE) is not None


def wait_until_serving(proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> list[int]:
    """Wait (polling, up to ``deadline_s`` seconds) until the command ``proc`` logs that its real
    cluster serves; return the pids of its replicas then. Fails if it ends first."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + deadline_s
    while not serving_logged(log):
        assert proc.poll() is None, f"the command ended before serving: {log.read_text()}"
        assert time.monotonic() < deadline, f"not serving after {deadline_s:.0f} s: " \
            f"{log.read_text(errors='replace')}"
        time.sleep(0.1)
    pids = [p.pid for p in replica_children(parent)]
    assert pids, "serving, but no replica process: " + log.read_text(errors="replace")
    return pids


def wait_gone(pids: list[int], deadline_s: float = EVENT_DEADLINE_S) -> list[int]:
    """Wait (polling, up to ``deadline_s`` seconds) until none of ``pids`` runs; return those
    still running then."""
    deadline = time.monotonic() + deadline_s
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            continue
    return out


# ----------------------------------------------------------------------------- fast tests
def test_fidelity_document_structure() -> None:
    def run(p50: float, p95: float, reps: float) -> dict[str, Any]:
        return {"service": "s", "label": "static", "replication": 0,
                "latency_ms": {"p50": p50, "p95": p95, "p99": 2 * p95},
                "slo_attainment": 0.9, "completed": 100, "dropped": 0, "mean_replicas": reps,
                "scale_events": 2}

    doc = fidelity({"runs": [run(100.0, 200.0, 1.5)]}, {"runs": [run(105.0, 150.0, 1.6)]},
                   label="static")
    s = doc["services"]["s"]
    assert set(s) >= {"real", "simulated", "error", "abs_error", "within_target"}
    assert set(s["real"]) == set(FIGURES)
    assert s["error"]["latency_ms.p50"] == pytest.approx(0.05)
    assert s["error"]["latency_ms.p95"] == pytest.approx(-0.25)
    assert math.isnan(s["error"]["dropped"])  # real 0: no relative error
    assert s["abs_error"]["mean_replicas"] == pytest.approx(0.1)
    assert s["within_target"] == {"latency_ms.p50": True, "latency_ms.p95": False,
                                  "mean_replicas": True}


def test_prepare_scenario_picks_strategy_and_cuts(tmp_path: Path) -> None:
    data = {**TINY, "warmup_s": 5, "strategies": [{"name": "static"},
                                                   {"name": "static", "label": "two",
                                                    "replicas": 2}]}
    sc = load_scenario(data)
    cut, spec = prepare_scenario(sc, "two", 4.0)
    assert spec.display_label == "two" and [s.display_label for s in cut.strategies] == ["two"]
    assert cut.duration_s == 4.0 and cut.warmup_s == 0.0
    assert all(s.service_time == "profile" and s.cold_start_s == "profile"
               for s in cut.services)
    _, first = prepare_scenario(sc, None, None)
    assert first.display_label == "static"
    with pytest.raises(UserError, match="strategy 'nope' is not in the scenario"):
        prepare_scenario(sc, "nope", None)


def test_prepare_scenario_simulates_this_machine_as_one_colocated_host() -> None:
    """With co-location, the validated scenario's cluster is this machine as one host on which
    every replica the real run may start is placed (the real run never waits for room), with
    co-location on; without, no cluster (as before). The scenario's own cluster is replaced
    either way."""
    data = {**TINY, "cluster": {"cores": 1, "memory_mb": 10}}
    sc = load_scenario(data)
    on, _ = prepare_scenario(sc, None, None, colocation=True)
    off, _ = prepare_scenario(sc, None, None)
    assert off.cluster is None
    c = on.cluster
    assert c.nodes == 1 and c.colocated
    assert c.cores_per_node >= sum(s.threads * s.replicas.max for s in on.services)
    assert c.cores_per_node >= (os.cpu_count() or 1)


def test_print_fidelity_shows_the_run_without_colocation(capsys) -> None:
    from rich.console import Console

    from simscale.validation.report import print_fidelity

    def run(p50: float) -> dict[str, Any]:
        return {"service": "s", "label": "static", "replication": 0,
                "latency_ms": {"p50": p50, "p95": 2 * p50, "p99": 3 * p50},
                "slo_attainment": 0.9, "completed": 100, "dropped": 0, "mean_replicas": 1.0,
                "scale_events": 2}

    doc = fidelity({"runs": [run(100.0)]}, {"runs": [run(104.0)]}, label="static")
    off = fidelity({"runs": [run(100.0)]}, {"runs": [run(80.0)]}, label="static")
    svc = doc["services"]["s"]
    svc["uncalibrated"] = {"simulated": svc["simulated"], "error": svc["error"]}
    svc["colocation_off"] = {"simulated": off["services"]["s"]["simulated"],
                             "error": off["services"]["s"]["error"]}
    doc.update({"scenario": "x", "label": "static", "duration_s": 10, "cores": 2,
                "load_average": [0.1, 0.1, 0.1], "colocation": {"nodes": 1}})
    print_fidelity(doc, Console(width=200, force_terminal=False))
    out = capsys.readouterr().out
    assert "no co-loc." in out and "-20.0%" in out and "+4.0%" in out


def test_the_fidelity_table_never_cuts_a_number(capsys) -> None:
    """Output that is not a terminal (a log file) gets the CLI's 120 columns, where every cell
    is whole; a narrower terminal folds cells onto a second line rather than cutting them
    short ("1196…" said nothing of a 12-second p95)."""
    from simscale.console import PIPE_WIDTH, make_console
    from simscale.validation.report import print_fidelity

    def run(p50: float, p95: float) -> dict[str, Any]:
        return {"service": "resnet50", "label": "static", "replication": 0,
                "latency_ms": {"p50": p50, "p95": p95, "p99": p95},
                "slo_attainment": 0.597, "completed": 129, "dropped": 47,
                "mean_replicas": 2.0, "scale_events": 0}

    doc = fidelity({"runs": [run(55.7, 11960.5)]}, {"runs": [run(53.1, 143.2)]},
                   label="static")
    svc = doc["services"]["resnet50"]
    for other in ("uncalibrated", "colocation_off"):
        svc[other] = {"simulated": svc["simulated"], "error": svc["error"],
                      "abs_error": svc["abs_error"]}
    doc.update({"scenario": "validate_colocated", "label": "static", "duration_s": 60,
                "cores": 2, "load_average": [2.31, 1.46, 1.0], "colocation": {"nodes": 1}})
    console = make_console()  # (pytest's captured stdout is not a terminal)
    assert console.width == PIPE_WIDTH
    doc["calibration"] = {"resnet50": {"factor": 2.0, "unclamped_factor": 2.93,
                                       "warmup_predict_ms_p50": 0.93,
                                       "profile_predict_ms_p50": 0.61}}
    print_fidelity(doc, console)
    wide = capsys.readouterr().out
    assert "11960.5" in wide and "-98.8%" in wide and "resnet50" in wide and "…" not in wide
    # a calibration at its bound says what the warm-up asked for
    assert "calibration x2.000, kept within 0.5..2: the warm-up asked x2.93" in wide
    from rich.console import Console

    print_fidelity(doc, Console(width=80, force_terminal=False))
    assert "…" not in capsys.readouterr().out


def test_profile_adjusted_scales_the_fit_and_replaces_the_overhead() -> None:
    prof = Profile.model_validate(synthetic_profile())
    sc = load_scenario(TINY)
    before = prof.service_model("linear_regression", "cpu", 1, serving=False)
    shifted = profile_adjusted(prof, sc, {"lr": 0.5})
    after = shifted.service_model("linear_regression", "cpu", 1)
    assert float(after.median_s(4)) == pytest.approx(float(before.median_s(4)) + 0.5e-3)
    # the overhead is replaced, not added: adjusting twice gives the same profile
    again = profile_adjusted(shifted, sc, {"lr": 0.5}).service_model("linear_regression",
                                                                    "cpu", 1)
    assert float(again.median_s(4)) == pytest.approx(float(after.median_s(4)))
    scaled = profile_adjusted(prof, sc, {"lr": 0.0}, {"lr": 2.0})
    two = scaled.service_model("linear_regression", "cpu", 1)
    assert float(two.median_s(4)) == pytest.approx(2 * float(before.median_s(4)))
    assert float(two.mean_s(4)) == pytest.approx(2 * float(before.mean_s(4)))


def test_calibration_matches_the_warmup_predict_time() -> None:
    """The factor on the fit makes the simulated predict of one item after the reference idle
    gap equal the warm-up's; the serving overhead's predict part is not scaled; a missing
    warm-up leaves the profile; an absurd ratio is clamped."""
    doc = synthetic_profile()
    sc = load_scenario(TINY)
    bare = Profile.model_validate(doc)
    # no serving measurement: the simulated predict is the fit's median of one item (0.055 ms)
    cal = calibrate(bare, sc, {"lr": {"service_ms_median_batch1": 0.11}})["lr"]
    assert cal["factor"] == pytest.approx(0.11 / 0.055)
    assert cal["profile_predict_ms_p50"] == pytest.approx(0.055)
    assert calibrate(bare, sc, {})["lr"]["factor"] == 1.0
    clamped = calibrate(bare, sc, {"lr": {"service_ms_median_batch1": 5.0}})["lr"]
    assert clamped["factor"] == 2.0 and clamped["unclamped_factor"] == pytest.approx(5.0 / 0.055)
    # serving measured: back to back the replica predicted in 0.05 ms, after 50 ms idle in 0.4
    doc["models"]["linear_regression"]["configs"][0]["serving"] = {
        "batches": 20, "gap_ms": 50.0, "roundtrip_ms_p50": 0.9, "roundtrip_ms_p95": 1.0,
        "predict_ms_p50": 0.4, "overhead_ms": 0.85, "backtoback_predict_ms_p50": 0.05,
        "idle_overhead_ms": [(0.0, 0.2), (50.0, 0.85)]}
    prof = Profile.model_validate(doc)
    cal = calibrate(prof, sc, {"lr": {"service_ms_median_batch1": 0.35 + 0.055 * 1.2}})["lr"]
    assert cal["factor"] == pytest.approx(1.2)
    assert cal["profile_predict_ms_p50"] == pytest.approx(0.055 + 0.35)
    adjusted = profile_adjusted(prof, sc, None, {"lr": cal["factor"]})
    before = prof.service_model("linear_regression", "cpu", 1)
    after = adjusted.service_model("linear_regression", "cpu", 1)
    # the fit is scaled, the overhead curve is kept
    assert after.idle_overhead_s == before.idle_overhead_s
    for b in (1, 4):
        assert float(after.median_s(b)) == pytest.approx(
            1.2 * (float(before.median_s(b)) - 0.85e-3) + 0.85e-3)


def test_real_run_becomes_simulator_results() -> None:
    """A synthetic real run goes through the simulator's own run_figures: accounting holds."""
    from simscale.validation.records import RealRunResult, RealServiceRecord

    sc, spec = prepare_scenario(load_scenario(TINY), None, None)
    arr = np.array([0.5, 1.0, 2.0, 3.0, 11.9])
    start = np.array([0.5, 1.0, np.nan, 3.0, 11.9])
    end = np.array([0.6, 1.2, 2.5, 3.1, 12.3])  # #2 dropped (timeout at 2.5), #4 ends late
    drop = np.array([0, 0, 2, 0, 0], dtype=np.int8)
    rec = RealServiceRecord(
        name="lr", threads=1, arrival_s=arr, start_s=start, end_s=end, drop=drop,
        batch_size=np.array([1, 1, 0, 1, 1]), replica=np.array([0, 0, -1, 0, 0]),
        enqueue_s=arr, events=[], decisions=[],
        replicas=[{"replica": 0, "pid": 1, "state": "stopped", "spawn_s": 0.0, "ready_s": 0.0,
                   "drain_s": math.nan, "stop_s": 12.5, "crashed": False, "exit_code": 0,
                   "cold_start_s": math.nan, "initial_cold_start_s": 2.0}],
        batches=None,  # type: ignore[arg-type]
        overhead={})
    real = RealRunResult(12.0, {"lr": rec}, {}, {}, 13.0, (0.0, 0.0, 0.0), [])
    summary, ts, req = summarize_real(sc, spec, real)
    run = summary["runs"][0]
    assert run["arrivals"] == 5 and run["completed"] == 3 and run["dropped"] == 1
    assert run["in_flight_at_end"] == 1
    assert run["arrivals"] == run["completed"] + run["dropped"] + run["in_flight_at_end"]
    assert run["dropped_by_reason"]["timeout"] == 1
    assert run["mean_replicas"] == pytest.approx(1.0)
    assert run["latency_ms"]["p50"] == pytest.approx(100.0)
    assert len(ts) == 12 and {"replicas_ready", "latency_p95_ms"} <= set(ts.columns)
    assert len(req) == 5 and "enqueue_s" in req.columns


# ----------------------------------------------------------------------------- slow tests
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_validate_tiny_tabular_end_to_end(tmp_path: Path) -> None:
    """The whole command on a tiny tabular scenario: quick profile (when the profiler offers
    run_profile), real run, simulation, fidelity.json, report."""
    from simscale.validation.command import validate_command

    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    profile = None
    try:
        from simscale.profiler import run_profile  # noqa: F401
    except ImportError:  # the profiler is not there yet: use a synthetic profile
        profile = tmp_path / "profile.json"
        profile.write_text(json.dumps(synthetic_profile()), encoding="utf-8")
    out = tmp_path / "out"
    doc = validate_command(scenario, strategy=None, duration_s=None, outdir=out,
                           profile=profile)
    on_disk = json.loads((out / "fidelity.json").read_text())
    assert on_disk["services"].keys() == {"lr"}
    s = on_disk["services"]["lr"]
    for part in ("real", "simulated", "error"):
        assert set(s[part]) == set(FIGURES)
    real, sim = s["real"], s["simulated"]
    arrivals = doc["services"]["lr"]["diagnosis"]
    assert arrivals["arrivals_match"] is True
    # sane numbers: every request served (the load is light; none dropped, every one completed
    # or still in flight at the end: how many are, depends on this machine's load), latencies
    # a few ms
    real_run = json.loads((out / "real" / "summary.json").read_text())["runs"][0]
    sim_run = json.loads((out / "simulated" / "summary.json").read_text())["runs"][0]
    assert real_run["arrivals"] == sim_run["arrivals"]
    assert real_run["arrivals"] == real_run["completed"] + real_run["in_flight_at_end"]
    assert real["completed"] == real_run["completed"] and real["dropped"] == 0
    assert real["completed"] > 200 and sim["completed"] > 200
    assert 0.0 < real["latency_ms.p50"] < 200.0
    assert real["latency_ms.p50"] <= real["latency_ms.p95"] <= real["latency_ms.p99"]
    assert real["mean_replicas"] == pytest.approx(1.0, abs=0.05)
    assert sim["mean_replicas"] == pytest.approx(1.0, abs=0.05)
    assert 0.0 <= real["slo_attainment"] <= 1.0
    assert on_disk["load_average"] and len(on_disk["load_average"]) == 3
    assert on_disk["overhead"]["lr"]["batches"] > 0
    assert on_disk["representative"] in (True, False)
    assert on_disk["cpu_cores_busy"]["ours_cores"] >= 0.0
    assert set(s["uncalibrated"]["simulated"]) == set(FIGURES)
    cal = on_disk["calibration"]["lr"]
    assert 0.5 <= cal["factor"] <= 2.0 and cal["warmup_predict_ms_p50"] > 0
    d = s["diagnosis"]
    # the profile was measured with a serving overhead, which the simulation used
    assert d["overhead_ms_profile"] > 0.0
    assert d["batch_ms_simulated_mean"] > d["service_ms_profile_mean"]
    assert s["diagnosis"]["a_posteriori"]["simulated"]["completed"] > 0
    for path in ("real/summary.json", "real/requests.parquet", "real/timeseries.parquet",
                 "simulated/summary.json", "simulated/timeseries.parquet", "report.html"):
        assert (out / path).is_file(), path
    import pandas as pd

    # mean replicas are judged by their absolute difference, and the report says so
    assert "(absolute)" in (out / "report.html").read_text(encoding="utf-8")
    ts = pd.read_parquet(out / "real" / "timeseries.parquet")
    sim_ts = pd.read_parquet(out / "simulated" / "timeseries.parquet")
    assert list(ts.columns) == list(sim_ts.columns)
    assert len(ts) == TINY["duration_s"]
    assert not replica_children()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sigint_leaves_no_replica_behind(tiny_files: tuple[Path, Path], tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) on ``simscale validate`` while it serves: exit status 130, every
    replica gone. (With a ready profile: measuring one is the quick profile's own test.)"""
    scenario, profile = tiny_files
    log_path = tmp_path / "log.txt"
    log = log_path.open("wb")
    cmd = [sys.executable, "-m", "simscale.cli", "validate", str(scenario), "--profile",
           str(profile), "--duration-s", "600", "-o", str(tmp_path / "out")]
    # Ctrl-C as a terminal delivers it: the command starts with SIGINT's default disposition
    # even when this suite runs in the background (nohup or `&` makes its children ignore it)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        pids = wait_until_serving(proc, log_path, EVENT_DEADLINE_S)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=EVENT_DEADLINE_S)
        assert rc == 130, log_path.read_text(errors="replace")
        assert not wait_gone(pids)
        assert "interrupted" in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=EVENT_DEADLINE_S)
        log.close()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_killed_replica_is_reported_not_hung(tiny_files: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    """A replica killed while it serves ends the validation with a clear error at once: it is
    detected, not waited out (the run would last ``duration_s``, far longer than the wait)."""
    from simscale.validation.command import validate
    from simscale.validation.replica import ReplicaCrashError, tracked_pids

    duration_s = 600.0
    scenario, profile = tiny_files
    victims: list[int] = []
    killed_at: list[float] = []
    serving = threading.Event()

    def on_progress(stage: str) -> None:
        if stage == "serving":
            serving.set()

    def killer() -> None:
        # the event: the cluster serves (its replicas answered their warm-up batches)
        if not serving.wait(EVENT_DEADLINE_S):
            return
        ready = [p for p in replica_children() if "--serve" in p.cmdline()]
        victims.append(ready[0].pid)
        killed_at.append(time.monotonic())
        os.kill(ready[0].pid, signal.SIGKILL)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    with pytest.raises(ReplicaCrashError, match="died .*SIGKILL") as exc:
        validate(load_scenario(scenario), duration_s=duration_s, outdir=tmp_path / "out",
                 profile=profile, progress=on_progress)
    raised_at = time.monotonic()
    assert victims and str(victims[0]) in str(exc.value)
    assert "while ready" in str(exc.value)
    # detected, not waited out: the crash time it names is well inside the run, and the error
    # came long before the rest of the run could have been served
    crash_t = float(re.search(r"at t=([0-9.]+) s", str(exc.value)).group(1))
    assert crash_t < duration_s / 2 and raised_at - killed_at[0] < duration_s / 2
    t.join(timeout=EVENT_DEADLINE_S)
    assert not tracked_pids()
    assert not replica_children()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_crash_with_continue_is_recorded_and_replaced(tiny_files: tuple[Path, Path]) -> None:
    """With ``on_crash='continue'`` the crash is an event, its requests are dropped as
    ``crash``, and the strategy (static) starts a replacement at its next decision, which
    serves every request that waited for it."""
    from simscale.strategies import make_strategy
    from simscale.strategies.base import SizeOption
    from simscale.validation.cluster import RealCluster
    from simscale.validation.records import DROP_REASONS, RealServiceSpec
    from simscale.validation.replica import tracked_pids

    # long enough that the replacement's cold start (seconds; more on a busy machine) ends well
    # inside the run: the only time bound of this test
    duration_s = 30.0
    strat = make_strategy("static", {"sync_period_s": 2.0})
    size = SizeOption("cpu", 1, 0.05, 0.005, 1.0, 0.04, 4, 0.0, 2.0)
    from simscale.strategies.base import ServiceContext

    strat.setup(ServiceContext("lr", 50.0, 1, 2, duration_s, 1, (size,), size))
    rng = np.random.default_rng(0)
    spec = RealServiceSpec(
        name="lr", model="linear_regression", device="cpu", threads=1, slo_ms=50.0,
        max_batch_size=4, max_wait_ms=2.0, queue_capacity=None, queue_timeout_ms=None,
        routing="shared_queue", initial_replicas=1, min_replicas=1, max_replicas=2,
        cost_per_replica_hour=0.0, arrivals_s=np.sort(rng.uniform(0, duration_s, 600)),
        strategy=strat, context=None, size=size)
    cluster = RealCluster([spec], duration_s, on_crash="continue")

    def killer() -> None:
        # the event: the cluster has served for 2 s of its own time
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while time.monotonic() < deadline:
            if cluster.started and cluster.now() > 2.0:
                os.kill(cluster.services[0].replicas[0].pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    threading.Thread(target=killer, daemon=True).start()
    res = cluster.run()
    rec = res.services["lr"]
    actions = [e["action"] for e in rec.events]
    assert "crash" in actions and "scale_up" in actions
    assert actions.index("crash") < actions.index("scale_up")
    assert res.crashes and "SIGKILL" in res.crashes[0]
    crash_t = next(e["time_s"] for e in rec.events if e["action"] == "crash")
    crashed = [r for r in rec.replicas if r["crashed"]]
    new = [r for r in rec.replicas if r["spawn_s"] >= crash_t]
    assert len(crashed) == 1 and len(new) == 1
    ready_s = new[0]["ready_s"]
    # ready 10 s before the end: ample to serve the backlog (milliseconds of work)
    assert ready_s < duration_s - 10.0, f"the replacement was ready too late: {new[0]}"
    # at most the batch in the crashed replica is lost; the requests that came meanwhile waited
    # in the shared queue and the replacement served them
    lost = rec.drop == DROP_REASONS.index("crash")
    assert lost.sum() <= 4 and np.all(rec.arrival_s[lost] <= crash_t)
    waited = (rec.arrival_s > crash_t) & (rec.arrival_s < ready_s)
    served = (rec.drop == 0) & np.isfinite(rec.end_s)
    assert waited.any() and np.all(served[waited])
    assert np.all(rec.replica[waited] == new[0]["replica"])
    assert not tracked_pids() and not replica_children()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_killed_command_leaves_no_replica_behind(tiny_files: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    """Even a SIGKILL of the command (no handler can run) leaves no replica: each replica
    reads EOF on its stdin when its parent is gone, and exits."""
    scenario, profile = tiny_files
    cmd = [sys.executable, "-m", "simscale.cli", "validate", str(scenario), "--profile",
           str(profile), "--duration-s", "600", "-o", str(tmp_path / "out")]
    log_path = tmp_path / "log.txt"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        pids = wait_until_serving(proc, log_path, EVENT_DEADLINE_S)  # loaded and serving
        proc.kill()
        proc.wait(timeout=EVENT_DEADLINE_S)
        assert not wait_gone(pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=EVENT_DEADLINE_S)

