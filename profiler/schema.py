"""The profile file format (``simscale.profile/1``) and the service-time model read from it.

A profile is what ``simscale profile`` measured on one machine. The simulator reads only this
file: every latency, memory and cold-start figure of a simulation comes from here.

Units are in the names: ``_ms`` milliseconds, ``_s`` seconds, ``_mb`` mebibytes (2**20 bytes).

Service-time model
------------------
For each (model, device, threads) the profile stores a fit of the *median* batch latency
``t50(b) = alpha_ms + beta_ms * b`` and a multiplicative noise distribution ``X`` with median 1,
fitted to the pooled ratios ``sample / median(b)``. A batch of ``b`` items then takes
``t50(b) * X`` milliseconds. Where the straight line misses a measured median by more than the
profile's tolerance, ``knots`` (measured batch size, median) are stored and the median is
interpolated piecewise-linearly between them (and extrapolated with the line beyond them).

Where the *spread* of the noise depends on the batch size (a 50 us tabular batch is relatively
far noisier than a 2 s ResNet batch), ``noise_scale`` stores a factor ``s(b)`` per measured batch
size and a batch takes ``t50(b) * (1 + s(b) * (X - 1))``: the median stays ``t50(b)`` and the
spread around it is scaled by ``s(b)``. Without ``noise_scale``, ``s = 1`` and this is
``t50(b) * X``.

Serving overhead
----------------
The fit describes ``predict`` timed in a tight loop. A serving replica also reads the batch
from its router, builds its inputs and writes the answer back, and how long it was idle before
the batch matters: threads that slept take time to wake (an XGBoost call with two threads takes
0.5 ms back to back and ~15 ms after 50 ms idle here). ``serving`` stores what a router sees of a
real replica process (``python -m simscale.profiler.replica --serve``) serving batches of one
item after several idle gaps ``g`` (0: back to back), interleaved: the median round trip
``rt(g)`` and, in the same process, interleaved with them, the median ``predict`` time ``p0`` of
one reused input in a tight loop (``loop_predict_ms_p50``: the way the fit was timed). What
serving adds is measured against that ``p0`` rather than against the fit, so that the machine's
speed drifting between the profiler's phases (several per cent within minutes on a shared
machine) is not taken for an overhead; and against the tight loop rather than the served
batches' own predict (``backtoback_predict_ms_p50``, a fresh input each), so that a batch of one
is simulated at its measured round trip: what a fresh input costs predict is part of what
serving adds. (Profiles made before 2026-12-04 have no ``loop_predict_ms_p50`` and were measured
against ``backtoback_predict_ms_p50``, which left their batches of one 1.6-6.5% below the round
trip.)

- ``fit_scale = min(1, min_g rt(g) / p0)``: below 1 only when a call after some idle gap is
  faster than the tight loop: a speed, so it scales the fit;
- ``idle_overhead_ms``: per gap, ``rt(g) - fit_scale * p0`` (never negative): pipe, input
  building, a fresh input's cache misses, waking threads: fixed costs taken not to grow with the
  batch.

A batch that starts after its replica was idle for ``g`` takes ``overhead(g) + fit_scale *
t50(b) * (1 + s(b) * (X - 1))``, with ``overhead`` interpolated linearly between the measured
gaps and constant beyond them. ``overhead_ms`` is the overhead at ``gap_ms`` (used by latency
statistics that know no idle time). Profiles without ``serving`` (older files) have no overhead
and ``fit_scale = 1``; a ``serving`` without ``idle_overhead_ms`` adds ``overhead_ms`` to every
batch.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simscale.errors import UserError, pydantic_error_to_user_error
from simscale.profiler.colocation_schema import Colocation
from simscale.profiler.noise import NoiseDistribution
from simscale.safeload import MAX_JSON_BYTES, load_json, read_text

SCHEMA = "simscale.profile/1"

#: Noise distributions a fit may name: scipy.stats distribution names.
NOISE_DISTS = ("lognorm", "gamma", "weibull_min", "fisk", "norm")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: a time, size or rate: finite and >= 0 (a profile with negative or NaN latencies is refused)
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Samples = Annotated[list[NonNeg], Field(min_length=1)]


class LatencyStats(_Strict):
    """Measured latency of one batch size (milliseconds per batch)."""

    batch_size: int = Field(ge=1)
    samples_ms: Samples
    mean_ms: NonNeg
    std_ms: NonNeg
    p50_ms: NonNeg
    p95_ms: NonNeg
    p99_ms: NonNeg
    items_per_s: NonNeg
    peak_memory_mb: NonNeg | None = None
    round_p50_ms: list[NonNeg] | None = Field(
        default=None, description="the median (ms) of this batch size in each timing round, in "
        "the order the rounds ran; p50_ms is their median, and samples_ms (so every statistic "
        "and the fit) are the samples of all rounds scaled so that their median is p50_ms. "
        "None: one round (older profiles)")


class NoiseFit(_Strict):
    """Multiplicative noise ``X`` (median 1): a scipy.stats family and its parameters, as
    :mod:`simscale.profiler.noise` (``distribution``) or scipy.stats itself (``frozen``)."""

    dist: Literal["lognorm", "gamma", "weibull_min", "fisk", "norm"]
    params: list[Finite]
    ks_statistic: NonNeg | None = None

    @model_validator(mode="after")
    def _usable(self) -> NoiseFit:
        try:
            q = np.asarray(self.distribution.ppf([0.01, 0.5, 0.99]), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.dist}{tuple(self.params)} is not a distribution: {exc}"
                             ) from None
        if not np.all(np.isfinite(q)) or not q[1] > 0:
            raise ValueError(f"{self.dist}{tuple(self.params)} has no finite positive median")
        return self

    @functools.cached_property
    def distribution(self) -> NoiseDistribution:
        return NoiseDistribution(self.dist, self.params)

    @functools.cached_property
    def frozen(self) -> Any:
        from scipy import stats

        return getattr(stats, self.dist)(*self.params)


class ServiceTimeFit(_Strict):
    """Fitted service-time model of one (model, device, threads)."""

    alpha_ms: NonNeg
    beta_ms: NonNeg
    noise: NoiseFit
    r2: Finite
    max_rel_error: NonNeg = Field(
        description="worst relative error of the model's p50 and p95 against the measured ones "
        "over the measured batch sizes"
    )
    knots: list[tuple[Annotated[int, Field(ge=1)], NonNeg]] | None = Field(
        default=None, description="(batch size, median ms) where the straight line is not enough"
    )
    noise_scale: list[tuple[Annotated[int, Field(ge=1)], NonNeg]] | None = Field(
        default=None,
        description="(batch size, s) where the spread of the noise depends on the batch size: a "
        "batch of b items takes t50(b) * (1 + s(b) * (X - 1)); s is interpolated linearly in "
        "log(b) between the measured batch sizes and held constant beyond them. None: s = 1",
    )


class ServingOverhead(_Strict):
    """What a router sees of a real replica process serving isolated batches of one item
    (milliseconds): the round trip (write the batch, read the answer) and the replica's own
    time around ``predict``, over ``batches`` batches sent ``gap_ms`` apart on average."""

    batches: int = Field(ge=1)
    gap_ms: NonNeg
    #: ``None``: not measured (a serving overhead set by hand, e.g. by validate's calibration)
    roundtrip_ms_p50: NonNeg | None
    roundtrip_ms_p95: NonNeg | None
    predict_ms_p50: NonNeg | None = Field(description="the replica's own time around predict")
    overhead_ms: NonNeg = Field(
        description="the serving overhead after gap_ms idle (see the module docstring)")
    fit_scale: Positive = Field(
        default=1.0, le=1, description="the fit's times are multiplied by this (see the "
        "module docstring)")
    backtoback_predict_ms_p50: NonNeg | None = Field(
        default=None, description="the replica's median predict time back to back, each batch "
        "a fresh input (the reference of the overheads where loop_predict_ms_p50 is None)")
    loop_predict_ms_p50: NonNeg | None = Field(
        default=None, description="the replica's median predict time of one reused input in a "
        "tight loop (the profiler's timing, in the serving process, interleaved with the round "
        "trips): the reference of the overheads; None in profiles made before it was measured")

    @property
    def reference_predict_ms_p50(self) -> float | None:
        """The predict time (ms) the overheads are measured against: the tight-loop one, or
        the back-to-back one in older profiles."""
        if self.loop_predict_ms_p50 is not None:
            return float(self.loop_predict_ms_p50)
        return None if self.backtoback_predict_ms_p50 is None else float(
            self.backtoback_predict_ms_p50)
    idle_overhead_ms: list[tuple[NonNeg, NonNeg]] | None = Field(
        default=None, description="(idle gap ms, overhead ms): the overhead of a batch that "
        "starts after the replica was idle that long (0: back to back), ascending gaps; None: "
        "overhead_ms whatever the idle time")
    idle_roundtrip_ms_p50: list[tuple[NonNeg, NonNeg]] | None = Field(
        default=None, description="(idle gap ms, median round trip ms) as measured")


class ConfigProfile(_Strict):
    """All measurements of one model on one device with one thread count."""

    device: Literal["cpu", "cuda"]
    threads: int = Field(ge=1)
    batches: Annotated[list[LatencyStats], Field(min_length=1)]
    fit: ServiceTimeFit
    serving: ServingOverhead | None = None
    #: co-location slowdown (see :mod:`simscale.profiler.colocation_schema`); None: not measured
    colocation: Colocation | None = None

    @property
    def overhead_ms(self) -> float:
        """Serving overhead (ms) added to every batch; 0 without a ``serving`` measurement."""
        return float(self.serving.overhead_ms) if self.serving is not None else 0.0

    @property
    def fit_scale(self) -> float:
        """Factor on the fit's times when serving; 1 without a ``serving`` measurement."""
        return float(self.serving.fit_scale) if self.serving is not None else 1.0


