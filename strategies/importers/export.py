"""The importers' mapping run backwards: a tuned strategy's parameters written into the real
autoscaler file it came from, every other field kept.

One function per kind, each the inverse of its importer (:mod:`.hpa`, :mod:`.keda`,
:mod:`.knative`, :mod:`.ray_serve`) for the parameters it can write:

- :func:`export_hpa`: ``HorizontalPodAutoscaler`` (``autoscaling/v2``: the first metric's
  target, and where the manifest has a ``behavior``, its stabilization windows and, when it
  already sets them, its tolerances; ``autoscaling/v1``: ``targetCPUUtilizationPercentage``),
  ready for ``kubectl apply``;
- :func:`export_keda`: KEDA ``ScaledObject`` (the trigger's threshold or value, the HPA
  ``behavior`` under ``advanced.horizontalPodAutoscalerConfig``, pollingInterval,
  cooldownPeriod, initialCooldownPeriod, activationThreshold);
- :func:`export_knative`: Knative ``Service`` revision-template annotations (target,
  target-utilization-percentage, window, panic percentages, scale-down-delay);
- :func:`export_ray_serve`: a Serve config's ``autoscaling_config`` (or a bare one), ready for
  ``serve deploy``.

:func:`writable_params` says which parameters a file can carry (and any extra bounds its
format puts on them, e.g. Knative's target is capped by ``containerConcurrency``), so that a
tuner searches only what it can write back. :func:`export_file` rewrites a whole file: every
YAML document of it is kept in order (a Deployment beside the HPA stays), only the autoscaler
object the scenario imported is changed. Comments are not kept (PyYAML does not read them);
the written file starts with a comment naming its origin and the changed fields.

Round trip (``tests/test_tune.py``): for every written parameter ``p``,
``import_file(export_file(f, {p: v})).params[p] == v`` and every other imported parameter is
unchanged. Values are written exactly (``repr`` of floats, whole numbers where the format wants
them); a value the format cannot hold exactly (a utilization of 62.5 %) is rounded to what it
can and the change list says so.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from simscale.errors import UserError
from simscale.strategies.importers.common import Fields
from simscale.strategies.importers.knative import HPA_CLASS, PREFIX

__all__ = ["Bounds", "export_file", "export_hpa", "export_keda", "export_knative",
           "export_ray_serve", "writable_params"]

#: extra ``(low, high)`` bounds a file's format puts on a parameter (``None``: no bound)
Bounds = tuple[float | None, float | None]
_FREE: Bounds = (None, None)
#: the ``hpa`` parameters an HPA ``behavior`` mapping carries
BEHAVIOR_PARAMS = ("scale_up_stabilization_s", "scale_down_stabilization_s",
                   "scale_up_tolerance", "scale_down_tolerance")


# ---------------------------------------------------------------------------- reading
def _read_docs(path: Path) -> list[Any]:
    """The file's documents as the importer reads them (JSON: one document)."""
    from simscale.safeload import load_json, load_yaml, read_text
    from simscale.strategies.importers import _DOC_MARK, MAX_IMPORT_BYTES

    text = read_text(path, what="autoscaler", max_bytes=MAX_IMPORT_BYTES)
    if path.suffix.lower() == ".json":
        return [load_json(text, source=path)]
    return [load_yaml(part, source=path, what="autoscaler") for part in _DOC_MARK.split(text)]


def _locate(docs: list[Any], document: str | None, source: str) -> tuple[dict[str, Any], str]:
    """The autoscaler object the importer picked (a reference into ``docs``) and its kind
    (``hpa``, ``keda``, ``knative`` or ``ray_serve``)."""
    from simscale.strategies.importers import _kind

    objects: list[dict[str, Any]] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(
                doc.get("items"), list):
            objects.extend(item for item in doc["items"] if isinstance(item, dict))
        elif isinstance(doc, dict):
            objects.append(doc)
    found = [(obj, kind) for obj in objects if (kind := _kind(obj)) is not None]
    ray = [f for f in found if f[1] == "ray_serve"]
    if ray:
        return ray[0]
    if document is not None:
        found = [f for f in found if isinstance(f[0].get("metadata"), dict)
                 and str(f[0]["metadata"].get("name")) == document]
    if len(found) != 1:
        raise UserError("cannot find the autoscaler to write back (the file changed since it "
                        "was imported?)", source=source)
    return found[0]


