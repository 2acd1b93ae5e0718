"""How far the simulation is from the real run: fidelity, calibration and diagnosis.

- :func:`fidelity`: per service, real vs simulated :data:`FIGURES` (p50/p95/p99 latency, SLO
  attainment, completed, dropped, mean replicas, scale events), with relative errors
  ``(simulated - real) / |real|`` (NaN when ``real`` is 0 or missing) and absolute errors
  ``simulated - real``, and whether each figure of :data:`TARGETS` is within its target
  (p50 and p95 within 10 % relative, mean replicas within 0.25 absolute).
- :func:`calibrate`: the factor on the profile's fit that makes the simulated predict time
  equal the replicas' in the real cluster's warm-up (seconds before ``t = 0``): a shared
  machine's speed drifts by several per cent within a minute, and queueing multiplies a
  service-time error several times in the tail. :func:`profile_adjusted` applies it (and, for
  the diagnosis, a replaced per-batch serving overhead).
- :func:`diagnose`: where a difference comes from (service times the replicas showed vs the
  profile, per-batch overhead in the run vs the profile's and the warm-up's, co-location
  slowdown, queueing); :func:`compare` adds an *a posteriori* simulation fed the run's own
  service-time ratio and overhead, which separates the error of the inputs from the error of
  the queueing/scaling model.
- Resizes: the real cluster restarts replicas at the new size one at a time (a rolling
  update, :mod:`simscale.validation.router`), the simulator resizes them in place after the
  decision's ``resize_delay_s``; ``diagnosis.resizes`` lists both runs' resizes side by side,
  and the run's notes say how long each real rollout took against that delay.

Figures are named as in ``summary.json``, dotted (``latency_ms.p50``); times in ms unless the
name says otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from simscale.simulator.scenario import Scenario, Service, StrategySpec
from simscale.simulator.schema import figure_names
from simscale.validation.records import RealRunResult

__all__ = [
    "CALIBRATION_BOUNDS",
    "FIGURES",
    "SHORT",
    "TARGETS",
    "calibrate",
    "compare",
    "diagnose",
    "fidelity",
    "profile_adjusted",
    "serving_overhead_ms",
    "simulate",
]

#: Figures compared (dotted names of a ``summary.json`` run, from the result schema).
FIGURES: tuple[str, ...] = figure_names(
    "latency_ms.p50", "latency_ms.p95", "latency_ms.p99", "slo_attainment", "completed",
    "dropped", "mean_replicas", "scale_events",
)
#: Short names of :data:`FIGURES` for tables.
SHORT: dict[str, str] = {
    "latency_ms.p50": "p50 ms", "latency_ms.p95": "p95 ms", "latency_ms.p99": "p99 ms",
    "slo_attainment": "SLO", "completed": "completed", "dropped": "dropped",
    "mean_replicas": "replicas", "scale_events": "events",
}
#: Fidelity targets: |relative error| for latencies, absolute difference for mean replicas.
TARGETS: dict[str, tuple[str, float]] = {
    "latency_ms.p50": ("rel", 0.10),
    "latency_ms.p95": ("rel", 0.10),
    "mean_replicas": ("abs", 0.25),
}


# --------------------------------------------------------------------------- diagnosis
def diagnose(scenario: Scenario, name: str, prof: Any, real: RealRunResult,
             real_summary: dict[str, Any], sim: Any) -> dict[str, Any]:
    """Where the real run and the simulation differ, for one service.

    - ``arrivals_match``: the real run replayed exactly the simulation's arrival timestamps.
    - ``service_ms_real_mean`` / ``service_ms_profile_mean``: mean batch time the replicas
      measured around ``predict`` during the run, and the simulation's (the serving model less
      its per-batch overhead) for the same batch sizes; ``service_time_ratio`` = real / profile
      (> 1: the replicas' predict ran slower than simulated, e.g. CPU contention).
    - ``batch_ms_real_mean`` / ``batch_ms_simulated_mean``: mean batch time as the router saw it
      (write to answer) and in the simulation (its batches, serving overhead included);
      ``batch_time_ratio`` = simulated / real.
    - ``overhead_ms_per_batch_*``: batch time seen by the router minus the replica's own
      predict time (pipe, JSON, input building, scheduling); ``overhead_ms_profile``: the
      profile's serving overhead (which also holds an isolated predict's slowness);
      ``overhead_ms_warmup_median``: isolated round trip in the warm-up (before ``t = 0``) less
      the profile's tight-loop median of one item, the profile's measurement repeated on the
      real cluster.
    - ``queue_wait_ms_p50`` real and simulated; ``batch_size_mean`` real and simulated.
    """
    svc = next(s for s in scenario.services if s.name == name)
    rec = real.services[name]
    out: dict[str, Any] = {}
    sim_batch_ms = math.nan
    sim_req = getattr(sim, "requests", None)
    if sim_req is not None and len(sim_req):
        sim_arr = np.sort(sim_req.loc[sim_req["service"] == name, "arrival_s"].to_numpy(float))
        out["arrivals_match"] = bool(len(sim_arr) == len(rec.arrival_s)
                                     and np.allclose(sim_arr, np.sort(rec.arrival_s),
                                                     rtol=0, atol=1e-9))
        served = sim_req[(sim_req["service"] == name) & sim_req["start_s"].notna()
                         & sim_req["end_s"].notna()]
        out["batch_size_mean_simulated"] = float(served["batch_size"].mean()) \
            if len(served) else math.nan
        heads = served.drop_duplicates(["replica", "start_s"])
        sim_batch_ms = float(((heads["end_s"] - heads["start_s"]) * 1000.0).mean()) \
            if len(heads) else math.nan
    b = rec.batches
    if len(b):
        bare = prof.service_model(svc.model, svc.device, svc.threads, serving=False)
        serving = prof.service_model(svc.model, svc.device, svc.threads)
        sizes = b["batch_size"].to_numpy(float)
        # the simulated predict: the serving model less its per-batch overhead (the fit,
        # scaled by the serving fit_scale)
        predicted = (serving.mean_s(sizes) - serving.overhead_s) * 1000.0
        real_ms = b["service_ms"].to_numpy(float)
        batch_ms = (b["end_s"] - b["start_s"]).to_numpy(float) * 1000.0
        over = batch_ms - real_ms
        out.update({
            "batches": int(len(b)),
            "batch_size_mean_real": float(b["batch_size"].mean()),
            "service_ms_real_mean": float(np.mean(real_ms)),
            "service_ms_real_median": float(np.median(real_ms)),
            "service_ms_profile_mean": float(np.mean(predicted)),
            "service_time_ratio": float(np.mean(real_ms) / np.mean(predicted)),
            "batch_ms_real_mean": float(np.mean(batch_ms)),
            "batch_ms_simulated_mean": sim_batch_ms,
            "batch_time_ratio": sim_batch_ms / float(np.mean(batch_ms)),
            "overhead_ms_per_batch_median": float(np.median(over)),
            "overhead_ms_per_batch_mean": float(np.mean(over)),
            "overhead_ms_per_batch_p95": float(np.percentile(over, 95)),
            "overhead_ms_profile": float(prof.config(svc.model, svc.device,
                                                     svc.threads).overhead_ms),
            "overhead_ms_warmup_median": serving_overhead_ms(prof, svc,
                                                             real.warmup.get(name, {})),
            "contention": _contention(real, name, b, bare),
        })
    for which, summary in (("real", real_summary), ("simulated", sim.summary)):
        run = next((r for r in summary["runs"] if r["service"] == name), None)
        if run is not None:
            out[f"queue_wait_ms_p50_{which}"] = float(run["queue_wait_ms"]["p50"])
    resizes = _resizes(rec, next((r for r in sim.summary["runs"] if r["service"] == name), {}))
    if resizes["real"] or resizes["simulated"]:
        out["resizes"] = resizes
    return out


def _resizes(rec: Any, sim_run: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The resizes of both runs, side by side (times in s from the start): the real cluster's
    rolling restarts (``decided_s``, ``done_after_s`` = done minus decided, NaN when it did
    not finish; ``replaced`` replicas; how it ``ended``; ``sim_delay_s`` = the decision's
    ``resize_delay_s``) and the simulator's in-place resizes (``decided_s``; every replica
    serves at ``to_threads`` ``resize_delay_s`` later, no replica added)."""
    real = [{"decided_s": ro.decided_s, "from_threads": ro.from_threads,
             "to_threads": ro.to_threads, "ended": ro.ended, "replaced": ro.replaced,
             "done_after_s": (ro.done_s - ro.decided_s) if ro.done_s is not None else math.nan,
             "sim_delay_s": ro.sim_delay_s} for ro in getattr(rec, "rollouts", [])]
    sim = [{"decided_s": float(e["time_s"]), "to_threads": int(e["threads"])}
           for e in sim_run.get("events") or [] if e.get("action") == "resize"]
    return {"real": real, "simulated": sim}


