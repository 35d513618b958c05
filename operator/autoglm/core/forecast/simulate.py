"""A discrete-time simulator of one deployment under a trace, and the policies it compares.

Time runs in HPA syncs (15 s). Load is the trace's rate for the interval a sync falls in. A replica asked
for is ready `cold_start` seconds later and serves `capacity` per interval; load above the ready capacity
is unserved and does not queue (it is counted lost, the measure of a late scale-up). Every policy writes
the same thing the operator writes, a floor under the HPA (minReplicas), from the same decision rule
(decision.py); the HPA itself is simulated as Kubernetes computes it: tolerance, 300 s scale-down
stabilization, scale-up limited to max(+100 %, +4 pods) per sync. Collection gaps count for nothing."""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from autoglm.core.forecast import POLICIES, QUANTILE
from autoglm.core.forecast.decision import ScalingRule, predictive_replicas, reactive_replicas, stabilized
from autoglm.core.forecast.features import Horizon, Table, leading_peak, table
from autoglm.core.forecast.predictors import Fitted, PredictorName, select_predictor, timed_fit
from autoglm.core.forecast.series import LoadSeries, Values

HPA_SYNC_SECONDS = 15.0
DECISION_SECONDS = 60.0
REFIT_SECONDS = 900.0
SELECT_SECONDS = 86400.0


class Forecaster(Protocol):
    """A source of the upper forecast of the window peak; None means reactive only."""

    @property
    def name(self) -> str: ...

    def refit(self, x: Values, t: int) -> None:
        """Fit on x[0..t] (the steps known at the time)."""
        ...

    def upper(self, x: Values, t: int) -> float | None:
        """Upper bound of the peak over steps t+1+lead .. t+lead+window, from x[0..t]."""
        ...


@dataclass
class Oracle:
    """Knows the future: the bound any predictor can reach under this decision rule."""

    peaks: Values
    name: str = "oracle"

    def refit(self, x: Values, t: int) -> None:
        return None

    def upper(self, x: Values, t: int) -> float | None:
        value = float(self.peaks[t])
        return None if math.isnan(value) else value


@dataclass
class Predictive:
    """Ours: predictors chosen per deployment by backtest (again once a day), refitted on schedule."""

    horizon: Horizon
    q: float = QUANTILE
    select_every: int = 1440
    candidates: tuple[PredictorName, ...] = tuple(PredictorName)
    name: str = "predictive"
    chosen: Counter[str] = field(default_factory=Counter)
    _data: Table | None = None
    _fitted: Fitted | None = None
    _choice: PredictorName | None = None
    _selected_at: int | None = None

    def _table(self, x: Values) -> Table:
        # Features at t use only x[..t] (the target looks ahead and is masked below), so one table serves
        # every step of a replay.
        if self._data is None or len(self._data.rows) != len(x):
            self._data = table(x, self.horizon)
        return self._data

    def refit(self, x: Values, t: int) -> None:
        data = self._table(x)
        known_rows = np.arange(0, max(0, t - data.reach + 1))
        history = Table(
            data.rows[known_rows],
            data.features[known_rows],
            data.level[known_rows],
            data.target[known_rows],
            data.reach,
        )
        if self._selected_at is None or t - self._selected_at >= self.select_every or self._choice is None:
            self._choice = select_predictor(history, self.q, self.candidates).name
            self._selected_at = t
        self._fitted = None
        if self._choice is not None:
            self._fitted, _ = timed_fit(self._choice, history, self.q)

    def upper(self, x: Values, t: int) -> float | None:
        if self._fitted is None:
            return None
        data = self._table(x)
        _, upper = self._fitted.predict(data.features[t : t + 1], data.level[t : t + 1])
        value = float(upper[0])
        if not math.isfinite(value):
            return None
        self.chosen[self._fitted.name] += 1
        return value


class PathForecaster(Protocol):
    """A peer predictor: fits at an origin and returns its point forecast for the following steps."""

    @property
    def name(self) -> str: ...

    def path(self, x: Values, t: int, steps: int) -> Values | None: ...


