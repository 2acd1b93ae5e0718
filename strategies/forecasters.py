"""Arrival-rate forecasters, and the history of observed rates they are fed.

A forecaster is an object with ``forecast(values, step_s, horizon_s) -> float``: ``values`` are
mean arrival rates (requests/s) of consecutive bins of ``step_s`` seconds, oldest first, and the
answer is the rate expected ``horizon_s`` seconds after the centre of the last bin (never below
0). Forecasters hold no state between calls except :class:`Arima`, which keeps its fitted model
between scheduled refits (so the same sequence of calls gives the same forecasts).

:class:`RateHistory` gathers the per-second arrival counts of successive observations (each
observation holds only a recent window) into one series and bins it. :class:`ForecastParams`
declares, once, the forecast parameters of the strategies that plan for a forecast rate
(``predictive``, ``cost_aware``).

References: Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed.), ch. 8
(exponential smoothing: Holt, Holt-Winters additive) and ch. 9 (ARIMA, via statsmodels).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Protocol

import numpy as np
from pydantic import Field

from simscale.strategies.base import Observation
from simscale.strategies.params import StrategyParams


class Forecaster(Protocol):
    """Anything with this method is a forecaster."""

    def forecast(self, values: np.ndarray, step_s: float, horizon_s: float) -> float: ...


def _tail(values: np.ndarray, step_s: float, window_s: float) -> np.ndarray:
    n = max(1, int(round(window_s / step_s)))
    return np.asarray(values[-n:], dtype=float)


class LastValue:
    """The last bin's rate."""

    def forecast(self, values: np.ndarray, step_s: float, horizon_s: float) -> float:
        return max(0.0, float(values[-1])) if len(values) else 0.0


