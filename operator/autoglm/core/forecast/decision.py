"""How many replicas: the reactive HPA's formula on current load, our predictive floor on the forecast's
upper bound over [now + lead, now + lead + window], the larger of the two, clamped and held on the way
down for the stabilization window, as Kubernetes' HPA holds its own recommendations."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autoglm.api.modeldeployment import ForecastStatus, ModelDeploymentSpec

TOLERANCE = 0.1
STABILIZATION_SECONDS = 300.0
# Below this many measured cold starts the spec's value stands in for them.
MIN_COLD_STARTS = 3


@dataclass(frozen=True)
class ScalingRule:
    """What one replica carries and the bounds it is held to."""

    capacity_per_replica: float  # load one replica serves (the predictive floor sizes by it)
    target_per_replica: float  # load per replica the reactive HPA aims at
    min_replicas: int = 1
    max_replicas: int = 1_000_000
    tolerance: float = TOLERANCE
    stabilization_seconds: float = STABILIZATION_SECONDS

    def __post_init__(self) -> None:
        if self.capacity_per_replica <= 0 or self.target_per_replica <= 0:
            raise ValueError("capacity and target per replica must be > 0")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 0 <= min ({self.min_replicas}) <= max ({self.max_replicas})")

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))


def reactive_replicas(load: float, current: int, rule: ScalingRule) -> int:
    """The HPA's recommendation: ceil(current x load / (current x target)), unless the ratio is within the
    tolerance of 1 (then current). With no replica the HPA scales from one."""
    if math.isnan(load):
        return current  # no metric: the HPA does not act
    ratio = load / (max(current, 1) * rule.target_per_replica)
    if current > 0 and abs(ratio - 1.0) <= rule.tolerance:
        return current
    return math.ceil(load / rule.target_per_replica - 1e-9)


def predictive_replicas(upper: float, rule: ScalingRule) -> int:
    """Replicas that carry the upper forecast at full capacity."""
    return math.ceil(max(upper, 0.0) / rule.capacity_per_replica - 1e-9)


def stabilized(history: Sequence[tuple[float, int]], now: float, window: float) -> int:
    """The highest recommendation of the last `window` seconds (recommendations as (time, replicas)): a
    drop takes effect only once it has held for the whole window."""
    recent = [replicas for at, replicas in history if now - at <= window]
    if not recent:
        raise ValueError("no recommendation in the window (record the current one first)")
    return max(recent)


def lead_seconds(cold_starts: Sequence[float], configured: float | None, spec_default: float) -> float:
    """How far ahead to scale: at least the replica's cold start, measured from its pods (start -> Ready,
    the 90th percentile once there are a few) or, before that, the spec's value."""
    measured = sorted(cold_starts)
    cold = measured[min(len(measured) - 1, int(0.9 * len(measured)))] if len(measured) >= MIN_COLD_STARTS else 0.0
    return max(configured if configured is not None else spec_default, cold)


def within_horizon(lead: float, horizon: float) -> tuple[float, str]:
    """The lead the forecast uses, at most the spec's horizon, and what a person should know when the cold start
    is longer (the replicas asked for then come late for the rest, which the reactive HPA covers)."""
    if lead <= horizon:
        return lead, ""
    return horizon, f"cold start {lead:.0f} s is beyond horizonSeconds {horizon:.0f}: the HPA covers the rest"


@dataclass(frozen=True)
class Recommendation:
    """The replica count asked for, and how it came about."""

    replicas: int
    reactive: int
    predictive: int | None
    reasons: list[str] = field(default_factory=list)


def recommend(
    load: float,
    current: int,
    upper: float | None,
    rule: ScalingRule,
    history: Sequence[tuple[float, int]],
    now: float,
    why_no_forecast: str = "",
) -> Recommendation:
    """max(reactive, predictive), clamped, then stabilized against `history` (which should not yet hold
    this step's proposal; record the returned value yourself)."""
    reactive = reactive_replicas(load, current, rule)
    reasons = [f"reactive: load {load:.4g} over target {rule.target_per_replica:g} per replica -> {reactive}"]
    predictive = None if upper is None else predictive_replicas(upper, rule)
    if predictive is None:
        reasons.append(f"reactive only: {why_no_forecast or 'no forecast'}")
    else:
        reasons.append(
            f"predictive: upper forecast {upper:.4g} over capacity {rule.capacity_per_replica:g} -> {predictive}"
        )
    proposal = rule.clamp(max(reactive, predictive or 0))
    held = stabilized([*history, (now, proposal)], now, rule.stabilization_seconds)
    if held > proposal:
        reasons.append(f"held at {held}: a higher recommendation within {rule.stabilization_seconds:g} s")
    return Recommendation(held, reactive, predictive, reasons)


def with_floor(spec: ModelDeploymentSpec, forecast: ForecastStatus | None) -> ModelDeploymentSpec:
    """The spec the planner and placement work from: while forecasting, the minimum is the forecast's floor
    (within spec.replicas), so the floor is placed, planned and split over members like any minimum, and
    each member's HPA gets its share as minReplicas."""
    if not spec.autoscaling.forecast.enabled or forecast is None or forecast.floor is None:
        return spec
    low = max(spec.replicas.min, min(forecast.floor, spec.replicas.max))
    if low == spec.replicas.min:
        return spec
    return spec.with_min_replicas(low)


def cold_starts(pods: Sequence[Mapping[str, Any]]) -> list[float]:
    """Seconds from each Ready pod's creation to its Ready condition: the replica's cold start as measured
    (image pull, weight load, warm-up). Pods not Ready, or whose times are missing, say nothing."""
    measured = []
    for pod in pods:
        created = _time((pod.get("metadata") or {}).get("creationTimestamp"))
        ready = next(
            (
                _time(c.get("lastTransitionTime"))
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready" and c.get("status") == "True"
            ),
            None,
        )
        if created is not None and ready is not None and ready >= created:
            measured.append(ready - created)
    return measured


def _time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def forecast_enabled(body: Mapping[str, Any]) -> bool:
    """Whether a ModelDeployment, as raw JSON (unvalidated), asks for forecasting."""
    forecast = ((body.get("spec") or {}).get("autoscaling") or {}).get("forecast") or {}
    return bool(forecast.get("enabled"))


def refit_lateness(clock: float, refit_seconds: float, step_seconds: float) -> int:
    """How many steps after the first step past its boundary a refit runs, for a refit made at the step of time
    `clock` (steps lie on a grid): 0 for a timely one. Refits fall on the clock's multiples of `refit_seconds`."""
    boundary = clock // refit_seconds * refit_seconds
    return math.floor((clock - boundary) / step_seconds + 1e-9)
