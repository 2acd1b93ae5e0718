"""Measure the co-location slowdown of a profile's CPU configurations on this machine and write
it into a copy of the profile (or, with ``--update-default``, into the shipped one).

    python benchmarks/profile_colocation.py [--profile default] [--models linear_regression,...]
                                            [--quick] [--max-replicas N]
                                            [--output profile_colocation.json | --update-default]

For every CPU configuration (model, threads) of the profile it starts replica processes of that
model (``python -m simscale.profiler.replica --serve``, the same the profiler uses) and keeps
``k`` of them busy at once for ``k = 1`` up to this machine's cores (or ``--max-replicas``),
rounds taking turns across ``k`` (:mod:`simscale.profiler.colocation`; the plan of a full
``simscale profile``, or of ``--quick``). The batch size is the configuration's largest
measured one up to 4. Each configuration's ``colocation`` field is set, and
``settings.colocation`` says how and when; everything else of the profile is kept byte for byte
(the JSON is rewritten with the same layout), atomically.

Measure on a quiet machine of the kind the profile describes: other processes slow the
replicas as much as their neighbours do. The load average before and after is printed and
stored.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default", help="profile to start from")
    parser.add_argument("--models", help="comma-separated models (default: all of the profile)")
    parser.add_argument("--quick", action="store_true", help="the quick plan (fewer rounds)")
    parser.add_argument("--max-replicas", type=int, default=None,
                        help="k up to this (default: this machine's cores)")
    parser.add_argument("--output", type=Path, default=Path("profile_colocation.json"),
                        help="where to write the profile with the co-location measured")
    parser.add_argument("--update-default", action="store_true",
                        help="rewrite the shipped default profile instead of --output")
    args = parser.parse_args(argv)

    from simscale.io import write_json_atomic
    from simscale.profiler.colocation import describe_method, measure_colocation
    from simscale.profiler.plan import Config, RunPlan
    from simscale.profiler.schema import Profile, default_profile_path, load_profile
    from simscale.profiler.zoo import train_model

    source = default_profile_path() if args.profile == "default" else Path(args.profile)
    profile = load_profile(source, warn=False)
    doc: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    models = ([m.strip() for m in args.models.split(",") if m.strip()] if args.models
              else list(profile.models))
    for m in models:
        profile.model(m)  # a clear error for a model the profile does not have
    plan = (RunPlan.quick() if args.quick else RunPlan.full()).colocation
    if args.max_replicas is not None:
        plan = replace(plan, max_replicas=max(1, args.max_replicas))
    cores = os.cpu_count() or 1
    if profile.machine.cores != cores:
        print(f"note: the profile's machine has {profile.machine.cores} cores, this one {cores}",
              file=sys.stderr)
    out_path = default_profile_path() if args.update_default else args.output
    load_before = _loadavg()
    print(f"load average before: {load_before}", flush=True)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simscale-colocation-") as tmp:
        for name in models:
            trained = train_model(name, Path(tmp))
            for i, cp in enumerate(profile.models[name].configs):
                if cp.device != "cpu":
                    continue
                cfg = Config(name, "cpu", cp.threads, tuple(b.batch_size for b in cp.batches))
                t0 = time.perf_counter()
                co = measure_colocation(cfg, trained.artifact, plan)
                factors = " ".join(f"{n}:x{f:.3f}" for n, f in enumerate(co.slowdown_by_others))
                p50s = "/".join(f"{v:.4g}" for v in co.p50_ms)
                print(f"{name} cpu {cp.threads}t b={co.batch_size}: slowdown by others "
                      f"{factors}; p50 {p50s} ms; rounds "
                      f"{[[round(v, 4) for v in r] for r in co.round_p50_ms]}; batches "
                      f"{co.samples}; {time.perf_counter() - t0:.1f} s", flush=True)
                doc["models"][name]["configs"][i]["colocation"] = co.model_dump(mode="json")
    load_after = _loadavg()
    print(f"load average after: {load_after}; {time.perf_counter() - t_start:.1f} s in all")
    doc.setdefault("settings", {})["colocation"] = {
        "measured": True,
        "plan": asdict(plan),
        "method": describe_method(plan),
        "measured_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "measured_by": "benchmarks/profile_colocation.py",
        "models": models,
        "host_cores": cores,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    Profile.model_validate(doc)  # never write a profile that does not load
    write_json_atomic(out_path, doc, indent=1)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
