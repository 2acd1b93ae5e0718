"""Co-location: batches that share a node slow each other; all services advance together.

A scenario whose ``cluster`` has hosts (``nodes: N, cores_per_node, ...``) with ``colocation``
on places each replica on one node (:class:`~simscale.simulator.cluster.ClusterRoom`), and a
batch in service runs slower while other batches are in service on its node. The model is
exact (times in seconds):

- A batch has the standalone duration ``d`` the request plane gives it today (``offsets[b] +
  factors[b] x`` its first request's draw in the noise column of the replica's size, plus the
  idle overhead; straggler and ``cpu_speed`` included). While it is in service it progresses
  at rate ``1 / s(n)``, where ``n`` is the number of *other* batches in service on its node at
  that moment (any service's) and ``s`` its replica's factor table (:class:`SlowdownTable`:
  the cluster's ``slowdown_by_others`` when given, else the profile's measured ``colocation``
  of the replica's current size, else 1). It ends when its progress reaches ``d``: whenever a
  batch starts or ends on a node, the end of every other batch in service there is recomputed
  (``end = t + remaining x s(n) / s(n_old)``).
  Replicas starting (cold start) or idle have no batch and do not count.
- A crash ends its batch at the crash time (its requests are dropped, as without co-location);
  the neighbours speed up from then. A resize keeps the batch's standalone duration; the new
  size's factor table applies from the resize on.
- Routing, batching, capacity, timeouts, draining: exactly the request plane's semantics
  (:mod:`simscale.simulator.requestplane`): the shared queue as its ``_advance_shared`` loop
  (the replica idle the longest, ties the lowest id, takes the head batch), the per-replica
  policies as its ``_advance_general`` loop. With every factor 1 the results are those of a run
  without co-location, request by request (``tests/test_colocation_engine.py``).

Because a batch's end depends on the other services' batches, no plane can be advanced alone:
:class:`HostLoop` advances every plane of the run together to ``t`` in one event loop (pure
Python; the first plane asked for ``t`` advances all, later calls for ``t`` are no-ops). Each
:class:`ColocatedPlane` writes a batch's *projected* end into ``end_s`` when it starts and
overwrites it at each change, so an end before the time the planes were advanced to is final
and a later one can only move to a time at or after it (what the monitor and the figures rely
on). Limits: the Python loop (about 1e5 requests per CPU second), every request kept in
memory (no streaming window), and a draining replica whose last batch was shortened by a
neighbour stops at its exact time but frees its room at the next control event.
"""

from __future__ import annotations

import gc
import heapq
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from simscale.profiler.colocation_schema import slowdown_factor
from simscale.simulator.requestplane import (
    DROP_QUEUE_FULL,
    DROP_TIMEOUT,
    RequestPlane,
    _idle_overhead,
    add_busy,
)

if TYPE_CHECKING:
    from collections import deque

    from simscale.profiler.schema import Profile
    from simscale.simulator.scenario import Cluster, Service

__all__ = ["ColocatedPlane", "HostLoop", "SlowdownTable", "slowdown_table"]

_INF = math.inf
_COMPLETE, _DEADLINE = 0, 1


class SlowdownTable:
    """A replica's co-location factors: :meth:`factor` ``(n)`` is the factor on its batch's time
    while ``n`` other batches are in service on its node. ``factors[n]`` for ``n`` within the
    list; beyond, extrapolated linearly from the last two, the slope held at 0 when negative
    (:func:`simscale.profiler.colocation_schema.slowdown_factor`, the profile's own rule)."""

    __slots__ = ("_f",)

    def __init__(self, factors: Sequence[float]) -> None:
        if not factors or float(factors[0]) != 1.0:
            raise ValueError("a slowdown table starts with 1.0 (no other batch in service)")
        self._f = [float(x) for x in factors]

    def factor(self, n: int) -> float:
        f = self._f
        return f[n] if n < len(f) else slowdown_factor(f, n)

    @property
    def trivial(self) -> bool:
        """Whether every factor is 1 (the replica never slows)."""
        return all(x == 1.0 for x in self._f)


