"""Governors: the small rules many autoscalers wrap around their core recommendation.

A strategy's core computes a raw desired count; a chain of governors then turns it into what is
actually asked for, the way Ray Serve wraps its policy function with bounds and delays and the
Kubernetes HPA controller passes its recommendation through ``stabilizeRecommendationWithBehaviors``
and ``convertDesiredReplicasWithBehaviorRate`` (``pkg/controller/podautoscaler/horizontal.go``).

Each governor sees a :class:`Step` (time, current and desired count, bounds) and returns the count
it allows. After the whole chain has run, every governor's ``commit`` is told the final count, so
rules that depend on what was *done* (cooldowns, rate limits per period) remember it. Governors
count anything integer: replicas for horizontal scaling, threads per replica for vertical scaling.

State is plain attributes; the same sequence of steps gives the same counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

PolicyKind = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]


@dataclass(frozen=True, init=False)
class Step:
    """One decision to govern.

    ``current``: the count in force now (for replicas: pending + starting + ready);
    ``desired``: what the rule before this governor asks for; ``ready``: replicas serving now
    (the base of Knative's rate limits); ``time_s``: simulation time (s).
    """

    time_s: float
    current: int
    desired: int
    min_count: int
    max_count: int
    ready: int = 0

    def __init__(self, time_s: float, current: int, desired: int, min_count: int,
                 max_count: int, ready: int = 0) -> None:
        # the dataclass's own __init__, written straight into the instance (faster than a
        # frozen dataclass's object.__setattr__ per field)
        d = self.__dict__
        d["time_s"] = time_s
        d["current"] = current
        d["desired"] = desired
        d["min_count"] = min_count
        d["max_count"] = max_count
        d["ready"] = ready


class Governor:
    """A rule applied to a desired count. Subclasses override ``apply`` and maybe ``commit``."""

    def apply(self, step: Step) -> int:
        """The count this governor allows for ``step`` (may record the raw recommendation)."""
        return step.desired

    def commit(self, step: Step, final: int) -> None:
        """Told the count the whole chain settled on (``step.current`` -> ``final``)."""


class Chain:
    """Governors applied in order; ``chain(step)`` returns the final count."""

    def __init__(self, *governors: Governor):
        self.governors = list(governors)

    def __call__(self, step: Step) -> int:
        desired = step.desired
        for governor in self.governors:
            if desired is not step.desired:  # (a Step built directly: replace() is slow)
                step_now = (Step(step.time_s, step.current, desired, step.min_count,
                                 step.max_count, step.ready) if type(step) is Step
                            else replace(step, desired=desired))
            else:
                step_now = step
            desired = int(governor.apply(step_now))
        for governor in self.governors:
            governor.commit(step, desired)
        return desired


def clamp(value: int, low: int, high: int) -> int:
    """``value`` limited to ``[low, high]`` (``high`` wins when ``low > high``)."""
    return int(min(max(value, low), high))


class Bounds(Governor):
    """Keep the count within ``[min_count, max_count]`` of the step (the service's bounds)."""

    def apply(self, step: Step) -> int:
        return clamp(step.desired, step.min_count, step.max_count)


class _RecommendationWindow(Governor):
    """What the recommendation windows share: the ``(time s, recommendation)`` records, and
    on the first call the current count recorded as one when ``seed`` says so."""

    def __init__(self) -> None:
        self.records: list[tuple[float, int]] = []
        self._seeded = False

    def _seed_once(self, step: Step, seed: bool) -> None:
        if not self._seeded:
            self._seeded = True
            if seed:
                self.records.append((step.time_s, step.current))


class StabilizationWindow(_RecommendationWindow):
    """Kubernetes HPA stabilization windows (``behavior.*.stabilizationWindowSeconds``).

    The result starts at the current count; it is raised to the *lowest* recommendation of the
    last ``up_window_s`` seconds (now included) and lowered to the *highest* recommendation of the
    last ``down_window_s`` seconds (now included). So a scale-down happens only to a level every
    recommendation of the down window allowed, and a scale-up only to a level the whole up window
    asked for. The raw recommendation is recorded on every call.

    With ``seed_with_current`` the first call records the current count as a recommendation, as
    the controller's ``maybeInitScaleDownStabilizationWindow`` does: no scale-down during the first
    ``down_window_s`` seconds. When the recommendation is below the current count the result is
    at most the current count; Knative's scale-down delay, which holds the window's maximum
    whatever the current count, is :class:`MaxWindow`.
    """

    def __init__(self, up_window_s: float = 0.0, down_window_s: float = 300.0,
                 seed_with_current: bool = True):
        super().__init__()
        self.up_window_s = up_window_s
        self.down_window_s = down_window_s
        self.seed_with_current = seed_with_current

    def apply(self, step: Step) -> int:
        now = step.time_s
        self._seed_once(step, self.seed_with_current and self.down_window_s > 0)
        up_cutoff = now - self.up_window_s
        down_cutoff = now - self.down_window_s
        up = step.desired
        down = step.desired
        keep_after = min(up_cutoff, down_cutoff)
        stale = 0
        records = self.records
        for t, rec in records:  # (min and max as the builtins pick: the first of equals)
            if t > up_cutoff and rec < up:
                up = rec
            if t > down_cutoff and rec > down:
                down = rec
            if not t > keep_after:
                stale += 1
        recommendation = max(step.current, up)
        recommendation = min(recommendation, down)
        if stale == 1 and not records[0][0] > keep_after:
            del records[0]  # (the usual case: the oldest record left the windows)
        elif stale:
            records = self.records = [(t, r) for t, r in records if t > keep_after]
        records.append((now, step.desired))
        return recommendation


@dataclass(frozen=True)
class ScalingPolicy:
    """One HPA scaling policy: change by ``value`` pods (``Pods``) or ``value`` % (``Percent``)
    within any ``period_s`` seconds."""

    kind: PolicyKind
    value: int
    period_s: float


class RateLimit(Governor):
    """Kubernetes HPA scaling policies per period (``behavior.scaleUp/scaleDown.policies``).

    For each policy, the count at the start of its period (the current count minus the scale-ups
    plus the scale-downs committed during the last ``period_s``) may change by ``value`` pods or
    by ``value`` percent (rounded up when adding, down when removing). ``select``
    picks among the policies: ``Max`` the largest change, ``Min`` the smallest, ``Disabled``
    no change in that direction. As ``calculateScaleUpLimitWithScalingRules`` and
    ``calculateScaleDownLimitWithBehaviors`` in the controller; the service's bounds are applied
    as ``convertDesiredReplicasWithBehaviorRate`` does.
    """

    def __init__(self, up_policies: list[ScalingPolicy], down_policies: list[ScalingPolicy],
                 up_select: SelectPolicy = "Max", down_select: SelectPolicy = "Max"):
        self.up_policies = list(up_policies)
        self.down_policies = list(down_policies)
        self.up_select = up_select
        self.down_select = down_select
        self.up_events: list[tuple[float, int]] = []
        self.down_events: list[tuple[float, int]] = []

    @staticmethod
    def _changed_in(events: list[tuple[float, int]], now: float, period_s: float) -> int:
        if not events:
            return 0
        cutoff = now - period_s
        return sum(n for t, n in events if t > cutoff)

    def up_limit(self, now: float, current: int) -> int:
        """Highest count the scale-up policies allow now."""
        if self.up_select == "Disabled" or not self.up_policies:
            return current
        proposals = []
        for p in self.up_policies:
            start = (current - self._changed_in(self.up_events, now, p.period_s)
                     + self._changed_in(self.down_events, now, p.period_s))
            if p.kind == "Pods":
                proposals.append(start + p.value)
            else:
                proposals.append(math.ceil(start * (1 + p.value / 100.0)))
        return max(proposals) if self.up_select == "Max" else min(proposals)

    def down_limit(self, now: float, current: int) -> int:
        """Lowest count the scale-down policies allow now."""
        if self.down_select == "Disabled" or not self.down_policies:
            return current
        proposals = []
        for p in self.down_policies:
            start = (current - self._changed_in(self.up_events, now, p.period_s)
                     + self._changed_in(self.down_events, now, p.period_s))
            if p.kind == "Pods":
                proposals.append(start - p.value)
            else:
                proposals.append(int(start * (1 - p.value / 100.0)))
        return min(proposals) if self.down_select == "Max" else max(proposals)

    def apply(self, step: Step) -> int:
        if step.desired > step.current:
            limit = max(self.up_limit(step.time_s, step.current), step.current)
            return min(step.desired, step.max_count, limit)
        if step.desired < step.current:
            limit = min(self.down_limit(step.time_s, step.current), step.current)
            return max(step.desired, step.min_count, limit)
        return step.desired

    def commit(self, step: Step, final: int) -> None:
        if self.up_events or self.down_events:  # forget the events older than every period
            longest = max([p.period_s for p in self.up_policies + self.down_policies],
                          default=0.0)
            cutoff = step.time_s - longest
            self.up_events = [(t, n) for t, n in self.up_events if t > cutoff]
            self.down_events = [(t, n) for t, n in self.down_events if t > cutoff]
        if final > step.current:
            self.up_events.append((step.time_s, final - step.current))
        elif final < step.current:
            self.down_events.append((step.time_s, step.current - final))


class RelativeRateLimit(Governor):
    """Knative's rate limits relative to the ready count (``max-scale-up-rate``,
    ``max-scale-down-rate``): at most ``ceil(up_rate * ready)`` and at least
    ``floor(ready / down_rate)``, with ``ready`` taken as at least 1
    (``pkg/autoscaler/scaling/autoscaler.go``)."""

    def __init__(self, max_up_rate: float = 1000.0, max_down_rate: float = 2.0):
        self.max_up_rate = max_up_rate
        self.max_down_rate = max_down_rate

    def limits(self, ready: int) -> tuple[int, int]:
        """``(lowest, highest)`` counts allowed with ``ready`` replicas serving."""
        base = max(1, ready)
        return math.floor(base / self.max_down_rate), math.ceil(self.max_up_rate * base)

    def apply(self, step: Step) -> int:
        low, high = self.limits(step.ready)
        return clamp(step.desired, low, high)


class Cooldown(Governor):
    """No change within ``cooldown_s`` seconds of the last change (AWS simple/step scaling
    cooldown). ``up_cooldown_s`` / ``down_cooldown_s`` when the two directions differ."""

    def __init__(self, cooldown_s: float = 300.0, down_cooldown_s: float | None = None):
        self.up_cooldown_s = cooldown_s
        self.down_cooldown_s = cooldown_s if down_cooldown_s is None else down_cooldown_s
        self.last_change_s: float | None = None

    def apply(self, step: Step) -> int:
        if self.last_change_s is None or step.desired == step.current:
            return step.desired
        wait_s = self.up_cooldown_s if step.desired > step.current else self.down_cooldown_s
        if step.time_s - self.last_change_s < wait_s:
            return step.current
        return step.desired

    def commit(self, step: Step, final: int) -> None:
        if final != step.current:
            self.last_change_s = step.time_s


class ConsecutiveDelay(Governor):
    """Act only when the wish to scale has held for a while (Ray Serve's ``upscale_delay_s`` and
    ``downscale_delay_s``): a scale-up passes once every decision of the last ``up_delay_s``
    seconds wanted more than the current count, a scale-down once every decision of the last
    ``down_delay_s`` seconds wanted fewer. A change of direction restarts the clock."""

    def __init__(self, up_delay_s: float = 30.0, down_delay_s: float = 600.0):
        self.up_delay_s = up_delay_s
        self.down_delay_s = down_delay_s
        self._direction = 0
        self._since_s = 0.0

    def apply(self, step: Step) -> int:
        direction = (step.desired > step.current) - (step.desired < step.current)
        if direction != self._direction:
            self._direction = direction
            self._since_s = step.time_s
        if direction == 0:
            return step.desired
        delay_s = self.up_delay_s if direction > 0 else self.down_delay_s
        if step.time_s - self._since_s >= delay_s:
            return step.desired
        return step.current

    def commit(self, step: Step, final: int) -> None:
        if final != step.current:
            self._direction = 0


class MaxWindow(_RecommendationWindow):
    """The highest recommendation of the last ``window_s`` seconds (now included), whatever the
    current count: a hold that delays scale-downs and never delays a scale-up.

    Two controllers use it:

    - Knative's ``scale-down-delay`` (``pkg/autoscaler/scaling/autoscaler.go``, ``Scale``: the
      desired count is recorded in a ``max.TimeWindow`` of that duration and its ``Current()``,
      the window's maximum, is what the autoscaler asks for). A record counts while
      ``now - t < window_s`` (``strict``, the window's bucket rule at the 2 s tick).
    - The Kubernetes HPA without ``behavior`` (``horizontal.go`` ``stabilizeRecommendation``: the
      maximum of the recommendations *not older* than ``--horizontal-pod-autoscaler-downscale-
      stabilization``, so ``now - t <= window_s``, ``strict=False``), whose window starts with
      the current count (``recordInitialRecommendation``, ``seed_with_current``).

    Unlike :class:`StabilizationWindow` the result is not capped at the current count: a
    scale-up that an earlier, higher recommendation asked for is still asked for.
    """

    def __init__(self, window_s: float, *, strict: bool = True, seed_with_current: bool = False):
        super().__init__()
        self.window_s = window_s
        self.strict = strict
        self.seed_with_current = seed_with_current

    def apply(self, step: Step) -> int:
        now = step.time_s
        self._seed_once(step, self.seed_with_current)
        cutoff = now - self.window_s
        if self.strict:
            self.records = [(t, r) for t, r in self.records if t > cutoff]
        else:
            self.records = [(t, r) for t, r in self.records if t >= cutoff]
        best = max([step.desired, *(r for _, r in self.records)])
        self.records.append((now, step.desired))
        return best


class ScaleUpLimit(Governor):
    """The Kubernetes HPA's scale-up limit without ``behavior``: at most
    ``max(factor * current, minimum)`` replicas per sync (``horizontal.go``
    ``calculateScaleUpLimit``: ``scaleUpLimitFactor`` 2, ``scaleUpLimitMinimum`` 4), applied by
    ``convertDesiredReplicasWithRules`` with the bounds."""

    def __init__(self, factor: float = 2.0, minimum: int = 4):
        self.factor = factor
        self.minimum = minimum

    def limit(self, current: int) -> int:
        """Highest count allowed from ``current`` replicas."""
        return int(max(self.factor * current, self.minimum))

    def apply(self, step: Step) -> int:
        if step.desired > step.current:
            return min(step.desired, self.limit(step.current))
        return step.desired
