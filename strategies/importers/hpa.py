"""Kubernetes ``HorizontalPodAutoscaler`` (``autoscaling/v2``, ``v2beta2`` and ``v1``) onto the
built-in ``hpa``.

Defaults are the API server's and the controller's, as documented at
https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/ and set in
``pkg/apis/autoscaling/v2/defaults.go`` (minReplicas 1; no metrics: cpu at 80 % utilization;
``GenerateHPAScaleUpRules``: stabilization 0 s, selectPolicy Max, policies 4 Pods and 100 Percent
per 15 s; ``GenerateHPAScaleDownRules``: stabilization 300 s, selectPolicy Max, 100 Percent per
15 s) and ``cmd/kube-controller-manager`` flags (sync period 15 s, tolerance 0.1, downscale
stabilization 300 s). A manifest without ``behavior`` is simulated on the controller's own path
for it (``horizontal.go`` ``normalizeDesiredReplicas``: the highest recommendation of the last
300 s and a scale-up of at most ``max(2 x current, 4)`` per sync), the built-in's
``behavior: false``. Several metrics are all simulated: the controller scales to the largest of
their counts (``computeReplicasForMetrics``).
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

#: autoscaling/v2 ``GenerateHPAScaleUpRules`` / ``GenerateHPAScaleDownRules`` defaults
SCALE_UP_DEFAULTS: dict[str, Any] = {
    "stabilization_s": 0.0, "select": "Max",
    "policies": [{"type": "Pods", "value": 4, "period_s": 15.0},
                 {"type": "Percent", "value": 100, "period_s": 15.0}]}
SCALE_DOWN_DEFAULTS: dict[str, Any] = {
    "stabilization_s": 300.0, "select": "Max",
    "policies": [{"type": "Percent", "value": 100, "period_s": 15.0}]}
#: --horizontal-pod-autoscaler-tolerance, --horizontal-pod-autoscaler-sync-period
DEFAULT_TOLERANCE = 0.1
DEFAULT_SYNC_PERIOD_S = 15.0
#: autoscaling/v1 and v2 default metric: cpu at this utilization (%)
DEFAULT_CPU_UTILIZATION_PERCENT = 80

#: --horizontal-pod-autoscaler-downscale-stabilization: the window of the no-behavior path
DEFAULT_DOWNSCALE_STABILIZATION_S = 300.0

NO_BEHAVIOR_NOTE = (
    "behavior: absent, so the controller's path without behavior (normalizeDesiredReplicas) "
    "is simulated (behavior: false): the highest recommendation of the last 300 s "
    "(--horizontal-pod-autoscaler-downscale-stabilization) and a scale-up of at most "
    "max(2 x current, 4) per sync; no scaling policies")
ZERO_NOTE = (
    "spec.minReplicas: {low} > 0, so a service that starts at zero replicas (replicas.initial "
    "0) stays there: the controller disables autoscaling for a target scaled to zero")


def import_hpa(obj: dict[str, Any], fields: Fields, hint: str | None) -> ImportedStrategy:
    """Map a HorizontalPodAutoscaler object; see the module docstring for the defaults."""
    api = str(obj.get("apiVersion"))
    if api == "autoscaling/v2beta1":
        raise fields.fail("apiVersion", "autoscaling/v2beta1 is not supported (removed in "
                          "Kubernetes 1.25): convert the manifest to autoscaling/v2")
    spec = fields.mapping(obj.get("spec"), "spec", required=True)
    notes = ["spec.scaleTargetRef: ignored; the strategy scales the scenario's service"]
    low = fields.number(spec, "minReplicas", "spec", 1, minimum=0, integer=True)
    high = fields.number(spec, "maxReplicas", "spec", minimum=1, integer=True)
    if low > high:
        raise fields.fail("spec.minReplicas", f"minReplicas ({low}) exceeds maxReplicas ({high})")
    if low == 0:
        notes.append("spec.minReplicas: 0 needs the HPAScaleToZero feature gate (alpha); "
                     "simulated as given")
    else:
        notes.append(ZERO_NOTE.format(low=low))
    params: dict[str, Any] = {"min_replicas": low, "max_replicas": high}
    if api == "autoscaling/v1":
        pct = fields.number(spec, "targetCPUUtilizationPercentage", "spec",
                            DEFAULT_CPU_UTILIZATION_PERCENT, minimum=1, integer=True)
        params.update(_utilization(pct, fields, "spec.targetCPUUtilizationPercentage", notes))
        params.update(behavior_params(None, fields, "spec.behavior", notes))
    else:
        params.update(metric_params(spec.get("metrics"), fields, hint, notes))
        params.update(behavior_params(spec.get("behavior"), fields, "spec.behavior", notes))
    params["sync_period_s"] = DEFAULT_SYNC_PERIOD_S
    notes.append("sync_period_s: 15 s, the controller's --horizontal-pod-autoscaler-sync-period "
                 "default (a controller flag, not in the manifest)")
    fields.check_params("hpa", params, "spec")
    return ImportedStrategy("hpa", params, notes, kind=f"HorizontalPodAutoscaler {api}",
                            name=object_name(obj), source=fields.source)


def _utilization(pct: float, fields: Fields, where: str, notes: list[str]) -> dict[str, Any]:
    if pct > 100:
        raise fields.fail(where, f"{pct:g} % cannot be reached: simscale measures CPU as the "
                          "busy fraction of a replica's threads (at most 100 %)")
    notes.append(f"{where}: {pct:g} % of the pod's CPU request, taken as the busy fraction of "
                 "the replica's threads (the request is assumed to be the replica's cores)")
    return {"metric": "utilization", "target_utilization": pct / 100.0}


def metric_params(metrics: Any, fields: Fields, hint: str | None,
                  notes: list[str]) -> dict[str, Any]:
    """The ``hpa`` metric parameters of ``spec.metrics`` (cpu at 80 % when absent): the first
    metric in the top-level fields, the others in ``additional_metrics``."""
    items = fields.items(metrics, "spec.metrics")
    if not items:
        notes.append("spec.metrics: absent; the controller's default, cpu at 80 % utilization")
        return _utilization(DEFAULT_CPU_UTILIZATION_PERCENT, fields, "spec.metrics", notes)
    specs = [_one_metric(item, f"spec.metrics[{i}]", fields, hint, notes)
             for i, item in enumerate(items)]
    params = dict(specs[0])
    if len(specs) > 1:
        params["additional_metrics"] = specs[1:]
        notes.append(f"spec.metrics: {len(specs)} metrics, each simulated; the controller "
                     "scales to the largest of their counts (computeReplicasForMetrics)")
    return params


def _one_metric(item: Any, where: str, fields: Fields, hint: str | None,
                notes: list[str]) -> dict[str, Any]:
    """One ``spec.metrics`` entry as ``HpaMetric`` fields."""
    metric = fields.mapping(item, where, required=True)
    kind = fields.choice(metric, "type", where,
                         ("Resource", "ContainerResource", "Pods", "Object", "External"))
    body_key = kind[0].lower() + kind[1:]
    body = fields.mapping(metric.get(body_key), f"{where}.{body_key}", required=True)
    where = f"{where}.{body_key}"
    target = fields.mapping(body.get("target"), f"{where}.target", required=True)
    if kind in ("Resource", "ContainerResource"):
        return _resource_metric(body, target, fields, where, notes)
    name = str(fields.mapping(body.get("metric"), f"{where}.metric", required=True).get("name"))
    hpa_metric = hint_to_metric(hint, name, fields, f"{where}.metric.name")
    allowed = ("AverageValue",) if kind == "Pods" else ("AverageValue", "Value")
    ttype = fields.choice(target, "type", f"{where}.target", allowed)
    key = "averageValue" if ttype == "AverageValue" else "value"
    value = fields.number(target, key, f"{where}.target", minimum=0, quantity=True)
    if value <= 0:
        raise fields.fail(f"{where}.target.{key}", "must be positive")
    notes.append(f"{where}.metric.name: '{name}' taken as {hint} (the scenario's metric), "
                 "computed from the simulation" + (" over 60 s" if hint == "rps" else ""))
    if kind != "Pods" and ttype == "AverageValue":
        notes.append(f"{where}: computed like a Pods metric over the ready replicas (unready "
                     "ones at 0 on scale-ups); the controller divides an External/Object "
                     "AverageValue by all current replicas")
    return {"metric": hpa_metric, "target_value": value, "target_type": ttype}


def _resource_metric(body: dict[str, Any], target: dict[str, Any], fields: Fields, where: str,
                     notes: list[str]) -> dict[str, Any]:
    resource = body.get("name")
    if resource == "memory":
        raise fields.fail(f"{where}.name", f"a memory metric {MEMORY_REASON}")
    if resource != "cpu":
        raise fields.fail(f"{where}.name", f"resource {resource!r:.40} cannot be simulated "
                          "(only cpu)")
    if "container" in body:
        notes.append(f"{where}.container: the replica's one container")
    ttype = fields.choice(target, "type", f"{where}.target", ("Utilization", "AverageValue"))
    if ttype == "Utilization":
        pct = fields.number(target, "averageUtilization", f"{where}.target", minimum=1,
                            integer=True)
        return _utilization(pct, fields, f"{where}.target.averageUtilization", notes)
    cores = fields.number(target, "averageValue", f"{where}.target", minimum=0, quantity=True)
    if cores <= 0:
        raise fields.fail(f"{where}.target.averageValue", "must be positive")
    notes.append(f"{where}.target.averageValue: {cores:g} cores per pod, as a busy fraction of "
                 "the replica's threads (one core each)")
    return {"metric": "utilization", "target_cpu_cores": cores}


def behavior_params(behavior: Any, fields: Fields, where: str,
                    notes: list[str]) -> dict[str, Any]:
    """The ``hpa`` behavior parameters (stabilization, policies, selectPolicy, tolerances) of a
    ``behavior`` mapping, the autoscaling/v2 defaults filling what is absent; without one, the
    controller's no-behavior path (``behavior: false``, 300 s downscale stabilization)."""
    if behavior is None:
        notes.append(NO_BEHAVIOR_NOTE.replace("behavior:", f"{where}:", 1))
        return {"behavior": False,
                "scale_down_stabilization_s": DEFAULT_DOWNSCALE_STABILIZATION_S,
                "tolerance": DEFAULT_TOLERANCE}
    behavior = fields.mapping(behavior, where)
    params: dict[str, Any] = {"behavior": True, "tolerance": DEFAULT_TOLERANCE}
    for direction, defaults in (("scaleUp", SCALE_UP_DEFAULTS), ("scaleDown", SCALE_DOWN_DEFAULTS)):
        at = f"{where}.{direction}"
        rules = fields.mapping(behavior.get(direction), at)
        prefix = "scale_up" if direction == "scaleUp" else "scale_down"
        params[f"{prefix}_stabilization_s"] = float(fields.number(
            rules, "stabilizationWindowSeconds", at, defaults["stabilization_s"], minimum=0,
            maximum=3600, integer=True))
        params[f"{prefix}_select"] = fields.choice(rules, "selectPolicy", at,
                                                   ("Max", "Min", "Disabled"), defaults["select"])
        policies = fields.items(rules.get("policies"), f"{at}.policies")
        params[f"{prefix}_policies"] = ([_policy(p, fields, f"{at}.policies[{i}]")
                                         for i, p in enumerate(policies)]
                                        or [dict(p) for p in defaults["policies"]])
        if rules.get("tolerance") is not None:  # HPAConfigurableTolerance (beta in 1.35)
            params[f"{prefix}_tolerance"] = float(fields.number(rules, "tolerance", at,
                                                                minimum=0, quantity=True))
    return params


def _policy(item: Any, fields: Fields, where: str) -> dict[str, Any]:
    policy = fields.mapping(item, where, required=True)
    return {"type": fields.choice(policy, "type", where, ("Pods", "Percent")),
            "value": fields.number(policy, "value", where, minimum=1, integer=True),
            "period_s": float(fields.number(policy, "periodSeconds", where, minimum=1,
                                            maximum=1800, integer=True))}
