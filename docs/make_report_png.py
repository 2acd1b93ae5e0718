"""Regenerate ``docs/report.png``: the top of the flash crowd scenario's HTML report.

Runs ``scenarios/flash_crowd.yaml`` with the current code and the shipped profile (the same
run as ``simscale simulate scenarios/flash_crowd.yaml``), renders ``report.html`` and
screenshots, in headless Chromium, the page from its header to the end of the first service
section (the service that matters most, see :func:`simscale.reports.tables.service_order`)::

    python docs/make_report_png.py [-o docs/report.png] [--width 1280] [--keep DIR]

Chromium is needed (``apt-get install chromium``; ``--chromium PATH`` or ``$CHROMIUM`` when it
is not on ``PATH``). The page is loaded twice: once to measure where that section ends (a
small script added to a copy of the page writes the position into the DOM, read back with
``--dump-dom``), once to take the screenshot at exactly that height. Nothing is downloaded:
the report is self-contained.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIO = REPO / "scenarios" / "flash_crowd.yaml"
DEFAULT_OUTPUT = REPO / "docs" / "report.png"
#: How many ``section.card`` elements the picture shows: the services overview, then the
#: first (most urgent) service.
SECTIONS_SHOWN = 2
#: Space kept under the last section shown, in CSS pixels.
MARGIN_PX = 24
#: Virtual time Chromium gives the page's scripts to draw every figure (ms).
VIRTUAL_TIME_MS = 15000

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)

MEASURE_JS = """
<script>
window.addEventListener('load', function () {
  var cards = document.querySelectorAll('section.card');
  var last = cards[Math.min(cards.length, %d) - 1];
  var bottom = last ? last.getBoundingClientRect().bottom + window.scrollY : 0;
  document.body.setAttribute('data-shot-bottom', String(Math.ceil(bottom)));
});
</script>
"""


def find_chromium(explicit: str | None) -> str:
    """The Chromium binary: ``explicit``, ``$CHROMIUM``, or ``chromium``/``chromium-browser``
    on ``PATH``; exits with a one-line message when there is none."""
    for candidate in (explicit, os.environ.get("CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit("make_report_png: chromium not found (apt-get install chromium, or --chromium)")


def run_chromium(chromium: str, profile_dir: Path, args: list[str], url: str) -> str:
    """Run headless Chromium on ``url`` and return its stdout."""
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}",
           f"--virtual-time-budget={VIRTUAL_TIME_MS}", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        sys.exit(f"make_report_png: chromium failed ({done.returncode}): {done.stderr[-500:]}")
    return done.stdout


def simulate_and_render(outdir: Path) -> Path:
    """Simulate the flash crowd scenario into ``outdir`` and render its report."""
    import simscale
    from simscale.reports import render_report

    result = simscale.simulate(str(SCENARIO))
    result.save(outdir)
    return render_report(outdir)


def section_bottom(chromium: str, report: Path, width: int, work: Path) -> int:
    """The page y (CSS px) where the last section shown ends, at ``width``."""
    probe = work / "probe.html"
    page = report.read_text(encoding="utf-8")
    probe.write_text(page.replace("</body>", MEASURE_JS % SECTIONS_SHOWN + "</body>", 1),
                     encoding="utf-8")
    dom = run_chromium(chromium, work / "chromium", ["--dump-dom",
                       f"--window-size={width},2400"], probe.resolve().as_uri())
    found = re.search(r'data-shot-bottom="(\d+)"', dom)
    if not found or int(found.group(1)) <= 0:
        sys.exit("make_report_png: could not measure the report's sections")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help="PNG to write (default: docs/report.png)")
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS px")
    parser.add_argument("--chromium", help="path of the Chromium binary")
    parser.add_argument("--keep", type=Path,
                        help="keep the result folder (summary.json, report.html) here")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    with tempfile.TemporaryDirectory(prefix="simscale-report-png-") as tmp:
        work = Path(tmp)
        outdir = args.keep or work / "results"
        report = simulate_and_render(outdir)
        height = section_bottom(chromium, report, args.width, work) + MARGIN_PX
        shot = work / "report.png"
        run_chromium(chromium, work / "chromium",
                     [f"--window-size={args.width},{height}", f"--screenshot={shot}"],
                     report.resolve().as_uri())
        try:
            from PIL import Image
        except ImportError:  # Pillow only shrinks the file
            shutil.copyfile(shot, args.output)
        else:
            with Image.open(shot) as img:
                img.convert("RGB").save(args.output, optimize=True)
    kept = f"; results in {outdir}" if args.keep else ""
    print(f"wrote {args.output} ({args.width}x{height} px){kept}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
