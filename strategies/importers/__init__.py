"""Importers of real autoscaler configurations: each maps a file onto a built-in strategy.

:func:`import_file` reads a YAML (or JSON) file safely, recognises what it holds by its content
and dispatches to one module per kind:

- :mod:`.hpa`: Kubernetes ``HorizontalPodAutoscaler`` (``autoscaling/v2``, ``v2beta2``, ``v1``)
  -> ``hpa``;
- :mod:`.keda`: KEDA ``ScaledObject`` (``keda.sh/v1alpha1``) -> ``hpa`` with its KEDA layer;
- :mod:`.knative`: Knative ``Service``/``Configuration`` (``serving.knative.dev/v1``) annotations
  -> ``kpa`` (or ``hpa`` for the HPA class);
- :mod:`.ray_serve`: a Ray Serve config file or a bare ``autoscaling_config`` -> ``ray_serve``.

The result (:class:`ImportedStrategy`) names the built-in, every parameter (the strategy's own
defaults filled in where the file's project has no say), and a note for every field ignored or
approximated. A field that cannot be simulated, or a malformed file, is one
:class:`~simscale.errors.UserError` line naming the file and the field.

A file may hold several YAML documents (``---``) or a Kubernetes ``List``; objects that are not
autoscalers (a Deployment, a plain Service) are skipped, and ``document`` picks one autoscaler
by its ``metadata.name`` (for a Serve config: ``app/deployment`` or the deployment's name).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from simscale.errors import UserError
from simscale.safeload import load_json, load_yaml, read_text
from simscale.strategies.importers.common import (
    METRIC_HINTS,
    Fields,
    ImportedStrategy,
    MetricHint,
)
from simscale.strategies.importers.hpa import import_hpa
from simscale.strategies.importers.keda import import_keda
from simscale.strategies.importers.knative import import_knative
from simscale.strategies.importers.ray_serve import import_ray_serve, looks_like_ray_serve

__all__ = ["METRIC_HINTS", "ImportedStrategy", "MetricHint", "import_data", "import_file"]

#: largest autoscaler file read, bytes (real ones are a few kilobytes)
MAX_IMPORT_BYTES = 1 * 2**20
#: most YAML documents read from one file
MAX_DOCUMENTS = 256
_DOC_MARK = re.compile(r"^---(?:[ \t].*)?$|^\.\.\.[ \t]*$", re.MULTILINE)


def import_file(path: str | Path, *, document: str | None = None,
                metric: str | None = None) -> ImportedStrategy:
    """Import the autoscaler configuration in ``path`` (see the module docstring).

    ``metric`` says what an opaque metric (HPA Pods/Object/External, KEDA prometheus) measures:
    ``rps``, ``concurrency`` or ``queue_length``. Raises :class:`UserError` naming the file and
    the field on any problem.
    """
    path = Path(path)
    text = read_text(path, what="autoscaler", max_bytes=MAX_IMPORT_BYTES)
    if path.suffix.lower() == ".json":
        docs = [load_json(text, source=path)]
    else:
        parts = _DOC_MARK.split(text)
        if len(parts) > MAX_DOCUMENTS:
            raise UserError(f"more than {MAX_DOCUMENTS} YAML documents", source=path)
        docs = [load_yaml(part, source=path, what="autoscaler") for part in parts]
    return import_data(docs, source=str(path), document=document, metric=metric)


def import_data(docs: list[Any], *, source: str | None = None, document: str | None = None,
                metric: str | None = None) -> ImportedStrategy:
    """Import from already-parsed documents (``None`` documents, empty ones, are skipped)."""
    fields = Fields(source)
    if metric is not None and metric not in METRIC_HINTS:
        raise fields.fail("metric", f"must be one of {', '.join(METRIC_HINTS)}, got "
                          f"{metric!r:.40}")
    objects = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise fields.fail(f"document {i + 1}", "must be a mapping")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            objects.extend(item for item in doc["items"] if isinstance(item, dict))
        else:
            objects.append(doc)
    if not objects:
        raise UserError("the file is empty", source=source)
    candidates = [(obj, kind) for obj in objects if (kind := _kind(obj)) is not None]
    if not candidates:
        raise UserError(_unrecognised(objects[0]), source=source)
    ray = [c for c in candidates if c[1] == "ray_serve"]
    if ray:  # a Serve config: document names a deployment inside it
        result = import_ray_serve(ray[0][0], fields, document)
    else:
        obj, kind = _pick(candidates, document, fields)
        importer = {"hpa": import_hpa, "keda": import_keda, "knative": import_knative}[kind]
        result = importer(obj, fields, metric)
    return _complete(result)


def _kind(obj: dict[str, Any]) -> str | None:
    """Which importer reads ``obj`` (``None``: not an autoscaler, skipped)."""
    api = str(obj.get("apiVersion", ""))
    kind = obj.get("kind")
    if api.startswith("autoscaling/") and kind == "HorizontalPodAutoscaler":
        return "hpa"
    if api.startswith("keda.sh/") and kind in ("ScaledObject", "ScaledJob"):
        return "keda"
    if api.startswith("serving.knative.dev/") and kind in ("Service", "Configuration"):
        return "knative"
    if "apiVersion" not in obj and "kind" not in obj and looks_like_ray_serve(obj):
        return "ray_serve"
    return None


def _unrecognised(obj: dict[str, Any]) -> str:
    if "apiVersion" in obj or "kind" in obj:
        return (f"{obj.get('kind')!s:.40} ({obj.get('apiVersion')!s:.40}) is not an autoscaler "
                "simscale imports (HorizontalPodAutoscaler, KEDA ScaledObject, Knative Service, "
                "Ray Serve config)")
    return ("not an autoscaler configuration simscale recognises (a HorizontalPodAutoscaler, "
            "KEDA ScaledObject, Knative Service, Ray Serve config or autoscaling_config)")


def _pick(candidates: list[tuple[dict[str, Any], str]], document: str | None,
          fields: Fields) -> tuple[dict[str, Any], str]:
    def name(obj: dict[str, Any]) -> str:
        meta = obj.get("metadata")
        return str(meta.get("name")) if isinstance(meta, dict) else "?"

    if document is not None:
        hits = [c for c in candidates if name(c[0]) == document]
        if not hits:
            raise fields.fail("document", f"no autoscaler named {document!r:.60} (have: "
                              + ", ".join(name(c[0]) for c in candidates) + ")")
        candidates = hits
    if len(candidates) > 1:
        raise fields.fail("document", "the file has several autoscalers ("
                          + ", ".join(name(c[0]) for c in candidates)
                          + "): pick one with document: NAME")
    return candidates[0]


def _complete(result: ImportedStrategy) -> ImportedStrategy:
    """``result`` with every parameter of its strategy, the strategy's defaults filling in."""
    from simscale.strategies import strategy_class

    full = strategy_class(result.strategy).Params.model_validate(result.params).model_dump()
    return ImportedStrategy(result.strategy, full, result.notes, result.kind, result.name,
                            result.source, mapped=tuple(result.params))
