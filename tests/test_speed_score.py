"""The machine's speed score (issue #15 item 3): the benchmark with a fake timer, its cache, the
one-line warning when the profile's machine and this one differ, ``simulate --rescale`` and
``Profile.rescaled``.

Nothing here depends on this machine's speed: the score comes from a fake timer or from
``SIMSCALE_SPEED_SCORE``, and the cache lives in a temporary ``XDG_CACHE_HOME``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simscale.cli import main
from simscale.profiler import speed
from simscale.profiler.schema import Profile, load_profile
from simscale.profiler.speed import (
    BENCHMARK,
    ENV_SCORE,
    MAX_AGE_S,
    MIN_ROUNDS,
    SpeedRun,
    machine_speed,
    measure_speed,
)

#: the synthetic profiles come from "another machine": that warning is not what is tested here
pytestmark = pytest.mark.filterwarnings("ignore::simscale.profiler.schema.ProfileMismatchWarning")

#: the score of the synthetic profile's machine (work units per second)
PROFILE_SCORE = 100.0


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache folder and no score override."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv(ENV_SCORE, raising=False)
    return cache


def fake_timer(rounds_s: list[float], warmup_s: float = 0.5):
    """A timer for :func:`measure_speed`: the warm-up takes ``warmup_s``, round ``i`` takes
    ``rounds_s[i]`` (the timer is read at the start, around each round, and at the end)."""
    now = [0.0]
    reads: list[float] = [0.0]
    t = warmup_s
    for d in rounds_s:
        reads += [t, t + d]
        t += d
    reads.append(t)
    it = iter(reads)

    def timer() -> float:
        now[0] = next(it)
        return now[0]

    return timer


# --------------------------------------------------------------------------- the benchmark
def test_score_from_a_fake_timer_is_the_inverse_median_round():
    rounds_s = [0.05, 0.07, 0.04, 0.06, 0.2]
    calls = []
    runs = [measure_speed(5, timer=fake_timer(rounds_s), wait_ns=lambda: [0],
                          work=lambda: calls.append(1)) for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0].score == pytest.approx(1 / statistics.median(rounds_s))
    assert runs[0].rounds_s == tuple(pytest.approx(d) for d in rounds_s)
    assert runs[0].elapsed_s == pytest.approx(0.5 + sum(rounds_s))
    assert len(calls) == 2 * 6  # a warm-up and five rounds, each time


def test_benchmark_stops_early_after_its_time_budget_but_not_before_min_rounds():
    rounds_s = [0.6] * 5
    run = measure_speed(5, timer=fake_timer(rounds_s, warmup_s=0.1), wait_ns=lambda: [0],
                        work=lambda: None,
                        max_total_s=0.8)
    assert len(run.rounds_s) == MIN_ROUNDS and run.score == pytest.approx(1 / 0.6)


def test_benchmark_skips_a_round_that_would_end_after_the_budget():
    run = measure_speed(5, timer=fake_timer([0.15] * 5, warmup_s=0.15), wait_ns=lambda: [0],
                        work=lambda: None,
                        max_total_s=0.8)
    assert len(run.rounds_s) == 4  # a fifth would end at 0.9 s


def test_run_queue_wait_is_taken_out_of_each_round():
    waits = iter([[0, 0], [0, 0], [0, 0], [100_000_000, 0], [100_000_000, 0],
                  [100_000_000, 50_000_000]])  # thread 1 waits 0.1 s in round 2, thread 2 less
    run = measure_speed(3, timer=fake_timer([0.2, 0.3, 0.25]), wait_ns=lambda: next(waits),
                        work=lambda: None)
    assert run.rounds_s == tuple(pytest.approx(d) for d in (0.2, 0.2, 0.2))
    assert run.score == pytest.approx(5.0) and run.wait_share == pytest.approx(0.15 / 0.75)


def test_real_workload_runs_and_the_fake_timer_alone_decides_the_score():
    run = measure_speed(3, timer=fake_timer([0.1, 0.3, 0.2]), wait_ns=lambda: [0])
    assert run.score == pytest.approx(5.0)


def test_speed_module_imports_nothing_heavy():
    code = ("import sys, simscale.profiler.speed; "
            "print(sorted(m for m in ('numpy', 'scipy', 'torch', 'pydantic') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_profile_speed_pools_the_start_and_end_rounds():
    start = SpeedRun(score=1 / 0.2, rounds_s=(0.2, 0.2, 0.2), elapsed_s=1.0)
    end = SpeedRun(score=1 / 0.1, rounds_s=(0.1, 0.1, 0.1), elapsed_s=1.0)
    s = speed.profile_speed(start, end)
    assert s.score == pytest.approx(1 / 0.15) and s.benchmark == BENCHMARK
    assert (s.at_start_score, s.at_end_score) == (pytest.approx(5.0), pytest.approx(10.0))


# --------------------------------------------------------------------------- the cache
class FakeMeasure:
    def __init__(self, score: float = 42.0):
        self.score, self.calls = score, 0

    def __call__(self) -> SpeedRun:
        self.calls += 1
        return SpeedRun(score=self.score, rounds_s=(1 / self.score,), elapsed_s=0.1)


def test_cache_miss_then_hit_then_expiry_then_refresh(_isolated_cache: Path):
    measure = FakeMeasure()
    first = machine_speed(now_s=1e9, measure=measure)
    assert (first.score, first.source, measure.calls) == (42.0, "measured", 1)
    doc = json.loads((_isolated_cache / "simscale" / "speed_score.json").read_text())
    (entry,) = doc["entries"].values()
    assert entry["score"] == 42.0 and entry["measured_unix_s"] == 1e9

    hit = machine_speed(now_s=1e9 + MAX_AGE_S - 1, measure=FakeMeasure(7.0))
    assert (hit.score, hit.source) == (42.0, "cache")

    again = FakeMeasure(50.0)
    late = machine_speed(now_s=1e9 + MAX_AGE_S + 1, measure=again)
    assert (late.score, late.source, again.calls) == (50.0, "measured", 1)

    fresh = FakeMeasure(60.0)
    assert machine_speed(refresh=True, now_s=1e9 + MAX_AGE_S + 2, measure=fresh).score == 60.0
    assert fresh.calls == 1


def test_cache_of_another_machine_is_a_miss(monkeypatch: pytest.MonkeyPatch):
    speed.remember_speed(42.0, key="some-other-machine", now_s=1e9)
    measure = FakeMeasure(9.0)
    assert machine_speed(now_s=1e9, measure=measure).source == "measured"
    assert measure.calls == 1


def test_unwritable_or_corrupt_cache_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache folder cannot be made
    measure = FakeMeasure()
    assert machine_speed(now_s=1e9, measure=measure).score == 42.0
    assert machine_speed(now_s=1e9, measure=measure).source == "measured"  # nothing cached
    assert speed.remember_speed(1.0) is False

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c2"))
    path = tmp_path / "c2" / "simscale" / "speed_score.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert machine_speed(now_s=1e9, measure=measure).source == "measured"
    assert machine_speed(now_s=1e9, measure=measure).source == "cache"  # rewritten whole


def test_env_override_and_its_bad_values(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_SCORE, "12.5")
    measure = FakeMeasure()
    assert machine_speed(measure=measure).score == 12.5 and measure.calls == 0
    for bad in ("fast", "0", "-3", "nan"):
        monkeypatch.setenv(ENV_SCORE, bad)
        with pytest.raises(speed.UserError, match=ENV_SCORE):
            machine_speed(measure=measure)


# --------------------------------------------------------------------------- profiles
def profile_data(score: float | None = PROFILE_SCORE) -> dict[str, Any]:
    """A small profile: model ``m`` on cpu (1 thread) with a constant serving overhead, and on
    cuda; cold starts on both; the machine's score ``score``."""
    def cfg(device: str, a: float, b: float) -> dict[str, Any]:
        batches = [{"batch_size": bs, "samples_ms": [a + b * bs], "mean_ms": a + b * bs,
                    "std_ms": 0.1, "p50_ms": a + b * bs, "p95_ms": a + b * bs,
                    "p99_ms": a + b * bs, "items_per_s": 1000 * bs / (a + b * bs)}
                   for bs in (1, 2, 4)]
        return {"device": device, "threads": 1, "batches": batches,
                "fit": {"alpha_ms": a, "beta_ms": b, "knots": [[1, a + b], [4, a + 4 * b]],
                        "noise": {"dist": "lognorm", "params": [0.3, 0, 1]},
                        "r2": 0.99, "max_rel_error": 0.05},
                "serving": {"batches": 10, "gap_ms": 50.0, "roundtrip_ms_p50": 6.0,
                            "roundtrip_ms_p95": 7.0, "predict_ms_p50": 5.0,
                            "overhead_ms": 1.0, "idle_roundtrip_ms_p50": [[0, 5.5], [50, 6.0]]}}

    machine: dict[str, Any] = {"cpu_model": "x", "cores": 2, "memory_mb": 4000,
                               "platform": "linux", "python": "3.11", "date": "2026-01-01"}
    if score is not None:
        machine["speed"] = {"score": score, "benchmark": BENCHMARK, "at_start_score": score,
                            "at_end_score": score}
    cold = [{"device": d, "samples_s": [2.0, 3.0], "mean_s": 2.5, "p50_s": 2.5, "p95_s": 3.0}
            for d in ("cpu", "cuda")]
    return {"schema": "simscale.profile/1", "created_at": "2026-01-01", "machine": machine,
            "models": {"m": {"name": "m", "description": "", "framework": "x",
                             "n_parameters": 1, "model_size_mb": 10,
                             "preprocessing": {"description": "p", "samples_ms": [2.0],
                                               "mean_ms": 2.0, "p50_ms": 2.0, "p95_ms": 2.0},
                             "cold_start": cold,
                             "configs": [cfg("cpu", 4.0, 1.0), cfg("cuda", 2.0, 0.1)]}}}


