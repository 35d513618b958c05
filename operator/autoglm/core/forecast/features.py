"""What a predictor sees at step t: recent levels, the same window a day and a week ago, time of day and
week, all relative to the recent level so one model serves any load size; and the target it learns, the
peak load over the window the decision covers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autoglm.core.forecast.series import Values

Matrix = npt.NDArray[np.float64]
Indices = npt.NDArray[np.int64]
LEVEL_STEPS = 15
FEATURES = (
    "last",
    "mean5",
    "mean60",
    "day_peak",
    "day_level",
    "day_growth",
    "week_peak",
    "week_level",
    "week_growth",
    "tod_sin",
    "tod_cos",
    "dow_sin",
    "dow_cos",
)


@dataclass(frozen=True)
class Horizon:
    """The decision's window, in steps of the series: replicas asked for after step t are ready `lead` steps
    later and must carry the peak of steps t+1+lead .. t+lead+window."""

    lead: int
    window: int
    steps_per_day: int
    step_seconds: float
    start: float = 0.0

    def __post_init__(self) -> None:
        if self.lead < 0 or self.window < 1:
            raise ValueError(f"lead must be >= 0 and window >= 1 (got {self.lead}, {self.window})")

    @property
    def reach(self) -> int:
        """Steps after t the window's last step lies."""
        return self.lead + self.window


def trailing_mean(x: Values, width: int) -> Values:
    """m[t] = mean of the known values of x[t-width+1 .. t]; NaN where none is known."""
    known = ~np.isnan(x)
    sums = np.concatenate([[0.0], np.cumsum(np.where(known, x, 0.0))])
    counts = np.concatenate([[0], np.cumsum(known)])
    hi = np.arange(1, len(x) + 1)
    lo = np.maximum(hi - width, 0)
    n = counts[hi] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[hi] - sums[lo]) / np.maximum(n, 1), np.nan)


def leading_peak(x: Values, first: int, width: int) -> Values:
    """p[t] = max of the known values of x[t+first .. t+first+width-1]; NaN where none is known or the
    window leaves the series (negative `first` looks back)."""
    n = len(x)
    padded = np.full(n + 2 * (abs(first) + width), -np.inf)
    offset = abs(first) + width
    padded[offset : offset + n] = np.where(np.isnan(x), -np.inf, x)
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    starts = np.arange(n) + first + offset
    peaks = windows[starts].max(axis=1)
    inside = (np.arange(n) + first >= 0) & (np.arange(n) + first + width <= n)
    return np.where(inside & np.isfinite(peaks), peaks, np.nan)


@dataclass(frozen=True)
class Table:
    """Features and target for the steps `rows` of one series, with the level each is relative to."""

    rows: Indices
    features: Matrix
    level: Values
    target: Values  # peak over the window / level; NaN where the future is not known yet
    reach: int  # a row's target is known `reach` steps after it


def table(x: Values, horizon: Horizon, rows: Indices | None = None) -> Table:
    """Features (see FEATURES) and the relative target at each step of `rows` (default: every step)."""
    n = len(x)
    rows = np.arange(n) if rows is None else rows
    day = horizon.steps_per_day
    level = trailing_mean(x, LEVEL_STEPS)
    level = np.where(level > 0, level, np.nan)
    peak_ahead = leading_peak(x, 1 + horizon.lead, horizon.window)

    def shifted(values: Values, back: int) -> Values:
        out = np.full(n, np.nan)
        if back < n:
            out[back:] = values[: n - back]
        return out

    day_peak = leading_peak(x, 1 + horizon.lead - day, horizon.window)
    week_peak = leading_peak(x, 1 + horizon.lead - 7 * day, horizon.window)
    day_level, week_level = shifted(level, day), shifted(level, 7 * day)
    seconds = horizon.start + np.arange(n) * horizon.step_seconds
    tod = 2 * math.pi * (seconds % 86400) / 86400
    dow = 2 * math.pi * (seconds % (7 * 86400)) / (7 * 86400)
    with np.errstate(invalid="ignore", divide="ignore"):
        columns = [
            x / level,
            trailing_mean(x, 5) / level,
            trailing_mean(x, 60) / level,
            day_peak / level,
            day_level / level,
            day_peak / day_level,
            week_peak / level,
            week_level / level,
            week_peak / week_level,
            np.sin(tod),
            np.cos(tod),
            np.sin(dow),
            np.cos(dow),
        ]
        target = peak_ahead / level
    features = np.column_stack(columns)[rows]
    features[~np.isfinite(features)] = np.nan
    return Table(rows, features, level[rows], target[rows], horizon.reach)
