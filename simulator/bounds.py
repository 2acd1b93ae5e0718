"""Bounds on the optimal cost of serving a service's realized arrivals at its SLO target.

For each service and replication, two numbers bracket the cheapest replica schedule whose SLO
attainment (the engine's: met / finished after the warm-up) reaches ``slo_target``:

- a **lower bound** (:func:`lower_bound`): the optimum of a linear relaxation (bins of time,
  the least billed cost a request meeting the SLO can cause, the ``replicas.min`` floor). Every
  schedule meeting the target maps to a feasible point of the LP, so no schedule meeting the
  target costs less (proof: docs/BOUNDS.md). ``lower_bound_usd`` holds for every schedule;
  ``lower_bound_fixed_size_usd`` (larger or equal) for those in which no replica changes size
  while it serves a batch (every schedule that never resizes, e.g. every horizontal
  autoscaler), because a batch in service keeps the time of the size it started on.
- an **achievable schedule** (:func:`hindsight`): replica counts per decision period found by
  offline search over the realized arrivals and run by the exact engine on the same inputs
  (cold starts, sync period, bounds, billing), so its cost is an upper bound on the optimum at
  the attainment it reaches. At most :data:`HINDSIGHT_RUNS` engine runs per replication.

:func:`scenario_bounds` computes both for every (service, replication): the ``bounds`` list of
summary.json (simulator/RESULTS.md). Money in USD, times in seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simscale.simulator.lp import highs_min
from simscale.simulator.scenario import Distribution, Scenario, Service

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile
    from simscale.simulator.engine import ServiceInputs

__all__ = ["HINDSIGHT_RUNS", "ArrivalCounts", "Hindsight", "LowerBound", "ServiceCosts",
           "hindsight", "lower_bound", "replication_bounds", "scenario_bounds", "service_costs"]

#: most LP time bins per service: longer runs get wider bins (a valid, weaker bound)
MAX_BINS = 4_000
#: most exact-engine runs of the hindsight search per replication (all services at once)
HINDSIGHT_RUNS = 12
#: the hindsight schedule's decision period (s): the default sync period of the strategies
HINDSIGHT_PERIOD_S = 15.0
#: services with more requests than this get no hindsight search (every run keeps them all)
HINDSIGHT_MAX_REQUESTS = 5_000_000


# ============================================================================ per-request cost
@dataclass(frozen=True)
class ServiceCosts:
    """What the lower bound needs to know of a service's replicas (USD, seconds).

    ``per_request_fixed_usd``: the least billed cost of one request's share of a batch that
    runs at the size it started on, ``min over size t, batch b <= max_batch_size`` of
    ``price_t * (shortest time of a batch of b at size t) / b``; ``per_request_any_usd``: the
    same when the replica may be resized during the batch (``min price * min time``);
    ``floor_usd_per_s``: billed cost per second that every schedule pays (``replicas.min``
    replicas at the cheapest size; 0 with crashes or a cluster, which may leave fewer replicas
    billed); ``longest_batch_s``: the longest any batch can take."""

    per_request_fixed_usd: float
    per_request_any_usd: float
    floor_usd_per_s: float
    longest_batch_s: float
    sizes: int


def _batch_times_s(svc: Service, profile: Profile | None, threads: int, x: float,
                   shortest: bool) -> np.ndarray:
    """Batch times (s) for b = 1..max_batch_size at ``threads`` when the batch's first request
    drew ``x``: with the smallest idle overhead (``shortest``) or the largest."""
    maxb = svc.batching.max_batch_size
    if isinstance(svc.service_time, Distribution):  # the draw is the time, whatever b
        return np.full(maxb, max(x, 0.0) / svc.cpu_speed)
    stm = profile.service_model(svc.model, svc.device, threads)
    b = np.arange(1, maxb + 1)
    curve = stm.idle_overhead_s
    offset_s, scale_s = stm.affine_s(b, overhead=curve is None)
    idle = 0.0 if curve is None else (min(curve[1]) if shortest else max(curve[1]))
    return np.maximum(offset_s + scale_s * x + idle, 0.0) / svc.cpu_speed


def service_costs(scenario: Scenario, svc: Service, profile: Profile | None,
                  unit_service: np.ndarray, u_range: tuple[float, float] | None = None
                  ) -> ServiceCosts:
    """The :class:`ServiceCosts` of ``svc`` given its realized noise draws ``unit_service`` at
    its configured size and ``u_range``, the smallest and largest uniform they were made from
    (a batch takes the time of its first request's draw, so the smallest and largest draws
    bound every batch). A replica of another size ``t`` draws ``unit_noise_t(u)`` of the same
    uniforms, non-decreasing in ``u``: its extremes are those of ``u_range`` (``None``: of
    any uniform, a weaker bound)."""
    if isinstance(svc.service_time, Distribution):
        sizes = [svc.threads]
    else:
        sizes = profile.threads_available(svc.model, svc.device)
    x_min = float(np.min(unit_service)) if len(unit_service) else 1.0
    x_max = float(np.max(unit_service)) if len(unit_service) else 1.0
    per_thread_s = svc.cost_per_replica_hour / svc.threads / 3600.0
    b = np.arange(1, svc.batching.max_batch_size + 1)
    fixed, fastest, longest = math.inf, math.inf, 0.0
    for t in sizes:
        lo, hi = x_min, x_max
        if t != svc.threads:  # (the same transform as the run's draws: bit for bit)
            lo, hi = profile.service_model(svc.model, svc.device, t).unit_noise(
                np.asarray(u_range or (0.0, 1.0), dtype=np.float64)).tolist()
        shortest = _batch_times_s(svc, profile, t, lo, True)
        fixed = min(fixed, float(np.min(per_thread_s * t * shortest / b)))
        fastest = min(fastest, float(np.min(shortest / b)))
        longest = max(longest, float(np.max(_batch_times_s(svc, profile, t, hi, False))))
    f = scenario.faults
    if f is not None and f.straggler_fraction > 0:
        longest *= f.straggler_slowdown
    cheapest_usd_per_s = per_thread_s * min(sizes)
    crashes = f is not None and f.crash_mtbf_s is not None
    floor = 0.0 if crashes or scenario.cluster is not None else (
        svc.replicas.min * cheapest_usd_per_s)
    return ServiceCosts(fixed, cheapest_usd_per_s * fastest, floor, longest, len(sizes))


# ============================================================================ lower bound
@dataclass
class LowerBound:
    """The LP bound of one service (USD) and how it was computed."""

    any_usd: float
    fixed_size_usd: float
    bin_s: float
    tail_s: float
    wall_s: float
    notes: list[str] = field(default_factory=list)


def _bins(duration_s: float, slo_s: float) -> tuple[float, int]:
    """The LP's bin width (s) and count: half the SLO, wider when that would make more than
    :data:`MAX_BINS` bins."""
    width = max(slo_s / 2.0, duration_s / MAX_BINS)
    return width, int(math.ceil(duration_s / width - 1e-9))


def _solve_lp(counts: np.ndarray, tail: np.ndarray, windows: list[tuple[int, int]],
              floor_per_bin: np.ndarray, need: float, per_request_usd: float) -> float:
    """min sum_j C_j over n_k (met), u_k (unfinished at the end, tail bins only), f_kj (cost
    of bin k's met requests placed in bin j, in units of ``per_request_usd``) and C_j (cost of
    bin j): C_j >= floor_j, C_j >= sum_k f_kj, sum_j f_kj >= n_k, n_k + u_k <= N_k,
    sum n + target * sum u >= need (= target * N). Returns USD (NaN when the solver fails)."""
    nb = len(floor_per_bin)
    if per_request_usd <= 0 or need <= 0:
        return float(floor_per_bin.sum())
    ks = np.nonzero(counts)[0]
    nk = len(ks)
    tk = np.nonzero(tail[ks])[0]  # positions (in ks) of tail bins
    nu = len(tk)
    f_k, f_j = [], []
    for pos, k in enumerate(ks):
        lo, hi = windows[k]
        f_k.extend([pos] * (hi - lo + 1))
        f_j.extend(range(lo, hi + 1))
    nf = len(f_k)
    f_k_a, f_j_a = np.asarray(f_k), np.asarray(f_j)
    # variables: [n (nk) | u (nu) | f (nf) | C (nb)]
    o_u, o_f, o_c = nk, nk + nu, nk + nu + nf
    nvar = o_c + nb
    scale = 1.0 / per_request_usd  # C and floors in units of one request's least cost
    rows, cols, vals = [], [], []
    r = 0
    # (1) n_k - sum_j f_kj <= 0
    rows += list(range(nk)) + (f_k_a).tolist()
    cols += list(range(nk)) + (o_f + np.arange(nf)).tolist()
    vals += [1.0] * nk + [-1.0] * nf
    r += nk
    # (2) sum_k f_kj - C_j <= 0
    rows += (r + f_j_a).tolist() + (r + np.arange(nb)).tolist()
    cols += (o_f + np.arange(nf)).tolist() + (o_c + np.arange(nb)).tolist()
    vals += [1.0] * nf + [-1.0] * nb
    r += nb
    # (3) n_k + u_k <= N_k (tail bins)
    rows += (r + np.arange(nu)).tolist() * 2
    cols += tk.tolist() + (o_u + np.arange(nu)).tolist()
    vals += [1.0] * (2 * nu)
    b_ub = np.concatenate([np.zeros(nk + nb), counts[ks][tk].astype(float)])
    r += nu
    # (4) -(sum n + target * sum u) <= -need   (target folded into need / the u coefficient)
    target = need / counts.sum()
    rows += [r] * (nk + nu)
    cols += list(range(nk)) + (o_u + np.arange(nu)).tolist()
    vals += [-1.0] * nk + [-target] * nu
    b_ub = np.append(b_ub, -need)
    r += 1
    cost = np.zeros(nvar)
    cost[o_c:] = 1.0
    upper = np.full(nvar, math.inf)
    upper[:nk] = counts[ks]
    lower = np.zeros(nvar)
    lower[o_c:] = floor_per_bin * scale
    value = highs_min(cost, lower, upper, np.asarray(rows), np.asarray(cols),
                       np.asarray(vals, dtype=float), b_ub)
    return value / scale


class ArrivalCounts:
    """Arrivals after the warm-up in each of the lower bound's bins (:func:`lower_bound`'s
    ``counts``), counted a chunk of sorted arrival times (seconds) at a time (:meth:`add`)."""

    def __init__(self, scenario: Scenario, svc: Service) -> None:
        self.duration_s = float(scenario.duration_s)
        self.warmup_s = float(scenario.warmup_s)
        self.width_s, nb = _bins(self.duration_s, svc.slo_ms / 1000.0)
        self.counts = np.zeros(nb, dtype=np.int64)

    def add(self, chunk: np.ndarray) -> None:
        """Count the sorted ``chunk``'s arrivals in ``[warmup_s, duration_s)``: each in bin
        ``min(floor(a / width_s), bins - 1)``, found by bisection (the quotients of sorted
        times are sorted), so the cost grows with the bins the chunk spans, not its length."""
        i0, i1 = np.searchsorted(chunk, (self.warmup_s, self.duration_s), side="left").tolist()
        if i1 <= i0:
            return
        q = chunk[i0:i1] / self.width_s
        last = len(self.counts) - 1
        k0, k1 = min(int(q[0]), last), min(int(q[-1]), last)
        cuts = np.searchsorted(q, np.arange(k0 + 1, k1 + 1, dtype=np.float64), side="left")
        self.counts[k0:k1 + 1] += np.diff(cuts, prepend=0, append=len(q))


def lower_bound(scenario: Scenario, svc: Service,
                arrival_s: np.ndarray | Iterable[np.ndarray] | None, costs: ServiceCosts, *,
                counts: np.ndarray | None = None) -> LowerBound:
    """The LP lower bound on the cost (USD) of any schedule of ``svc`` whose SLO attainment on
    the arrivals ``arrival_s`` (an array, or sorted chunks of one; or, in ``counts``, those
    arrivals already counted by :class:`ArrivalCounts`) reaches ``svc.slo_target``
    (docs/BOUNDS.md)."""
    t0 = time.perf_counter()
    T = float(scenario.duration_s)
    slo_s = svc.slo_ms / 1000.0
    width, nb = _bins(T, slo_s)
    edges = np.minimum(np.arange(nb + 1) * width, T)
    notes: list[str] = []
    if counts is None:
        counted = ArrivalCounts(scenario, svc)
        for chunk in ([arrival_s] if isinstance(arrival_s, np.ndarray) else arrival_s or ()):
            counted.add(chunk)
        counts = counted.counts
    # requests that may still be unfinished at the end (left out of the attainment)
    if svc.queue.timeout_ms is not None:
        tail_s = svc.queue.timeout_ms / 1000.0 + costs.longest_batch_s
    else:  # a request may wait unfinished for ever, left out of the attainment
        tail_s = T
        notes.append("no queue timeout: any request may still be waiting at the end (left out "
                     "of the attainment), so the bound is the replicas.min floor; set "
                     "queue.timeout_ms for a tighter one")
    tail = edges[1:] > T - tail_s
    # a met request of bin k is served within [start of k, min(end of k + SLO, T)]
    ends = np.minimum(edges[1:] + slo_s, T)
    hi = np.minimum(np.ceil(ends / width - 1e-9).astype(np.int64) - 1, nb - 1)
    windows = [(k, max(k, int(hi[k]))) for k in range(nb)]
    floor_per_bin = costs.floor_usd_per_s * np.diff(edges)
    n_w = int(counts.sum())
    need = svc.slo_target * n_w
    if width > slo_s / 2.0:
        notes.append(f"bins widened to {width:.3g} s (a valid, weaker bound)")
    fixed = _solve_lp(counts, tail, windows, floor_per_bin, need, costs.per_request_fixed_usd)
    if costs.sizes == 1 or costs.per_request_any_usd >= costs.per_request_fixed_usd:
        anyb = fixed
    else:
        anyb = _solve_lp(counts, tail, windows, floor_per_bin, need, costs.per_request_any_usd)
    if math.isnan(fixed) or math.isnan(anyb):
        notes.append("the LP solver failed: no lower bound")
    return LowerBound(anyb, fixed, width, tail_s, time.perf_counter() - t0, notes)


# ============================================================================ hindsight
@dataclass
class Hindsight:
    """The best schedule the search found for one service: ``counts`` per decision period of
    ``period_s`` (:class:`~simscale.strategies.hindsight.Schedule`), its exact cost (USD) and
    SLO attainment, and whether it meets the target."""

    counts: list[int]
    period_s: float
    cost_usd: float
    slo_attainment: float
    meets_target: bool
    runs: int
    notes: list[str] = field(default_factory=list)


def _initial_counts(scenario: Scenario, svc: Service, profile: Profile | None,
                    arrival_s: np.ndarray, period_s: float) -> tuple[np.ndarray, float]:
    """Counts sized by the queueing model for the realized arrivals each decision's replicas
    serve: decision ``i`` (at ``(i + 1) * period_s``) covers ``[(i+1)P, (i+2)P + cold start]``.
    Returns the counts and the cold start (s) used."""
    from simscale.simulator.engine import size_options
    from simscale.strategies.queueing import cheapest_config

    maxb = svc.batching.max_batch_size
    opts = size_options(svc, profile, maxb)
    same = [o for o in opts if o.device == svc.device] or list(opts)
    opt = min(same, key=lambda o: (abs(o.threads - svc.threads), o.threads))
    cold_s = float(opt.cold_start_s)
    n_dec = max(1, int(math.floor(scenario.duration_s / period_s + 1e-9)))
    lo = (np.arange(n_dec) + 1) * period_s
    hi = lo + period_s + cold_s
    n_in = (np.searchsorted(arrival_s, hi) - np.searchsorted(arrival_s, lo)).astype(float)
    rates = n_in / (hi - lo)
    memo: dict[float, int] = {}
    counts = np.empty(n_dec, dtype=np.int64)
    for i, rate in enumerate(rates):
        key = round(float(rate), 1)
        if key not in memo:
            memo[key] = cheapest_config(key, svc.slo_ms, (opt,), percentile=svc.slo_target,
                                        min_replicas=svc.replicas.min,
                                        max_replicas=svc.replicas.max, tune_batch_size=False,
                                        batch_size=maxb).replicas
        counts[i] = memo[key]
    return counts, cold_s


@dataclass
class _Search:
    """The repair-then-lower search state of one service: raise the counts where requests
    missed the SLO until the target is met, then lower counts (a shrinking subset at a time)
    where nothing missed, keeping the cheapest schedule that meets the target."""

    svc: Service
    counts: np.ndarray
    cold_s: float
    best: tuple[float, float, np.ndarray] | None = None  # (cost, attainment, counts) meeting
    best_misses: np.ndarray | None = None  # the best schedule's misses per decision
    best_any: tuple[float, float, np.ndarray] | None = None  # highest attainment seen
    trial: bool = False  # the last run tried lower counts
    chunk: float = 1.0  # fraction of the candidates lowered at once
    done: bool = False

    def decision_of(self, times_s: np.ndarray) -> np.ndarray:
        """The decision whose new replicas are the first ready at each time."""
        i = np.floor((times_s - self.cold_s) / HINDSIGHT_PERIOD_S).astype(np.int64) - 1
        return np.clip(i, 0, len(self.counts) - 1)

    def update(self, cost: float, att: float, miss_s: np.ndarray, finished: int,
               arrival_s: np.ndarray) -> None:
        """Take one exact run's outcome (``miss_s``: arrival times of the post-warm-up
        requests that finished without meeting the SLO, of ``finished``) and set the next
        run's counts."""
        ok = math.isfinite(att) and att >= self.svc.slo_target
        if math.isfinite(att) and (self.best_any is None or att > self.best_any[1]
                                   or (att == self.best_any[1] and cost < self.best_any[0])):
            self.best_any = (cost, att, self.counts.copy())
        lo, hi = self.svc.replicas.min, self.svc.replicas.max
        misses = np.bincount(self.decision_of(miss_s), minlength=len(self.counts))
        improved = ok and (self.best is None or cost < self.best[0])
        if improved:
            self.best = (cost, att, self.counts.copy())
            self.best_misses = misses
        if self.best is None:  # repair: raise where requests missed, and one period before
            excess = len(miss_s) - (1.0 - self.svc.slo_target) * finished
            if excess <= 0 or np.all(self.counts >= hi):
                self.done = True
                return
            raised = self.counts.copy()
            touched: set[int] = set()
            covered = 0
            for i in np.argsort(-misses, kind="stable").tolist():
                if misses[i] == 0 or covered >= 1.5 * excess:
                    break
                for j in (i, i - 1):
                    if j >= 0 and j not in touched:
                        raised[j] += 1
                        touched.add(j)
                covered += int(misses[i])
            self.counts = np.clip(raised, lo, hi)
            return
        if self.trial and not improved:  # a lowering trial failed: half as many next
            self.chunk /= 2.0
        base = self.best[2]
        near = self.best_misses + np.append(self.best_misses[1:], 0)
        cand = np.nonzero((base > lo) & (near == 0))[0]
        take = int(math.floor(len(cand) * self.chunk))
        if take < 1:
            self.done = True
            return
        load = np.bincount(self.decision_of(arrival_s), minlength=len(base))[cand]
        cand = cand[np.argsort(load / base[cand], kind="stable")]
        self.trial = True
        self.counts = base.copy()
        self.counts[cand[:take]] -= 1

    def result(self, runs: int) -> Hindsight:
        if self.best is not None:
            cost, att, counts = self.best
            return Hindsight(counts.tolist(), HINDSIGHT_PERIOD_S, cost, att, True, runs)
        cost, att, counts = self.best_any or (math.nan, math.nan, self.counts)
        return Hindsight(counts.tolist(), HINDSIGHT_PERIOD_S, cost, att, False, runs,
                         [f"no schedule found in {runs} runs reaches slo_target "
                          f"{self.svc.slo_target:g}: the best attainment is reported"])


