"""``--save-requests`` on a streaming run (issue #13): the requests are written to Parquet a
chunk at a time as the run forgets them, and the file holds exactly the rows a run that keeps
every request writes, with the same figures."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from simscale.simulator import streaming
from simscale.simulator.results import flatten
from simscale.simulator.runner import run_scenario
from simscale.simulator.scenario import load_scenario


def _scenario():
    return load_scenario({
        "name": "stream_requests", "duration_s": 300, "seed": 4,
        "services": [
            {"name": "big", "model": "m", "slo_ms": 120, "cold_start_s": 2,
             "service_time": {"dist": "lognormal", "mean_ms": 30, "cv": 1.2},
             "batching": {"max_batch_size": 3, "max_wait_ms": 5},
             "queue": {"capacity": 50, "timeout_ms": 2000},
             "replicas": {"initial": 2, "min": 1, "max": 8},
             "workload": {"kind": "flash_crowd", "base_rps": 40, "peak_rps": 160,
                          "start_s": 100, "ramp_s": 20, "hold_s": 60, "decay_s": 30}},
            {"name": "small", "model": "m", "slo_ms": 200, "routing": "power_of_two",
             "cold_start_s": 2,
             "service_time": {"dist": "exponential", "mean_ms": 40},
             "replicas": {"initial": 1, "min": 1, "max": 4},
             "workload": {"kind": "constant", "rate_rps": 3}}],
        "strategies": [{"name": "hpa"}, {"name": "threshold"}]})


def _normalized(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in ("strategy", "label", "service", "drop_reason"):
        out[col] = out[col].astype(str)
    out = out.sort_values(["replication", "label", "service", "arrival_s"], kind="stable")
    return out.reset_index(drop=True)


def test_streamed_requests_are_the_kept_ones(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = _scenario()
    kept = run_scenario(sc, keep_requests=True, replications=2)
    kept.save(tmp_path / "kept", save_requests=True)
    # the big service (about 20 000 requests) streams, in small chunks; the small one keeps all
    monkeypatch.setattr(streaming, "STREAM_MIN_REQUESTS", 5000)
    monkeypatch.setattr(streaming, "STREAM_CHUNK", 64)
    monkeypatch.setattr(streaming, "STREAM_KEEP_S", 0.0)
    monkeypatch.setattr(streaming, "STREAM_KEEP_WINDOWS", 0.0)
    streamed = run_scenario(sc, keep_requests=True, replications=2)
    assert streamed._store is not None and len(streamed._store.files) == 4  # 2 strategies x 2
    assert all(ident["service"] == "big" for ident, _ in streamed._store.files)
    streamed.save(tmp_path / "streamed", save_requests=True)
    a = _normalized(pd.read_parquet(tmp_path / "kept" / "requests.parquet"))
    b = _normalized(pd.read_parquet(tmp_path / "streamed" / "requests.parquet"))
    assert len(a) > 20_000
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    pd.testing.assert_frame_equal(_normalized(streamed.requests), a, check_dtype=False)
    for ra, rb in zip(kept.summary["runs"], streamed.summary["runs"], strict=True):
        fa, fb = flatten(ra), flatten(rb)  # counts and percentiles exact, sums to rounding
        assert fa.keys() == fb.keys()
        for key, value in fa.items():
            if key == "wall_s":
                continue
            if isinstance(value, float) and not value.is_integer():
                assert fb[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
            else:
                assert json.dumps(fb[key]) == json.dumps(value), key