def write_profile(tmp_path: Path, score: float | None = PROFILE_SCORE) -> Path:
    path = tmp_path / ("p.json" if score is not None else "p_noscore.json")
    path.write_text(json.dumps(profile_data(score)))
    return path


def test_rescaled_multiplies_cpu_times_and_keeps_the_rest():
    prof = Profile.model_validate(profile_data())
    r = prof.rescaled(2.0, machine_score=50.0)
    before, after = prof.service_model("m", "cpu", 1), r.service_model("m", "cpu", 1)
    for b in (1, 3, 4, 16):
        assert after.mean_s(b) == pytest.approx(2 * before.mean_s(b), rel=1e-12)
        assert after.quantile_s(b, 0.99) == pytest.approx(2 * before.quantile_s(b, 0.99))
    assert after.scv == pytest.approx(before.scv)
    cpu, cuda = r.config("m", "cpu", 1), r.config("m", "cuda", 1)
    assert cpu.batches[1].p95_ms == pytest.approx(2 * prof.config("m", "cpu", 1).batches[1].p95_ms)
    assert cpu.batches[1].items_per_s == pytest.approx(
        prof.config("m", "cpu", 1).batches[1].items_per_s / 2)
    assert cpu.serving.idle_roundtrip_ms_p50 == [(0, 11.0), (50, 12.0)]  # gaps kept
    assert cuda == prof.config("m", "cuda", 1)
    assert r.cold_start("m", "cpu").samples_s == [4.0, 6.0]
    assert r.cold_start("m", "cuda") == prof.cold_start("m", "cuda")
    assert r.model("m").preprocessing.p95_ms == 4.0
    assert prof.rescaled(2.0, cold_starts=False).cold_start("m").mean_s == 2.5
    rs = r.machine.speed_rescale
    assert (rs.factor, rs.machine_score, rs.cold_starts) == (2.0, 50.0, True)
    assert r.rescaled(1.5, machine_score=33.0).machine.speed_rescale.factor == 3.0
    assert speed.profile_score(r) == 50.0  # the rescaled copy stands for the 50 machine
    Profile.model_validate(r.model_dump(mode="json", by_alias=True))  # still a valid profile
    with pytest.raises(speed.UserError, match="positive"):
        prof.rescaled(0.0)


