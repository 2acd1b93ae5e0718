"""``validate`` warns about a busy machine from what *other* processes keep busy just before
the real run, not from the load average, which counts the quick profile it has just run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from simscale.validation import cluster


def test_own_work_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine was busy 1.5 core-seconds over 1 s, 1.2 of them ours: others kept 0.3."""
    machine = iter([(100.0, 0.0), (101.5, 0.0)])
    own = iter([10.0, 11.2])
    clock = iter([50.0, 51.0])
    monkeypatch.setattr(cluster, "machine_cpu_s", lambda: next(machine))
    monkeypatch.setattr(cluster, "own_cpu_s", lambda: next(own))
    monkeypatch.setattr(cluster.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(cluster.time, "sleep", lambda s: None)
    assert cluster.others_busy_cores(1.0) == pytest.approx(0.3)


def test_a_spinning_process_is_seen() -> None:
    """A process spinning on a core beside us counts as another (on a machine of any load: it
    gets at least half a core in the window whatever else runs, and never more than all)."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        cluster.others_busy_cores(0.5)  # (the spinner is under way)
        others = cluster.others_busy_cores(2.0)
    finally:
        spin.kill()
        spin.wait()
    assert 0.4 <= others <= (os.cpu_count() or 1) + 0.1
