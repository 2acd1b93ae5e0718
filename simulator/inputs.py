"""A service's inputs: its arrivals, per-request service and routing draws and the seeds of
its other random streams, made once per replication and shared by every strategy (common random
numbers).

Random streams: replication ``r`` uses seed ``seed + r``; its ``SeedSequence`` spawns one child
per service (in scenario order), and each service's child spawns five streams: arrivals,
service-time noise (one uniform per request), cold starts, faults and routing. The per-request
inputs are drawn :data:`DRAW_CHUNK` at a time (the same numbers as drawing them whole) and kept
either as whole arrays or, for a service that will stream, in an
:class:`~simscale.simulator.spool.InputSpool` on disk that each run reads a chunk at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from simscale.simulator.scenario import Distribution, Scenario, Service
from simscale.simulator.serving import ROUTING_POLICIES

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile
    from simscale.simulator.spool import InputSpool

__all__ = ["DRAW_CHUNK", "ServiceInputs", "service_inputs", "service_seed_sequences"]


@dataclass
class ServiceInputs:
    """What one service's runs share across strategies (common random numbers).

    The per-request inputs are either whole arrays (``arrival_s``, ``unit_service``,
    ``route_u``) or, for a long streaming service, an :class:`~simscale.simulator.spool.
    InputSpool` on disk that each run's request plane reads a chunk at a time (then the three
    arrays are ``None``: :meth:`arrays` reads them whole when a caller needs them)."""

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

    @property
    def n_requests(self) -> int:
        """How many requests (arrivals) the service gets."""
        return self.spool.n if self.spool is not None else len(self.arrival_s)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(arrival_s, unit_service)`` a chunk at a time, in order (from the spool when
        spooled: memory that does not grow with the number of requests)."""
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
        return self.arrival_s, self.unit_service, self.route_u



def service_seed_sequences(scenario: Scenario, seed: int) -> list[np.random.SeedSequence]:
    """One independent random stream per service for ``seed`` (same order as the services):
    what :func:`service_inputs` draws a service's arrivals and service times from."""
    return np.random.SeedSequence(seed).spawn(len(scenario.services))


def service_inputs(svc: Service, scenario: Scenario, seq: np.random.SeedSequence,
                   profile: Profile | None, *, spool: bool = False) -> ServiceInputs:
    """Arrivals, per-request service draws and the other streams of one service.

    ``spool``: draw the per-request inputs a chunk at a time into an
    :class:`~simscale.simulator.spool.InputSpool` on disk (the same numbers; memory that does
    not grow with the number of requests) instead of whole arrays: for services that stream."""
    from simscale.simulator.workloads import generate_arrival_chunks, rate_function

    arr_ss, noise_ss, cold_ss, fault_ss, route_ss = seq.spawn(5)
    paths: list[Any] = []
    chunks = generate_arrival_chunks(svc.workload, scenario.duration_s,
                                     np.random.default_rng(arr_ss), chunk=DRAW_CHUNK,
                                     base_dir=scenario.base_dir, paths=paths)
    if isinstance(svc.service_time, Distribution):
        from simscale.simulator.distributions import duration_sampler

        transform = duration_sampler(svc.service_time)
    else:
        transform = profile.service_model(svc.model, svc.device, svc.threads).unit_noise
    noise_rng = np.random.default_rng(noise_ss)
    draws = ROUTING_POLICIES[svc.routing].draws
    route_rng = np.random.default_rng(route_ss) if draws else None
    # the same numbers as drawing each stream whole: a generator's uniforms do not depend on
    # how many are asked for at once, and the arrivals' chunks are those of the whole draw
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    store = None
    if spool:
        from simscale.simulator.spool import InputSpool
        from simscale.simulator.workloads import expected_arrivals

        expected = expected_arrivals(svc.workload, scenario.duration_s,
                                     base_dir=scenario.base_dir)
        store = InputSpool(draws, bytes_needed=int(1.2 * expected * 8 * (2 + draws)))
    for a in chunks:
        k = len(a)
        unit = transform(noise_rng.random(k))
        ru = None
        if route_rng is not None:
            ru = route_rng.random(k) if draws == 1 else route_rng.random((k, draws))
        if store is not None:
            store.append(a, unit, ru)
        else:
            parts.append((np.asarray(a, dtype=np.float64), unit, ru))
    true_rate = rate_function(svc.workload, base_dir=scenario.base_dir, paths=paths)
    if store is not None:
        return ServiceInputs(None, None, None, cold_ss, fault_ss, true_rate, store.seal())
    arrivals, unit, route_u = _joined(parts, draws)
    return ServiceInputs(arrivals, unit, route_u, cold_ss, fault_ss, true_rate)


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
