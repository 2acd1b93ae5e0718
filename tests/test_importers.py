"""Importers of real autoscaler configurations (HPA, KEDA, Knative, Ray Serve).

Each mapping is checked against the defaults its project documents (cited per test), an
imported HPA and Knative Service simulate exactly as the built-ins with the same parameters,
and every refusal is one line naming the file and the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from simscale.api import simulate
from simscale.cli import main
from simscale.errors import UserError
from simscale.simulator.scenario import load_scenario
from simscale.strategies import (
    Observation,
    ReplicaCounts,
    ServiceContext,
    SizeOption,
    make_strategy,
)
from simscale.strategies.importers import import_file

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "autoscalers"
Tiny = Callable[..., dict[str, Any]]


def write(tmp_path: Path, data: Any, name: str = "a.yaml") -> Path:
    path = tmp_path / name
    if isinstance(data, list):
        text = "---\n".join(yaml.safe_dump(d) for d in data)
    else:
        text = data if isinstance(data, str) else yaml.safe_dump(data)
    path.write_text(text, encoding="utf-8")
    return path


def hpa(spec: dict[str, Any], api: str = "autoscaling/v2", name: str = "web") -> dict[str, Any]:
    return {"apiVersion": api, "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name}, **spec}}


def knative(annotations: dict[str, str], cc: int | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"annotations": annotations},
                                "spec": {"containers": [{"image": "x"}]}}
    if cc is not None:
        template["spec"]["containerConcurrency"] = cc
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "kn"}, "spec": {"template": template}}


def keda(trigger: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "so"},
            "spec": {"scaleTargetRef": {"name": "web"}, "triggers": [trigger], **spec}}


PROMETHEUS = {"type": "prometheus", "metadata": {"serverAddress": "http://p:9090",
                                                 "query": "sum(rate(x[1m]))", "threshold": "5"}}
CPU_UTIL_60 = [{"type": "Resource", "resource": {"name": "cpu", "target": {
    "type": "Utilization", "averageUtilization": 60}}}]


# ----------------------------------------------------------------- same figures as built-ins


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("strategy", "label", "wall_s")}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _compare(tmp_path: Path, tiny: Tiny, imported: dict[str, Any],
             builtin: dict[str, Any]) -> None:
    data = tiny(duration_s=240, svc_workload={"kind": "step", "steps": [
        {"at_s": 0, "rate_rps": 30}, {"at_s": 120, "rate_rps": 4}]},
        strategies=[imported, builtin])
    data["__base_dir__"] = str(tmp_path)
    runs = simulate(data).summary["runs"]
    assert runs[0]["label"] == "imported" and runs[1]["label"] == "builtin"
    assert runs[0]["events"], "the run should scale"
    assert _same(_figures(runs[0]), _figures(runs[1]))


def test_imported_hpa_simulates_exactly_as_the_builtin(tmp_path: Path, tiny_scenario: Tiny
                                                       ) -> None:
    """averageUtilization 60, no behavior, min/max as the service's: the built-in hpa with
    target_utilization 0.6 on the controller's path without behavior (behavior: false) and
    nothing else."""
    write(tmp_path, hpa({"minReplicas": 1, "maxReplicas": 3, "metrics": CPU_UTIL_60}))
    _compare(tmp_path, tiny_scenario, {"import": "a.yaml", "label": "imported"},
             {"name": "hpa", "target_utilization": 0.6, "behavior": False, "label": "builtin"})


def test_imported_knative_simulates_exactly_as_kpa(tmp_path: Path, tiny_scenario: Tiny) -> None:
    write(tmp_path, knative({"autoscaling.knative.dev/target": "10",
                             "autoscaling.knative.dev/min-scale": "1"}))
    _compare(tmp_path, tiny_scenario, {"import": "a.yaml", "label": "imported"},
             {"name": "kpa", "target_concurrency": 10, "label": "builtin"})


def test_hpa_example_entry_matches_its_builtin_parameters(tmp_path: Path,
                                                          tiny_scenario: Tiny) -> None:
    result = import_file(EXAMPLES / "hpa.yaml")
    _compare(tmp_path, tiny_scenario, {"import": str(EXAMPLES / "hpa.yaml"), "label": "imported"},
             {"name": "hpa", **result.params, "label": "builtin"})


# ----------------------------------------------------------------- documented defaults


def test_hpa_v2_defaults(tmp_path: Path) -> None:
    """kubernetes.io HPA docs and pkg/apis/autoscaling/v2/defaults.go: minReplicas 1, cpu at
    80 %, scaleUp 0 s / Max / 4 Pods and 100 Percent per 15 s, scaleDown 300 s / Max / 100
    Percent per 15 s; controller flags: tolerance 0.1, sync period 15 s, downscale
    stabilization 300 s. Without behavior the controller's own path (normalizeDesiredReplicas)
    is used, with no policies."""
    result = import_file(write(tmp_path, hpa({"maxReplicas": 10})))
    assert result.strategy == "hpa"
    p = result.params
    assert (p["min_replicas"], p["max_replicas"]) == (1, 10)
    assert (p["metric"], p["target_utilization"]) == ("utilization", 0.8)
    assert p["behavior"] is False and p["scale_down_stabilization_s"] == 300
    assert not any(k.startswith("scale_up") or k.endswith("policies") for k in result.mapped)
    assert (p["tolerance"], p["sync_period_s"]) == (0.1, 15.0)
    assert any(n.startswith("spec.behavior: absent") for n in result.notes)
    assert any("stays there" in n for n in result.notes)  # minReplicas 1, target at zero
    p = import_file(write(tmp_path, hpa({"maxReplicas": 10, "behavior": {}}))).params
    assert p["behavior"] is True
    assert p["scale_up_stabilization_s"] == 0 and p["scale_down_stabilization_s"] == 300
    assert p["scale_up_policies"] == [{"type": "Pods", "value": 4, "period_s": 15.0},
                                      {"type": "Percent", "value": 100, "period_s": 15.0}]
    assert p["scale_down_policies"] == [{"type": "Percent", "value": 100, "period_s": 15.0}]
    assert (p["scale_up_select"], p["scale_down_select"]) == ("Max", "Max")
    assert p["tolerance"] == 0.1 and p["scale_up_tolerance"] is None


def test_hpa_v1_and_behavior(tmp_path: Path) -> None:
    v1 = import_file(write(tmp_path, hpa({"maxReplicas": 5, "targetCPUUtilizationPercentage": 50},
                                         api="autoscaling/v1")))
    assert v1.params["target_utilization"] == 0.5
    v1_default = import_file(write(tmp_path, hpa({"maxReplicas": 5}, api="autoscaling/v1")))
    assert v1_default.params["target_utilization"] == 0.8
    full = import_file(write(tmp_path, hpa({"minReplicas": 2, "maxReplicas": 20, "behavior": {
        "scaleUp": {"stabilizationWindowSeconds": 60, "selectPolicy": "Min", "policies": [
            {"type": "Pods", "value": 2, "periodSeconds": 60}]},
        "scaleDown": {"selectPolicy": "Disabled"}}, "metrics": CPU_UTIL_60})))
    p = full.params
    assert p["scale_up_stabilization_s"] == 60 and p["scale_up_select"] == "Min"
    assert p["scale_up_policies"] == [{"type": "Pods", "value": 2, "period_s": 60.0}]
    assert p["scale_down_select"] == "Disabled" and p["scale_down_stabilization_s"] == 300
    assert p["min_replicas"] == 2


def test_hpa_metric_kinds(tmp_path: Path) -> None:
    cores = import_file(write(tmp_path, hpa({"maxReplicas": 4, "metrics": [{
        "type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "AverageValue", "averageValue": "500m"}}}]})))
    assert cores.params["target_cpu_cores"] == 0.5
    pods = {"type": "Pods", "pods": {"metric": {"name": "inflight"}, "target": {
        "type": "AverageValue", "averageValue": "3"}}}
    got = import_file(write(tmp_path, hpa({"maxReplicas": 4, "metrics": [pods]})),
                      metric="concurrency")
    assert (got.params["metric"], got.params["target_value"]) == ("in_flight", 3.0)
    external = {"type": "External", "external": {"metric": {"name": "qps"}, "target": {
        "type": "Value", "value": "1k"}}}
    got = import_file(write(tmp_path, hpa({"maxReplicas": 4, "metrics": [external]})),
                      metric="rps")
    assert (got.params["metric"], got.params["target_value"], got.params["target_type"]) == (
        "rps", 1000.0, "Value")


def test_hpa_several_metrics_and_tolerances(tmp_path: Path) -> None:
    """horizontal.go computeReplicasForMetrics: every metric of spec.metrics gives a count and
    the largest wins; behavior.scaleUp/scaleDown.tolerance (HPAConfigurableTolerance) are
    per direction, the cluster's 0.1 where absent."""
    pods = {"type": "Pods", "pods": {"metric": {"name": "inflight"}, "target": {
        "type": "AverageValue", "averageValue": "3"}}}
    got = import_file(write(tmp_path, hpa({"maxReplicas": 4, "metrics": CPU_UTIL_60 + [pods],
                                           "behavior": {"scaleUp": {"tolerance": 0.05}}})),
                      metric="concurrency")
    p = got.params
    assert (p["metric"], p["target_utilization"]) == ("utilization", 0.6)
    (extra,) = p["additional_metrics"]
    assert (extra["metric"], extra["target_value"], extra["target_type"]) == (
        "in_flight", 3.0, "AverageValue")
    assert (p["scale_up_tolerance"], p["tolerance"], p["scale_down_tolerance"]) == (0.05, 0.1,
                                                                                     None)
    assert any("largest of their counts" in n for n in got.notes)
    strategy = make_strategy("hpa", p)  # the built-in accepts what was mapped
    assert strategy.additional_metrics[0]["metric"] == "in_flight"


