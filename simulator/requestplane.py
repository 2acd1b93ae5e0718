"""The request plane: queueing, batching and routing of one service, advanced exactly.

Requests are not SimPy processes. Their arrival times are a sorted numpy array given up front;
between two control events (an autoscaler decision, a replica becoming ready, a drain, a crash,
a resize) the set of serving replicas is fixed, so :meth:`RequestPlane.advance` moves the queues
forward to the next control time ``T`` in a tight pure-Python loop:

- every arrival with time ``< T`` is processed (queued, started, or dropped), and
- every batch whose start time is ``< T`` is started (its end time is known at its start);
- requests that cannot start before ``T`` stay queued for the next segment, so a replica that
  becomes ready at ``T`` may serve them. Events at exactly ``T`` belong to the next segment.

Semantics (times in seconds):

- ``shared_queue``: one FIFO queue; a free replica takes the head. When several replicas are
  idle, the one idle the longest takes the work (ties: the lowest replica id).
- ``round_robin`` / ``least_outstanding`` / ``power_of_two`` / ``random``: each arrival is
  routed at once to one ready replica's own FIFO queue (``outstanding`` = queued + in service;
  ties go to the lowest replica id, or to the first of the two random choices). While no
  replica is ready, arrivals wait in the router's buffer and are routed, in order, as soon as
  one is (at the start of the next segment).
- Batching: an idle replica starts a batch when ``max_batch_size`` requests are queued or the
  oldest queued one has waited ``max_wait_s``; it takes all queued requests up to
  ``max_batch_size``. A batch of ``b`` started by request ``h`` on replica ``r`` takes
  ``offsets[r][b] + factors[r][b] * X_r[h]`` seconds, ``X_r`` the noise column of ``r``'s size
  (common random numbers: one draw per request and column, the same for every strategy; column
  0 is ``unit_service``, the configured size's, others are made from ``size_noise`` when a
  replica of that size first appears, see :meth:`RequestPlane.set_factors`), plus, when the
  replica has an idle curve, the overhead of the time it was idle before the batch (since its
  previous batch ended or it became ready; 0 back to back), interpolated linearly in the curve.
- Queue ``capacity``: an arrival that finds ``capacity`` requests already waiting (in the shared
  queue, or in the queue of the replica it is routed to) is dropped (``queue_full``) at arrival.
  ``timeout_s``: a request that has waited longer than ``timeout_s`` without starting is dropped
  (``timeout``) at ``arrival + timeout_s``.
- Drain: the replica takes nothing new; it finishes its batch in service (and, with per-replica
  queues, its own queue), then stops. Crash: its batch in service and its own queue are dropped
  (``crash``) at the crash time; the replica is gone at once.

Three loops implement these semantics (tests check they agree with each other and with a
textbook SimPy model): a shared FIFO queue without batching is a heap of replica free times
(Lindley-style, ~5e6 requests per CPU second); a shared queue with batching is a two-event
loop (next arrival, next batch start); per-replica queues use a general event loop.

Per-request results live in compact numpy arrays (``start_s``, ``end_s`` float64,
``batch_size``, ``replica`` int32, ``drop`` int8): for a dropped request ``end_s`` holds the drop
time and ``start_s`` is NaN unless it was in service (crash). Every request is accounted for:
arrived = served + dropped + still queued/in service.

Busy time (:meth:`RequestPlane.track_busy`, what the autoscaler's utilization is made of): each
second ``[k, k + 1)`` of the run holds the replicas' busy seconds in it, a batch of ``b``
counting ``1/b`` per request, added when the batch starts (its end is known then) and taken off
from a crash on; so the seconds before the time the plane has been advanced to are final.
"""

from __future__ import annotations

import gc
import heapq
import importlib.util
import math
import os
import sys
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from simscale.simulator.serving import make_routing

if TYPE_CHECKING:
    from simscale.simulator.feeds import InputFeed

__all__ = [
    "DROP_CRASH",
    "DROP_NONE",
    "DROP_QUEUE_FULL",
    "DROP_REASONS",
    "DROP_TIMEOUT",
    "RequestPlane",
    "add_busy",
    "prepare_kernels",
    "resolve_kernels",
]

DROP_NONE, DROP_QUEUE_FULL, DROP_TIMEOUT, DROP_CRASH = 0, 1, 2, 3
#: drop codes -> the names used in results
DROP_REASONS: tuple[str, ...] = ("", "queue_full", "timeout", "crash")
_INF = math.inf
#: the busy time of a plane that keeps none (see :meth:`RequestPlane.track_busy`)
_NO_BUSY = np.zeros(0)
_NAN = math.nan
_COMPLETE, _DEADLINE = 0, 1
KERNELS = ("auto", "compiled", "python")
#: with ``kernels="auto"``, planes of fewer requests run the Python loops: they take well under
#: a second there (1.4-3.4 million requests per CPU second), less than importing numba and
#: loading the compiled loops from the cache (about 0.6 s once per process)
COMPILED_MIN_REQUESTS = 200_000


def resolve_kernels(kernels: str = "auto", n_requests: int | None = None) -> str:
    """``"compiled"`` or ``"python"``: what ``kernels`` (see :class:`RequestPlane`) means for a
    plane of ``n_requests`` (``None``: large).

    ``"auto"`` reads ``SIMSCALE_KERNELS`` (``auto``/``compiled``/``python``); still ``auto``, it
    picks compiled when numba can be imported and the plane has at least
    :data:`COMPILED_MIN_REQUESTS` requests, or when this process has loaded the compiled
    loops already (:func:`prepare_kernels`: the runner does when a command's runs have that
    many requests in all, however small each plane; nothing is left to pay then, and both
    loops give the same results)."""
    if kernels == "auto":
        kernels = os.environ.get("SIMSCALE_KERNELS", "auto").strip().lower() or "auto"
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    if kernels == "auto":
        big = (n_requests is None or n_requests >= COMPILED_MIN_REQUESTS
               or "simscale.simulator._kernels" in sys.modules)
        kernels = ("compiled" if big and importlib.util.find_spec("numba") is not None
                   else "python")
    return kernels


def prepare_kernels(n_requests: int, kernels: str = "auto") -> dict[str, object]:
    """Compile (or load from numba's cache) the loops planes of ``n_requests`` will use, so the
    cost is paid and measured once, before a run. Returns ``{"loops": "compiled"|"python",
    "compile_s": seconds, "compiled_now": whether numba compiled (a first run) rather than
    loaded its cache}``."""
    loops = resolve_kernels(kernels, n_requests)
    if loops == "python":
        return {"loops": loops, "compile_s": 0.0, "compiled_now": False}
    from simscale.simulator import (
        _kernels,
        _kernels_accumulate,
        _kernels_monitor,
        _kernels_routed,
    )

    seconds, compiled = 0.0, False
    # every compiled loop of a run
    for mod in (_kernels, _kernels_routed, _kernels_monitor, _kernels_accumulate):
        s, c = mod.warm_up()
        seconds += s
        compiled = compiled or c
    return {"loops": loops, "compile_s": round(seconds, 3), "compiled_now": compiled}


