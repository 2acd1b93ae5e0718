"""This machine's speed score: a short fixed micro-benchmark, cached per machine.

A profile's latencies are only right for a machine as fast as the one that measured them. A
profile made by ``simscale profile`` stores that machine's score (``machine.speed``, measured at
the start and at the end of profiling); ``simscale simulate``, ``simscale validate --profile``
and ``simscale profile show`` compare it with this machine's and warn in one line when the two
differ by more than :data:`WARN_SPREAD`. ``simscale simulate --rescale`` multiplies the
profile's CPU times by ``profile score / this machine's score``
(:meth:`simscale.profiler.schema.Profile.rescaled`). Profiles without a score (made before
it existed) skip the check.

The benchmark (:data:`BENCHMARK`)
---------------------------------
One round is one *work unit*: :data:`MATMUL_REPEATS` products of two fixed :data:`MATMUL_SIZE` x
:data:`MATMUL_SIZE` float64 matrices (numpy's BLAS, held to one thread with threadpoolctl, a
dependency: at this size OpenBLAS and MKL would start threads, whose waits on a busy machine the
run-queue correction cannot take out; the arithmetic and cache hierarchy), :data:`STREAM_PASSES`
sums over a :data:`STREAM_MB`-MB array (far beyond any last-level cache: memory bandwidth) and a
pure-Python loop of :data:`PYTHON_STEPS` steps (integer arithmetic, dict stores: the
interpreter, which every model server also runs). One untimed warm-up round, then :data:`ROUNDS`
timed rounds (fewer, but at least :data:`MIN_ROUNDS`, where more would take it past
:data:`MAX_TOTAL_S`), each timed less the time other processes held the CPU it waited for
(run-queue wait, taken out as the profiler takes it out of its batches: see
:func:`measure_speed`). The score is ``1 / median round time``: work units per second, higher is
faster. A round takes about 0.08 s on an idle 2-core Xeon (score about 12-14); the whole
benchmark 0.7-0.9 s, with the array's allocation (page faults: 0.2 s) and numpy's import.

Version 1 (``simscale.speed/1``) was 4000 products of 64x64 matrices and the same loop: all of it
inside the core's caches. On a shared VM whose speed moves by +-5% in phases lasting tens of
seconds (neighbours' memory traffic), ``benchmarks/speed_tracking.py`` compares how the two
follow ResNet50's batch of one (medians of 6 samples). Three runs: a draft of version 2 (a
256-MB array) correlated 0.90 with it against version 1's 0.42, and scaling ResNet50's time by
the score's ratio was off by at most 3.9% against 9.6%; version 2 as shipped 0.75 against 0.70
(4.5% against 6.1%) and 0.90 against 0.86 (7.5% against 6.0%). It follows at least as well and
sees the memory system, which convolutions and tree ensembles depend on and which differs
between machines as much as their cores do.

Cache
-----
The score is kept in ``$XDG_CACHE_HOME/simscale/speed_score.json`` (``~/.cache/simscale``
without ``XDG_CACHE_HOME``), keyed by :func:`machine_key` (the machine's fingerprint without its
date and score, with the benchmark's version), with the time it was measured, and measured
again after :data:`MAX_AGE_S` or when asked (``simscale profile speed --refresh``). Writes are
atomic; a cache that cannot be read or written is skipped, never an error.

Override
--------
:data:`ENV_SCORE` (``SIMSCALE_SPEED_SCORE``), when set, is this machine's score: nothing is
measured or cached. It is a hook for tests and for reproducing a rescaled run with the factor
it used.

This module imports only the standard library at import time (numpy and
:mod:`simscale.profiler.measure` when the benchmark runs).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from simscale.errors import UserError

if TYPE_CHECKING:
    from simscale.profiler.schema import Profile, SpeedScore

#: the benchmark's version: scores of different versions are never compared
BENCHMARK = "simscale.speed/2"
#: size of the matrices multiplied (float64, square: 2 MiB each, beyond a core's L2)
MATMUL_SIZE = 512
#: matrix products per round
MATMUL_REPEATS = 8
#: size of the array summed (MB: beyond any last-level cache) and passes over it per round
STREAM_MB = 64
STREAM_PASSES = 4
#: steps of the pure-Python loop per round
PYTHON_STEPS = 250_000
#: timed rounds (after one untimed warm-up round)
ROUNDS = 5
#: fewest timed rounds, however long they take
MIN_ROUNDS = 3
#: the benchmark's time budget (s, warm-up included): no round starts that would end later,
#: once MIN_ROUNDS are done (numpy's import, ~0.1 s when not yet imported, comes on top)
MAX_TOTAL_S = 0.8
#: a cached score is measured again after this many seconds (one day)
MAX_AGE_S = 86_400.0
#: warn when the larger of the two scores exceeds the smaller by more than this share
WARN_SPREAD = 0.15
#: environment variable that sets this machine's score (work units per second)
ENV_SCORE = "SIMSCALE_SPEED_SCORE"
#: the cache file's name inside :func:`cache_dir`, and how many machines it remembers
CACHE_FILE = "speed_score.json"
CACHE_ENTRIES = 32
#: larger cache files are ignored (bytes)
CACHE_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class SpeedRun:
    """One run of the benchmark: ``score`` in work units per second (1 / median of
    ``rounds_s``), the timed rounds' seconds (run-queue wait taken out), the seconds the whole
    run took (warm-up included) and the share of the rounds' wall time taken out as run-queue
    wait (other processes holding the CPU)."""

    score: float
    rounds_s: tuple[float, ...]
    elapsed_s: float
    wait_share: float = 0.0


@dataclass(frozen=True)
class MachineSpeed:
    """This machine's score (work units per second) and where it came from: ``"override"``
    (:data:`ENV_SCORE`), ``"cache"`` or ``"measured"`` now; ``measured_at``: UTC, ISO 8601
    (``None`` for an override)."""

    score: float
    source: Literal["override", "cache", "measured"]
    measured_at: str | None = None

    def describe(self) -> str:
        """``17.76 work units/s (cached, measured 2026-12-03T10:13:09+00:00)`` and the like."""
        how = {"override": f"set by {ENV_SCORE}", "measured": "measured now",
               "cache": f"cached, measured {self.measured_at}"}[self.source]
        return f"{self.score:.4g} work units/s ({how})"


# --------------------------------------------------------------------------- the benchmark
def round_work() -> Callable[[], Any]:
    """One round of the benchmark (one work unit) as a function; its inputs are built here,
    outside the timing."""
    import numpy as np

    n = MATMUL_SIZE
    a = (np.arange(n * n, dtype=np.float64).reshape(n, n) % 13.0) / 13.0
    b = np.ascontiguousarray(a.T)
    stream = np.full(STREAM_MB * 2**20 // 8, 1.0)

    def work() -> float:
        for _ in range(MATMUL_REPEATS):
            np.matmul(a, b)
        total = 0.0
        for _ in range(STREAM_PASSES):
            total += float(stream.sum())
        acc = 0
        table: dict[int, int] = {}
        for i in range(PYTHON_STEPS):
            acc = (acc * 31 + i) % 1_000_003
            table[i & 1023] = acc
        return total + acc + len(table)

    return work


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Hold numpy's BLAS to one thread (threadpoolctl, a dependency: a 512x512 product would
    otherwise start BLAS threads)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def score_of(rounds_s: Sequence[float]) -> float:
    """Work units per second of rounds that took ``rounds_s`` seconds each: 1 / their median."""
    median_s = statistics.median(rounds_s)
    if not (median_s > 0 and math.isfinite(median_s)):
        raise ValueError(f"the median round took {median_s} s")
    return 1.0 / median_s


def measure_speed(rounds: int = ROUNDS, *, timer: Callable[[], float] = time.perf_counter,
                  wait_ns: Callable[[], Sequence[int]] | None = None,
                  work: Callable[[], Any] | None = None,
                  max_total_s: float = MAX_TOTAL_S) -> SpeedRun:
    """Run the benchmark: a warm-up round, then ``rounds`` timed rounds of ``work`` (default
    :func:`round_work`), stopping early, once :data:`MIN_ROUNDS` rounds are done, where another
    round as long as the last would end more than ``max_total_s`` seconds after the start.

    A round's time is its wall time (``timer``, seconds) less the longest run-queue wait of a
    thread of this process during it (``wait_ns``: cumulative ns per thread, default the
    kernel's ``schedstat`` through :class:`~simscale.profiler.measure.RunQueueWait`), as the
    profiler times batches: the score describes the machine, not the neighbours that share its
    CPUs now (their cache and memory traffic, and a hypervisor's steal, do count). Tests pass
    a fake ``timer`` and ``wait_ns``: the score then depends on nothing else."""
    work = work or round_work()
    rq = None
    if wait_ns is None:
        from simscale.profiler.measure import RunQueueWait

        rq = RunQueueWait()
        wait_ns = rq.read_ns
    walls: list[float] = []
    times: list[float] = []
    try:
        with one_blas_thread():
            t_start = timer()
            work()
            while len(times) < max(1, rounds):
                w0, t0 = wait_ns(), timer()
                work()
                t1, w1 = timer(), wait_ns()
                wait_s = max((b - a for a, b in zip(w0, w1, strict=False)), default=0) / 1e9
                walls.append(t1 - t0)
                times.append(max(t1 - t0 - wait_s, 1e-9))
                if len(times) >= MIN_ROUNDS and (t1 - t_start) + (t1 - t0) > max_total_s:
                    break  # another round like this one would end after the budget
            elapsed_s = timer() - t_start
    finally:
        if rq is not None:
            rq.close()
    return SpeedRun(score=score_of(times), rounds_s=tuple(times), elapsed_s=elapsed_s,
                    wait_share=max(0.0, 1.0 - sum(times) / sum(walls)))


def profile_speed(start: SpeedRun, end: SpeedRun | None = None) -> SpeedScore:
    """The ``machine.speed`` of a profile measured between the runs ``start`` and ``end``: the
    score of their rounds pooled (the median round), and each run's own score."""
    from simscale.profiler.schema import SpeedScore

    pooled = list(start.rounds_s) + (list(end.rounds_s) if end is not None else [])
    return SpeedScore(score=round(score_of(pooled), 6), benchmark=BENCHMARK,
                      at_start_score=round(start.score, 6),
                      at_end_score=round(end.score, 6) if end is not None else None,
                      measured_at=_iso(time.time()))


# --------------------------------------------------------------------------- the cache
def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/simscale`` (when that is an absolute path), else
    ``~/.cache/simscale``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "simscale"


def machine_key() -> str:
    """The cache key of this machine: SHA-256 (first 16 hex digits) of its fingerprint without
    date or score (CPU, cores, memory, GPU, platform, Python, libraries) and :data:`BENCHMARK`."""
    from simscale.profiler.fingerprint import machine_fingerprint

    fp = machine_fingerprint(include_libraries=True).model_dump(
        mode="json", exclude={"date", "speed", "speed_rescale"})
    text = json.dumps({"fingerprint": fp, "benchmark": BENCHMARK}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _iso(unix_s: float) -> str:
    return _dt.datetime.fromtimestamp(unix_s, _dt.UTC).isoformat(timespec="seconds")


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries (``{}`` when the file is missing, too large or not a cache)."""
    try:
        if path.stat().st_size > CACHE_MAX_BYTES:
            return {}
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = doc.get("entries") if isinstance(doc, dict) else None
    return entries if isinstance(entries, dict) else {}


def cached_speed(key: str, *, now_s: float, max_age_s: float = MAX_AGE_S,
                 path: Path | None = None) -> MachineSpeed | None:
    """The score cached for ``key`` when it is younger than ``max_age_s`` at ``now_s`` (Unix
    seconds); ``None`` otherwise."""
    entry = _read_cache(path or cache_dir() / CACHE_FILE).get(key)
    if not isinstance(entry, dict) or entry.get("benchmark") != BENCHMARK:
        return None
    score, at_s = entry.get("score"), entry.get("measured_unix_s")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in (score, at_s)):
        return None
    if not score > 0 or not -60.0 <= now_s - at_s <= max_age_s:  # (60 s: clock adjustments)
        return None
    return MachineSpeed(float(score), "cache", _iso(at_s))


def remember_speed(score: float, *, key: str | None = None, now_s: float | None = None,
                   path: Path | None = None) -> bool:
    """Cache ``score`` (work units per second) for this machine (``key``), measured at
    ``now_s`` (Unix seconds; default now), keeping the :data:`CACHE_ENTRIES` newest machines.
    Atomic; returns ``False`` (and changes nothing) when the cache cannot be written."""
    from simscale.io import write_json_atomic

    path = path or cache_dir() / CACHE_FILE
    now_s = time.time() if now_s is None else now_s
    entries = _read_cache(path)
    entries[key or machine_key()] = {"score": float(score), "benchmark": BENCHMARK,
                                     "measured_unix_s": now_s, "measured_at": _iso(now_s)}
    newest = sorted(entries.items(), key=lambda kv: _age_order(kv[1]), reverse=True)
    try:
        write_json_atomic(path, {"format": "simscale.speed-cache/1",
                                 "entries": dict(newest[:CACHE_ENTRIES])})
    except OSError:
        return False
    return True


def _age_order(entry: Any) -> float:
    at = entry.get("measured_unix_s") if isinstance(entry, dict) else None
    return float(at) if isinstance(at, int | float) and math.isfinite(at) else -math.inf


def machine_speed(*, refresh: bool = False, max_age_s: float = MAX_AGE_S,
                  now_s: float | None = None,
                  measure: Callable[[], SpeedRun] = measure_speed) -> MachineSpeed:
    """This machine's speed score: :data:`ENV_SCORE` when set; else the cached one when it is
    younger than ``max_age_s`` and not ``refresh``; else ``measure()`` now (and cached).
    A bad :data:`ENV_SCORE` raises :class:`UserError` naming it."""
    override = os.environ.get(ENV_SCORE, "").strip()
    if override:
        try:
            value = float(override)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"'{override}' is not a positive number (work units per second)",
                            source=ENV_SCORE)
        return MachineSpeed(value, "override")
    now_s = time.time() if now_s is None else now_s
    key = machine_key()
    if not refresh:
        hit = cached_speed(key, now_s=now_s, max_age_s=max_age_s)
        if hit is not None:
            return hit
    run = measure()
    remember_speed(run.score, key=key, now_s=now_s)
    return MachineSpeed(run.score, "measured", _iso(now_s))


# --------------------------------------------------------------------------- profiles
def profile_score(profile: Profile) -> float | None:
    """The speed score the profile's times stand for: the measuring machine's, or after
    :meth:`~simscale.profiler.schema.Profile.rescaled` the machine it was rescaled to;
    ``None`` without a score of this :data:`BENCHMARK`."""
    speed = profile.machine.speed
    if speed is None or speed.benchmark != BENCHMARK:
        return None
    rescale = profile.machine.speed_rescale
    if rescale is not None and rescale.machine_score is not None:
        return float(rescale.machine_score)
    return float(speed.score)


def _where(profile: Profile) -> str:
    return f"{profile.source}: " if profile.source else ""


def speed_warning(profile: Profile, here: MachineSpeed | None = None) -> str | None:
    """One line when this machine's score (``here``, default :func:`machine_speed`) and the
    profile's differ by more than :data:`WARN_SPREAD` (the larger over the smaller); ``None``
    when they do not or the profile has no score."""
    there = profile_score(profile)
    if there is None:
        return None
    here = here or machine_speed()
    factor = there / here.score
    if max(factor, 1.0 / factor) - 1.0 <= WARN_SPREAD:
        return None
    pace = "slower" if factor > 1 else "faster"
    return (f"warning: {_where(profile)}this machine is {pace} than the profile's: speed score "
            f"{here.score:.4g} here, {there:.4g} in the profile, so service times here are "
            f"about x{factor:.2f} the profile's; run `simscale profile --quick` to measure "
            "here, or `simscale simulate --rescale` to scale the profile")


def speed_summary(profile: Profile, here: MachineSpeed | None = None) -> str | None:
    """One line for ``simscale profile show``: the profile's score (at the start and end of
    profiling) and this machine's; ``None`` when the profile has no score."""
    speed, there = profile.machine.speed, profile_score(profile)
    if speed is None or there is None:
        return None
    ends = ", ".join(f"{k} {v:.4g}" for k, v in (("start", speed.at_start_score),
                                                 ("end", speed.at_end_score)) if v is not None)
    here = here or machine_speed()
    return (f"Speed score: {there:.4g} work units/s in the profile"
            + (f" ({ends})" if ends else "")
            + f"; this machine {here.describe()}")


def show_note(profile: Profile, here: MachineSpeed | None = None) -> str | None:
    """What ``simscale profile show`` says about the score: that the profile has none (or one
    of another benchmark), or :func:`speed_warning`."""
    speed = profile.machine.speed
    if speed is None:
        return "note: profile has no speed score; run simscale profile --quick to add one"
    if speed.benchmark != BENCHMARK:
        return (f"note: profile's speed score is from benchmark {speed.benchmark} (this "
                f"simscale runs {BENCHMARK}); run simscale profile --quick to add one")
    return speed_warning(profile, here)


def rescaled_to_machine(profile: Profile, here: MachineSpeed | None = None,
                        *, flag: str = "--rescale") -> tuple[Profile, str]:
    """``profile`` rescaled to this machine (``here``, default :func:`machine_speed`): its CPU
    times (cold starts included) multiplied by ``profile score / this machine's score``, and a
    line that says so. A profile without a score raises :class:`UserError` naming ``flag``."""
    there = profile_score(profile)
    if there is None:
        raise UserError(f"{_where(profile)}the profile has no speed score to rescale from "
                        "(run `simscale profile --quick` to make a profile with one)",
                        source=flag)
    here = here or machine_speed()
    factor = there / here.score
    line = (f"rescaled the profile's CPU times x{factor:.3f}: the profile's speed score is "
            f"{there:.4g}, this machine's {here.describe()}")
    return profile.rescaled(factor, machine_score=here.score), line
