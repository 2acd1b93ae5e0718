"""Generate a long per-second request-count trace shaped like real serving traffic.

    python benchmarks/make_long_trace.py [-o long_trace.csv] [--days 21] [--seed 1]
                                         [--mean-rps 64] [--start-hour 0] [--bursts-per-day 3]

Writes a CSV with a header and one row per second, columns ``second`` (start of the 1-second
interval, whole seconds since the start of the trace: 0, 1, 2, ...) and ``count`` (the number of
requests that arrived in that second, a non-negative integer). Replay it with the ``trace``
workload as ``{kind: trace, path: ..., count_column: count, interval_s: 1}``; simscale then
draws Poisson arrivals whose mean in each second is that count, placed uniformly in the second.
The file is written atomically (a temporary file in the same folder, then renamed). numpy only,
nothing is downloaded; the same arguments and ``--seed`` give the same file byte for byte.

The expected rate, in requests per second, at time ``t`` (seconds; the trace starts on a Monday
at ``--start-hour`` o'clock) is::

    rate(t) = scale * diurnal(hour of day) * weekly(t) * bursts(t) * noise(t)

- ``diurnal``: a smooth, periodic and asymmetric day (a sum of three von Mises bumps): trough
  at about 03:05 at 0.35 of the peak, a steep morning rise from 07:00, a broad peak at about
  14:05, an afternoon sag to 0.77 at 18:25, an evening shoulder of 0.81 at 20:15 and a
  decline through the night. Its daily mean is 0.66 of its peak.
- ``weekly``: a level per calendar day, Monday to Sunday ``1.00 1.02 1.02 1.00 0.95 0.70 0.72``
  (the weekend dip), each day's level times a log-normal jitter of 3%; the level changes
  smoothly around midnight (a logistic step of 30 min scale).
- ``bursts``: a Poisson number of bursts, ``--bursts-per-day`` (3) a day on average, each at a
  uniformly random time: the rate is multiplied by a factor drawn uniformly in 3..4 for a hold
  of 2..8 minutes, reached by a raised-cosine ramp up of 15..60 s and left by a ramp down of
  30..120 s. Where bursts overlap the larger factor wins.
- ``noise``: a slow log-normal wobble (standard deviation 6%, Gaussian correlation of 3 min,
  made by filtering white noise in the frequency domain) times an independent per-second gamma
  factor (coefficient of variation 8%), both of mean 1.

``scale`` makes the expected mean over whole weeks equal ``--mean-rps`` (64 requests/s, about
116 million requests in 21 days): it divides by the weekly mean of ``diurnal * weekly`` and by
the expected uplift of the bursts (about 3%), so a trace of a fraction of a day has the same
absolute level as the same hours of a long one. Each second's count is Poisson with mean
``rate(t)``; because of ``noise`` the counts are over-dispersed about the smooth rate (``rate``
without ``noise``): their variance about it is about 1.8 times its mean over 21 days (1 would
be Poisson). The script prints the mean, the busiest second and minute, and the total.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DAY_S = 86_400
#: weekday levels, Monday first (the weekend dip is Saturday and Sunday)
WEEK_LEVELS = np.array([1.00, 1.02, 1.02, 1.00, 0.95, 0.70, 0.72])
DAY_JITTER = 0.03  # log-normal sd of each calendar day's level
MIDNIGHT_STEP_S = 1_800.0  # logistic scale of the change of level around midnight
TROUGH = 0.35  # diurnal minimum relative to its maximum
#: the diurnal bumps: (weight, centre hour, von Mises concentration)
DIURNAL_BUMPS = ((1.00, 14.5, 1.6), (0.35, 10.5, 5.0), (0.55, 20.75, 5.0))
BURST_FACTOR = (3.0, 4.0)
BURST_HOLD_S = (120.0, 480.0)
BURST_RAMP_UP_S = (15.0, 60.0)
BURST_RAMP_DOWN_S = (30.0, 120.0)
SLOW_NOISE_SD = 0.06
SLOW_NOISE_CORR_S = 180.0
FAST_NOISE_CV = 0.08


@dataclass
class Trace:
    """A generated trace: ``counts[i]`` requests in second ``[i, i+1)``; ``rate`` the
    expected rate (requests/s) they were drawn from."""

    counts: np.ndarray
    rate: np.ndarray
    seed: int
    mean_rps_target: float
    bursts: list[dict] = field(default_factory=list)

    def stats(self) -> dict:
        """Mean, peak and total of the counts (and of the rate they were drawn from)."""
        c = self.counts
        n = c.size
        by_min = c[: n // 60 * 60].reshape(-1, 60).sum(axis=1) / 60.0 if n >= 60 else c
        mean = float(c.mean())
        return {
            "seconds": int(n),
            "days": n / DAY_S,
            "total_requests": int(c.sum()),
            "mean_rps": mean,
            "peak_second": int(c.max()),
            "peak_second_at_s": int(c.argmax()),
            "peak_minute_rps": float(by_min.max()),
            "min_minute_rps": float(by_min.min()),
            "rate_peak_rps": float(self.rate.max()),
            "rate_mean_rps": float(self.rate.mean()),
            "bursts": len(self.bursts),
            # variance of the counts about the smooth rate, over its mean (1 for Poisson)
            "dispersion": float(np.mean((c - self.rate) ** 2) / self.rate.mean()),
        }


def diurnal(hour: np.ndarray) -> np.ndarray:
    """The day shape at ``hour`` (0..24, any real), between ``TROUGH`` and 1."""
    s = _bumps(np.asarray(hour, dtype=np.float64))
    lo, hi = _bump_range()
    return TROUGH + (1.0 - TROUGH) * (s - lo) / (hi - lo)


def _bumps(hour: np.ndarray) -> np.ndarray:
    out = np.zeros_like(hour)
    for w, centre, kappa in DIURNAL_BUMPS:
        out += w * np.exp(kappa * (np.cos(2.0 * np.pi * (hour - centre) / 24.0) - 1.0))
    return out


def _bump_range() -> tuple[float, float]:
    grid = _bumps(np.arange(DAY_S) / 3600.0)
    return float(grid.min()), float(grid.max())


def _weekly(t_clock: np.ndarray, levels: np.ndarray, first_day: int) -> np.ndarray:
    """Each calendar day's level, changing smoothly around midnight. ``levels[k]`` is the
    level of calendar day ``first_day + k``; ``t_clock`` counts seconds from Monday 00:00 of
    the first week."""
    m = np.rint(t_clock / DAY_S).astype(np.int64)  # nearest midnight
    x = t_clock - m * DAY_S  # seconds from it, in [-12 h, 12 h]
    before = levels[m - 1 - first_day]
    after = levels[m - first_day]
    return before + (after - before) / (1.0 + np.exp(-x / MIDNIGHT_STEP_S))


def _slow_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """A log-normal factor of mean 1: white noise smoothed by a Gaussian kernel (sd
    ``SLOW_NOISE_CORR_S`` seconds) in the frequency domain, scaled to ``SLOW_NOISE_SD``."""
    pad = int(8 * SLOW_NOISE_CORR_S)
    m = 1 << max(1, int(np.ceil(np.log2(n + pad))))  # a power of two: fast and no wrap-around
    white = rng.standard_normal(m)
    freq = np.fft.rfftfreq(m)
    smooth = np.fft.irfft(np.fft.rfft(white) * np.exp(-2.0 * (np.pi * freq
                                                              * SLOW_NOISE_CORR_S) ** 2), m)
    z = smooth[:n]
    z = (z - z.mean()) / (z.std() or 1.0)
    return np.exp(SLOW_NOISE_SD * z - 0.5 * SLOW_NOISE_SD**2)


def _burst_factor(n: int, rng: np.random.Generator, per_day: float) -> tuple[np.ndarray,
                                                                            list[dict]]:
    factor = np.ones(n)
    k = int(rng.poisson(per_day * n / DAY_S))
    bursts = []
    t = np.arange(n, dtype=np.float64)
    for start in np.sort(rng.uniform(0.0, n, k)):
        peak = rng.uniform(*BURST_FACTOR)
        up = rng.uniform(*BURST_RAMP_UP_S)
        hold = rng.uniform(*BURST_HOLD_S)
        down = rng.uniform(*BURST_RAMP_DOWN_S)
        i0 = int(start)
        i1 = min(n, int(np.ceil(start + up + hold + down)) + 1)
        x = t[i0:i1] - start
        env = np.where(x < up, 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, up) / up),
                       np.where(x < up + hold, 1.0,
                                0.5 + 0.5 * np.cos(np.pi * np.clip(x - up - hold, 0.0, down)
                                                   / down)))
        np.maximum(factor[i0:i1], 1.0 + (peak - 1.0) * env, out=factor[i0:i1])
        bursts.append({"start_s": float(start), "factor": float(peak), "ramp_up_s": float(up),
                       "hold_s": float(hold), "ramp_down_s": float(down)})
    return factor, bursts


def expected_burst_uplift(per_day: float) -> float:
    """The mean of the burst factor over a long trace (overlaps neglected): each burst adds
    ``(factor - 1) * (hold + (up + down) / 2)`` seconds' worth of the local rate."""
    def mean(r: tuple[float, float]) -> float:
        return 0.5 * (r[0] + r[1])

    area = (mean(BURST_FACTOR) - 1.0) * (mean(BURST_HOLD_S)
                                         + 0.5 * (mean(BURST_RAMP_UP_S)
                                                  + mean(BURST_RAMP_DOWN_S)))
    return 1.0 + per_day * area / DAY_S


