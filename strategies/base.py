"""The strategy interface: ``decide(obs: Observation) -> Decision``.

One strategy object scales one service. The simulator (and the validation runner) calls
``decide`` every ``sync_period_s`` seconds with an :class:`Observation`: an immutable value that
holds only what a real autoscaler could see at that moment, with the scenario's metric lag
applied (like Ray Serve's ``AutoscalingContext``). The :class:`Decision` says how many replicas
the service should have and, for vertical or cost-aware strategies, their size.

A custom strategy is any importable class with a ``decide`` method; its parameters arrive as
keyword arguments to ``__init__`` (scikit-learn style: store them, do no work there).

Units are in the names: ``_s`` seconds, ``_ms`` milliseconds, ``_rps`` requests per second,
``_usd`` US dollars.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from simscale.errors import UserError


@dataclass(frozen=True)
class ReplicaCounts:
    """Replicas of one service by life-cycle state.

    ``pending``: asked for but not yet placed (no room in the cluster); ``starting``: placed and
    in their cold start; ``ready``: serving; ``draining``: finishing their work before stopping.
    """

    pending: int = 0
    starting: int = 0
    ready: int = 0
    draining: int = 0

    @property
    def desired_total(self) -> int:
        """Replicas that count toward the current scale (pending + starting + ready)."""
        return self.pending + self.starting + self.ready


@dataclass(frozen=True)
class SizeOption:
    """A replica size the profile has measurements for, with what the model predicts of it.

    ``alpha_ms + beta_ms * b`` is the median service time of a batch of ``b``; ``mean_factor``
    turns the median into the mean; ``scv`` is the squared coefficient of variation of the service
    time; ``price_per_hour_usd`` is what one replica of this size costs.
    """

    device: str
    threads: int
    alpha_ms: float
    beta_ms: float
    mean_factor: float
    scv: float
    max_batch_size: int
    price_per_hour_usd: float
    cold_start_s: float

    def mean_service_s(self, batch_size: int = 1) -> float:
        """Mean service time (s) of a batch of ``batch_size``."""
        return (self.alpha_ms + self.beta_ms * batch_size) * self.mean_factor / 1000.0

    def capacity_rps(self, batch_size: int = 1) -> float:
        """Requests per second one replica serves when always busy with batches of this size."""
        return batch_size / self.mean_service_s(batch_size)


@dataclass(frozen=True)
class Observation:
    """What an autoscaler can see of one service at ``time_s``.

    Per-second histories end at ``time_s - metric_lag_s`` and hold the last
    ``len(arrivals_per_s)`` whole seconds, oldest first (shorter at the start of a run).
    """

    time_s: float
    service: str
    slo_ms: float
    metric_lag_s: float
    #: requests that arrived in each of the recent seconds
    arrivals_per_s: np.ndarray
    #: requests completed in each of the recent seconds
    completions_per_s: np.ndarray
    #: busy fraction (0..1) in each of the recent seconds ("CPU %"): busy time (a batch of b
    #: counts 1/b per request) over the time replicas were ready or draining
    utilization_per_s: np.ndarray
    #: busy fraction of each ready replica over the last second (the per-pod metric)
    utilization_per_replica: tuple[float, ...]
    #: requests waiting in queues (not yet in service) at the (lagged) observation time
    queue_length: int
    #: requests queued or in service at the (lagged) observation time
    in_flight: int
    #: latency percentiles (ms) of requests completed in the last ``latency_window_s``;
    #: NaN when none completed
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_window_s: float
    replicas: ReplicaCounts
    min_replicas: int
    max_replicas: int
    #: the size new replicas get now, and the options the profile has measurements for
    current_size: SizeOption
    size_options: tuple[SizeOption, ...] = ()
    max_wait_ms: float = 0.0

    def rate_rps(self, window_s: float) -> float:
        """Mean arrival rate (requests/s) over the last ``window_s`` whole seconds."""
        return _window_mean(self.arrivals_per_s, window_s)

    def throughput_rps(self, window_s: float) -> float:
        """Mean completion rate (requests/s) over the last ``window_s`` whole seconds."""
        return _window_mean(self.completions_per_s, window_s)

    def utilization(self, window_s: float) -> float:
        """Mean busy fraction of ready replicas over the last ``window_s`` whole seconds."""
        return _window_mean(self.utilization_per_s, window_s)

    @property
    def capacity_rps_per_replica(self) -> float:
        """Profile-derived throughput of one replica of the current size at batch size 1."""
        return self.current_size.capacity_rps(1)

    @classmethod
    def with_lazy_latency(cls, latency: Callable[[], tuple[float, float, float]],
                          values: dict[str, Any]) -> Observation:
        """An observation whose latency percentiles (``latency_p50_ms``, ``latency_p95_ms``,
        ``latency_p99_ms``) are computed by ``latency()`` when one of them is first read, then
        kept: the same value as one built with them, for a strategy that never reads them at
        no cost. ``values``: every other field, by name (all of them; the dictionary is
        copied). ``latency`` must give the same ``(p50, p95, p99)`` (ms) whenever it is called
        (the simulator's monitor hands out one that reads a snapshot of its window)."""
        return cls.with_lazy(values, {_LATENCY: latency})

    @classmethod
    def with_lazy(cls, values: dict[str, Any],
                  lazy: dict[tuple[str, ...], Callable[[], tuple[Any, ...]]]) -> Observation:
        """An observation some of whose fields are computed when first read, then kept: the
        same value as one built with them. ``lazy`` maps a group of fields (one of
        :data:`LAZY_GROUPS`) to a function giving their values in that order, the same whenever
        it is called; ``values``: every other field, by name (the dictionary is copied)."""
        missing = _FIELDS.difference(values, *lazy)
        if missing:
            raise TypeError(f"with_lazy() misses fields: {', '.join(sorted(missing))}")
        unknown = set(lazy).difference(LAZY_GROUPS)
        if unknown:
            raise TypeError(f"with_lazy(): not a lazy group: {sorted(unknown)}")
        obs = object.__new__(cls)
        d = obs.__dict__
        d.update(values)
        for group in lazy:
            for name in group:
                d.pop(name, None)
        d[_LAZY] = dict(lazy)
        return obs

    @classmethod
    def _from_measured(cls, values: dict[str, Any]) -> Observation:
        """What :func:`~simscale.simulator.serving.build_observation` makes: ``values`` (taken,
        not copied) holds every field but the latency percentiles, plus
        ``latency_percentiles_ms`` (p50, p95, p99, or a function giving them); each of
        ``arrivals_per_s``, ``completions_per_s``, ``utilization_per_s`` is an array or a
        function giving ``(array,)`` when first read."""
        latency = values.pop("latency_percentiles_ms")
        lazy = None
        for group in _ARRAY_GROUPS:
            fn = values[group[0]]
            if callable(fn):
                del values[group[0]]
                if lazy is None:
                    lazy = {}
                lazy[group] = fn
        if callable(latency):
            if lazy is None:
                lazy = {}
            lazy[_LATENCY] = latency
        else:
            values["latency_p50_ms"], values["latency_p95_ms"], values["latency_p99_ms"] = \
                latency
        obs = object.__new__(cls)
        d = obs.__dict__
        d.update(values)
        if lazy is not None:
            d[_LAZY] = lazy
        return obs

    def __getattr__(self, name: str) -> Any:
        # called only when an attribute is not found: a lazy field not computed yet
        d = self.__dict__
        lazy = d.get(_LAZY)
        if lazy is not None:
            group = _GROUP_OF.get(name)
            if group is not None and group in lazy:
                for field_name, value in zip(group, lazy.pop(group)(), strict=True):
                    d[field_name] = value
                if not lazy:
                    del d[_LAZY]
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (and copied) with its lazy fields computed, never the functions."""
        lazy = self.__dict__.get(_LAZY)
        while lazy:
            self.__getattr__(next(iter(lazy))[0])
        return dict(self.__dict__)


#: the instance entry holding the functions of an observation's lazy fields, by group
_LAZY = "_lazy_fields"
_LATENCY = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
_ARRAY_GROUPS = (("arrivals_per_s",), ("completions_per_s",), ("utilization_per_s",))
#: the groups of fields an observation may compute when first read
LAZY_GROUPS = frozenset((_LATENCY, *_ARRAY_GROUPS))
_GROUP_OF = {name: group for group in LAZY_GROUPS for name in group}
#: every field of an observation
_FIELDS = frozenset(Observation.__dataclass_fields__)


#: ``Decision``'s default ``info``: a new empty dict each time (its ``default_factory``)
_NEW_DICT: Any = object()


def _window_mean(values: np.ndarray, window_s: float) -> float:
    n = max(1, int(round(window_s)))
    tail = values[-n:]
    if not len(tail):
        return 0.0
    if getattr(tail, "dtype", None) == np.float64:  # np.mean's sum and division, less overhead
        return float(np.add.reduce(tail)) / len(tail)
    return float(np.mean(tail))


@dataclass(frozen=True, init=False)
class Decision:
    """What a strategy wants for its service.

    ``replicas`` is the desired count (pending + starting + ready). ``threads`` and ``device``,
    when set, are the size of replicas from now on: every live replica is resized in place and
    serves at the new size after ``resize_delay_s`` (at the old size until then), and new
    replicas start at the new size. ``max_batch_size`` changes the batching limit. ``info`` carries
    figures the strategy wants reported (e.g. its predicted SLO attainment).
    """

    replicas: int
    threads: int | None = None
    device: str | None = None
    max_batch_size: int | None = None
    resize_delay_s: float | None = None
    info: dict[str, float] = field(default_factory=dict)

    def __init__(self, replicas: int, threads: int | None = None, device: str | None = None,
                 max_batch_size: int | None = None, resize_delay_s: float | None = None,
                 info: dict[str, float] | None = _NEW_DICT) -> None:  # type: ignore[assignment]
        # the dataclass's own __init__, written straight into the instance (a frozen
        # dataclass's sets each field through object.__setattr__, several times slower)
        d = self.__dict__
        d["replicas"] = replicas
        d["threads"] = threads
        d["device"] = device
        d["max_batch_size"] = max_batch_size
        d["resize_delay_s"] = resize_delay_s
        d["info"] = {} if info is _NEW_DICT else info


@dataclass(frozen=True)
class ServiceContext:
    """Static facts about the service a strategy is bound to, given once before the run.

    ``true_rate_rps`` is the workload's real arrival-rate function (requests/s at a time in
    seconds). It is what no real autoscaler knows: only the ``oracle`` strategy may use it.
    """

    service: str
    slo_ms: float
    min_replicas: int
    max_replicas: int
    duration_s: float
    initial_replicas: int
    size_options: tuple[SizeOption, ...]
    initial_size: SizeOption
    true_rate_rps: Callable[[np.ndarray], np.ndarray] | None = None


@runtime_checkable
class StrategyLike(Protocol):
    """Anything with ``decide(obs) -> Decision`` is a strategy."""

    def decide(self, obs: Observation) -> Decision: ...


class Strategy:
    """Base class of the built-in strategies.

    Subclasses set ``name``, take their parameters in ``__init__`` and implement ``decide``.
    ``sync_period_s`` is how often the autoscaler calls ``decide`` (seconds);
    ``latency_window_s`` is the window the observation's latency percentiles cover;
    ``decision_cost_s`` estimates how long a decision takes (for planning only).
    """

    name: str = "strategy"
    sync_period_s: float = 15.0
    latency_window_s: float = 60.0
    #: rough wall seconds one ``decide`` takes on the 2-core reference machine beyond what the
    #: engine spends around it: an estimate for run budgets and for starting the longest
    #: parallel runs first, never used in a result
    decision_cost_s: float = 0.0

    def setup(self, ctx: ServiceContext) -> None:
        """Called once before the run with the service's static facts."""
        self.ctx = ctx

    def decide(self, obs: Observation) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError


