"""What ``simscale tune`` writes: ``tune.json``, ``tune.html``, the winning strategy entry
(``strategy.yaml``) and, for an imported entry, the tuned autoscaler file itself.

Every file is written atomically (:mod:`simscale.io`). ``strategy.yaml`` is a YAML list of
strategy entries, one per tuned service, to paste under a scenario's ``strategies:``: the
built-in entry (the parameters given plus the tuned ones) or, for an imported entry, an
``{import: FILE}`` entry pointing at the tuned file written beside it (the same kind of file as
the original: an HPA manifest for ``kubectl apply``, a KEDA ScaledObject, a Knative Service, a
Serve config for ``serve deploy``; :mod:`simscale.strategies.importers.export`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from simscale.io import write_json_atomic, write_text_atomic

__all__ = ["write_outputs"]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "service"


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it lies inside it, else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _summary_line(rec: dict[str, Any], target: dict[str, Any]) -> str:
    met = "meets" if rec["feasible"] else "misses"
    return (f"cost {rec['cost_usd']:.4f} USD, {target['figure']} {_fmt(rec['target_value'])}"
            f" (worst replication {_fmt(rec['target_worst'])}): {met} {target['text']}")


def _fmt(x: Any) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _header(result: dict[str, Any], service: str) -> list[str]:
    svc = result["services"][service]
    return [f"simscale tune: '{result['strategy']}' on scenario {result['scenario']}, "
            f"service {service}; target {result['target']['text']} on the mean of "
            f"{result['replications']} replication(s); {result['trials']} trials",
            "baseline: " + _summary_line(svc["baseline"], result["target"]),
            f"best (trial {svc['best']['trial']}): "
            + _summary_line(svc["best"], result["target"])]


def _export_imported(result: dict[str, Any], outdir: Path, service: str,
                     several: bool) -> dict[str, Any]:
    """Write the tuned copy of the imported file; returns ``{"file", "changes"}``."""
    from simscale.strategies.importers import import_file
    from simscale.strategies.importers.export import export_file, writable_params

    origin = result["imported_from"]
    src = Path(origin["file"])
    svc = result["services"][service]
    writable = writable_params(origin)
    original = import_file(src, document=origin.get("document"),
                           metric=origin.get("metric")).params
    entry = svc["entry"]
    params = {k: v for k, v in entry.items() if k in writable and v != original.get(k)}
    suffix = src.suffix or ".yaml"
    name = f"{src.stem}.tuned.{_safe(service)}{suffix}" if several else f"{src.stem}.tuned{suffix}"
    target = outdir / name
    header = "\n".join([*_header(result, service), f"from {_shown(src)}; the fields changed are "
                        "listed in tune.json (comments of the original are not kept)"])
    changes = export_file(origin, params, target, header=header)
    left = sorted(k for k, v in entry.items() if k not in writable and k != "name"
                  and v != original.get(k))
    out: dict[str, Any] = {"file": str(target), "changes": changes}
    if left:
        out["not_written"] = [f"{k}: the file cannot carry it (a controller or cluster "
                              "setting)" for k in left]
    return out


def _strategy_entries(result: dict[str, Any], files: dict[str, dict[str, Any]]
                      ) -> list[dict[str, Any]]:
    names = list(result["services"])
    entries = []
    for service in names:
        label = f"{result['strategy']}-tuned" + (f"-{service}" if len(names) > 1 else "")
        if service in files:
            origin = result["imported_from"]
            entry: dict[str, Any] = {"import": Path(files[service]["file"]).name,
                                     "label": label}
            for key in ("document", "metric"):
                if origin.get(key):
                    entry[key] = origin[key]
        else:
            svc_entry = dict(result["services"][service]["entry"])
            entry = {"name": svc_entry.pop("name"), "label": label, **svc_entry}
        entries.append(entry)
    return entries


def write_outputs(result: dict[str, Any], outdir: str | Path, *, report: bool = True
                  ) -> dict[str, Path]:
    """Write ``result`` (from :func:`simscale.sweeps.tune.tune`) to ``outdir``: the tuned
    autoscaler file(s) for an imported entry, ``strategy.yaml``, ``tune.html`` (unless not
    ``report``) and ``tune.json`` (last, with the paths of the others under ``files``).
    Returns the written paths by role (``tune_json``, ``report``, ``strategy``, and
    ``export:<service>``)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    exported: dict[str, dict[str, Any]] = {}
    if result.get("imported_from"):
        several = len(result["services"]) > 1
        for service in result["services"]:
            exported[service] = _export_imported(result, outdir, service, several)
            result["services"][service]["export"] = exported[service]
            paths[f"export:{service}"] = Path(exported[service]["file"])
    entries = _strategy_entries(result, exported)
    lines = [f"# {line}" for service in result["services"] for line in _header(result, service)]
    if exported:
        lines.append("# import paths are relative to this folder: keep the files together or "
                     "adjust the paths to your scenario's folder")
    lines.append("# paste under a scenario's strategies:")
    text = "\n".join(lines) + "\n" + yaml.safe_dump(entries, sort_keys=False,
                                                    default_flow_style=False, width=100)
    paths["strategy"] = outdir / "strategy.yaml"
    write_text_atomic(paths["strategy"], text)
    if report:
        from simscale.reports.tune_report import render_tune_report

        paths["report"] = render_tune_report(result, outdir / "tune.html")
    result["files"] = {role: str(p) for role, p in paths.items()}
    paths["tune_json"] = outdir / "tune.json"
    write_json_atomic(paths["tune_json"], result)
    return paths
