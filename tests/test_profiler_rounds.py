"""Timing rounds that take turns across configurations (issue #15 item 3): the order of the
rounds, the median of the rounds' medians, and what a drift of the machine's speed does to the
result, one configuration after another and interleaved.

Nothing here depends on this machine's speed: the models are fakes whose calls advance a fake
clock, so every figure is exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from simscale.profiler.measure import BatchTimer, TimingPlan, Timings, latency_stats
from simscale.profiler.rounds import round_order, time_in_rounds
from simscale.profiler.service_model import ServiceTimeModel

#: a plan for the fakes: one warm-up call per batch size, one re-warm call per later round
PLAN = TimingPlan(warmup_min_runs=1, warmup_s=0.0, min_rounds=4, budget_s=0.4, max_runs=10_000,
                  timing_rounds=4, rewarm_s=0.0)


class FakeMachine:
    """A clock (ns) that only the fake models advance, and a speed that drops by ``drift``
    (0.2: every call takes 20 % longer) from ``slow_from_ns`` on."""

    def __init__(self, drift: float = 0.0, slow_from_ns: float | None = None) -> None:
        self.now_ns = 0
        self.drift = drift
        self.slow_from_ns = slow_from_ns
        self.calls: list[str] = []

    def clock(self) -> int:
        return self.now_ns

    def model(self, name: str, fixed_ms: float, per_item_ms: float) -> Callable[[int], None]:
        """A model whose batch of ``b`` items takes ``fixed_ms + per_item_ms * b`` at full
        speed; its input is the batch size itself."""

        def predict(batch: int) -> None:
            ms = fixed_ms + per_item_ms * batch
            if self.slow_from_ns is not None and self.now_ns >= self.slow_from_ns:
                ms *= 1.0 + self.drift
            self.calls.append(name)
            self.now_ns += int(round(ms * 1e6))

        return predict


#: the fake configurations: (name, fixed ms, ms per item, batch sizes)
CONFIGS = [("tabular", 0.05, 0.001, (1, 4)), ("small", 2.0, 1.0, (1, 4)),
           ("cnn", 10.0, 8.0, (1, 4)), ("tabular2", 0.2, 0.002, (1, 4))]


def true_ms(fixed_ms: float, per_item_ms: float, b: int) -> float:
    return fixed_ms + per_item_ms * b


def timers_on(machine: FakeMachine, plan: TimingPlan = PLAN) -> list[BatchTimer]:
    return [BatchTimer(machine.model(name, f, k), {b: b for b in sizes}, plan, seed=i,
                       clock=machine.clock, subtract_run_queue_wait=False)
            for i, (name, f, k, sizes) in enumerate(CONFIGS)]


def errors_with_drift(interleaved: bool, drift: float = 0.2) -> dict[tuple[str, int], float]:
    """Per (configuration, batch size), the relative error of the profile's median when the
    machine slows by ``drift`` half-way through (by the clock) the timing of every
    configuration, timed in that order."""
    quiet = FakeMachine()
    time_in_rounds(timers_on(quiet), interleaved=interleaved)
    machine = FakeMachine(drift, slow_from_ns=quiet.now_ns / 2)
    found = time_in_rounds(timers_on(machine), interleaved=interleaved)
    return {(name, b): t.p50_ms(b) / true_ms(f, k, b) - 1.0
            for (name, f, k, sizes), t in zip(CONFIGS, found, strict=True) for b in sizes}


# -- the order of the rounds -------------------------------------------------------------------


def test_interleaved_order_takes_turns_and_reverses_every_other_round():
    assert round_order([3, 3, 3]) == [(0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (0, 1),
                                      (0, 2), (1, 2), (2, 2)]
    # one after another: the old way
    assert round_order([2, 2, 2], interleaved=False) == [(0, 0), (0, 1), (1, 0), (1, 1),
                                                         (2, 0), (2, 1)]


@pytest.mark.parametrize("rounds", [[4, 4, 4, 4], [1, 3, 2], [6], [], [2, 5]])
@pytest.mark.parametrize("interleaved", [True, False])
def test_every_round_of_every_configuration_runs_once_and_in_round_order(rounds, interleaved):
    order = round_order(rounds, interleaved=interleaved)
    assert sorted(order) == sorted((c, r) for c, n in enumerate(rounds) for r in range(n))
    for c in range(len(rounds)):
        assert [r for cc, r in order if cc == c] == list(range(rounds[c]))
    if interleaved:  # no round starts before every configuration finished the one before
        assert [r for _, r in order] == sorted(r for _, r in order)


def test_a_steady_drift_reaches_every_configuration_equally_over_two_rounds():
    """With rounds reversed every other round, the mean position of each configuration in the
    run is the same when the number of rounds is even."""
    order = round_order([4, 4, 4])
    mean_position = [np.mean([i for i, (c, _) in enumerate(order) if c == cc]) for cc in range(3)]
    assert mean_position == pytest.approx([mean_position[0]] * 3)


def test_time_in_rounds_runs_the_timers_in_that_order_and_serves_between_rounds():
    machine = FakeMachine()
    timers = timers_on(machine)
    steps, served = [], []

    def on_step(c: int, r: int) -> None:
        steps.append((c, r))
        machine.calls.append(f"step {c} {r}")

    time_in_rounds(timers, on_step=on_step, after_round=lambda r: served.append((r, len(steps))))
    assert steps == round_order([4] * 4)
    # after_round(r) comes once every configuration has done round r, before round r + 1
    assert served == [(0, 4), (1, 8), (2, 12), (3, 16)]
    # each step runs only its own configuration's model
    names = [n for n, *_ in CONFIGS]
    current = None
    for call in machine.calls:
        if call.startswith("step"):
            current = names[int(call.split()[1])]
        else:
            assert call == current
    # one after another: no serving rounds in between
    served.clear()
    time_in_rounds(timers_on(FakeMachine()), interleaved=False,
                   after_round=lambda r: served.append(r))
    assert served == []


# -- rounds and their median ---------------------------------------------------------------------


def test_each_round_is_recorded_and_the_profile_keeps_the_median_of_the_round_medians():
    t = Timings(samples_ms={1: np.array([1.0, 1.1, 5.0, 5.2, 5.1, 2.0, 2.2, 2.1, 9.0])},
                wall_ms={1: np.array([1.0, 1.1, 5.0, 5.2, 5.1, 2.0, 2.2, 2.1, 9.0])},
                round_of={1: np.array([0, 0, 1, 1, 1, 2, 2, 2, 3])})
    assert t.round_p50_ms(1).tolist() == pytest.approx([1.05, 5.1, 2.1, 9.0])
    assert t.p50_ms(1) == pytest.approx(np.median([1.05, 5.1, 2.1, 9.0]))
    scaled = t.profile_samples_ms()[1]
    # the pooled samples, scaled so that their median is the kept median
    assert np.median(scaled) == pytest.approx(t.p50_ms(1))
    assert scaled / t.samples_ms[1] == pytest.approx(np.full(9, t.p50_ms(1) / 2.2))
    stats = latency_stats(1, scaled, round_p50_ms=t.round_p50_ms(1))
    assert stats.p50_ms == pytest.approx(t.p50_ms(1))
    assert stats.round_p50_ms == pytest.approx([1.05, 5.1, 2.1, 9.0])
    # without rounds (one round): the pooled median
    one = Timings(samples_ms={2: np.array([3.0, 1.0, 2.0])}, wall_ms={2: np.array([3.0, 1, 2])})
    assert one.p50_ms(2) == 2.0 and one.round_p50_ms(2).tolist() == [2.0]


def test_a_timer_runs_its_plan_in_rounds_on_a_fake_clock():
    machine = FakeMachine()
    timer = timers_on(machine)[2]
    for _ in range(PLAN.timing_rounds):
        timer.run_round()
    t = timer.timings()
    for b in (1, 4):
        rounds = t.round_of[b]
        assert sorted(set(rounds.tolist())) == [0, 1, 2, 3]
        assert rounds.tolist() == sorted(rounds.tolist())  # in time order
        assert t.p50_ms(b) == pytest.approx(true_ms(10.0, 8.0, b))
        assert np.all(t.samples_ms[b] == t.wall_ms[b])  # no run-queue wait on a fake
    # each round ran its share of the budget (budget_s / timing_rounds) and at most one pass
    # (here two calls of b=1 and one of b=4, 78 ms) more; the warm-ups come on top
    assert PLAN.budget_s <= machine.now_ns / 1e9 <= PLAN.budget_s + 4 * 0.078 + 0.1


def test_without_drift_both_orders_measure_the_truth():
    for interleaved in (True, False):
        quiet = FakeMachine()
        found = time_in_rounds(timers_on(quiet), interleaved=interleaved)
        for (_, f, k, sizes), t in zip(CONFIGS, found, strict=True):
            for b in sizes:
                assert t.p50_ms(b) == pytest.approx(true_ms(f, k, b), rel=1e-6)


# -- a drift half-way through ------------------------------------------------------------------


def test_a_drift_half_way_moves_interleaved_rounds_by_at_most_half_of_one_after_another():
    """Every call after the half-way point takes 20 % longer. One configuration after another,
    the first half of the configurations are exact and the second half off by the whole 20 %;
    interleaved, each configuration's median of rounds is off by half of it or less."""
    sequential = errors_with_drift(interleaved=False)
    interleaved = errors_with_drift(interleaved=True)
    names = [n for n, *_ in CONFIGS]
    for (name, _), err in sequential.items():
        expected = 0.0 if names.index(name) < len(names) // 2 else 0.2
        assert err == pytest.approx(expected, abs=1e-6), (name, err)
    worst_sequential = max(abs(e) for e in sequential.values())
    worst_interleaved = max(abs(e) for e in interleaved.values())
    assert worst_interleaved <= 0.5 * worst_sequential + 1e-6, interleaved
    # and the configurations agree: each is off by 0 or by half of the drift, none by all of it
    for key, err in interleaved.items():
        assert err == pytest.approx(0.1, abs=1e-6) or err == pytest.approx(0.0, abs=1e-6), key


