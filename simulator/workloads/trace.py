"""The ``trace`` kind: replay a CSV of timestamps or of counts per interval.

- Trace time is measured in seconds **since the start of the trace**: the first timestamp (after
  converting ``time_unit`` to seconds), or the start of the first interval for count traces.
  ``start_s``/``end_s`` cut the half-open window ``[start_s, end_s)`` of trace time; the window
  is shifted to start at 0 and stretched by ``time_scale``: ``t_sim = (t_trace - start_s) *
  time_scale``. When the run is longer than the (scaled) window, the trace simply ends: no
  arrivals after it.
- ``timestamp_column``: one row per request; timestamps are sorted (silently) and replayed
  exactly. ``rate_scale < 1`` keeps each request independently with probability ``rate_scale``
  (binomial thinning). ``rate_scale = k + f > 1`` (``k`` integer, ``0 <= f < 1``) keeps every
  original request and adds ``k - 1`` full copies plus one copy thinned with probability ``f``;
  each copy of request ``i`` is placed uniformly at random in the gap ``[t_i, t_{i+1})`` to the
  next original request (the last request uses the gap before it), so the empirical rate is
  preserved at the resolution of inter-arrival gaps, copies never coincide with originals, and
  the mean count is ``rate_scale`` times the original. Copies that fall at or after ``end_s``
  are dropped. ``rate`` is the empirical rate: the replayed requests in each 1-second bin
  ``[k, k+1)`` of simulated time, times ``rate_scale``; ``expected`` is the number of trace
  requests that fall in the run, times ``rate_scale``.
- ``count_column`` + ``interval_s``: row ``i`` is the number of requests in trace time
  ``[i*interval_s, (i+1)*interval_s)``. Arrivals are a Poisson process with rate ``count *
  rate_scale / (interval_s * time_scale)`` within each (scaled) interval, i.e. the number in an
  interval is Poisson with mean ``count * rate_scale``, placed uniformly (counts may be
  fractional). A window boundary inside an interval keeps the matching fraction.
- Bad traces raise :class:`~simscale.errors.UserError` naming the file and the column (and the
  row, for bad values): missing or unreadable file, not a CSV, missing column, non-numeric,
  missing/NaN, infinite or negative values, and a window with no requests. Parsed columns are
  cached per (file, modification time, size, column); :func:`clear_cache` forgets them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import model_validator

from simscale.errors import UserError
from simscale.safeload import check_regular_file
from simscale.simulator.fields import NonNegFloat, PositiveFloat
from simscale.simulator.workloads.base import (
    RateFunction,
    WorkloadContext,
    WorkloadKind,
    register,
)
from simscale.simulator.workloads.pwl import Pwl, pwl_arrival_chunks, pwl_arrivals

__all__ = ["TraceWorkload", "clear_cache"]

_TIME_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


@register
class TraceWorkload(WorkloadKind):
    """Replay a CSV trace.

    Either ``timestamp_column`` (one row per request; those exact timestamps are replayed) or
    ``count_column`` with ``interval_s`` (requests per interval; Poisson arrivals at that rate
    within each interval). ``time_unit`` is the unit of timestamps; ``time_scale`` stretches time
    (2 = twice as slow), ``rate_scale`` multiplies the load (thinning or superposing);
    ``start_s``/``end_s`` cut a window of the trace (in trace seconds, before scaling), which is
    shifted to start at 0. ``path`` is relative to the scenario file.
    """

    kind: Literal["trace"]
    path: str
    timestamp_column: str | None = None
    count_column: str | None = None
    interval_s: PositiveFloat | None = None
    time_unit: Literal["s", "ms", "us"] = "s"
    time_scale: PositiveFloat = 1.0
    rate_scale: PositiveFloat = 1.0
    start_s: NonNegFloat | None = None
    end_s: NonNegFloat | None = None

    @model_validator(mode="after")
    def _columns(self) -> TraceWorkload:
        if (self.timestamp_column is None) == (self.count_column is None):
            raise ValueError("give exactly one of timestamp_column or count_column")
        if self.count_column is not None and self.interval_s is None:
            raise ValueError("count_column needs interval_s")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self

    def arrivals(self, duration_s: float, rng: np.random.Generator, ctx: WorkloadContext
                 ) -> np.ndarray:
        """The replayed (thinned or superposed) requests, or Poisson arrivals for counts."""
        return _trace_arrivals(self, duration_s, rng, ctx.base_dir)

    def arrival_chunks(self, duration_s: float, rng: np.random.Generator,
                       ctx: WorkloadContext, chunk: int) -> Iterator[np.ndarray]:
        """The same arrivals a chunk at a time; a count trace draws them a chunk at a time
        (:func:`pwl_arrival_chunks`), a timestamp trace hands out slices."""
        if self.count_column is not None:
            return pwl_arrival_chunks(_count_pwl(self, ctx.base_dir), duration_s, rng, chunk)
        return super().arrival_chunks(duration_s, rng, ctx, chunk)

    def rate(self, ctx: WorkloadContext) -> RateFunction:
        """The empirical rate (1-s bins) of a timestamp trace; the step rate of a count trace."""
        return _trace_rate(self, ctx.base_dir)

    def expected(self, duration_s: float, ctx: WorkloadContext) -> float:
        """Requests in the run times ``rate_scale``; the integral of the rate for counts."""
        return _trace_expected(self, duration_s, ctx.base_dir)

    def input_files(self) -> list[str]:
        """The CSV, as written in the scenario."""
        return [self.path]


def clear_cache() -> None:
    """Forget every parsed trace (they are otherwise kept per file, mtime, size and column)."""
    _read_column_cached.cache_clear()


@dataclass(frozen=True)
class _TraceWindow:
    """A timestamp trace cut to its window, in simulated seconds (before ``rate_scale``)."""

    times: np.ndarray  # sorted, >= 0
    end: float  # end of the window in simulated seconds (inf when open-ended)


def _resolve(path: str, base_dir: str | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def _read_column(w: TraceWorkload, base_dir: str | None, *, counts: bool) -> tuple[Path,
                                                                                     np.ndarray]:
    """The trace column as float64 (timestamps sorted, in file units), validated."""
    p = _resolve(w.path, base_dir)
    st = check_regular_file(p, what="trace", field="path")
    _check_parse_memory(p, st.st_size)
    column = w.count_column if counts else w.timestamp_column
    assert column is not None
    values = _read_column_cached(str(p.resolve()), st.st_mtime_ns, st.st_size, column, counts,
                                 str(p))
    return p, values


#: peak memory of parsing a CSV trace, as a multiple of its size on disk (pandas' parser and
#: the frame of every column; measured about 2x on numeric traces, with a margin)
PARSE_BYTES_PER_FILE_BYTE = 3.0


def _check_parse_memory(p: Path, size: int) -> None:
    """Refuse, before reading, a trace whose parsing would need more than half of the memory
    available now (a regular file of any size is otherwise read whole)."""
    try:
        import psutil

        available = float(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil: do not guess
        return
    need = size * PARSE_BYTES_PER_FILE_BYTE
    if need > 0.5 * available:
        raise UserError(f"trace file is {size / 2**30:.1f} GiB; parsing it needs about "
                        f"{need / 2**30:.1f} GiB, more than half of the "
                        f"{available / 2**30:.1f} GiB available (cut it, or aggregate it to "
                        "counts per interval)", source=p, field="path")


@lru_cache(maxsize=32)
def _read_column_cached(resolved: str, mtime_ns: int, size: int, column: str, counts: bool,
                        path: str) -> np.ndarray:
    """Parse and validate one column (``path`` is only the name shown in errors)."""
    import pandas as pd

    field = "count_column" if counts else "timestamp_column"
    try:
        header = pd.read_csv(resolved, nrows=0, skipinitialspace=True)
        present = [str(c) for c in header.columns]
        if column not in present:
            listed = ", ".join(repr(c) for c in present[:20]) or "none"
            more = f" (and {len(present) - 20} more)" if len(present) > 20 else ""
            raise UserError(f"no column {column!r}; the file has columns: {listed}{more}",
                            source=path, field=field)
        # every column is parsed (not usecols) so that ragged rows are reported, not skipped
        df = pd.read_csv(resolved, skipinitialspace=True, low_memory=False)
    except UserError:
        raise
    except UnicodeDecodeError:
        raise UserError("not a CSV file (not UTF-8 text)", source=path, field="path") from None
    except pd.errors.EmptyDataError:
        raise UserError("not a CSV file (empty, no header row)", source=path,
                        field="path") from None
    except (pd.errors.ParserError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"not a valid CSV file: {first}", source=path, field="path") from None
    except OSError as exc:
        raise UserError(f"cannot read trace file: {exc.strerror}", source=path,
                        field="path") from None
    col = df[column]
    what = "count" if counts else "timestamp"
    numeric = pd.to_numeric(col, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raw = col.iloc[row]
        if pd.isna(raw):
            msg = f"row {row + 1}: missing {what} (empty or NaN)"
        else:
            msg = f"row {row + 1}: {what} {str(raw)!r} is not a number"
        raise UserError(msg, source=path, field=column)
    values = numeric.to_numpy(dtype=np.float64, copy=True)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise UserError(f"row {row + 1}: {what} {values[row]} is not finite", source=path,
                        field=column)
    bad = values < 0
    if bad.any():
        row = int(np.argmax(bad))
        raise UserError(f"row {row + 1}: negative {what} {values[row]:g}", source=path,
                        field=column)
    if values.size == 0:
        raise UserError("the trace has no rows", source=path, field=column)
    if not counts:
        values.sort(kind="stable")
    values.setflags(write=False)
    return values


def _window_bounds(w: TraceWorkload) -> tuple[float, float]:
    return (w.start_s or 0.0), (w.end_s if w.end_s is not None else math.inf)


def _empty_window(p: Path, w: TraceWorkload, span: float) -> UserError:
    lo, hi = _window_bounds(w)
    return UserError(
        f"no requests in the window start_s..end_s = [{lo:g}, {hi:g}) s of trace time "
        f"(the trace spans 0 to {span:g} s from its start)", source=p)


def _timestamp_window(w: TraceWorkload, base_dir: str | None) -> _TraceWindow:
    p, raw = _read_column(w, base_dir, counts=False)
    rel = (raw - raw[0]) * _TIME_UNIT_S[w.time_unit]
    lo, hi = _window_bounds(w)
    i0 = int(np.searchsorted(rel, lo, side="left"))
    i1 = int(np.searchsorted(rel, hi, side="left")) if math.isfinite(hi) else rel.size
    if i1 <= i0:
        raise _empty_window(p, w, float(rel[-1]))
    times = (rel[i0:i1] - lo) * w.time_scale
    end = (hi - lo) * w.time_scale if math.isfinite(hi) else math.inf
    return _TraceWindow(times, end)


def _count_pwl(w: TraceWorkload, base_dir: str | None) -> Pwl:
    """The step rate of a count trace, in simulated time (``rate_scale`` included)."""
    p, counts = _read_column(w, base_dir, counts=True)
    assert w.interval_s is not None
    width = w.interval_s
    n = counts.size
    lo, hi = _window_bounds(w)
    hi = min(hi, n * width)
    i0 = int(math.floor(lo / width))
    i1 = min(n, int(math.ceil(hi / width)))
    if hi <= lo or i1 <= i0:
        raise _empty_window(p, w, n * width)
    idx = np.arange(i0, i1)
    seg_lo = np.maximum(idx * width, lo)
    seg_hi = np.minimum((idx + 1) * width, hi)
    rate = counts[i0:i1] * w.rate_scale / (width * w.time_scale)
    if not np.any((rate > 0) & (seg_hi > seg_lo)):
        raise _empty_window(p, w, n * width)
    knots = np.append((seg_lo - lo) * w.time_scale, (seg_hi[-1] - lo) * w.time_scale)
    knots[0] = 0.0
    return Pwl(knots, rate, rate, 0.0)


def _trace_arrivals(w: TraceWorkload, duration: float, rng: np.random.Generator,
                    base_dir: str | None) -> np.ndarray:
    if w.count_column is not None:
        return pwl_arrivals(_count_pwl(w, base_dir), duration, rng)
    win = _timestamp_window(w, base_dir)
    t = win.times
    scale = w.rate_scale
    if scale == 1.0:
        out = t[t < duration].copy()
        return out
    if scale < 1.0:
        keep = rng.random(t.size) < scale
        out = t[keep]
        return out[out < duration]
    whole = int(math.floor(scale))
    frac = scale - whole
    n = t.size
    if n > 1:
        gaps = np.diff(t, append=t[-1] + (t[-1] - t[-2]))
    else:
        gaps = np.zeros(1)
    parts = [t]
    extra = whole - 1 + (1 if frac > 0 else 0)
    for j in range(extra):
        copy = t + rng.random(n) * gaps
        if j == whole - 1:  # the fractional copy
            copy = copy[rng.random(n) < frac]
        parts.append(copy)
    out = np.concatenate(parts)
    out = out[(out < duration) & (out < win.end)]
    out.sort(kind="stable")
    return out


def _trace_rate(w: TraceWorkload, base_dir: str | None) -> RateFunction:
    if w.count_column is not None:
        return _count_pwl(w, base_dir).rate
    t = _timestamp_window(w, base_dir).times
    # the non-empty 1-s bins only: memory grows with the trace's rows, not with its span (a
    # three-row trace spanning 1e12 s stays three bins)
    bins, counts = np.unique(np.floor(t), return_counts=True)
    rates = counts.astype(np.float64) * w.rate_scale

    def empirical(times: np.ndarray) -> np.ndarray:
        k = np.floor(np.asarray(times, dtype=np.float64))
        idx = np.minimum(np.searchsorted(bins, k), bins.size - 1)
        return np.where(bins[idx] == k, rates[idx], 0.0)

    return empirical


def _trace_expected(w: TraceWorkload, duration: float, base_dir: str | None) -> float:
    if w.count_column is not None:
        return _count_pwl(w, base_dir).integral(duration)
    t = _timestamp_window(w, base_dir).times
    return float(np.searchsorted(t, duration, side="left")) * w.rate_scale