class MovingAverage:
    """The mean rate of the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 60.0):
        self.window_s = window_s

    def forecast(self, values: np.ndarray, step_s: float, horizon_s: float) -> float:
        if not len(values):
            return 0.0
        return max(0.0, float(np.mean(_tail(values, step_s, self.window_s))))


class LinearTrend:
    """Least-squares line through the last ``window_s`` seconds, extrapolated ``horizon_s``."""

    def __init__(self, window_s: float = 300.0):
        self.window_s = window_s

    def forecast(self, values: np.ndarray, step_s: float, horizon_s: float) -> float:
        y = _tail(values, step_s, self.window_s)
        if len(y) < 2:
            return max(0.0, float(y[-1])) if len(y) else 0.0
        t = (np.arange(len(y)) - (len(y) - 1)) * step_s  # last bin at t = 0
        slope, intercept = np.polyfit(t, y, 1)
        return max(0.0, float(intercept + slope * horizon_s))


class Holt:
    """Holt's linear (double exponential) smoothing over the last ``window_s`` seconds:
    ``l = alpha y + (1 - alpha)(l + b)``, ``b = beta (l - l_prev) + (1 - beta) b``; forecast
    ``l + h b`` with ``h = horizon_s / step_s``."""

    def __init__(self, alpha: float = 0.7, beta: float = 0.4, window_s: float = 900.0):
        self.alpha = alpha
        self.beta = beta
        self.window_s = window_s

    def forecast(self, values: np.ndarray, step_s: float, horizon_s: float) -> float:
        y = _tail(values, step_s, self.window_s)
        if len(y) < 2:
            return max(0.0, float(y[-1])) if len(y) else 0.0
        level, trend = _holt(y, self.alpha, self.beta)
        return max(0.0, level + trend * horizon_s / step_s)


def _holt(y: np.ndarray, alpha: float, beta: float) -> tuple[float, float]:
    level, trend = float(y[0]), float(y[1] - y[0])
    for value in y[1:]:
        previous = level
        level = alpha * float(value) + (1 - alpha) * (level + trend)
        trend = beta * (level - previous) + (1 - beta) * trend
    return level, trend


class HoltWinters:
    """Additive Holt-Winters (triple exponential smoothing) with a season of ``season_s``
    seconds, over the last ``seasons`` seasons of history. Falls back to :class:`Holt` while less
    than two seasons have been seen."""

    def __init__(self, season_s: float = 3600.0, alpha: float = 0.3, beta: float = 0.05,
                 gamma: float = 0.3, seasons: int = 4):
        self.season_s = season_s
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.seasons = seasons

    def forecast(self, values: np.ndarray, step_s: float, horizon_s: float) -> float:
        m = max(1, int(round(self.season_s / step_s)))
        y = np.asarray(values[-m * self.seasons:], dtype=float)
        if len(y) < 2 * m or m < 2:
            return Holt(self.alpha, self.beta).forecast(values, step_s, horizon_s)
        y = y[len(y) % m:]  # whole seasons, so season index 0 is the first bin
        level = float(np.mean(y[:m]))
        trend = float(np.mean(y[m:2 * m]) - level) / m
        season = list(y[:m] - level)
        for i in range(m, len(y)):
            s = season[i % m]
            previous = level
            level = self.alpha * (y[i] - s) + (1 - self.alpha) * (level + trend)
            trend = self.beta * (level - previous) + (1 - self.beta) * trend
            season[i % m] = self.gamma * (y[i] - level) + (1 - self.gamma) * s
        h = horizon_s / step_s
        k = int(math.ceil(h - 1e-9)) if h > 0 else 0
        return max(0.0, level + trend * h + season[(len(y) - 1 + max(k, 1)) % m])


class Arima:
    """ARIMA(p, d, q): parameters estimated by statsmodels (state-space maximum likelihood) on the
    last ``window_s`` seconds, re-estimated every ``refit_every`` calls; every call forecasts with
    the current parameters by the ARIMA recursion on the latest data (residuals by the
    conditional-sum-of-squares recursion, future shocks zero, then ``d`` integrations). Falls
    back to :class:`Holt` on short history or when fitting fails."""

    def __init__(self, order: tuple[int, int, int] = (1, 1, 1), window_s: float = 1800.0,
                 refit_every: int = 40):
        self.order = tuple(order)
        self.window_s = window_s
        self.refit_every = refit_every
        self._calls = 0
        self._fitted: tuple[np.ndarray, np.ndarray, float] | None = None  # ar, ma, mean

    def fit(self, y: np.ndarray) -> None:
        """Estimate the AR and MA coefficients (and the mean when ``d = 0``) from ``y``."""
        from statsmodels.tsa.arima.model import ARIMA

        with warnings.catch_warnings(), _one_blas_thread():
            warnings.simplefilter("ignore")
            result = ARIMA(y, order=self.order).fit(cov_type="none")
        names = list(result.model.param_names)
        mean = float(result.params[names.index("const")]) if "const" in names else 0.0
        self._fitted = (np.asarray(result.arparams, dtype=float),
                        np.asarray(result.maparams, dtype=float), mean)

    def forecast(self, values: np.ndarray, step_s: float, horizon_s: float) -> float:
        y = _tail(values, step_s, self.window_s)
        refit = self._calls % self.refit_every == 0 or self._fitted is None
        self._calls += 1
        if len(y) < 3 * (sum(self.order) + 2):
            return Holt().forecast(values, step_s, horizon_s)
        if float(np.ptp(y)) < 1e-9:  # a flat series: nothing to fit
            return max(0.0, float(y[-1]))
        if refit:
            try:
                self.fit(y)
            except Exception:  # noqa: BLE001 - any numerical failure: fall back, do not crash
                self._fitted = None
        if self._fitted is None:
            return Holt().forecast(values, step_s, horizon_s)
        h = max(horizon_s / step_s, 0.0)
        path = arima_path(y, self.order[1], *self._fitted, steps=max(1, int(math.ceil(h))))
        points = np.concatenate([[y[-1]], path])
        value = float(np.interp(h, np.arange(len(points)), points))
        return max(0.0, value) if math.isfinite(value) else max(0.0, float(y[-1]))


def _one_blas_thread() -> Any:
    """One BLAS thread while fitting: the state-space fit works on tiny matrices, where BLAS
    threads only contend (several times slower on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only a speed-up
        return contextlib.nullcontext()
    return threadpool_limits(1)


def arima_path(y: np.ndarray, d: int, ar: np.ndarray, ma: np.ndarray, mean: float,
               steps: int) -> np.ndarray:
    """Forecasts of ``y`` for the next ``steps`` steps from ARIMA coefficients
    (``(1 - sum ar_i L^i)(1 - L)^d (y - mean) = (1 + sum ma_j L^j) e``)."""
    w = np.diff(y, n=d) if d else np.asarray(y, dtype=float)
    x = list(w - mean)
    e = [0.0] * len(x)
    p, q = len(ar), len(ma)
    for t in range(len(x)):
        pred = sum(ar[i] * x[t - 1 - i] for i in range(p) if t - 1 - i >= 0)
        pred += sum(ma[j] * e[t - 1 - j] for j in range(q) if t - 1 - j >= 0)
        e[t] = x[t] - pred
    for _ in range(steps):
        t = len(x)
        pred = sum(ar[i] * x[t - 1 - i] for i in range(p) if t - 1 - i >= 0)
        pred += sum(ma[j] * e[t - 1 - j] for j in range(q) if t - 1 - j >= 0)
        x.append(pred)
        e.append(0.0)
    path = np.asarray(x[-steps:]) + mean
    for k in reversed(range(d)):
        path = np.diff(y, n=k)[-1] + np.cumsum(path)
    return path


FORECASTERS: dict[str, type] = {
    "last_value": LastValue,
    "moving_average": MovingAverage,
    "linear_trend": LinearTrend,
    "holt": Holt,
    "holt_winters": HoltWinters,
    "arima": Arima,
}


def make_forecaster(name: str, params: dict[str, Any] | None = None) -> Forecaster:
    """A forecaster by name (one of :data:`FORECASTERS`) with keyword ``params``."""
    if name not in FORECASTERS:
        raise ValueError(f"unknown forecaster '{name}' (one of {', '.join(FORECASTERS)})")
    return FORECASTERS[name](**(params or {}))


class ForecastParams(StrategyParams):
    """The forecast parameters shared by the strategies that plan for a forecast arrival rate:
    which forecaster (and its own parameters, e.g. ARIMA's order and refit schedule), how the
    rate history is binned and kept, how far ahead to forecast, and the window of the observed
    rate that the plan never goes below. Fields are checked when the model is built: an unknown
    forecaster or forecaster parameter is an error."""

    forecaster: str = Field(default="holt", description="one of: " + ", ".join(FORECASTERS))
    forecaster_params: dict[str, Any] = Field(default_factory=dict, description=(
        "the forecaster's parameters, e.g. {window_s: 300} or {season_s: 3600} or "
        "{order: [1, 1, 1], refit_every: 40}"))
    lead_s: float | None = Field(default=None, ge=0, description=(
        "how far ahead to provision (s); default: cold start of the current size + sync period"))
    bin_s: float = Field(default=5.0, ge=1, description="the rate series' step (s)")
    history_s: float = Field(default=7200.0, ge=60, description="rate history kept (s)")
    reactive_window_s: float = Field(default=10.0, gt=0,
                                     description="window of the observed rate for the floor (s)")

    def model_post_init(self, _context: Any) -> None:
        """Reject an unknown forecaster, or parameters its constructor does not take (as a
        ``ValueError``, which pydantic reports as a validation error of this model)."""
        if self.forecaster not in FORECASTERS:
            raise ValueError(f"forecaster must be one of: {', '.join(FORECASTERS)}")
        try:
            make_forecaster(self.forecaster, self.forecaster_params)
        except TypeError as exc:  # an unknown or missing keyword: a user error, not a crash
            message = str(exc).split("() ", 1)[-1]
            raise ValueError(f"forecaster_params for '{self.forecaster}': {message}") from None


class RateHistory:
    """Per-second arrival counts gathered from successive observations.

    Each observation's ``arrivals_per_s`` covers the whole seconds ending at
    ``floor(time_s - metric_lag_s)``; seconds already held are not added twice. A gap (seconds
    no observation covered) restarts the history. At most ``max_s`` seconds are kept.
    """

    def __init__(self, max_s: float):
        self.max_s = max_s
        self.counts = np.zeros(0)
        self.end_s: int | None = None  # exclusive end (s) of the history

    def update(self, obs: Observation) -> None:
        """Add the seconds of ``obs`` not yet held."""
        arrivals = np.asarray(obs.arrivals_per_s, dtype=float)
        # the engine's own rule (simulator/observations.py: whole seconds up to
        # int(max(t - lag, 0))); a tolerance here would place the history a second late when
        # t - lag falls just below a whole second (hypothesis found lag_s = 1e-12)
        end = int(math.floor(max(obs.time_s - obs.metric_lag_s, 0.0)))
        start = end - len(arrivals)
        if self.end_s is None or start > self.end_s or end < self.end_s - len(self.counts):
            self.counts = arrivals.copy()
        elif end > self.end_s:
            self.counts = np.concatenate([self.counts, arrivals[self.end_s - start:]])
        else:
            return
        self.end_s = end
        keep = int(self.max_s)
        if len(self.counts) > keep:
            self.counts = self.counts[-keep:]

    def binned(self, bin_s: float) -> tuple[np.ndarray, float]:
        """``(rates, last_centre_s)``: mean rate of whole bins of ``bin_s`` seconds aligned to the
        end of the history (oldest first), and the time (s) of the last bin's centre."""
        n = max(1, int(round(bin_s)))
        whole = len(self.counts) // n
        end = float(self.end_s or 0)
        if whole == 0:
            if len(self.counts):
                return np.array([float(np.mean(self.counts))]), end - len(self.counts) / 2.0
            return np.zeros(0), end
        tail = self.counts[len(self.counts) - whole * n:]
        return tail.reshape(whole, n).mean(axis=1), end - n / 2.0


class RateForecast:
    """The arrival rate a strategy plans for: a forecaster fed a :class:`RateHistory` that keeps
    ``history_s`` seconds and bins them by ``bin_s`` seconds (see :class:`ForecastParams`)."""

    def __init__(self, forecaster: Forecaster, bin_s: float, history_s: float):
        self.forecaster = forecaster
        self.bin_s = bin_s
        self.history = RateHistory(history_s)

    @classmethod
    def build(cls, forecaster: str | Forecaster, params: dict[str, Any] | None,
              bin_s: float, history_s: float) -> RateForecast:
        """A rate forecast from a forecaster name (with its ``params``) or instance."""
        model = make_forecaster(forecaster, params) if isinstance(forecaster, str) else forecaster
        return cls(model, bin_s, history_s)

    def __call__(self, obs: Observation, at_s: float) -> float:
        """Record ``obs`` and forecast the arrival rate (requests/s) at time ``at_s``."""
        self.history.update(obs)
        values, last_centre_s = self.history.binned(self.bin_s)
        if not len(values):
            return 0.0
        step_s = float(max(1, int(round(self.bin_s))))
        return float(self.forecaster.forecast(values, step_s, at_s - last_centre_s))