class ColdStart(_Strict):
    """Spawn-to-first-prediction time of a fresh replica process (seconds)."""

    device: Literal["cpu", "cuda"] = "cpu"
    samples_s: Samples
    mean_s: NonNeg
    p50_s: NonNeg
    p95_s: NonNeg


class Preprocessing(_Strict):
    """Per-item preprocessing time (e.g. image decode, resize, crop, normalize)."""

    description: str
    samples_ms: Samples
    mean_ms: NonNeg
    p50_ms: NonNeg
    p95_ms: NonNeg


class ModelProfile(_Strict):
    """One model: what it is, how good it is, its size, and its measurements."""

    name: str
    description: str
    framework: str
    quality: dict[str, Finite] = Field(default_factory=dict)
    n_parameters: int = Field(ge=0)
    model_size_mb: NonNeg
    input_shape: list[int] | None = None
    preprocessing: Preprocessing | None = None
    cold_start: Annotated[list[ColdStart], Field(min_length=1)]
    configs: Annotated[list[ConfigProfile], Field(min_length=1)]


class CpuInfo(_Strict):
    """The CPU beyond its model name (``/proc/cpuinfo`` on Linux; parsed from
    ``platform.processor()`` elsewhere; ``None`` where the platform does not say)."""

    family: str | None = None
    model_number: str | None = None  # 'model' of /proc/cpuinfo
    stepping: str | None = None
    flags_sha256: str | None = None  # first 16 hex digits of the SHA-256 of the sorted flags
    flags_count: int | None = Field(default=None, ge=0)
    simd: list[str] = Field(default_factory=list)  # vector flags present (avx2, asimd, ...)