def _contention(real: RealRunResult, name: str, b: pd.DataFrame, stm: Any) -> dict[str, Any]:
    """How this service's batch service times (as the replica measured them, over the
    profile's median for that batch size) vary with what else ran on the machine meanwhile:
    by the number of other batches in service at the batch's midpoint (any service), and for
    batches that overlapped another replica's cold start (process start and model load)."""
    mid = ((b["start_s"] + b["end_s"]) / 2).to_numpy(float)
    ratio = b["service_ms"].to_numpy(float) / (stm.median_s(b["batch_size"].to_numpy(float))
                                                * 1000.0)
    others = np.zeros(len(b), dtype=int)
    starting = np.zeros(len(b), dtype=bool)
    for other_name, rec in real.services.items():
        ob = rec.batches
        if len(ob):
            s0 = ob["start_s"].to_numpy(float)
            e0 = ob["end_s"].to_numpy(float)
            order = np.argsort(s0)
            s_sorted, e_sorted = s0[order], np.sort(e0)
            n_active = (np.searchsorted(s_sorted, mid, side="right")
                        - np.searchsorted(e_sorted, mid, side="right"))
            if other_name == name:  # not the batch itself
                n_active = n_active - 1
            others += n_active
        for r in rec.replicas:
            cs = r["cold_start_s"]
            if cs == cs:  # started during the run: spawn -> ready
                ready = float(r["ready_s"])
                starting |= (mid >= ready - cs) & (mid < ready)
    by_level: dict[str, dict[str, float]] = {}
    for level in sorted(set(others.tolist())):
        sel = (others == level) & ~starting
        if sel.any():
            by_level[str(level)] = {"batches": int(sel.sum()),
                                    "service_over_profile_median": float(np.median(ratio[sel]))}
    out: dict[str, Any] = {"by_other_batches_in_service": by_level}
    if starting.any():
        out["during_cold_start"] = {"batches": int(starting.sum()),
                                    "service_over_profile_median":
                                    float(np.median(ratio[starting]))}
    return out


