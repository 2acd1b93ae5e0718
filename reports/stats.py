"""Small statistics used by the report: replication bands, downsampling, quantile curves.

The grouped means take DataFrames and return DataFrames, but group with numpy
(:func:`group_rows`): a pandas ``groupby`` per curve cost more than the rest of a small
report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Most points a time-series curve gets in a report (longer series are averaged in windows).
MAX_TIME_POINTS = 600
#: Most points of one latency CDF curve.
MAX_CDF_POINTS = 500


def t_halfwidth(std: pd.Series | np.ndarray, n: pd.Series | np.ndarray) -> np.ndarray:
    """Half-width of the 95% t-interval of a mean: ``t(0.975, n-1) * std / sqrt(n)``.

    NaN where ``n < 2`` (no interval from a single replication).
    """
    n_arr = np.asarray(n, dtype=float)
    std_arr = np.asarray(std, dtype=float)
    if not (n_arr >= 2).any():  # no interval: scipy.stats is not needed (NaN either way)
        return np.full(np.broadcast(std_arr, n_arr).shape, np.nan)
    from scipy import stats as _st

    with np.errstate(invalid="ignore", divide="ignore"):
        tq = np.where(n_arr >= 2, _st.t.ppf(0.975, np.maximum(n_arr - 1, 1)), np.nan)
        return tq * std_arr / np.sqrt(n_arr)


def mean_ci(values: Sequence[float] | np.ndarray | pd.Series) -> tuple[float, float]:
    """Mean and 95% t half-width of ``values`` (NaNs ignored; half-width NaN when n < 2)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    if arr.size == 1:
        return float(arr[0]), math.nan
    half = t_halfwidth(np.array([arr.std(ddof=1)]), np.array([arr.size]))[0]
    return float(arr.mean()), float(half)


def window_for(n_bins: int, *, max_points: int = MAX_TIME_POINTS, bin_s: float = 1.0) -> float:
    """Window length (s) that brings ``n_bins`` bins of ``bin_s`` down to ``max_points``."""
    return bin_s * max(1, math.ceil(n_bins / max(1, max_points)))