def slowdown_table(cluster: Cluster, svc: Service, profile: Profile | None, device: str,
                   threads: int) -> SlowdownTable | None:
    """The factor table of a replica of ``svc`` of size (``device``, ``threads``):
    ``cluster.slowdown_by_others`` when given, else the profile's ``colocation`` of that
    configuration (``service_time: profile`` only), else ``None`` (factor 1)."""
    if cluster.slowdown_by_others is not None:
        return SlowdownTable(cluster.slowdown_by_others)
    if svc.service_time != "profile" or profile is None:
        return None
    try:
        col = profile.config(svc.model, device, threads).colocation
    except Exception:  # noqa: BLE001 - a size the profile has not measured: no factors
        return None
    return None if col is None else SlowdownTable(col.slowdown_by_others)


class ColocatedPlane(RequestPlane):
    """A :class:`RequestPlane` whose replicas sit on nodes and whose advancing is done by its
    :class:`HostLoop`, jointly with the run's other planes. Python loops, every request kept.

    :meth:`set_host` gives a replica its node and factor table (before :meth:`add_replica`, and
    again after a resize); ``set_factors``, ``remove`` and ``crash`` keep the node's batches
    consistent at the time the planes were advanced to."""

    def __init__(self, loop: HostLoop, arrival_s: Any, unit_service: Any, **kw: Any) -> None:
        kw["kernels"] = "python"
        kw["window"] = None
        kw["feed"] = None
        super().__init__(arrival_s, unit_service, **kw)
        self.loop = loop
        self.k = len(loop.planes)
        loop.planes.append(self)
        self.node: dict[int, int] = {}
        self.table: dict[int, SlowdownTable | None] = {}
        #: per replica with a batch in service: its requests, and the factor it runs at
        self.bidx: dict[int, list[int]] = {}
        self.cur_s: dict[int, float] = {}
        #: per replica, the version of its batch's projected end (older events are stale)
        self.ver: dict[int, int] = {}
        self._dl: dict[int, float] = {}  # scheduled deadlines (key -1: the shared queue's)
        self._al: list[float] = []
        #: per noise column, its draws as a list (made when a batch first needs it)
        self._uls: dict[int, list[float]] = {}
        self._ru: list[Any] | None = None
        self._tq: deque[int] | None = None
        self._where: dict[int, deque[int]] = {}

    def set_host(self, rid: int, node: int, table: SlowdownTable | None) -> None:
        """Replica ``rid`` runs on ``node`` with factor table ``table`` (``None``: 1) from now
        (the planes advanced to now); a batch in service rescales to the new table."""
        self.node[rid] = node
        self.table[rid] = None if table is None or table.trivial else table
        if rid in self.bidx:
            self.loop.rescale_node(node, self.loop.now)

    def advance(self, t_end_s: float) -> None:
        """Advance every plane of the run to ``t_end_s`` (see :class:`HostLoop`)."""
        self.loop.advance(t_end_s)

    def remove(self, rid: int) -> None:
        """Forget a stopped replica; a batch still in service (a crash, or one ending now)
        leaves its node now."""
        if rid in self.bidx:
            self.loop.end_batch(self, rid, self.loop.now)
        self.ver.pop(rid, None)
        self.node.pop(rid, None)
        self.table.pop(rid, None)
        super().remove(rid)

    # -- per-plane pieces of the joint loop -----------------------------------------------
    def _begin(self) -> None:
        """Before the first segment: the inputs as lists (read per event)."""
        self._al = self.arrival_s.tolist()
        self._uls = {0: self.unit_service.tolist()}
        self._ru = None if self.route_u is None else self.route_u.tolist()

    def _begin_segment(self) -> None:
        """Per-replica queues with timeouts: the queued requests in arrival order and the queue
        each is in (rebuilt each segment, as control operations may have emptied queues)."""
        if self.timeout_s is None or self.policy.shared:
            return
        from collections import deque

        where = {}
        for q in (self.queue, *self.rq.values()):
            for idx in q:
                where[idx] = q
        self._where = where
        self._tq = deque(sorted(where))

    def _expire(self, t: float) -> None:
        """Drop (``timeout``) every queued request that waited longer than ``timeout_s`` by
        ``t`` (at its arrival + timeout)."""
        tmo = self.timeout_s
        if tmo is None:
            return
        al = self._al
        if self.policy.shared:
            q = self.queue
            while q and al[q[0]] + tmo < t:
                idx = q.popleft()
                self._dropped(idx, DROP_TIMEOUT, al[idx] + tmo)
            return
        tq, where = self._tq, self._where
        while tq:
            idx = tq[0]
            if al[idx] + tmo >= t:
                return
            tq.popleft()
            q = where.pop(idx, None)
            if q is not None:
                q.popleft()
                self._dropped(idx, DROP_TIMEOUT, al[idx] + tmo)

    def _dropped(self, idx: int, code: int, t: float) -> None:
        self.drop[idx] = code
        self.end_s[idx] = t

    def _outstanding(self, r: int) -> int:
        return len(self.rq[r]) + (self.nserv[r] if r in self.bidx else 0)

    def _route(self, idx: int) -> int:
        acc = self.accepting
        if len(acc) == 1:
            return acc[0]
        return self.policy.route(acc, self._outstanding,
                                 self._ru[idx] if self._ru is not None else None)

    def _enqueue(self, idx: int, q: deque[int]) -> None:
        q.append(idx)
        if self._tq is not None and self.timeout_s is not None:
            self._where[idx] = q
            self._tq.append(idx)