#: calibration factors are kept within these bounds (a ratio outside them is a broken
#: measurement, not a machine's drift)
CALIBRATION_BOUNDS = (0.5, 2.0)


def calibrate(prof: Any, scenario: Scenario, warmup: dict[str, dict[str, float]]
              ) -> dict[str, dict[str, float]]:
    """Per service, the factor on the profile's fit that makes the simulated predict time of
    one item after ~``gap_ms`` idle equal the replicas' median over the warm-up's isolated
    batches, seconds before the run (the machine's speed then, relative to the profile).

    The simulated predict there is ``fit_scale * t50(1)`` plus the part of the serving
    overhead that is predict (``predict_ms_p50 - fit_scale * p0``, ``p0`` the serving
    replica's reference predict: :attr:`ServingOverhead.reference_predict_ms_p50`); the
    factor scales the first part only. 1 when the warm-up measured nothing; kept within
    :data:`CALIBRATION_BOUNDS` (``unclamped_factor``: the ratio before that)."""
    out: dict[str, dict[str, float]] = {}
    for svc in scenario.services:
        cfg = prof.config(svc.model, svc.device, svc.threads)
        bare = prof.service_model(svc.model, svc.device, svc.threads, serving=False)
        fit_ms = cfg.fit_scale * float(bare.median_s(1)) * 1000.0
        sv = cfg.serving
        extra_ms = 0.0
        ref_ms = None if sv is None else sv.reference_predict_ms_p50
        if sv is not None and ref_ms is not None and sv.predict_ms_p50 is not None:
            extra_ms = max(0.0, float(sv.predict_ms_p50) - cfg.fit_scale * ref_ms)
        warm_ms = float((warmup.get(svc.name) or {}).get("service_ms_median_batch1", math.nan))
        factor = asked = 1.0
        if math.isfinite(warm_ms) and warm_ms > 0 and fit_ms > 0:
            lo, hi = CALIBRATION_BOUNDS
            asked = (warm_ms - extra_ms) / fit_ms
            factor = min(hi, max(lo, asked))
        out[svc.name] = {"factor": factor, "warmup_predict_ms_p50": warm_ms,
                         "profile_predict_ms_p50": fit_ms + extra_ms,
                         "unclamped_factor": asked}
    return out