def test_a_drift_for_less_than_half_of_the_rounds_does_not_move_the_median():
    """A neighbour busy during the first round only: interleaved, no configuration moves;
    one after another, the first configuration takes the whole drift."""
    machine = FakeMachine()
    marks: list[int] = []  # the clock when every configuration has done round r
    time_in_rounds(timers_on(machine), after_round=lambda r: marks.append(machine.now_ns))
    end_first_round = marks[0]

    class Transient(FakeMachine):
        def model(self, name: str, fixed_ms: float, per_item_ms: float):
            def predict(batch: int) -> None:
                ms = fixed_ms + per_item_ms * batch
                if self.now_ns < end_first_round:
                    ms *= 1.5
                self.now_ns += int(round(ms * 1e6))
            return predict

    for interleaved, worst in ((True, 0.0), (False, 0.5)):
        busy = Transient()
        found = time_in_rounds(timers_on(busy), interleaved=interleaved)
        errors = [t.p50_ms(b) / true_ms(f, k, b) - 1.0
                  for (_, f, k, sizes), t in zip(CONFIGS, found, strict=True) for b in sizes]
        assert max(errors) == pytest.approx(worst, abs=1e-6), (interleaved, errors)


# -- into the profile ----------------------------------------------------------------------------


def rounds_timings() -> Timings:
    """Two batch sizes, four rounds each; the third round of each ran 30 % slow."""
    rng = np.random.default_rng(3)
    samples, rounds = {}, {}
    for b, base in ((1, 20.0), (4, 60.0)):
        xs, rs = [], []
        for r, factor in enumerate((1.0, 1.0, 1.3, 1.0)):
            xs += list(base * factor * rng.uniform(0.97, 1.05, 25))
            rs += [r] * 25
        samples[b], rounds[b] = np.asarray(xs), np.asarray(rs)
    return Timings(samples_ms=samples, wall_ms=samples, round_of=rounds)