class RequestPlane:
    """Queues, batching and routing of one service over a fixed array of arrivals.

    Parameters
    ----------
    arrival_s:
        Sorted arrival times (s).
    unit_service:
        One service draw per request (a multiplier or seconds, see ``factors`` of
        :meth:`add_replica`); the draw of a batch's first request sets the batch's time. The
        noise of the configured replica size (column 0).
    routing:
        A routing policy registered in :data:`simscale.simulator.serving.ROUTING_POLICIES`.
    max_batch_size, max_wait_s:
        Batching limits (see module docstring).
    capacity:
        Most requests waiting per queue, or ``None`` for unbounded.
    timeout_s:
        Longest wait before a request is dropped, or ``None`` for never.
    route_u:
        Uniforms for ``random`` (shape ``(n,)``) and ``power_of_two`` (shape ``(n, 2)``).
    kernels:
        ``"compiled"`` runs the shared-queue loop compiled (:mod:`simscale.simulator._kernels`),
        ``"python"`` runs this module's loops (the specification), ``"auto"`` (default): see
        :func:`resolve_kernels`. Both give identical results.
    window:
        ``None`` (default): the per-request arrays hold every request. A number: they start
        with room for that many and hold a window of requests that :meth:`compact` moves on
        (a streaming run: memory bounded by the requests in the window, not the run).
    size_noise:
        ``size_noise(key, lo, hi)``: the draws of requests ``lo..hi-1`` of the run for the
        noise column ``key`` of another replica size (:meth:`set_factors`'s ``noise``), e.g.
        :meth:`~simscale.simulator.inputs.ServiceInputs.size_noise`; ``None``: one column.

    Indices: request ``i`` of the arrays (``start_s[i]``, the queues' entries, ``next_i``) is
    request ``base + i`` of the run; :attr:`base` is 0 until a :meth:`compact`.
    """

    def __init__(
        self,
        arrival_s: np.ndarray,
        unit_service: np.ndarray,
        *,
        routing: str = "shared_queue",
        max_batch_size: int = 1,
        max_wait_s: float = 0.0,
        capacity: int | None = None,
        timeout_s: float | None = None,
        route_u: np.ndarray | None = None,
        kernels: str = "auto",
        window: int | None = None,
        feed: InputFeed | None = None,
        size_noise: Callable[[Hashable, int, int], np.ndarray] | None = None,
    ) -> None:
        self.policy = make_routing(routing)
        if feed is not None and window is None:
            raise ValueError("a plane with a feed needs a window")
        #: where the inputs come from a chunk at a time (``None``: the arrays given are all)
        self._feed = feed
        self.kernels = resolve_kernels(kernels, len(arrival_s) if feed is None else feed.n)
        unit = np.ascontiguousarray(unit_service, dtype=np.float64)
        #: the inputs held, from request ``_in_base`` of the run on: the whole run's (or, fed
        #: from a feed, those read and not yet forgotten): arrival times, the noise draws
        #: (one row per noise column, row 0 ``unit_service``) and the routing uniforms;
        #: ``arrival_s`` etc. are their views from ``base`` on
        self._inputs = (np.ascontiguousarray(arrival_s, dtype=np.float64), unit[None, :],
                        route_u)
        self._in_base = 0
        #: how many of the held inputs' first entries are filled (fed planes read into
        #: buffers with room to spare)
        self._in_len = len(self._inputs[0])
        self.arrival_s, self.unit_service = self._inputs[0], unit
        if len(self.unit_service) != len(self.arrival_s):
            raise ValueError("unit_service must have one value per arrival")
        #: each noise column's draws from :attr:`base` on (``unit_cols[0]`` is ``unit_service``)
        self.unit_cols = [unit]
        self._size_noise = size_noise
        #: the noise columns' keys (column 0, the configured size's, has ``None``)
        self._col_keys: list[Hashable] = [None]
        #: per replica, its noise column when it is not 0
        self._col: dict[int, int] = {}
        #: noise columns that no replica had at a read from the feed, so not filled since
        #: (made again for the requests held if a replica of that size comes back)
        self._stale: set[int] = set()
        #: requests in the whole run
        n = len(self.arrival_s) if feed is None else feed.n
        self.n = n
        #: busy seconds per second of the run, when kept (:meth:`track_busy`)
        self.busy_s = _NO_BUSY
        self.base = 0  #: index in the run of the arrays' first request
        self.windowed = window is not None
        self.routing = routing
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_s)
        self.capacity = capacity
        self.timeout_s = timeout_s
        if self.policy.draws and route_u is None and (feed is None or not feed.draws):
            raise ValueError(f"routing {routing} needs route_u")
        self.route_u = route_u
        # per-request results
        room = n if window is None else max(1, min(n, int(window)))
        self.start_s = np.full(room, np.nan)
        self.end_s = np.full(room, np.nan)
        self.batch_size = np.zeros(room, dtype=np.int32)
        self.replica = np.full(room, -1, dtype=np.int32)
        self.drop = np.zeros(room, dtype=np.int8)
        # state
        self.now = 0.0  #: time (s) the plane has been advanced to
        self.next_i = 0  #: first arrival not yet processed
        self.queue: deque[int] = deque()  #: shared queue, or the router buffer
        self.rq: dict[int, deque[int]] = {}  #: per-replica queues
        self.free_at: dict[int, float] = {}  #: end of the current batch / time it went idle
        self.nserv: dict[int, int] = {}  #: size of the batch in service
        self.factors: dict[int, list[float]] = {}
        #: per replica, seconds added to a batch of b whatever its draw (``offsets[r][b]``)
        self.offsets: dict[int, list[float]] = {}
        #: per replica, ``(idle gaps s, overheads s)``: seconds added to a batch by how long the
        #: replica was idle before it (absent: none)
        self.idle: dict[int, tuple[list[float], list[float]]] = {}
        self.accepting: list[int] = []  #: ready replicas (sorted ids) that take new work
        self.draining: set[int] = set()
        #: draining replicas that finished their work (id -> stop time), for the control plane
        self.stopped: dict[int, float] = {}
        self._crash_lo = 0
        # compiled shared queue: a ring buffer of request indices (see simulator/_kernels.py)
        self._compiled = self.kernels == "compiled" and self.policy.shared
        self._qbuf = np.zeros(1024, dtype=np.int64)
        self._qhead = 0
        self._qlen = 0
        self._layout: tuple | None = None  #: per-slot arrays of the accepting replicas
        # compiled per-replica queues (see simulator/_kernels_routed.py)
        self._routed = self.kernels == "compiled" and not self.policy.shared
        if self._routed:
            from simscale.simulator._kernels_routed import supports

            self._routed = supports(self)

    # ------------------------------------------------------------------ control operations
    def add_replica(self, rid: int, t_s: float, factors: list[float],
                    offsets: list[float] | None = None,
                    idle: tuple[list[float], list[float]] | None = None,
                    noise: Hashable | None = None) -> None:
        """Replica ``rid`` serves from ``t_s`` (call after ``advance(t_s)``).

        A batch of ``b`` (``b`` = 1..max batch) whose first request has unit draw ``u`` (in
        the noise column ``noise``, see :meth:`set_factors`) takes ``offsets[b] + factors[b] *
        u`` seconds (``offsets`` default to zero), plus, with an ``idle`` curve ``(gaps_s,
        overheads_s)`` (ascending gaps), the overhead of the replica's idle time before the
        batch."""
        self.free_at[rid] = t_s
        self.nserv[rid] = 0
        self.set_factors(rid, factors, offsets, idle, noise)
        if not self.policy.shared:
            self.rq[rid] = deque()
        self.accepting.append(rid)
        self.accepting.sort()
        self._layout = None

    def set_factors(self, rid: int, factors: list[float],
                    offsets: list[float] | None = None,
                    idle: tuple[list[float], list[float]] | None = None,
                    noise: Hashable | None = None) -> None:
        """New service-time factors (and offsets, idle curve, noise column) of ``rid``
        (resize); the batch in service keeps its time. ``noise``: the key of the noise column
        of ``rid``'s size (``None``: ``unit_service``, the configured size's); a new key's
        column is made from ``size_noise`` for the requests held, and follows the window."""
        c = 0 if noise is None else self._noise_column(noise)
        if c:
            self._col[rid] = c
        else:
            self._col.pop(rid, None)
        self._layout = None
        self.factors[rid] = list(factors)
        self.offsets[rid] = [0.0] * len(factors) if offsets is None else list(offsets)
        if idle is None:
            self.idle.pop(rid, None)
        else:
            gaps, over = idle
            if len(gaps) != len(over) or not gaps or list(gaps) != sorted(gaps):
                raise ValueError("idle curve needs ascending gaps, one overhead each")
            self.idle[rid] = (list(map(float, gaps)), list(map(float, over)))

    def _noise_column(self, key: Hashable) -> int:
        """The column of noise ``key``, made on first use: ``size_noise`` gives its draws of
        every request held (a fed plane's later reads add theirs while a replica has that
        column, :meth:`_read_inputs`; made again when one has it after a read without)."""
        keys = self._col_keys
        if key in keys:
            c = keys.index(key)
            if c in self._stale:
                self._inputs[1][c, :self._in_len] = self._size_noise(
                    key, self._in_base, self._in_base + self._in_len)
                self._stale.discard(c)
            return c
        if self._size_noise is None:
            raise ValueError("this plane has one noise column (no size_noise given)")
        arr, units, ru = self._inputs
        grown = np.empty((len(units) + 1, units.shape[1]))
        grown[:-1] = units
        grown[-1, :self._in_len] = self._size_noise(key, self._in_base,
                                                    self._in_base + self._in_len)
        self._inputs = (arr, grown, ru)
        keys.append(key)
        self._view_inputs()
        return len(keys) - 1

    def _batch_terms(self, lo: int, hi: int, rids: Iterable[int]
                     ) -> dict[int, tuple[list[float], list[float], list[float]]]:
        """Per replica of ``rids``, what a batch's time is made of: its ``(offsets, factors,
        draws)``, the draws those of requests ``lo..hi-1`` (from :attr:`base`) in its noise
        column, as a list (one per column, shared by its replicas)."""
        col, off, fac = self._col, self.offsets, self.factors
        if not col:  # (every replica of the configured size's column)
            ul = self.unit_service[lo:hi].tolist()
            return {r: (off[r], fac[r], ul) for r in rids}
        lists: dict[int, list[float]] = {}
        out = {}
        for r in rids:
            c = col.get(r, 0)
            if c not in lists:
                lists[c] = self.unit_cols[c][lo:hi].tolist()
            out[r] = (off[r], fac[r], lists[c])
        return out

    def track_busy(self, n_bins: int) -> np.ndarray:
        """Keep the replicas' busy time per second ``[k, k + 1)``, ``k < n_bins``, from now on
        (call before the first :meth:`advance`); returns the array (s), which the plane keeps
        up to date: see the module docstring (every caller gets the same array)."""
        if len(self.busy_s) != int(n_bins):
            self.busy_s = np.zeros(int(n_bins))
        return self.busy_s

    def set_batching(self, max_batch_size: int, max_wait_s: float) -> None:
        """Change the batching limits from now on (factors must cover ``max_batch_size``)."""
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_s)
        self._layout = None

    def busy(self, rid: int) -> bool:
        """Whether ``rid`` has a batch in service at :attr:`now`."""
        return self.free_at[rid] > self.now

    def outstanding(self, rid: int) -> int:
        """Requests queued at or in service on ``rid`` at :attr:`now`."""
        q = self.rq.get(rid)
        return (len(q) if q else 0) + (self.nserv[rid] if self.free_at[rid] > self.now else 0)

    def queue_length(self) -> int:
        """Requests waiting (not in service) at :attr:`now`."""
        return len(self.queue) + self._qlen + sum(len(q) for q in self.rq.values())

    def in_service(self) -> int:
        """Requests in service at :attr:`now`."""
        now = self.now
        return sum(self.nserv[r] for r, f in self.free_at.items() if f > now)

    def drain(self, rid: int, t_s: float) -> float | None:
        """Stop giving ``rid`` new work at ``t_s`` (call after ``advance(t_s)``).

        Returns its stop time when that is already known (its own queue is empty: the end of
        its batch in service, or ``t_s``); otherwise ``None`` and the stop time appears in
        :attr:`stopped` once an :meth:`advance` has processed its last batch."""
        if rid in self.accepting:
            self.accepting.remove(rid)
            self._layout = None
        self.draining.add(rid)
        q = self.rq.get(rid)
        if not q:
            return max(self.free_at[rid], t_s)
        return None

    def remove(self, rid: int) -> None:
        """Forget a stopped replica."""
        self.free_at.pop(rid, None)
        self.nserv.pop(rid, None)
        self.factors.pop(rid, None)
        self.offsets.pop(rid, None)
        self.idle.pop(rid, None)
        self._col.pop(rid, None)
        self.rq.pop(rid, None)
        self.draining.discard(rid)
        self.stopped.pop(rid, None)
        if rid in self.accepting:
            self.accepting.remove(rid)
            self._layout = None

    def crash(self, rid: int, t_s: float) -> int:
        """Replica ``rid`` crashes at ``t_s`` (call after ``advance(t_s)``): its batch in
        service and its own queue are dropped (``crash``); returns how many were dropped."""
        dropped = 0
        if self.free_at.get(rid, -_INF) > t_s:
            lo = self._advance_crash_lo(t_s)
            hi = self.next_i
            sl = slice(lo, hi)
            hit = np.nonzero((self.replica[sl] == rid) & (self.end_s[sl] > t_s)
                             & (self.drop[sl] == DROP_NONE))[0] + lo
            self.drop[hit] = DROP_CRASH
            if len(self.busy_s):  # (busy no more from the crash on)
                add_busy(self.busy_s, np.full(len(hit), t_s), self.end_s[hit],
                         self.batch_size[hit], -1)
            self.end_s[hit] = t_s
            dropped += len(hit)
        q = self.rq.get(rid)
        if q:
            idx = np.fromiter(q, dtype=np.int64, count=len(q))
            self.drop[idx] = DROP_CRASH
            self.end_s[idx] = t_s
            dropped += len(idx)
            q.clear()
        self.remove(rid)
        return dropped

    def _advance_crash_lo(self, t_s: float) -> int:
        lo, hi = self._crash_lo, self.next_i
        if hi > lo:
            seg = self.end_s[lo:hi]
            done = seg <= t_s
            if done.all():
                lo = hi
            else:
                lo += int(np.argmin(done))
            self._crash_lo = lo
        return lo

    # ------------------------------------------------------------------ streaming window
    _RESULTS = (("start_s", np.nan), ("end_s", np.nan), ("batch_size", 0), ("replica", -1),
                ("drop", 0))

    def _make_room(self, n_rel: int) -> None:
        """Per-request arrays for at least ``n_rel`` requests from :attr:`base` (doubled)."""
        have = len(self.start_s)
        if n_rel <= have:
            return
        size = max(n_rel, 2 * have)
        for name, fill in self._RESULTS:
            old = getattr(self, name)
            new = np.full(size, fill, dtype=old.dtype)
            new[:have] = old
            setattr(self, name, new)

    def compact(self, k: int) -> None:
        """Forget the window's first ``k`` requests (their outcomes must be final and read):
        the arrays move on by ``k`` and every index held (queues, cursors) with them."""
        if not self.windowed:
            raise ValueError("compact needs a plane made with window=")
        if k <= 0:
            return
        m = self.next_i
        if k > m:
            raise ValueError(f"cannot forget {k} requests, {m} processed")
        for name, fill in self._RESULTS:
            a = getattr(self, name)
            a[:m - k] = a[k:m]
            a[m - k:m] = fill
        self.base += k
        self._view_inputs()
        self.next_i = m - k
        self._crash_lo = max(self._crash_lo - k, 0)
        for q in (self.queue, *self.rq.values()):
            if q:
                if q[0] < k:
                    raise ValueError("cannot forget a request still queued")
                moved = [i - k for i in q]
                q.clear()
                q.extend(moved)
        if self._qlen:
            if self._qbuf[self._qhead] < k:
                raise ValueError("cannot forget a request still queued")
            self._qbuf -= k  # (entries outside the ring are never read)

    def arrivals_per_s(self, n_bins: int) -> np.ndarray:
        """The whole run's arrivals in each second ``[k, k + 1)``, ``k < n_bins`` (float64),
        whether the plane holds them all or reads them from a feed (which counted them: a
        live feed fills the array as it draws, complete for every second before the latest
        arrival read, hence before any time the plane has been advanced to)."""
        if self._feed is not None:
            return self._feed.arrivals_per_s(n_bins)
        # sorted, >= 0: arrivals per bin by bisection (before any compact: the whole run)
        cuts = np.searchsorted(self._inputs[0], np.arange(n_bins + 1, dtype=np.float64),
                               side="left")
        return np.diff(cuts).astype(np.float64)

    def _view_inputs(self) -> None:
        """Point ``arrival_s``, ``unit_service``, ``unit_cols`` and ``route_u`` at the inputs
        from :attr:`base` on."""
        arr, units, ru = self._inputs
        off, end = self.base - self._in_base, self._in_len
        self.arrival_s = arr[off:end]
        self.unit_service = units[0, off:end]
        self.unit_cols = [self.unit_service] + [row[off:end] for row in units[1:]]
        self.route_u = None if ru is None else ru[off:end]

    def _read_inputs(self, t_s: float) -> None:
        """Fed (:mod:`~simscale.simulator.feeds`): read chunks until the inputs held include
        every arrival before ``t_s`` (and the one after it, when there is one), forgetting
        those before :attr:`base`.

        The inputs live in buffers reused from read to read: the requests not yet forgotten
        move to the front and the next chunk is read in behind them (fresh memory is dear:
        concatenating into new arrays each read cost more than the reads). The views
        ``arrival_s`` etc. are taken anew after each read; nothing may keep an older one."""
        feed = self._feed
        while not feed.done and (len(self.arrival_s) == 0 or self.arrival_s[-1] < t_s):
            k = feed.next_count()
            off = self.base - self._in_base
            live = self._in_len - off
            bufs = self._inputs
            draws = feed.draws
            if len(bufs[0]) < live + k:  # (first read, or a window longer than before)
                size = 2 * (live + k)
                ru_shape = () if draws == 1 else (draws,)
                units = np.empty((len(bufs[1]), size))
                units[:, :live] = bufs[1][:, off:off + live]
                bufs = (_moved(bufs[0], off, live, size, ()), units,
                        _moved(bufs[2], off, live, size, ru_shape) if draws else None)
                self._inputs = bufs
            elif off:  # (numpy copies overlapping ranges safely)
                bufs[0][:live] = bufs[0][off:off + live]
                bufs[1][:, :live] = bufs[1][:, off:off + live]
                if bufs[2] is not None:
                    bufs[2][:live] = bufs[2][off:off + live]
            arr, units, ru = bufs
            pos = feed.pos  # (the run's index of the chunk's first request)
            feed.read_into(arr[live:live + k], units[0, live:live + k],
                           None if ru is None else ru[live:live + k])
            used = set(self._col.values()) if len(units) > 1 else ()
            for c in range(1, len(units)):  # the other sizes' noise follows the window
                if c in used:
                    units[c, live:live + k] = self._size_noise(self._col_keys[c], pos, pos + k)
                else:  # (no replica of that size now: not drawn, made again if one comes)
                    self._stale.add(c)
            self._in_base = self.base
            self._in_len = live + k
            self._view_inputs()

    # ------------------------------------------------------------------ advancing
    def advance(self, t_end_s: float) -> None:
        """Process every arrival before ``t_end_s`` and start every batch that starts before it.

        Draining replicas that finish their last batch before ``t_end_s`` appear in
        :attr:`stopped`."""
        if t_end_s <= self.now:
            return
        if self._feed is not None:
            self._read_inputs(t_end_s)
        if self.windowed:
            self._make_room(int(np.searchsorted(self.arrival_s, t_end_s, side="left")))
        # the loops allocate many short-lived tuples and no reference cycles: the cyclic
        # garbage collector only costs time here
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            if self._compiled:
                self._advance_compiled(t_end_s)
            elif self.policy.shared:
                if self.max_batch_size == 1 and self._fifo_fast_ok():
                    self._advance_fifo(t_end_s)
                else:
                    self._advance_shared(t_end_s)
            elif self._routed:
                from simscale.simulator._kernels_routed import advance_routed_compiled

                advance_routed_compiled(self, t_end_s)
            else:
                self._advance_general(t_end_s)
        finally:
            if gc_was_on:
                gc.enable()
        self.now = t_end_s

    def _fifo_fast_ok(self) -> bool:
        """The unbatched fast path handles zero offsets, or, without capacity and timeout, one
        (offset, factor) shared by all replicas; the batching loop handles the rest exactly
        (idle curves included)."""
        if self.idle:
            return False
        if self._col and len({self._col.get(r, 0) for r in self.accepting}) > 1:
            return False  # (replicas of sizes with different noise columns)
        if self.queue and any(self.free_at[r] < self.now for r in self.accepting):
            # requests left queued by a larger batch size, and a replica idle since before
            # now: they start at now, not at max(arrival, free time) (the batching loop
            # clamps starts to the segment's start)
            return False
        offs = {self.offsets[r][1] for r in self.accepting}
        if offs <= {0.0}:
            return True
        return (len(offs) == 1 and self.capacity is None and self.timeout_s is None
                and len({self.factors[r][1] for r in self.accepting}) == 1)

    # -- compiled: shared queue, with or without batching -------------------------------------
    def _slot_arrays(self) -> tuple:
        """Per-slot arrays of the accepting replicas (ascending id) for the compiled loop,
        rebuilt only after a replica joins, leaves or is resized."""
        if self._layout is None:
            acc = self.accepting
            m = len(acc)
            width = max([self.max_batch_size + 1, *(len(self.factors[r]) for r in acc)])
            idle = self.idle
            curves = [idle.get(r) for r in acc]
            g = max([1, *(len(c[0]) for c in curves if c is not None)])
            if m:
                # one array per field from lists padded to a common width (NaN past a
                # replica's factors, zero past its idle curve); the replicas of one size
                # share their lists, so this is a few numpy calls whatever m is
                factors = np.array([_padded(self.factors[r], width, math.nan) for r in acc])
                offsets = np.array([_padded(self.offsets[r], width, math.nan) for r in acc])
                glen = np.array([0 if c is None else len(c[0]) for c in curves],
                                dtype=np.int64)
                gaps = np.array([[0.0] * g if c is None else _padded(c[0], g, 0.0)
                                 for c in curves])
                over = np.array([[0.0] * g if c is None else _padded(c[1], g, 0.0)
                                 for c in curves])
            else:
                factors = np.full((1, width), np.nan)
                offsets = np.full((1, width), np.nan)
                glen = np.zeros(1, dtype=np.int64)
                gaps = np.zeros((1, g))
                over = np.zeros((1, g))
            rids = np.asarray(acc if acc else [0], dtype=np.int64)
            col = self._col
            ucol = np.asarray([col.get(r, 0) for r in acc] if acc else [0], dtype=np.int64)
            # and the loop's per-call buffers (free times, heap slots and their start, the
            # batch size each slot started last), refilled at each call instead of made anew
            k = max(m, 1)
            self._layout = (m, rids, factors, offsets, gaps, over, glen, np.zeros(k),
                            np.empty(k, dtype=np.int64), np.arange(k, dtype=np.int64),
                            np.empty(k, dtype=np.int64), ucol)
        return self._layout

    def _advance_compiled(self, T: float) -> None:
        # (called at every control event: the Python around the compiled loop is kept lean;
        # slot s of the layout is replica self.accepting[s], the ids ascending)
        K = _compiled_kernels()
        i0 = self.next_i
        i1 = int(self.arrival_s.searchsorted(T))
        self.next_i = i1
        (m, rids, factors, offsets, gaps, over, glen, hf, hs, slots, nserv,
         ucol) = self._slot_arrays()
        acc = self.accepting
        if m:
            fa = self.free_at
            hf[:] = [fa[r] for r in acc]
        else:
            hf[0] = 0.0
        hs[:] = slots
        K.heapify(hf, hs, m)
        nserv.fill(-1)
        tmo = self.timeout_s
        # batches of one that leave the queue only to start: no event loop needed
        loop = K.advance_fifo1 if (self.max_batch_size == 1 and self.capacity is None
                                   and tmo is None) else K.advance_shared
        self._qbuf, self._qhead, self._qlen = loop(
            self.arrival_s, self._inputs[1], self.base - self._in_base, ucol, self.start_s,
            self.end_s, self.batch_size, self.replica, self.drop, self.busy_s, self._qbuf,
            self._qhead,
            self._qlen, hf, hs, m, rids, factors, offsets, gaps, over, glen, nserv,
            self.max_batch_size, self.max_wait_s,
            -1 if self.capacity is None else int(self.capacity), tmo is not None,
            0.0 if tmo is None else float(tmo), self.now, i0, i1, T)
        if m:
            for f, s in zip(hf.tolist(), hs.tolist(), strict=True):
                fa[acc[s]] = f
            ns = self.nserv
            for s, b in enumerate(nserv.tolist()[:m]):
                if b >= 0:
                    ns[acc[s]] = b

    # -- fast path: shared FIFO queue, no batching ------------------------------------------
    def _advance_fifo(self, T: float) -> None:
        arr = self.arrival_s
        i0 = self.next_i
        i1 = int(np.searchsorted(arr, T, side="left"))
        self.next_i = i1
        fa = self.free_at
        heap = [(fa[r], r) for r in self.accepting]
        heapq.heapify(heap)
        fac = {r: self.factors[r][1] for r in self.accepting}
        same = next(iter(fac.values())) if len(set(fac.values())) == 1 else None
        # the accepting replicas' one noise column (see _fifo_fast_ok)
        ucol = self.unit_cols[self._col.get(self.accepting[0], 0)] \
            if self._col and self.accepting else self.unit_service
        # non-zero offsets reach here only when all replicas share them and there is neither
        # capacity nor timeout (see _fifo_fast_ok), i.e. on the ``same`` path below
        off1 = self.offsets[self.accepting[0]][1] if self.accepting else 0.0
        cap = self.capacity
        tmo = self.timeout_s
        pend = list(self.queue)
        self.queue.clear()
        stuck: list[int] = []
        drops: list[tuple[int, int, float]] = []
        lv: deque[float] = deque()
        nstuck = 0
        started: set[int] = set()  # replicas that start a batch (of one) in this segment
        # 1) requests queued since an earlier segment, then 2) the new arrivals
        for part in (0, 1):
            if part == 0:
                if not pend:
                    continue
                idx_arr = np.asarray(pend, dtype=np.int64)
                sel: slice | np.ndarray = idx_arr
                base = 0
            else:
                if i1 <= i0:
                    continue
                idx_arr = None
                sel = slice(i0, i1)
                base = i0
            a_arr = arr[sel]
            # floats are read from the arrays' buffers as the loops go (no list of them)
            al = memoryview(a_arr)
            n = len(a_arr)
            k = 0
            if heap and not stuck:
                if cap is None and tmo is None:
                    # the hot loop records starts and replicas only (in C arrays); the end
                    # times are the same float operations, done vectorised afterwards
                    # ends are (start + offset) + factor * draw, in that order, as in the
                    # batching loop (so both loops agree to the last bit)
                    if same is not None:  # one factor for all: multiply outside the loop
                        u_arr = ucol[sel] * same
                    else:
                        u_arr = ucol[sel]
                    S_a = array("d")
                    R_a = array("i")
                    k = _fifo_kernel(al, memoryview(u_arr), heap,
                                     None if same is not None else fac, T, S_a, R_a, off1)
                    if k:
                        s_np = np.frombuffer(S_a, dtype=np.float64)
                        r_np = np.frombuffer(R_a, dtype=np.intc)
                        if same is not None:
                            e_np = (s_np + off1) + u_arr[:k]
                        else:
                            fac_np = np.zeros(max(fac) + 1)
                            for r_, f_ in fac.items():
                                fac_np[r_] = f_
                            e_np = s_np + fac_np[r_np] * u_arr[:k]
                        tgt = idx_arr[:k] if idx_arr is not None else slice(base, base + k)
                        self._write(tgt, s_np, e_np, r_np)
                        started.update(np.unique(r_np).tolist())
                else:
                    S: list[float] = []
                    E: list[float] = []
                    R: list[int] = []
                    served: list[int] = []  # positions served (drops can interleave)
                    k = _fifo_checked(a_arr.tolist(), ucol[sel].tolist(), heap,
                                      fac, T, cap, tmo, lv, S, E, R, served, drops, idx_arr,
                                      base)
                    if S:
                        p = np.asarray(served, dtype=np.int64)
                        tgt = idx_arr[p] if idx_arr is not None else p + base
                        self._write(tgt, S, E, R)
                        started.update(R)
            # the rest cannot start before T: a new arrival meets the capacity first (a
            # request that may not wait is refused at once, as in the batching loop), then
            # waits, timing out before T when no replica could take it
            for j in range(k, n):
                a = al[j]
                if cap is not None and part == 1:
                    while lv and lv[0] <= a:
                        lv.popleft()
                    if len(lv) + nstuck >= cap:
                        drops.append((base + j, DROP_QUEUE_FULL, a))
                        continue
                if tmo is not None and a + tmo < T:
                    drops.append((int(idx_arr[j]) if idx_arr is not None else base + j,
                                  DROP_TIMEOUT, a + tmo))
                    lv.append(a + tmo)
                    continue
                stuck.append(int(idx_arr[j]) if idx_arr is not None else base + j)
                nstuck += 1
        self.queue.extend(stuck)
        for _f, r in heap:
            fa[r] = _f
        if drops:
            d = np.asarray(drops, dtype=np.float64)
            idx = d[:, 0].astype(np.int64)
            self.drop[idx] = d[:, 1].astype(np.int8)
            self.end_s[idx] = d[:, 2]
        # a replica that started nothing here may still serve a larger batch from an earlier
        # segment (batch size changed back to one): its count stays
        for r in started:
            self.nserv[r] = 1

    def _write(self, tgt: slice | np.ndarray, S: list[float], E: list[float], R: list[int],
               bs: list[int] | int = 1) -> None:
        self.start_s[tgt] = S
        self.end_s[tgt] = E
        self.replica[tgt] = R
        self.batch_size[tgt] = bs
        if len(self.busy_s):
            add_busy(self.busy_s, S, E, bs)

    # -- shared queue with batching ----------------------------------------------------------
    def _advance_shared(self, T: float) -> None:
        """Shared FIFO queue with batching, capacity and timeouts: a loop over two kinds of
        event, the next arrival and the next batch start (the replica free the longest, or
        first, takes the head batch), with no per-replica events."""
        arr = self.arrival_s
        t0 = self.now
        i0 = self.next_i
        i1 = int(np.searchsorted(arr, T, side="left"))
        self.next_i = i1
        q = self.queue
        lo = q[0] if q else i0
        al = arr[lo:i1].tolist()
        # per replica: offsets, factors and the draws of its size's noise column
        terms = self._batch_terms(lo, i1, self.accepting)
        fa = self.free_at
        heap = [(fa[r], r) for r in self.accepting]
        heapq.heapify(heap)
        idle_c = self.idle
        maxb = self.max_batch_size
        maxw = self.max_wait_s
        cap = -1 if self.capacity is None else self.capacity
        tmo = self.timeout_s
        use_tmo = tmo is not None
        tmo_s = tmo if tmo is not None else 0.0
        oi: list[int] = []
        os_: list[float] = []
        oe: list[float] = []
        ob: list[int] = []
        orr: list[int] = []
        drops: list[tuple[int, int, float]] = []
        inf = _INF
        last_k: dict[int, int] = {}
        i = i0
        ta = al[i - lo] if i < i1 else inf
        while True:
            if q and heap:
                f, r = heap[0]
                if len(q) >= maxb:
                    tb = al[q[maxb - 1] - lo]
                else:
                    tb = al[q[0] - lo] + maxw
                if f > tb:
                    tb = f
                if tb < t0:
                    tb = t0
            else:
                tb = inf
            t = tb if tb <= ta else ta
            if use_tmo and q:
                a_h = al[q[0] - lo]
                if a_h + tmo_s < (t if t < T else T):
                    h = q.popleft()
                    drops.append((h, DROP_TIMEOUT, a_h + tmo_s))
                    continue
            if t >= T:
                break
            if tb <= ta:
                k = len(q)
                if k > maxb:
                    k = maxb
                h = q[0]
                off_r, fac_r, ul_r = terms[r]
                e = tb + off_r[k] + fac_r[k] * ul_r[h - lo]
                if idle_c:
                    c = idle_c.get(r)
                    if c is not None:
                        e += _idle_overhead(tb - f, c)
                for _ in range(k):
                    oi.append(q.popleft())
                os_.extend([tb] * k)
                oe.extend([e] * k)
                ob.extend([k] * k)
                orr.extend([r] * k)
                heapq.heapreplace(heap, (e, r))
                last_k[r] = k
            else:
                if cap >= 0 and len(q) >= cap:
                    drops.append((i, DROP_QUEUE_FULL, ta))
                else:
                    q.append(i)
                i += 1
                ta = al[i - lo] if i < i1 else inf
        for f, r in heap:
            fa[r] = f
        self.nserv.update(last_k)
        if oi:
            self._write(np.asarray(oi, dtype=np.int64), os_, oe, orr, ob)
        if drops:
            d = np.asarray(drops, dtype=np.float64)
            idx = d[:, 0].astype(np.int64)
            self.drop[idx] = d[:, 1].astype(np.int8)
            self.end_s[idx] = d[:, 2]

    # -- general path: batching, per-replica queues, timeouts --------------------------------
    def _advance_general(self, T: float) -> None:  # noqa: C901 - one loop, kept together
        arr = self.arrival_s
        t0 = self.now
        i0 = self.next_i
        i1 = int(np.searchsorted(arr, T, side="left"))
        self.next_i = i1
        shared = self.policy.shared
        queue = self.queue
        rq = self.rq
        lo = i0
        if queue:
            lo = min(lo, queue[0])
        for q in rq.values():
            if q:
                lo = min(lo, q[0])
        hi = max(i1, lo)
        al = arr[lo:hi].tolist()
        # per replica: offsets, factors and the draws of its size's noise column
        terms = self._batch_terms(lo, hi, self.free_at)
        maxb = self.max_batch_size
        maxw = self.max_wait_s
        cap = self.capacity
        tmo = self.timeout_s
        fa = self.free_at
        nserv = self.nserv
        idle_c = self.idle
        accepting = self.accepting
        draining = self.draining
        stopped = self.stopped
        policy_route = self.policy.route
        route_u = self.route_u[lo:hi].tolist() if self.route_u is not None else None
        events: list[tuple[float, int, int, int]] = []
        seq = 0
        deadline_at: dict[int, float] = {}
        # outputs
        oi: list[int] = []
        os_: list[float] = []
        oe: list[float] = []
        ob: list[int] = []
        orr: list[int] = []
        drops: list[tuple[int, int, float]] = []
        # timeouts: queued requests in enqueue (= arrival) order
        tq: deque[int] = deque()
        where: dict[int, deque[int]] = {}
        if tmo is not None:
            qs = [queue, *rq.values()]
            for q in qs:
                for idx in q:
                    where[idx] = q
            tq.extend(sorted(where))

        busy: dict[int, bool] = {}
        idle: deque[int] = deque()
        for r in sorted(fa, key=lambda x: (fa[x], x)):
            f = fa[r]
            if f > t0:
                busy[r] = True
                heapq.heappush(events, (f, seq, _COMPLETE, r))
                seq += 1
            else:
                busy[r] = False
                if r in draining:
                    q = rq.get(r)
                    if not q and r not in stopped:
                        stopped[r] = t0
                elif shared:
                    idle.append(r)

        def expire(t: float) -> None:
            while tq:
                idx = tq[0]
                a = al[idx - lo]
                if a + tmo >= t:  # type: ignore[operator]
                    return
                tq.popleft()
                q = where.pop(idx, None)
                if q is not None:
                    q.popleft()
                    drops.append((idx, DROP_TIMEOUT, a + tmo))  # type: ignore[operator]

        def start_batch(r: int, t: float, q: deque[int]) -> None:
            nonlocal seq
            k = len(q)
            if k > maxb:
                k = maxb
            h = q[0]
            off_r, fac_r, ul_r = terms[r]
            e = t + off_r[k] + fac_r[k] * ul_r[h - lo]
            if idle_c:
                c = idle_c.get(r)
                if c is not None:
                    e += _idle_overhead(t - fa[r], c)  # fa[r]: end of its previous batch
            for _ in range(k):
                idx = q.popleft()
                if tmo is not None:
                    where.pop(idx, None)
                oi.append(idx)
                os_.append(t)
                oe.append(e)
                ob.append(k)
                orr.append(r)
            fa[r] = e
            nserv[r] = k
            busy[r] = True
            heapq.heappush(events, (e, seq, _COMPLETE, r))
            seq += 1

        def schedule_deadline(key: int, td: float) -> None:
            nonlocal seq
            if deadline_at.get(key) != td:
                deadline_at[key] = td
                heapq.heappush(events, (td, seq, _DEADLINE, key))
                seq += 1

        def dispatch(t: float) -> None:
            while idle and queue:
                h = queue[0]
                if len(queue) < maxb and al[h - lo] + maxw > t:
                    schedule_deadline(-1, al[h - lo] + maxw)
                    return
                start_batch(idle.popleft(), t, queue)

        def try_start(r: int, t: float) -> None:
            q = rq[r]
            if not q:
                return
            h = q[0]
            if len(q) < maxb and al[h - lo] + maxw > t:
                schedule_deadline(r, al[h - lo] + maxw)
                return
            start_batch(r, t, q)

        def outstanding(r: int) -> int:
            return len(rq[r]) + (nserv[r] if busy[r] else 0)

        def route(idx: int) -> int:  # the policy of simulator/serving.py decides
            if len(accepting) == 1:
                return accepting[0]
            return policy_route(accepting, outstanding,
                                route_u[idx - lo] if route_u is not None else None)

        def enqueue(idx: int, q: deque[int]) -> None:
            q.append(idx)
            if tmo is not None:
                where[idx] = q
                tq.append(idx)

        # kick at t0
        if tmo is not None:
            expire(t0)
        if shared:
            dispatch(t0)
        else:
            if accepting and queue:
                buf = list(queue)
                queue.clear()
                for idx in buf:
                    r = route(idx)
                    rq[r].append(idx)
                    if tmo is not None:
                        where[idx] = rq[r]
            for r in sorted(rq):
                if not busy[r]:
                    try_start(r, t0)

        i = i0
        while True:
            if events and events[0][0] < T and (i >= i1 or events[0][0] <= al[i - lo]):
                t, _s, kind, r = heapq.heappop(events)
                if tmo is not None:
                    expire(t)
                if kind == _COMPLETE:
                    if r not in fa or fa[r] != t or not busy.get(r):
                        continue
                    busy[r] = False
                    nserv[r] = 0
                    if r in draining:
                        if shared or not rq[r]:
                            stopped[r] = t
                        else:
                            try_start(r, t)
                    elif shared:
                        idle.append(r)
                        dispatch(t)
                    else:
                        try_start(r, t)
                else:
                    deadline_at.pop(r, None)
                    if shared:
                        dispatch(t)
                    elif r in fa and not busy[r]:
                        try_start(r, t)
            elif i < i1:
                t = al[i - lo]
                idx = i
                i += 1
                if tmo is not None:
                    expire(t)
                if shared:
                    if cap is not None and len(queue) >= cap:
                        drops.append((idx, DROP_QUEUE_FULL, t))
                        continue
                    enqueue(idx, queue)
                    dispatch(t)
                elif not accepting:
                    if cap is not None and len(queue) >= cap:
                        drops.append((idx, DROP_QUEUE_FULL, t))
                        continue
                    enqueue(idx, queue)
                else:
                    r = route(idx)
                    q = rq[r]
                    if cap is not None and len(q) >= cap:
                        drops.append((idx, DROP_QUEUE_FULL, t))
                        continue
                    enqueue(idx, q)
                    if not busy[r]:
                        try_start(r, t)
            else:
                break
        if tmo is not None:
            expire(T)  # everything that waited too long by T (drops are at arrival + timeout)
        if oi:
            tgt = np.asarray(oi, dtype=np.int64)
            self._write(tgt, os_, oe, orr, ob)
        if drops:
            d = np.asarray(drops, dtype=np.float64)
            idx = d[:, 0].astype(np.int64)
            self.drop[idx] = d[:, 1].astype(np.int8)
            self.end_s[idx] = d[:, 2]


