"""The demo's forecasting part: the forecasting scaler beside the HPA alone, replayed at speed on one synthetic
trace through the operator's own forecaster and the HPA's decision rule (core.forecast.simulate; on real
clusters, benchmarks/closed_loop.py shows the loop agree with this replay), and its morning burst shown step by
step: the floor raised a cold start before the burst arrives, the HPA a cold start behind it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from autoglm.core.forecast.decision import ScalingRule
from autoglm.core.forecast.series import LoadSeries
from autoglm.core.forecast.simulate import Result, Scenario, forecaster_for, simulate
from autoglm.core.forecast.synthetic import BURSTS, diurnal_with_bursts

DAYS = 4  # three days the forecaster learns the bursts from, the fourth counted
STEP_SECONDS = 300
COLD_START_SECONDS = 600
CAPACITY = 60.0  # requests per minute one replica serves
PEAK = 6000.0  # requests per minute at the evening peak, before the bursts double it
REFIT_SECONDS = 6 * 3600
SHOWN = (-30 * 60, 45 * 60)  # around the morning burst


@dataclass(frozen=True)
class BurstReplay:
    series: LoadSeries
    reactive: Result
    predictive: Result
    counted_from: int  # the step the counted day starts at

    @property
    def burst(self) -> int:
        """The counted day's step of the morning burst (index into the results' ready lists)."""
        return steps(BURSTS[0] * 60)

    def load(self, step: int) -> float:
        return float(self.series.values[self.counted_from + step])

    def needed(self, step: int) -> int:
        return math.ceil(self.load(step) / CAPACITY)

    def ready_for_burst_since(self, result: Result) -> int | None:
        """The first step from which `result` had the burst's replicas ready up to its arrival (None: not by then)."""
        need = self.needed(self.burst)
        if result.ready[self.burst] < need:
            return None
        since = self.burst
        while since > 0 and result.ready[since - 1] >= need:
            since -= 1
        return since

    def caught_up_at(self, result: Result) -> int:
        """The first step at or after the burst's arrival with its replicas ready."""
        need = self.needed(self.burst)
        return next(s for s in range(self.burst, len(result.ready)) if result.ready[s] >= need)


def steps(seconds: float) -> int:
    return round(seconds / STEP_SECONDS)


def clock(step: int) -> str:
    seconds = step * STEP_SECONDS
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def replay_burst() -> BurstReplay:
    """The synthetic trace at 5-minute steps, replayed under the HPA alone and with the forecasting floor."""
    minutes = diurnal_with_bursts(days=DAYS, peak=PEAK)
    per_step = STEP_SECONDS // 60
    series = LoadSeries(minutes.values.reshape(-1, per_step).mean(axis=1), float(STEP_SECONDS), 0.0)
    rule = ScalingRule(CAPACITY, CAPACITY, min_replicas=1, max_replicas=100)
    scenario = Scenario(
        rule,
        COLD_START_SECONDS,
        window_seconds=STEP_SECONDS,
        decision_seconds=STEP_SECONDS,
        refit_seconds=REFIT_SECONDS,
    )
    counted_from = (DAYS - 1) * series.steps_per_day
    reactive, predictive = (
        simulate(series, scenario, forecaster_for(policy, series, scenario), count_from=counted_from)
        for policy in ("reactive", "predictive")
    )
    return BurstReplay(series, reactive, predictive, counted_from)


def burst_table(replay: BurstReplay) -> Table:
    table = Table(
        title=f"forecasting scaler: day {DAYS} of a replayed trace around its {clock(replay.burst)} burst "
        f"(cold start {COLD_START_SECONDS // 60} min, {CAPACITY:g} requests/min per replica)",
        title_justify="left",
    )
    for column in ("TIME", "LOAD/min", "NEEDED", "HPA ALONE: ready", "FORECASTING: ready"):
        table.add_column(column, no_wrap=True, justify="right")
    first, last = (replay.burst + steps(offset) for offset in SHOWN)
    for step in range(first, last + 1):
        need = replay.needed(step)
        cells = [
            f"{ready}" if ready >= need else f"{ready} short"
            for ready in (replay.reactive.ready[step], replay.predictive.ready[step])
        ]
        table.add_row(clock(step), f"{replay.load(step):.0f}", str(need), *cells)
    return table


def summary(replay: BurstReplay) -> str:
    since = replay.ready_for_burst_since(replay.predictive)
    lead = math.ceil(COLD_START_SECONDS / STEP_SECONDS)
    forecast = (
        f"the forecasting scaler had them ready from {clock(since)} (its floor raised at {clock(since - lead)}, "
        "a cold start ahead)"
        if since is not None
        else "the forecasting scaler had not foreseen it"
    )
    reactive, predictive = replay.reactive, replay.predictive
    return (
        f"The burst at {clock(replay.burst)} needs {replay.needed(replay.burst)} replicas: {forecast}, the HPA alone "
        f"from {clock(replay.caught_up_at(reactive))}. Over the day, unserved demand {reactive.unserved_pct:.2f} % "
        f"(HPA alone) vs {predictive.unserved_pct:.2f} % (forecasting) at "
        f"{predictive.replica_minutes / reactive.replica_minutes:.2f}x the replica-minutes."
    )


def show_forecasting(console: Console) -> None:
    """The replay, as the demo prints it (about two seconds)."""
    console.print("replaying 4 days of load through the forecasting scaler and the HPA alone ...", highlight=False)
    replay = replay_burst()
    console.print(burst_table(replay))
    console.print(summary(replay), highlight=False)