def test_a_profile_stores_the_rounds_keeps_their_median_and_fits_it():
    from simscale.profiler.assemble import Measurements, config_profile
    from simscale.profiler.plan import Config

    cfg = Config("resnet50", "cpu", 1, (1, 4))
    t = rounds_timings()
    served = ({0.0: ([21.0] * 3, [20.0] * 3), 0.05: ([22.0] * 3, [20.0] * 3)}, [19.5] * 3)
    m = Measurements(trained={}, preprocessing=None, timings={cfg: t}, retried={},
                     memory={(cfg, 1): 100.0, (cfg, 4): 120.0}, cold={}, served={cfg: served})
    cp = config_profile(cfg, m)
    # the serving overheads are taken against the replica's tight-loop predict
    assert cp.serving.loop_predict_ms_p50 == 19.5 and cp.serving.overhead_ms == pytest.approx(2.5)
    for stats in cp.batches:
        b = stats.batch_size
        assert stats.round_p50_ms == pytest.approx(t.round_p50_ms(b).tolist(), abs=1e-5)
        assert len(stats.round_p50_ms) == 4
        # the slow round does not move the kept median; the pooled one it does
        assert stats.p50_ms == pytest.approx(t.p50_ms(b))
        assert stats.p50_ms < float(np.median(t.samples_ms[b]))
        assert stats.p50_ms == pytest.approx(np.percentile(stats.samples_ms, 50), rel=0.02)
    # the fitted median goes through the kept medians
    model = ServiceTimeModel(cp.fit)
    for stats in cp.batches:
        assert float(model.median_s(stats.batch_size)) * 1000 == pytest.approx(stats.p50_ms,
                                                                               rel=0.05)


