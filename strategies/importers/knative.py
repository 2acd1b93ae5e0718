"""Knative ``Service`` (``serving.knative.dev/v1``) autoscaling annotations onto the built-in
``kpa`` (class ``kpa.autoscaling.knative.dev``) or ``hpa`` (class ``hpa.autoscaling.knative.dev``).

The annotations live on the revision template (``spec.template.metadata.annotations``).
Defaults are Knative's ``config-autoscaler`` ConfigMap
(https://knative.dev/docs/serving/autoscaling/ and its pages on targets, windows, scale bounds;
``pkg/autoscaler/config``): container-concurrency-target-default 100, requests-per-second-target
-default 200, container-concurrency-target-percentage 70, stable-window 60s, panic-window-
percentage 10, panic-threshold-percentage 200, max-scale-up-rate 1000, max-scale-down-rate 2,
scale-to-zero-grace-period 30s, min-scale 0, max-scale 0 (no limit), initial-scale 1,
scale-down-delay 0s, scale-to-zero-pod-retention-period 0s, tick-interval 2s, activation-scale
1, target-burst-capacity 200 (only reported: the activator it steers is not modelled). The
HPA class creates an HPA without ``behavior`` unless ``window`` is set, and then one whose
scale-up and scale-down stabilization windows are that window
(``pkg/reconciler/autoscaling/hpa/resources/hpa.go`` ``MakeHPA``). The target
resolves as ``ResolveMetricTarget`` (``pkg/reconciler/autoscaling/resources/target.go``): with
``containerConcurrency`` set, the concurrency target is at most it.
"""

from __future__ import annotations

from typing import Any

from simscale.strategies.importers.common import (
    MEMORY_REASON,
    Fields,
    ImportedStrategy,
    object_name,
    parse_duration_s,
)
from simscale.strategies.importers.hpa import (
    DEFAULT_SYNC_PERIOD_S,
    behavior_params,
)

PREFIX = "autoscaling.knative.dev/"
KPA_CLASS = "kpa.autoscaling.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"
#: annotations read; the rest of the prefix are either noted as not simulated or refused
KNOWN = {"class", "metric", "target", "target-utilization-percentage", "window",
         "panic-window-percentage", "panic-threshold-percentage", "min-scale", "max-scale",
         "initial-scale", "scale-down-delay", "scale-to-zero-pod-retention-period",
         "minScale", "maxScale", "activation-scale", "target-burst-capacity"}
NOT_SIMULATED = {
    "initial-scale": "the run starts with the scenario's replicas.initial",
}
#: config-autoscaler defaults
DEFAULTS: dict[str, Any] = {
    "concurrency_target": 100.0, "rps_target": 200.0, "target_percentage": 70.0,
    "stable_window_s": 60.0, "panic_window_percentage": 10.0,
    "panic_threshold_percentage": 200.0, "max_scale_up_rate": 1000.0,
    "max_scale_down_rate": 2.0, "scale_to_zero_grace_period_s": 30.0, "tick_s": 2.0,
}


