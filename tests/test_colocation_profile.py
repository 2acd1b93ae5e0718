"""The profiler's co-location measurement (issue #15 item 2): k replicas busy at once, the
busy window that trims the edges, rounds that take turns across k, the median of the rounds'
medians, the ``colocation`` field of a profile, its ``slowdown()``, and ``profile show``.

The measurement tests use fake servers whose service times are set by the test and a counter
for a clock, so no figure depends on this machine's speed; one small real run (linear
regression, k = 1..2) checks only the structure of what it measures.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from simscale.profiler.colocation import (
    BusyRecord,
    build_colocation,
    busy_window,
    in_window,
    measure_colocation_with,
    representative_batch_size,
    run_busy_step,
)
from simscale.profiler.colocation_schema import Colocation, colocation_slowdown
from simscale.profiler.plan import ColocationPlan, Config, RunPlan
from simscale.profiler.rounds import round_order
from simscale.profiler.schema import load_profile

#: a plan for the fakes: no minimum window time (the fake clock is a counter)
PLAN = ColocationPlan(rounds=4, min_batches=5, min_window_s=0.0, max_step_s=30.0,
                      warmup_batches=1)
#: the service time (ms) a fake reports for a warm-up batch: it must never be counted
WARMUP_MS = 1000.0


class Counter:
    """A clock that ticks by one on every reading, whatever thread reads it."""

    def __init__(self) -> None:
        self._it = itertools.count()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return float(next(self._it))


class World:
    """What the fake servers report: per step ``(k, round)``, a batch takes
    ``base_ms * (1 + per_other * (k - 1)) * slow[round]``; the first batch of every server in
    a step takes :data:`WARMUP_MS` (the warm-up that must be trimmed)."""

    def __init__(self, base_ms: float = 2.0, per_other: float = 0.25,
                 slow: dict[int, float] | None = None) -> None:
        self.base_ms = base_ms
        self.per_other = per_other
        self.slow = slow or {}
        self.k = 1
        self.round = 0
        self.steps: list[tuple[int, int]] = []
        self.lock = threading.Lock()
        self.served: dict[int, int] = {}

    def step(self, k: int, r: int) -> None:
        self.k, self.round = k, r
        self.steps.append((k, r))
        self.served = {}

    def ms(self, server: int) -> float:
        with self.lock:
            n = self.served.get(server, 0)
            self.served[server] = n + 1
        if n == 0:
            return WARMUP_MS
        return self.base_ms * (1.0 + self.per_other * (self.k - 1)) * self.slow.get(
            self.round, 1.0)


class FakeServer:
    """A :class:`~simscale.profiler.colocation.BatchServer` that answers at once."""

    def __init__(self, world: World, index: int) -> None:
        self.world = world
        self.index = index
        self.asked: list[int] = []
        self.killed = False

    def send(self, batch_size: int) -> None:
        self.asked.append(batch_size)

    def receive(self) -> float:
        return self.world.ms(self.index)

    def kill(self) -> None:
        self.killed = True


def rec(start: float, end: float, ms: float = 1.0) -> BusyRecord:
    return BusyRecord(start, end, ms)


# -- the busy window -------------------------------------------------------------------------


def test_busy_window_runs_from_the_last_start_after_warm_up_to_the_first_stop():
    a = [rec(0, 10, 99), rec(10, 20, 1), rec(20, 30, 2), rec(30, 40, 3), rec(40, 50, 4)]
    b = [rec(5, 15, 99), rec(15, 25, 5), rec(25, 35, 6), rec(35, 45, 7)]
    c = [rec(12, 17, 99), rec(17, 22, 8), rec(22, 27, 9), rec(27, 32, 10), rec(32, 37, 11)]
    # the window opens when c starts its first batch after its warm-up (17) and closes when c
    # stops (37): only batches wholly inside it count
    assert busy_window([a, b, c]) == (17, 37)
    # (b's batch 15..25 started before c was busy, a's 30..40 ended after c stopped)
    assert in_window([a, b, c]) == [[2], [6], [8, 9, 10, 11]]
    # without warm-up the window opens at c's first batch
    assert busy_window([a, b, c], warmup=0) == (12, 37)
    assert in_window([a, b, c], warmup=0) == [[2], [5, 6], [99, 8, 9, 10, 11]]


def test_no_window_when_a_replica_has_nothing_after_its_warm_up():
    a = [rec(0, 1), rec(1, 2)]
    assert busy_window([a, [rec(0, 5)]]) is None
    assert in_window([a, [rec(0, 5)]]) == [[], []]
    assert busy_window([]) is None
    # one replica alone: everything after its warm-up counts
    assert in_window([a]) == [[1.0]]


def test_a_step_keeps_every_server_busy_and_trims_the_warm_up():
    world = World()
    world.step(3, 0)
    servers = [FakeServer(world, i) for i in range(3)]
    before = threading.active_count()
    records = run_busy_step(servers, 4, PLAN, clock=Counter())
    assert threading.active_count() == before  # no thread outlives the step
    got = in_window(records, PLAN.warmup_batches)
    for server, recs, kept in zip(servers, records, got, strict=True):
        assert set(server.asked) == {4}
        assert len(server.asked) == len(recs)  # every batch asked for was answered
        assert recs[0].service_ms == WARMUP_MS
        assert len(kept) >= PLAN.min_batches and WARMUP_MS not in kept
        starts = [r.start for r in recs]
        assert starts == sorted(starts) and all(r.end > r.start for r in recs)


def test_a_failing_server_fails_the_step():
    class Broken(FakeServer):
        def receive(self) -> float:
            raise RuntimeError("replica crashed")

    world = World()
    with pytest.raises(RuntimeError, match="replica crashed"):
        run_busy_step([FakeServer(world, 0), Broken(world, 1)], 1, PLAN, clock=Counter())


def test_a_server_that_never_answers_is_killed():
    class Hung(FakeServer):
        def __init__(self, world: World, index: int) -> None:
            super().__init__(world, index)
            self.released = threading.Event()

        def receive(self) -> float:
            self.released.wait()
            raise OSError("killed")

        def kill(self) -> None:
            self.killed = True
            self.released.set()

    from simscale.profiler.steps import ProfilerError

    hung = Hung(World(), 0)
    plan = ColocationPlan(rounds=1, min_batches=1, min_window_s=0.0, max_step_s=0.05)
    with pytest.raises(ProfilerError, match="did not answer"):
        run_busy_step([hung], 1, plan, clock=Counter())
    assert hung.killed


# -- rounds across k ---------------------------------------------------------------------------


def test_steps_take_turns_across_k_and_keep_the_median_of_the_rounds_medians():
    # round 2 is twice as slow for every k (a drift): the median of 4 rounds ignores it
    world = World(base_ms=2.0, per_other=0.25, slow={2: 2.0})
    servers = [FakeServer(world, i) for i in range(3)]
    co = measure_colocation_with(servers, 4, PLAN, host_cores=3, on_step=world.step,
                                 clock=Counter())
    assert world.steps == [(c + 1, r) for c, r in round_order([4, 4, 4])]
    assert world.steps[:6] == [(1, 0), (2, 0), (3, 0), (3, 1), (2, 1), (1, 1)]
    assert co.batch_size == 4 and co.host_cores == 3 and co.max_replicas == 3
    assert co.p50_ms == pytest.approx([2.0, 2.5, 3.0])
    assert co.slowdown_by_others[0] == 1.0
    assert co.slowdown_by_others == pytest.approx([1.0, 1.25, 1.5])
    for k, rounds in enumerate(co.round_p50_ms, start=1):
        base = 2.0 * (1 + 0.25 * (k - 1))
        assert rounds == pytest.approx([base, base, 2 * base, base])  # in the order they ran
    assert all(n >= PLAN.min_batches * PLAN.rounds for n in co.samples)
    assert all(s.asked for s in servers)


def test_factors_below_one_are_stored_as_measured():
    co = build_colocation([[2.0, 2.0], [1.8, 1.9]], [10, 20], batch_size=1, host_cores=2)
    assert co.slowdown_by_others == pytest.approx([1.0, 1.85 / 2.0])
    assert co.p50_ms == pytest.approx([2.0, 1.85])
    assert co.slowdown(1) < 1.0


def test_representative_batch_size():
    assert representative_batch_size((1, 32, 1024)) == 1
    assert representative_batch_size((1, 2, 4, 8)) == 4
    assert representative_batch_size((1, 2, 3, 8), 2) == 2
    assert representative_batch_size((8, 16)) == 8


# -- the schema ------------------------------------------------------------------------------


def colocation(factors: list[float], p0_ms: float = 2.0) -> Colocation:
    return Colocation(batch_size=2, host_cores=len(factors), slowdown_by_others=factors,
                      p50_ms=[p0_ms * f for f in factors],
                      round_p50_ms=[[p0_ms * f] * 2 for f in factors],
                      samples=[10] * len(factors))


def test_slowdown_is_measured_then_extrapolated_linearly_from_the_last_two_points():
    co = colocation([1.0, 1.1, 1.3])
    assert [co.slowdown(n) for n in range(3)] == [1.0, 1.1, 1.3]
    assert co.slowdown(3) == pytest.approx(1.5)
    assert co.slowdown(7) == pytest.approx(2.3)
    # a falling last step (noise) is held flat, never extrapolated downwards
    flat = colocation([1.0, 1.2, 1.15])
    assert flat.slowdown(2) == 1.15 and flat.slowdown(10) == pytest.approx(1.15)
    # one point (a one-core host): no slope
    assert colocation([1.0]).slowdown(5) == 1.0
    with pytest.raises(ValueError, match="n_others"):
        co.slowdown(-1)
    assert colocation_slowdown(None, 4) == 1.0
    assert colocation_slowdown(co, 3) == pytest.approx(1.5)


@pytest.mark.parametrize("change", [
    {"slowdown_by_others": [1.1, 1.2]},  # [0] must be 1
    {"slowdown_by_others": [1.0, 0.0]},  # factors > 0
    {"slowdown_by_others": [1.0, math.nan]},
    {"p50_ms": [2.0]},  # one entry per k
    {"samples": [10, 0]},
    {"batch_size": 0},
])
def test_colocation_refuses_bad_values(change):
    good = colocation([1.0, 1.2]).model_dump()
    with pytest.raises(ValidationError):
        Colocation.model_validate({**good, **change})


def _with_colocation_doc(co: Colocation) -> dict:
    """The shipped profile's JSON with ``co`` set on linear regression's first configuration
    and no co-location anywhere else."""
    doc = json.loads(Path(load_profile().source).read_text())
    for m in doc["models"].values():  # (the others as before co-location was measured)
        for c in m["configs"]:
            c.pop("colocation", None)
    doc["models"]["linear_regression"]["configs"][0]["colocation"] = co.model_dump(mode="json")
    return doc


def test_profile_round_trip_and_old_profiles_still_load(tmp_path):
    shipped = load_profile()  # measured on this kind of machine: every CPU configuration
    assert all(c.colocation is not None and c.colocation.slowdown_by_others[0] == 1.0
               for m in shipped.models.values() for c in m.configs if c.device == "cpu")
    # a profile from before the field (the shipped one without it) still loads
    doc = json.loads(Path(shipped.source).read_text())
    for m in doc["models"].values():
        for c in m["configs"]:
            c.pop("colocation", None)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    assert all(c.colocation is None for m in load_profile(old, warn=False).models.values()
               for c in m.configs)
    co = colocation([1.0, 1.25])
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_with_colocation_doc(co)))
    loaded = load_profile(path, warn=False)
    cfg = loaded.models["linear_regression"].configs[0]
    assert cfg.colocation == co
    assert colocation_slowdown(cfg.colocation, 1) == 1.25
    # a rescaled copy scales the times and keeps the factors
    scaled = loaded.rescaled(2.0).models["linear_regression"].configs[0].colocation
    assert scaled is not None and scaled.slowdown_by_others == co.slowdown_by_others
    assert scaled.p50_ms == pytest.approx([4.0, 5.0])
    assert scaled.round_p50_ms == [[4.0, 4.0], [5.0, 5.0]]


# -- profile show and the wiring ---------------------------------------------------------------


def test_show_prints_the_slowdown_per_number_of_others(tmp_path):
    from rich.console import Console

    from simscale.profiler.show import describe_colocation, show_profile

    path = tmp_path / "p.json"
    path.write_text(json.dumps(_with_colocation_doc(colocation([1.0, 1.25, 0.98]))))
    prof = load_profile(path, warn=False)
    cfg = prof.models["linear_regression"].configs[0]
    line = describe_colocation(cfg)
    assert "0:x1.000 1:x1.250 2:x0.980" in line and "below 1" in line
    assert "not measured" in describe_colocation(prof.models["xgboost"].configs[0])
    out = io.StringIO()
    show_profile(prof, Console(file=out, width=250))
    assert "0:x1.000 1:x1.250 2:x0.980" in " ".join(out.getvalue().split())  # caption wraps


def test_run_profile_sets_each_cpu_configuration_s_colocation(monkeypatch):
    from simscale.profiler import runner
    from simscale.profiler.progress import ProgressBar

    cfgs = [Config("linear_regression", "cpu", 1, (1, 4)),
            Config("linear_regression", "cpu", 2, (1, 4)),
            Config("resnet50", "cuda", 1, (1, 4))]
    seen = []

    def fake(cfg, artifact, plan, *, on_step=None):
        seen.append((cfg, artifact, plan))
        on_step(1, 0)
        return colocation([1.0, 1.0 + cfg.threads / 10])

    trained = {m: type("T", (), {"artifact": Path(m)})() for m in ("linear_regression",
                                                                    "resnet50")}
    monkeypatch.setattr(runner, "measure_colocation", fake)
    got = runner._measure_colocation_all(cfgs, trained, RunPlan.quick(), ProgressBar(False, 1.0))
    assert list(got) == cfgs[:2]  # the CUDA configuration is left out
    assert all(plan == RunPlan.quick().colocation for _, _, plan in seen)
    prof = load_profile()
    lr = prof.models["linear_regression"]
    cfg_list = [Config("linear_regression", "cpu", c.threads, (1,)) for c in lr.configs]
    out = runner._with_colocation({"linear_regression": lr}, cfg_list,
                                  {cfg_list[0]: colocation([1.0, 1.5])})
    assert out["linear_regression"].configs[0].colocation.slowdown(1) == 1.5
    assert all(c.colocation is None for c in out["linear_regression"].configs[1:])


def test_cli_flag_reaches_the_profile_command(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from simscale.cli import cli
    from simscale.profiler import command

    calls = []
    monkeypatch.setattr(command, "profile_command", lambda **kw: calls.append(kw))
    out = str(tmp_path / "p.json")
    for flags, want in (([], None), (["--colocation"], True), (["--no-colocation"], False)):
        result = CliRunner().invoke(cli, ["profile", "--quick", "-o", out, *flags])
        assert result.exit_code == 0, result.output
        assert calls[-1]["colocation"] is want and calls[-1]["quick"]


# -- one real, small run -----------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_real_linear_regression_replicas_k_1_to_2(tmp_path):
    pytest.importorskip("sklearn")
    from simscale.profiler.colocation import measure_colocation
    from simscale.profiler.zoo import train_model

    trained = train_model("linear_regression", tmp_path)
    plan = ColocationPlan(rounds=2, min_batches=3, min_window_s=0.05, max_step_s=120.0,
                          max_replicas=2)
    co = measure_colocation(Config("linear_regression", "cpu", 1, (1, 32)), trained.artifact,
                            plan)
    assert co.batch_size == 1 and co.max_replicas == 2 and co.host_cores >= 1
    assert co.slowdown_by_others[0] == 1.0
    assert all(math.isfinite(f) and f > 0 for f in co.slowdown_by_others)
    assert all(len(r) == 2 for r in co.round_p50_ms)
    assert all(n >= 3 * 2 for n in co.samples)