def _met_and_missed(plane: Any, slo_s: float, warmup_s: float, T: float
                    ) -> tuple[np.ndarray, int, np.ndarray]:
    """Arrival times of the requests (post warm-up) that finished by ``T`` without meeting
    the SLO, how many post-warm-up requests finished, and the arrival times of all."""
    n = len(plane.arrival_s)
    arr = np.asarray(plane.arrival_s[:n])
    end = np.asarray(plane.end_s[:n])
    drop = np.asarray(plane.drop[:n])
    finished = end <= T
    met = finished & (drop == 0) & (end - arr <= slo_s)
    post = arr >= warmup_s
    missed = finished & ~met & post
    return arr[missed], int(np.count_nonzero(finished & post)), arr


def hindsight(scenario: Scenario, inputs: dict[str, ServiceInputs], profile: Profile | None,
              services: list[Service] | None = None, max_runs: int = HINDSIGHT_RUNS
              ) -> dict[str, Hindsight]:
    """Search every service's schedule at once (one engine run serves all services), at most
    ``max_runs`` exact runs; returns the best :class:`Hindsight` per service name."""
    from simscale.simulator.engine import run_strategy
    from simscale.simulator.metrics import run_figures
    from simscale.strategies import make_strategy
    from simscale.strategies.hindsight import Schedule

    services = list(services or scenario.services)
    names = {s.name for s in services}
    searches = {}
    for svc in services:
        arr = inputs[svc.name].arrays()[0]
        counts, cold_s = _initial_counts(scenario, svc, profile, arr, HINDSIGHT_PERIOD_S)
        searches[svc.name] = _Search(svc, counts, cold_s)
    runs = 0
    while runs < max_runs and not all(s.done for s in searches.values()):
        strats: dict[str, Any] = {}
        for svc in scenario.services:
            if svc.name in names:
                strats[svc.name] = Schedule(searches[svc.name].counts, HINDSIGHT_PERIOD_S)
            else:
                strats[svc.name] = make_strategy("static", {})
        out = run_strategy(scenario, strats, inputs, profile, stream=False)
        runs += 1
        for srun in out:
            if srun.service.name not in names:
                continue
            summ = run_figures(srun, scenario.warmup_s)[0]
            s = searches[srun.service.name]
            if s.done:
                continue
            missed, finished, arr = _met_and_missed(srun.plane, srun.service.slo_ms / 1000.0,
                                                    scenario.warmup_s, scenario.duration_s)
            s.update(float(summ["cost_usd"]), float(summ["slo_attainment"]), missed, finished,
                     arr)
    return {name: s.result(runs) for name, s in searches.items()}


