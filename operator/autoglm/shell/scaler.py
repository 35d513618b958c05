"""The forecasting scaler's loop for one operator: per ModelDeployment with forecasting on, read its load from
Prometheus, refit on schedule, decide (core.forecast), and return the floor, status and Event to write.

What it keeps in memory (fitted predictors, the recent floors, the fetched history) is rebuilt after a restart:
the history from Prometheus, the floor from status.forecast.floor, held for a stabilization window, so a
restart never drops the floor early. Prometheus unreachable or stale: the floor holds and a condition says so.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from autoglm.api.common import ConditionStatus
from autoglm.api.modeldeployment import ForecastModel, ForecastStatus, ModelDeployment, ModelDeploymentStatus
from autoglm.core.forecast import QUANTILE
from autoglm.core.forecast.decision import (
    ScalingRule,
    lead_seconds,
    predictive_replicas,
    reactive_replicas,
    refit_lateness,
    stabilized,
    within_horizon,
)
from autoglm.core.forecast.features import Horizon, table
from autoglm.core.forecast.predictors import Fitted, PredictorName, choose_predictor, fit_predictor
from autoglm.core.forecast.queries import capacity_per_replica, load_query
from autoglm.core.forecast.series import LoadSeries
from autoglm.core.render import Manifest
from autoglm.core.status import FORECASTING, set_condition
from autoglm.shell.prometheus import History, PrometheusReader, PrometheusUnavailable

STEP_SECONDS = 60.0
HISTORY_SECONDS = 14 * 86400.0
REFIT_SECONDS = 900.0
SELECT_SECONDS = 86400.0
# A newest sample older than this is stale: the deployment's metrics stopped arriving.
STALE_SECONDS = 300.0
DEFAULT_LEAD_SECONDS = 300.0
logger = logging.getLogger(__name__)
# Samples re-read on each tick (late scrapes land a little behind the newest step).
OVERLAP_STEPS = 5


@dataclass
class _Memory:
    history: History | None = None
    fitted: Fitted | None = None
    choice: PredictorName | None = None
    asked: ForecastModel = ForecastModel.AUTO  # the spec's forecast.model the choice was made for
    why: str = ""
    fitted_at: float = -math.inf  # trace time (the clock's, unless replaying faster than real time)
    selected_at: float = -math.inf
    floors: list[tuple[float, int]] = field(default_factory=list)
    predictions: deque[tuple[float, float]] = field(default_factory=deque)  # (step time, upper)
    errors: deque[float] = field(default_factory=lambda: deque(maxlen=1440))


@dataclass(frozen=True)
class Tick:
    """What one forecast tick decided for a deployment."""

    forecast: ForecastStatus
    condition: tuple[ConditionStatus, str, str]
    event: tuple[str, str, str] | None = None

    @property
    def floor_moved(self) -> bool:
        return self.event is not None and self.event[1] == "ForecastFloor"


class ForecastScaler:
    """Decides each deployment's floor from its load history; one instance per operator process."""

    def __init__(
        self,
        reader: PrometheusReader | None,
        clock: Callable[[], float] = time.time,
        step_seconds: float = STEP_SECONDS,
        history_seconds: float = HISTORY_SECONDS,
        refit_seconds: float = REFIT_SECONDS,
        stale_seconds: float = STALE_SECONDS,
        compression: float = 1.0,
        trace_origin: tuple[float, float] = (0.0, 0.0),
    ):
        """Refits fall on the clock's multiples of `refit_seconds` (on the quarter hour by default), not a fixed
        time after the last one: every operator replica, and a restarted one, fits on the same schedule and the
        same data. `compression` and `trace_origin` (a real time and the trace time it stands for) are for
        replays faster than real time (the closed loop): time-of-day features and the refit and selection
        schedules then follow trace time, in which `refit_seconds` is given."""
        self.compression = compression
        self.trace_origin = trace_origin
        self.reader = reader
        self.clock = clock
        self.step = step_seconds
        self.history_seconds = history_seconds
        self.refit_seconds = refit_seconds
        self.stale_seconds = stale_seconds
        self._memory: dict[str, _Memory] = {}

    def forget(self, key: str) -> None:
        self._memory.pop(key, None)

    def tick(
        self,
        md: ModelDeployment,
        backend: str | None,
        current: ForecastStatus | None,
        replicas: int,
        cold_starts: Sequence[float] = (),
    ) -> Tick:
        """One decision for `md` (its status's forecast `current`, `replicas` desired now)."""
        key = f"{md.metadata.namespace}/{md.metadata.name}"
        memory = self._memory.setdefault(key, _Memory())
        spec = md.spec
        held = current.floor if current is not None and current.floor is not None else spec.replicas.min
        now = self.clock()
        if not memory.floors:
            memory.floors.append((now, held))  # a restart holds the floor it found for a window
        if self.reader is None:
            return self._hold(current, held, "NoPrometheus", "forecasting needs the operator's --prometheus-url")
        query = load_query(spec, md.metadata.name, md.metadata.namespace or "default", backend)
        try:
            history = self._history(memory, query, now)
        except PrometheusUnavailable as exc:
            return self._hold(current, held, "PrometheusUnavailable", str(exc))
        if history.newest_age_seconds > self.stale_seconds:
            age = (
                "no sample"
                if math.isinf(history.newest_age_seconds)
                else f"newest {history.newest_age_seconds:.0f} s old"
            )
            return self._hold(current, held, "MetricsStale", f"the load query has {age}: {query}")
        values = history.series.values
        lead, beyond = within_horizon(
            lead_seconds(cold_starts, spec.autoscaling.forecast.lead_time_seconds, DEFAULT_LEAD_SECONDS),
            spec.autoscaling.forecast.horizon_seconds,
        )
        horizon = Horizon(
            lead=math.ceil(lead / self.step - 1e-9),
            window=1,
            steps_per_day=round(86400 / (self.step * self.compression)),
            step_seconds=self.step * self.compression,
            start=self._stands_for(history.series.start),
        )
        data = table(values, horizon)
        clock = self._stands_for(history.end)  # the newest step's: a refit comes with the first step past a boundary
        model = spec.autoscaling.forecast.model
        due = memory.fitted is None or clock // self.refit_seconds != memory.fitted_at // self.refit_seconds
        if due or model is not memory.asked:
            self._refit(memory, values, horizon, clock, model)
        capacity = capacity_per_replica(spec)
        rule = ScalingRule(
            capacity,
            spec.autoscaling.target_per_replica,
            spec.replicas.min,
            spec.replicas.max,
            stabilization_seconds=spec.autoscaling.scale_down_stabilization_seconds,
        )
        last = len(values) - 1
        load = float(values[last]) if not math.isnan(values[last]) else float(np.nanmean(values[-5:]))
        upper = None
        if memory.fitted is not None:
            _, predicted = memory.fitted.predict(data.features[last : last + 1], data.level[last : last + 1])
            upper = float(predicted[0]) if math.isfinite(predicted[0]) else None
        self._learn(memory, values, history.series.start, upper, horizon)
        proposal = rule.clamp(predictive_replicas(upper, rule)) if upper is not None else rule.min_replicas
        memory.floors = [(at, r) for at, r in memory.floors if now - at <= rule.stabilization_seconds]
        memory.floors.append((now, proposal))
        floor = stabilized(memory.floors, now, rule.stabilization_seconds)
        if logger.isEnabledFor(logging.DEBUG):  # the last loads are rounded for the line only when it is written
            logger.debug(
                "forecast tick %s: newest step at trace %.0f s (read at %.3f, fitted at trace %.0f s), last loads %s, "
                "predicted %s, proposal %d, floor %d",
                key,
                clock,
                now,
                memory.fitted_at,
                np.round(values[-3:], 4).tolist(),
                None if upper is None else round(upper, 4),
                proposal,
                floor,
            )
        recommended = rule.clamp(max(reactive_replicas(load, max(replicas, 1), rule), floor))
        ran = memory.fitted.name if memory.fitted is not None and upper is not None else None
        forecast = ForecastStatus(
            predicted_load=round(upper, 4) if upper is not None else None,
            recommended_replicas=recommended,
            model=ran,
            updated=datetime.fromtimestamp(now, UTC),
            floor=floor,
            current_load=round(load, 4),
            error=round(float(np.mean(memory.errors)), 4) if memory.errors else None,
            lead_seconds=lead,
        )
        event = None
        if floor != held:
            why = f"predicted peak {upper:.4g} in {lead:.0f} s by {ran}" if upper is not None else "no forecast"
            event = ("Normal", "ForecastFloor", f"floor {held} -> {floor} replicas: {why}, {capacity:g} per replica")
        if upper is None:
            unfit = memory.choice is not None and memory.fitted is None
            why = (
                f"{memory.choice} does not fit this history yet ({memory.why})" if unfit else memory.why
            ) or "no predictor fits"
            condition = (ConditionStatus.FALSE, "ReactiveOnly", f"reactive only: {why}")
        else:
            condition = (
                ConditionStatus.TRUE,
                "Forecasting",
                f"{ran}: peak {upper:.4g} expected in {lead:.0f} s, floor {floor} ({memory.why})"
                + (f"; {beyond}" if beyond else ""),
            )
        return Tick(forecast, condition, event)

    def _refit(self, memory: _Memory, values: np.ndarray, horizon: Horizon, clock: float, model: ForecastModel) -> None:
        """Choose (at most daily) and fit the predictor on what was known at the step the refit fell due: the first
        step past the refit boundary. A tick that comes late (the one before it ran long, the operator was busy)
        fits on the same rows as a timely one, as every replica and the simulator do, not on a step or two more."""
        trace_step = self.step * self.compression
        late = (
            0 if memory.fitted is None else min(len(values) - 1, refit_lateness(clock, self.refit_seconds, trace_step))
        )
        known = table(values[: len(values) - late], horizon) if late else table(values, horizon)
        at = clock - late * trace_step
        if memory.choice is None or at - memory.selected_at >= SELECT_SECONDS or model is not memory.asked:
            selection = choose_predictor(known, QUANTILE, model)
            memory.choice, memory.why, memory.selected_at, memory.asked = selection.name, selection.reason, at, model
        if memory.choice is not None:
            memory.fitted, memory.fitted_at = fit_predictor(memory.choice, known, QUANTILE), at
        if late:
            logger.info("forecast: refit %d steps late, on the rows known when it fell due", late)

    def _stands_for(self, stamp: float) -> float:
        """The (trace) time of the step a value read at `stamp` stands for: the step ending there, as a gauge
        read at the end of a minute, or a rate over it, tells of that minute."""
        real0, trace0 = self.trace_origin
        return trace0 + (stamp - self.step - real0) * self.compression

    def _history(self, memory: _Memory, query: str, now: float) -> History:
        """The full history once, then only its newest steps on each tick."""
        assert self.reader is not None
        if memory.history is None or now - memory.history.end > self.history_seconds / 2:
            memory.history = self.reader.history(query, self.history_seconds, self.step, now)
            return memory.history
        old = memory.history
        recent = self.reader.history(query, (now - old.end) + OVERLAP_STEPS * self.step, self.step, now)
        values = np.concatenate([old.series.values, np.full(round((recent.end - old.end) / self.step), np.nan)])
        keep = int(self.history_seconds // self.step)
        offset = len(values) - len(recent.series.values)
        fresh = ~np.isnan(recent.series.values)
        values[offset:][fresh] = recent.series.values[fresh]
        start = old.series.start + max(0, len(values) - keep) * self.step
        values = values[-keep:]
        known = np.flatnonzero(~np.isnan(values))
        age = recent.end - (start + known[-1] * self.step) if len(known) else math.inf
        memory.history = History(LoadSeries(values, self.step, start), recent.end, age)
        return memory.history

    def _learn(self, memory: _Memory, values: np.ndarray, start: float, upper: float | None, h: Horizon) -> None:
        """Compare past predictions with the peaks that came: the recent forecast error in status."""
        end = start + (len(values) - 1) * self.step
        while memory.predictions and memory.predictions[0][0] + h.reach * self.step <= end:
            made, predicted = memory.predictions.popleft()
            first = round((made - start) / self.step) + 1 + h.lead
            actual = values[max(first, 0) : max(first + h.window, 0)]
            if len(actual) and np.isfinite(actual).any() and np.nanmax(actual) > 0:
                peak = float(np.nanmax(actual))
                memory.errors.append(abs(peak - predicted) / peak)
        if upper is not None:
            memory.predictions.append((end, upper))

    def _hold(self, current: ForecastStatus | None, held: int, reason: str, why: str) -> Tick:
        forecast = (current or ForecastStatus()).model_copy(update={"floor": held})
        return Tick(forecast, (ConditionStatus.FALSE, reason, f"{why}; holding the floor at {held}"))


def forecast_status(status: ModelDeploymentStatus, tick: Tick, generation: int | None, now: datetime) -> Manifest:
    """The whole status with what a tick changes (status.forecast and the Forecasting condition) replaced."""
    s, reason, message = tick.condition
    conditions = set_condition(list(status.conditions), FORECASTING, s, reason, message, generation, now)
    changed = status.model_copy(update={"forecast": tick.forecast, "conditions": conditions})
    return changed.model_dump(mode="json", by_alias=True, exclude_none=True)
