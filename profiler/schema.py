"""The profile file format (``simscale.profile/1``) and the service-time model read from it.

A profile is what ``simscale profile`` measured on one machine. The simulator reads only this
file: every latency, memory and cold-start figure of a simulation comes from here.

Units are in the names: ``_ms`` milliseconds, ``_s`` seconds, ``_mb`` mebibytes (2**20 bytes).

The service-time model that the simulator draws from these figures (the fit, its noise and
the serving overhead) is :class:`simscale.profiler.service_model.ServiceTimeModel`, whose module
docstring states its semantics.
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
from simscale.profiler.service_model import ServiceTimeModel
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
        description="the serving overhead after gap_ms idle (see simscale.profiler.service_model)")
    fit_scale: Positive = Field(
        default=1.0, le=1, description="the fit's times are multiplied by this (see "
        "simscale.profiler.service_model)")
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