#: the window (s) of an observation's latency percentiles when a strategy names none
DEFAULT_LATENCY_WINDOW_S = 60.0


def latency_window_of(strategy: Any) -> float:
    """The window, in seconds, of the latency percentiles ``strategy`` observes: its
    ``latency_window_s``, or :data:`DEFAULT_LATENCY_WINDOW_S` when it has none (absent, ``None``
    or 0). The one rule the engine's monitor, its streaming and the real cluster share; read at
    every observation, since a strategy may change it."""
    return float(getattr(strategy, "latency_window_s", None) or DEFAULT_LATENCY_WINDOW_S)


def sync_period_of(strategy: Any) -> float:
    """How often, in seconds, the autoscaler calls ``strategy.decide``: the one rule the
    engine, the estimate and the real cluster share.

    The strategy's ``sync_period_s``, or :attr:`Strategy.sync_period_s` (15 s) when it has none
    (absent or ``None``, as a custom strategy may). A value that is not a positive, finite number
    is a :class:`UserError` naming ``strategies.<class name>``.
    """
    value = getattr(strategy, "sync_period_s", None)
    if value is None:
        return Strategy.sync_period_s
    where = f"strategies.{type(strategy).__name__}"
    try:
        period = float(value)
    except (TypeError, ValueError):
        raise UserError(f"sync_period_s must be a number, got {value!r:.60}",
                        field=where) from None
    if not period > 0:
        raise UserError(f"sync_period_s must be positive, got {period}", field=where)
    if not math.isfinite(period):
        raise UserError(f"sync_period_s must be finite, got {period}", field=where)
    return period


