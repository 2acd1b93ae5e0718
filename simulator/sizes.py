"""Replica sizes of a service: what :func:`size_options` offers strategies (one per measured
thread count of the profile, or the service's own size with a distribution as service time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simscale.simulator.scenario import Distribution, Service
from simscale.strategies.base import SizeOption

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile

__all__ = ["cold_start_mean", "size_options"]


def cold_start_mean(svc: Service, profile: Profile | None) -> float:
    """The mean cold start (s) of a replica of ``svc``."""
    cs = svc.cold_start_s
    if cs == "profile":
        return float(profile.cold_start(svc.model, svc.device).mean_s)
    if isinstance(cs, Distribution):
        return cs.mean_seconds
    return float(cs)


def size_options(svc: Service, profile: Profile | None, max_batch_size: int
                 ) -> tuple[SizeOption, ...]:
    """The replica sizes of ``svc``: one per measured thread count of (model, device) when the
    service time comes from the profile; only the service's own size for a distribution."""
    price = svc.cost_per_replica_hour / svc.threads
    cold = cold_start_mean(svc, profile)
    if isinstance(svc.service_time, Distribution):
        d = svc.service_time
        m_ms = d.mean_seconds * 1000.0 / svc.cpu_speed
        return (SizeOption(svc.device, svc.threads, m_ms, 0.0, 1.0, d.effective_cv ** 2,
                           max_batch_size, price * svc.threads, cold),)
    opts = []
    for t in profile.threads_available(svc.model, svc.device):
        cfg = profile.config(svc.model, svc.device, t)
        # The queueing models take one noise figure: the measured mean/median ratio and squared
        # coefficient of variation of the smallest batch (the fitted noise may have heavy tails
        # with no finite variance; the measurements always have one).
        # Serving (the profile's serving model): the fit's times scale by ``k``; the overhead
        # (a constant per batch) adds to the median and the mean, not to the spread. The
        # queueing models size replicas for load, where batches run back to back: the overhead
        # after no idle time.
        b0 = min(cfg.batches, key=lambda st: st.batch_size)
        stm = profile.service_model(svc.model, svc.device, t)
        k = stm.fit_scale
        oh = float(stm.overhead_after_idle_s(0.0)) * 1000.0
        mean_factor = (k * b0.mean_ms + oh) / (k * b0.p50_ms + oh) if b0.p50_ms > 0 else 1.0
        scv = (k * b0.std_ms / (k * b0.mean_ms + oh)) ** 2 if b0.mean_ms > 0 else 1.0
        opts.append(SizeOption(svc.device, t, (k * float(cfg.fit.alpha_ms) + oh) / svc.cpu_speed,
                               k * float(cfg.fit.beta_ms) / svc.cpu_speed,
                               float(mean_factor), float(scv), max_batch_size, price * t, cold))
    return tuple(opts)