# ============================================================================ all services
def scenario_bounds(scenario: Scenario, seed: int, replications: int,
                    profile: Profile | None, *, with_hindsight: bool = True
                    ) -> list[dict[str, Any]]:
    """The ``bounds`` entries of summary.json: one per (service, replication ``r``, seed
    ``seed + r``), on the inputs the runner draws for that seed (drawn again here; the runner
    itself calls :func:`replication_bounds` with the inputs its runs used)."""
    from simscale.simulator.runner import replication_inputs

    out: list[dict[str, Any]] = []
    for rep in range(replications):
        inputs = replication_inputs(scenario, seed + rep, profile, spool=True)
        out += replication_bounds(scenario, rep, inputs, profile, with_hindsight=with_hindsight)
    return out


class InputsPass:
    """The lower bound's one pass over a service's inputs, a chunk at a time (:meth:`add`):
    the arrivals counted in the bound's bins and the extreme service draws of the configured
    size (the other sizes' come from the extreme uniforms, recorded as they were drawn)."""

    def __init__(self, scenario: Scenario, svc: Service) -> None:
        self.counted = ArrivalCounts(scenario, svc)
        self.n = 0  #: requests seen
        self.lo, self.hi = math.inf, -math.inf

    def add(self, arrival_s: np.ndarray, unit_service: np.ndarray) -> None:
        self.counted.add(arrival_s)
        self.n += len(arrival_s)
        if len(unit_service):
            self.lo = min(self.lo, float(unit_service.min()))
            self.hi = max(self.hi, float(unit_service.max()))