def import_knative(obj: dict[str, Any], fields: Fields, hint: str | None) -> ImportedStrategy:
    """Map a Knative Service's (or Configuration's) revision-template annotations."""
    spec = fields.mapping(obj.get("spec"), "spec", required=True)
    template = fields.mapping(spec.get("template"), "spec.template")
    meta = fields.mapping(template.get("metadata"), "spec.template.metadata")
    where = "spec.template.metadata.annotations"
    annotations = fields.mapping(meta.get("annotations"), where)
    notes: list[str] = []
    top = fields.mapping(obj.get("metadata"), "metadata").get("annotations") or {}
    if isinstance(top, dict) and any(str(k).startswith(PREFIX) for k in top):
        notes.append("metadata.annotations: autoscaling annotations on the Service itself are "
                     "ignored by Knative; only the revision template's count")
    ann: dict[str, str] = {}
    for key, value in annotations.items():
        if not str(key).startswith(PREFIX):
            continue
        short = str(key)[len(PREFIX):]
        if short not in KNOWN and short not in NOT_SIMULATED:
            raise fields.fail(f"{where}.{key}", "unknown Knative autoscaling annotation")
        if short in NOT_SIMULATED:
            notes.append(f"{where}.{key}: not simulated; {NOT_SIMULATED[short]}")
        ann[short] = str(value)
    pod_spec = fields.mapping(template.get("spec"), "spec.template.spec")
    cc = fields.number(pod_spec, "containerConcurrency", "spec.template.spec", 0, minimum=0,
                       integer=True)
    klass = ann.get("class", KPA_CLASS)
    if klass == HPA_CLASS:
        params = _hpa_class(ann, fields, where, notes)
        strategy = "hpa"
    elif klass == KPA_CLASS:
        params = _kpa_class(ann, cc, fields, where, notes)
        strategy = "kpa"
    else:
        raise fields.fail(f"{where}.{PREFIX}class", f"class {klass!r:.60} cannot be simulated "
                          f"({KPA_CLASS} or {HPA_CLASS})")
    if cc:
        notes.append(f"spec.template.spec.containerConcurrency: {cc} as a cap on the target only; "
                     "the hard per-replica limit (queue-proxy) is not simulated")
    fields.check_params(strategy, params, where)
    return ImportedStrategy(strategy, params, notes,
                            kind=f"Knative {obj.get('kind')} {obj.get('apiVersion')} ({klass})",
                            name=object_name(obj), source=fields.source)


def _number(ann: dict[str, str], key: str, fields: Fields, where: str, default: float, *,
            minimum: float, maximum: float | None = None) -> float:
    if key not in ann:
        return default
    try:
        value = float(ann[key])
    except ValueError:
        raise fields.fail(f"{where}.{PREFIX}{key}", f"must be a number, got {ann[key]!r:.40}") \
            from None
    if value < minimum or (maximum is not None and value > maximum):
        top = f"..{maximum:g}" if maximum is not None else " or more"
        raise fields.fail(f"{where}.{PREFIX}{key}", f"must be {minimum:g}{top}, got {value:g}")
    return value


def _scale_bounds(ann: dict[str, str], fields: Fields, where: str,
                  min_floor: int) -> dict[str, Any]:
    low = int(_number(ann, "min-scale", fields, where,
                      _number(ann, "minScale", fields, where, 0, minimum=0), minimum=0))
    high = int(_number(ann, "max-scale", fields, where,
                       _number(ann, "maxScale", fields, where, 0, minimum=0), minimum=0))
    if high and low > high:
        raise fields.fail(f"{where}.{PREFIX}min-scale", f"min-scale ({low}) exceeds max-scale "
                          f"({high})")
    params: dict[str, Any] = {"min_replicas": max(low, min_floor)}
    if high:
        params["max_replicas"] = high
    return params


