"""The CLI's handling of bad input: one line naming the file and field, exit status 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from simscale.cli import main

#: the ``tiny_scenario`` fixture (tests/conftest.py): changes -> the scenario's YAML data
Tiny = Callable[..., dict[str, Any]]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def write(tmp_path: Path, data: object, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("data", "expected"),  # data: YAML text, or the changes to the tiny scenario
    [
        ("name: [unclosed\n", "malformed YAML at line"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"duration_s": "long"}, "duration_s"),
        ({"duration_s": -5}, "duration_s"),
        ({"svc_workload": {"kind": "constant", "rate_rps": -1}}, "workload.constant.rate_rps"),
        ({"svc_workload": {"kind": "constant", "rate_rps": float("nan")}}, "rate_rps"),
        ({"svc_replicas": {"initial": 2, "min": 3, "max": 1}}, "min (3) must not exceed max"),
        ({"svc_routing": "fastest"}, "services.0.routing"),
        ({"svc_workload": {"kind": "trace", "path": "missing.csv", "timestamp_column": "t"}},
         "missing.csv"),
        ("- just\n- a list\n", "a scenario must be a YAML mapping"),
    ],
)
def test_bad_scenarios_give_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_scenario: Tiny,
    data: str | dict[str, Any], expected: str
) -> None:
    path = write(tmp_path, data if isinstance(data, str) else tiny_scenario(**data))
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


def test_bad_override_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                tiny_scenario: Tiny) -> None:
    path = write(tmp_path, tiny_scenario())
    code, _, err = run_cli(["simulate", str(path), "--set", "services.nope.slo_ms=3"], capsys)
    assert code == 2 and "no list item 'nope'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["simulate", str(path), "--set", "services.svc.slo_ms=-3"], capsys)
    assert code == 2 and "services.0.slo_ms" in err
    code, _, err = run_cli(["simulate", str(path), "--replications", "0"], capsys)
    assert code == 2 and "--replications" in err
    code, _, err = run_cli(["profile", "--batch-sizes", "0"], capsys)
    assert code == 2
    assert err.strip() == "simscale: error: --batch-sizes: 0 is below the minimum of 1"


def test_unknown_strategy_names_the_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            tiny_scenario: Tiny) -> None:
    path = write(tmp_path, tiny_scenario(strategies=[{"name": "magic"}]))
    code, _, err = run_cli(["simulate", str(path), "-o", str(tmp_path / "o"), "--no-report"],
                           capsys)
    assert code == 2
    assert "unknown strategy 'magic'" in err and "static" in err


def test_model_missing_from_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    tiny_scenario: Tiny) -> None:
    data = tiny_scenario(svc_model="gpt5", svc_service_time="profile", svc_cold_start_s="profile")
    path = write(tmp_path, data)
    code, _, err = run_cli(["simulate", str(path), "-o", str(tmp_path / "o"), "--no-report"],
                           capsys)
    assert code == 2
    assert "model 'gpt5' is not in the profile" in err


def test_duration_too_large_for_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       tiny_scenario: Tiny) -> None:
    data = tiny_scenario(svc_workload={"kind": "constant", "rate_rps": 1e9}, duration_s=1e7)
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
