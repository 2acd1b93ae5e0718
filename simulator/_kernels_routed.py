"""Compiled per-replica-queue loop of the request plane (numba, cached on disk).

:func:`advance_routed` is a line-by-line port of ``RequestPlane._advance_general`` for the
routing policies with one queue per replica (``round_robin``, ``least_outstanding``,
``power_of_two``, ``random``, ``join_idle_queue``; see :mod:`simscale.simulator.serving`),
which stays the executable specification: the same events in the same order and the same
floating-point operations in the same order, so results are identical request by request
(``tests/test_kernels_routed.py`` checks it on randomized scenarios). The kernel writes the
per-request results (``start_s``, ``end_s`` in seconds, ``batch_size``, ``replica``, ``drop``)
straight into the plane's arrays. :func:`advance_routed_compiled` is the adapter that moves the
plane's state in and out.

State passed in and out as arrays (``M`` = number of replicas the plane knows, i.e. the keys of
``free_at``: accepting, draining, and stopped but not yet removed ones, in ascending replica id,
so slot order is replica-id order; slot ``M`` stands for the router buffer ``plane.queue``):

- the queues: request indices queued in each of the ``M + 1`` queues, concatenated in slot
  order (``qin``) with their lengths (``qcnt``, updated in place); inside the kernel each queue
  is a singly linked list (``nxt[idx - lo]`` = the request queued after ``idx``, over the window
  ``lo <= idx < max(i1, lo)`` of request indices that can be queued in this segment) with its
  head, tail and length, so enqueuing, starting a batch and timing out the head are O(1);
- per slot: ``fa`` (end of the batch in service, or the time it went idle, s), ``nserv`` (size
  of the batch in service), ``draining``, ``stop_t`` (stop time s of a draining replica that
  finished its work, NaN: not stopped), service ``factors[s, b]`` / ``offsets[s, b]`` (s) for a
  batch of ``b``, an idle curve ``gaps[s, :glen[s]]`` / ``over[s, :glen[s]]`` (s; ``glen[s] ==
  0``: none), the replica id ``rids[s]`` and its noise column ``ucol[s]`` (request ``h``'s
  draw is ``units[ucol[s], uoff + h]``: one row per replica size in use, ``uoff`` the offset
  of the plane's window in them); ``acc`` lists the accepting slots (ascending);
- ``outstanding`` per slot (queued + the batch in service, what the policies compare), kept
  up to date as requests are queued, start, time out and complete rather than summed per
  arrival (the same integers);
- the event heap (batch completions and batching deadlines) as a binary min-heap over
  ``(time s, seq << 21 | slot << 1 | kind)`` keys; seqs are distinct and increase with each
  push, so the pop order is exactly that of Python's ``heapq`` of ``(time, seq, kind, replica)``
  tuples. It is sized for every event that can be pending (see the kernel), so it never grows;
- timeouts: the queued requests expire in arrival (= index) order, as the Python loop's
  ``tq`` deque; the kernel scans request indices with a pointer instead (an index that is not
  queued is skipped, which is what a stale ``tq`` entry does), with ``wq[idx - lo]`` = the slot
  whose queue holds ``idx`` (-1: none).

The Python loop's helpers are written out inside one loop rather than called: a call passing
many arrays costs numba reference counting on every request (2-3x slower). The idle-curve
overhead is ``_kernels._idle_overhead`` (``requestplane._idle_overhead``) written out the same
way: the same ``bisect_right`` and the same operations.

numba compiles on first use (a few seconds, see :func:`warm_up`) and caches the machine code,
so later processes load it in milliseconds.
"""

from __future__ import annotations

import math
import time
import weakref
from itertools import chain

import numpy as np
from numba import njit

from simscale.simulator._kernels import _sift_down, add_batch_busy
from simscale.simulator.serving import (
    JoinIdleQueue,
    LeastOutstanding,
    PowerOfTwo,
    Random,
    RoundRobin,
)

__all__ = ["POLICY_CODES", "advance_routed", "advance_routed_compiled", "supports", "warm_up"]