def test_round_medians_are_rescaled_shown_and_a_large_spread_is_noted():
    from simscale.profiler.schema import load_profile
    from simscale.profiler.show import describe_rounds, rounds_note

    base = load_profile("default")
    assert describe_rounds(None) == "-"
    assert describe_rounds([77.1, 80.0, 79.0, 78.0]) == "77.10..80.00 (4)"

    def with_rounds(spread: float | None):
        """``base`` with two rounds per batch size, ``spread`` apart (None: no rounds)."""
        models = {}
        for name, mp in base.models.items():
            configs = []
            for cfg in mp.configs:
                batches = [b.model_copy(update={"round_p50_ms": None if spread is None
                                                else [b.p50_ms, b.p50_ms * spread]})
                           for b in cfg.batches]
                configs.append(cfg.model_copy(update={"batches": batches}))
            models[name] = mp.model_copy(update={"configs": configs})
        return base.model_copy(update={"models": models})

    steady, drifted = with_rounds(1.04), with_rounds(1.25)
    assert rounds_note(with_rounds(None)) is None  # no rounds (older profiles): nothing to judge
    assert rounds_note(steady) is None
    note = rounds_note(drifted)
    # only batches slower than 10 ms are judged: ResNet50's 12 (3 named, 9 more), not the
    # tabular models'
    assert note is not None and "resnet50/cpu/" in note and "+25%" in note
    assert "and 9 more" in note
    assert "xgboost" not in note and "linear_regression" not in note
    # rescaling a profile scales its rounds with its other times
    b = drifted.rescaled(2.0).config("resnet50", "cpu", 1).batches[0]
    b0 = drifted.config("resnet50", "cpu", 1).batches[0]
    assert b.round_p50_ms == pytest.approx([2.0 * v for v in b0.round_p50_ms])