def add_busy(busy: np.ndarray, s: Any, e: Any, b: Any, sign: int = 1) -> None:
    """``busy[k] += sign * |[s_j, e_j) & [k, k + 1)| / b_j`` for ``k < len(busy)``, request
    ``j`` after request ``j - 1`` and each one's seconds in order (``s >= 0``; ``b``: its batch's
    size, or one for all): the compiled loops add the same pieces (``(min(e, k + 1) - s) *
    (1 / b)``, then from each whole second on) in the same order, so both give the same floats.
    ``sign`` -1 takes them off (a crash)."""
    n = len(busy)
    s = np.asarray(s, dtype=np.float64)
    if not n or not len(s):
        return
    e = np.asarray(e, dtype=np.float64)
    w = 1.0 / np.broadcast_to(np.asarray(b, dtype=np.float64), s.shape)
    k0 = s.astype(np.int64)
    m = np.maximum(np.ceil(e).astype(np.int64) - k0, 1)  # (the seconds each one touches)
    if (m == 1).all():  # (within one second each: one piece per request)
        pieces, bins = (np.minimum(e, k0 + 1.0) - s) * w, k0
    else:
        j = np.repeat(np.arange(len(s)), m)
        bins = np.arange(len(j)) - np.repeat(np.cumsum(m) - m, m) + k0[j]
        lo = np.where(bins == k0[j], s[j], bins.astype(np.float64))
        pieces = (np.minimum(e[j], bins + 1.0) - lo) * w[j]
    keep = bins < n
    if not keep.all():
        bins, pieces = bins[keep], pieces[keep]
    (np.add if sign > 0 else np.subtract).at(busy, bins, pieces)


