"""Scenario files: pydantic models that are the single source of truth for the YAML format.

Every name here is a contract (the README, the tests and outside checks use them). Unknown keys
are rejected. :func:`load_scenario` turns any problem into one :class:`UserError` line naming
the file and the dotted field.

Units are in the names: ``_s`` seconds, ``_ms`` milliseconds, ``_rps`` requests per second,
``_mb`` mebibytes.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from simscale.errors import UserError, pydantic_error_to_user_error
from simscale.safeload import (
    MAX_DEPTH,
    MAX_YAML_BYTES,
    InputRefused,
    check_depth,
    load_yaml,
    read_text,
)
from simscale.simulator.fields import FrozenModel as _Model
from simscale.simulator.fields import NonNegFloat, PositiveFloat
from simscale.simulator.serving import ROUTING_POLICIES
from simscale.simulator.workloads import Workload, rebuild_on_register

#: longest ``--set`` value accepted, characters
MAX_OVERRIDE_CHARS = 65_536

# ---------------------------------------------------------------------------- distributions
class Distribution(_Model):
    """A random duration: ``{dist, mean_ms | mean_s, cv}``.

    ``cv`` is the coefficient of variation (std / mean); it is ignored by ``exponential``
    (always 1) and ``deterministic`` (always 0).
    """

    dist: Literal["exponential", "deterministic", "lognormal", "gamma", "uniform"]
    mean_ms: PositiveFloat | None = None
    mean_s: PositiveFloat | None = None
    #: at most 100: beyond that a lognormal or gamma duration is almost always ~0 or enormous
    cv: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 1.0

    @model_validator(mode="after")
    def _one_mean(self) -> Distribution:
        if (self.mean_ms is None) == (self.mean_s is None):
            raise ValueError("give exactly one of mean_ms or mean_s")
        if self.dist == "uniform" and self.cv > 1 / math.sqrt(3):
            raise ValueError("a uniform distribution on [0, 2*mean] has cv at most 0.577")
        return self

    @property
    def mean_seconds(self) -> float:
        """The mean in seconds."""
        return self.mean_s if self.mean_s is not None else self.mean_ms / 1000.0  # type: ignore

    @property
    def effective_cv(self) -> float:
        """The coefficient of variation actually used."""
        return {"exponential": 1.0, "deterministic": 0.0}.get(self.dist, self.cv)


# ---------------------------------------------------------------------------- services
class Batching(_Model):
    """A replica takes up to ``max_batch_size`` queued requests at once; when fewer are waiting
    it waits until the oldest has waited ``max_wait_ms`` (or the batch fills) before starting."""

    max_batch_size: Annotated[int, Field(ge=1)] = 1
    max_wait_ms: NonNegFloat = 0.0


class Queue(_Model):
    """Requests arriving when ``capacity`` are already waiting are dropped (``queue_full``);
    requests that wait longer than ``timeout_ms`` without starting are dropped (``timeout``).
    ``None`` means unbounded / never."""

    capacity: Annotated[int, Field(ge=0)] | None = None
    timeout_ms: PositiveFloat | None = None


class Replicas(_Model):
    initial: Annotated[int, Field(ge=0)] = 1
    min: Annotated[int, Field(ge=0)] = 1
    max: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if not self.min <= self.initial <= self.max:
            raise ValueError(f"initial ({self.initial}) must lie within min..max")
        return self


#: a routing policy registered in :data:`simscale.simulator.serving.ROUTING_POLICIES`
Routing = Literal[tuple(ROUTING_POLICIES)]  # type: ignore[valid-type]


class Service(_Model):
    """One model served by a group of identical replicas."""

    name: str = Field(min_length=1)
    model: str
    device: Literal["cpu", "cuda"] = "cpu"
    threads: Annotated[int, Field(ge=1, le=4096)] = 1
    #: speed of the CPUs (or GPU) the replicas run on relative to the machine that measured
    #: the profile: service times are divided by it (0.5 = half as fast, times double)
    cpu_speed: Annotated[float, Field(ge=1e-4, le=1e4, allow_inf_nan=False)] = 1.0
    slo_ms: PositiveFloat
    #: the fraction of requests (0 < x <= 1) that must finish within ``slo_ms`` for a schedule
    #: to count as meeting the SLO: what the bounds on the optimum (``simulator/bounds.py``,
    #: docs/BOUNDS.md) are computed for
    slo_target: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.99
    batching: Batching = Batching()
    queue: Queue = Queue()
    routing: Routing = "shared_queue"
    replicas: Replicas = Replicas()
    cold_start_s: Literal["profile"] | NonNegFloat | Distribution = "profile"
    service_time: Literal["profile"] | Distribution = "profile"
    cost_per_replica_hour: NonNegFloat = 0.0
    workload: Workload


# ---------------------------------------------------------------------------- the rest
class Cluster(_Model):
    """Room for replicas: each takes ``threads`` cores and its profiled peak memory. A replica that
    does not fit waits as pending (like an unschedulable pod).

    Two forms, never mixed: one pool ``{cores, memory_mb}`` (no hosts, no co-location), or hosts
    ``{nodes, cores_per_node, memory_per_node_mb, placement, colocation, slowdown_by_others}``:
    a replica needs its cores and memory on one node; ``placement`` ``spread`` (default, like
    Kubernetes' LeastAllocated scoring: the node with the most free cores that fits, ties the
    lowest index) or ``pack`` (the node with the fewest free cores that fits, ties the lowest
    index); ``colocation`` (default true) slows a batch while other batches are in service on
    its node by the factor ``slowdown_by_others[n]`` of ``n`` others (the override given here for
    every replica, else the profile's measured factors of the replica's size, else 1; see
    :mod:`simscale.simulator.colocation`)."""

    cores: PositiveFloat | None = None
    memory_mb: PositiveFloat | None = None
    nodes: Annotated[int, Field(ge=1, le=100_000)] | None = None
    cores_per_node: PositiveFloat | None = None
    memory_per_node_mb: PositiveFloat | None = None
    #: ``None``: ``spread`` (the host form only)
    placement: Literal["spread", "pack"] | None = None
    #: ``None``: true in the host form (the host form only)
    colocation: bool | None = None
    #: ``[n]``: the factor on a batch's time while ``n`` other batches are in service on its
    #: node, for every replica (beyond the list: extrapolated as the profile's factors are);
    #: ``[0]`` must be 1
    slowdown_by_others: Annotated[list[Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]],
                                  Field(min_length=1, max_length=4096)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Cluster:
        pool = [k for k in ("cores", "memory_mb") if getattr(self, k) is not None]
        hosts = [k for k in ("nodes", "cores_per_node", "memory_per_node_mb", "placement",
                             "colocation", "slowdown_by_others") if getattr(self, k) is not None]
        if pool and hosts:
            raise ValueError(f"{hosts[0]}: give either one pool (cores, memory_mb) or "
                             "hosts (nodes, cores_per_node, memory_per_node_mb, ...), not both")
        form = "host" if hosts else "pool"
        need = ("nodes", "cores_per_node", "memory_per_node_mb") if hosts else (
            "cores", "memory_mb")
        for k in need:
            if getattr(self, k) is None:
                raise ValueError(f"{k}: missing (the {form} form needs {', '.join(need)})")
        s = self.slowdown_by_others
        if s is not None and s[0] != 1.0:
            raise ValueError("slowdown_by_others: [0] must be 1 (no other batch in service)")
        if s is not None and self.colocation is False:
            raise ValueError("slowdown_by_others: needs colocation (it is false)")
        return self

    @property
    def hosts(self) -> bool:
        """Whether this is the host form (``nodes`` ...)."""
        return self.nodes is not None

    @property
    def colocated(self) -> bool:
        """Whether batches slow each other on a node (the host form with ``colocation``)."""
        return self.hosts and self.colocation is not False

    def node_room(self) -> list[tuple[float, float]]:
        """``(cores, memory_mb)`` of each node (the pool form: one node holding it all)."""
        if self.hosts:
            return [(float(self.cores_per_node), float(self.memory_per_node_mb))] * self.nodes
        return [(float(self.cores), float(self.memory_mb))]


class Faults(_Model):
    """Replica crashes (exponential times between failures per ready replica, ``None`` for
    none) and stragglers (a ``straggler_fraction`` of replicas serve ``straggler_slowdown``
    times slower)."""

    crash_mtbf_s: PositiveFloat | None = None
    straggler_fraction: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    straggler_slowdown: Annotated[float, Field(ge=1, le=1000, allow_inf_nan=False)] = 1.0


class Metrics(_Model):
    """How the autoscaler sees metrics: ``lag_s`` is the scrape/aggregation delay."""

    lag_s: NonNegFloat = 0.0
    history_s: Annotated[int, Field(ge=10, le=86_400)] = 900
    #: width of the time series' bins in whole seconds (``timeseries.parquet``); ``None``: 1 s
    #: while a run has at most 86,400 of them (a day), else the smallest of 10, 60, 300, 900
    #: and 3600 s that keeps it there (weeks of traffic at 1 s would be millions of rows per
    #: run). The autoscaler's observations keep their 1 s bins whatever this is.
    timeseries_bin_s: Annotated[int, Field(ge=1, le=86_400)] | None = None


class StrategySpec(BaseModel):
    """``{name: <built-in name or module:Class>, label: optional, ...parameters}``, or
    ``{import: FILE, label, document, metric, ...parameter overrides}``: a real autoscaler's
    configuration (HPA, KEDA, Knative, Ray Serve; :mod:`simscale.strategies.importers`) read
    from ``FILE`` (relative to the scenario file) and turned into the built-in it maps to, with
    its parameters; ``document`` picks one object of a multi-document file, ``metric`` (``rps``,
    ``concurrency`` or ``queue_length``) says what an opaque external or Prometheus metric
    measures, and any other key overrides one mapped parameter. The label defaults to the
    imported object's name (else the file's stem)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    label: str | None = None
    #: for an imported entry: ``{"file", "document", "metric", "kind", "notes"}``; set by
    #: simscale, not in YAML (and not dumped: the entry dumps as the built-in it became)
    imported_from: dict[str, Any] | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _import(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and ("import" in data or "imported_from" in data):
            return resolve_import_entry(data, info.context or {})
        return data

    @property
    def params(self) -> dict[str, Any]:
        """The strategy's parameters (every key but name and label)."""
        return dict(self.model_extra or {})

    @property
    def display_label(self) -> str:
        return self.label or self.name


def resolve_import_entry(data: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The strategy entry ``{import: FILE, ...}`` as the built-in entry it maps to.

    ``context`` may give ``base_dir`` (relative paths start there; else the current folder)
    and ``source`` (the scenario file, for errors about the entry itself). Problems in the
    imported file are :class:`UserError` lines naming that file and its field.
    """
    from simscale.strategies.importers import import_file

    source = context.get("source")
    if "imported_from" in data:
        raise UserError("set by simscale, not in a scenario", source=source,
                        field="strategies.imported_from")
    entry = dict(data)
    if "name" in entry:
        raise UserError("give either name or import, not both", source=source,
                        field="strategies.import")
    file = entry.pop("import")
    label = entry.pop("label", None)
    document = entry.pop("document", None)
    metric = entry.pop("metric", None)
    for key, value in (("import", file), ("label", label), ("document", document),
                       ("metric", metric)):
        if value is not None and (not isinstance(value, str) or not value):
            raise UserError("must be a non-empty string", source=source,
                            field=f"strategies.{key}")
    if file is None:
        raise UserError("must be a file path", source=source, field="strategies.import")
    path = Path(file)
    if not path.is_absolute() and context.get("base_dir") is not None:
        path = Path(context["base_dir"]) / path
    result = import_file(path, document=document, metric=metric)
    return {**result.params, **entry, "name": result.strategy,
            "label": label or result.name or path.stem,
            "imported_from": {"file": str(path), "document": document, "metric": metric,
                              "kind": result.kind, "notes": list(result.notes)}}


class Scenario(_Model):
    """A whole scenario file."""

    name: str = Field(min_length=1)
    description: str = ""
    duration_s: PositiveFloat
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    warmup_s: NonNegFloat = 0.0
    profile: str = "default"
    services: list[Service] = Field(min_length=1)
    strategies: list[StrategySpec] = Field(default_factory=lambda: [StrategySpec(name="static")])
    cluster: Cluster | None = None
    faults: Faults | None = None
    metrics: Metrics = Metrics()
    #: folder of the scenario file (trace and profile paths are relative to it); not in YAML
    base_dir: str | None = Field(default=None, exclude=True)
    #: the scenario file (for error messages); not in YAML
    source: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _checks(self) -> Scenario:
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError("service names must be unique")
        labels = [s.display_label for s in self.strategies]
        if len(set(labels)) != len(labels):
            raise ValueError("strategy labels must be unique (give each a label)")
        if self.warmup_s >= self.duration_s:
            raise ValueError("warmup_s must be shorter than duration_s")
        return self

    def resolve_path(self, path: str) -> Path:
        """A path from the scenario, relative to the scenario file's folder."""
        p = Path(path)
        if not p.is_absolute() and self.base_dir is not None:
            p = Path(self.base_dir) / p
        return p


# a service's workload may be of any registered kind, including ones registered later
rebuild_on_register(Service, Scenario)


def __getattr__(name: str) -> Any:
    """The workload models under their former home (``scenario.TraceWorkload``, ...): they now
    live in :mod:`simscale.simulator.workloads`, one module per kind."""
    import simscale.simulator.workloads as workloads

    if name in workloads.__all__:
        return getattr(workloads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------- loading
def load_scenario(
    source: str | Path | dict[str, Any], overrides: list[str] | None = None
) -> Scenario:
    """Load and validate a scenario from a YAML path or a dict.

    ``overrides`` are ``dotted.key=value`` strings (value parsed as YAML), applied before
    validation; list items may be addressed by position or by their ``name``/``label``.
    Raises :class:`UserError` naming the file and field on any problem.
    """
    src_name: str | None
    if isinstance(source, dict):
        check_depth(source, source=source.get("__source__"))
        data = copy.deepcopy(source)
        src_name = data.pop("__source__", None)
        base_dir = data.pop("__base_dir__", None)
    else:
        path = Path(source)
        src_name = str(path)
        if not path.exists():
            # a bare name ("step", "step.yaml") may be a shipped scenario; a path never is
            shipped = shipped_scenario_path(str(source)) if path.name == str(source) else None
            if shipped is None:
                raise UserError("scenario file not found", source=path)
            path = shipped
        text = read_text(path, what="scenario", max_bytes=MAX_YAML_BYTES)
        data = load_yaml(text, source=path, what="scenario")
        base_dir = str(path.resolve().parent)
        if not isinstance(data, dict):
            raise UserError("a scenario must be a YAML mapping", source=path)
    for item in overrides or []:
        apply_override(data, item, source=src_name)
    if overrides:
        check_depth(data, source="--set")
    try:
        scenario = Scenario.model_validate(
            data, context={"base_dir": base_dir, "source": src_name})  # for {import: FILE}
    except ValidationError as exc:
        raise pydantic_error_to_user_error(exc, src_name) from None
    return scenario.model_copy(update={"base_dir": base_dir, "source": src_name})


def apply_override(data: dict[str, Any], item: str, *, source: str | None = None) -> None:
    """Apply one ``dotted.key=value`` override to a raw scenario dict in place."""
    if "=" not in item:
        raise UserError(f"--set expects dotted.key=value, got '{item}'", source="--set")
    key, _, raw = item.partition("=")
    if len(raw) > MAX_OVERRIDE_CHARS:
        raise UserError(f"value longer than {MAX_OVERRIDE_CHARS} characters", source="--set",
                        field=key.strip())
    try:
        value = load_yaml(raw, source="--set", what="value")
    except InputRefused:
        raise
    except UserError:
        value = raw  # not YAML: the text itself
    set_dotted(data, key.strip(), value, source="--set")


def set_dotted(data: Any, key: str, value: Any, *, source: str | None = None) -> None:
    """Set ``value`` at dotted path ``key`` inside nested dicts/lists; list items are addressed
    by index or by the ``name``/``label`` of the item."""
    parts = key.split(".")
    if len(parts) > MAX_DEPTH:
        raise UserError(f"more than {MAX_DEPTH} dotted parts", source=source, field=key[:80])
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part)
            if idx is None:
                raise UserError(f"no list item '{part}'", source=source, field=key)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
        else:
            raise UserError(f"'{part}' is inside a value that is not a mapping", source=source,
                            field=key)


def _list_index(items: list[Any], part: str) -> int | None:
    if part.lstrip("-").isdigit():
        idx = int(part)
        return idx if -len(items) <= idx < len(items) else None
    for idx, item in enumerate(items):
        if isinstance(item, dict) and part in (item.get("label"), item.get("name")):
            return idx
    return None


def scenarios_dir() -> Path:
    """The folder of the scenarios shipped inside the package."""
    import simscale.scenarios as pkg

    return Path(pkg.__file__).parent


def shipped_scenario_path(name: str) -> Path | None:
    """The shipped scenario called ``name`` (with or without ``.yaml`` or a folder), if any."""
    stem = Path(name).name
    if not stem.endswith(".yaml"):
        stem += ".yaml"
    p = scenarios_dir() / stem
    return p if p.exists() else None