def _kpa_class(ann: dict[str, str], cc: int, fields: Fields, where: str,
               notes: list[str]) -> dict[str, Any]:
    metric = ann.get("metric", "concurrency")
    if metric not in ("concurrency", "rps"):
        raise fields.fail(f"{where}.{PREFIX}metric", f"the KPA scales on concurrency or rps, "
                          f"not {metric!r:.40}")
    if metric == "rps":
        total = DEFAULTS["rps_target"]
    else:
        total = float(cc) if cc else DEFAULTS["concurrency_target"]
    if "target" in ann:
        total = _number(ann, "target", fields, where, 0, minimum=0.01)
        if metric == "concurrency" and cc:
            total = min(total, float(cc))
    utilization = _number(ann, "target-utilization-percentage", fields, where,
                          DEFAULTS["target_percentage"], minimum=1, maximum=100)
    window_s = DEFAULTS["stable_window_s"]
    if "window" in ann:
        window_s = parse_duration_s(ann["window"], fields, f"{where}.{PREFIX}window")
        if not 6 <= window_s <= 3600:
            raise fields.fail(f"{where}.{PREFIX}window", "must be 6s..1h")
    delay_s = 0.0
    if "scale-down-delay" in ann:
        delay_s = parse_duration_s(ann["scale-down-delay"], fields,
                                   f"{where}.{PREFIX}scale-down-delay")
        if not 0 <= delay_s <= 3600:
            raise fields.fail(f"{where}.{PREFIX}scale-down-delay", "must be 0s..1h")
    grace_s = DEFAULTS["scale_to_zero_grace_period_s"]
    if "scale-to-zero-pod-retention-period" in ann:
        key = "scale-to-zero-pod-retention-period"
        retention_s = parse_duration_s(ann[key], fields, f"{where}.{PREFIX}{key}")
        grace_s = max(grace_s, retention_s)
        notes.append(f"{where}.{PREFIX}{key}: approximated as the time at zero demand before "
                     f"the last replica goes: max(scale-to-zero-grace-period 30s, it) = "
                     f"{grace_s:g} s")
    notes.append("max_scale_up_rate, max_scale_down_rate, scale_to_zero_grace_period_s, "
                 "sync_period_s: config-autoscaler cluster defaults (not in the Service)")
    params: dict[str, Any] = {
        "metric": metric, "target_concurrency": total, "target_utilization": utilization / 100,
        "stable_window_s": window_s,
        "panic_window_percentage": _number(ann, "panic-window-percentage", fields, where,
                                           DEFAULTS["panic_window_percentage"], minimum=1,
                                           maximum=100),
        "panic_threshold_percentage": _number(ann, "panic-threshold-percentage", fields, where,
                                              DEFAULTS["panic_threshold_percentage"],
                                              minimum=110, maximum=1000),
        "max_scale_up_rate": DEFAULTS["max_scale_up_rate"],
        "max_scale_down_rate": DEFAULTS["max_scale_down_rate"],
        "scale_to_zero_grace_period_s": grace_s, "scale_down_delay_s": delay_s,
        "sync_period_s": DEFAULTS["tick_s"],
    }
    params["activation_scale"] = int(_number(ann, "activation-scale", fields, where, 1,
                                             minimum=1))
    if "target-burst-capacity" in ann:
        tbc = _number(ann, "target-burst-capacity", fields, where, 0, minimum=-1)
        if -1 < tbc < 0:
            raise fields.fail(f"{where}.{PREFIX}target-burst-capacity", "must be -1 or >= 0")
        params["target_burst_capacity"] = tbc
        notes.append(f"{where}.{PREFIX}target-burst-capacity: only reported (the decision's "
                     "excess_burst_capacity); the activator it keeps in the request path is "
                     "not modelled")
    params.update(_scale_bounds(ann, fields, where, 0))
    return params


def _hpa_class(ann: dict[str, str], fields: Fields, where: str,
               notes: list[str]) -> dict[str, Any]:
    metric = ann.get("metric", "cpu")
    if metric == "memory":
        raise fields.fail(f"{where}.{PREFIX}metric", f"a memory metric {MEMORY_REASON}")
    if metric != "cpu":
        raise fields.fail(f"{where}.{PREFIX}metric", f"HPA-class metric {metric!r:.40} cannot "
                          "be simulated (cpu)")
    pct = _number(ann, "target", fields, where, 80, minimum=1, maximum=100)
    notes.append(f"{where}.{PREFIX}target: {pct:g} % CPU utilization, taken as the busy "
                 "fraction of the replica's threads (80 % when absent, the HPA default)")
    params: dict[str, Any] = {"metric": "utilization", "target_utilization": pct / 100}
    behavior = None  # MakeHPA: a behavior only with a window, both stabilizations = it
    if "window" in ann:
        window_s = int(parse_duration_s(ann["window"], fields, f"{where}.{PREFIX}window"))
        behavior = {"scaleUp": {"stabilizationWindowSeconds": window_s},
                    "scaleDown": {"stabilizationWindowSeconds": window_s}}
    params.update(behavior_params(behavior, fields, f"{where}.{PREFIX}window", notes))
    params.update(_scale_bounds(ann, fields, where, 1))
    params["sync_period_s"] = DEFAULT_SYNC_PERIOD_S
    return params