def generate(days: float = 21.0, *, seed: int = 1, mean_rps: float = 64.0,
             start_hour: float = 0.0, bursts_per_day: float = 3.0) -> Trace:
    """Draw a trace of ``round(days * 86400)`` seconds (see the module docstring)."""
    n = int(round(days * DAY_S))
    if n < 1:
        raise ValueError("days must cover at least one second")
    if mean_rps <= 0:
        raise ValueError("mean_rps must be positive")
    rng = np.random.default_rng(seed)
    t_clock = np.arange(n, dtype=np.float64) + start_hour * 3600.0
    first_day = int(np.floor(t_clock[0] / DAY_S)) - 1
    last_day = int(np.floor(t_clock[-1] / DAY_S)) + 1
    cal = np.arange(first_day, last_day + 1)
    levels = WEEK_LEVELS[cal % 7] * np.exp(DAY_JITTER * rng.standard_normal(cal.size)
                                           - 0.5 * DAY_JITTER**2)
    day = diurnal(np.arange(DAY_S) / 3600.0)  # one day at 1-s resolution, looked up
    second_of_day = np.rint(t_clock).astype(np.int64) % DAY_S
    shape = day[second_of_day] * _weekly(t_clock, levels, first_day)
    week_mean = float(day.mean() * WEEK_LEVELS.mean())
    scale = mean_rps / (week_mean * expected_burst_uplift(bursts_per_day))
    bursts, burst_list = _burst_factor(n, rng, bursts_per_day)
    shape_k = 1.0 / FAST_NOISE_CV**2
    noise = _slow_noise(n, rng) * rng.gamma(shape_k, 1.0 / shape_k, n)
    rate = scale * shape * bursts
    counts = rng.poisson(rate * noise)
    return Trace(counts=counts.astype(np.int64), rate=rate, seed=seed, mean_rps_target=mean_rps,
                 bursts=burst_list)