DROP_QUEUE_FULL, DROP_TIMEOUT = 1, 2
_COMPLETE, _DEADLINE = 0, 1
#: routing policy class -> the kernel's integer code
POLICY_CODES: dict[type, int] = {
    RoundRobin: 0, LeastOutstanding: 1, PowerOfTwo: 2, Random: 3, JoinIdleQueue: 4,
}


# ---------------------------------------------------------------------------- event heap
@njit(cache=True, nogil=True)
def _heap_push(ht, hk, hn, t, key):
    """Push ``(t, key)`` onto the heap of ``hn`` entries (the arrays have room); returns the
    new size. Keys compare as ``(t, key)`` tuples."""
    pos = hn
    while pos > 0:
        par = (pos - 1) >> 1
        if t < ht[par] or (t == ht[par] and key < hk[par]):
            ht[pos] = ht[par]
            hk[pos] = hk[par]
            pos = par
        else:
            break
    ht[pos] = t
    hk[pos] = key
    return hn + 1


# ---------------------------------------------------------------------------- the loop's steps
@njit(cache=True, nogil=True)
def _enqueue(idx, s, lo, qh, qt, ql, nxt, use_tmo, wq):
    """Append request ``idx`` to the queue of slot ``s``."""
    nxt[idx - lo] = -1
    if ql[s] == 0:
        qh[s] = idx
    else:
        nxt[qt[s] - lo] = idx
    qt[s] = idx
    ql[s] += 1
    if use_tmo:
        wq[idx - lo] = s


# ---------------------------------------------------------------------------- the kernel
# what one turn of the kernel's loop does (the Python loop's steps, in its order)
_START, _FLUSH, _KICK, _EVENT, _ARRIVE, _END = 0, 1, 2, 3, 4, 5