@pytest.mark.parametrize(("here", "warns"), [
    (PROFILE_SCORE / 1.10, False), (PROFILE_SCORE * 1.10, False),
    (PROFILE_SCORE / 1.16, True), (PROFILE_SCORE * 1.2, True), (80.0, True)])
def test_warning_beyond_15_percent_only(here: float, warns: bool):
    prof = Profile.model_validate(profile_data())
    line = speed.speed_warning(prof, speed.MachineSpeed(here, "override"))
    assert (line is not None) == warns
    if warns:
        assert "\n" not in line and "simscale profile --quick" in line and "--rescale" in line
        assert ("slower" in line) == (here < PROFILE_SCORE)
    scoreless = Profile.model_validate(profile_data(None))
    assert speed.speed_warning(scoreless, speed.MachineSpeed(here, "override")) is None


def test_a_profile_run_stores_its_score_and_prints_it(tmp_path, monkeypatch, capsys):
    from simscale.profiler import command, runner
    from simscale.profiler.assemble import build_profile

    run = SpeedRun(score=20.0, rounds_s=(0.05,), elapsed_s=0.1)
    models = Profile.model_validate(profile_data()).models
    built = build_profile(True, {}, models, speed.profile_speed(run, run))
    assert built.machine.speed.score == 20.0 and built.machine.cpu is not None
    monkeypatch.setattr(runner, "run_profile", lambda **kwargs: built)
    command.profile_command(None, None, None, None, True, tmp_path / "p.json", None)
    assert "speed score 20 work units/s (start 20, end 20)" in capsys.readouterr().out


