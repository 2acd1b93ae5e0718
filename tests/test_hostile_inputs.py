"""Hostile and absurd input, as an adversary or a careless user would give it.

Every case ends in one line on stderr that names the file (or flag) and the field, and exit
status 2: no traceback, no hang, no memory blow-up, no false success, nothing written. The
expected message of each case is part of the test: it is what the user reads.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

from simscale.cli import main
from simscale.profiler.schema import default_profile_path

_modules = itertools.count()


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def write(tmp_path: Path, data: object, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


def one_line_error(code: int, err: str, *expected: str) -> None:
    """Exit status 2, exactly one line on stderr, no traceback, each ``expected`` in it."""
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("simscale: error: ")
    for text in expected:
        assert text in lines[0], (text, lines[0])


def simulate(tmp_path: Path, path: Path, capsys: pytest.CaptureFixture[str],
             *extra: str) -> tuple[int, str, str]:
    return run_cli(["simulate", str(path), "-o", str(tmp_path / "out"), "--no-report",
                    *extra], capsys)


def strategy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """Write a strategy class ``S`` whose ``decide`` runs ``body`` into a fresh module on
    ``sys.path``; return its ``module:S`` name."""
    name = f"hostile_strategy_{next(_modules)}"
    (tmp_path / f"{name}.py").write_text(
        "import math, sys\n"
        "from simscale.strategies import Decision\n"
        "class S:\n"
        "    sync_period_s = 5.0\n"
        "    def decide(self, obs):\n"
        f"        {body}\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:S"


# ============================================================================ resources
@pytest.mark.parametrize(
    ("changes", "field", "what"),
    [
        ({"svc_batching": {"max_batch_size": 1_000_000_000}},
         "services.0.batching.max_batch_size", "GiB of memory"),
        ({"duration_s": 1e8, "svc_workload": {"kind": "constant", "rate_rps": 0.001}},
         "duration_s", "one-second bins"),
        ({"svc_workload": {"kind": "constant", "rate_rps": 1e12}}, "duration_s", "requests"),
        ({"svc_replicas": {"initial": 1_000_000, "min": 1, "max": 1_000_000}},
         "services.0.replicas.max", "would take about"),
        ({"strategies": [{"name": "hpa", "sync_period_s": 1e-6}]},
         "strategies.hpa.sync_period_s", "decisions of hpa"),
        # 200 million requests stream in a few GiB without co-location; a co-located run
        # keeps every request and runs a Python loop
        ({"duration_s": 2000, "svc_workload": {"kind": "constant", "rate_rps": 100_000},
          "cluster": {"nodes": 2, "cores_per_node": 4, "memory_per_node_mb": 8000}},
         "duration_s", "co-located"),
    ],
)
def test_runs_too_large_are_refused_before_any_work(tmp_path, capsys,
                                                    tiny_scenario, changes, field, what):
    path = write(tmp_path, tiny_scenario(**changes))
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, str(path), field, what, "--force")
    assert not (tmp_path / "out").exists()
    # `scenarios check` runs the same checks as simulate
    code, _, err = run_cli(["scenarios", "check", str(path)], capsys)
    one_line_error(code, err, str(path), field, what)


def test_force_runs_past_the_estimate(tmp_path, capsys, tiny_scenario):
    """--force goes on: a long, nearly idle run (over the time limit only because of its
    decisions) completes and is written."""
    path = write(tmp_path, tiny_scenario(strategies=[{"name": "static", "sync_period_s": 0.5}],
                                         duration_s=2000))
    from simscale.simulator import budget

    limit = budget.MAX_WALL_S
    try:
        budget.MAX_WALL_S = 0.1  # what would be refused without --force
        code, _, err = simulate(tmp_path, path, capsys)
        one_line_error(code, err, "strategies.static.sync_period_s")
        code, out, err = simulate(tmp_path, path, capsys, "--force")
    finally:
        budget.MAX_WALL_S = limit
    assert code == 0, err
    assert (tmp_path / "out" / "summary.json").exists()


def test_strategy_cannot_ask_for_more_than_the_scenario_allows(tmp_path, capsys,
                                                               tiny_scenario, monkeypatch):
    """A strategy asking for a batch of 1e9 gets the scenario's max_batch_size; one asking for
    1e9 replicas gets replicas.max."""
    name = strategy_module(tmp_path, monkeypatch,
                           "return Decision(replicas=10**9, max_batch_size=10**9)")
    path = write(tmp_path, tiny_scenario(strategies=[{"name": name}],
                                         svc_batching={"max_batch_size": 4}))
    code, _, err = run_cli(["simulate", str(path), "-o", str(tmp_path / "out"), "--no-report",
                            "--save-requests"], capsys)
    assert code == 0, err
    import pandas as pd

    req = pd.read_parquet(tmp_path / "out" / "requests.parquet")
    assert req["batch_size"].max() <= 4
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["runs"][0]["max_replicas"] == 3


@pytest.mark.parametrize("last", ["3e8", "1e12", "1e308"])
def test_a_three_row_trace_with_a_huge_gap_stays_small(tmp_path, capsys, tiny_scenario, last):
    """Memory follows the trace's rows, not its span."""
    (tmp_path / "t.csv").write_text(f"ts\n0\n0.5\n{last}\n", encoding="utf-8")
    path = write(tmp_path, tiny_scenario(svc_workload={"kind": "trace", "path": "t.csv",
                                                       "timestamp_column": "ts"},
                                         strategies=[{"name": "oracle"}]))
    from simscale.simulator.scenario import load_scenario
    from simscale.simulator.workloads import rate_function

    sc = load_scenario(path)
    tracemalloc.start()
    try:
        rate = rate_function(sc.services[0].workload, base_dir=sc.base_dir)
        values = rate(np.array([0.2, 0.7, 1.5, float(last) + 0.5, -1.0]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20
    # requests per 1-s bin of simulated time: two in [0, 1), one in the last row's bin
    assert values.tolist() == [2.0, 2.0, 0.0, 1.0, 0.0]
    code, _, err = simulate(tmp_path, path, capsys)
    assert code == 0, err


# ============================================================================ unsafe files
BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BOMB, "its aliases expand to more than 200,000 values"),
        ("a: &a [*a]\n", "an alias refers to a value that contains it"),
        ("name: x\nname: y\n", "duplicate key 'name' at line 2 (first at line 1)"),
        ("a: " + "[" * 500 + "]" * 500 + "\n", "nested more than 64 levels deep"),
        (b"name: \xff\xfe\n", "not UTF-8 text (byte 6 is 0xff)"),
    ],
)
def test_unsafe_yaml_is_refused(tmp_path, capsys, text, expected):
    path = write(tmp_path, text)
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, str(path), expected)
    sweep = write(tmp_path, text, "sweep.yaml")
    code, _, err = run_cli(["sweep", str(sweep), "-o", str(tmp_path / "sw")], capsys)
    one_line_error(code, err, str(sweep), expected)