def group_rows(
    frame: pd.DataFrame, columns: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Group the rows of ``frame`` by ``columns``, as ``groupby(columns, sort=True)`` does.

    Returns the group of each row (``-1`` for a row with a NaN key, which belongs to no
    group), each key column's value per group (groups in sorted key order) and the number
    of groups.
    """
    codes, levels = [], []
    for col in columns:  # factorize hashes, on the column as stored (arrow strings stay so)
        code, level = pd.factorize(frame[col], sort=True)
        codes.append(code)
        levels.append(np.asarray(level))
    keep = np.ones(len(frame), dtype=bool)
    for code in codes:
        keep &= code >= 0  # a NaN key: the row belongs to no group (pandas drops it)
    dims = [max(len(level), 1) for level in levels]
    flat = np.ravel_multi_index([code[keep] for code in codes], dims)
    size = math.prod(dims)
    if size <= 4 * len(flat) + 65536:  # the usual case: number the occupied cells
        groups = np.flatnonzero(np.bincount(flat, minlength=size))
        number = np.full(size, -1, dtype=np.intp)
        number[groups] = np.arange(len(groups))
        kept_group = number[flat]
    else:  # sparse keys (many values of each): sort the occupied cells
        kept_group, groups = pd.factorize(flat, sort=True)
    row_group = np.full(len(frame), -1, dtype=np.intp)
    row_group[keep] = kept_group
    keys = {col: level[idx] for col, level, idx in
            zip(columns, levels, np.unravel_index(groups, dims), strict=True)}
    return row_group, keys, len(groups)


def _group_sums(row_group: np.ndarray, n: int, values: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the number of non-NaN ``values`` and their sum."""
    ok = (row_group >= 0) & ~np.isnan(values)
    count = np.bincount(row_group[ok], minlength=n).astype(float)
    total = np.bincount(row_group[ok], weights=values[ok], minlength=n)
    return count, total


def downsample(
    frame: pd.DataFrame,
    values: Sequence[str],
    *,
    window_s: float,
    keys: Sequence[str] = ("label", "replication"),
    weights: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Average ``values`` of ``frame`` over windows of ``window_s`` seconds, per ``keys``.

    ``time_s`` of the result is the window start. NaNs are ignored. ``weights`` maps a value
    column to a weight column (e.g. ``latency_p95_ms`` weighted by ``throughput_rps``).
    With ``window_s`` <= the bin width the frame is returned unchanged (columns selected).
    """
    cols = [*keys, "time_s", *values]
    weights = {v: w for v, w in (weights or {}).items() if w in frame.columns and v in values}
    times = frame["time_s"].to_numpy(dtype=float)
    bin_s = float(np.min(np.diff(np.unique(times)))) if len(np.unique(times)) > 1 else 1.0
    if window_s <= max(bin_s, 1.0):
        return frame[cols].reset_index(drop=True)
    work = frame[list(keys)].copy()
    work["time_s"] = np.floor(times / window_s) * window_s
    row_group, key_values, n = group_rows(work, [*keys, "time_s"])
    out = pd.DataFrame(key_values)
    with np.errstate(invalid="ignore", divide="ignore"):
        for value in values:
            v = frame[value].to_numpy(dtype=float)
            count, total = _group_sums(row_group, n, v)
            mean = total / np.where(count > 0, count, np.nan)
            if value in weights:  # the weighted mean where the weights sum above 0
                w = frame[weights[value]].to_numpy(dtype=float)
                ok = (row_group >= 0) & ~np.isnan(v) & ~np.isnan(w)
                wsum = np.bincount(row_group[ok], weights=w[ok], minlength=n)
                wv = np.bincount(row_group[ok], weights=(w * v)[ok], minlength=n)
                mean = np.where(wsum > 0, wv / np.where(wsum > 0, wsum, 1.0), mean)
            out[value] = mean
    return out


def replication_band(
    frame: pd.DataFrame,
    value: str,
    *,
    keys: Sequence[str] = ("label",),
    floor: float | None = None,
) -> pd.DataFrame:
    """Mean of ``value`` over replications, per ``keys`` and ``time_s``, with a 95% band.

    Returns columns ``*keys, time_s, mean, n, lo, hi``; ``lo``/``hi`` are NaN where fewer than
    two replications have a value. ``floor`` clips the band from below (e.g. 0 for counts,
    which cannot be negative even when a t-interval over few replications reaches below 0).
    """
    row_group, key_values, n_groups = group_rows(frame, [*keys, "time_s"])
    v = frame[value].to_numpy(dtype=float)
    n, total = _group_sums(row_group, n_groups, v)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / np.where(n > 0, n, np.nan)
        ok = (row_group >= 0) & ~np.isnan(v)
        squares = np.bincount(row_group[ok], weights=(v[ok] - mean[row_group[ok]]) ** 2,
                              minlength=n_groups)
        std = np.sqrt(squares / np.where(n > 1, n - 1, np.nan))
    half = t_halfwidth(std, n)
    lo, hi = mean - half, mean + half
    if floor is not None:
        lo, hi = np.maximum(lo, floor), np.maximum(hi, floor)
    out = pd.DataFrame(key_values)
    out["mean"] = mean
    out["n"] = n.astype(np.int64)
    out["lo"] = lo
    out["hi"] = hi
    return out


def cdf_probabilities(n_points: int = MAX_CDF_POINTS, n_samples: int | None = None) -> np.ndarray:
    """Probabilities at which to draw an empirical CDF: even steps to 0.99, then log-spaced
    steps into the tail, then 1 (the maximum); at most ``n_points`` values."""
    n_tail = max(2, n_points // 5)
    body = np.linspace(0.0, 0.99, n_points - n_tail, endpoint=False)
    smallest = 1.0 / n_samples if n_samples else 1e-5
    smallest = min(max(smallest, 1e-6), 0.01)
    tail = 1.0 - np.geomspace(0.01, smallest, n_tail - 1)
    return np.unique(np.clip(np.concatenate([body, tail, [1.0]]), 0.0, 1.0))


def pareto_front(cost: Sequence[float], quality: Sequence[float]) -> list[int]:
    """Indices of the points not dominated in (lower ``cost``, higher ``quality``), by cost.

    A point is dominated when another has cost <= and quality >= with one strict. NaN points
    are left out.
    """
    c = np.asarray(cost, dtype=float)
    q = np.asarray(quality, dtype=float)
    order = [i for i in np.lexsort((-q, c)) if not (np.isnan(c[i]) or np.isnan(q[i]))]
    front: list[int] = []
    best_q = -math.inf
    for i in order:
        if q[i] > best_q:
            front.append(int(i))
            best_q = q[i]
    return front
