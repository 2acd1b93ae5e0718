"""A command stopped with SIGTERM (``kill``, a container stopping, a CI timeout) cleans up as
after Ctrl-C: temporary files removed, child processes stopped, one line ("terminated") and
exit status 143. Python's default SIGTERM ends the process with no ``finally`` run: a stopped
``simscale profile`` left its model files in the temporary folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

#: generous: the child only has to start (imports, a first chunk of arrivals drawn)
DEADLINE_S = 180.0


def _wait_for(pred, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"the command ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {DEADLINE_S:.0f} s")
        time.sleep(0.05)


def _terminate_when(pred, proc: subprocess.Popen, what: str) -> tuple[int, str]:
    """SIGTERM to ``proc`` once ``pred()`` holds; its exit status and output (it is killed
    whatever happens)."""
    try:
        _wait_for(pred, proc, what)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=DEADLINE_S)
        return proc.returncode, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_during_a_simulation_removes_its_spool(tmp_path: Path) -> None:
    """Two strategies on 40 M requests: the inputs are spooled to files first; SIGTERM while
    they are written leaves no file behind."""
    scenario = tmp_path / "mmc.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "mmc", "duration_s": 50_000, "seed": 1,
        "services": [{"name": "s", "model": "m", "slo_ms": 100,
                      "service_time": {"dist": "exponential", "mean_s": 0.01},
                      "cold_start_s": 0,
                      "replicas": {"initial": 10, "min": 10, "max": 10},
                      "workload": {"kind": "constant", "rate_rps": 800}}],
        "strategies": [{"name": "static"}, {"name": "threshold"}]}), encoding="utf-8")
    spool = tmp_path / "spool"
    spool.mkdir()
    env = dict(os.environ, SIMSCALE_SPOOL_DIR=str(spool))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simscale.cli", "simulate", str(scenario), "-o",
         str(tmp_path / "out"), "--force", "--no-report"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rc, out = _terminate_when(lambda: any(p.is_file() for p in spool.rglob("*")), proc,
                              "spool file")
    assert rc == 143, out
    assert out.strip().endswith("simscale: terminated"), out
    assert list(spool.iterdir()) == []
    assert not (tmp_path / "out").exists()  # (nothing half written)


@pytest.mark.slow
def test_sigterm_during_profiling_stops_the_replicas_and_removes_the_models(
        tmp_path: Path) -> None:
    pytest.importorskip("torch")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simscale.cli", "profile", "--quick", "--models", "xgboost",
         "-o", str(tmp_path / "p.json")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    replicas: list[psutil.Process] = []

    def serving() -> bool:
        replicas[:] = [c for c in psutil.Process(proc.pid).children(recursive=True)
                       if "simscale.profiler.replica" in " ".join(c.cmdline())]
        return bool(replicas)

    rc, out = _terminate_when(serving, proc, "serving replica")
    assert rc == 143, out
    _, alive = psutil.wait_procs(replicas, timeout=DEADLINE_S)
    assert not alive
    assert not list(tmp_path.glob("simscale-profile-*"))
    assert not (tmp_path / "p.json").exists()
