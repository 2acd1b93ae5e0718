"""Fast start (issue #13): the CLI imports heavy libraries only where they are used.

Each case runs in a fresh interpreter and checks WHICH modules got imported, never how long it
took (the machine is shared and noisy; timings live in ``benchmarks/start_time.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

#: Never needed to import the CLI, print help or list scenarios.
HEAVY = ("scipy", "statsmodels", "pandas", "plotly", "numba", "pyarrow", "torch", "torchvision",
         "ray", "sklearn", "xgboost")

#: Never needed by a small simulation (one replication, an explicit service time, ``static``),
#: report included: no confidence intervals to compute, no forecaster, no profiling.
NOT_IN_SIMULATE = ("scipy.stats", "statsmodels", "torch", "torchvision", "ray", "sklearn",
                   "xgboost", "plotly", "_plotly_utils", "pyarrow.dataset")

#: Run ``simscale ARGV`` in this interpreter (stdout discarded) and print, as JSON, every module
#: that is loaded afterwards.
PROBE = """
import contextlib, io, json, sys
argv = json.loads(sys.argv[1])
if argv is not None:
    from simscale.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
        else:
            code = 0
else:
    import simscale.cli  # noqa: F401
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

def loaded_modules(argv: list[str] | None, cwd: Path) -> set[str]:
    """The modules loaded after ``simscale ARGV`` (``None``: after ``import simscale.cli``)
    in a fresh interpreter run in ``cwd`` (outside the checkout: the installed package)."""
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["code"] in (0, None), (argv, proc.stderr)
    return set(out["modules"])


def imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` (a package or a subpackage) of which some module is loaded."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize("argv", [None, ["--help"], ["simulate", "--help"], ["scenarios", "list"]],
                         ids=["import", "help", "simulate-help", "scenarios-list"])
def test_cli_start_imports_no_heavy_library(argv: list[str] | None, tmp_path: Path) -> None:
    assert imported(loaded_modules(argv, cwd=tmp_path), HEAVY) == []


def test_entry_point_help_imports_no_heavy_library(tmp_path: Path) -> None:
    """``python -m simscale.cli --help``, as a user runs it, under ``-X importtime``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "simscale.cli", "--help"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "simulate" in proc.stdout
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    assert "click" in modules  # the probe reads what it should
    assert imported(modules, HEAVY) == []


@pytest.mark.parametrize("report", [False, True], ids=["no-report", "report"])
def test_small_simulate_imports_only_what_it_uses(tmp_path: Path, report: bool,
                                                  tiny_scenario) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(tiny_scenario()), encoding="utf-8")
    # (the bounds on the optimum, on by default, solve an LP and size the hindsight schedule
    # with the queueing models: highspy and scipy.special are used there; see below)
    argv = ["simulate", str(scenario), "-o", str(tmp_path / "out"), "--no-bounds"]
    if not report:
        argv.append("--no-report")
    modules = loaded_modules(argv, cwd=tmp_path)
    assert (tmp_path / "out" / "summary.json").is_file()
    assert (tmp_path / "out" / "report.html").is_file() == report
    assert imported(modules, NOT_IN_SIMULATE) == []  # (the report embeds plotly.js as a file)
    assert imported(modules, ("highspy",)) == []


def test_simulate_with_bounds_imports_scipy_only_for_them(tmp_path: Path, tiny_scenario) -> None:
    """The default simulate computes the bounds (HiGHS through highspy for the LP; the queueing
    models' gamma quantiles from scipy.special, closed forms for an exponential service time
    such as this one's); the heavy libraries it never needs stay out: scipy entirely here
    (importing scipy.optimize took longer than a small simulation, scipy.special 0.2 s)."""
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(yaml.safe_dump(tiny_scenario()), encoding="utf-8")
    modules = loaded_modules(["simulate", str(scenario), "-o", str(tmp_path / "out"),
                              "--no-report"], cwd=tmp_path)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["bounds"][0]["lower_bound_usd"] is not None
    assert imported(modules, (*NOT_IN_SIMULATE, "scipy")) == []


def test_many_small_runs_load_the_compiled_loops_once(tmp_path: Path, tiny_scenario) -> None:
    """Whether loading numba pays is decided for the command, not per plane: 20,000 requests
    in one run stay on the Python loops; the same service with the bounds' hindsight runs
    (12 more exact runs) has enough requests in all, and every plane then runs compiled."""
    from simscale.simulator.runner import run_scenario
    from simscale.simulator.scenario import Scenario

    data = tiny_scenario(duration_s=100, svc_workload={"kind": "constant", "rate_rps": 200})
    probe = """
import json, sys
from simscale.simulator.runner import run_scenario
from simscale.simulator.scenario import Scenario
sc = Scenario.model_validate(json.loads(sys.argv[1]))
res = run_scenario(sc, bounds=sys.argv[2] == "1")
print(json.dumps({"loops": res.summary["request_plane"]["loops"],
                  "numba": "numba" in sys.modules}))
"""
    out = {}
    for bounds in ("0", "1"):
        proc = subprocess.run([sys.executable, "-c", probe, json.dumps(data), bounds],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        out[bounds] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["0"] == {"loops": "python", "numba": False}
    assert out["1"] == {"loops": "compiled", "numba": True}
    # and the results are the same whichever loops ran (same seed, same numbers)
    sc = Scenario.model_validate(data)
    a = run_scenario(sc).summary["runs"][0]
    b = run_scenario(sc, bounds=True).summary["runs"][0]
    assert {k: a[k] for k in ("completed", "latency_ms", "cost_usd")} == {
        k: b[k] for k in ("completed", "latency_ms", "cost_usd")}