def _moved(buf: np.ndarray | None, off: int, live: int, size: int,
           row: tuple[int, ...]) -> np.ndarray:
    """A new float64 buffer of ``size`` rows of shape ``row`` holding ``buf[off:off + live]``
    at its front (nothing to hold when ``buf`` is ``None`` or ``live`` is 0)."""
    out = np.empty((size, *row), dtype=np.float64)
    if live and buf is not None:
        out[:live] = buf[off:off + live]
    return out


def _padded(values: list[float], width: int, fill: float) -> list[float]:
    """``values`` extended with ``fill`` to ``width`` items (itself when already that long)."""
    n = len(values)
    return values if n >= width else [*values, *([fill] * (width - n))]


def _compiled_kernels():  # noqa: ANN202 - the module
    """:mod:`simscale.simulator._kernels` (imported on first use: numba loads only then)."""
    global _KERNELS
    if _KERNELS is None:
        from simscale.simulator import _kernels

        _KERNELS = _kernels
    return _KERNELS


_KERNELS = None


def _idle_overhead(idle_s: float, curve: tuple[list[float], list[float]]) -> float:
    """The overhead (s) after ``idle_s`` seconds idle: linear between the curve's gaps,
    constant beyond its ends."""
    gaps, over = curve
    if idle_s <= gaps[0]:
        return over[0]
    j = bisect_right(gaps, idle_s)
    if j >= len(gaps):
        return over[-1]
    g0 = gaps[j - 1]
    return over[j - 1] + (over[j] - over[j - 1]) * (idle_s - g0) / (gaps[j] - g0)


