"""KEDA ``ScaledObject`` (``keda.sh/v1alpha1``) onto the built-in ``hpa`` with its KEDA layer.

KEDA creates an HPA for the 1..N range and scales between 0 and 1 itself. Defaults from the
ScaledObject specification (https://keda.sh/docs/latest/reference/scaledobject-spec/):
pollingInterval 30 s, cooldownPeriod 300 s, initialCooldownPeriod 0 s, minReplicaCount 0,
maxReplicaCount 100; triggers: ``cpu`` (https://keda.sh/docs/latest/scalers/cpu/: metricType
Utilization or AverageValue, ``value``; cannot scale to zero on its own) and ``prometheus``
(https://keda.sh/docs/latest/scalers/prometheus/: ``threshold``, ``activationThreshold`` default
0, metricType AverageValue by default). ``advanced.horizontalPodAutoscalerConfig.behavior`` is
the HPA's ``behavior`` (Kubernetes defaults where absent, see :mod:`.hpa`).
"""

from __future__ import annotations

from typing import Any

from simscale.strategies.importers.common import (
    MEMORY_REASON,
    Fields,
    ImportedStrategy,
    hint_to_metric,
    object_name,
)
from simscale.strategies.importers.hpa import (
    DEFAULT_SYNC_PERIOD_S,
    behavior_params,
)


def import_keda(obj: dict[str, Any], fields: Fields, hint: str | None) -> ImportedStrategy:
    """Map a ScaledObject; see the module docstring for the defaults."""
    if obj.get("kind") != "ScaledObject":
        raise fields.fail("kind", f"{obj.get('kind')!r:.40} cannot be simulated (simscale "
                          "scales long-running services: ScaledObject only)")
    spec = fields.mapping(obj.get("spec"), "spec", required=True)
    notes = ["spec.scaleTargetRef: ignored; the strategy scales the scenario's service"]
    low = fields.number(spec, "minReplicaCount", "spec", 0, minimum=0, integer=True)
    high = fields.number(spec, "maxReplicaCount", "spec", 100, minimum=1, integer=True)
    if low > high:
        raise fields.fail("spec.minReplicaCount",
                          f"minReplicaCount ({low}) exceeds maxReplicaCount ({high})")
    if "idleReplicaCount" in spec:
        raise fields.fail("spec.idleReplicaCount", "cannot be simulated yet; use "
                          "minReplicaCount: 0 for scale to zero")
    params: dict[str, Any] = {"min_replicas": low, "max_replicas": high}
    params.update(_trigger(spec, fields, hint, notes, low))
    advanced = fields.mapping(spec.get("advanced"), "spec.advanced")
    for key in advanced:
        if key not in ("horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount"):
            raise fields.fail(f"spec.advanced.{key}", "cannot be simulated")
    if "restoreToOriginalReplicaCount" in advanced:
        notes.append("spec.advanced.restoreToOriginalReplicaCount: ignored (applies when the "
                     "ScaledObject is deleted)")
    hpa_config = fields.mapping(advanced.get("horizontalPodAutoscalerConfig"),
                                "spec.advanced.horizontalPodAutoscalerConfig")
    params.update(behavior_params(hpa_config.get("behavior"), fields,
                                  "spec.advanced.horizontalPodAutoscalerConfig.behavior", notes))
    if "fallback" in spec:
        notes.append("spec.fallback: ignored; a simulated metric never fails to be read")
    if low == 0:
        params["polling_interval_s"] = float(fields.number(
            spec, "pollingInterval", "spec", 30, minimum=1, integer=True))
        params["cooldown_s"] = float(fields.number(spec, "cooldownPeriod", "spec", 300,
                                                   minimum=0, integer=True))
        params["initial_cooldown_s"] = float(fields.number(
            spec, "initialCooldownPeriod", "spec", 0, minimum=0, integer=True))
    else:
        for key in ("pollingInterval", "cooldownPeriod", "initialCooldownPeriod"):
            if key in spec:
                notes.append(f"spec.{key}: no effect with minReplicaCount >= 1 (it governs "
                             "scaling to and from zero)")
    params["sync_period_s"] = DEFAULT_SYNC_PERIOD_S
    notes.append("sync_period_s: 15 s, the HPA controller's sync period, for 1..N replicas")
    fields.check_params("hpa", params, "spec")
    return ImportedStrategy("hpa", params, notes, kind=f"ScaledObject {obj.get('apiVersion')}",
                            name=object_name(obj), source=fields.source)


