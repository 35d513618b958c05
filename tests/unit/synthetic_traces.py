"""Small synthetic load traces for the forecasting tests (the trace itself is the package's: the demo replays it)."""

from __future__ import annotations

from autoglm.core.forecast.series import LoadSeries
from autoglm.core.forecast.synthetic import diurnal_with_bursts

__all__ = ["diurnal_with_bursts", "to_csv"]


def to_csv(series: LoadSeries) -> str:
    rows = ["minute,requests"] + [f"{i},{v:.3f}" for i, v in enumerate(series.values)]
    return "\n".join(rows) + "\n"
