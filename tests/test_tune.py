"""``simscale tune`` (issue #14, part 2): the target grammar, the search spaces, the study
(deterministic, infeasible targets, parallel equal to serial), tune.json, the write-back of
every kind of autoscaler file (round trip through its importer) and the CLI's errors.

Every scenario here is small (a few seconds simulated, explicit service times); no test
depends on the machine's speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simscale.errors import UserError
from simscale.simulator.runner import run_scenario
from simscale.simulator.scenario import load_scenario
from simscale.strategies import strategy_class
from simscale.strategies.importers import import_file
from simscale.strategies.importers.export import export_file, writable_params
from simscale.sweeps.tune import tune
from simscale.sweeps.tune_output import write_outputs
from simscale.sweeps.tune_space import TUNE_SPACES, Target, parse_target, search_space

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "autoscalers"


def _scenario(tiny_scenario: Any, tmp_path: Path, strategies: list[dict[str, Any]],
              **changes: Any) -> Any:
    """A tiny step load (4 -> 24 requests/s at 15 s for 40 s) on 1..4 replicas, written to
    ``tmp_path/tiny.yaml`` and loaded (so that imports resolve beside it)."""
    data = tiny_scenario(
        duration_s=40, svc_workload={"kind": "step", "steps": [
            {"at_s": 0, "rate_rps": 4}, {"at_s": 15, "rate_rps": 24}]},
        svc_replicas={"initial": 1, "min": 1, "max": 4}, svc_cost_per_replica_hour=0.1,
        strategies=strategies, **changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_scenario(path)


HPA = {"name": "hpa", "sync_period_s": 5}


# ---------------------------------------------------------------------------- the target
@pytest.mark.parametrize("text,expected", [
    ("slo_attainment>=0.99", Target("slo_attainment", ">=", 0.99)),
    (" latency_ms.p95 <= 500 ", Target("latency_ms.p95", "<=", 500.0)),
    ("dropped<=0", Target("dropped", "<=", 0.0)),
    ("cost_usd<=1e-2", Target("cost_usd", "<=", 0.01)),
])
def test_target_grammar(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["", "slo_attainment", "slo_attainment>0.99",
                                  "slo_attainment=>0.99", "slo_attainment>=high",
                                  "nonsense>=1", "latency_ms.p42<=5", "wall_s<=1",
                                  "slo_attainment>=0.9 extra"])
def test_bad_target_is_one_user_error_naming_the_flag(text: str) -> None:
    with pytest.raises(UserError) as err:
        parse_target(text)
    assert err.value.source == "--target"
    assert "\n" not in err.value.format()


def test_target_violation_and_worst() -> None:
    t = parse_target("slo_attainment>=0.99")
    assert t.met(0.99) and not t.met(0.98) and not t.met(float("nan"))
    assert t.violation(1.0) == 0.0
    assert t.violation(0.9) == pytest.approx(0.09 / 0.99)
    assert t.worst([0.995, 0.97, 1.0]) == 0.97
    assert parse_target("latency_ms.p95<=500").worst([100.0, 700.0]) == 700.0


# ---------------------------------------------------------------------------- the space
@pytest.mark.parametrize("name", sorted(TUNE_SPACES))
def test_every_range_is_a_parameter_and_every_grid_value_is_accepted(name: str) -> None:
    model = strategy_class(name).Params
    for dim in TUNE_SPACES[name]:
        assert dim.name in model.model_fields, (name, dim.name)
    given = model.model_validate({}).model_dump()
    for dim in search_space(name, given, model):
        for k in (dim.dim.low, dim.dim.high, (dim.dim.low + dim.dim.high) // 2):
            model.model_validate({**given, dim.name: dim.dim.value(k, dim.integer)})


def test_space_follows_the_entry_and_the_file() -> None:
    model = strategy_class("hpa").Params
    plain = {d.name for d in search_space("hpa", model.model_validate({}).model_dump(), model)}
    assert "target_utilization" in plain and "target_value" not in plain
    assert "cooldown_s" not in plain  # KEDA's, only with an activation threshold
    rps = model.model_validate({"metric": "rps"}).model_dump()
    assert "target_value" in {d.name for d in search_space("hpa", rps, model)}
    # an imported manifest: only what it can carry (no controller sync period, no tolerance
    # where the manifest sets none)
    writable = writable_params({"file": str(EXAMPLES / "hpa.yaml"), "document": None})
    defaults = model.model_validate({}).model_dump()
    names = {d.name for d in search_space("hpa", defaults, model, writable)}
    assert "sync_period_s" not in names and "tolerance" not in names
    assert "target_utilization" in names
    with pytest.raises(UserError, match="no search space") as err:
        search_space("oracle", {}, strategy_class("oracle").Params)
    assert err.value.source == "--strategy"


def test_knative_target_is_capped_by_container_concurrency() -> None:
    writable = writable_params({"file": str(EXAMPLES / "knative.yaml"), "document": None})
    assert writable["target_concurrency"][1] == 8.0  # containerConcurrency: 8
    model = strategy_class("kpa").Params
    dims = {d.name: d for d in search_space("kpa", model.model_validate({}).model_dump(),
                                            model, writable)}
    top = dims["target_concurrency"]
    assert top.dim.value(top.dim.high, top.integer) <= 8.0


# ---------------------------------------------------------------------------- the study
def test_same_seed_same_best_and_the_winner_reproduces(tiny_scenario: Any,
                                                       tmp_path: Path) -> None:
    sc = _scenario(tiny_scenario, tmp_path, [HPA])
    first = tune(sc, "hpa", trials=8, seed=3)
    again = tune(sc, "hpa", trials=8, seed=3)
    a, b = first["services"]["svc"], again["services"]["svc"]
    assert a["best"]["params"] == b["best"]["params"]
    assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
    assert [t["cost_usd"] for t in a["trials"]] == [t["cost_usd"] for t in b["trials"]]
    # the baseline is trial 0 (its values lie on the grid) and equals simulate's figures
    assert a["trials"][0]["baseline"] and a["baseline"]["trial"] == 0
    assert len(a["trials"]) == 9
    plain = run_scenario(sc, strategies=["hpa"], seed=3).summary["runs"][0]
    assert a["baseline"]["cost_usd"] == plain["cost_usd"]
    assert a["baseline"]["slo_attainment"] == plain["slo_attainment"]
    # the written entry, simulated, gives the best trial's figures (common random numbers)
    entry = {k: v for k, v in a["entry"].items()}
    sc2 = _scenario(tiny_scenario, tmp_path, [{**entry, "label": "won"}])
    won = run_scenario(sc2, seed=3).summary["runs"][0]
    assert won["cost_usd"] == a["best"]["cost_usd"]
    assert won["slo_attainment"] == a["best"]["target_value"]


def test_best_is_the_cheapest_feasible_and_never_worse_than_the_baseline(
        tiny_scenario: Any, tmp_path: Path) -> None:
    sc = _scenario(tiny_scenario, tmp_path, [HPA])
    svc = tune(sc, "hpa", trials=10, seed=1, target="slo_attainment>=0.5")["services"]["svc"]
    feasible = [t for t in svc["trials"] if t["feasible"]]
    assert feasible and svc["best"]["feasible"]
    assert svc["best"]["cost_usd"] == min(t["cost_usd"] for t in feasible)
    if svc["baseline"]["feasible"]:
        assert svc["best"]["cost_usd"] <= svc["baseline"]["cost_usd"]


def test_a_target_nobody_meets_gives_the_closest(tiny_scenario: Any, tmp_path: Path) -> None:
    sc = _scenario(tiny_scenario, tmp_path, [HPA])
    result = tune(sc, "hpa", trials=6, seed=2, target="latency_ms.p95<=0.001")
    svc = result["services"]["svc"]
    assert not svc["best"]["feasible"] and not svc["baseline"]["feasible"]
    assert not any(t["feasible"] for t in svc["trials"])
    closest = min(t["violation"] for t in svc["trials"])
    assert svc["best"]["violation"] == closest
    assert svc["best"]["target_value"] == min(t["target_value"] for t in svc["trials"])


def test_replications_mean_and_worst(tiny_scenario: Any, tmp_path: Path) -> None:
    sc = _scenario(tiny_scenario, tmp_path, [HPA])
    svc = tune(sc, "hpa", trials=3, replications=3, seed=5)["services"]["svc"]
    base = svc["baseline"]
    assert [r["seed"] for r in base["replications"]] == [5, 6, 7]
    values = [r["slo_attainment"] for r in base["replications"]]
    assert base["target_value"] == pytest.approx(sum(values) / 3)
    assert base["target_worst"] == min(values)
    assert base["feasible"] == (base["target_value"] >= 0.99)
    # common random numbers: replication r of every trial has the same arrivals
    arrivals = {tuple(r["seed"] for r in t["replications"]) for t in svc["trials"]}
    assert arrivals == {(5, 6, 7)}


@pytest.mark.slow
def test_parallel_equals_serial(tiny_scenario: Any, tmp_path: Path) -> None:
    sc = _scenario(tiny_scenario, tmp_path, [HPA])
    serial = tune(sc, "hpa", trials=5, replications=2, seed=4)
    parallel = tune(sc, "hpa", trials=5, replications=2, seed=4, workers=2)

    def numbers(res: dict[str, Any]) -> list[Any]:
        return [(t["params"], t["mean"], t["replications"]) for t in
                res["services"]["svc"]["trials"]]

    assert numbers(serial) == numbers(parallel)
    assert serial["services"]["svc"]["best"]["params"] == \
        parallel["services"]["svc"]["best"]["params"]


# ---------------------------------------------------------------------------- outputs
def test_tune_json_report_and_strategy_entry(tiny_scenario: Any, tmp_path: Path) -> None:
    sc = _scenario(tiny_scenario, tmp_path, [{**HPA, "label": "mine"}])
    result = tune(sc, "mine", trials=4, seed=1)
    paths = write_outputs(result, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "tune.json").read_text())
    assert data["target"] == {"figure": "slo_attainment", "op": ">=", "value": 0.99,
                              "text": "slo_attainment>=0.99"}
    assert data["strategy"] == "mine" and data["strategy_name"] == "hpa"
    svc = data["services"]["svc"]
    for part in ("best", "baseline"):
        assert {"params", "cost_usd", "slo_attainment", "feasible"} <= set(svc[part])
        assert isinstance(svc[part]["feasible"], bool)
        assert set(svc[part]["params"]) == {d["name"] for d in data["space"]}
    assert len(svc["trials"]) == 5
    for trial in svc["trials"]:
        assert {"trial", "params", "cost_usd", "slo_attainment", "feasible", "target_value",
                "target_worst", "replications"} <= set(trial)
    page = paths["report"].read_text(encoding="utf-8")
    assert "Pareto front" in page and "Plotly.newPlot" in page and "baseline" in page
    entries = yaml.safe_load(paths["strategy"].read_text())
    assert entries[0]["name"] == "hpa" and entries[0]["label"] == "mine-tuned"
    assert entries[0]["sync_period_s"] == svc["best"]["params"]["sync_period_s"]
    assert data["files"]["strategy"] == str(paths["strategy"])


@pytest.mark.parametrize("example,metric", [("hpa.yaml", None), ("keda.yaml", "rps"),
                                            ("knative.yaml", None), ("ray_serve.yaml", None)])
def test_tuning_an_imported_file_writes_the_same_kind_back(
        tiny_scenario: Any, tmp_path: Path, example: str, metric: str | None) -> None:
    shutil.copy(EXAMPLES / example, tmp_path / example)
    entry = {"import": example, "label": "prod", **({"metric": metric} if metric else {})}
    sc = _scenario(tiny_scenario, tmp_path, [entry])
    result = tune(sc, "prod", trials=4, seed=1, target="slo_attainment>=0.5")
    out = tmp_path / "out"
    paths = write_outputs(result, out)
    svc = result["services"]["svc"]
    tuned = paths["export:svc"]
    assert tuned.name == example.replace(".yaml", ".tuned.yaml")
    back = import_file(tuned, metric=metric)
    assert back.strategy == sc.strategies[0].name
    for name, value in svc["best"]["params"].items():
        assert back.params[name] == value, name
    # the strategy entry imports the tuned file and simulates as the best trial did
    entries = yaml.safe_load(paths["strategy"].read_text())
    assert entries[0]["import"] == tuned.name
    data = tiny_scenario(duration_s=40, svc_workload={"kind": "step", "steps": [
        {"at_s": 0, "rate_rps": 4}, {"at_s": 15, "rate_rps": 24}]},
        svc_replicas={"initial": 1, "min": 1, "max": 4}, svc_cost_per_replica_hour=0.1,
        strategies=entries)
    (out / "again.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    run = run_scenario(load_scenario(out / "again.yaml"), seed=1).summary["runs"][0]
    assert run["cost_usd"] == svc["best"]["cost_usd"]


# ---------------------------------------------------------------------------- write-back
def _new_value(name: str, old: Any) -> Any:
    """A different value the file's format can hold exactly."""
    table = {"target_utilization": 0.57, "target_cpu_cores": 0.65, "target_value": 2.5,
             "scale_up_tolerance": 0.05, "scale_down_tolerance": 0.15,
             "scale_up_stabilization_s": 30.0,
             "scale_down_stabilization_s": 45.0, "cooldown_s": 90.0,
             "polling_interval_s": 20.0, "initial_cooldown_s": 10.0,
             "activation_threshold": 1.5, "target_concurrency": 3.5,
             "stable_window_s": 42.0, "panic_window_percentage": 12.0,
             "panic_threshold_percentage": 250.0, "scale_down_delay_s": 15.0,
             "target_ongoing_requests": 1.7, "upscale_delay_s": 4.0,
             "downscale_delay_s": 33.0, "look_back_period_s": 12.5, "metrics_interval_s": 5.0,
             "upscaling_factor": 1.5,
             "downscaling_factor": 0.5, "smoothing_factor": 0.8,
             "downscale_to_zero_delay_s": 60.0, "upscale_smoothing_factor": 1.2,
             "downscale_smoothing_factor": 0.7, "initial_replicas": 2}
    value = table[name]
    assert value != old, name
    return value


