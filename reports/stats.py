"""Small statistics used by the report: replication bands, downsampling, quantile curves."""

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
    work = frame[[*keys, "time_s", *values, *set(weights.values())]].copy()
    work["time_s"] = np.floor(work["time_s"].to_numpy(dtype=float) / window_s) * window_s
    for value, weight in weights.items():
        w = work[weight].to_numpy(dtype=float)
        v = work[value].to_numpy(dtype=float)
        ok = ~np.isnan(v) & ~np.isnan(w)
        work[f"__w_{value}"] = np.where(ok, w, 0.0)
        work[f"__wv_{value}"] = np.where(ok, w * np.nan_to_num(v), 0.0)
    grouped = work.groupby([*keys, "time_s"], sort=True, observed=True)
    out = grouped[list(values)].mean()
    for value in weights:
        wsum = grouped[f"__w_{value}"].sum()
        weighted = grouped[f"__wv_{value}"].sum() / wsum.where(wsum > 0)
        out[value] = weighted.fillna(out[value])
    return out.reset_index()


def replication_band(
    frame: pd.DataFrame,
    value: str,
    *,
    keys: Sequence[str] = ("label",),
    floor: float | None = None,
) -> pd.DataFrame:
    """Mean of ``value`` over replications, per ``keys`` and ``time_s``, with a 95% band.

    Returns columns ``*keys, time_s, mean, lo, hi, n``; ``lo``/``hi`` are NaN where fewer than
    two replications have a value. ``floor`` clips the band from below (e.g. 0 for counts,
    which cannot be negative even when a t-interval over few replications reaches below 0).
    """
    grouped = frame.groupby([*keys, "time_s"], sort=True, observed=True)[value]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    half = t_halfwidth(out["std"], out["n"])
    out["lo"] = out["mean"] - half
    out["hi"] = out["mean"] + half
    if floor is not None:
        out["lo"] = out["lo"].clip(lower=floor)
        out["hi"] = out["hi"].clip(lower=floor)
    return out.drop(columns="std")


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