def tap_inputs(scenario: Scenario, inputs: dict[str, ServiceInputs]) -> dict[str, InputsPass]:
    """The bounds' passes over the live inputs (drawn as a run reads them), fed by that
    draw: for :func:`replication_bounds` after the run, so it need not draw them again."""
    passes = {}
    for svc in scenario.services:
        inp = inputs.get(svc.name)
        if inp is not None and inp.live is not None:
            passes[svc.name] = p = InputsPass(scenario, svc)
            inp.live.taps.append(p.add)
    return passes


def replication_bounds(scenario: Scenario, rep: int, inputs: dict[str, ServiceInputs],
                       profile: Profile | None, *, with_hindsight: bool = True,
                       passes: dict[str, InputsPass] | None = None) -> list[dict[str, Any]]:
    """The ``bounds`` entries of replication ``rep`` (one per service) on its ``inputs``
    (``passes``: those of :func:`tap_inputs`, used where a run's draw went over every input)."""
    out: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    lbs = {}
    for svc in scenario.services:
        # one pass over the inputs, a chunk at a time (a long service's are on disk or drawn
        # again), unless a run's draw made it
        inp = inputs[svc.name]
        done = (passes or {}).get(svc.name)
        if done is None or inp.live is None or inp.live.realized is None \
                or done.n != inp.live.realized[0]:
            done = InputsPass(scenario, svc)
            for a, u in inp.chunks():
                done.add(a, u)
        unit = np.asarray([done.lo, done.hi] if done.hi >= done.lo else [])  # (min and max)
        lbs[svc.name] = lower_bound(scenario, svc, None,
                                    service_costs(scenario, svc, profile, unit,
                                                  inp.drawn_u_range),
                                    counts=done.counted.counts)
    small = [s for s in scenario.services
             if inputs[s.name].n_requests <= HINDSIGHT_MAX_REQUESTS]
    t1 = time.perf_counter()
    hs = hindsight(scenario, inputs, profile, small) if with_hindsight and small else {}
    t2 = time.perf_counter()
    for svc in scenario.services:
        lb, h = lbs[svc.name], hs.get(svc.name)
        notes = list(lb.notes) + (h.notes if h is not None else [
            "hindsight skipped" if not with_hindsight
            else f"hindsight skipped: more than {HINDSIGHT_MAX_REQUESTS} requests"])
        out.append({
            "service": svc.name, "replication": rep, "slo_target": svc.slo_target,
            "lower_bound_usd": lb.any_usd,
            "lower_bound_fixed_size_usd": lb.fixed_size_usd,
            "hindsight_usd": math.nan if h is None else h.cost_usd,
            "hindsight_slo_attainment": math.nan if h is None else h.slo_attainment,
            "hindsight_meets_target": bool(h is not None and h.meets_target),
            "hindsight_runs": 0 if h is None else h.runs,
            "bin_s": lb.bin_s, "lower_bound_wall_s": lb.wall_s,
            "hindsight_wall_s": t2 - t1, "wall_s": t2 - t0 if svc is scenario.services[0]
            else 0.0, "notes": notes})
    return out