def _fifo_kernel(al: memoryview, ul: memoryview, heap: list[tuple[float, int]],
                 fac: dict[int, float] | None, T: float, S: array, R: array,
                 off: float = 0.0) -> int:
    """The hot loop: FIFO, one request per batch, no capacity or timeout. The replica free
    the longest (lowest ``(free time, id)``) takes the head; request ``k`` starts at
    ``s = max(al[k], free time)`` and ends at ``(s + off) + ul[k]`` (``fac=None``: ``ul``
    holds factor x draw; ``off`` is the common offset) or ``s + fac[r] * ul[k]`` (``off`` is
    then 0). Appends the start and the replica of each request that starts before ``T`` to
    ``S`` and ``R`` and returns how many did (a prefix, since starts are in arrival order)."""
    hr = heapq.heapreplace
    sa = S.append
    ra = R.append
    h = heap
    f, r = h[0]
    if fac is None:
        for a, u in zip(al, ul):  # noqa: B905 - same length by construction
            if a > f:
                f = a  # (< T: every arrival here is before T)
            elif f >= T:
                break
            sa(f)
            ra(r)
            hr(h, (f + off + u, r))
            f, r = h[0]
    else:
        for a, u in zip(al, ul):  # noqa: B905 - same length by construction
            if a > f:
                f = a  # (< T: every arrival here is before T)
            elif f >= T:
                break
            sa(f)
            ra(r)
            hr(h, (f + fac[r] * u, r))
            f, r = h[0]
    return len(S)