class SpeedScore(_Strict):
    """The machine's speed when the profile was measured: the fixed micro-benchmark of
    :mod:`simscale.profiler.speed`, in its work units per second (higher is faster)."""

    score: Positive  # work units per second: the median round of the measurements, pooled
    benchmark: str  # the benchmark's version: scores of different versions are not compared
    at_start_score: Positive | None = None  # measured at the start of profiling
    at_end_score: Positive | None = None  # and at its end
    measured_at: str | None = None


class SpeedRescale(_Strict):
    """How :meth:`Profile.rescaled` changed the profile's CPU times (see there)."""

    factor: Positive  # CPU times were multiplied by this: the profile's score / the machine's
    machine_score: Positive | None = None  # the speed score of the machine rescaled to
    cold_starts: bool  # whether the cold starts were scaled too


class MachineFingerprint(_Strict):
    """Where and when the profile was measured (``speed``: how fast the machine was then;
    ``speed_rescale``: set on a copy rescaled to another machine's speed)."""

    cpu_model: str
    cores: int = Field(ge=1)
    memory_mb: NonNeg
    gpu: str | None = None
    platform: str
    python: str
    libraries: dict[str, str] = Field(default_factory=dict)
    date: str
    cpu: CpuInfo | None = None
    speed: SpeedScore | None = None
    speed_rescale: SpeedRescale | None = None


