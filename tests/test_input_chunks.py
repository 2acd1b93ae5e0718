"""Inputs are generated a chunk at a time with temporaries that do not grow with the run, and
spooled to disk for streaming runs (issue #13); no chunking changes a number: arrivals drawn a
chunk at a time equal one draw of all, service and routing draws too, the NHPP inversion over
blocks equals it over all pieces at once, and a spool reads back what was written."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simscale.errors import UserError
from simscale.simulator import inputs, spool
from simscale.simulator.scenario import load_scenario
from simscale.simulator.workloads import pwl


def _scenario(workload: dict, routing: str = "random") -> object:
    return load_scenario({
        "name": "chunks", "duration_s": 400, "seed": 3,
        "services": [{"name": "s", "model": "m", "slo_ms": 100, "routing": routing,
                      "service_time": {"dist": "lognormal", "mean_ms": 20, "cv": 1.5},
                      "replicas": {"initial": 2, "min": 1, "max": 4},
                      "workload": workload}],
        "strategies": [{"name": "static"}]})


WORKLOADS = [
    {"kind": "constant", "rate_rps": 90},
    {"kind": "diurnal", "mean_rps": 60, "amplitude": 0.5, "period_s": 200},
    {"kind": "flash_crowd", "base_rps": 20, "peak_rps": 200, "start_s": 100, "ramp_s": 20,
     "hold_s": 60, "decay_s": 40},
    {"kind": "gamma", "rate_rps": 50, "cv": 4},
    {"kind": "mmpp", "states": [{"rate_rps": 10, "mean_sojourn_s": 20},
                                {"rate_rps": 150, "mean_sojourn_s": 5}]},
]


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w["kind"])
@pytest.mark.parametrize("routing", ["shared_queue", "random", "power_of_two"])
def test_chunked_inputs_are_the_same_numbers(workload: dict, routing: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sc = _scenario(workload, routing)
    svc = sc.services[0]
    def seq() -> np.random.SeedSequence:  # (spawning advances a sequence: a fresh one each)
        return np.random.SeedSequence(5)

    whole = inputs.service_inputs(svc, sc, seq(), None)
    monkeypatch.setattr(inputs, "DRAW_CHUNK", 97)
    parts = inputs.service_inputs(svc, sc, seq(), None)
    spooled = inputs.service_inputs(svc, sc, seq(), None, spool=True)
    live = inputs.service_inputs(svc, sc, seq(), None, live=True)
    assert whole.n_requests > 5000
    assert spooled.arrival_s is None and spooled.n_requests == whole.n_requests
    assert live.arrival_s is None and live.spool is None
    for got in (parts.arrays(), spooled.arrays(), live.arrays()):
        for a, b in zip(got, whole.arrays(), strict=True):
            if b is None:
                assert a is None
            else:
                np.testing.assert_array_equal(a, b)
    assert live.n_requests == whole.n_requests  # (counted by the pass arrays() made)
    n_bins = 400
    want = np.diff(np.searchsorted(whole.arrival_s, np.arange(n_bins + 1.0))).astype(float)
    np.testing.assert_array_equal(spooled.spool.arrivals_per_s(n_bins), want)
    # a live feed read in odd pieces: the same inputs, and the arrivals per second counted
    # (complete) for every second before the last arrival read
    feed = live.feed()
    per_s = feed.arrivals_per_s(n_bins)
    rng = np.random.default_rng(1)
    got: list[list[np.ndarray]] = [[], [], []]
    while not feed.done:
        k = min(int(rng.integers(1, 300)), whole.n_requests - feed.pos)
        bufs = [np.empty(k), np.empty(k)] + ([np.empty((k, 2) if routing == "power_of_two"
                                                        else k)] if feed.draws else [None])
        feed.read_into(*bufs)
        for part, buf in zip(got, bufs, strict=True):
            part.append(buf)
        last = int(bufs[0][-1])
        np.testing.assert_array_equal(per_s[:last], want[:last])
    np.testing.assert_array_equal(per_s, want)
    for part, b in zip(got, whole.arrays(), strict=True):
        if b is not None:
            np.testing.assert_array_equal(np.concatenate(part), b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), pieces=st.integers(1, 3000),
       chunk=st.sampled_from([1, 2, 7, 100, 4096, 1 << 20]), linear=st.booleans(),
       cut=st.floats(0.1, 1.0))
def test_arrival_chunks_are_the_whole_draw(seed: int, pieces: int, chunk: int, linear: bool,
                                           cut: float) -> None:
    """Few or many pieces (both inversion paths), steps or slopes, empty pieces, a horizon
    inside a piece: the chunks join into the whole draw and leave the generator where the
    whole draw leaves it."""
    rng = np.random.default_rng(seed)
    knots = np.concatenate(([0.0], np.cumsum(rng.uniform(0.01, 2.0, pieces))))
    start = rng.uniform(0.0, 50.0, pieces) * (rng.random(pieces) > 0.1)
    end = rng.uniform(0.0, 50.0, pieces) if linear else start
    rate = pwl.Pwl(knots, start, end, float(rng.uniform(0, 20)))
    duration = float(knots[-1]) * cut
    if chunk == 1 and rate.integral(duration) > 5000:
        chunk = 3
    g1, g2 = np.random.default_rng(seed + 1), np.random.default_rng(seed + 1)
    whole = pwl.pwl_arrivals(rate, duration, g1)
    got = list(pwl.pwl_arrival_chunks(rate, duration, g2, chunk))
    assert all(0 < len(c) <= chunk for c in got)
    joined = np.concatenate(got) if got else np.empty(0)
    np.testing.assert_array_equal(joined, whole)
    assert g1.random() == g2.random()


@pytest.mark.parametrize("seed", range(6))
def test_blockwise_inversion_is_the_same_numbers(seed: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3000, 8000))  # many pieces: the vectorised path
    t0 = np.arange(k, dtype=float)
    r0 = rng.uniform(0.0, 40.0, k)
    r1 = r0 if seed % 2 else rng.uniform(0.0, 40.0, k)
    r0[rng.random(k) < 0.1] = 0.0  # empty seconds too
    whole = pwl.invert_counted(t0, t0 + 1.0, r0, r1, float(k), np.random.default_rng(seed))
    monkeypatch.setattr(pwl, "_BLOCK", 257)
    blocks = pwl.invert_counted(t0, t0 + 1.0, r0, r1, float(k), np.random.default_rng(seed))
    np.testing.assert_array_equal(blocks[0], whole[0])
    np.testing.assert_array_equal(blocks[1], whole[1])
    assert len(whole[0]) > 1000


def test_a_spool_reads_back_in_any_chunks_and_removes_its_files(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSCALE_SPOOL_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    arr = np.sort(rng.uniform(0, 100, 1000))
    unit = rng.random(1000)
    route = rng.random((1000, 2))
    sp = spool.InputSpool(draws=2)
    for i in range(0, 1000, 333):
        sp.append(arr[i:i + 333], unit[i:i + 333], route[i:i + 333])
    sp.seal()
    folder = sp.folder
    assert folder.parent == tmp_path and sp.n == 1000
    r = sp.reader()
    got = [r.read(k) for k in (1, 10, 500, 10_000)]
    assert r.done and r.read(5)[0].size == 0
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), arr)
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), unit)
    np.testing.assert_array_equal(np.concatenate([g[2] for g in got]), route)
    r.close()
    del sp, r
    gc.collect()
    assert not folder.exists()


def test_a_disk_too_small_for_the_spool_is_one_clear_error(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMSCALE_SPOOL_DIR", str(tmp_path))

    class Usage:
        free = 10**6

    monkeypatch.setattr(spool.shutil, "disk_usage", lambda _p: Usage())
    with pytest.raises(UserError) as err:
        spool.InputSpool(bytes_needed=5 * 10**9)
    msg = err.value.format()
    assert "SIMSCALE_SPOOL_DIR" in msg and "5.0 GB" in msg and "\n" not in msg
    assert os.listdir(tmp_path) == []