# --------------------------------------------------------------------------- the CLI
def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def scenario_file(tmp_path: Path, profile: Path | None) -> Path:
    """A light load (1 request/s of ~5 ms on 4 replicas, a shared queue): no request waits,
    so each latency is its service time."""
    svc: dict[str, Any] = {"name": "svc", "model": "m", "slo_ms": 500, "threads": 1,
                           "replicas": {"initial": 4, "min": 4, "max": 4},
                           "workload": {"kind": "constant", "rate_rps": 1}}
    if profile is not None:
        svc.update(service_time="profile", cold_start_s="profile")
    else:
        svc.update(service_time={"dist": "exponential", "mean_ms": 5}, cold_start_s=2)
    data = {"name": "speedy", "duration_s": 120, "seed": 3, "services": [svc],
            "strategies": [{"name": "static"}]}
    if profile is not None:
        data["profile"] = str(profile)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
             ) -> tuple[int, dict[str, Any] | None, str]:
    sc = scenario_file(tmp_path, write_profile(tmp_path))
    code, out, err = run_cli(["simulate", str(sc), "--json", "--no-report", "-o",
                              str(tmp_path / "out"), *extra], capsys)
    return code, json.loads(out) if code == 0 else None, err


@pytest.mark.parametrize(("here", "warns"), [(PROFILE_SCORE / 1.10, False), (80.0, True)])
def test_simulate_warns_in_one_line(tmp_path, capsys, monkeypatch, here, warns):
    monkeypatch.setenv(ENV_SCORE, str(here))
    code, summary, err = simulate(tmp_path, capsys)
    assert code == 0
    lines = [ln for ln in err.splitlines() if "speed score" in ln]
    assert len(lines) == (1 if warns else 0), err
    if warns:
        assert "simscale profile --quick" in lines[0] and "--rescale" in lines[0]
    assert summary["profile"]["machine"]["speed"]["score"] == PROFILE_SCORE


def test_rescale_multiplies_simulated_service_times(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_SCORE, str(PROFILE_SCORE / 2))  # this machine: half as fast
    code, plain, _ = simulate(tmp_path, capsys)
    assert code == 0
    code, scaled, err = simulate(tmp_path, capsys, "--rescale")
    assert code == 0, err
    assert "rescaled the profile's CPU times x2.000" in err
    a, b = plain["runs"][0], scaled["runs"][0]
    assert a["queue_wait_ms"]["p99"] == 0 == b["queue_wait_ms"]["p99"]  # latency = service
    assert a["completed"] == b["completed"] > 100
    for key in ("mean", "p50", "p95", "max"):
        assert b["latency_ms"][key] == pytest.approx(2 * a["latency_ms"][key], rel=1e-9)
    rescale = scaled["profile"]["machine"]["speed_rescale"]
    assert rescale == {"factor": 2.0, "machine_score": PROFILE_SCORE / 2, "cold_starts": True}
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["profile"]["machine"]["speed_rescale"]["factor"] == 2.0