# ---------------------------------------------------------------------------- helpers
def _num(value: float) -> int | float:
    """``value`` as an int when it is whole (YAML ``60``, not ``60.0``), else as is."""
    return int(value) if float(value).is_integer() else float(value)


def _text(value: float) -> str:
    """A number as the string Kubernetes and Knative annotations hold (``"4"``, ``"0.65"``)."""
    return str(_num(value))


def _seconds(value: float, where: str, changes: list[str]) -> int:
    """Whole seconds (``*Seconds`` fields); a fraction is rounded and noted."""
    whole = int(round(float(value)))
    if whole != float(value):
        changes.append(f"{where}: {value:g} s rounded to {whole} s (whole seconds only)")
    return whole


def _percent(fraction: float, where: str, changes: list[str]) -> int:
    """A 0..1 fraction as a whole percent; a value between whole percents is rounded, noted."""
    pct = int(round(float(fraction) * 100))
    if pct / 100 != float(fraction):
        changes.append(f"{where}: {fraction * 100:g} % rounded to {pct} % (whole percents)")
    return pct


def _set(node: dict[str, Any], key: str, value: Any, where: str, changes: list[str]) -> None:
    """``node[key] = value``, recording ``where: old -> new`` when it changes."""
    old = node.get(key)
    if old != value:
        changes.append(f"{where}: {old!r} -> {value!r}" if key in node else
                       f"{where}: (absent) -> {value!r}")
    node[key] = value


def _child(node: dict[str, Any], key: str) -> dict[str, Any]:
    """``node[key]``, made an empty mapping when absent."""
    if not isinstance(node.get(key), dict):
        node[key] = {}
    return node[key]


