"""Our predictors of the window peak, and the choice between them by rolling-origin backtest.

Each learns from a feature table (see features.py) and gives, for a step t, a point forecast of the peak
load over the decision's window and an upper bound at quantile `q`: seasonal naive (a day, a week ago),
ridge on lags and time features, gradient boosting with quantile loss. Point models get their upper bound
from the quantile of their own relative errors on the history they were fitted on (split conformal)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from autoglm.api.modeldeployment import ForecastModel
from autoglm.core.forecast.features import FEATURES, Matrix, Table
from autoglm.core.forecast.series import Values

DAY_PEAK, WEEK_PEAK = FEATURES.index("day_peak"), FEATURES.index("week_peak")
# Rows a model needs before it is trusted (below this the decision is reactive only, and says so).
MIN_ROWS = 120
CALIBRATION_ROWS = 3 * 1440
GBM_MAX_ROWS = 3000


class PredictorName(StrEnum):
    SEASONAL_DAY = "seasonal-day"
    SEASONAL_WEEK = "seasonal-week"
    RIDGE = "ridge"
    GRADIENT_BOOSTING = "gradient-boosting"


class Fitted(Protocol):
    @property
    def name(self) -> str: ...

    def predict(self, features: Matrix, level: Values) -> tuple[Values, Values]:
        """Point and upper forecast of the window peak (absolute load) for each row."""
        ...


def _ratio_quantile(actual: Values, point: Values, q: float) -> float:
    """The q-quantile of actual / point over rows where both are known: how far above its point forecast
    the peak has come, so point x this is an upper bound at q."""
    ok = np.isfinite(actual) & np.isfinite(point) & (point > 0)
    if ok.sum() < 10:
        return 1.0
    return float(max(np.quantile(actual[ok] / point[ok], q), 0.0))


@dataclass(frozen=True)
class SeasonalNaive:
    """The peak over the same window one season (a day or a week) ago."""

    name: str
    column: int
    inflation: float

    def predict(self, features: Matrix, level: Values) -> tuple[Values, Values]:
        point = features[:, self.column] * level
        return point, point * self.inflation


@dataclass(frozen=True)
class Regression:
    """A fitted regressor of the relative peak; `inflation` turns its point into the upper bound, unless
    the regressor is itself a quantile model (inflation 1)."""

    name: str
    model: Callable[[Matrix], Values]
    inflation: float

    def predict(self, features: Matrix, level: Values) -> tuple[Values, Values]:
        point = np.maximum(self.model(features), 0.0) * level
        return point, point * self.inflation


def _train_rows(data: Table) -> tuple[Matrix, Values, Values]:
    ok = np.isfinite(data.target) & np.isfinite(data.level)
    return data.features[ok], data.target[ok], data.level[ok]


def fit_predictor(name: PredictorName, data: Table, q: float) -> Fitted | None:
    """The predictor fitted on the rows of `data` whose target is known; None where the history cannot
    support it (too few rows, or no season of history for a seasonal model)."""
    features, target, level = _train_rows(data)
    if len(target) < MIN_ROWS:
        return None
    calibrate = slice(max(0, len(target) - CALIBRATION_ROWS), len(target))
    actual = target[calibrate] * level[calibrate]
    if name in (PredictorName.SEASONAL_DAY, PredictorName.SEASONAL_WEEK):
        column = DAY_PEAK if name == PredictorName.SEASONAL_DAY else WEEK_PEAK
        known = np.isfinite(features[calibrate, column])
        if known.sum() < MIN_ROWS:
            return None
        point = features[calibrate, column] * level[calibrate]
        return SeasonalNaive(name.value, column, _ratio_quantile(actual, point, q))
    if name == PredictorName.RIDGE:
        ridge = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), Ridge(alpha=1.0))
        ridge.fit(features, target)
        point = np.maximum(ridge.predict(features[calibrate]), 0.0) * level[calibrate]
        return Regression(name.value, ridge.predict, _ratio_quantile(actual, point, q))
    # Gradient boosting with quantile loss learns the upper bound itself, and where it is wide (ramps,
    # evenings) and narrow; the most recent rows, thinned evenly to a bound, keep a fit near 50 ms.
    take = np.linspace(0, len(target) - 1, min(len(target), GBM_MAX_ROWS)).astype(int)
    gbm = HistGradientBoostingRegressor(
        loss="quantile", quantile=q, max_iter=40, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=10
    )
    # a feature with no value yet (a week ago, on five days of history) is left out until it has one
    usable = ~np.isnan(features[take]).all(axis=0)
    gbm.fit(features[take][:, usable], target[take])

    def predict(rows: Matrix) -> Values:
        return np.asarray(gbm.predict(rows[:, usable]), dtype=np.float64)

    return Regression(name.value, predict, 1.0)


def pinball(actual: Values, upper: Values, q: float) -> float:
    """Mean quantile loss of `upper` as the q-quantile of `actual`, relative to the mean actual."""
    ok = np.isfinite(actual) & np.isfinite(upper)
    if not ok.any():
        return math.inf
    diff = actual[ok] - upper[ok]
    loss = np.maximum(q * diff, (q - 1) * diff).mean()
    return float(loss / max(float(np.mean(actual[ok])), 1e-9))


@dataclass(frozen=True)
class Selection:
    """The predictor chosen for a deployment, and each candidate's backtest score (lower is better)."""

    name: PredictorName | None
    scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def select_predictor(
    data: Table,
    q: float,
    candidates: tuple[PredictorName, ...] = tuple(PredictorName),
    folds: int = 3,
    fold_rows: int = 360,
) -> Selection:
    """Rolling-origin backtest over the last `folds` x `fold_rows` rows with a known target: each candidate
    is fitted on what lay before each origin and scored by quantile loss on the fold after it."""
    known = np.flatnonzero(np.isfinite(data.target) & np.isfinite(data.level))
    if len(known) < MIN_ROWS + fold_rows:
        return Selection(
            None, reason=f"{len(known)} steps of history with a known outcome; a backtest needs {MIN_ROWS + fold_rows}"
        )
    folds = max(1, min(folds, (len(known) - MIN_ROWS) // fold_rows))
    scores: dict[str, float] = {}
    for name in candidates:
        losses = []
        for k in range(folds, 0, -1):
            origin = len(known) - k * fold_rows
            test = known[origin : origin + fold_rows]
            # the fit may only use outcomes known at the origin: rows whose window ended before it
            train = known[data.rows[known] + data.reach < data.rows[test[0]]]
            fitted = fit_predictor(name, _subset(data, train), q)
            if fitted is None:
                break
            _, upper = fitted.predict(data.features[test], data.level[test])
            losses.append(pinball(data.target[test] * data.level[test], upper, q))
        if len(losses) == folds:
            scores[name.value] = float(np.mean(losses))
    if not scores:
        return Selection(None, reason="no predictor could be fitted on this history")
    best, *rest = sorted(scores, key=lambda n: scores[n])  # stable: a tie goes to the first candidate, as min did
    others = ", ".join(f"{n} {scores[n]:.3g}" for n in rest)
    against = f" ({scores[best]:.3g} against {others})" if others else ""
    return Selection(PredictorName(best), scores, reason=f"{best} had the lowest backtest loss{against}")


# What each value of spec.autoscaling.forecast.model lets the backtest choose from.
PREDICTORS_OF: dict[ForecastModel, tuple[PredictorName, ...]] = {
    ForecastModel.AUTO: tuple(PredictorName),
    ForecastModel.SEASONAL: (PredictorName.SEASONAL_DAY, PredictorName.SEASONAL_WEEK),
    ForecastModel.RIDGE: (PredictorName.RIDGE,),
    ForecastModel.GRADIENT_BOOSTING: (PredictorName.GRADIENT_BOOSTING,),
}


def choose_predictor(data: Table, q: float, model: ForecastModel = ForecastModel.AUTO) -> Selection:
    """The predictor the spec's `forecast.model` asks for: one named is taken as is (no backtest: it needs only
    the history to fit on); `seasonal` lets the backtest choose between a day and a week ago; `auto`, between
    all of them."""
    allowed = PREDICTORS_OF[model]
    if len(allowed) == 1:
        return Selection(allowed[0], reason=f"{allowed[0].value}, as spec.autoscaling.forecast.model asks")
    selection = select_predictor(data, q, allowed)
    if model is ForecastModel.AUTO:
        return selection
    return replace(selection, reason=f"{selection.reason}; forecast.model {model.value} allows only those")


def _subset(data: Table, rows: Values | np.ndarray) -> Table:
    index = np.asarray(rows, dtype=np.int64)
    return Table(data.rows[index], data.features[index], data.level[index], data.target[index], data.reach)


def timed_fit(name: PredictorName, data: Table, q: float) -> tuple[Fitted | None, float]:
    started = time.perf_counter()
    fitted = fit_predictor(name, data, q)
    return fitted, time.perf_counter() - started