def test_a_sum_workload_nested_300_deep_is_refused(tmp_path, capsys, tiny_scenario):
    nested = "{kind: sum, workloads: [" * 300 + "{kind: constant, rate_rps: 1}" + "]}" * 300
    text = yaml.safe_dump(tiny_scenario())
    text = text.replace("  workload:\n    kind: constant\n    rate_rps: 10\n",
                        "  workload: " + nested + "\n")
    assert nested in text
    path = write(tmp_path, text)
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, str(path), "nested more than 64 levels deep")


def test_deep_set_values_and_paths_are_refused(tmp_path, capsys, tiny_scenario):
    path = write(tmp_path, tiny_scenario())
    code, _, err = simulate(tmp_path, path, capsys, "--set",
                            "description=" + "[" * 5000 + "]" * 5000)
    one_line_error(code, err, "--set", "nested more than 64 levels deep")
    code, _, err = simulate(tmp_path, path, capsys, "--set", ".".join(["a"] * 5000) + "=1")
    one_line_error(code, err, "--set", "more than 64 dotted parts")


@pytest.mark.parametrize("flag", ["scenario", "--profile"])
def test_special_files_are_not_read(tmp_path, capsys, tiny_scenario, flag):
    target = "/dev/zero"
    if flag == "scenario":
        code, _, err = simulate(tmp_path, Path(target), capsys)
        one_line_error(code, err, target, "scenario path is not a regular file")
    else:
        path = write(tmp_path, tiny_scenario(svc_service_time="profile", svc_model="resnet50"))
        code, _, err = simulate(tmp_path, path, capsys, "--profile", target)
        one_line_error(code, err, target, "profile path is not a regular file")


