"""Trace replay: exact timestamps, units, windows, time and rate scaling, count traces, bad
traces (one UserError naming the file and column/row), the cache and the shipped trace."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter
from scipy import stats

from simscale.errors import UserError
from simscale.simulator.scenario import Workload
from simscale.simulator.workloads import (
    clear_trace_cache,
    expected_arrivals,
    generate_arrivals,
    rate_function,
)

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Workload)
DATA = Path(__file__).resolve().parents[1] / "scenarios" / "data"


def make(**kw: Any) -> Any:
    return _ADAPTER.validate_python({"kind": "trace", **kw})


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def stamps(tmp_path: Path) -> np.ndarray:
    """A 200 s timestamp trace starting at t = 1000 s (so the shift to 0 is visible)."""
    t = 1000.0 + np.sort(np.random.default_rng(0).uniform(0, 200, 4000))
    t[0] = 1000.0
    lines = "".join(f"{float(x)!r},{i}\n" for i, x in enumerate(t))
    write(tmp_path, "ts.csv", "ts,id\n" + lines)
    return t - 1000.0


def gen(w: Any, duration: float, tmp_path: Path, seed: int = 0) -> np.ndarray:
    return generate_arrivals(w, duration, np.random.default_rng(seed), base_dir=str(tmp_path))


# ------------------------------------------------------------------------- timestamp traces
def test_exact_replay_shifted_to_zero(tmp_path: Path, stamps: np.ndarray) -> None:
    w = make(path="ts.csv", timestamp_column="ts")
    a = gen(w, 1e6, tmp_path)
    np.testing.assert_array_equal(a, stamps)
    assert expected_arrivals(w, 1e6, base_dir=str(tmp_path)) == stamps.size
    # the run is shorter than the trace: cut; longer: the trace simply ends
    np.testing.assert_array_equal(gen(w, 50.0, tmp_path), stamps[stamps < 50])
    assert expected_arrivals(w, 50.0, base_dir=str(tmp_path)) == np.sum(stamps < 50)


def test_replay_does_not_consume_randomness(tmp_path: Path, stamps: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    generate_arrivals(make(path="ts.csv", timestamp_column="ts"), 300.0, rng,
                      base_dir=str(tmp_path))
    assert rng.random() == np.random.default_rng(1).random()


def test_time_units(tmp_path: Path) -> None:
    write(tmp_path, "ms.csv", "t\n5000\n5250\n7000\n")
    write(tmp_path, "us.csv", "t\n5000000\n5250000\n7000000\n")
    for name, unit in (("ms.csv", "ms"), ("us.csv", "us")):
        a = gen(make(path=name, timestamp_column="t", time_unit=unit), 10.0, tmp_path)
        np.testing.assert_allclose(a, [0.0, 0.25, 2.0])


def test_unsorted_timestamps_are_sorted(tmp_path: Path) -> None:
    write(tmp_path, "u.csv", "t\n3\n1\n2\n2\n")
    a = gen(make(path="u.csv", timestamp_column="t"), 10.0, tmp_path)
    np.testing.assert_array_equal(a, [0, 1, 1, 2])


def test_window_and_time_scale(tmp_path: Path, stamps: np.ndarray) -> None:
    w = make(path="ts.csv", timestamp_column="ts", start_s=50, end_s=120, time_scale=2.0)
    a = gen(w, 1e6, tmp_path)
    sel = stamps[(stamps >= 50) & (stamps < 120)]
    np.testing.assert_allclose(a, (sel - 50) * 2.0)
    assert a[-1] < 140.0
    fast = gen(make(path="ts.csv", timestamp_column="ts", time_scale=0.5), 1e6, tmp_path)
    np.testing.assert_allclose(fast, stamps * 0.5)
    rate = rate_function(w, base_dir=str(tmp_path))
    np.testing.assert_allclose(rate(np.arange(0, 141) + 0.5)[:140],
                               np.histogram(a, np.arange(0, 141))[0])
    assert rate(np.array([145.0, -1.0])).tolist() == [0.0, 0.0]


def test_rate_scale_thinning(tmp_path: Path, stamps: np.ndarray) -> None:
    w = make(path="ts.csv", timestamp_column="ts", rate_scale=0.3)
    a = gen(w, 1e6, tmp_path, seed=3)
    assert np.all(np.isin(a, stamps))  # a subset of the original requests
    n = stamps.size
    assert abs(a.size - 0.3 * n) < 4 * np.sqrt(n * 0.3 * 0.7)  # Binomial(n, 0.3)
    assert expected_arrivals(w, 1e6, base_dir=str(tmp_path)) == pytest.approx(0.3 * n)
    np.testing.assert_array_equal(a, gen(w, 1e6, tmp_path, seed=3))


@pytest.mark.parametrize("scale", [2.0, 2.5])
def test_rate_scale_superposition(tmp_path: Path, stamps: np.ndarray, scale: float) -> None:
    w = make(path="ts.csv", timestamp_column="ts", rate_scale=scale)
    a = gen(w, 1e6, tmp_path, seed=4)
    n = stamps.size
    assert np.all(np.diff(a) >= 0)
    assert np.all(np.isin(stamps, a))  # every original request is kept
    extra = n * (scale - 1)
    assert abs(a.size - n - extra) <= 4 * np.sqrt(n * 0.25) + 1
    # copies lie in the gap after their original: per gap, about (scale - 1) copies
    idx = np.searchsorted(stamps, a, side="right") - 1
    per_gap = np.bincount(idx, minlength=n) - 1
    assert per_gap.min() >= 0 and per_gap.max() <= int(np.ceil(scale))
    # the shape of the load is kept: counts per 10 s scale with rate_scale
    orig = np.histogram(stamps, np.arange(0, 201, 10))[0]
    new = np.histogram(a, np.arange(0, 201, 10))[0]
    np.testing.assert_allclose(new / orig, scale, rtol=0.15)


def test_rate_scale_copies_respect_end_s(tmp_path: Path, stamps: np.ndarray) -> None:
    w = make(path="ts.csv", timestamp_column="ts", rate_scale=3.0, end_s=100)
    a = gen(w, 1e6, tmp_path)
    assert a[-1] < 100


# ------------------------------------------------------------------------------ count traces
def test_count_trace_is_poisson_per_interval(tmp_path: Path) -> None:
    counts = np.random.default_rng(5).integers(0, 400, 60)
    write(tmp_path, "c.csv", "minute,n\n" + "".join(f"{i},{c}\n" for i, c in enumerate(counts)))
    w = make(path="c.csv", count_column="n", interval_s=10.0)
    a = gen(w, 1e6, tmp_path)
    assert a[-1] < 600.0
    obs = np.histogram(a, np.arange(0, 601, 10.0))[0]
    pos = counts > 0
    assert np.all(obs[~pos] == 0)
    chi2 = np.sum((obs[pos] - counts[pos]) ** 2 / counts[pos])
    assert stats.chi2.sf(chi2, pos.sum()) > 1e-3
    assert expected_arrivals(w, 1e6, base_dir=str(tmp_path)) == pytest.approx(counts.sum())
    rate = rate_function(w, base_dir=str(tmp_path))
    np.testing.assert_allclose(rate(np.arange(60) * 10.0 + 5), counts / 10.0)
    # uniform within each interval
    busiest = int(np.argmax(counts))
    inside = a[(a >= busiest * 10) & (a < busiest * 10 + 10)] - busiest * 10
    assert stats.kstest(inside, "uniform", args=(0, 10)).pvalue > 1e-3


def test_count_trace_window_and_scales(tmp_path: Path) -> None:
    write(tmp_path, "c.csv", "n\n100\n200\n300\n400\n")
    w = make(path="c.csv", count_column="n", interval_s=10.0, start_s=15, end_s=35,
             time_scale=2.0, rate_scale=0.5)
    base = str(tmp_path)
    # trace [15, 35) = half of row 1, all of row 2, half of row 3; in the run: [0, 40)
    assert expected_arrivals(w, 1e6, base_dir=base) == pytest.approx(0.5 * (100 + 300 + 200))
    np.testing.assert_allclose(rate_function(w, base_dir=base)(np.array([1, 15, 35, 41])),
                               [200 * 0.5 / 20, 300 * 0.5 / 20, 400 * 0.5 / 20, 0])
    assert expected_arrivals(w, 10.0, base_dir=base) == pytest.approx(50)
    a = gen(w, 1e6, tmp_path)
    assert a[-1] < 40 and abs(a.size - 300) < 4 * np.sqrt(300)


# --------------------------------------------------------------------------------- sums
def test_sum_with_trace_merges(tmp_path: Path, stamps: np.ndarray) -> None:
    w = _ADAPTER.validate_python({"kind": "sum", "workloads": [
        {"kind": "trace", "path": "ts.csv", "timestamp_column": "ts"},
        {"kind": "constant", "rate_rps": 5.0}]})
    a = generate_arrivals(w, 200.0, np.random.default_rng(0), base_dir=str(tmp_path))
    assert np.all(np.diff(a) >= 0) and np.all(np.isin(stamps[stamps < 200], a))
    assert expected_arrivals(w, 200.0, base_dir=str(tmp_path)) == pytest.approx(
        np.sum(stamps < 200) + 1000)


# ----------------------------------------------------------------------------- bad traces
def error_of(tmp_path: Path, **kw: Any) -> str:
    with pytest.raises(UserError) as info:
        generate_arrivals(make(**kw), 100.0, np.random.default_rng(0), base_dir=str(tmp_path))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    msg = error_of(tmp_path, path="nope.csv", timestamp_column="t")
    assert "nope.csv" in msg and "not found" in msg


def test_directory_is_not_a_trace(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    assert "d.csv" in error_of(tmp_path, path="d.csv", timestamp_column="t")


def test_not_a_csv(tmp_path: Path) -> None:
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)) * 8)
    assert "bin.csv" in error_of(tmp_path, path="bin.csv", timestamp_column="t")
    write(tmp_path, "ragged.csv", "t,u\n1,2\n3,4,5,6\n")
    msg = error_of(tmp_path, path="ragged.csv", timestamp_column="t")
    assert "ragged.csv" in msg and "CSV" in msg
    write(tmp_path, "empty.csv", "")
    msg = error_of(tmp_path, path="empty.csv", timestamp_column="t")
    assert "empty.csv" in msg and "empty" in msg


def test_missing_column_lists_present(tmp_path: Path) -> None:
    write(tmp_path, "c.csv", "time,user\n1,2\n")
    msg = error_of(tmp_path, path="c.csv", timestamp_column="timestamp")
    assert "c.csv" in msg and "'timestamp'" in msg and "'time'" in msg and "'user'" in msg
    msg = error_of(tmp_path, path="c.csv", count_column="n", interval_s=1)
    assert "count_column" in msg and "'n'" in msg


@pytest.mark.parametrize(
    ("body", "words"),
    [("1\n2\nabc\n4\n", ["row 3", "'abc'", "not a number"]),
     ("1\n2\n\n", None),  # a trailing blank line is fine
     ("1\n2\nNaN\n", ["row 3", "missing"]),
     ("1,x\n,y\n", ["row 2", "missing"]),
     ("1\n-2\n", ["row 2", "negative"]),
     ("1\ninf\n", ["row 2", "not finite"])],
)
def test_bad_values_name_the_row(tmp_path: Path, body: str, words: list[str] | None) -> None:
    header = "t,other\n" if ",x" in body else "t\n"
    write(tmp_path, "v.csv", header + body)
    if words is None:
        gen(make(path="v.csv", timestamp_column="t"), 10.0, tmp_path)
        return
    msg = error_of(tmp_path, path="v.csv", timestamp_column="t")
    assert "v.csv" in msg and "t:" in msg
    for word in words:
        assert word in msg
    msg = error_of(tmp_path, path="v.csv", count_column="t", interval_s=1.0)
    for word in words:
        assert word in msg


def test_header_only_and_empty_windows(tmp_path: Path) -> None:
    write(tmp_path, "h.csv", "t\n")
    assert "h.csv" in error_of(tmp_path, path="h.csv", timestamp_column="t")
    write(tmp_path, "w.csv", "t\n0\n1\n2\n")
    msg = error_of(tmp_path, path="w.csv", timestamp_column="t", start_s=5, end_s=9)
    assert "w.csv" in msg and "no requests" in msg and "[5, 9)" in msg
    write(tmp_path, "z.csv", "n\n0\n0\n5\n")
    msg = error_of(tmp_path, path="z.csv", count_column="n", interval_s=1.0, end_s=2)
    assert "z.csv" in msg and "no requests" in msg
    msg = error_of(tmp_path, path="z.csv", count_column="n", interval_s=1.0, start_s=3)
    assert "no requests" in msg


def test_errors_surface_from_rate_and_expected(tmp_path: Path) -> None:
    w = make(path="gone.csv", timestamp_column="t")
    with pytest.raises(UserError, match="gone.csv"):
        rate_function(w, base_dir=str(tmp_path))
    with pytest.raises(UserError, match="gone.csv"):
        expected_arrivals(w, 10.0, base_dir=str(tmp_path))


def test_cache_rereads_changed_file(tmp_path: Path) -> None:
    clear_trace_cache()
    p = write(tmp_path, "c.csv", "t\n0\n1\n")
    w = make(path="c.csv", timestamp_column="t")
    assert gen(w, 10.0, tmp_path).tolist() == [0.0, 1.0]
    p.write_text("t\n0\n1\n2\n", encoding="utf-8")
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert gen(w, 10.0, tmp_path).tolist() == [0.0, 1.0, 2.0]


def test_absolute_path_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "a.csv", "t\n0\n3\n")
    w = make(path=str(p), timestamp_column="t")
    assert generate_arrivals(w, 10.0, np.random.default_rng(0)).tolist() == [0.0, 3.0]
    monkeypatch.chdir(tmp_path)
    w = make(path="a.csv", timestamp_column="t")
    assert generate_arrivals(w, 10.0, np.random.default_rng(0)).tolist() == [0.0, 3.0]


# ---------------------------------------------------------------------------- shipped trace
def test_shipped_trace() -> None:
    p = DATA / "trace_example.csv"
    assert p.stat().st_size <= 300_000
    w = make(path="trace_example.csv", timestamp_column="timestamp")
    a = generate_arrivals(w, 3600.0, np.random.default_rng(0), base_dir=str(DATA))
    assert 5000 < a.size < 8000 and a[-1] < 600
    per_second = np.histogram(a, np.arange(0, 601))[0]
    assert 5 <= per_second.mean() <= 20
    per_10s = np.histogram(a, np.arange(0, 601, 10))[0] / 10
    assert per_10s[:3].mean() < 9 and per_10s.max() > 15  # swell plus burst
    wc = make(path="trace_example_counts.csv", count_column="count", interval_s=1.0)
    assert expected_arrivals(wc, 1e4, base_dir=str(DATA)) == a.size


def test_shipped_trace_is_reproducible(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_trace", DATA / "make_trace.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.HERE = tmp_path
    mod.main()
    for name in ("trace_example.csv", "trace_example_counts.csv"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes()