class Profile(_Strict):
    """A whole profile file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["simscale.profile/1"] = Field(alias="schema")
    created_at: str
    quick: bool = False
    settings: dict[str, Any] = Field(default_factory=dict)
    machine: MachineFingerprint
    models: dict[str, ModelProfile]
    source: str | None = Field(default=None, exclude=True)

    # -- accessors used by the simulator ---------------------------------------------------
    def model(self, name: str) -> ModelProfile:
        """Return the model called ``name`` or raise a :class:`UserError` naming the choices."""
        try:
            return self.models[name]
        except KeyError:
            raise UserError(
                f"model '{name}' is not in the profile (it has: {', '.join(sorted(self.models))})",
                source=self.source,
            ) from None

    def config(self, model: str, device: str, threads: int) -> ConfigProfile:
        """Return the measurements of (model, device, threads) or raise a :class:`UserError`."""
        for cfg in self.model(model).configs:
            if cfg.device == device and cfg.threads == threads:
                return cfg
        have = sorted((c.device, c.threads) for c in self.model(model).configs)
        raise UserError(
            f"model '{model}' has no measurements for device={device} threads={threads} "
            f"(it has: {', '.join(f'{d}/{t}' for d, t in have)})",
            source=self.source,
        )

    def threads_available(self, model: str, device: str) -> list[int]:
        """Thread counts measured for (model, device), ascending."""
        return sorted(c.threads for c in self.model(model).configs if c.device == device)

    def service_model(self, model: str, device: str, threads: int, *, serving: bool = True
                      ) -> ServiceTimeModel:
        """The service-time model of (model, device, threads): as a router sees a serving
        replica (the fit plus the serving overhead), or with ``serving=False`` the bare
        ``predict`` of the fit."""
        cfg = self.config(model, device, threads)
        idle = cfg.serving.idle_overhead_ms if cfg.serving is not None and serving else None
        return ServiceTimeModel(cfg.fit, max_measured_batch=max(b.batch_size for b in cfg.batches),
                                overhead_ms=cfg.overhead_ms if serving else 0.0,
                                fit_scale=cfg.fit_scale if serving else 1.0,
                                idle_overhead_ms=idle)

    def cold_start(self, model: str, device: str = "cpu") -> ColdStart:
        """Measured cold start of ``model`` on ``device`` (falls back to the CPU measurement)."""
        starts = self.model(model).cold_start
        for cs in starts:
            if cs.device == device:
                return cs
        return starts[0]

    def memory_mb(self, model: str, device: str, threads: int, batch_size: int) -> float:
        """Peak memory of one replica serving batches of ``batch_size`` (nearest measured size
        at or above it; the model size when no peak was measured)."""
        cfg = self.config(model, device, threads)
        measured = sorted(
            (b.batch_size, b.peak_memory_mb) for b in cfg.batches if b.peak_memory_mb is not None
        )
        if not measured:
            return self.model(model).model_size_mb
        for bs, mem in measured:
            if bs >= batch_size:
                return float(mem)  # type: ignore[arg-type]
        return float(measured[-1][1])  # type: ignore[arg-type]

    def rescaled(self, factor: float, *, machine_score: float | None = None,
                 cold_starts: bool = True) -> Profile:
        """A copy whose CPU times are multiplied by ``factor`` (> 0; the profile's speed score /
        this machine's, so > 1 on a slower machine): of every ``cpu`` configuration the fit's
        ``alpha_ms``, ``beta_ms`` and knots, the measured batch latencies (``items_per_s``
        divided), the serving overheads and round trips (idle gaps kept), the co-location
        medians, ResNet50's preprocessing and, with ``cold_starts``, the CPU cold starts. The
        noise, ``fit_scale``, co-location factors, memory and every CUDA figure are kept.
        ``machine.speed_rescale`` records the factor (the product of all factors)."""
        f = float(factor)
        if not (np.isfinite(f) and f > 0):
            raise UserError(f"a rescale factor must be finite and positive, not {factor!r}",
                            source=self.source)
        models = {}
        for name, mp in self.models.items():
            configs = [cfg if cfg.device != "cpu" else cfg.model_copy(update={
                "batches": [_scaled(b, f, _BATCH_MS, items_per_s=b.items_per_s / f)
                            for b in cfg.batches],
                "fit": _scaled(cfg.fit, f, ("alpha_ms", "beta_ms", "knots")),
                "serving": None if cfg.serving is None else _scaled(cfg.serving, f, _SERVING_MS),
                "colocation": cfg.colocation and cfg.colocation.scaled(f),
            }) for cfg in mp.configs]
            cold = [_scaled(c, f, ("samples_s", "mean_s", "p50_s", "p95_s"))
                    if cold_starts and c.device == "cpu" else c for c in mp.cold_start]
            pre = mp.preprocessing and _scaled(mp.preprocessing, f, _BATCH_MS)
            models[name] = mp.model_copy(update={"configs": configs, "cold_start": cold,
                                                 "preprocessing": pre})
        before = self.machine.speed_rescale  # rescaling a rescaled copy: the factors multiply
        rescale = SpeedRescale(factor=f * (before.factor if before else 1.0),
                               machine_score=machine_score, cold_starts=cold_starts)
        return self.model_copy(update={"models": models, "machine": self.machine.model_copy(
            update={"speed_rescale": rescale})})

    # -- loading ---------------------------------------------------------------------------
    def fingerprint_differences(self) -> list[str]:
        """What differs between the profile's machine and this one (CPU model, cores, libs)."""
        from simscale.profiler.fingerprint import machine_fingerprint

        here = machine_fingerprint(include_libraries=True)
        diffs = []
        if here.cpu_model != self.machine.cpu_model:
            diffs.append(f"CPU '{self.machine.cpu_model}' (here '{here.cpu_model}')")
        if here.cores != self.machine.cores:
            diffs.append(f"{self.machine.cores} cores (here {here.cores})")
        there_cpu, here_cpu = self.machine.cpu, here.cpu
        if there_cpu is not None and here_cpu is not None:
            for key in ("family", "model_number", "stepping", "flags_sha256"):
                a, b = getattr(there_cpu, key), getattr(here_cpu, key)
                if a is not None and b is not None and a != b:
                    diffs.append(f"CPU {key} {a} (here {b})")
        for lib, ver in self.machine.libraries.items():
            now = here.libraries.get(lib)
            if now is not None and now != ver:
                diffs.append(f"{lib} {ver} (here {now})")
        return diffs


#: what :meth:`Profile.rescaled` multiplies in a batch's statistics and a serving measurement
_BATCH_MS = ("samples_ms", "mean_ms", "std_ms", "p50_ms", "p95_ms", "p99_ms", "round_p50_ms")
_SERVING_MS = ("roundtrip_ms_p50", "roundtrip_ms_p95", "predict_ms_p50", "overhead_ms",
               "backtoback_predict_ms_p50", "loop_predict_ms_p50", "idle_overhead_ms",
               "idle_roundtrip_ms_p50")


def _scaled(obj: BaseModel, factor: float, names: tuple[str, ...], **update: Any) -> Any:
    """A copy of ``obj`` with those of its fields ``names`` that it has multiplied by ``factor``:
    a number, each number of a list, or the second of each pair of a list of pairs (``(x,
    ms)``); ``None`` stays ``None``; ``update`` sets further fields."""
    def times(v: Any) -> Any:
        if isinstance(v, list | tuple):
            return [(p[0], p[1] * factor) if isinstance(p, list | tuple) else p * factor
                    for p in v]
        return None if v is None else v * factor

    scaled = {n: times(getattr(obj, n)) for n in names if n in type(obj).model_fields}
    return obj.model_copy(update={**scaled, **update})


class ServiceTimeModel:
    """Draws batch service times (seconds) from a :class:`ServiceTimeFit`.

    All methods are vectorised over ``batch_size``. Sampling is by inverse CDF from uniforms
    supplied by the caller, so that simulations of different strategies can share the same
    random numbers (common random numbers). For a serving replica (see the module docstring)
    the fit's times are multiplied by ``fit_scale`` and ``overhead_ms`` is added to every
    batch's time and to every statistic.
    """

    def __init__(self, fit: ServiceTimeFit, max_measured_batch: int | None = None,
                 overhead_ms: float = 0.0, fit_scale: float = 1.0,
                 idle_overhead_ms: list[tuple[float, float]] | None = None):
        self.fit = fit
        self.max_measured_batch = max_measured_batch
        self.overhead_s = float(overhead_ms) / 1000.0
        self.fit_scale = float(fit_scale)
        #: ``(idle gaps s, overheads s)`` or None (see the module docstring)
        self.idle_overhead_s: tuple[list[float], list[float]] | None = None
        if idle_overhead_ms:
            pts = sorted(idle_overhead_ms)
            self.idle_overhead_s = ([g / 1000.0 for g, _ in pts], [o / 1000.0 for _, o in pts])
        self._noise = fit.noise.distribution
        with np.errstate(all="ignore"):  # (a family without a mean or variance: NaN)
            self._noise_mean, self._noise_var = float(self._noise.mean()), float(self._noise.var())
        if fit.knots:
            kb, km = zip(*sorted(fit.knots), strict=True)
            self._knot_b = np.asarray(kb, dtype=float)
            self._knot_ms = np.asarray(km, dtype=float)
        else:
            self._knot_b = None
            self._knot_ms = None
        if fit.noise_scale:
            sb, ss = zip(*sorted(fit.noise_scale), strict=True)
            self._scale_logb = np.log(np.asarray(sb, dtype=float))
            self._scale = np.asarray(ss, dtype=float)
        else:
            self._scale_logb = None
            self._scale = None
        # Floor of the unit noise X so that 1 + s*(X - 1) >= 1e-3 for every s(b) of this fit:
        # service times stay positive and affine in X (see affine_s).
        s_max = 1.0 if self._scale is None else max(float(self._scale.max()), 1e-12)
        self._x_floor = 1.0 - (1.0 - 1e-3) / s_max

    def median_s(self, batch_size: Any) -> np.ndarray:
        """Median service time (s) of a batch of ``batch_size`` items."""
        return self._t50_s(batch_size) + self.overhead_s

    def overhead_after_idle_s(self, idle_s: Any) -> np.ndarray:
        """The serving overhead (s) of a batch that starts after the replica was idle for
        ``idle_s`` seconds (``overhead_ms`` whatever the idle time without a measured curve)."""
        idle = np.asarray(idle_s, dtype=float)
        if self.idle_overhead_s is None:
            return np.full_like(idle, self.overhead_s)
        return np.interp(idle, *self.idle_overhead_s)

    def _t50_s(self, batch_size: Any) -> np.ndarray:
        """The fit's median (s) at ``batch_size`` times ``fit_scale``, without the overhead."""
        b = np.asarray(batch_size, dtype=float)
        line_ms = self.fit.alpha_ms + self.fit.beta_ms * b
        if self._knot_b is not None:
            inside = (b >= self._knot_b[0]) & (b <= self._knot_b[-1])
            line_ms = np.where(inside, np.interp(b, self._knot_b, self._knot_ms), line_ms)
        return np.maximum(line_ms, 1e-6) * (self.fit_scale / 1000.0)

    def noise_scale(self, batch_size: Any) -> np.ndarray:
        """Spread factor ``s(b)`` of the noise at ``batch_size`` (1 without ``noise_scale``)."""
        b = np.asarray(batch_size, dtype=float)
        if self._scale is None:
            return np.ones_like(b)
        return np.interp(np.log(np.maximum(b, 1e-12)), self._scale_logb, self._scale)

    def mean_s(self, batch_size: Any) -> np.ndarray:
        """Mean service time (s) of a batch of ``batch_size`` items."""
        s = self.noise_scale(batch_size)
        return self._t50_s(batch_size) * (1.0 + s * (self._noise_mean - 1.0)) + self.overhead_s

    def quantile_s(self, batch_size: Any, q: float) -> np.ndarray:
        """The ``q`` quantile (0..1) of the service time (s) of a batch of ``batch_size``."""
        s = self.noise_scale(batch_size)
        x = np.maximum(1.0 + s * (float(self._noise.ppf(q)) - 1.0), 1e-3)
        return self._t50_s(batch_size) * x + self.overhead_s

    def sample_s(self, batch_size: Any, u: np.ndarray) -> np.ndarray:
        """Service times (s) for batches of ``batch_size`` from uniforms ``u`` in (0, 1)."""
        offset_s, scale_s = self.affine_s(batch_size)
        return offset_s + scale_s * self.unit_noise(u)

    def unit_noise(self, u: np.ndarray) -> np.ndarray:
        """The noise draw ``X`` (median 1) for uniforms ``u`` in (0, 1), by inverse CDF.

        The simulator keeps one per request (common random numbers) and turns it into a batch's
        time with :meth:`affine_s`."""
        x = self._noise.ppf(np.clip(u, 1e-12, 1 - 1e-12))
        return np.maximum(x, self._x_floor)

    def affine_s(self, batch_size: Any, *, overhead: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(offset_s, scale_s)`` with service time ``offset_s + scale_s * X`` for a batch of
        ``batch_size`` whose noise draw is ``X`` (:meth:`unit_noise`): the serving overhead
        (left out with ``overhead=False``, for a caller that adds
        :meth:`overhead_after_idle_s` itself) plus the fit's median times
        ``1 + s(b) * (X - 1)``."""
        med = self._t50_s(batch_size)
        s = self.noise_scale(batch_size)
        return med * (1.0 - s) + (self.overhead_s if overhead else 0.0), med * s

    @property
    def scv(self) -> float:
        """Squared coefficient of variation of the noise ``X`` (var / mean**2).

        This is the pooled noise (``s = 1``, no serving overhead); for a batch's service time use
        :meth:`scv_at`.
        """
        return self._noise_var / self._noise_mean**2

    def scv_at(self, batch_size: Any) -> np.ndarray:
        """Squared coefficient of variation of the service time at ``batch_size`` (the serving
        overhead adds to the mean, not to the variance)."""
        s = self.noise_scale(batch_size)
        med = self._t50_s(batch_size)
        return (s * med) ** 2 * self._noise_var / self.mean_s(batch_size) ** 2


def load_profile(path: str | Path | None = None, *, warn: bool = True) -> Profile:
    """Load and validate a profile.

    ``path`` is a file, or ``None``/``"default"`` for the profile shipped inside the package.
    Bad files raise :class:`UserError` naming the file and the field. When ``warn`` is true and the
    profile was measured on another machine or with other library versions, a warning says so.
    """
    if path is None or str(path) == "default":
        path = default_profile_path()
    path = Path(path)
    data = load_json(read_text(path, what="profile", max_bytes=MAX_JSON_BYTES), source=path)
    if not isinstance(data, dict):
        raise UserError("a profile must be a JSON object", source=path)
    if data.get("schema") != SCHEMA:
        raise UserError(f"unsupported schema {data.get('schema')!r} (expected '{SCHEMA}')",
                        source=path, field="schema")
    try:
        profile = Profile.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        raise pydantic_error_to_user_error(exc, path) from None
    if warn and not _is_default(path) and (diffs := profile.fingerprint_differences()):
        warnings.warn(f"{path}: profile was measured elsewhere: " + "; ".join(diffs),
                      ProfileMismatchWarning, stacklevel=2)
    return profile


class ProfileMismatchWarning(UserWarning):
    """The profile was measured on another machine or with other library versions."""


def default_profile_path(device: str = "cpu") -> Path:
    """Path of the profile shipped inside the package (``device`` ``cpu`` or ``cuda``)."""
    return Path(__file__).parent / "data" / f"default_{device}.json"


def _is_default(path: Path) -> bool:
    try:
        return path.resolve().parent == default_profile_path().resolve().parent
    except OSError:
        return False

