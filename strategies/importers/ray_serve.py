"""Ray Serve autoscaling configs onto the built-in ``ray_serve``.

Accepts a Serve config file (``serve deploy`` format: ``applications[].deployments[]`` with
``autoscaling_config`` or ``num_replicas: auto``; also the single-application format with a
top-level ``deployments`` list) or a bare ``autoscaling_config`` mapping (alone or under that
key). Defaults are ``AutoscalingConfig``'s (``python/ray/serve/config.py``): min_replicas 1,
max_replicas 1, target_ongoing_requests 2, upscale_delay_s 30, downscale_delay_s 600,
metrics_interval_s 10, look_back_period_s 30, factors unset (smoothing_factor 1). With
``num_replicas: auto`` the deployment starts from ``AutoscalingConfig.default()`` (max_replicas
100) and the given ``autoscaling_config`` overrides it
(https://docs.ray.io/en/latest/serve/autoscaling-guide.html).
"""

from __future__ import annotations

from typing import Any

from simscale.strategies.importers.common import Fields, ImportedStrategy

#: AutoscalingConfig fields mapped one to one onto ``ray_serve`` parameters
FIELDS = ("target_ongoing_requests", "min_replicas", "max_replicas", "initial_replicas",
          "upscale_delay_s", "downscale_delay_s", "downscale_to_zero_delay_s",
          "upscaling_factor", "downscaling_factor", "upscale_smoothing_factor",
          "downscale_smoothing_factor", "smoothing_factor", "metrics_interval_s",
          "look_back_period_s")
#: fields of AutoscalingConfig that do not change the default policy's decisions here
IGNORED = {
    "prometheus_metrics": "custom metrics only feed custom policies",
    "target_num_ongoing_requests_per_replica": None,  # deprecated alias, mapped below
}
DEFAULT_POLICY_NAMES = ("ray.serve.autoscaling_policy:default_autoscaling_policy",
                        "ray.serve.autoscaling_policy:replica_queue_length_autoscaling_policy",
                        "ray.serve.autoscaling_policy.default_autoscaling_policy")


def looks_like_ray_serve(data: dict[str, Any]) -> bool:
    """Whether ``data`` is a Serve config or an autoscaling_config mapping."""
    if "applications" in data or "autoscaling_config" in data:
        return True
    if isinstance(data.get("deployments"), list):
        return True
    return bool(data) and set(data) <= set(FIELDS) | set(IGNORED) | {"policy",
                                                                     "aggregation_function"}


def deployments(data: dict[str, Any], fields: Fields) -> list[tuple[str, str, dict[str, Any]]]:
    """``(name, dotted field, deployment)`` of every deployment of a Serve config that
    autoscales; ``name`` is ``app/deployment`` (just ``deployment`` without applications)."""
    found = []
    apps = fields.items(data.get("applications"), "applications")
    groups = [(str(fields.mapping(a, f"applications[{i}]", required=True).get("name", "")),
               f"applications[{i}]", a) for i, a in enumerate(apps)]
    if "deployments" in data:
        groups.append(("", "", data))
    for app_name, at, app in groups:
        prefix = f"{at}.deployments" if at else "deployments"
        for j, dep in enumerate(fields.items(app.get("deployments"), prefix)):
            dep = fields.mapping(dep, f"{prefix}[{j}]", required=True)
            if "autoscaling_config" in dep or dep.get("num_replicas") == "auto":
                name = str(dep.get("name", j))
                found.append((f"{app_name}/{name}" if app_name else name, f"{prefix}[{j}]", dep))
    return found


