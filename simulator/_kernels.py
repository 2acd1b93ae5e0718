"""Compiled loops of the request plane (numba, cached on disk).

Each kernel is a line-by-line port of a loop of :class:`~simscale.simulator.requestplane.
RequestPlane`, which stays the executable specification: the same events in the same order and
the same floating-point operations in the same order, so results are identical request by
request (``tests/test_kernels.py`` checks it on randomized scenarios). The kernels write the
per-request results straight into the plane's arrays.

State passed in and out as arrays (``m`` = number of accepting replicas, in ascending replica
id, so slot order is replica-id order):

- the shared queue: a ring buffer ``qbuf`` (power-of-two length) of request indices, ``qhead``
  and ``qlen``; a kernel that needs more room returns a larger buffer;
- a binary heap of ``(free time s, slot)`` pairs over the accepting replicas, ordered like
  Python's tuples (ties: the lower slot, i.e. the lower replica id);
- per slot: service ``factors[s, b]`` and ``offsets[s, b]`` for a batch of ``b``, an idle
  curve ``gaps[s, :glen[s]]`` / ``over[s, :glen[s]]`` (``glen[s] == 0``: none), the replica id
  and its noise column ``ucol[s]``: request ``h``'s draw for it is ``units[ucol[s], uoff + h]``
  (``units`` holds one row per replica size in use, ``uoff`` the offset of the plane's window
  in it).

numba compiles on first use (a few seconds, measured by :func:`warm_up`) and caches the machine
code next to this file or in numba's user cache, so later processes load it in milliseconds.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

DROP_QUEUE_FULL, DROP_TIMEOUT = 1, 2


@njit(cache=True, nogil=True)
def _idle_overhead(idle_s: float, gaps: np.ndarray, over: np.ndarray, n: int) -> float:
    """Port of ``requestplane._idle_overhead`` (same operations, same order)."""
    if idle_s <= gaps[0]:
        return over[0]
    j = np.searchsorted(gaps[:n], idle_s, side="right")
    if j >= n:
        return over[n - 1]
    g0 = gaps[j - 1]
    return over[j - 1] + (over[j] - over[j - 1]) * (idle_s - g0) / (gaps[j] - g0)


@njit(cache=True, nogil=True)
def _sift_down(hf: np.ndarray, hs: np.ndarray, m: int, pos: int) -> None:
    """Restore the heap order below ``pos`` (keys ``(hf, hs)`` compared lexicographically)."""
    f = hf[pos]
    s = hs[pos]
    while True:
        c = 2 * pos + 1
        if c >= m:
            break
        c2 = c + 1
        if c2 < m and (hf[c2] < hf[c] or (hf[c2] == hf[c] and hs[c2] < hs[c])):
            c = c2
        if hf[c] < f or (hf[c] == f and hs[c] < s):
            hf[pos] = hf[c]
            hs[pos] = hs[c]
            pos = c
        else:
            break
    hf[pos] = f
    hs[pos] = s


@njit(cache=True, nogil=True)
def heapify(hf: np.ndarray, hs: np.ndarray, m: int) -> None:
    """Order ``(hf, hs)`` as a binary min-heap of ``m`` entries."""
    for pos in range(m // 2 - 1, -1, -1):
        _sift_down(hf, hs, m, pos)


@njit(cache=True, nogil=True)
def add_batch_busy(busy: np.ndarray, s: float, e: float, k: int) -> None:
    """Port of ``requestplane.add_busy`` for the ``k`` requests of a batch in service over
    ``[s, e)``: each request's piece of each second, ``(min(e, j + 1) - s) * (1 / k)`` and
    then from each whole second on, added request after request (here: each piece ``k``
    times, which adds the same floats to each second in the same order)."""
    n = len(busy)
    w = 1.0 / k
    j = int(s)
    while j < n:
        cut = j + 1.0
        v = ((e if e < cut else cut) - s) * w
        for _ in range(k):
            busy[j] += v
        if not e > cut:
            return
        s = cut
        j += 1


@njit(cache=True, nogil=True)
def _grow(qbuf: np.ndarray, qhead: int, qlen: int) -> np.ndarray:
    """A ring buffer twice as long holding the same queue, starting at index 0."""
    n = len(qbuf)
    out = np.empty(2 * n, dtype=np.int64)
    mask = n - 1
    for j in range(qlen):
        out[j] = qbuf[(qhead + j) & mask]
    return out


@njit(cache=True, nogil=True)
def advance_shared(arr, units, uoff, ucol, start_s, end_s, batch_size, replica,  # noqa: C901
                   drop, busy, qbuf, qhead, qlen, hf, hs, m, rids, factors, offsets, gaps, over,
                   glen, nserv, maxb, maxw, cap, use_tmo, tmo, t0, i0, i1, T):
    """Port of ``RequestPlane._advance_shared``: one shared FIFO queue with batching, queue
    capacity (``cap < 0``: none) and timeouts, two kinds of event (the next arrival, the next
    batch start). Arrivals ``i0 <= i < i1`` are processed; batches start while their start is
    before ``T``. ``nserv[s]`` is set to the size of each batch slot ``s`` starts; each batch's
    busy time goes to ``busy`` (per second; empty: not kept) as it starts.

    Returns ``(qbuf, qhead, qlen)``: the queue left for the next segment."""
    inf = np.inf
    mask = len(qbuf) - 1
    i = i0
    ta = arr[i] if i < i1 else inf
    f = 0.0
    s = 0
    while True:
        if qlen > 0 and m > 0:
            f = hf[0]
            s = hs[0]
            if qlen >= maxb:
                tb = arr[qbuf[(qhead + maxb - 1) & mask]]
            else:
                tb = arr[qbuf[qhead]] + maxw
            if f > tb:
                tb = f
            if tb < t0:
                tb = t0
        else:
            tb = inf
        t = tb if tb <= ta else ta
        if use_tmo and qlen > 0:
            h = qbuf[qhead]
            a_h = arr[h]
            if a_h + tmo < (t if t < T else T):
                qhead = (qhead + 1) & mask
                qlen -= 1
                drop[h] = DROP_TIMEOUT
                end_s[h] = a_h + tmo
                continue
        if t >= T:
            break
        if tb <= ta:
            k = qlen
            if k > maxb:
                k = maxb
            h = qbuf[qhead]
            e = tb + offsets[s, k] + factors[s, k] * units[ucol[s], uoff + h]
            if glen[s] > 0:
                e += _idle_overhead(tb - f, gaps[s], over[s], glen[s])
            r = rids[s]
            if len(busy):
                add_batch_busy(busy, tb, e, k)
            for _ in range(k):
                j = qbuf[qhead]
                qhead = (qhead + 1) & mask
                start_s[j] = tb
                end_s[j] = e
                batch_size[j] = k
                replica[j] = r
            qlen -= k
            hf[0] = e
            _sift_down(hf, hs, m, 0)
            nserv[s] = k
        else:
            if cap >= 0 and qlen >= cap:
                drop[i] = DROP_QUEUE_FULL
                end_s[i] = ta
            else:
                if qlen == len(qbuf):
                    qbuf = _grow(qbuf, qhead, qlen)
                    qhead = 0
                    mask = len(qbuf) - 1
                qbuf[(qhead + qlen) & mask] = i
                qlen += 1
            i += 1
            ta = arr[i] if i < i1 else inf
    return qbuf, qhead, qlen


@njit(cache=True, nogil=True)
def advance_fifo1(arr, units, uoff, ucol, start_s, end_s, batch_size, replica,
                  drop, busy, qbuf, qhead, qlen, hf, hs, m, rids, factors, offsets, gaps, over,
                  glen, nserv, maxb, maxw, cap, use_tmo, tmo, t0, i0, i1, T):
    """:func:`advance_shared` where no request can leave the queue but to start (batches of
    one, no capacity, no timeout; the arguments those need are ignored): requests start in
    arrival order, each at ``max(its arrival, the earliest free replica, t0)``, the queue left
    over first and then arrivals ``i0 <= i < i1``, while the start is before ``T``; the rest
    are queued. The same floating-point operations as :func:`advance_shared` on the same
    requests, without its event loop (a request's start does not depend on later arrivals
    here), so the results are identical; about twice as fast on M/M/c."""
    mask = len(qbuf) - 1
    i = i0
    while m > 0:
        if qlen > 0:
            h = qbuf[qhead]
        elif i < i1:
            h = i
        else:
            break
        f = hf[0]
        s = hs[0]
        tb = arr[h]
        if f > tb:
            tb = f
        if tb < t0:
            tb = t0
        if tb >= T:
            break
        e = tb + offsets[s, 1] + factors[s, 1] * units[ucol[s], uoff + h]
        if glen[s] > 0:
            e += _idle_overhead(tb - f, gaps[s], over[s], glen[s])
        if len(busy):
            add_batch_busy(busy, tb, e, 1)
        start_s[h] = tb
        end_s[h] = e
        batch_size[h] = 1
        replica[h] = rids[s]
        if qlen > 0:
            qhead = (qhead + 1) & mask
            qlen -= 1
        else:
            i += 1
        hf[0] = e
        _sift_down(hf, hs, m, 0)
        nserv[s] = 1
    # the arrivals before T that did not start are queued
    while len(qbuf) < qlen + i1 - i:
        qbuf = _grow(qbuf, qhead, qlen)
        qhead = 0
    mask = len(qbuf) - 1
    for j in range(i, i1):
        qbuf[(qhead + qlen) & mask] = j
        qlen += 1
    return qbuf, qhead, qlen


def warm_up() -> tuple[float, bool]:
    """Compile (or load from the cache) every kernel on a tiny input.

    Returns ``(seconds, compiled)``: the wall time it took and whether numba had to compile
    (``False``: loaded from its on-disk cache)."""
    t0 = time.perf_counter()
    arr = np.array([0.0, 0.5])
    f64 = np.full(2, np.nan)
    i32 = np.zeros(2, dtype=np.int32)
    hf = np.zeros(1)
    hs = np.zeros(1, dtype=np.int64)
    heapify(hf, hs, 1)
    args = (arr, np.ones((1, 2)), 0, np.zeros(1, np.int64), f64, f64.copy(), i32, i32.copy(),
            np.zeros(2, np.int8), np.zeros(2), np.zeros(4, np.int64), 0, 0, hf, hs, 1,
            np.zeros(1, np.int64), np.ones((1, 2)), np.zeros((1, 2)), np.zeros((1, 1)),
            np.zeros((1, 1)), np.zeros(1, np.int64), np.zeros(1, np.int64), 1, 0.0, -1, False,
            0.0, 0.0, 0, 2, 10.0)
    advance_shared(*args)
    advance_fifo1(*args)
    compiled = any(d.stats.cache_misses for d in (advance_shared, advance_fifo1, heapify))
    return time.perf_counter() - t0, compiled