def _trigger(spec: dict[str, Any], fields: Fields, hint: str | None, notes: list[str],
             low: int) -> dict[str, Any]:
    triggers = fields.items(spec.get("triggers"), "spec.triggers")
    if not triggers:
        raise fields.fail("spec.triggers", "missing: a ScaledObject needs one trigger")
    if len(triggers) > 1:
        raise fields.fail("spec.triggers[1]", "more than one trigger: the HPA scales to the "
                          "largest of their recommendations, which simscale's hpa does not "
                          "model yet; keep the trigger that drives scaling")
    where = "spec.triggers[0]"
    trigger = fields.mapping(triggers[0], where, required=True)
    kind = trigger.get("type")
    meta = fields.mapping(trigger.get("metadata"), f"{where}.metadata", required=True)
    if kind == "cpu":
        return _cpu(trigger, meta, fields, where, notes, low)
    if kind == "prometheus":
        return _prometheus(trigger, meta, fields, hint, where, notes, low)
    if kind == "memory":
        raise fields.fail(f"{where}.type", f"a memory trigger {MEMORY_REASON}")
    raise fields.fail(f"{where}.type", f"trigger type {kind!r:.40} cannot be simulated "
                      "(simscale simulates cpu and prometheus triggers)")


def _number_text(meta: dict[str, Any], key: str, fields: Fields, where: str,
                 default: float | None = None) -> float:
    """A trigger metadata value (KEDA writes numbers as strings)."""
    raw = meta.get(key)
    if raw is None:
        if default is None:
            raise fields.fail(f"{where}.{key}", "missing")
        return default
    try:
        return float(str(raw).strip())
    except ValueError:
        raise fields.fail(f"{where}.{key}", f"must be a number, got {raw!r:.40}") from None


def _cpu(trigger: dict[str, Any], meta: dict[str, Any], fields: Fields, where: str,
         notes: list[str], low: int) -> dict[str, Any]:
    if low == 0:
        raise fields.fail("spec.minReplicaCount", "0 with only a cpu trigger: KEDA cannot scale "
                          "to zero on cpu (its webhook refuses it)")
    metric_type = trigger.get("metricType", meta.get("type", "Utilization"))
    if metric_type not in ("Utilization", "AverageValue"):
        raise fields.fail(f"{where}.metricType", "must be Utilization or AverageValue")
    value = _number_text(meta, "value", fields, f"{where}.metadata")
    if value <= 0:
        raise fields.fail(f"{where}.metadata.value", "must be positive")
    if metric_type == "Utilization":
        if value > 100:
            raise fields.fail(f"{where}.metadata.value", f"{value:g} % cannot be reached: "
                              "simscale measures CPU as the busy fraction of a replica's threads")
        notes.append(f"{where}.metadata.value: {value:g} % of the pod's CPU request, taken as "
                     "the busy fraction of the replica's threads")
        return {"metric": "utilization", "target_utilization": value / 100.0}
    notes.append(f"{where}.metadata.value: {value:g} cores per pod, as a busy fraction of the "
                 "replica's threads (one core each)")
    return {"metric": "utilization", "target_cpu_cores": value}


def _prometheus(trigger: dict[str, Any], meta: dict[str, Any], fields: Fields, hint: str | None,
                where: str, notes: list[str], low: int) -> dict[str, Any]:
    name = str(meta.get("metricName") or meta.get("query") or "prometheus")
    metric = hint_to_metric(hint, name[:60], fields, f"{where}.metadata.query")
    metric_type = trigger.get("metricType", "AverageValue")
    if metric_type not in ("AverageValue", "Value"):
        raise fields.fail(f"{where}.metricType", "must be AverageValue or Value")
    threshold = _number_text(meta, "threshold", fields, f"{where}.metadata")
    if threshold <= 0:
        raise fields.fail(f"{where}.metadata.threshold", "must be positive")
    activation = _number_text(meta, "activationThreshold", fields, f"{where}.metadata", 0.0)
    notes.append(f"{where}.metadata.query: taken as {hint} of the whole service (the scenario's "
                 "metric), computed from the simulation; serverAddress is not contacted")
    params: dict[str, Any] = {"metric": metric, "target_value": threshold,
                              "target_type": metric_type}
    if low == 0:
        params["activation_threshold"] = activation
    elif "activationThreshold" in meta:
        notes.append(f"{where}.metadata.activationThreshold: no effect with minReplicaCount "
                     ">= 1")
    return params