class StrategyFailed(Exception):
    """A strategy raised (or exited) inside ``decide``/``setup``, or returned something that is
    not a decision. ``message`` says what and where (the innermost frame of the strategy's own
    code); the runner names the strategy's entry and the scenario file around it."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def call_strategy(strategy: Any, method: str, *args: Any) -> Any:
    """Call ``strategy.<method>(*args)``; any exception, ``SystemExit`` included (a strategy that
    exits does not end the simulation as a success), becomes :class:`StrategyFailed` naming the
    exception and the line of the strategy's code it came from. Ctrl-C passes through."""
    try:
        return getattr(strategy, method)(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is reported
        raise StrategyFailed(f"{method}() raised {describe_exception(exc)}") from None


def describe_exception(exc: BaseException) -> str:
    """``SystemExit(0) at my_strategy.py:12`` (the innermost frame outside simscale's engine)."""
    import traceback

    text = str(exc)
    what = type(exc).__name__ + (f": {text}" if text else "")
    if isinstance(exc, SystemExit):
        what = f"SystemExit({exc.code!r})"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        what += f" at {last.filename}:{last.lineno}"
    return what[:300]


def _whole(value: Any, what: str, minimum: int) -> int:
    """``value`` as an int when it is a whole number >= ``minimum`` (int, numpy integer, or an
    integral finite float); else :class:`StrategyFailed`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float | np.floating):
        raise StrategyFailed(f"decide() returned {what}={value!r:.60}; expected a whole number")
    f = float(value)
    if not math.isfinite(f) or f != math.floor(f) or f < minimum:
        raise StrategyFailed(f"decide() returned {what}={value!r:.60}; expected a whole number "
                             f">= {minimum}")
    return int(f)


def normalize_decision(value: Any, *, max_batch_size: int) -> Decision:
    """The one rule for what ``decide`` may return, shared by the simulator and the real cluster.

    A :class:`Decision`, or a bare whole number of replicas. Every field is checked: ``replicas``
    a whole number >= 0 (bounds are applied later by the caller), ``threads`` >= 1,
    ``max_batch_size`` >= 1 and capped at the service's ``max_batch_size`` (a strategy cannot ask
    for more than the scenario allows), ``resize_delay_s`` finite and >= 0, ``device`` ``cpu``
    or ``cuda``, ``info`` a mapping. Anything else raises :class:`StrategyFailed`.
    """
    if not isinstance(value, Decision):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise StrategyFailed(f"decide() returned {value!r:.60}; expected a Decision or a "
                                 "whole number of replicas")
        return Decision(replicas=_whole(value, "replicas", 0))
    d = value
    replicas = _whole(d.replicas, "replicas", 0)
    threads = None if d.threads is None else _whole(d.threads, "threads", 1)
    maxb = None if d.max_batch_size is None else min(
        _whole(d.max_batch_size, "max_batch_size", 1), max_batch_size)
    delay = d.resize_delay_s
    if delay is not None:
        try:
            delay = float(delay)
        except (TypeError, ValueError):
            delay = math.nan
        if not (math.isfinite(delay) and delay >= 0):
            raise StrategyFailed(f"decide() returned resize_delay_s={d.resize_delay_s!r:.60}; "
                                 "expected a finite number of seconds >= 0")
    if d.device is not None and d.device not in ("cpu", "cuda"):
        raise StrategyFailed(f"decide() returned device={d.device!r:.60}; expected cpu or cuda")
    if d.info is not None and not isinstance(d.info, dict):
        raise StrategyFailed(f"decide() returned info={d.info!r:.60}; expected a mapping")
    if (replicas, threads, maxb, delay) == (d.replicas, d.threads, d.max_batch_size,
                                            d.resize_delay_s):
        return d
    return Decision(replicas=replicas, threads=threads, device=d.device, max_batch_size=maxb,
                    resize_delay_s=delay, info=d.info or {})
