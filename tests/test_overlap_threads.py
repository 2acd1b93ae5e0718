"""A streaming run overlaps its work on two cores (issue #13): a live feed draws the next chunk
of inputs in a thread while the plane serves the one before, and the stream folds each batch
of final requests in a thread while the plane moves on. Neither changes a number (the same
summary and time series as with both in the run's own thread), and what goes wrong in those
threads is raised in the run's thread, not lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from simscale.simulator import feeds, streaming
from simscale.simulator.results import flatten
from simscale.simulator.runner import run_scenario
from simscale.simulator.scenario import load_scenario


def _scenario() -> Any:
    return load_scenario({
        "name": "overlap", "duration_s": 300, "seed": 8,
        "services": [
            {"name": "s", "model": "m", "slo_ms": 120, "cold_start_s": 2,
             "service_time": {"dist": "lognormal", "mean_ms": 30, "cv": 1.2},
             "batching": {"max_batch_size": 3, "max_wait_ms": 5},
             "queue": {"capacity": 50, "timeout_ms": 2000},
             "replicas": {"initial": 2, "min": 1, "max": 8},
             "workload": {"kind": "flash_crowd", "base_rps": 40, "peak_rps": 160,
                          "start_s": 100, "ramp_s": 20, "hold_s": 60, "decay_s": 30}}],
        "strategies": [{"name": "hpa"}]})


def _small_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service streams, in small chunks, drawn in small chunks: many folds and draws."""
    from simscale.simulator import inputs

    monkeypatch.setattr(streaming, "STREAM_MIN_REQUESTS", 1000)
    monkeypatch.setattr(streaming, "STREAM_CHUNK", 64)
    monkeypatch.setattr(streaming, "STREAM_KEEP_S", 0.0)
    monkeypatch.setattr(streaming, "STREAM_KEEP_WINDOWS", 0.0)
    monkeypatch.setattr(inputs, "DRAW_CHUNK", 257)


def test_threads_change_no_number(monkeypatch: pytest.MonkeyPatch) -> None:
    """One strategy (its run draws its inputs live): the same summary and time series with the
    draw ahead and the fold behind as with both in the run's thread, and the threads did run."""
    _small_streams(monkeypatch)
    names: set[str] = set()
    fold = streaming.fold

    def watched_fold(*args: Any, **kw: Any) -> None:
        names.add(threading.current_thread().name)
        fold(*args, **kw)

    monkeypatch.setattr(streaming, "fold", watched_fold)
    sc = _scenario()
    on = run_scenario(sc)
    assert "simscale-fold" in names  # (the run's own thread folds the rest at the end)
    monkeypatch.setattr(streaming, "FOLD_BEHIND", False)
    monkeypatch.setattr(feeds, "DRAW_AHEAD", False)
    names.clear()
    off = run_scenario(sc)
    assert names == {threading.current_thread().name}
    ra, rb = on.summary["runs"], off.summary["runs"]
    assert len(ra) == len(rb) == 1 and ra[0]["arrivals"] > 20_000
    fa, fb = flatten(ra[0]), flatten(rb[0])
    assert fa.keys() == fb.keys()
    for key, value in fa.items():
        if key != "wall_s":
            assert json.dumps(fb[key]) == json.dumps(value), key
    pd.testing.assert_frame_equal(on.timeseries, off.timeseries)


def test_an_error_while_folding_behind_is_raised_in_the_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _small_streams(monkeypatch)
    calls: list[str] = []
    fold = streaming.fold

    def failing_fold(*args: Any, **kw: Any) -> None:
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise RuntimeError("fold failed on the third batch")
        fold(*args, **kw)

    monkeypatch.setattr(streaming, "fold", failing_fold)
    with pytest.raises(RuntimeError, match="fold failed on the third batch"):
        run_scenario(_scenario())
    # raised when the next batch is to be folded (or at the end), before it is
    assert len(calls) == 3 and calls[2] == "simscale-fold"


def _source(n_chunks: int, fail_at: int | None, seen: list[str]) -> feeds.LiveSource:
    """A live source of ``n_chunks`` chunks of 100 requests, one per second, raising when
    drawing chunk ``fail_at``; ``seen``: the thread that drew each chunk."""

    def draw(paths: list[Any]) -> Iterator[feeds.Chunk]:
        for i in range(n_chunks):
            seen.append(threading.current_thread().name)
            if i == fail_at:
                raise ValueError(f"trace unreadable at chunk {i}")
            a = np.arange(i * 100, (i + 1) * 100) * 0.01
            yield a, a + 1.0, None, np.full(100, 0.5)

    def rate(paths: list[Any]) -> Any:
        return lambda t: np.full(np.shape(t), 100.0)

    return feeds.LiveSource(draw, rate, 100 * n_chunks, 0, n_chunks)


@pytest.mark.parametrize("ahead", [True, False])
def test_a_live_feed_reads_the_same_inputs_ahead_or_not(ahead: bool) -> None:
    seen: list[str] = []
    feed = feeds.LiveFeed(_source(5, None, seen), ahead=ahead)
    a, unit = np.empty(500), np.empty(500)
    for lo, hi in [(0, 37), (37, 250), (250, 251), (251, 500)]:
        feed.read_into(a[lo:hi], unit[lo:hi])
    assert feed.done and feed.pos == 500
    np.testing.assert_array_equal(a, np.arange(500) * 0.01)
    np.testing.assert_array_equal(unit, a + 1.0)
    np.testing.assert_array_equal(feed.arrivals_per_s(5), np.full(5, 100.0))
    assert feed.source.realized == (500, (0.5, 0.5))
    me = threading.current_thread().name
    assert seen[0] == me  # (the first chunk is drawn when the feed is made)
    assert set(seen[1:]) == ({"simscale-draw"} if ahead else {me})


def test_an_error_while_drawing_ahead_is_raised_to_the_reader() -> None:
    seen: list[str] = []
    feed = feeds.LiveFeed(_source(5, 2, seen), ahead=True)
    a, unit = np.empty(200), np.empty(200)
    feed.read_into(a[:150], unit[:150])  # (chunk 2 is drawn, and fails, meanwhile)
    with pytest.raises(ValueError, match="trace unreadable at chunk 2"):
        feed.read_into(a[150:], unit[150:])
    assert seen[2] == "simscale-draw"
    np.testing.assert_array_equal(a[:200], np.arange(200) * 0.01)  # (chunks 0 and 1 read)