@njit(cache=True, nogil=True)
def advance_routed(arr, units, uoff, ucol, ru, start_s, end_s, batch_size, replica, drop,  # noqa: C901
                   busy_s, qin, qcnt, M, rids, acc, draining, fa, nserv, stop_t, stop_order,
                   factors, offsets, gaps, over, glen, policy, rr, maxb, maxw, cap, use_tmo,
                   tmo, t0, i0, i1, T):
    """Port of ``RequestPlane._advance_general`` for per-replica queues: arrivals
    ``i0 <= i < i1`` (times ``arr``, s) are routed (policy code ``policy``, uniforms ``ru[i]``,
    round-robin pointer ``rr``) to the accepting slots ``acc``, or held in the router buffer
    (slot ``M``) while there are none; batches start while their start is before ``T`` (s),
    completions and batching deadlines are processed in ``(time, seq)`` order, requests queued
    longer than ``tmo`` s expire (``use_tmo``), arrivals finding ``cap`` queued are dropped
    (``cap < 0``: unbounded). The plane's time before the segment is ``t0`` (s).

    Updates in place ``fa``, ``nserv``, ``stop_t`` (draining slots that finished, in the order
    recorded in ``stop_order``), ``qcnt`` (queue lengths left) and the per-request arrays.
    Returns ``(qout, rr, nstop)``: the requests left queued, concatenated in slot order, the
    round-robin pointer, and how many entries of ``stop_order`` were written.

    The Python loop's helpers (``expire``, ``route``, ``enqueue``, ``try_start`` with
    ``start_batch`` and ``schedule_deadline``, the heap pushes) are written out once each inside
    one loop, which first runs the kick at ``t0`` as steps of its own (``_START``: expire;
    ``_FLUSH``: route one buffered request; ``_KICK``: try to start one idle slot), then the
    event loop (``_EVENT``, ``_ARRIVE``) and ``_END`` (the last expire): calls with many arrays
    would cost reference counting on every request."""
    inf = np.inf
    nq = M + 1
    # queues: heads, tails, lengths; the window of request indices they and arrivals span
    qh = np.zeros(nq, dtype=np.int64)
    qt = np.zeros(nq, dtype=np.int64)
    ql = np.zeros(nq, dtype=np.int64)
    lo = i0
    pos = 0
    for s in range(nq):
        if qcnt[s] > 0 and qin[pos] < lo:
            lo = qin[pos]
        pos += qcnt[s]
    hi = max(i1, lo)
    nxt = np.empty(hi - lo, dtype=np.int64)
    wq = np.full(hi - lo if use_tmo else 1, -1, dtype=np.int64)
    pos = 0
    for s in range(nq):
        for _ in range(qcnt[s]):
            _enqueue(qin[pos], s, lo, qh, qt, ql, nxt, use_tmo, wq)
            pos += 1
    busy = np.zeros(max(M, 1), dtype=np.bool_)
    dl = np.full(max(M, 1), np.nan)  # deadline_at (NaN: none)
    # the event heap: time, seq << 21 | slot << 1 | kind (seq are distinct: (time, key) orders
    # the events as (time, seq) does). Room for every event that can be pending: one per
    # slot at the start, one per slot kicked, and each arrival adds at most one (an event
    # popped pushes at most one), so the heap never grows
    hcap = 2 * M + (i1 - i0) + 1
    ht = np.empty(hcap, dtype=np.float64)
    hk = np.empty(hcap, dtype=np.int64)
    hn = 0
    seq = 0
    nstop = 0
    m = len(acc)

    # replicas in (free time, id) order: busy ones get their completion event
    order = np.arange(M)
    for a in range(1, M):
        s = order[a]
        b = a
        while b > 0 and (fa[order[b - 1]] > fa[s]
                         or (fa[order[b - 1]] == fa[s] and order[b - 1] > s)):
            order[b] = order[b - 1]
            b -= 1
        order[b] = s
    for a in range(M):
        s = order[a]
        f = fa[s]
        if f > t0:
            busy[s] = True
            hn = _heap_push(ht, hk, hn, f, (seq << 21) | (s << 1) | _COMPLETE)
            seq += 1
        elif draining[s] and ql[s] == 0 and math.isnan(stop_t[s]):
            stop_t[s] = t0
            stop_order[nstop] = s
            nstop += 1

    # outstanding(s) = len(rq[s]) + (nserv[s] if busy[s] else 0), kept up to date
    out = np.zeros(nq, dtype=np.int64)
    for s in range(M):
        out[s] = ql[s] + (nserv[s] if busy[s] else 0)
    phase = 0  # 0: expire at t0, 1: route the buffer, 2: kick idle slots, 3: event loop
    nbuf = 0  # requests of the router buffer left to route at t0
    jb = 0
    ks = 0
    p = lo  # timeouts: the next request index to look at
    i = i0
    ta = arr[i] if i < i1 else inf
    while True:
        # ---- what happens next, at time t
        idx = -1
        s = -1
        if phase == 3:
            if hn > 0 and ht[0] < T and (i >= i1 or ht[0] <= ta):
                act = _EVENT
                t = ht[0]
            elif i < i1:
                act = _ARRIVE
                t = ta
            else:
                act = _END
                t = T
        elif phase == 0:
            act = _START
            t = t0
            phase = 1
        elif phase == 1:
            if nbuf == 0:
                phase = 2
                continue
            act = _FLUSH
            t = t0
            idx = jb
            jb = nxt[jb - lo]
            nbuf -= 1
            ql[M] -= 1
        else:
            if ks == M:
                phase = 3
                continue
            act = _KICK
            t = t0
            s = ks
            ks += 1
            if busy[s]:
                continue
        # ---- expire(t): queued requests (index < i) that waited longer than tmo by t
        if use_tmo and (act == _START or act == _EVENT or act == _ARRIVE or act == _END):
            while p < i:
                a = arr[p]
                if a + tmo >= t:
                    break
                sq = wq[p - lo]
                if sq >= 0:
                    wq[p - lo] = -1
                    qh[sq] = nxt[qh[sq] - lo]  # q.popleft(): the head (p: queues are FIFO)
                    ql[sq] -= 1
                    out[sq] -= 1
                    drop[p] = DROP_TIMEOUT
                    end_s[p] = a + tmo
                p += 1
        if act == _END:
            break
        if act == _START:  # the router buffer left after expiring is routed if one accepts
            nbuf = ql[M] if m > 0 else 0
            jb = qh[M]
            continue
        if act == _EVENT:
            key = hk[0]
            # pop the root
            hn -= 1
            if hn > 0:
                ht[0] = ht[hn]
                hk[0] = hk[hn]
                _sift_down(ht, hk, hn, 0)
            s = (key >> 1) & 0xFFFFF
            if key & 1 == _COMPLETE:
                if fa[s] != t or not busy[s]:
                    continue
                busy[s] = False
                out[s] -= nserv[s]
                nserv[s] = 0
                if draining[s] and ql[s] == 0:
                    stop_t[s] = t
                    stop_order[nstop] = s
                    nstop += 1
                    continue
            else:
                dl[s] = np.nan  # deadline_at.pop(r)
                if busy[s]:
                    continue
        elif act == _ARRIVE or act == _FLUSH:
            if act == _ARRIVE:
                idx = i
                i += 1
                ta = arr[i] if i < i1 else inf
            # ---- route(idx)
            if m == 0:
                s = M
            elif m == 1:
                s = acc[0]
            elif policy == 0:  # round_robin
                s = acc[rr % m]
                rr += 1
            elif policy == 1:  # least_outstanding (ties: the lowest id)
                s = acc[0]
                bo = out[s]
                for j in range(m):
                    sj = acc[j]
                    o = out[sj]
                    if o < bo:
                        s = sj
                        bo = o
            elif policy == 2:  # power_of_two (ties: the first drawn)
                j1 = min(int(ru[idx, 0] * m), m - 1)
                j2 = min(int(ru[idx, 1] * (m - 1)), m - 2)
                if j2 >= j1:
                    j2 += 1
                s1 = acc[j1]
                s2 = acc[j2]
                s = s2 if out[s2] < out[s1] else s1
            else:
                if policy == 4:  # join_idle_queue: the lowest idle one, else random
                    for j in range(m):
                        sj = acc[j]
                        if out[sj] == 0:
                            s = sj
                            break
                if s < 0:  # random
                    s = acc[min(int(ru[idx, 0] * m), m - 1)]
            if act == _ARRIVE and cap >= 0 and ql[s] >= cap:
                drop[idx] = DROP_QUEUE_FULL
                end_s[idx] = t
                continue
            # ---- enqueue(idx, s)
            nxt[idx - lo] = -1
            if ql[s] == 0:
                qh[s] = idx
            else:
                nxt[qt[s] - lo] = idx
            qt[s] = idx
            ql[s] += 1
            out[s] += 1
            if use_tmo:
                wq[idx - lo] = s
            if act == _FLUSH or s == M or busy[s]:
                continue
        # ---- try_start(s, t)
        k = ql[s]
        if k == 0:
            continue
        h = qh[s]
        if k < maxb and arr[h] + maxw > t:
            # schedule_deadline(s, arrival of the head + maxw)
            et = arr[h] + maxw
            if dl[s] == et:
                continue
            dl[s] = et
            key = (seq << 21) | (s << 1) | _DEADLINE
        else:
            # start_batch(s, t)
            if k > maxb:
                k = maxb
            et = t + offsets[s, k] + factors[s, k] * units[ucol[s], uoff + h]
            n_c = glen[s]
            if n_c > 0:  # _idle_overhead(t - fa[s]): fa is the end of its previous batch
                x = t - fa[s]
                if x <= gaps[s, 0]:
                    et += over[s, 0]
                else:
                    b_lo = 0
                    b_hi = n_c
                    while b_lo < b_hi:  # bisect_right(gaps, x)
                        mid = (b_lo + b_hi) // 2
                        if x < gaps[s, mid]:
                            b_hi = mid
                        else:
                            b_lo = mid + 1
                    if b_lo >= n_c:
                        et += over[s, n_c - 1]
                    else:
                        g0 = gaps[s, b_lo - 1]
                        et += over[s, b_lo - 1] + (over[s, b_lo] - over[s, b_lo - 1]) * (
                            x - g0) / (gaps[s, b_lo] - g0)
            r = rids[s]
            if len(busy_s):
                add_batch_busy(busy_s, t, et, k)
            j = h
            for _ in range(k):
                start_s[j] = t
                end_s[j] = et
                batch_size[j] = k
                replica[j] = r
                if use_tmo:
                    wq[j - lo] = -1
                j = nxt[j - lo]
            qh[s] = j
            ql[s] -= k
            fa[s] = et
            nserv[s] = k
            busy[s] = True
            out[s] = ql[s] + k
            key = (seq << 21) | (s << 1) | _COMPLETE
        # ---- heappush((et, seq, kind, s))
        seq += 1
        hn = _heap_push(ht, hk, hn, et, key)

    total = 0
    for s in range(nq):
        total += ql[s]
    qout = np.empty(total, dtype=np.int64)
    pos = 0
    for s in range(nq):
        j = qh[s]
        for _ in range(ql[s]):
            qout[pos] = j
            pos += 1
            j = nxt[j - lo]
        qcnt[s] = ql[s]
    return qout, rr, nstop


