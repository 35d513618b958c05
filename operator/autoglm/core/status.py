"""ModelDeployment status: conditions and summary fields computed from a plan and what was observed. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from autoglm.api.common import Condition, ConditionStatus
from autoglm.api.modeldeployment import ClusterStatus, ModelDeploymentStatus
from autoglm.core.planner import Plan

PLANNED = "Planned"
CONVERTED = "Converted"
READY = "Ready"
DEGRADED = "Degraded"
PROPAGATED = "Propagated"


@dataclass(frozen=True)
class ConversionState:
    cache_key: str
    job: str
    phase: str  # Pending, Running, Succeeded, Failed
    message: str = ""


@dataclass(frozen=True)
class Observed:
    """What the shell read back from the cluster for one ModelDeployment."""

    cluster: str = "local"
    ready_replicas: int = 0
    replicas: int = 0
    conversions: Sequence[ConversionState] = field(default_factory=tuple)


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Replace one condition; lastTransitionTime moves only when the status changes."""
    previous = next((c for c in conditions if c.type == type_), None)
    changed = previous is None or previous.status != status
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=now if changed or previous is None else previous.last_transition_time,
    )
    return [c for c in conditions if c.type != type_] + [new]


def _planned(plan: Plan | None, invalid: str | None) -> tuple[ConditionStatus, str, str]:
    if invalid:
        return ConditionStatus.FALSE, "InvalidSpec", invalid
    if plan is None:
        return ConditionStatus.UNKNOWN, "Pending", "not planned yet"
    if not plan.feasible:
        return ConditionStatus.FALSE, "Unplaceable", plan.summary
    reason = "CPUFallback" if plan.fallback else "Planned"
    return ConditionStatus.TRUE, reason, plan.summary


def _converted(conversions: Sequence[ConversionState]) -> tuple[ConditionStatus, str, str]:
    if not conversions:
        return ConditionStatus.TRUE, "NotNeeded", "the chosen runtimes load the source weights directly"
    failed = [c for c in conversions if c.phase == "Failed"]
    if failed:
        return ConditionStatus.FALSE, "ConversionFailed", "; ".join(f"Job {c.job}: {c.message}" for c in failed)
    pending = [c for c in conversions if c.phase != "Succeeded"]
    if pending:
        return ConditionStatus.FALSE, "Converting", ", ".join(f"Job {c.job} {c.phase}" for c in pending)
    return ConditionStatus.TRUE, "Converted", ", ".join(f"artifact {c.cache_key} ready" for c in conversions)


def desired_status(
    current: ModelDeploymentStatus | None,
    generation: int | None,
    plan: Plan | None,
    observed: Observed,
    now: datetime,
    invalid: str | None = None,
    inputs_hash: str | None = None,
    plan_hash: str | None = None,
) -> ModelDeploymentStatus:
    """The status a ModelDeployment should have; equal to `current` when nothing changed."""
    base = current or ModelDeploymentStatus()
    conditions = list(base.conditions)
    s, r, m = _planned(plan, invalid)
    conditions = set_condition(conditions, PLANNED, s, r, m, generation, now)
    feasible = plan is not None and plan.feasible and not invalid
    if feasible:
        s, r, m = _converted(observed.conversions)
        conditions = set_condition(conditions, CONVERTED, s, r, m, generation, now)
    desired = sum(a.replicas for a in plan.assignments) if feasible and plan else 0
    ready = observed.ready_replicas if feasible else 0
    if feasible and desired > 0 and ready >= desired:
        conditions = set_condition(
            conditions,
            READY,
            ConditionStatus.TRUE,
            "ReplicasReady",
            f"{ready}/{desired} replicas ready",
            generation,
            now,
        )
    else:
        why = "NotPlaced" if not feasible else "ReplicasNotReady"
        conditions = set_condition(
            conditions, READY, ConditionStatus.FALSE, why, f"{ready}/{desired} replicas ready", generation, now
        )
    degraded_reasons = []
    if plan is not None:
        degraded_reasons += plan.warnings
    if any(c.phase == "Failed" for c in observed.conversions):
        degraded_reasons.append("a conversion Job failed")
    if not feasible:
        degraded_reasons.append("no placement")
    conditions = set_condition(
        conditions,
        DEGRADED,
        ConditionStatus.TRUE if degraded_reasons else ConditionStatus.FALSE,
        "Degraded" if degraded_reasons else "AsPlanned",
        "; ".join(degraded_reasons),
        generation,
        now,
    )
    order = {t: i for i, t in enumerate((PLANNED, CONVERTED, PROPAGATED, READY, DEGRADED))}
    conditions.sort(key=lambda c: order.get(c.type, 99))
    primary = plan.primary if feasible and plan else None
    return ModelDeploymentStatus(
        observed_generation=generation,
        conditions=conditions,
        plan=plan.entries(observed.cluster) if feasible and plan else [],
        clusters=[ClusterStatus(name=observed.cluster, desired=desired, ready=ready)] if feasible else [],
        replicas=desired,
        ready_replicas=ready,
        forecast=base.forecast,
        backend=primary.backend if primary else None,
        precision=primary.precision.value if primary else None,
        tensor_parallel=primary.tensor_parallel if primary else None,
        cluster_count=1 if feasible else 0,
        inputs_hash=inputs_hash,
        plan_hash=plan_hash,
        artifacts=sorted({a.option.conversion.cache_key for a in plan.assignments if a.option.conversion})
        if feasible and plan
        else [],
    )


def condition_events(old: Sequence[Condition], new: Sequence[Condition]) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events a status change deserves: one per condition transition.

    Progress (replicas still starting) and a Degraded condition staying clear are not news.
    """
    before = {c.type: (c.status, c.reason) for c in old}
    events = []
    for cond in new:
        if before.get(cond.type) == (cond.status, cond.reason):
            continue
        if (cond.type, cond.reason) in ((READY, "ReplicasNotReady"), (CONVERTED, "NotNeeded")):
            continue
        if cond.type == DEGRADED and cond.status is not ConditionStatus.TRUE and cond.type not in before:
            continue
        bad = cond.status is ConditionStatus.TRUE if cond.type == DEGRADED else cond.status is ConditionStatus.FALSE
        events.append(("Warning" if bad else "Normal", cond.reason, cond.message))
    return events
