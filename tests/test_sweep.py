"""Parameter sweeps: the table, resuming, failing and killed jobs, bad sweep files, Ray."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from simscale.cli import main
from simscale.errors import UserError
from simscale.sweeps import execute_job, plan_sweep, run_sweep

HAVE_RAY = importlib.util.find_spec("ray") is not None

SCENARIO: dict[str, Any] = {
    "name": "tiny_sweep",
    "duration_s": 30,
    "seed": 7,
    "services": [
        {
            "name": name,
            "model": "resnet50",
            "slo_ms": 300,
            "service_time": {"dist": "exponential", "mean_ms": 50},
            "cold_start_s": 5,
            "replicas": {"initial": 1, "min": 1, "max": 4},
            "workload": {"kind": "constant", "rate_rps": 10},
        }
        for name in ("a", "b")
    ],
    "strategies": [
        {"name": "static", "label": "fixed"},
        {"name": "static", "label": "more", "replicas": 2},
    ],
}

#: strategies that misbehave, importable by the spawned workers (tmp_path is on sys.path)
HELPERS = '''
import os
import signal

from simscale.strategies import Decision


class Boom:
    """Raises in decide (a bug in a custom strategy)."""

    def __init__(self, when_rps=None):
        self.when_rps = when_rps

    def setup(self, ctx):
        self.ctx = ctx

    def decide(self, obs):
        raise RuntimeError("boom from a custom strategy")


class Interrupt(Boom):
    """Raises KeyboardInterrupt (as Ctrl-C would) while SWEEP_TEST_INTERRUPT is set."""

    def decide(self, obs):
        if os.environ.get("SWEEP_TEST_INTERRUPT"):
            raise KeyboardInterrupt
        return Decision(replicas=obs.min_replicas)


class Killer(Boom):
    """Kills its own worker process (as the OOM killer would)."""

    def decide(self, obs):
        os.kill(os.getpid(), signal.SIGKILL)


class Exit(Boom):
    """Calls sys.exit(0) in decide (a custom strategy that exits instead of raising)."""

    def decide(self, obs):
        import sys

        sys.exit(0)


class Block(Boom):
    """Writes a file named by its worker's pid into SWEEP_TEST_MARKERS, then never returns (a
    job still running when the sweep is killed)."""

    def decide(self, obs):
        import pathlib
        import threading

        marker = pathlib.Path(os.environ["SWEEP_TEST_MARKERS"]) / str(os.getpid())
        marker.write_text("running", encoding="utf-8")
        threading.Event().wait()
'''

@pytest.fixture()
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the misbehaving strategies to a folder on sys.path (the spawned workers and local
    Ray workers inherit it), as ``sweep_helpers``."""
    mod = tmp_path / "mods"
    mod.mkdir()
    (mod / "sweep_helpers.py").write_text(textwrap.dedent(HELPERS), encoding="utf-8")
    monkeypatch.syspath_prepend(str(mod))


def write_sweep(tmp_path: Path, sweep: dict[str, Any], scenario: dict[str, Any] | None = None,
                name: str = "sweep.yaml") -> Path:
    """Write ``scenario`` to tmp_path/scenarios/tiny.yaml and the sweep (pointing to it)."""
    (tmp_path / "scenarios").mkdir(exist_ok=True)
    (tmp_path / "scenarios" / "tiny.yaml").write_text(
        yaml.safe_dump(scenario or SCENARIO, sort_keys=False), encoding="utf-8")
    (tmp_path / "sweeps").mkdir(exist_ok=True)
    path = tmp_path / "sweeps" / name
    path.write_text(yaml.safe_dump({"scenario": "../scenarios/tiny.yaml", **sweep},
                                   sort_keys=False), encoding="utf-8")
    return path


GRID = {
    "services.a.workload.rate_rps": [5, 15],
    "strategies.more.replicas": [2, 3],
}


def figures_only(df: pd.DataFrame) -> pd.DataFrame:
    """The table without timing columns (wall-clock seconds differ from run to run)."""
    return df.drop(columns=[c for c in df.columns if c.endswith("wall_s")]).reset_index(drop=True)