# ---------------------------------------------------------------------------- the adapter
def supports(plane) -> bool:
    """Whether :func:`advance_routed_compiled` can advance ``plane``: a per-replica-queue
    routing policy of :mod:`simscale.simulator.serving` (exactly its class, not a subclass)."""
    return type(plane.policy) in POLICY_CODES


#: plane -> (key, arrays): the per-slot service arrays, rebuilt when a replica joins or leaves,
#: is resized, or the batching limit changes (the key holds the factor, offset and idle-curve
#: objects themselves, compared by identity: ``set_factors`` always stores new ones)
_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _layout(plane, ids: list[int]) -> tuple:
    fac, off, idle, col = plane.factors, plane.offsets, plane.idle, plane._col
    head = (plane.max_batch_size, tuple(ids),
            tuple(col.get(r, 0) for r in ids) if col else ())
    objs = [o for r in ids for o in (fac[r], off[r], idle.get(r))]
    hit = _LAYOUTS.get(plane)
    if hit is not None and hit[0] == head and all(
            a is b for a, b in zip(hit[1], objs, strict=True)):
        return hit[2]
    M = len(ids)
    rows = max(M, 1)
    width = max([plane.max_batch_size + 1, *(len(fac[r]) for r in ids)])
    factors = np.full((rows, width), np.nan)
    offsets = np.full((rows, width), np.nan)
    glen = np.zeros(rows, dtype=np.int64)
    g = max([1, *(len(idle[r][0]) for r in ids if r in idle)])
    gaps = np.zeros((rows, g))
    over = np.zeros((rows, g))
    for s, r in enumerate(ids):
        factors[s, :len(fac[r])] = fac[r]
        offsets[s, :len(off[r])] = off[r]
        c = idle.get(r)
        if c is not None:
            glen[s] = len(c[0])
            gaps[s, :glen[s]] = c[0]
            over[s, :glen[s]] = c[1]
    rids = np.asarray(ids if ids else [0], dtype=np.int64)
    ucol = np.asarray([col.get(r, 0) for r in ids] if ids else [0], dtype=np.int64)
    arrays = (rids, factors, offsets, gaps, over, glen, ucol)
    _LAYOUTS[plane] = (head, objs, arrays)
    return arrays