def serving_overhead_ms(prof: Any, svc: Service, warm: dict[str, float]) -> float:
    """Per-batch overhead (ms) of serving ``svc`` on the real cluster, measured before the run:
    the median round trip of an isolated batch of one (warm-up) minus the profile's tight-loop
    median for one item; never negative. (The profile's ``serving.overhead_ms`` is measured
    against the serving replica's own back-to-back predict instead: the two agree when the fit
    and that predict do.)"""
    stm = prof.service_model(svc.model, svc.device, svc.threads, serving=False)
    rt = float(warm.get("roundtrip_ms_median_batch1", math.nan))
    if not math.isfinite(rt):
        return 0.0
    return max(0.0, rt - float(stm.median_s(1)) * 1000.0)


def profile_adjusted(prof: Any, scenario: Scenario, overhead_ms: dict[str, float] | None,
                     scale: dict[str, float] | None = None) -> Any:
    """A copy of ``prof`` whose tight-loop medians of each service's (model, device, threads)
    are multiplied by ``scale[service]`` (default 1; ``alpha_ms``, ``beta_ms`` and every knot)
    and, unless ``overhead_ms`` is None, whose serving overhead is ``overhead_ms[service]`` per
    batch whatever the idle time, instead of the measured one; the noise is kept. Used for the
    calibration and the a posteriori simulation of the diagnosis."""
    from simscale.profiler.schema import ServingOverhead

    models = dict(prof.models)
    for svc in scenario.services:
        extra = float(overhead_ms.get(svc.name, 0.0)) if overhead_ms is not None else 0.0
        factor = float((scale or {}).get(svc.name, 1.0))
        if not math.isfinite(extra) or extra < 0:
            extra = 0.0
        if not math.isfinite(factor) or factor <= 0:
            factor = 1.0
        mp = models[svc.model]
        configs = []
        for cfg in mp.configs:
            if cfg.device == svc.device and cfg.threads == svc.threads:
                fit = cfg.fit
                knots = [(b, m * factor) for b, m in fit.knots] if fit.knots else fit.knots
                serving = cfg.serving
                if overhead_ms is not None:
                    serving = (serving or ServingOverhead(
                        batches=1, gap_ms=0.0, roundtrip_ms_p50=None,
                        roundtrip_ms_p95=None, predict_ms_p50=None, overhead_ms=0.0)
                    ).model_copy(update={"overhead_ms": extra, "idle_overhead_ms": None})
                cfg = cfg.model_copy(update={
                    "fit": fit.model_copy(update={"alpha_ms": fit.alpha_ms * factor,
                                                  "beta_ms": fit.beta_ms * factor,
                                                  "knots": knots}),
                    "serving": serving})
            configs.append(cfg)
        models[svc.model] = mp.model_copy(update={"configs": configs})
    return prof.model_copy(update={"models": models})


# --------------------------------------------------------------------------- fidelity
def _get(run: dict[str, Any], dotted: str) -> float:
    """The figure ``dotted`` (``latency_ms.p50``) of a summary run, as a float; NaN when it is
    missing or not a number."""
    node: Any = run
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    try:
        return float(node)
    except (TypeError, ValueError):
        return math.nan