def test_a_grid_of_a_million_points_is_refused_at_once(tmp_path, capsys, tiny_scenario):
    path = write(tmp_path, tiny_scenario())
    sweep = write(tmp_path, {"scenario": str(path), "grid": {
        "services.svc.slo_ms": list(range(1, 101)),
        "services.svc.workload.rate_rps": list(range(1, 101)),
        "duration_s": list(range(10, 110))}}, "sweep.yaml")
    code, _, err = run_cli(["sweep", str(sweep), "-o", str(tmp_path / "sw")], capsys)
    one_line_error(code, err, str(sweep), "grid: 1,000,000 grid points x 1 strategies x 1 "
                   "seeds = 1,000,000 simulations, over the limit of 20,000")
    assert not (tmp_path / "sw").exists()


# ============================================================================ false success
def test_a_path_that_does_not_exist_is_not_a_shipped_scenario(tmp_path, capsys):
    code, _, err = simulate(tmp_path, Path("/nonexistent/dir/step.yaml"), capsys)
    one_line_error(code, err, "/nonexistent/dir/step.yaml: scenario file not found")


def test_a_scenario_named_dot_dot_writes_inside_results(tmp_path, capsys,
                                                        tiny_scenario, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, tiny_scenario(name=".."))
    code, _, err = run_cli(["simulate", str(path), "--no-report"], capsys)
    assert code == 0, err
    assert not (tmp_path / "summary.json").exists()
    assert (tmp_path / "results" / "_." / "summary.json").exists()


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ({"name": "no_such_module_xyz:Thing"}, "cannot import strategy module"),
        ({"name": "hpa", "target_utilization": float("nan")}, "strategies.hpa"),
        ({"name": "threshold", "colour": "blue"}, "strategies.threshold.colour: unknown key"),
    ],
)
def test_scenarios_check_rejects_what_simulate_rejects(tmp_path, capsys,
                                                       tiny_scenario, strategy, expected):
    path = write(tmp_path, tiny_scenario(strategies=[strategy]))
    code, _, err = run_cli(["scenarios", "check", str(path)], capsys)
    one_line_error(code, err, str(path), expected)
    code, _, err2 = simulate(tmp_path, path, capsys)
    one_line_error(code, err2, str(path), expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("sys.exit(0)", "decide() raised SystemExit(0) at "),
        ("raise RuntimeError('boom')", "decide() raised RuntimeError: boom at "),
        ("return None", "decide() returned None; expected a Decision or a whole number"),
        ("return 'three'", "decide() returned 'three'"),
        ("return 3.7", "decide() returned 3.7"),
        ("return Decision(replicas=math.nan)", "decide() returned replicas=nan"),
        ("return Decision(replicas=3.7)", "decide() returned replicas=3.7"),
        ("return Decision(replicas=-2)", "expected a whole number >= 0"),
        ("return Decision(replicas=1, threads=0)", "decide() returned threads=0"),
        ("return Decision(replicas=1, resize_delay_s=-1)", "resize_delay_s=-1"),
    ],
)
def test_a_failing_strategy_is_a_failed_run(tmp_path, capsys,
                                            tiny_scenario, monkeypatch, body, expected):
    """Exits, exceptions and values that are not decisions name the strategy's entry and the
    scenario file, and nothing is written."""
    name = strategy_module(tmp_path, monkeypatch, body)
    path = write(tmp_path, tiny_scenario(strategies=[{"name": name, "label": "mine"}]))
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, str(path), "strategies.mine: strategy 'mine' failed: ", expected)
    assert not (tmp_path / "out").exists()


