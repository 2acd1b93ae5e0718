"""Room on the cluster that every service's replicas share: cores and memory, replicas waiting
to be placed, and in-place resizes waiting for room (see :class:`ClusterRoom`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simscale.simulator.engine import ReplicaRecord, _ServiceSim

__all__ = ["ClusterRoom"]


class ClusterRoom:
    """Room for replicas shared by all services; pending replicas are placed first come, first
    served (first fit in request order).

    A placed replica resized in place to a larger size needs the difference in cores and memory
    on the cluster, like a Kubernetes in-place pod resize (KEP 1287): when there is no room the
    resize is deferred (the replica goes on serving at its old size and is billed for it) and
    retried, in the order deferred, whenever room is released, before pending replicas are
    placed (the replicas running already asked first)."""

    def __init__(self, cores: float, memory_mb: float) -> None:
        self.free_cores = cores
        self.free_mb = memory_mb
        self.pending: list[tuple[_ServiceSim, ReplicaRecord]] = []
        #: replicas whose resize waits for room, by (service, replica id), in the order deferred
        self.deferred: dict[tuple[int, int], tuple[_ServiceSim, ReplicaRecord]] = {}

    def fits(self, rec: ReplicaRecord) -> bool:
        return self.has_room(rec.cores, rec.memory_mb)

    def has_room(self, cores: float, memory_mb: float) -> bool:
        """Whether ``cores`` more cores and ``memory_mb`` more memory are free."""
        return cores <= self.free_cores + 1e-9 and memory_mb <= self.free_mb + 1e-9

    def take(self, rec: ReplicaRecord) -> None:
        self.free_cores -= rec.cores
        self.free_mb -= rec.memory_mb

    def release(self, rec: ReplicaRecord) -> None:
        self.free_cores += rec.cores
        self.free_mb += rec.memory_mb
        self.place_pending()

    def place_pending(self) -> None:
        for key, (sim, rec) in list(self.deferred.items()):
            if key in self.deferred and (rec.state == "stopped" or sim._resize_replica(rec)):
                self.deferred.pop(key, None)
        keep = []
        for sim, rec in self.pending:
            if rec.state == "pending" and self.fits(rec):
                self.take(rec)
                sim._placed(rec)
            elif rec.state == "pending":
                keep.append((sim, rec))
        self.pending = keep
