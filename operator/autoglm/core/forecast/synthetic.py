"""A synthetic load trace with the shape the forecaster is for: a daily cycle with bursts at recurring times (the
demo replays it; the forecasting tests use it too)."""

from __future__ import annotations

import numpy as np

from autoglm.core.forecast.series import LoadSeries

# The bursts' starts (minutes after midnight) and length: each doubles the load.
BURSTS = (9 * 60, 13 * 60 + 30)
BURST_MINUTES = 30


def diurnal_with_bursts(days: int = 4, seed: int = 7, peak: float = 1000.0) -> LoadSeries:
    """Per-minute requests: a daily cycle (trough at 04:00, peak at 20:00), a burst every day at 09:00 and
    13:30 that doubles the load for half an hour, 10-minute steps as collectors report, noise."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(days * 1440)
    hour = (minutes % 1440) / 60
    cycle = 0.55 - 0.45 * np.cos(2 * np.pi * (hour - 8) / 24)
    load = peak * 0.6 * cycle
    for start in BURSTS:
        burst = ((minutes % 1440) >= start) & ((minutes % 1440) < start + BURST_MINUTES)
        load = np.where(burst, load * 2.0, load)
    blocks = load.reshape(-1, 10).mean(axis=1)
    noisy = blocks * rng.lognormal(0.0, 0.05, len(blocks))
    return LoadSeries(np.repeat(noisy, 10), 60.0, 0.0)