def test_a_strategy_module_with_a_syntax_error(tmp_path, capsys, tiny_scenario, monkeypatch):
    (tmp_path / "broken_strategy_mod.py").write_text("def decide(:\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, tiny_scenario(strategies=[{"name": "broken_strategy_mod:S"}]))
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, str(path), "cannot import strategy module 'broken_strategy_mod':"
                   " SyntaxError: ", "broken_strategy_mod.py:1")


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("0", "sync_period_s must be positive, got 0.0"),
        ("-1", "sync_period_s must be positive, got -1.0"),
        ("float('nan')", "sync_period_s must be positive, got nan"),
        ("float('inf')", "sync_period_s must be finite, got inf"),
        ("'often'", "sync_period_s must be a number, got 'often'"),
    ],
)
def test_a_custom_strategy_with_a_bad_sync_period(tmp_path, capsys, tiny_scenario, monkeypatch,
                                                  period, expected):
    """``scenarios check`` and simulate (before any work) refuse it, naming its class."""
    name = f"hostile_strategy_{next(_modules)}"
    (tmp_path / f"{name}.py").write_text(
        f"class S:\n    sync_period_s = {period}\n    def decide(self, obs):\n        return 1\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, tiny_scenario(strategies=[{"name": f"{name}:S"}]))
    code, _, err = run_cli(["scenarios", "check", str(path)], capsys)
    one_line_error(code, err, "strategies.S: " + expected)
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, "strategies.S: " + expected)
    assert not (tmp_path / "out").exists()


# ============================================================================ profiles
def _profile_doc() -> dict:
    return json.loads(default_profile_path().read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["models"]["resnet50"]["configs"][0]["batches"][0]["samples_ms"]
         .__setitem__(0, -3.0), "models.resnet50.configs.0.batches.0.samples_ms.0"),
        (lambda d: d["models"]["resnet50"]["configs"][0]["fit"].__setitem__("alpha_ms", -5),
         "models.resnet50.configs.0.fit.alpha_ms"),
        (lambda d: d["models"]["xgboost"]["configs"][0]["fit"].__setitem__("beta_ms",
                                                                           float("nan")),
         "models.xgboost.configs.0.fit.beta_ms"),
        (lambda d: d["models"]["resnet50"]["cold_start"][0]["samples_s"].__setitem__(0, -1.0),
         "models.resnet50.cold_start.0.samples_s.0"),
        (lambda d: d["models"]["resnet50"]["configs"][0]["fit"]["noise"].__setitem__(
            "params", [float("inf"), 0, 1]), "models.resnet50.configs.0.fit.noise.params.0"),
    ],
)
def test_profiles_with_negative_or_nan_figures_are_refused(tmp_path, capsys,
                                                           tiny_scenario, mutate, field):
    doc = _profile_doc()
    mutate(doc)
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps(doc), encoding="utf-8")
    code, _, err = run_cli(["profile", "show", str(prof)], capsys)
    one_line_error(code, err, str(prof), field)
    path = write(tmp_path, tiny_scenario(svc_service_time="profile", svc_model="resnet50",
                                         svc_cold_start_s="profile"))
    code, _, err = simulate(tmp_path, path, capsys, "--profile", str(prof))
    one_line_error(code, err, str(prof), field)


def test_a_profile_that_is_not_utf8(tmp_path, capsys):
    prof = tmp_path / "p.json"
    prof.write_bytes(b'{"schema": "\xff"}')
    code, _, err = run_cli(["profile", "show", str(prof)], capsys)
    one_line_error(code, err, str(prof), "not UTF-8 text")