def test_knative_hpa_class_behavior_and_kpa_extras(tmp_path: Path) -> None:
    """MakeHPA (pkg/reconciler/autoscaling/hpa/resources/hpa.go): no behavior unless a window
    is set, then both stabilization windows are it. activation-scale and
    target-burst-capacity map to kpa's activation_scale and target_burst_capacity."""
    plain = import_file(write(tmp_path, knative({
        "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}))).params
    assert plain["behavior"] is False and plain["scale_down_stabilization_s"] == 300
    windowed = import_file(write(tmp_path, knative({
        "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/window": "2m"}))).params
    assert windowed["behavior"] is True
    assert (windowed["scale_up_stabilization_s"], windowed["scale_down_stabilization_s"]) == (
        120, 120)
    kpa = import_file(write(tmp_path, knative({
        "autoscaling.knative.dev/activation-scale": "3",
        "autoscaling.knative.dev/target-burst-capacity": "-1"})))
    assert (kpa.params["activation_scale"], kpa.params["target_burst_capacity"]) == (3, -1)
    assert any("target-burst-capacity: only reported" in n for n in kpa.notes)
    with pytest.raises(UserError, match="-1 or >= 0"):
        import_file(write(tmp_path, knative({
            "autoscaling.knative.dev/target-burst-capacity": "-0.5"})))


def test_keda_defaults(tmp_path: Path) -> None:
    """keda.sh ScaledObject spec: pollingInterval 30, cooldownPeriod 300,
    initialCooldownPeriod 0, minReplicaCount 0, maxReplicaCount 100; prometheus scaler:
    activationThreshold 0, metricType AverageValue."""
    got = import_file(write(tmp_path, keda(PROMETHEUS)), metric="rps")
    p = got.params
    assert got.strategy == "hpa"
    assert (p["min_replicas"], p["max_replicas"]) == (0, 100)
    assert (p["polling_interval_s"], p["cooldown_s"], p["initial_cooldown_s"]) == (30, 300, 0)
    assert (p["activation_threshold"], p["target_value"], p["target_type"]) == (0.0, 5.0,
                                                                                "AverageValue")
    assert p["metric"] == "rps" and p["scale_down_stabilization_s"] == 300
    cpu = import_file(write(tmp_path, keda({"type": "cpu", "metricType": "Utilization",
                                            "metadata": {"value": "70"}}, minReplicaCount=1)))
    assert cpu.params["target_utilization"] == 0.7 and cpu.params["activation_threshold"] is None
    behavior = {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
        "stabilizationWindowSeconds": 30}}}}
    got = import_file(write(tmp_path, keda(PROMETHEUS, advanced=behavior, fallback={
        "failureThreshold": 3, "replicas": 2})), metric="queue_length")
    assert got.params["scale_down_stabilization_s"] == 30
    assert any(n.startswith("spec.fallback") for n in got.notes)


def test_knative_defaults(tmp_path: Path) -> None:
    """knative.dev autoscaling docs / config-autoscaler: concurrency target 100 (rps 200),
    target utilization 70 %, stable window 60 s, panic window 10 %, panic threshold 200 %,
    min-scale 0, max-scale 0 (none), scale-down-delay 0, grace period 30 s, tick 2 s;
    containerConcurrency caps the concurrency target."""
    p = import_file(write(tmp_path, knative({}))).params
    assert (p["metric"], p["target_concurrency"], p["target_utilization"]) == (
        "concurrency", 100.0, 0.7)
    assert (p["stable_window_s"], p["panic_window_percentage"],
            p["panic_threshold_percentage"]) == (60, 10, 200)
    assert (p["min_replicas"], p["max_replicas"], p["scale_down_delay_s"]) == (0, None, 0)
    assert (p["scale_to_zero_grace_period_s"], p["sync_period_s"]) == (30, 2)
    assert (p["max_scale_up_rate"], p["max_scale_down_rate"]) == (1000, 2)
    rps = import_file(write(tmp_path, knative({"autoscaling.knative.dev/metric": "rps"})))
    assert (rps.params["metric"], rps.params["target_concurrency"]) == ("rps", 200.0)
    cc = import_file(write(tmp_path, knative({}, cc=8))).params
    assert cc["target_concurrency"] == 8
    capped = import_file(write(tmp_path, knative({"autoscaling.knative.dev/target": "20"}, cc=8)))
    assert capped.params["target_concurrency"] == 8
    full = import_file(write(tmp_path, knative({
        "autoscaling.knative.dev/window": "2m", "autoscaling.knative.dev/max-scale": "6",
        "autoscaling.knative.dev/scale-down-delay": "1m30s",
        "autoscaling.knative.dev/panic-threshold-percentage": "150",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "90s",
        "autoscaling.knative.dev/initial-scale": "2"}))).params
    assert (full["stable_window_s"], full["max_replicas"], full["scale_down_delay_s"]) == (
        120, 6, 90)
    assert (full["panic_threshold_percentage"], full["scale_to_zero_grace_period_s"]) == (150, 90)
    hpa_class = import_file(write(tmp_path, knative({
        "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/target": "75"})))
    assert hpa_class.strategy == "hpa" and hpa_class.params["target_utilization"] == 0.75
    assert hpa_class.params["min_replicas"] == 1


def test_ray_serve_defaults(tmp_path: Path) -> None:
    """python/ray/serve/config.py AutoscalingConfig: max_replicas 1 when absent;
    num_replicas 'auto' starts from AutoscalingConfig.default() (max_replicas 100)."""
    bare = import_file(write(tmp_path, {"autoscaling_config": {"min_replicas": 0}}))
    p = bare.params
    assert bare.strategy == "ray_serve"
    assert (p["min_replicas"], p["max_replicas"], p["target_ongoing_requests"]) == (0, 1, 2.0)
    assert (p["upscale_delay_s"], p["downscale_delay_s"]) == (30, 600)
    assert (p["metrics_interval_s"], p["look_back_period_s"]) == (10, 30)
    flat = import_file(write(tmp_path, {"target_ongoing_requests": 4, "max_replicas": 6}))
    assert flat.params["target_ongoing_requests"] == 4 and flat.params["max_replicas"] == 6
    config = {"applications": [{"name": "app", "import_path": "m:a", "deployments": [
        {"name": "A", "num_replicas": "auto"},
        {"name": "B", "autoscaling_config": {"max_replicas": 3, "upscaling_factor": 2}}]}]}
    path = write(tmp_path, config)
    auto = import_file(path, document="A")
    assert (auto.params["max_replicas"], auto.params["target_ongoing_requests"]) == (100, 2.0)
    b = import_file(path, document="app/B")
    assert (b.params["max_replicas"], b.params["upscaling_factor"], b.name) == (3, 2.0, "app/B")
    example = import_file(EXAMPLES / "ray_serve.yaml")
    assert example.params["target_ongoing_requests"] == 3 and example.params["max_replicas"] == 8


def test_multi_document_files_and_document(tmp_path: Path) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    path = write(tmp_path, [deployment, hpa({"maxReplicas": 4}, name="one")])
    assert import_file(path).name == "one"
    path = write(tmp_path, [hpa({"maxReplicas": 4}, name="one"), hpa({"maxReplicas": 7},
                                                                      name="two")])
    assert import_file(path, document="two").params["max_replicas"] == 7
    with pytest.raises(UserError, match="several autoscalers"):
        import_file(path)
    listed = write(tmp_path, {"apiVersion": "v1", "kind": "List", "items": [
        hpa({"maxReplicas": 9})]})
    assert import_file(listed).params["max_replicas"] == 9


# ----------------------------------------------------------------- refusals


@pytest.mark.parametrize(("data", "metric", "field", "words"), [
    (hpa({"maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {
        "name": "memory", "target": {"type": "Utilization", "averageUtilization": 60}}}]}),
     None, "spec.metrics[0].resource.name", "memory"),
    (hpa({"minReplicas": 2}), None, "spec.maxReplicas", "missing"),
    (hpa({"maxReplicas": 4, "metrics": CPU_UTIL_60 + [{"type": "Resource", "resource": {
        "name": "memory", "target": {"type": "Utilization", "averageUtilization": 60}}}]}),
     None, "spec.metrics[1].resource.name", "memory"),
    (hpa({"maxReplicas": 4, "metrics": [{"type": "Pods", "pods": {"metric": {"name": "q"},
                                         "target": {"type": "AverageValue", "averageValue": 1}}}]}),
     None, "spec.metrics[0].pods.metric.name", "opaque"),
    (hpa({"maxReplicas": "many"}), None, "spec.maxReplicas", "number"),
    (hpa({"maxReplicas": 4}, api="autoscaling/v2beta1"), None, "apiVersion", "v2beta1"),
    (keda({"type": "kafka", "metadata": {"topic": "t"}}), None, "spec.triggers[0].type", "kafka"),
    (keda({"type": "memory", "metadata": {"value": "60"}}, minReplicaCount=1), None,
     "spec.triggers[0].type", "memory"),
    (keda({"type": "cpu", "metadata": {"value": "60"}}), None, "spec.minReplicaCount", "cpu"),
    (keda(PROMETHEUS), None, "spec.triggers[0].metadata.query", "opaque"),
    (knative({"autoscaling.knative.dev/windw": "60s"}), None,
     "spec.template.metadata.annotations.autoscaling.knative.dev/windw", "unknown"),
    (knative({"autoscaling.knative.dev/window": "sixty"}), None,
     "spec.template.metadata.annotations.autoscaling.knative.dev/window", "duration"),
    ({"autoscaling_config": {"max_replica": 3}}, None, "autoscaling_config.max_replica",
     "not an AutoscalingConfig field"),
    ({"autoscaling_config": {"min_replicas": 4, "max_replicas": 2}}, None, "autoscaling_config",
     "refused"),
    ({"apiVersion": "apps/v1", "kind": "Deployment"}, None, None, "not an autoscaler"),
])
def test_refusals_are_one_line_naming_file_and_field(
        tmp_path: Path, data: Any, metric: str | None, field: str | None, words: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(UserError) as info:
        import_file(path, metric=metric)
    line = info.value.format()
    assert "\n" not in line and line.startswith(str(path))
    assert info.value.field == field
    assert words in line


def test_hostile_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        import_file(tmp_path / "nope.yaml")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    with pytest.raises(UserError, match="refused"):
        import_file(write(tmp_path, bomb))
    with pytest.raises(UserError, match="twice|duplicate|found duplicate"):
        import_file(write(tmp_path, "kind: HorizontalPodAutoscaler\nkind: Other\n"))


# ----------------------------------------------------------------- KEDA's operator


def _obs(time_s: float, rate_rps: float, ready: int) -> Observation:
    size = SizeOption(device="cpu", threads=1, alpha_ms=10.0, beta_ms=2.0, mean_factor=1.0,
                      scv=0.5, max_batch_size=8, price_per_hour_usd=0.1, cold_start_s=20.0)
    return Observation(
        time_s=time_s, service="svc", slo_ms=200.0, metric_lag_s=0.0,
        arrivals_per_s=np.full(60, rate_rps), completions_per_s=np.full(60, rate_rps),
        utilization_per_s=np.zeros(60), utilization_per_replica=(0.5,) * ready, queue_length=0,
        in_flight=0, latency_p50_ms=math.nan, latency_p95_ms=math.nan, latency_p99_ms=math.nan,
        latency_window_s=60.0, replicas=ReplicaCounts(ready=ready), min_replicas=0,
        max_replicas=10, current_size=size, size_options=(size,))


def test_keda_scales_to_zero_after_cooldown_and_back_when_active(tmp_path: Path) -> None:
    params = import_file(write(tmp_path, keda(PROMETHEUS, cooldownPeriod=60,
                                              pollingInterval=30)), metric="rps").params
    strategy = make_strategy("hpa", params)
    size = _obs(0, 0, 0).current_size
    strategy.setup(ServiceContext(service="svc", slo_ms=200.0, min_replicas=0, max_replicas=10,
                                  duration_s=600.0, initial_replicas=1, size_options=(size,),
                                  initial_size=size))
    # polls at t = 15, 45, 75, 105 (every 30 s from the first decision)
    # 4 rps (over the 0.5 activation threshold) on one replica: the HPA keeps 1 (5 per pod)
    assert strategy.decide(_obs(15, 4.0, 1)).replicas == 1
    # idle from then on: zero once 60 s have passed since the last activity seen (t=15)
    assert strategy.decide(_obs(30, 0.0, 1)).replicas == 1
    assert strategy.decide(_obs(45, 0.0, 1)).replicas == 1
    assert strategy.decide(_obs(60, 0.0, 1)).replicas == 1
    assert strategy.decide(_obs(75, 0.0, 1)).replicas == 0
    # requests again: seen at the next poll (t=105), then one replica
    assert strategy.decide(_obs(90, 2.0, 0)).replicas == 0
    assert strategy.decide(_obs(105, 2.0, 0)).replicas == 1


# ----------------------------------------------------------------- scenario and CLI


def test_scenario_entry(tmp_path: Path, tiny_scenario: Tiny) -> None:
    write(tmp_path, knative({"autoscaling.knative.dev/target": "5"}), "kn.yaml")
    data = tiny_scenario(strategies=[{"import": "kn.yaml"},
                                     {"import": "kn.yaml", "label": "slow",
                                      "scale_down_delay_s": 60}])
    scenario_path = write(tmp_path, data, "scenario.yaml")
    sc = load_scenario(scenario_path)
    first, second = sc.strategies
    assert (first.name, first.display_label, first.params["target_concurrency"]) == ("kpa", "kn",
                                                                                     5.0)
    assert second.params["scale_down_delay_s"] == 60
    assert first.imported_from["file"] == str(tmp_path / "kn.yaml")
    assert "imported_from" not in first.model_dump()
    bad = tiny_scenario(strategies=[{"import": "kn.yaml", "name": "kpa"}])
    with pytest.raises(UserError, match="either name or import"):
        load_scenario(write(tmp_path, bad, "bad.yaml"))
    typo = tiny_scenario(strategies=[{"import": "kn.yaml", "scale_down_dely_s": 1}])
    with pytest.raises(UserError, match="scale_down_dely_s"):
        simulate(load_scenario(write(tmp_path, typo, "typo.yaml")))


def test_example_scenario_checks_and_simulates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["scenarios", "check", str(EXAMPLES / "dry_run.yaml")])
    assert exc.value.code in (0, None)
    result = simulate(EXAMPLES / "dry_run.yaml", strategies=["k8s-hpa", "ray-serve"])
    assert [r["label"] for r in result.summary["runs"]] == ["k8s-hpa", "ray-serve"]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_cli_strategies_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["strategies", "import", str(EXAMPLES / "hpa.yaml")], capsys)
    assert code == 0
    assert "-> strategy hpa" in out and "scale_down_stabilization_s" in out
    assert "spec.scaleTargetRef" in out
    code, out, _ = _cli(["strategies", "import", str(EXAMPLES / "keda.yaml"), "--metric", "rps",
                         "--json"], capsys)
    assert code == 0 and '"activation_threshold": 0.5' in out
    bad = write(tmp_path, hpa({"maxReplicas": 4, "metrics": [{"type": "Resource", "resource": {
        "name": "memory", "target": {"type": "Utilization", "averageUtilization": 60}}}]}))
    code, _, err = _cli(["strategies", "import", str(bad)], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "spec.metrics[0].resource.name" in err
