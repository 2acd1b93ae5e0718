"""Mergeable summaries of a run's latencies: exact below a size, a log-bucketed sketch above.

:class:`LatencySummary` keeps every value it is given while it holds at most
:data:`EXACT_LIMIT` of them; its percentiles are then numpy's linear ones over all values,
exactly as if the values had been kept in one array. Past that size it folds them into a
log-bucketed histogram (the scheme of DDSketch, Masson et al., VLDB 2019) and keeps only the
histogram, whose size does not grow with the number of values.

The sketch's guarantee, for positive values: bucket ``i`` holds the values in
``(gamma**(i-1), gamma**i]`` with ``gamma = (1 + a) / (1 - a)`` and reports them as
``2 * gamma**i / (gamma + 1)``, which is within a relative ``a`` = :data:`SKETCH_REL_ERROR` of
every value in the bucket. The ``q`` percentile is read as numpy's linear method reads it, from
the order statistics at ranks ``floor(h)`` and ``floor(h) + 1`` (``h = (n - 1) q / 100``) with
the same interpolation weight; each is within ``a`` of the true order statistic, and so is their
positive combination: **every percentile is within a relative 0.5% of the exact one**. Values
at or below :data:`MIN_VALUE` (zero latency) share one bucket reported as 0; values above
:data:`MAX_VALUE` are clamped to it (ten thousand seconds in milliseconds: no latency of a
serving simulation gets there). Counts, the mean and the maximum are exact either way.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["EXACT_LIMIT", "SKETCH_REL_ERROR", "LatencySummary"]

#: values kept exactly: up to this many, percentiles are numpy's over every value
EXACT_LIMIT = 4_000_000
#: relative error bound of every percentile read from the sketch
SKETCH_REL_ERROR = 0.005
MIN_VALUE = 1e-6
MAX_VALUE = 1e7
_GAMMA = (1.0 + SKETCH_REL_ERROR) / (1.0 - SKETCH_REL_ERROR)
_LOG_GAMMA = math.log(_GAMMA)
_I_MIN = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)  # bucket of MIN_VALUE
_I_MAX = math.ceil(math.log(MAX_VALUE) / _LOG_GAMMA)
#: bucket 0 holds values <= MIN_VALUE; bucket k >= 1 is index _I_MIN + k - 1
_N_BUCKETS = _I_MAX - _I_MIN + 2


def _bucket_values() -> np.ndarray:
    i = np.arange(_I_MIN, _I_MAX + 1, dtype=np.float64)
    return np.concatenate([[0.0], 2.0 * np.exp(i * _LOG_GAMMA) / (_GAMMA + 1.0)])


_VALUES = _bucket_values()


class LatencySummary:
    """Count, sum, maximum and percentiles of a stream of non-negative values (ms), mergeable.

    :meth:`add` takes values in any order and any chunks; :meth:`stats` gives the same figures
    as numpy over the concatenation while at most :data:`EXACT_LIMIT` values were added
    (``exact`` is then true), and the sketch's figures (see the module docstring) after."""

    def __init__(self, exact_limit: int = EXACT_LIMIT) -> None:
        self.exact_limit = int(exact_limit)
        self.n = 0
        self.total = 0.0
        self.max = -math.inf
        self._parts: list[np.ndarray] = []
        self._counts: np.ndarray | None = None  # the sketch, once past the exact limit

    @property
    def exact(self) -> bool:
        """Whether every value is still kept (percentiles exact)."""
        return self._counts is None

    @property
    def rel_error(self) -> float:
        """Bound on the relative error of every percentile: 0 while exact."""
        return 0.0 if self.exact else SKETCH_REL_ERROR

    def add(self, values: np.ndarray) -> None:
        """Add ``values`` (a copy is kept while exact; the caller may reuse its array)."""
        if len(values) == 0:
            return
        self.n += len(values)
        self.total += float(np.sum(values))
        self.max = max(self.max, float(values.max()))
        if self._counts is None:
            self._parts.append(np.array(values, dtype=np.float64))
            if self.n > self.exact_limit:
                self._to_sketch()
        else:
            self._counts += _histogram(values)

    def merge(self, other: LatencySummary) -> None:
        """Add everything ``other`` holds (exact stays exact while the total fits)."""
        if other.n == 0:
            return
        if other._counts is None:
            for p in other._parts:
                self.add(p)
            return
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)
        if self._counts is None:
            self._to_sketch()
        self._counts += other._counts

    def _to_sketch(self) -> None:
        counts = np.zeros(_N_BUCKETS, dtype=np.int64)
        for p in self._parts:
            counts += _histogram(p)
        self._parts = []
        self._counts = counts

    def values(self) -> np.ndarray:
        """Every value, in the order added (only while exact)."""
        if self._counts is not None:
            raise ValueError("the values were folded into the sketch")
        if len(self._parts) == 1:
            return self._parts[0]
        return np.concatenate(self._parts) if self._parts else np.zeros(0)

    def percentiles(self, qs: tuple[float, ...]) -> list[float]:
        """The ``qs`` percentiles (0..100), numpy's linear method (see the module docstring)."""
        from simscale.simulator.observations import percentiles_linear

        if self.n == 0:
            return [math.nan] * len(qs)
        if self._counts is None:
            return percentiles_linear(self.values(), qs)
        cum = np.cumsum(self._counts)
        out = []
        for q in qs:
            h = (self.n - 1) * q / 100.0
            lo = math.floor(h)
            hi = min(lo + 1, self.n - 1)
            v_lo, v_hi = (float(_VALUES[np.searchsorted(cum, r, side="right")])
                          for r in (lo, hi))
            out.append(v_lo + (h - lo) * (v_hi - v_lo))
        return out

    def stats(self, with_max: bool) -> dict[str, float]:
        """``mean``, ``p50``, ``p95``, ``p99`` (and ``max``); NaN when empty. While exact, the
        very numbers numpy gives over all values (the mean too)."""
        keys = ["mean", "p50", "p95", "p99"] + (["max"] if with_max else [])
        if self.n == 0:
            return {k: math.nan for k in keys}
        if self._counts is None:
            v = self.values()
            mean = float(v.mean())
        else:
            mean = self.total / self.n
        p50, p95, p99 = self.percentiles((50, 95, 99))
        out = {"mean": mean, "p50": p50, "p95": p95, "p99": p99}
        if with_max:
            out["max"] = self.max
        return out


def _histogram(values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` per bucket of the sketch."""
    v = np.clip(values, MIN_VALUE, MAX_VALUE)
    np.log(v, out=v)  # (in place: the floats of ceil(log(v) * (1 / log gamma)), fewer pages)
    v *= 1.0 / _LOG_GAMMA
    np.ceil(v, out=v)
    idx = v.astype(np.int64)
    idx -= _I_MIN - 1
    # a value within float rounding of a bucket edge may land in the neighbouring bucket,
    # whose representative is then within a (plus a few ulps) of it
    idx[values <= MIN_VALUE] = 0
    np.clip(idx, 0, _N_BUCKETS - 1, out=idx)
    return np.bincount(idx, minlength=_N_BUCKETS)