@dataclass
class Conformal:
    """Runs a peer's point path through our decision rule: the window peak of its path, raised to an upper
    bound by the quantile of its own past (actual / predicted) peaks, as our point models are."""

    peer: PathForecaster
    horizon: Horizon
    refit_steps: int
    q: float = QUANTILE
    memory: int = 3 * 1440
    _origin: int = -1
    _path: Values | None = None
    _predicted: deque[tuple[int, float]] = field(default_factory=deque)
    _ratios: deque[float] = field(default_factory=deque)

    @property
    def name(self) -> str:
        return self.peer.name

    def refit(self, x: Values, t: int) -> None:
        self._origin = t
        self._path = self.peer.path(x, t, self.refit_steps + self.horizon.reach)

    def upper(self, x: Values, t: int) -> float | None:
        self._learn(x, t)
        if self._path is None:
            return None
        first = t - self._origin + self.horizon.lead  # path[0] is step origin + 1
        window = self._path[first : first + self.horizon.window]
        if len(window) == 0 or not np.isfinite(window).any():
            return None
        point = float(np.nanmax(window))
        self._predicted.append((t, point))
        inflation = float(np.quantile(self._ratios, self.q)) if len(self._ratios) >= 30 else 1.0
        return max(point, 0.0) * inflation

    def _learn(self, x: Values, t: int) -> None:
        while self._predicted and self._predicted[0][0] + self.horizon.reach <= t:
            at, point = self._predicted.popleft()
            actual = x[at + 1 + self.horizon.lead : at + 1 + self.horizon.reach]
            if point > 0 and np.isfinite(actual).any():
                self._ratios.append(float(np.nanmax(actual)) / point)
                if len(self._ratios) > self.memory:
                    self._ratios.popleft()


@dataclass
class Result:
    """What one policy did over the trace."""

    policy: str
    unserved_pct: float
    under_provisioned_minutes: float
    replica_minutes: float
    scale_events: int
    fit_predict_seconds: float
    refits: int
    ready: list[int] = field(default_factory=list)  # ready replicas per step (for plots)
    models: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        return {
            "unserved_pct": round(self.unserved_pct, 4),
            "under_provisioned_minutes": round(self.under_provisioned_minutes, 2),
            "replica_minutes": round(self.replica_minutes, 1),
            "scale_events": self.scale_events,
            "fit_predict_seconds": round(self.fit_predict_seconds, 5),
            "refits": self.refits,
            "models": self.models,
        }


@dataclass(frozen=True)
class Scenario:
    """The deployment being simulated."""

    rule: ScalingRule
    cold_start_seconds: float
    window_seconds: float = DECISION_SECONDS
    sync_seconds: float = HPA_SYNC_SECONDS
    decision_seconds: float = DECISION_SECONDS
    refit_seconds: float = REFIT_SECONDS

    def horizon(self, series: LoadSeries) -> Horizon:
        step = series.step_seconds
        return Horizon(
            lead=math.ceil(self.cold_start_seconds / step - 1e-9),
            window=max(1, math.ceil(self.window_seconds / step - 1e-9)),
            steps_per_day=series.steps_per_day,
            step_seconds=step,
            start=series.start,
        )


def oracle_peaks(series: LoadSeries, horizon: Horizon) -> Values:
    return leading_peak(series.values, 1 + horizon.lead, horizon.window)