def _fifo_checked(al: list[float], ul: list[float], heap: list[tuple[float, int]],
                  fac: dict[int, float], T: float, cap: int | None, tmo: float | None,
                  lv: deque[float], S: list[float], E: list[float], R: list[int],
                  served: list[int], drops: list[tuple[int, int, float]],
                  idx_arr: np.ndarray | None, base: int) -> int:
    """FIFO, one request per batch, with queue capacity and/or timeout. ``lv`` holds the times
    at which accepted requests leave the queue (start or timeout), non-decreasing. Returns the
    position of the first request that must stay queued (``len(al)`` when none)."""
    big = _INF if tmo is None else tmo
    n = len(al)
    for k in range(n):
        a = al[k]
        if cap is not None:
            while lv and lv[0] <= a:
                lv.popleft()
            if len(lv) >= cap and idx_arr is None:
                drops.append((base + k, DROP_QUEUE_FULL, a))
                continue
        f, r = heap[0]
        s = a if a > f else f
        if s - a > big:
            if a + big < T:
                gi = int(idx_arr[k]) if idx_arr is not None else base + k
                drops.append((gi, DROP_TIMEOUT, a + big))
                lv.append(a + big)
                continue
            return k
        if s >= T:
            return k
        e = s + fac[r] * ul[k]
        heapq.heapreplace(heap, (e, r))
        S.append(s)
        E.append(e)
        R.append(r)
        served.append(k)
        lv.append(s)
    return n
