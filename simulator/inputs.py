"""A service's inputs: its arrivals, per-request service and routing draws and the seeds of
its other random streams, made once per replication and shared by every strategy (common random
numbers).

Random streams: replication ``r`` uses seed ``seed + r``; its ``SeedSequence`` spawns one child
per service (in scenario order), and each service's child spawns five streams: arrivals,
service-time noise (one uniform per request), cold starts, faults and routing. The per-request
inputs are drawn :data:`DRAW_CHUNK` at a time (the same numbers as drawing them whole) and kept
either as whole arrays or, for a service that will stream, in an
:class:`~simscale.simulator.spool.InputSpool` on disk that each run reads a chunk at a time,
or, when a single run will read them, not kept at all: that run's plane draws them as it reads
them (:mod:`simscale.simulator.feeds`).

Service-time noise per replica size: request ``h`` draws one uniform ``u_h``; a replica of size
``(device, threads)`` serves it with that size's noise ``unit_noise(u_h)`` (the profile fits a
noise per size), the same ``u_h`` for every size (common random numbers per size). The inputs
keep the configured size's draws (``unit_service``); another size's are made only when a run
asks for them (:meth:`ServiceInputs.size_noise`), from the same uniforms drawn again: the noise
stream is a PCG64 generator read by ``random(k)`` chunk after chunk, one 64-bit output per
double, so ``u[lo:hi]`` is a fresh generator of the same seed advanced by ``lo``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simscale.simulator.scenario import Distribution, Scenario, Service
from simscale.simulator.serving import ROUTING_POLICIES

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile
    from simscale.simulator.feeds import Chunk, InputFeed, LiveSource
    from simscale.simulator.spool import InputSpool

__all__ = ["DRAW_CHUNK", "ServiceInputs", "service_inputs", "service_seed_sequences"]


@dataclass
class ServiceInputs:
    """What one service's runs share across strategies (common random numbers).

    The per-request inputs are either whole arrays (``arrival_s``, ``unit_service``,
    ``route_u``) or, for a long streaming service, an :class:`~simscale.simulator.spool.
    InputSpool` on disk that each run's request plane reads a chunk at a time, or, for one
    with a single consumer, a :class:`~simscale.simulator.feeds.LiveSource` that draws them
    as a plane reads them (then the three arrays are ``None``: :meth:`arrays` reads or draws
    them whole when a caller needs them)."""

    arrival_s: np.ndarray | None
    unit_service: np.ndarray | None
    route_u: np.ndarray | None
    cold_start_seq: np.random.SeedSequence  #: cold-start draws (same stream per strategy)
    fault_seq: np.random.SeedSequence  #: crash and straggler draws (same stream per strategy)
    #: the true arrival rate (requests/s) of this realization, for the oracle; MMPP paths are
    #: the ones drawn for ``arrival_s``
    true_rate_rps: Callable[[np.ndarray], np.ndarray] | None = None
    #: the inputs on disk (``None``: they are the arrays above)
    spool: InputSpool | None = None
    #: the service-time noise stream (the uniforms behind ``unit_service``), to draw them again
    noise_seq: np.random.SeedSequence | None = None
    #: ``(device, threads)`` -> that replica size's noise transform of a uniform (``None``: the
    #: service has one size, e.g. a distribution as service time)
    size_transform: Callable[[str, int], Callable[[np.ndarray], np.ndarray]] | None = None
    #: the configured size ``(device, threads)``, whose noise ``unit_service`` holds
    base_size: tuple[str, int] | None = None
    #: the smallest and largest noise uniform drawn (``None``: no request); every size's noise
    #: is non-decreasing in the uniform, so its draws lie between its values at these two
    u_range: tuple[float, float] | None = None
    #: the inputs drawn as they are read (``None``: arrays or a spool)
    live: LiveSource | None = None
    #: whole-array inputs: the noise of other sizes made so far (shared by every run)
    _columns: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_requests(self) -> int:
        """How many requests (arrivals) the service gets (live inputs: expected until a pass
        over them has ended, then counted)."""
        if self.live is not None:
            return self.live.n
        return self.spool.n if self.spool is not None else len(self.arrival_s)

    @property
    def streamed(self) -> bool:
        """The inputs are read a chunk at a time (from a spool, or drawn live)."""
        return self.spool is not None or self.live is not None

    @property
    def drawn_u_range(self) -> tuple[float, float] | None:
        """The smallest and largest noise uniform (:attr:`u_range`; live inputs: once a pass
        over them has ended, ``None`` before)."""
        if self.live is not None:
            return None if self.live.realized is None else self.live.realized[1]
        return self.u_range

    def feed(self) -> InputFeed:
        """A new reader of the streamed inputs, from the first request."""
        if self.live is not None:
            return self.live.feed()
        if self.spool is None:
            raise ValueError("whole-array inputs have no feed")
        return self.spool.reader()

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(arrival_s, unit_service)`` a chunk at a time, in order (from the spool when
        spooled, drawn again when live: memory that does not grow with the number of
        requests)."""
        if self.live is not None:
            for a, unit, _, _ in self.live.chunks():
                yield a, unit
            return
        if self.spool is None:
            yield self.arrival_s, self.unit_service
            return
        r = self.spool.reader()
        try:
            while not r.done:
                a, u, _ = r.read()
                yield a, u
        finally:
            r.close()

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(arrival_s, unit_service, route_u)`` whole (read from the spool when spooled:
        16 bytes a request or more, so only where every request is needed at once)."""
        if self.spool is not None:
            return self.spool.read_all()
        if self.live is not None:
            return _joined([c[:3] for c in self.live.chunks()], self.live.draws)
        return self.arrival_s, self.unit_service, self.route_u

    def uniforms(self, lo: int, hi: int) -> np.ndarray:
        """The noise uniforms of requests ``lo..hi-1``, drawn again (the numbers the inputs
        were made from: one 64-bit PCG64 output per double, so advancing a fresh generator of
        the stream by ``lo`` skips the first ``lo``)."""
        rng = np.random.default_rng(self.noise_seq)
        rng.bit_generator.advance(int(lo))
        return rng.random(max(0, int(hi) - int(lo)))

    def size_noise(self, size: tuple[str, int], lo: int, hi: int) -> np.ndarray:
        """The noise draws (multipliers, median 1) of requests ``lo..hi-1`` for a replica of
        ``size`` ``(device, threads)``: that size's noise of the same uniforms as
        ``unit_service`` (which holds the configured size's). Whole-array inputs make a size's
        draws once, for every run; streamed ones draw the asked range again each time."""
        if size == self.base_size and not self.streamed:
            return self.unit_service[lo:hi]
        if self.size_transform is None or self.noise_seq is None:
            raise ValueError(f"service has one replica size, not {size}")
        if self.streamed:
            return self._drawn(size, lo, hi)
        col = self._columns.get(size)
        if col is None:
            col = self._columns[size] = self._drawn(size, 0, self.n_requests)
        return col[lo:hi]

    def _drawn(self, size: tuple[str, int], lo: int, hi: int) -> np.ndarray:
        """``size``'s noise of requests ``lo..hi-1`` from the uniforms drawn again,
        :data:`DRAW_CHUNK` at a time (bounded temporaries; the transform is elementwise)."""
        transform = self.size_transform(*size)
        out = np.empty(max(0, hi - lo))
        for a in range(0, len(out), DRAW_CHUNK):
            b = min(a + DRAW_CHUNK, len(out))
            out[a:b] = transform(self.uniforms(lo + a, lo + b))
        return out


@dataclass(frozen=True)
class _ProfileNoise:
    """The noise transform of each replica size of a profiled model (picklable)."""

    profile: Profile
    model: str

    def __call__(self, device: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        return self.profile.service_model(self.model, device, threads).unit_noise



def service_seed_sequences(scenario: Scenario, seed: int) -> list[np.random.SeedSequence]:
    """One independent random stream per service for ``seed`` (same order as the services):
    what :func:`service_inputs` draws a service's arrivals and service times from."""
    return np.random.SeedSequence(seed).spawn(len(scenario.services))


def service_inputs(svc: Service, scenario: Scenario, seq: np.random.SeedSequence,
                   profile: Profile | None, *, spool: bool = False, live: bool = False
                   ) -> ServiceInputs:
    """Arrivals, per-request service draws and the other streams of one service.

    ``spool``: draw the per-request inputs a chunk at a time into an
    :class:`~simscale.simulator.spool.InputSpool` on disk (the same numbers; memory that does
    not grow with the number of requests) instead of whole arrays: for services that stream.
    ``live`` (instead of ``spool``): draw nothing now; each run's plane draws the inputs as it
    reads them (:class:`~simscale.simulator.feeds.LiveSource`): for inputs with one consumer."""
    from simscale.simulator.workloads import generate_arrival_chunks, rate_function

    arr_ss, noise_ss, cold_ss, fault_ss, route_ss = seq.spawn(5)
    sizes: _ProfileNoise | None = None
    if isinstance(svc.service_time, Distribution):
        from simscale.simulator.distributions import duration_sampler

        transform = duration_sampler(svc.service_time)
    else:
        sizes = _ProfileNoise(profile, svc.model)
        transform = sizes(svc.device, svc.threads)
    draws = ROUTING_POLICIES[svc.routing].draws

    def drawn(paths: list[Any]) -> Iterator[Chunk]:
        # the same numbers as drawing each stream whole: a generator's uniforms do not depend
        # on how many are asked for at once, and the arrivals' chunks are those of the whole
        # draw
        chunks = generate_arrival_chunks(svc.workload, scenario.duration_s,
                                         np.random.default_rng(arr_ss), chunk=DRAW_CHUNK,
                                         base_dir=scenario.base_dir, paths=paths)
        noise_rng = np.random.default_rng(noise_ss)
        route_rng = np.random.default_rng(route_ss) if draws else None
        ubuf = np.empty(0)  # (the uniforms of a chunk are used before the next is drawn)
        for a in chunks:
            k = len(a)
            if k > len(ubuf):
                ubuf = np.empty(k)
            u = noise_rng.random(out=ubuf[:k])
            ru = None
            if route_rng is not None:
                ru = route_rng.random(k) if draws == 1 else route_rng.random((k, draws))
            unit = transform(u)
            if np.may_share_memory(unit, ubuf):  # (a transform may hand back its input)
                unit = unit.copy()
            yield np.asarray(a, dtype=np.float64), unit, ru, u

    def true_rate(paths: list[Any]) -> Callable[[np.ndarray], np.ndarray]:
        return rate_function(svc.workload, base_dir=scenario.base_dir, paths=paths)

    noise = dict(noise_seq=noise_ss, size_transform=sizes, base_size=(svc.device, svc.threads))
    if live:
        from simscale.simulator.feeds import LiveSource
        from simscale.simulator.workloads import expected_arrivals

        source = LiveSource(drawn, true_rate, round(expected_arrivals(
            svc.workload, scenario.duration_s, base_dir=scenario.base_dir)), draws,
            scenario.duration_s)
        return ServiceInputs(None, None, None, cold_ss, fault_ss, source.true_rate,
                             live=source, **noise)
    paths: list[Any] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    store = None
    if spool:
        from simscale.simulator.spool import InputSpool
        from simscale.simulator.workloads import expected_arrivals

        expected = expected_arrivals(svc.workload, scenario.duration_s,
                                     base_dir=scenario.base_dir)
        store = InputSpool(draws, bytes_needed=int(1.2 * expected * 8 * (2 + draws)))
    u_lo, u_hi = math.inf, -math.inf
    for a, unit, ru, u in drawn(paths):
        if len(u):
            u_lo, u_hi = min(u_lo, float(u.min())), max(u_hi, float(u.max()))
        if store is not None:
            store.append(a, unit, ru)
        else:
            parts.append((a, unit, ru))
    u_range = (u_lo, u_hi) if u_hi >= u_lo else None
    if store is not None:
        return ServiceInputs(None, None, None, cold_ss, fault_ss, true_rate(paths),
                             store.seal(), u_range=u_range, **noise)
    arrivals, unit, route_u = _joined(parts, draws)
    return ServiceInputs(arrivals, unit, route_u, cold_ss, fault_ss, true_rate(paths),
                         u_range=u_range, **noise)


def _joined(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], draws: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The chunks' ``(arrival_s, unit_service, route_u)`` as whole arrays."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return (np.empty(0), np.empty(0),
                None if not draws else np.empty(0) if draws == 1 else np.empty((0, draws)))
    arrivals = np.concatenate([p[0] for p in parts])
    unit = np.concatenate([p[1] for p in parts])
    route_u = np.concatenate([p[2] for p in parts]) if draws else None
    return arrivals, unit, route_u


#: arrivals (and their draws) made at a time (bounds the temporaries)
DRAW_CHUNK = 1 << 20