def sweep_cli(sweep: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``simscale sweep SWEEP -o OUT --workers 2``; its exit status and its stdout."""
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(sweep), "-o", str(out), "--workers", "2"])
    return int(exc.value.code or 0), capsys.readouterr().out


# ---------------------------------------------------------------------------- the table
def test_local_sweep_writes_one_row_per_job_and_service(tmp_path: Path, helpers: None) -> None:
    sweep = write_sweep(tmp_path, {"grid": GRID, "seeds": 2})
    out = tmp_path / "out"
    res = run_sweep(sweep, outdir=out, workers=2, progress=False)

    # 4 grid points x 2 seeds x 2 strategies = 16 rows of jobs; "fixed" does not depend on
    # strategies.more.replicas, so its jobs are shared: 2 rates x 2 seeds x (1 + 2) = 12 jobs
    assert res.jobs == 12 and res.computed == 12 and res.reused == 0 and res.failed == 0
    df = res.table
    assert len(df) == 16 * 2
    assert list(df.columns[:7]) == [*GRID, "strategy", "label", "seed", "service",
                                    "replication"]
    assert {"latency_ms.p95", "slo_attainment", "cost_usd", "error", "job"} <= set(df.columns)
    assert not any(c.startswith("events") for c in df.columns)
    assert df["error"].isna().all()
    assert sorted(df["seed"].unique()) == [7, 8]
    assert sorted(df["services.a.workload.rate_rps"].unique()) == [5, 15]
    assert set(df["label"]) == {"fixed", "more"}
    assert df["job"].nunique() == 12
    # the files: one per job, the tables, and what was run
    assert len(list((out / "runs").glob("*.json"))) == 12
    on_disk = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(on_disk, df, check_dtype=False)
    assert len(pd.read_csv(out / "results.csv")) == len(df)
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["jobs"] == 12 and meta["rows"] == 16
    # a job's record holds its whole configuration
    rec = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert {"key", "runs", "config", "simscale_version", "wall_s"} <= set(rec)
    assert len(rec["config"]["scenario"]["strategies"]) == 1
    if importlib.util.find_spec("simscale.reports.html") is not None:
        assert res.report == out / "report.html" and res.report.exists()

    # a row has the numbers of simulating that variant of the whole scenario with that seed
    from simscale.api import simulate

    direct = simulate(tmp_path / "scenarios" / "tiny.yaml", seed=8,
                      overrides=["services.a.workload.rate_rps=15", "strategies.more.replicas=3"])
    want = pd.json_normalize(direct.summary["runs"]).set_index(["label", "service"])
    got = df[(df["seed"] == 8) & (df["services.a.workload.rate_rps"] == 15)
             & (df["strategies.more.replicas"] == 3)].set_index(["label", "service"])
    for col in ("arrivals", "completed", "latency_ms.p95", "cost_usd", "mean_replicas"):
        assert got[col].to_dict() == pytest.approx(want[col].to_dict()), col


def test_rerun_and_resume_compute_only_what_is_missing(tmp_path: Path, helpers: None) -> None:
    sweep = write_sweep(tmp_path, {"grid": GRID})
    out = tmp_path / "out"
    first = run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    assert (first.jobs, first.computed, first.reused) == (6, 6, 0)

    again = run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    assert (again.computed, again.reused) == (0, 6)
    pd.testing.assert_frame_equal(figures_only(again.table), figures_only(first.table))

    # as if the sweep had been killed before three jobs were stored
    for p in sorted((out / "runs").glob("*.json"))[:3]:
        p.unlink()
    resumed = run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    assert (resumed.computed, resumed.reused, resumed.failed) == (3, 3, 0)
    pd.testing.assert_frame_equal(figures_only(resumed.table), figures_only(first.table))

    # a new grid value adds only its own jobs
    sweep = write_sweep(tmp_path, {"grid": {**GRID, "services.a.workload.rate_rps": [5, 15, 25]}})
    more = run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    assert (more.jobs, more.computed, more.reused) == (9, 3, 6)


def test_interrupted_sweep_resumes(tmp_path: Path, helpers: None,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = {**SCENARIO, "strategies": [{"name": "static", "label": "fixed"},
                                           {"name": "sweep_helpers:Interrupt", "label": "ctrl_c"}]}
    sweep = write_sweep(tmp_path, {"grid": {"services.a.workload.rate_rps": [5, 10, 15]},
                                   "seeds": 2}, scenario)
    out = tmp_path / "out"
    monkeypatch.setenv("SWEEP_TEST_INTERRUPT", "1")  # inherited by the spawned workers
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    stored = len(list((out / "runs").glob("*.json")))
    assert stored < 12
    assert not (out / "results.parquet").exists()

    monkeypatch.delenv("SWEEP_TEST_INTERRUPT")
    res = run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    assert (res.jobs, res.computed, res.reused, res.failed) == (12, 12 - stored, stored, 0)
    assert len(res.table) == 24


# ---------------------------------------------------------------------------- failures
def test_failing_job_is_recorded_and_the_others_finish(
    tmp_path: Path, helpers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = {**SCENARIO, "strategies": [{"name": "static", "label": "fixed"},
                                           {"name": "sweep_helpers:Boom", "label": "boom"}]}
    sweep = write_sweep(tmp_path, {"grid": {"services.a.workload.rate_rps": [5, 10]}}, scenario)
    out = tmp_path / "out"
    res = run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    assert (res.jobs, res.computed, res.failed) == (4, 4, 2)
    df = res.table
    assert len(df) == 8
    bad = df[df["label"] == "boom"]
    assert bad["error"].str.contains("boom from a custom strategy").all()
    assert bad["latency_ms.p95"].isna().all()
    good = df[df["label"] == "fixed"]
    assert good["error"].isna().all() and good["latency_ms.p95"].notna().all()
    errors = list((out / "runs").glob("*.error.json"))
    assert len(errors) == 2
    rec = json.loads(errors[0].read_text())
    assert "RuntimeError" in rec["error"] and "Traceback" in rec["traceback"]
    assert "boom" in pd.read_csv(out / "results.csv")["error"].dropna().iloc[0]

    # failed jobs are tried again, finished ones are not; the CLI's status says it failed
    code, text = sweep_cli(sweep, out, capsys)
    assert code == 1
    assert "computed 2, reused 2, failed 2" in text
    assert "2 run(s) failed" in text


def test_killed_worker_loses_nothing_else(tmp_path: Path, helpers: None) -> None:
    scenario = {**SCENARIO, "strategies": [{"name": "static", "label": "fixed"},
                                           {"name": "sweep_helpers:Killer", "label": "killer"}]}
    sweep = write_sweep(tmp_path, {"grid": {"services.a.workload.rate_rps": [5, 10, 15]}},
                        scenario)
    out = tmp_path / "out"
    res = run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    assert (res.jobs, res.failed) == (6, 3)
    df = res.table
    assert df.loc[df["label"] == "fixed", "error"].isna().all()
    assert df.loc[df["label"] == "killer", "error"].str.contains("WorkerDied").all()
    assert len(list((out / "runs").glob("*.error.json"))) == 3


def test_job_that_calls_sys_exit_fails_alone(tmp_path: Path, helpers: None,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A strategy that calls ``sys.exit(0)`` fails its own jobs, each recorded with its error
    like any failed job; the other jobs finish, the tables are written, and the command exits
    non-zero saying how many failed."""
    scenario = {**SCENARIO, "strategies": [{"name": "static", "label": "fixed"},
                                           {"name": "sweep_helpers:Exit", "label": "exits"}]}
    sweep = write_sweep(tmp_path, {"grid": {"services.a.workload.rate_rps": [5, 10, 15]}},
                        scenario)
    out = tmp_path / "out"
    res = run_sweep(sweep, outdir=out, workers=2, progress=False, report=False)
    assert (res.jobs, res.computed, res.failed) == (6, 6, 3)
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 12
    bad = df[df["label"] == "exits"]
    assert bad["error"].str.contains("SystemExit").all() and bad["latency_ms.p95"].isna().all()
    good = df[df["label"] == "fixed"]
    assert good["error"].isna().all() and good["latency_ms.p95"].notna().all()
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.error.json")]
    assert len(records) == 3
    for rec in records:
        assert "SystemExit(0)" in rec["error"] and "Traceback" in rec["traceback"]

    # the command runs the failed jobs again, and they fail again: status 1, and it says so
    code, text = sweep_cli(sweep, out, capsys)
    assert code == 1
    assert "computed 3, reused 3, failed 3" in text and "3 run(s) failed" in text
    errors = pd.read_csv(out / "results.csv")["error"].dropna()
    assert len(errors) == 6 and errors.str.contains("SystemExit").all()

    # a SystemExit that reaches the job itself (here from run_scenario) is caught there too
    import simscale.simulator.runner

    def exiting_run_scenario(*args: Any, **kwargs: Any) -> None:
        import sys

        sys.exit(3)

    monkeypatch.setattr(simscale.simulator.runner, "run_scenario", exiting_run_scenario)
    job = next(iter(plan_sweep(sweep).jobs.values()))
    rec = execute_job(job)
    assert "runs" not in rec and "Traceback" in rec["traceback"]
    assert rec["error"].startswith("SystemExit: the job called sys.exit(3)")


def _alive(proc: Any) -> bool:
    """Whether a psutil process still runs (a zombie, or a new process that reuses the pid,
    does not count)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(proc: Any) -> str:
    """``pid: command line`` of a psutil process (as far as it can still be read)."""
    import psutil

    try:
        return f"{proc.pid}: {' '.join(proc.cmdline())}"
    except psutil.Error:
        return str(proc.pid)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_sweep_leaves_no_process_behind(tmp_path: Path, helpers: None) -> None:
    """``kill -9`` of ``simscale sweep`` while its jobs run: every process it started (the pool
    workers, multiprocessing's resource tracker) exits by itself; none is left under PID 1."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    scenario = {**SCENARIO, "strategies": [{"name": "sweep_helpers:Block", "label": "block"}]}
    sweep = write_sweep(tmp_path, {"seeds": 2}, scenario)
    markers = tmp_path / "markers"
    markers.mkdir()
    path = [str(tmp_path / "mods"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "SWEEP_TEST_MARKERS": str(markers), "PYTHONPATH": os.pathsep.join(path)}
    log = tmp_path / "log.txt"
    with log.open("wb") as fh:  # its own session: the finally below can kill all of it
        proc = subprocess.Popen(
            [sys.executable, "-m", "simscale.cli", "sweep", str(sweep), "-o",
             str(tmp_path / "out"), "--workers", "2"],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    descendants: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        # the event: both jobs are running in pool workers (each wrote its worker's pid)
        deadline = time.monotonic() + 180
        while len(list(markers.iterdir())) < 2:
            assert proc.poll() is None, f"the sweep ended: {log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "the jobs did not start within 180 s"
            time.sleep(0.1)
        descendants = parent.children(recursive=True)
        running = {int(p.name) for p in markers.iterdir()}
        assert running <= {p.pid for p in descendants}

        os.kill(proc.pid, signal.SIGKILL)  # the parent only
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while [p for p in descendants if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [_describe(p) for p in descendants if _alive(p)]
        assert not left, f"still running after the sweep was killed: {left}"
    finally:
        # leave nothing behind, but kill only what this test started: the whole session while
        # its leader lives (its pid is then still the group's), else what was seen below it and
        # any multiprocessing helper still in its group
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        for p in descendants:
            if _alive(p):
                p.kill()
        for p in psutil.process_iter():
            try:
                if (os.getpgid(p.pid) == proc.pid and _alive(p)
                        and "multiprocessing" in " ".join(p.cmdline())):
                    p.kill()
            except (OSError, psutil.Error):
                continue


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("sweep", "field", "message"),
    [
        ({"grid": {}, "colour": "blue"}, "colour", "unknown key"),
        ({"grid": {"services.c.slo_ms": [100]}}, "grid.services.c.slo_ms", "no list item 'c'"),
        ({"grid": {"services.a.workload.rate_rps": [5, -1]}},
         "grid.services.a.workload.rate_rps", "rate_rps=-1 makes an invalid scenario"),
        ({"grid": {"services.a.workload.rate_rsp": [5]}},
         "grid.services.a.workload.rate_rsp", "unknown key"),
        ({"grid": {"strategies.more.replicaz": [1]}}, "grid.strategies.more.replicaz",
         "replicaz"),
        ({"grid": {"services.a.slo_ms": []}}, "grid.services.a.slo_ms", "at least 1"),
        ({"grid": {"services.a.slo_ms": [100, 100]}}, "grid", "more than once"),
        ({"strategies": ["fixed", "hpa"]}, "strategies.1",
         "strategy 'hpa' is not in the scenario"),
        ({"seeds": 0}, "seeds", "greater than or equal to 1"),
        ({"scenario": "../nowhere.yaml"}, "scenario", "scenario file not found"),
    ],
)
def test_bad_sweep_files_name_the_file_and_field(
    tmp_path: Path, sweep: dict[str, Any], field: str, message: str
) -> None:
    path = write_sweep(tmp_path, sweep)
    with pytest.raises(UserError) as exc:
        run_sweep(path, outdir=tmp_path / "out", progress=False)
    line = exc.value.format()
    assert str(path) in line
    assert exc.value.field is not None and exc.value.field.startswith(field), line
    assert message in line
    assert "\n" not in line
    assert not (tmp_path / "out").exists()  # nothing ran


def test_malformed_sweep_yaml_and_bad_flags(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("grid: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match="malformed YAML at line"):
        run_sweep(path, outdir=tmp_path / "out", progress=False)
    with pytest.raises(UserError, match="sweep file not found"):
        run_sweep(tmp_path / "none.yaml", outdir=tmp_path / "out", progress=False)
    good = write_sweep(tmp_path, {})
    with pytest.raises(UserError, match="--workers"):
        run_sweep(good, outdir=tmp_path / "out", workers=0, progress=False)
    with pytest.raises(UserError, match="--executor"):
        run_sweep(good, outdir=tmp_path / "out", executor="dask", progress=False)  # type: ignore[arg-type]


def test_ray_executor_without_ray_is_a_user_error(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    good = write_sweep(tmp_path, {})
    with pytest.raises(UserError, match=r"needs Ray: pip install 'simscale\[ray\]'"):
        run_sweep(good, outdir=tmp_path / "out", executor="ray", progress=False)


def test_shipped_flash_crowd_grid_is_valid_and_has_48_runs() -> None:
    path = Path(__file__).parent.parent / "scenarios" / "sweeps" / "flash_crowd_grid.yaml"
    plan = plan_sweep(path)
    assert len(plan.rows) >= 48
    assert plan.scenario_path.name == "flash_crowd.yaml"


def test_planning_builds_each_grid_points_strategies_once(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each grid value alone (to name the grid path at fault), then each grid point, builds the
    strategies it runs once; the point's estimate uses the strategies its check built."""
    import simscale.strategies

    built: list[str] = []
    make_strategy = simscale.strategies.make_strategy

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        built.append(name)
        return make_strategy(name, *args, **kwargs)

    monkeypatch.setattr(simscale.strategies, "make_strategy", counting)
    plan = plan_sweep(write_sweep(tmp_path, {"grid": GRID, "seeds": 2}))
    values = sum(len(v) for v in GRID.values())
    assert plan.n_points == 4
    assert len(built) == (values + plan.n_points) * len(SCENARIO["strategies"])


# ---------------------------------------------------------------------------- Ray
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'simscale[ray]')")
def test_local_and_ray_executors_give_the_same_table(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"grid": GRID, "seeds": 2})
    local = run_sweep(sweep, outdir=tmp_path / "local", workers=2, progress=False,
                      report=False)
    on_ray = run_sweep(sweep, outdir=tmp_path / "ray", executor="ray", workers=2,
                       progress=False, report=False)
    assert (on_ray.jobs, on_ray.computed, on_ray.failed) == (local.jobs, local.computed, 0)
    pd.testing.assert_frame_equal(figures_only(on_ray.table), figures_only(local.table))


def test_job_keys_follow_the_files_the_scenario_reads(tmp_path: Path) -> None:
    trace = tmp_path / "scenarios" / "trace.csv"
    trace.parent.mkdir(parents=True)
    trace.write_text("t\n0.1\n0.5\n", encoding="utf-8")
    scenario = yaml.safe_load(yaml.safe_dump(SCENARIO))
    scenario["services"][1]["workload"] = {"kind": "trace", "path": "trace.csv",
                                           "timestamp_column": "t"}
    sweep = write_sweep(tmp_path, {"seeds": 2}, scenario)
    before = plan_sweep(sweep)
    assert len(before.jobs) == 4 and len(plan_sweep(sweep).jobs) == 4
    assert set(plan_sweep(sweep).jobs) == set(before.jobs)  # the same configuration, same keys
    trace.write_text("t\n0.1\n0.7\n", encoding="utf-8")  # new data: every job is new
    assert not set(plan_sweep(sweep).jobs) & set(before.jobs)


def test_a_profile_that_cannot_serve_the_scenario_fails_before_anything_runs(
    tmp_path: Path,
) -> None:
    scenario = yaml.safe_load(yaml.safe_dump(SCENARIO))
    scenario["profile"] = "no_such_profile.json"
    scenario["services"][0]["service_time"] = "profile"
    sweep = write_sweep(tmp_path, {"seeds": [1, 5]}, scenario)
    with pytest.raises(UserError) as exc:
        run_sweep(sweep, outdir=tmp_path / "out", progress=False)
    assert exc.value.field == "scenario"
    assert str(sweep) in exc.value.format() and "no_such_profile.json" in exc.value.format()
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'simscale[ray]')")
def test_unreachable_ray_address_is_a_user_error(tmp_path: Path) -> None:
    good = write_sweep(tmp_path, {})
    with pytest.raises(UserError, match="--address: cannot reach a Ray cluster at 127.0.0.1:1"):
        run_sweep(good, outdir=tmp_path / "out", executor="ray", address="127.0.0.1:1",
                  progress=False)
    with pytest.raises(UserError, match="--address needs --executor ray"):
        run_sweep(good, outdir=tmp_path / "out", address="127.0.0.1:1", progress=False)
