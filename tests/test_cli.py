"""The CLI's handling of bad input: one line naming the file and field, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simscale.cli import main

GOOD = {
    "name": "tiny",
    "duration_s": 20,
    "seed": 1,
    "services": [
        {
            "name": "svc",
            "model": "resnet50",
            "slo_ms": 500,
            "service_time": {"dist": "exponential", "mean_ms": 50},
            "cold_start_s": 2,
            "replicas": {"initial": 1, "min": 1, "max": 3},
            "workload": {"kind": "constant", "rate_rps": 10},
        }
    ],
    "strategies": [{"name": "static"}],
}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def write(tmp_path: Path, data: object, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


def with_service(**changes: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["services"][0].update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("name: [unclosed\n", "malformed YAML at line"),
        ({**GOOD, "colour": "blue"}, "colour: unknown key"),
        ({**GOOD, "duration_s": "long"}, "duration_s"),
        ({**GOOD, "duration_s": -5}, "duration_s"),
        (with_service(workload={"kind": "constant", "rate_rps": -1}), "workload.constant.rate_rps"),
        (with_service(workload={"kind": "constant", "rate_rps": float("nan")}), "rate_rps"),
        (with_service(replicas={"initial": 2, "min": 3, "max": 1}), "min (3) must not exceed max"),
        (with_service(routing="fastest"), "services.0.routing"),
        (with_service(workload={"kind": "trace", "path": "missing.csv",
                                "timestamp_column": "t"}), "missing.csv"),
        ("- just\n- a list\n", "a scenario must be a YAML mapping"),
    ],
)
def test_bad_scenarios_give_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: object, expected: str
) -> None:
    path = write(tmp_path, data)
    code, _, err = run_cli(["scenarios", "check", str(path)], capsys)
    if "missing.csv" in expected:  # the trace is read when the scenario is simulated
        code, _, err = run_cli(["simulate", str(path), "-o", str(tmp_path / "o"), "--no-report"],
                               capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    assert expected in lines[0]
    assert "Traceback" not in err


def test_bad_override_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    code, _, err = run_cli(["simulate", str(path), "--set", "services.nope.slo_ms=3"], capsys)
    assert code == 2 and "no list item 'nope'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["simulate", str(path), "--set", "services.svc.slo_ms=-3"], capsys)
    assert code == 2 and "services.0.slo_ms" in err
    code, _, err = run_cli(["simulate", str(path), "--replications", "0"], capsys)
    assert code == 2 and "--replications" in err
    code, _, err = run_cli(["profile", "--batch-sizes", "0"], capsys)
    assert code == 2
    assert err.strip() == "simscale: error: --batch-sizes: 0 is below the minimum of 1"


def test_unknown_strategy_names_the_choices(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {**GOOD, "strategies": [{"name": "magic"}]})
    code, _, err = run_cli(["simulate", str(path), "-o", str(tmp_path / "o"), "--no-report"],
                           capsys)
    assert code == 2
    assert "unknown strategy 'magic'" in err and "static" in err


def test_model_missing_from_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = with_service(model="gpt5", service_time="profile", cold_start_s="profile")
    path = write(tmp_path, data)
    code, _, err = run_cli(["simulate", str(path), "-o", str(tmp_path / "o"), "--no-report"],
                           capsys)
    assert code == 2
    assert "model 'gpt5' is not in the profile" in err


def test_duration_too_large_for_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = with_service(workload={"kind": "constant", "rate_rps": 1e9})
    data["duration_s"] = 1e7
    path = write(tmp_path, data)
    code, _, err = run_cli(["simulate", str(path), "-o", str(tmp_path / "o"), "--no-report"],
                           capsys)
    assert code == 2
    assert "duration_s" in err and "memory" in err
    assert not (tmp_path / "o").exists()


def test_malformed_profile_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.json"
    bad.write_text("{not json", encoding="utf-8")
    code, _, err = run_cli(["profile", "show", str(bad)], capsys)
    assert code == 2 and str(bad) in err and "not valid JSON" in err
    code, _, err = run_cli(["profile", "show", str(tmp_path / "absent.json")], capsys)
    assert code == 2 and "profile file not found" in err


def test_no_traceback_from_a_real_process(tmp_path: Path) -> None:
    path = write(tmp_path, "services: {\n")
    proc = subprocess.run(
        [sys.executable, "-m", "simscale.cli", "simulate", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_scenarios_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["scenarios", "list"], capsys)
    assert code == 0 and "flash_crowd" in out
    code, out, _ = run_cli(["scenarios", "show", "flash_crowd"], capsys)
    assert code == 0 and yaml.safe_load(out)["name"] == "flash_crowd"
    code, out, _ = run_cli(["scenarios", "schema"], capsys)
    import json

    schema = json.loads(out)
    assert schema["additionalProperties"] is False and "services" in schema["properties"]


@pytest.mark.profile
def test_profile_flag_errors_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    code, _, err = run_cli(["profile", "--models", "nope", "-o", "/nonexistent/p.json"], capsys)
    assert code == 2
    assert err.strip().startswith("simscale: error: --models: unknown model 'nope'")
    import torch

    if not torch.cuda.is_available():
        code, _, err = run_cli(["profile", "--device", "cuda"], capsys)
        assert code == 2 and err.startswith("simscale: error: --device: ") and "GPU" in err