def fidelity(real_summary: dict[str, Any], sim_summary: dict[str, Any], *, label: str
             ) -> dict[str, Any]:
    """Per service: ``{"real": {...}, "simulated": {...}, "error": {...}}`` over
    :data:`FIGURES` (dotted summary names), plus ``abs_error`` and ``within_target``."""
    services: dict[str, Any] = {}
    sim_runs = [r for r in sim_summary.get("runs", []) if r.get("label") in (label, None)
                and r.get("replication", 0) == 0] or sim_summary.get("runs", [])
    for real_run in real_summary["runs"]:
        name = real_run["service"]
        sim_run = next((r for r in sim_runs if r.get("service") == name), {})
        real_vals = {f: _get(real_run, f) for f in FIGURES}
        sim_vals = {f: _get(sim_run, f) for f in FIGURES}
        rel = {}
        absd = {}
        for f in FIGURES:
            r, s = real_vals[f], sim_vals[f]
            rel[f] = (s - r) / abs(r) if r == r and s == s and r != 0 else math.nan
            absd[f] = s - r if r == r and s == s else math.nan
        within = {}
        for f, (kind, limit) in TARGETS.items():
            v = rel[f] if kind == "rel" else absd[f]
            within[f] = bool(v == v and abs(v) <= limit)
        services[name] = {"real": real_vals, "simulated": sim_vals, "error": rel,
                          "abs_error": absd, "within_target": within}
    return {"services": services}


# --------------------------------------------------------------------------- simulation
def simulate(scenario: Scenario, spec: StrategySpec, prof: Any) -> Any:
    """One simulation (replication 0, requests kept) of the validated ``scenario`` with the
    strategy ``spec`` and profile ``prof``: the same seed, hence the same arrivals, as the real
    run. Returns the runner's :class:`~simscale.simulator.results.SimulationResult`."""
    from simscale.simulator.runner import run_scenario

    return run_scenario(scenario, strategies=[spec.display_label], seed=scenario.seed,
                        replications=1, profile=prof, keep_requests=True)


def compare(scenario: Scenario, spec: StrategySpec, real: RealRunResult,
            real_summary: dict[str, Any], calibrated: Any, sim: Any, sim_raw: Any,
            sim_off: Any = None) -> dict[str, Any]:
    """The fidelity document of a validation, before its run facts are added:
    :func:`fidelity` of the calibrated simulation ``sim`` (profile ``calibrated``) against the
    real run's summary, per service with the ``uncalibrated`` simulation ``sim_raw``'s figures
    and errors (and ``colocation_off``: the calibrated simulation without co-location,
    ``sim_off``, when given), and a ``diagnosis`` (:func:`diagnose`) that holds the ``a_posteriori``
    simulation (the calibrated profile fed the run's own predict-time ratio and mean per-batch
    overhead, ms; a diagnosis, not a prediction)."""
    doc = fidelity(real_summary, sim.summary, label=spec.display_label)
    doc_raw = fidelity(real_summary, sim_raw.summary, label=spec.display_label)
    doc_off = None if sim_off is None else fidelity(real_summary, sim_off.summary,
                                                    label=spec.display_label)
    beside = ("simulated", "error", "abs_error", "within_target")
    for name, svc_doc in doc["services"].items():
        svc_doc["uncalibrated"] = {k: doc_raw["services"][name][k] for k in beside}
        if doc_off is not None:
            svc_doc["colocation_off"] = {k: doc_off["services"][name][k] for k in beside}
        svc_doc["diagnosis"] = diagnose(scenario, name, calibrated, real, real_summary, sim)
    # a posteriori (a diagnosis, not a prediction): the simulator fed the predict times and
    # per-batch overheads the replicas showed during the run; what is left of the error is
    # the queueing, batching, routing and scaling model's
    scale = {n: d["diagnosis"].get("service_time_ratio", 1.0) for n, d in doc["services"].items()}
    extra = {n: d["diagnosis"].get("overhead_ms_per_batch_mean", 0.0)
             for n, d in doc["services"].items()}
    sim_ap = simulate(scenario, spec, profile_adjusted(calibrated, scenario, extra, scale))
    doc_ap = fidelity(real_summary, sim_ap.summary, label=spec.display_label)
    for name, svc_doc in doc["services"].items():
        svc_doc["diagnosis"]["a_posteriori"] = {
            "what": "simulation with the run's own predict-time ratio and per-batch overhead",
            "service_time_scale": scale[name], "overhead_ms_per_batch": extra[name],
            "simulated": doc_ap["services"][name]["simulated"],
            "error": doc_ap["services"][name]["error"],
        }
    return doc