MULTI = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: resnet50}
spec: {replicas: 1}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: resnet50}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: resnet50}
  minReplicas: 1
  maxReplicas: 8
  behavior:
    scaleUp: {tolerance: 0.1}
    scaleDown: {tolerance: "100m", stabilizationWindowSeconds: 120}
"""
V1 = """\
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: old}
spec: {minReplicas: 1, maxReplicas: 5, targetCPUUtilizationPercentage: 70,
       scaleTargetRef: {kind: Deployment, name: old}}
"""
BARE_RAY = "target_ongoing_requests: 4\nmax_replicas: 6\n"
KNATIVE_HPA = """\
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: svc}
spec:
  template:
    metadata:
      annotations: {autoscaling.knative.dev/class: hpa.autoscaling.knative.dev,
                    autoscaling.knative.dev/target: "70"}
"""


@pytest.mark.parametrize("source,metric", [
    ("hpa.yaml", None), ("keda.yaml", "rps"), ("knative.yaml", None), ("ray_serve.yaml", None),
    (MULTI, None), (V1, None), (BARE_RAY, None), (KNATIVE_HPA, None)],
    ids=["hpa", "keda", "knative", "ray_serve", "hpa-multi-doc-tolerance", "hpa-v1",
         "ray-bare", "knative-hpa-class"])
def test_export_then_import_round_trips(tmp_path: Path, source: str,
                                        metric: str | None) -> None:
    if source.endswith(".yaml") and "\n" not in source:
        path = EXAMPLES / source
    else:
        path = tmp_path / "in.yaml"
        path.write_text(source, encoding="utf-8")
    origin = {"file": str(path), "document": None, "metric": metric}
    original = import_file(path, metric=metric)
    writable = writable_params(origin)
    changed = {name: _new_value(name, original.params.get(name))
               for name in writable if name not in ("min_replicas", "max_replicas")}
    out = tmp_path / "out.yaml"
    changes = export_file(origin, changed, out, header="tuned\nby a test")
    assert changes and out.read_text().startswith("# tuned\n# by a test\n")
    back = import_file(out, metric=metric)
    assert back.strategy == original.strategy
    for name, value in back.params.items():
        assert value == changed.get(name, original.params[name]), name
    # every other document and field is kept
    before = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    after = list(yaml.safe_load_all(out.read_text()))
    assert len(before) == len(after)
    assert before[0].get("kind") == after[0].get("kind")
    if source.startswith("apiVersion: apps/v1"):  # the Deployment beside the HPA
        assert after[0] == before[0]


def test_export_with_no_change_keeps_the_object(tmp_path: Path) -> None:
    origin = {"file": str(EXAMPLES / "hpa.yaml"), "document": None}
    assert export_file(origin, {}, tmp_path / "same.yaml") == []
    assert yaml.safe_load((tmp_path / "same.yaml").read_text()) == yaml.safe_load(
        (EXAMPLES / "hpa.yaml").read_text())


# ---------------------------------------------------------------------------- the CLI
def _cli(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    from simscale.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.mark.parametrize("extra,flag", [
    (["--strategy", "hpa", "--target", "slo>0.9"], "--target"),
    (["--strategy", "nope"], "--strategy"),
    (["--strategy", "static", "--service", "nope"], "--service"),
    (["--strategy", "oracle"], "--strategy"),
    (["--strategy", "hpa", "--address", "ray://x:1"], "--address"),
])
def test_cli_errors_are_one_line_exit_2(tiny_scenario: Any, tmp_path: Path, capsys: Any,
                                        extra: list[str], flag: str) -> None:
    _scenario(tiny_scenario, tmp_path, [HPA, {"name": "static"}, {"name": "oracle"}])
    code, _, err = _cli(["tune", str(tmp_path / "tiny.yaml"), *extra, "-o",
                         str(tmp_path / "out")], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simscale: error: ") and flag in lines[0]


def test_cli_without_optuna_says_how_to_install(tiny_scenario: Any, tmp_path: Path,
                                                capsys: Any, monkeypatch: Any) -> None:
    _scenario(tiny_scenario, tmp_path, [HPA])
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    code, _, err = _cli(["tune", str(tmp_path / "tiny.yaml"), "--strategy", "hpa", "-o",
                         str(tmp_path / "out")], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        "simscale: error: simscale tune: tuning needs Optuna: pip install 'simscale[tune]'"]


def test_cli_tune_prints_and_writes(tiny_scenario: Any, tmp_path: Path, capsys: Any) -> None:
    _scenario(tiny_scenario, tmp_path, [HPA])
    code, out, _ = _cli(["tune", str(tmp_path / "tiny.yaml"), "--strategy", "hpa",
                         "--trials", "3", "-o", str(tmp_path / "out")], capsys)
    assert code == 0
    assert "baseline" in out and "best" in out and "tune.json" in out
    for name in ("tune.json", "tune.html", "strategy.yaml"):
        assert (tmp_path / "out" / name).is_file()


def test_tune_help_does_not_import_optuna(tmp_path: Path) -> None:
    probe = ("import sys\nfrom simscale.cli import main\ntry:\n    main(['tune', '--help'])\n"
             "except SystemExit:\n    pass\nprint('OPTUNA' if 'optuna' in sys.modules else "
             "'NONE')\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "NONE"
