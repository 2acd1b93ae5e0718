"""Wall time of ``simscale profile --quick`` (target: under 60 s on a 2-core machine).

Timing belongs here, not in the tests: the machine is shared and noisy. Runs the quick profile
``--repeats`` times in fresh processes and prints each wall time, the median and the load
average before and after.

Usage: ``python benchmarks/profile_speed.py [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    walls_s = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            out = Path(tmp) / f"quick{i}.json"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "simscale.cli", "profile", "--quick", "-o",
                            str(out)], check=True, stdout=subprocess.DEVNULL)
            walls_s.append(time.perf_counter() - t0)
            print(f"run {i + 1}: {walls_s[-1]:.1f} s")
    print(f"simscale profile --quick: median {statistics.median(walls_s):.1f} s over "
          f"{len(walls_s)} runs; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