_NO_U = np.zeros((1, 2))


def advance_routed_compiled(plane, T: float) -> None:
    """Advance ``plane`` (a :class:`~simscale.simulator.requestplane.RequestPlane` with a
    per-replica-queue policy, see :func:`supports`) to ``T`` (s) with :func:`advance_routed`,
    leaving it exactly as ``plane._advance_general(T)`` does: the per-request results, ``next_i``,
    ``free_at``, ``nserv``, ``stopped`` (new entries in the same order), the per-replica queues
    ``rq`` and the router buffer ``queue`` (the same deque objects, refilled) and the
    round-robin pointer. Like ``_advance_general`` it does not set ``plane.now``."""
    code = POLICY_CODES.get(type(plane.policy))
    if code is None:
        raise ValueError(f"routing {plane.routing!r} has no compiled loop")
    fa = plane.free_at
    ids = sorted(fa)
    M = len(ids)
    i0 = plane.next_i
    i1 = int(np.searchsorted(plane.arrival_s, T, side="left"))
    plane.next_i = i1
    rids, factors, offsets, gaps, over, glen, ucol = _layout(plane, ids)
    slot = {r: s for s, r in enumerate(ids)}
    acc = np.array([slot[r] for r in plane.accepting], dtype=np.int64)
    dr = plane.draining
    draining = np.array([r in dr for r in ids] or [False], dtype=np.bool_)
    fa_a = np.array([fa[r] for r in ids] or [0.0], dtype=np.float64)
    ns = plane.nserv
    nserv = np.array([ns[r] for r in ids] or [0], dtype=np.int64)
    st = plane.stopped
    stop_t = np.array([st.get(r, math.nan) for r in ids] or [math.nan], dtype=np.float64)
    stop_order = np.zeros(2 * M + 1, dtype=np.int64)
    rq = plane.rq
    queues = [rq[r] for r in ids]
    queues.append(plane.queue)
    qcnt = np.array([len(q) for q in queues], dtype=np.int64)
    nin = int(qcnt.sum())
    qin = np.fromiter(chain.from_iterable(queues), dtype=np.int64, count=nin) if nin else \
        np.zeros(1, dtype=np.int64)
    ru = plane.route_u
    if ru is None:
        ru = _NO_U
    else:
        ru = np.ascontiguousarray(ru, dtype=np.float64)
        if ru.ndim == 1:
            ru = ru.reshape(-1, 1)
    rr = int(getattr(plane.policy, "_next", 0))
    tmo = plane.timeout_s
    cap = plane.capacity
    qout, rr, nstop = advance_routed(
        plane.arrival_s, plane._inputs[1], plane.base - plane._in_base, ucol, ru,
        plane.start_s, plane.end_s, plane.batch_size, plane.replica, plane.drop, plane.busy_s,
        qin, qcnt, M,
        rids, acc, draining, fa_a, nserv, stop_t, stop_order, factors, offsets, gaps, over, glen,
        code, rr, int(plane.max_batch_size), float(plane.max_wait_s),
        -1 if cap is None else int(cap), tmo is not None, 0.0 if tmo is None else float(tmo),
        float(plane.now), int(i0), i1, float(T))
    if code == 0:
        plane.policy._next = int(rr)
    for r, f, k in zip(ids, fa_a.tolist(), nserv.tolist(), strict=False):
        if f != fa[r]:
            fa[r] = f
        if k != ns[r]:
            ns[r] = k
    for s in stop_order[:nstop].tolist():
        st[ids[s]] = float(stop_t[s])
    cnt = qcnt.tolist()
    pos = 0
    out = qout.tolist() if len(qout) else []
    for q, c in zip(queues, cnt, strict=True):
        if q or c:
            q.clear()
            q.extend(out[pos:pos + c])
            pos += c


def warm_up() -> tuple[float, bool]:
    """Compile (or load from the cache) :func:`advance_routed` on a tiny input.

    Returns ``(seconds, compiled)``: the wall time it took and whether numba had to compile
    (``False``: loaded from its on-disk cache)."""
    from simscale.simulator.requestplane import RequestPlane

    t0 = time.perf_counter()
    pl = RequestPlane(np.array([0.0, 0.5]), np.ones(2), routing="least_outstanding",
                      kernels="python")
    pl.add_replica(0, 0.0, [1.0, 1.0])
    advance_routed_compiled(pl, 10.0)
    compiled = bool(advance_routed.stats.cache_misses)
    return time.perf_counter() - t0, compiled
