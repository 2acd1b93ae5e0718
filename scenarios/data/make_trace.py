"""Generate the shipped example traces (reproducible: fixed seed, numpy only).

    python scenarios/data/make_trace.py

writes, next to this script:

- ``trace_example.csv``: one row per request, column ``timestamp`` (seconds from the start of
  the recording, millisecond resolution, sorted; ties are possible, as in real logs).
- ``trace_example_counts.csv``: the same requests counted per second, columns ``second``
  (start of the 1-second interval) and ``count``; replay it with ``count_column: count`` and
  ``interval_s: 1``.

The load is a Poisson process over 600 s whose rate is a slow diurnal-like swell,
``6 + 8 * sin(pi * t / 600)**2`` rps (6 rps at both ends, 14 rps in the middle), plus a burst
centred at t = 420 s (Gaussian, sigma 12 s, +7 rps at its top): about 10.4 rps on average and
about 18 rps at the top of the burst. Drawn by thinning with numpy's PCG64 seeded with 20260.
The script does not import simscale, so the files do not change when the simulator does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 20260
DURATION_S = 600.0
HERE = Path(__file__).resolve().parent


def rate_rps(t: np.ndarray) -> np.ndarray:
    """The intensity of the example trace, in requests per second, at times ``t`` (s)."""
    swell = 6.0 + 8.0 * np.sin(np.pi * t / DURATION_S) ** 2
    burst = 7.0 * np.exp(-0.5 * ((t - 420.0) / 12.0) ** 2)
    return swell + burst


def main() -> None:
    rng = np.random.default_rng(SEED)
    grid = np.linspace(0.0, DURATION_S, 60_001)
    peak = float(rate_rps(grid).max()) * 1.01
    n = rng.poisson(peak * DURATION_S)
    cand = np.sort(rng.uniform(0.0, DURATION_S, n))
    kept = cand[rng.uniform(0.0, peak, n) < rate_rps(cand)]
    stamps = np.round(kept, 3)
    stamps = stamps[stamps < DURATION_S]
    with open(HERE / "trace_example.csv", "w", encoding="utf-8", newline="\n") as f:
        f.write("timestamp\n")
        f.write("".join(f"{x:.3f}\n" for x in stamps))
    counts = np.bincount(np.floor(stamps).astype(np.int64), minlength=int(DURATION_S))
    with open(HERE / "trace_example_counts.csv", "w", encoding="utf-8", newline="\n") as f:
        f.write("second,count\n")
        f.write("".join(f"{i},{c}\n" for i, c in enumerate(counts)))
    print(f"{stamps.size} requests over {DURATION_S:g} s: mean {stamps.size / DURATION_S:.2f} rps,"
          f" busiest second {counts.max()} requests")


if __name__ == "__main__":
    main()
