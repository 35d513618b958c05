"""The peers' predictors, run through our decision rule by the simulator: auto-ARIMA as NVIDIA Dynamo's
planner fits it (pmdarima on the last 100 points, non-seasonal search) and Holt-Winters (statsmodels,
additive trend and daily season, on 5-minute means of the last week)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from autoglm.core.forecast.series import Values

ARIMA_WINDOW = 100
HOLT_WINTERS_STEP_SECONDS = 300.0
HOLT_WINTERS_DAYS = 7


class PeerUnavailable(RuntimeError):
    """A peer's library is not installed."""


def _filled(x: Values) -> Values:
    """Gaps interpolated from their neighbours: neither peer library takes missing values."""
    known = np.flatnonzero(np.isfinite(x))
    if len(known) == 0:
        return np.zeros_like(x)
    return np.interp(np.arange(len(x)), known, x[known])


@dataclass
class AutoArima:
    """pmdarima.auto_arima on the last `window` steps, as Dynamo's ARIMA load predictor fits it."""

    window: int = ARIMA_WINDOW
    name: str = "auto-arima"

    def path(self, x: Values, t: int, steps: int) -> Values | None:
        try:
            import pmdarima
        except ImportError as error:
            raise PeerUnavailable("auto-ARIMA needs pmdarima: pip install 'open-autoglm[forecast]'") from error
        history = x[max(0, t + 1 - self.window) : t + 1]
        if np.isfinite(history).sum() < 10:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = pmdarima.auto_arima(_filled(history), suppress_warnings=True, error_action="ignore")
            return np.asarray(model.predict(n_periods=steps), dtype=float)


@dataclass
class HoltWinters:
    """statsmodels' Holt-Winters: additive trend and season of a day, fitted on 5-minute means of the last
    week (at least two days); its forecast spread back over the series' steps."""

    step_seconds: float
    name: str = "holt-winters"

    def path(self, x: Values, t: int, steps: int) -> Values | None:
        try:
            from statsmodels.tsa.holtwinters import ExponentialSmoothing
        except ImportError as error:
            raise PeerUnavailable("Holt-Winters needs statsmodels: pip install 'open-autoglm[forecast]'") from error
        per = max(1, round(HOLT_WINTERS_STEP_SECONDS / self.step_seconds))
        season = round(86400 / (per * self.step_seconds))
        usable = (t + 1) // per * per  # whole buckets, ending at t
        first = max(0, usable - HOLT_WINTERS_DAYS * season * per)
        if usable - first < 2 * season * per + per:
            return None
        buckets = _filled(x[t + 1 - (usable - first) : t + 1]).reshape(-1, per).mean(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(
                buckets, trend="add", seasonal="add", seasonal_periods=season, initialization_method="heuristic"
            ).fit()
            coarse = np.asarray(model.forecast(math.ceil(steps / per)), dtype=float)
        return np.repeat(coarse, per)[:steps]