def import_ray_serve(data: dict[str, Any], fields: Fields, document: str | None
                     ) -> ImportedStrategy:
    """Map a Serve config's deployment (picked by ``document``: ``app/deployment`` or the
    deployment's name) or a bare autoscaling_config."""
    notes: list[str] = []
    if "applications" in data or isinstance(data.get("deployments"), list):
        found = deployments(data, fields)
        if not found:
            raise fields.fail("applications", "no deployment autoscales (none has "
                              "autoscaling_config or num_replicas: auto)")
        if document is not None:
            have = ", ".join(n for n, _, _ in found)
            found = [f for f in found if document in (f[0], f[0].split("/")[-1])]
            if not found:
                raise fields.fail("document", f"no autoscaling deployment named "
                                  f"{document!r:.60} (have: {have})")
        if len(found) > 1:
            raise fields.fail("document", "the file has several autoscaling deployments ("
                              + ", ".join(n for n, _, _ in found) + "): pick one with "
                              "document: NAME")
        name, at, dep = found[0]
        config = dict(fields.mapping(dep.get("autoscaling_config"), f"{at}.autoscaling_config"))
        where = f"{at}.autoscaling_config"
        if dep.get("num_replicas") == "auto":
            base = {"target_ongoing_requests": 2.0, "min_replicas": 1, "max_replicas": 100}
            notes.append(f"{at}.num_replicas: auto, so AutoscalingConfig.default() "
                         "(target_ongoing_requests 2, min_replicas 1, max_replicas 100) under "
                         "the autoscaling_config given")
            config = {**base, **config}
        if "max_ongoing_requests" in dep or "max_concurrent_queries" in dep:
            notes.append(f"{at}.max_ongoing_requests: the per-replica cap is not simulated; "
                         "requests wait in the service's queue instead")
        kind = "Ray Serve config"
    else:
        name = None
        where = "autoscaling_config" if "autoscaling_config" in data else ""
        config = dict(fields.mapping(data.get("autoscaling_config", data), where or "file",
                                     required=True))
        kind = "Ray Serve autoscaling_config"
    return ImportedStrategy("ray_serve", _params(config, fields, where, notes), notes,
                            kind=kind, name=name, source=fields.source)


def _params(config: dict[str, Any], fields: Fields, where: str,
            notes: list[str]) -> dict[str, Any]:
    def at(key: str) -> str:
        return f"{where}.{key}" if where else key

    if "target_num_ongoing_requests_per_replica" in config:
        config.setdefault("target_ongoing_requests",
                          config.pop("target_num_ongoing_requests_per_replica"))
        notes.append(f"{at('target_num_ongoing_requests_per_replica')}: deprecated name of "
                     "target_ongoing_requests")
    params: dict[str, Any] = {}
    for key, value in config.items():
        if key in FIELDS:
            if value is not None:
                params[key] = value
        elif key == "prometheus_metrics":
            notes.append(f"{at(key)}: ignored; {IGNORED[key]}")
        elif key == "policy":
            policy = value if isinstance(value, dict) else {"name": value}
            if str(policy.get("policy_function", policy.get("name"))) not in DEFAULT_POLICY_NAMES:
                raise fields.fail(at(key), "a custom autoscaling policy cannot be imported "
                                  "(give it to simscale as a module:Class strategy)")
        elif key == "aggregation_function":
            if value != "mean":
                raise fields.fail(at(key), f"{value!r:.40} cannot be simulated (mean)")
        else:
            raise fields.fail(at(key), "not an AutoscalingConfig field")
    if "max_replicas" not in params:
        params["max_replicas"] = 1
        notes.append(f"{at('max_replicas')}: absent, so AutoscalingConfig's default 1 (the "
                     "deployment cannot scale out)")
    if "initial_replicas" in params:
        notes.append(f"{at('initial_replicas')}: asked for at the first decision; the run starts "
                     "with the scenario's replicas.initial")
    params["sync_period_s"] = 1.0
    notes.append("sync_period_s: 1 s (Ray's controller loop runs every 0.1 s; decisions land at "
                 "most 1 s later here; set sync_period_s: 0.1 in the entry for Ray's cadence)")
    fields.check_params("ray_serve", params, where or "file", same_names=bool(where))
    return params