def simulate(
    series: LoadSeries,
    scenario: Scenario,
    forecaster: Forecaster | None,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
    count_from: int = 0,
    forecast_from: int = 0,
) -> Result:
    """Replay the trace under the HPA, with `forecaster`'s floor under it (None: the HPA alone). Steps before
    `count_from` are history: replayed, but not counted. The forecaster first decides at step
    `forecast_from` (as an operator started then, with the steps before it in Prometheus, would)."""
    rule, x, step = scenario.rule, series.values, series.step_seconds
    ticks_per_step = max(1, round(step / scenario.sync_seconds))
    tick = step / ticks_per_step
    decide_every = max(1, round(scenario.decision_seconds / step))
    cold_ticks = math.ceil(scenario.cold_start_seconds / tick - 1e-9)
    asked = rule.clamp(reactive_replicas(float(np.nan_to_num(x[0])), 0, rule)) if len(x) else 0
    starting: deque[int] = deque()  # tick each cold-starting replica becomes ready
    ready = asked
    floor, floors, hpa_history = rule.min_replicas, [], []
    unserved = total = replica_minutes = under_minutes = 0.0
    events, refits, fit_seconds = 0, 0, 0.0
    fitted_bucket = -1.0
    ready_per_step: list[int] = []
    for i in range(len(x)):
        load = x[i]
        if forecaster is not None and i % decide_every == 0 and i >= max(forecast_from, 1):
            started = time.perf_counter()
            # refits fall on the clock's multiples of the refit interval, as the operator's do
            bucket = (series.start + (i - 1) * step) // scenario.refit_seconds
            if bucket != fitted_bucket or refits == 0:
                forecaster.refit(x, i - 1)
                refits, fitted_bucket = refits + 1, bucket
            upper = forecaster.upper(x, i - 1)
            fit_seconds += time.perf_counter() - started
            now = i * step
            proposal = rule.min_replicas if upper is None else rule.clamp(predictive_replicas(upper, rule))
            floors.append((now, proposal))
            floors = [(at, r) for at, r in floors if now - at <= rule.stabilization_seconds]
            floor = stabilized(floors, now, rule.stabilization_seconds)
        for k in range(ticks_per_step):
            now_tick = i * ticks_per_step + k
            while starting and starting[0] <= now_tick:
                starting.popleft()
                ready += 1
            if not math.isnan(load) and i >= count_from:
                served = ready * rule.capacity_per_replica
                short = max(0.0, load - served) / ticks_per_step
                unserved += short
                total += load / ticks_per_step
                under_minutes += tick / 60 if short > 0 else 0.0
                replica_minutes += asked * tick / 60
            now = now_tick * tick
            recommendation = reactive_replicas(float(load), asked, rule)
            hpa_history.append((now, recommendation))
            hpa_history = [(at, r) for at, r in hpa_history if now - at <= rule.stabilization_seconds]
            held = stabilized(hpa_history, now, rule.stabilization_seconds)
            desired = rule.clamp(max(held if held < asked else recommendation, floor))
            desired = min(desired, max(2 * asked, asked + 4))
            if desired > asked:
                starting.extend([now_tick + cold_ticks] * (desired - asked))
            elif desired < asked:
                # unready pods go first, as the ReplicaSet controller deletes them
                for _ in range(asked - desired):
                    if starting:
                        starting.pop()
                    else:
                        ready -= 1
            events += desired != asked and i >= count_from
            asked = desired
        if i >= count_from:
            ready_per_step.append(ready)
        if progress is not None:
            progress(i)
    models = dict(getattr(forecaster, "chosen", {}) or {})
    return Result(
        policy=name or (forecaster.name if forecaster is not None else "reactive"),
        unserved_pct=100 * unserved / total if total else 0.0,
        under_provisioned_minutes=under_minutes,
        replica_minutes=replica_minutes,
        scale_events=events,
        fit_predict_seconds=fit_seconds / refits if refits else 0.0,
        refits=refits,
        ready=ready_per_step,
        models=models,
    )


def compare(
    series: LoadSeries,
    scenario: Scenario,
    forecasters: Sequence[Forecaster | None],
    progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """Every policy over the same trace."""
    return [simulate(series, scenario, f, progress=progress) for f in forecasters]


def forecaster_for(policy: str, series: LoadSeries, scenario: Scenario, q: float = QUANTILE) -> Forecaster | None:
    """The forecaster behind a policy name (None for the HPA alone)."""
    from autoglm.core.forecast.peers import AutoArima, HoltWinters

    horizon = scenario.horizon(series)
    refit_steps = max(1, round(scenario.refit_seconds / series.step_seconds))
    if policy == "reactive":
        return None
    if policy == "predictive":
        return Predictive(horizon, q=q, select_every=max(1, round(SELECT_SECONDS / series.step_seconds)))
    if policy == "oracle":
        return Oracle(oracle_peaks(series, horizon))
    if policy == "auto-arima":
        return Conformal(AutoArima(), horizon, refit_steps, q=q)
    if policy == "holt-winters":
        return Conformal(HoltWinters(series.step_seconds), horizon, refit_steps, q=q)
    raise ValueError(f"unknown policy {policy!r} (choose from {', '.join(POLICIES)})")