# ---------------------------------------------------------------------------- HPA
def _hpa_metric(spec: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """``(what the first metric's target is, its target mapping)``: ``utilization`` (also when
    ``spec.metrics`` is absent: the controller's cpu default), ``cores`` or ``value``."""
    metrics = spec.get("metrics") or []
    if not metrics:
        return "utilization", None
    metric = metrics[0]
    body_key = str(metric.get("type", ""))[:1].lower() + str(metric.get("type", ""))[1:]
    target = (metric.get(body_key) or {}).get("target") or {}
    if metric.get("type") in ("Resource", "ContainerResource"):
        return ("utilization" if target.get("type") == "Utilization" else "cores"), target
    return "value", target


def _behavior_writable(behavior: Mapping[str, Any] | None) -> dict[str, Bounds]:
    """What a ``behavior`` mapping can carry. Without one the controller runs its path without
    behavior (``behavior: false``), whose 300 s window is a controller flag: writing a
    ``behavior`` in would switch the path (and its scaling policies), so nothing is writable
    then. Tolerances only where the manifest already sets one (``HPAConfigurableTolerance``:
    clusters without it refuse the field)."""
    if behavior is None:
        return {}
    out = {"scale_up_stabilization_s": (0.0, 3600.0), "scale_down_stabilization_s": (0.0, 3600.0)}
    rules = [behavior.get(d) or {} for d in ("scaleUp", "scaleDown")]
    if any(isinstance(r, Mapping) and "tolerance" in r for r in rules):
        out.update({"scale_up_tolerance": _FREE, "scale_down_tolerance": _FREE})
    return out


def _hpa_writable(obj: Mapping[str, Any]) -> dict[str, Bounds]:
    spec = obj.get("spec") or {}
    out: dict[str, Bounds] = {"min_replicas": _FREE, "max_replicas": _FREE}
    if obj.get("apiVersion") == "autoscaling/v1":
        out["target_utilization"] = (0.01, 1.0)
        return out
    what, _ = _hpa_metric(spec)
    out[{"utilization": "target_utilization", "cores": "target_cpu_cores",
         "value": "target_value"}[what]] = (0.01, 1.0) if what == "utilization" else _FREE
    out.update(_behavior_writable(spec.get("behavior")))
    return out


def _write_behavior(behavior: dict[str, Any], params: Mapping[str, Any], where: str,
                    changes: list[str]) -> None:
    """Stabilization windows and tolerances into a ``behavior`` mapping."""
    for prefix, direction in (("scale_up", "scaleUp"), ("scale_down", "scaleDown")):
        key = f"{prefix}_stabilization_s"
        if key in params:
            at = f"{where}.{direction}.stabilizationWindowSeconds"
            _set(_child(behavior, direction), "stabilizationWindowSeconds",
                 _seconds(params[key], at, changes), at, changes)
        key = f"{prefix}_tolerance"
        if params.get(key) is not None:
            _set(_child(behavior, direction), "tolerance", _text(params[key]),
                 f"{where}.{direction}.tolerance", changes)


def export_hpa(obj: dict[str, Any], params: Mapping[str, Any]) -> list[str]:
    """Write ``params`` (``hpa`` parameters) into a HorizontalPodAutoscaler object, in place;
    returns the changes, one ``field: old -> new`` line each."""
    changes: list[str] = []
    spec = _child(obj, "spec")
    _bounds(spec, params, "minReplicas", "maxReplicas", changes)
    if obj.get("apiVersion") == "autoscaling/v1":
        if "target_utilization" in params:
            at = "spec.targetCPUUtilizationPercentage"
            _set(spec, "targetCPUUtilizationPercentage",
                 _percent(params["target_utilization"], at, changes), at, changes)
        return changes
    what, target = _hpa_metric(spec)
    if "target_utilization" in params and what == "utilization":
        if target is None:  # no metrics: write the controller's default metric out
            spec["metrics"] = [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization"}}}]
            target = spec["metrics"][0]["resource"]["target"]
        at = "spec.metrics[0].target.averageUtilization"
        _set(target, "averageUtilization", _percent(params["target_utilization"], at, changes),
             at, changes)
    if "target_cpu_cores" in params and what == "cores" and target is not None:
        _set(target, "averageValue", _text(params["target_cpu_cores"]),
             "spec.metrics[0].target.averageValue", changes)
    if "target_value" in params and what == "value" and target is not None:
        key = "value" if target.get("type") == "Value" else "averageValue"
        _set(target, key, _text(params["target_value"]), f"spec.metrics[0].target.{key}",
             changes)
    if any(k in params for k in BEHAVIOR_PARAMS) and isinstance(spec.get("behavior"), dict):
        _write_behavior(spec["behavior"], params, "spec.behavior", changes)
    return changes


def _bounds(spec: dict[str, Any], params: Mapping[str, Any], low_key: str, high_key: str,
            changes: list[str]) -> None:
    for param, key in (("min_replicas", low_key), ("max_replicas", high_key)):
        if params.get(param) is not None:
            _set(spec, key, int(params[param]), f"spec.{key}", changes)


# ---------------------------------------------------------------------------- KEDA
def _keda_writable(obj: Mapping[str, Any]) -> dict[str, Bounds]:
    spec = obj.get("spec") or {}
    out: dict[str, Bounds] = {"min_replicas": _FREE, "max_replicas": _FREE}
    trigger = (spec.get("triggers") or [{}])[0]
    if trigger.get("type") == "prometheus":
        out["target_value"] = _FREE
        if int(spec.get("minReplicaCount", 0) or 0) == 0:
            out["activation_threshold"] = _FREE
    elif trigger.get("type") == "cpu":
        kind = trigger.get("metricType", (trigger.get("metadata") or {}).get("type",
                                                                               "Utilization"))
        out["target_utilization" if kind == "Utilization" else "target_cpu_cores"] = (
            (0.01, 1.0) if kind == "Utilization" else _FREE)
    if int(spec.get("minReplicaCount", 0) or 0) == 0:
        out.update({"polling_interval_s": (1.0, None), "cooldown_s": _FREE,
                    "initial_cooldown_s": _FREE})
    hpa_config = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
    out.update(_behavior_writable(hpa_config.get("behavior")))
    return out


def export_keda(obj: dict[str, Any], params: Mapping[str, Any]) -> list[str]:
    """Write ``params`` (``hpa`` parameters with the KEDA layer) into a ScaledObject, in place;
    returns the changes."""
    changes: list[str] = []
    spec = _child(obj, "spec")
    _bounds(spec, params, "minReplicaCount", "maxReplicaCount", changes)
    trigger = (spec.get("triggers") or [{}])[0]
    meta = _child(trigger, "metadata") if isinstance(trigger, dict) else {}
    where = "spec.triggers[0].metadata"
    if "target_value" in params and trigger.get("type") == "prometheus":
        _set(meta, "threshold", _text(params["target_value"]), f"{where}.threshold", changes)
    if params.get("activation_threshold") is not None and trigger.get("type") == "prometheus":
        _set(meta, "activationThreshold", _text(params["activation_threshold"]),
             f"{where}.activationThreshold", changes)
    if trigger.get("type") == "cpu":
        if "target_utilization" in params:
            at = f"{where}.value"
            _set(meta, "value", str(_percent(params["target_utilization"], at, changes)), at,
                 changes)
        elif "target_cpu_cores" in params:
            _set(meta, "value", _text(params["target_cpu_cores"]), f"{where}.value", changes)
    for param, key in (("polling_interval_s", "pollingInterval"), ("cooldown_s", "cooldownPeriod"),
                       ("initial_cooldown_s", "initialCooldownPeriod")):
        if param in params and int(spec.get("minReplicaCount", 0) or 0) == 0:
            _set(spec, key, _seconds(params[param], f"spec.{key}", changes), f"spec.{key}",
                 changes)
    hpa_config = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
    if any(k in params for k in BEHAVIOR_PARAMS) and isinstance(hpa_config.get("behavior"),
                                                                dict):
        _write_behavior(hpa_config["behavior"], params,
                        "spec.advanced.horizontalPodAutoscalerConfig.behavior", changes)
    return changes


# ---------------------------------------------------------------------------- Knative
def _knative_parts(obj: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The revision template's annotations (created when absent) and containerConcurrency."""
    template = _child(_child(obj, "spec"), "template")
    annotations = _child(_child(template, "metadata"), "annotations")
    cc = int((template.get("spec") or {}).get("containerConcurrency") or 0)
    return annotations, cc


def _knative_writable(obj: dict[str, Any]) -> dict[str, Bounds]:
    annotations, cc = _knative_parts(copy.deepcopy(obj))
    out: dict[str, Bounds] = {"min_replicas": _FREE, "max_replicas": _FREE}
    if annotations.get(f"{PREFIX}class") == HPA_CLASS:
        out["target_utilization"] = (0.01, 1.0)
        return out
    capped = cc and annotations.get(f"{PREFIX}metric", "concurrency") == "concurrency"
    out.update({"target_concurrency": (0.01, float(cc) if capped else None),
                "target_utilization": (0.01, 1.0), "stable_window_s": (6.0, 3600.0),
                "panic_window_percentage": (1.0, 100.0),
                "panic_threshold_percentage": (110.0, 1000.0),
                "scale_down_delay_s": (0.0, 3600.0)})
    return out


def _duration(value: float) -> str:
    """Seconds as a Go duration (``60s``, ``7.5s``)."""
    return f"{_num(value)}s"


def export_knative(obj: dict[str, Any], params: Mapping[str, Any]) -> list[str]:
    """Write ``params`` (``kpa`` parameters, or ``hpa`` for the HPA class) into a Knative
    Service's revision-template annotations, in place; returns the changes."""
    changes: list[str] = []
    annotations, _ = _knative_parts(obj)
    where = "spec.template.metadata.annotations"
    hpa_class = annotations.get(f"{PREFIX}class") == HPA_CLASS

    def put(short: str, value: str) -> None:
        _set(annotations, f"{PREFIX}{short}", value, f"{where}.{PREFIX}{short}", changes)

    if params.get("min_replicas") is not None:
        put("min-scale", str(int(params["min_replicas"])))
    if params.get("max_replicas") is not None:
        put("max-scale", str(int(params["max_replicas"])))
    if hpa_class:
        if "target_utilization" in params:
            put("target", _text(_pct_exact(params["target_utilization"])))
        return changes
    if "target_concurrency" in params:
        put("target", _text(params["target_concurrency"]))
    if "target_utilization" in params:
        put("target-utilization-percentage", _text(_pct_exact(params["target_utilization"])))
    if "stable_window_s" in params:
        put("window", _duration(params["stable_window_s"]))
    for key in ("panic_window_percentage", "panic_threshold_percentage"):
        if key in params:
            put(key.replace("_", "-"), _text(params[key]))
    if "scale_down_delay_s" in params:
        put("scale-down-delay", _duration(params["scale_down_delay_s"]))
    return changes


def _pct_exact(fraction: float) -> float:
    """``fraction * 100`` as the percent whose ``/ 100`` gives ``fraction`` back (``57``, not
    ``57.00000000000001``)."""
    pct = round(float(fraction) * 100, 10)
    return pct if pct / 100 == float(fraction) else float(fraction) * 100


# ---------------------------------------------------------------------------- Ray Serve
def _ray_config(doc: dict[str, Any], document: str | None, source: str) -> dict[str, Any]:
    """The ``autoscaling_config`` mapping the importer read (created under ``num_replicas:
    auto`` when absent), a reference into ``doc``."""
    from simscale.strategies.importers.ray_serve import deployments

    if "applications" in doc or isinstance(doc.get("deployments"), list):
        found = deployments(doc, Fields(source))
        if document is not None:
            found = [f for f in found if document in (f[0], f[0].split("/")[-1])]
        if len(found) != 1:
            raise UserError("cannot find the deployment to write back", source=source,
                            field="document")
        return _child(found[0][2], "autoscaling_config")
    if "autoscaling_config" in doc:
        return _child(doc, "autoscaling_config")
    return doc


def _ray_writable() -> dict[str, Bounds]:
    from simscale.strategies.importers.ray_serve import FIELDS

    return dict.fromkeys(FIELDS, _FREE)


def export_ray_serve(doc: dict[str, Any], params: Mapping[str, Any],
                     document: str | None = None, source: str = "") -> list[str]:
    """Write ``params`` (``ray_serve`` parameters: ``AutoscalingConfig`` fields, same names)
    into a Serve config's deployment (picked by ``document``) or a bare autoscaling_config, in
    place; returns the changes."""
    from simscale.strategies.importers.ray_serve import FIELDS

    changes: list[str] = []
    config = _ray_config(doc, document, source)
    for key, value in params.items():
        if key in FIELDS and value is not None:
            _set(config, key, _num(value) if isinstance(value, float) else value,
                 f"autoscaling_config.{key}", changes)
    return changes


# ---------------------------------------------------------------------------- whole files
class _IndentedDumper(yaml.SafeDumper):
    """A safe dumper that indents list items under their key (``metrics:`` then ``  - type``),
    as ``kubectl`` and most manifests write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)


def writable_params(imported_from: Mapping[str, Any]) -> dict[str, Bounds]:
    """The parameters the imported file (``imported_from``: a strategy entry's, with ``file``
    and ``document``) can carry, each with the extra ``(low, high)`` bounds its format puts
    on it. Fields the file cannot hold (a controller flag such as the HPA's sync period, or
    a tolerance where the manifest sets none, which older clusters refuse) are left out."""
    path = Path(imported_from["file"])
    obj, kind = _locate(_read_docs(path), imported_from.get("document"), str(path))
    if kind == "ray_serve":
        return _ray_writable()
    return {"hpa": _hpa_writable, "keda": _keda_writable, "knative": _knative_writable}[kind](obj)


def export_file(imported_from: Mapping[str, Any], params: Mapping[str, Any],
                output: str | Path, *, header: str = "") -> list[str]:
    """Write the imported file with ``params`` changed to ``output`` (atomically); every other
    document and field is kept. ``header`` (plain text) starts the file as ``#`` comments.
    Returns the changes, one ``field: old -> new`` line each. JSON files are written as JSON."""
    import json

    from simscale.io import write_text_atomic

    path = Path(imported_from["file"])
    docs = _read_docs(path)
    obj, kind = _locate(docs, imported_from.get("document"), str(path))
    if kind == "ray_serve":
        changes = export_ray_serve(obj, params, imported_from.get("document"), str(path))
    else:
        changes = {"hpa": export_hpa, "keda": export_keda, "knative": export_knative}[kind](
            obj, params)
    if Path(output).suffix.lower() == ".json":
        text = json.dumps(docs[0], indent=2) + "\n"
    else:
        kept = [d for d in docs if d is not None]
        text = yaml.dump_all(kept, Dumper=_IndentedDumper, sort_keys=False,
                             default_flow_style=False, allow_unicode=True, width=100)
        lines = [f"# {line}".rstrip() for line in header.splitlines()]
        text = ("\n".join(lines) + "\n" if lines else "") + text
    write_text_atomic(output, text)
    return changes