class HostLoop:
    """Advances every :class:`ColocatedPlane` of a run together, in one event loop.

    Events: batch ends (projected; a newer projection makes older events stale), batching
    deadlines (the head request has waited ``max_wait_s``) and arrivals. At one time, the ends
    and deadlines of every plane are taken first, then each plane touched dispatches (in plane
    order), then the arrivals at that time one by one (plane order, then arrival order): the
    request plane's order (events before arrivals at equal times). Each segment starts with a
    dispatch of every plane at its start (replicas added or resized there, batching changed).
    """

    def __init__(self) -> None:
        self.planes: list[ColocatedPlane] = []
        self.now = 0.0  #: time (s) every plane has been advanced to
        self._ev: list[tuple[float, int, int, int, int, int]] = []  # (t, seq, kind, k, r, ver)
        self._arr: list[tuple[float, int, int]] = []  # (t, plane, i): next arrival per plane
        self._seq = 0
        self._started = False
        #: per node, the (plane, replica) pairs with a batch in service there
        self.on_node: dict[int, list[tuple[ColocatedPlane, int]]] = {}

    # -- advancing ------------------------------------------------------------------------
    def advance(self, T: float) -> None:
        """Process every event before ``T`` on every plane (events at ``T`` belong to the next
        segment, as in the request plane)."""
        if T <= self.now:
            return
        planes = self.planes
        if not self._started:
            self._started = True
            for p in planes:
                p._begin()
                if p._al:
                    heapq.heappush(self._arr, (p._al[0], p.k, 0))
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            self._run(T)
        finally:
            if gc_was_on:
                gc.enable()
        for p in planes:
            p._expire(T)
            p.now = T
        self.now = T

    def _run(self, T: float) -> None:
        planes = self.planes
        for p in planes:
            p._begin_segment()
        self._group(self.now, kick=True)
        ev, arr = self._ev, self._arr
        pop, push = heapq.heappop, heapq.heappush
        while True:
            while ev:  # (stale projections: a newer one of the same batch is queued)
                top = ev[0]
                if top[2] == _COMPLETE and planes[top[3]].ver.get(top[4]) != top[5]:
                    pop(ev)
                else:
                    break
            te = ev[0][0] if ev else _INF
            ta = arr[0][0] if arr else _INF
            if te <= ta:
                if te >= T:
                    return
                self._group(te, kick=False)
                continue
            if ta >= T:
                return
            _, k, i = pop(arr)
            p = planes[k]
            p.next_i = i + 1
            if i + 1 < len(p._al):
                push(arr, (p._al[i + 1], k, i + 1))
            self._arrival(p, i, ta)

    def _group(self, t: float, kick: bool) -> None:
        """Every end and deadline at ``t``, then the dispatches they call for (``kick``: every
        plane dispatches, the start of a segment)."""
        ev = self._ev
        planes = self.planes
        touched: dict[int, list[tuple[int, int]]] = {}
        while ev and ev[0][0] <= t:
            _, _, kind, k, r, ver = heapq.heappop(ev)
            p = planes[k]
            if kind == _COMPLETE:
                if p.ver.get(r) != ver:
                    continue
                self.end_batch(p, r, t)
            elif p._dl.get(r) == t:
                del p._dl[r]
            touched.setdefault(k, []).append((kind, r))
        for k in range(len(planes)) if kick else sorted(touched):
            p = planes[k]
            p._expire(t)
            if p.policy.shared:
                for kind, r in touched.get(k, ()):
                    if kind == _COMPLETE and r in p.draining:
                        p.stopped[r] = t
                self._dispatch(p, t)
            elif kick:
                self._kick_routed(p, t)
            else:
                for kind, r in touched[k]:
                    if kind == _COMPLETE and r in p.draining and not p.rq.get(r):
                        p.stopped[r] = t
                    elif r in p.free_at and r not in p.bidx:
                        self._try_start(p, r, t)

    def _arrival(self, p: ColocatedPlane, i: int, t: float) -> None:
        p._expire(t)
        cap = p.capacity
        if p.policy.shared:
            q = p.queue
            if cap is not None and len(q) >= cap:
                p._dropped(i, DROP_QUEUE_FULL, t)
                return
            q.append(i)
            self._dispatch(p, t)
            return
        if not p.accepting:
            if cap is not None and len(p.queue) >= cap:
                p._dropped(i, DROP_QUEUE_FULL, t)
                return
            p._enqueue(i, p.queue)
            return
        r = p._route(i)
        q = p.rq[r]
        if cap is not None and len(q) >= cap:
            p._dropped(i, DROP_QUEUE_FULL, t)
            return
        p._enqueue(i, q)
        if r not in p.bidx:
            self._try_start(p, r, t)

    def _deadline(self, p: ColocatedPlane, key: int, td: float) -> None:
        if p._dl.get(key) != td:
            p._dl[key] = td
            self._seq += 1
            heapq.heappush(self._ev, (td, self._seq, _DEADLINE, p.k, key, 0))

    def _dispatch(self, p: ColocatedPlane, t: float) -> None:
        """Shared queue: while a replica is idle and the head batch may start, the replica idle
        the longest (lowest (free time, id)) takes it."""
        q = p.queue
        if not q:
            return
        bidx = p.bidx
        idle = [r for r in p.accepting if r not in bidx]
        if not idle:
            return
        al = p._al
        fa = p.free_at
        maxb, maxw = p.max_batch_size, p.max_wait_s
        while q and idle:
            a_h = al[q[0]]
            if len(q) < maxb and a_h + maxw > t:
                self._deadline(p, -1, a_h + maxw)
                return
            best = idle[0]
            for r in idle:
                if fa[r] < fa[best]:
                    best = r
            idle.remove(best)
            self._start(p, best, t, q)

    def _kick_routed(self, p: ColocatedPlane, t: float) -> None:
        """Per-replica queues at a segment's start: the router's buffer is routed (when a
        replica is ready), then every idle replica tries to start a batch."""
        if p.accepting and p.queue:
            buf = list(p.queue)
            p.queue.clear()
            for idx in buf:
                r = p._route(idx)
                p.rq[r].append(idx)
                if idx in p._where:
                    p._where[idx] = p.rq[r]
        for r in sorted(p.rq):
            if r not in p.bidx:
                if r in p.draining and not p.rq[r]:
                    p.stopped.setdefault(r, t)
                else:
                    self._try_start(p, r, t)

    def _try_start(self, p: ColocatedPlane, r: int, t: float) -> None:
        q = p.rq[r]
        if not q:
            return
        a_h = p._al[q[0]]
        if len(q) < p.max_batch_size and a_h + p.max_wait_s > t:
            self._deadline(p, r, a_h + p.max_wait_s)
            return
        self._start(p, r, t, q)

    # -- batches on nodes -------------------------------------------------------------------
    def _start(self, p: ColocatedPlane, r: int, t: float, q: deque[int]) -> None:
        """Replica ``r`` of ``p`` starts a batch of the queue's head requests at ``t``."""
        k = len(q)
        if k > p.max_batch_size:
            k = p.max_batch_size
        h = q[0]
        c = p._col.get(r, 0)  # (r's noise column: that of its size)
        ul = p._uls.get(c)
        if ul is None:
            ul = p._uls[c] = p.unit_cols[c].tolist()
        e = t + p.offsets[r][k] + p.factors[r][k] * ul[h]
        c = p.idle.get(r)
        if c is not None:
            e += _idle_overhead(t - p.free_at[r], c)
        node = p.node[r]
        on = self.on_node.setdefault(node, [])
        tab = p.table[r]
        s = 1.0 if tab is None else tab.factor(len(on))
        if s != 1.0:
            e = t + (e - t) * s
        where = p._where if p._tq is not None else None
        if k == 1:
            idxs = [q.popleft()]
            i = idxs[0]
            p.start_s[i] = t
            p.end_s[i] = e
            p.batch_size[i] = 1
            p.replica[i] = r
        else:
            idxs = [q.popleft() for _ in range(k)]
            p.start_s[idxs] = t
            p.end_s[idxs] = e
            p.batch_size[idxs] = k
            p.replica[idxs] = r
        if where:
            for i in idxs:
                where.pop(i, None)
        if len(p.busy_s):  # (as the request plane adds a batch's busy time at its start)
            add_busy(p.busy_s, np.full(k, t), np.full(k, e), k)
        p.bidx[r] = idxs
        p.cur_s[r] = s
        p.free_at[r] = e
        p.nserv[r] = k
        self._project(p, r, e)
        on.append((p, r))
        if len(on) > 1:
            self.rescale_node(node, t)

    def _project(self, p: ColocatedPlane, r: int, e: float) -> None:
        ver = p.ver[r] = p.ver.get(r, 0) + 1
        self._seq += 1
        heapq.heappush(self._ev, (e, self._seq, _COMPLETE, p.k, r, ver))

    def end_batch(self, p: ColocatedPlane, r: int, t: float) -> None:
        """The batch of ``r`` leaves its node at ``t`` (it ended, or its replica crashed)."""
        del p.bidx[r]
        del p.cur_s[r]
        p.nserv[r] = 0
        p.ver[r] = p.ver.get(r, 0) + 1
        node = p.node[r]
        on = self.on_node[node]
        for j, (pp, rr) in enumerate(on):
            if pp is p and rr == r:
                del on[j]
                break
        if on:
            self.rescale_node(node, t)

    def rescale_node(self, node: int, t: float) -> None:
        """Every batch in service on ``node`` runs, from ``t``, at the factor of the number of
        other batches there now: its projected end moves (a batch ending at ``t`` stays)."""
        on = self.on_node.get(node)
        if not on:
            return
        n = len(on) - 1
        for p, r in on:
            tab = p.table[r]
            s = 1.0 if tab is None else tab.factor(n)
            s_old = p.cur_s[r]
            if s == s_old:
                continue
            p.cur_s[r] = s
            e = p.free_at[r]
            if e > t:
                e_old = e
                e = t + (e - t) / s_old * s
                p.free_at[r] = e
                idxs = p.bidx[r]
                if len(p.busy_s):  # (busy from t on: until the new end, not the old)
                    k = len(idxs)
                    add_busy(p.busy_s, np.full(k, t), np.full(k, e_old), k, -1)
                    add_busy(p.busy_s, np.full(k, t), np.full(k, e), k)
                if len(idxs) == 1:
                    p.end_s[idxs[0]] = e
                else:
                    p.end_s[idxs] = e
                self._project(p, r, e)
