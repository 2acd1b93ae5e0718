"""Room on the cluster that every service's replicas share: cores and memory per node, replicas
waiting to be placed, and in-place resizes waiting for room (see :class:`ClusterRoom`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simscale.simulator.engine import ReplicaRecord, _ServiceSim
    from simscale.simulator.scenario import Cluster

__all__ = ["PLACEMENTS", "ClusterRoom"]

#: how a replica's node is chosen among those with room for it
PLACEMENTS = ("spread", "pack")
_EPS = 1e-9


class ClusterRoom:
    """Room for replicas shared by all services, on one or more nodes; pending replicas are
    placed first fit in request order (each on a node chosen by ``placement``; a new replica
    waits behind those already pending).

    A replica needs its cores and its memory on one node (``rec.node`` once placed).
    ``spread`` puts it on the node with the most free cores that fits (Kubernetes' default
    LeastAllocated scoring, on cores), ``pack`` on the node with the fewest free cores that
    fits; ties go to the lowest node index. The pool form of a scenario's cluster is one node.

    A placed replica resized in place to a larger size needs the difference in cores and memory
    on its own node, like a Kubernetes in-place pod resize (KEP 1287): when there is no room the
    resize is deferred (the replica goes on serving at its old size and is billed for it) and
    retried, in the order deferred, whenever room is released, before pending replicas are
    placed (the replicas running already asked first)."""

    def __init__(self, nodes: list[tuple[float, float]], placement: str = "spread") -> None:
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}")
        #: free cores and memory (MiB) of each node
        self.free_cores = [float(c) for c, _ in nodes]
        self.free_mb = [float(m) for _, m in nodes]
        self.placement = placement
        self.pending: list[tuple[_ServiceSim, ReplicaRecord]] = []
        #: replicas whose resize waits for room, by (service, replica id), in the order deferred
        self.deferred: dict[tuple[int, int], tuple[_ServiceSim, ReplicaRecord]] = {}

    @classmethod
    def of(cls, cluster: Cluster) -> ClusterRoom:
        """The room of a scenario's ``cluster`` (either form)."""
        return cls(cluster.node_room(), cluster.placement or "spread")

    @property
    def n_nodes(self) -> int:
        return len(self.free_cores)

    def node_for(self, cores: float, memory_mb: float) -> int | None:
        """The node a replica of ``cores`` and ``memory_mb`` would be placed on now, or
        ``None`` when none has room."""
        best: int | None = None
        fc = self.free_cores
        pack = self.placement == "pack"
        for k in range(len(fc)):
            if self.has_room(k, cores, memory_mb) and (
                    best is None or (fc[k] < fc[best] if pack else fc[k] > fc[best])):
                best = k
        return best

    def fits(self, rec: ReplicaRecord) -> bool:
        return self.node_for(rec.cores, rec.memory_mb) is not None

    def has_room(self, node: int, cores: float, memory_mb: float) -> bool:
        """Whether ``cores`` more cores and ``memory_mb`` more memory are free on ``node``."""
        return cores <= self.free_cores[node] + _EPS and memory_mb <= self.free_mb[node] + _EPS

    def take(self, rec: ReplicaRecord) -> None:
        """Place ``rec`` (it must fit): choose its node and take its room there."""
        node = self.node_for(rec.cores, rec.memory_mb)
        if node is None:
            raise ValueError("the replica fits no node")
        rec.node = node
        self.free_cores[node] -= rec.cores
        self.free_mb[node] -= rec.memory_mb

    def grow(self, rec: ReplicaRecord, d_cores: float, d_mb: float) -> None:
        """``rec`` (placed) takes ``d_cores`` more cores and ``d_mb`` more memory (negative:
        gives them back) on its node."""
        self.free_cores[rec.node] -= d_cores
        self.free_mb[rec.node] -= d_mb

    def release(self, rec: ReplicaRecord) -> None:
        self.free_cores[rec.node] += rec.cores
        self.free_mb[rec.node] += rec.memory_mb
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