def test_rescale_without_a_score_is_one_line_naming_the_flag(tmp_path, capsys):
    sc = scenario_file(tmp_path, write_profile(tmp_path, score=None))
    code, out, err = run_cli(["simulate", str(sc), "--rescale", "--no-report", "-o",
                              str(tmp_path / "out")], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--rescale" in err
    assert "no speed score" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

    code, _, err = run_cli(["simulate", str(scenario_file(tmp_path, None)), "--rescale",
                            "--no-report", "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--rescale" in err


def test_profile_show_says_once_when_there_is_no_score(tmp_path, capsys, monkeypatch):
    code, out, err = run_cli(["profile", "show", str(write_profile(tmp_path, None))], capsys)
    assert code == 0
    assert err.count("profile has no speed score; run simscale profile --quick") == 1

    monkeypatch.setenv(ENV_SCORE, "80")
    code, out, err = run_cli(["profile", "show", str(write_profile(tmp_path))], capsys)
    assert code == 0 and "Speed score: 100 work units/s in the profile" in out
    assert len([ln for ln in err.splitlines() if "--rescale" in ln]) == 1


def test_validate_with_a_profile_warns_in_one_line(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr("simscale.validation.command.validate_command",
                        lambda *a, **k: calls.append(k["profile"]))
    monkeypatch.setenv(ENV_SCORE, "125")
    prof = write_profile(tmp_path)
    code, _, err = run_cli(["validate", str(scenario_file(tmp_path, prof)), "--profile",
                            str(prof), "-o", str(tmp_path / "v")], capsys)
    assert code == 0 and calls == [str(prof)]
    (line,) = [ln for ln in err.splitlines() if "speed score" in ln]
    assert "faster" in line and "--rescale" in line and "simscale profile --quick" in line


def test_simulate_without_score_says_nothing(tmp_path, capsys, monkeypatch):
    sc = scenario_file(tmp_path, write_profile(tmp_path, score=None))
    monkeypatch.setattr(speed, "measure_speed", lambda: pytest.fail("no benchmark needed"))
    code, _, err = run_cli(["simulate", str(sc), "--no-report", "-o", str(tmp_path / "o")],
                           capsys)
    assert code == 0 and "speed score" not in err


# --------------------------------------------------------------------------- fingerprint
def test_cpu_info_from_cpuinfo_files(tmp_path: Path):
    from simscale.profiler.fingerprint import cpu_info

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\ncpu family\t: 6\nmodel\t\t: 207\nmodel name\t: Xeon\n"
                   "stepping\t: 2\nflags\t\t: fpu avx2 sse4_2 avx512f fma\n\n"
                   "processor\t: 1\ncpu family\t: 99\n")
    info = cpu_info(str(x86))
    assert (info.family, info.model_number, info.stepping) == ("6", "207", "2")
    assert info.flags_count == 5 and info.simd == ["sse4_2", "avx2", "fma", "avx512f"]
    same = tmp_path / "same"
    same.write_text(x86.read_text().replace("fpu avx2 sse4_2", "sse4_2 fpu avx2"))
    assert cpu_info(str(same)).flags_sha256 == info.flags_sha256  # order does not matter
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve\nCPU architecture: 8\n"
                   "CPU variant\t: 0x1\nCPU part\t: 0xd40\n")
    info = cpu_info(str(arm))
    assert (info.family, info.model_number, info.stepping) == ("8", "0xd40", "0x1")
    assert info.simd == ["asimd", "sve"]
    assert cpu_info(str(tmp_path / "missing")).flags_sha256 is None


def test_shipped_profile_has_a_score_and_one_without_skips_the_check(monkeypatch):
    """The shipped profile carries its machine's score, so a simulation of it warns on a
    machine that differs; a profile without one (made before the score) skips the check and
    refuses --rescale."""
    prof = load_profile("default")
    assert prof.machine.speed is not None and prof.machine.speed.benchmark == speed.BENCHMARK
    there = speed.profile_score(prof)
    assert there is not None and there > 0
    monkeypatch.setenv(speed.ENV_SCORE, str(there / 1.3))
    line = speed.speed_warning(prof)
    assert line is not None and "simscale profile --quick" in line
    monkeypatch.setenv(speed.ENV_SCORE, str(there / 1.1))
    assert speed.speed_warning(prof) is None
    old = prof.model_copy(update={"machine": prof.machine.model_copy(update={"speed": None})})
    assert speed.profile_score(old) is None and speed.speed_warning(old) is None
    with pytest.raises(speed.UserError, match="--rescale"):
        speed.rescaled_to_machine(old)