# ============================================================================ values and flags
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"faults": {"straggler_fraction": 0.5, "straggler_slowdown": math.inf}},
         "faults.straggler_slowdown"),
        ({"svc_service_time": {"dist": "lognormal", "mean_ms": 10, "cv": 1e300}},
         "services.0.service_time"),
        ({"svc_cold_start_s": -1}, "services.0.cold_start_s"),
        ({"svc_cpu_speed": 1e-300}, "services.0.cpu_speed"),
    ],
)
def test_absurd_values_name_their_field(tmp_path, capsys, tiny_scenario, changes, field):
    path = write(tmp_path, tiny_scenario(**changes))
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, str(path), field)


def test_every_problem_is_listed(tmp_path, capsys, tiny_scenario):
    path = write(tmp_path, tiny_scenario(duration_s=-1, seed=-3, svc_slo_ms=0))
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, "duration_s: Input should be greater than 0", "seed: ",
                   "services.0.slo_ms: ")
    assert "more)" not in err


def test_a_negative_seed_flag(tmp_path, capsys, tiny_scenario):
    path = write(tmp_path, tiny_scenario())
    code, _, err = simulate(tmp_path, path, capsys, "--seed", "-1")
    one_line_error(code, err, "--seed")


@pytest.mark.skipif(os.name != "posix", reason="POSIX paths")
@pytest.mark.parametrize("kind", ["parent_is_file", "long_name", "is_file"])
def test_bad_output_folders_are_found_before_simulating(tmp_path, capsys,
                                                        tiny_scenario, monkeypatch, kind):
    from simscale.simulator import runner

    def no_run(*args, **kwargs):  # the simulation must not start
        raise AssertionError("simulated before checking the output folder")

    monkeypatch.setattr(runner, "run_strategy", no_run)
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    out = {"parent_is_file": tmp_path / "afile" / "out",
           "long_name": tmp_path / ("x" * 300),
           "is_file": tmp_path / "afile"}[kind]
    expected = {"parent_is_file": "lies inside", "long_name": "longer than 255 bytes",
                "is_file": "is a file"}[kind]
    path = write(tmp_path, tiny_scenario())
    code, _, err = run_cli(["simulate", str(path), "-o", str(out), "--no-report"], capsys)
    one_line_error(code, err, "--output", expected)


def test_the_cli_is_run_as_users_run_it(tmp_path):
    """The installed entry point, in a fresh process: a hostile file still gives one line."""
    import subprocess

    path = write(tmp_path, BOMB)
    proc = subprocess.run([sys.executable, "-m", "simscale.cli", "simulate", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "aliases expand" in proc.stderr


def test_trace_paths_that_are_not_files_or_too_big(tmp_path, capsys, tiny_scenario, monkeypatch):
    """A trace is read only from a regular file small enough to parse in memory."""
    from simscale.simulator.workloads import clear_trace_cache, trace

    path = write(tmp_path, tiny_scenario(svc_workload={"kind": "trace", "path": "/dev/zero",
                                                       "timestamp_column": "ts"}))
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, str(path), "services.0.workload", "/dev/zero",
                   "trace path is not a regular file")
    (tmp_path / "t.csv").write_text("ts\n0\n1\n", encoding="utf-8")
    path = write(tmp_path, tiny_scenario(svc_workload={"kind": "trace", "path": "t.csv",
                                                       "timestamp_column": "ts"}))
    clear_trace_cache()
    monkeypatch.setattr(trace, "PARSE_BYTES_PER_FILE_BYTE", 1e12)  # as if it were huge
    code, _, err = simulate(tmp_path, path, capsys)
    one_line_error(code, err, str(path), "t.csv", "parsing it needs about")


def test_scenarios_show_reads_only_regular_files(capsys):
    code, _, err = run_cli(["scenarios", "show", "/dev/zero"], capsys)
    one_line_error(code, err, "/dev/zero: scenario path is not a regular file")
