"""Every shipped scenario, simulated with the shipped profile, gives the figures pinned in
``tests/data/shipped_figures.json``: counts exactly, everything else to 1e-7 relative
(floating-point precision across CPUs, see ``_same``).

This is the safety net of refactoring: a change that is meant to keep behaviour must keep these
numbers. A change that is meant to change them regenerates the file on purpose:

    SIMSCALE_PIN_FIGURES=1 pytest tests/test_pinned_figures.py

and says why in its commit message.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import simscale
from simscale.simulator.scenario import scenarios_dir

PINNED = Path(__file__).parent / "data" / "shipped_figures.json"
SHIPPED = sorted(p.stem for p in scenarios_dir().glob("*.yaml"))
#: figures that are not the simulation's (wall-clock time)
_SKIP = {"wall_s"}


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Numeric and string leaves of a run dict, with dotted names."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _SKIP:
                continue
            out.update(_leaves(v, f"{prefix}{k}."))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.update(_leaves(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = node
    return out


def figures(name: str) -> dict[str, dict[str, Any]]:
    """``{"strategy label/service/replication": {figure: value}}`` of one shipped scenario."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = simscale.simulate(scenarios_dir() / f"{name}.yaml")
    summary = json.loads(json.dumps(result.summary, default=float, allow_nan=True))
    return {f"{r['label']}/{r['service']}/{r['replication']}": _leaves(r)
            for r in summary["runs"]}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or a is None:
        return a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    fa, fb = float(a), float(b)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    # not bit-exact: numpy's vectorised exp/log (the draws) may differ by an ulp between CPUs
    # (SIMD paths), and arrival times are cumulative sums of 1e5-1e6 gaps, so event times carry
    # that to about 1e-9 relative (seen: p95 waits of flash_crowd moved by 1.2e-9 on another
    # CPU). A behaviour change moves figures by far more than 1e-7.
    return math.isclose(fa, fb, rel_tol=1e-7, abs_tol=1e-12)


@pytest.mark.skipif(not os.environ.get("SIMSCALE_PIN_FIGURES"), reason="regenerates the pins")
def test_regenerate_pins() -> None:
    PINNED.parent.mkdir(exist_ok=True)
    pins = {name: figures(name) for name in SHIPPED}
    PINNED.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["python", "compiled"])
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_figures_are_pinned(name: str, kernels: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python loops (the specification) and the compiled loops both give the pins."""
    if os.environ.get("SIMSCALE_PIN_FIGURES"):
        pytest.skip("regenerating")
    if kernels == "compiled":
        pytest.importorskip("numba")
    monkeypatch.setenv("SIMSCALE_KERNELS", kernels)
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))[name]
    now = figures(name)
    assert sorted(now) == sorted(pinned)
    diffs = []
    for run, figs in pinned.items():
        assert sorted(now[run]) == sorted(figs), run
        for key, value in figs.items():
            if not _same(now[run][key], value):
                diffs.append(f"{run} {key}: pinned {value!r}, now {now[run][key]!r}")
    assert not diffs, "\n".join(diffs[:40])
