"""Timing rounds that take turns across configurations, so that a drift of the machine's speed
reaches every configuration alike.

Timing one configuration after another (all of its samples, then the next one's) hands a change
of the machine's speed -- a neighbour that starts a long job half-way through the profile --
entirely to the configurations measured after it: they are off by the whole drift, the earlier
ones not at all, and the profile's configurations disagree with each other by that much. Here
each configuration's timing is cut into timing rounds (:class:`~simscale.profiler.measure.
BatchTimer`) and the rounds take turns: round 1 of every configuration, then round 2 of every
configuration in the reverse order, and so on (:func:`round_order`; the reversal means a drift
that grows steadily during the run reaches each configuration equally over two rounds). Each
configuration keeps the median of its rounds' medians
(:meth:`~simscale.profiler.measure.Timings.p50_ms`).

What that buys, for a step change of the speed by ``d`` (say 20 %) during the timing (the median
of an even number of rounds is the mean of the middle two):

- a step that covers fewer than half of a configuration's rounds does not move its median;
- one that covers exactly half moves it by ``d/2``, every configuration alike, where one after
  another moves half of them by ``d`` and the other half not at all;
- one that covers more than half moves it by ``d``, as one after another moves every
  configuration measured after the step.

(A round that the step cuts counts on the side where most of its calls fell.) The
configurations so saw the same machine and agree with each other. ``benchmarks/
profile_drift.py`` measures it with a real background load.

Between two rounds the caller may measure something else (``after_round``): the profiler runs a
round of every serving replica there, so that the serving overheads and the batch timings see
the same machine too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from simscale.profiler.measure import BatchTimer, Timings


def round_order(rounds: Sequence[int], *, interleaved: bool = True) -> list[tuple[int, int]]:
    """``(configuration, round)`` pairs, 0-based, in the order they run, for configurations
    that have ``rounds[i]`` timing rounds each.

    Interleaved: round ``r`` of every configuration that has one, in the configurations' order
    for even ``r`` and in the reverse order for odd ``r``. Not interleaved (the old way, kept for
    comparison): every round of the first configuration, then of the next, and so on.
    """
    if not interleaved:
        return [(c, r) for c, n in enumerate(rounds) for r in range(n)]
    out: list[tuple[int, int]] = []
    for r in range(max(rounds, default=0)):
        have = [c for c, n in enumerate(rounds) if r < n]
        out += [(c, r) for c in (have if r % 2 == 0 else reversed(have))]
    return out


def time_in_rounds(
    timers: Sequence[BatchTimer],
    *,
    interleaved: bool = True,
    after_round: Callable[[int], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[Timings]:
    """Run every timer's timing rounds in :func:`round_order` and return their timings (in the
    order of ``timers``).

    ``on_step(configuration, round)`` is called before each step (for progress bars);
    ``after_round(r)`` after round ``r`` of every configuration, when ``interleaved`` (one
    after another, the rounds of a configuration run back to back and it is not called).
    """
    order = round_order([t.rounds for t in timers], interleaved=interleaved)
    last_of_round = {r: i for i, (_, r) in enumerate(order)}
    for i, (c, r) in enumerate(order):
        if on_step is not None:
            on_step(c, r)
        timers[c].run_round()
        if interleaved and after_round is not None and last_of_round[r] == i:
            after_round(r)
    return [t.timings() for t in timers]