def write_csv(path: str | os.PathLike, counts: np.ndarray) -> Path:
    """Write ``second,count`` rows atomically (a temporary file next to ``path``, renamed)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write("second,count\n")
            chunk = 1 << 18
            for lo in range(0, counts.size, chunk):
                part = counts[lo:lo + chunk].tolist()
                f.write("".join(f"{lo + i},{c}\n" for i, c in enumerate(part)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="long_trace.csv", help="CSV to write")
    ap.add_argument("--days", type=float, default=21.0, help="length in days (fractional ok)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mean-rps", type=float, default=64.0,
                    help="expected mean rate over whole weeks, requests/s")
    ap.add_argument("--start-hour", type=float, default=0.0,
                    help="clock time of the first second, hours after Monday 00:00")
    ap.add_argument("--bursts-per-day", type=float, default=3.0)
    a = ap.parse_args(argv)
    if a.days <= 0:
        ap.error("--days must be positive")
    t0 = time.perf_counter()
    tr = generate(a.days, seed=a.seed, mean_rps=a.mean_rps, start_hour=a.start_hour,
                  bursts_per_day=a.bursts_per_day)
    t1 = time.perf_counter()
    out = write_csv(a.output, tr.counts)
    t2 = time.perf_counter()
    s = tr.stats()
    print(f"{out}: {s['seconds']:,} rows ({s['days']:g} days), "
          f"{out.stat().st_size / 2**20:.1f} MiB; generated in {t1 - t0:.2f} s, "
          f"written in {t2 - t1:.2f} s")
    print(f"mean {s['mean_rps']:.2f} requests/s (target {a.mean_rps:g} over whole weeks), "
          f"peak second {s['peak_second']:,} requests (at {s['peak_second_at_s']:,} s), "
          f"busiest minute {s['peak_minute_rps']:.1f} requests/s, "
          f"quietest minute {s['min_minute_rps']:.1f} requests/s")
    print(f"total {s['total_requests']:,} requests; {s['bursts']} bursts; "
          f"variance of the counts about the smooth rate / mean {s['dispersion']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