def test_a_serving_replica_is_timed_in_rounds_and_leaves_nothing_behind(tmp_path):
    pytest.importorskip("sklearn")
    import psutil

    from simscale.profiler.steps import ServingReplica
    from simscale.profiler.zoo import train_model

    art = train_model("linear_regression", tmp_path).artifact
    with ServingReplica("linear_regression", "cpu", 1, art, gaps_s=(0.0, 0.005)) as replica:
        replica.run_round(2)
        replica.run_round(0)  # a round without batches sends nothing
        replica.run_round(3)
    for rt, pred in replica.by_gap.values():
        assert len(rt) == len(pred) == 5
        assert all(0 < p < r for r, p in zip(rt, pred, strict=True))
    children = [c for c in psutil.Process().children(recursive=True)
                if "simscale.profiler.replica" in " ".join(c.cmdline())]
    assert not children


def test_the_profiler_times_and_serves_in_turns_and_retimes_the_disturbed(monkeypatch):
    """The run's timing phase with fakes for the models and the serving replicas: after round r
    of every configuration come round r of every serving replica, the serving batches are
    spread over the rounds, and a configuration found disturbed is timed again (all rounds)."""
    import dataclasses

    from simscale.profiler import runner
    from simscale.profiler.plan import Config, RunPlan
    from simscale.profiler.progress import ProgressBar
    from simscale.profiler.zoo import TrainedModel

    machine, log = FakeMachine(), []
    # the zoo's names (the progress bar knows them), the fakes' speeds
    zoo = ("linear_regression", "xgboost", "resnet50")
    fakes = {name: (f, k) for name, (_, f, k, _) in zip(zoo, CONFIGS, strict=False)}

    def fake_timer(cfg, artifact, plan, seed=0):
        f, k = fakes[cfg.model]
        model = machine.model(cfg.model, f, k)

        def predict(batch: int) -> None:
            log.append(("time", cfg.model))
            model(batch)

        return BatchTimer(predict, {b: b for b in cfg.batch_sizes}, PLAN, seed=seed,
                          clock=machine.clock, subtract_run_queue_wait=False)

    class FakeReplica:
        def __init__(self, model, device, threads, artifact, seed=0):
            self.model = model
            self.by_gap = {0.0: ([], []), 0.05: ([], [])}
            self.loop_ms = []

        def spawn(self):
            log.append(("spawn", self.model))
            return self

        def ready(self):
            return self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            log.append(("close", self.model))

        def run_round(self, batches):
            log.append(("serve", self.model))
            for rt, pred in self.by_gap.values():
                rt += [1.0] * batches
                pred += [0.5] * batches
            self.loop_ms += [0.4] * batches

    monkeypatch.setattr(runner, "config_timer", fake_timer)
    monkeypatch.setattr(runner, "ServingReplica", FakeReplica)
    configs = [Config(name, "cpu", 1, (1, 4)) for name in zoo]
    trained = {c.model: TrainedModel(c.model, None, {}, 1, 0.1, [1], "none") for c in configs}
    plan = dataclasses.replace(RunPlan.quick(), serving_batches=6, retry_wait_share=-1.0,
                               retry_until_s=1e9)
    timings, retried, served = runner._timing_and_serving(
        configs, trained, plan, ProgressBar(False, 1.0), wall_t0=0.0)
    # per timing round of all three, one serving round of all three; then the re-timing
    events = [e for i, e in enumerate(log) if i == 0 or e != log[i - 1]]
    names = [c.model for c in configs]
    serve_round = [("serve", n) for n in names]
    assert events[:3] == [("spawn", n) for n in names]
    expected = []
    for r in range(PLAN.timing_rounds):
        order = names if r % 2 == 0 else names[::-1]
        expected += [("time", n) for n in order] + serve_round
    assert events[3:3 + len(expected)] == expected
    assert [e[0] for e in events[3 + len(expected):]].count("close") == 3
    # 6 serving batches per gap in all, spread over the 4 rounds
    for c in configs:
        by_gap, loop = served[c]
        assert [len(rt) for rt, _ in by_gap.values()] == [6, 6] and len(loop) == 6
        assert timings[c].p50_ms(1) == pytest.approx(true_ms(*fakes[c.model], 1))
    # every configuration counted as disturbed (a share above -1): each timed twice
    assert sorted(retried) == sorted(f"{n}/cpu/1" for n in names)
    assert all(v == [0.0, 0.0] for v in retried.values())
