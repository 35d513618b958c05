"""ModelDeployment status: conditions and summary fields computed from a plan and what was observed. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autoglm.api.common import Condition, ConditionStatus
from autoglm.api.modeldeployment import ClusterStatus, ModelDeploymentStatus, RolloutPhase, RolloutStatus
from autoglm.core.planner import Plan

PLANNED = "Planned"
# Planned's reasons that say the plan is not what it would be with more room (or a valid spec).
CPU_FALLBACK, PARTIALLY_PLACED, INVALID_SPEC = "CPUFallback", "PartiallyPlaced", "InvalidSpec"
CONVERTED = "Converted"
READY = "Ready"
DEGRADED = "Degraded"
PROPAGATED = "Propagated"
PROGRESSING = "Progressing"
FORECASTING = "Forecasting"


@dataclass(frozen=True)
class ConversionState:
    cache_key: str
    job: str
    phase: str  # Pending, Running, Succeeded, Failed
    message: str = ""


@dataclass(frozen=True)
class Observed:
    """What the shell read back from one member cluster for one ModelDeployment."""

    ready_replicas: int = 0
    replicas: int = 0
    conversions: Sequence[ConversionState] = field(default_factory=tuple)
    endpoint: str | None = None  # where the gateway reaches the member's Service


@dataclass(frozen=True)
class MemberOutcome:
    """One member's part of a reconcile: its plan, what it runs, and why propagation failed (if it did)."""

    cluster: str
    plan: Plan | None = None
    observed: Observed = field(default_factory=Observed)
    # Why propagation failed, as a phrase that follows the member's name: "unreachable for 13 s: connection refused"
    error: str | None = None
    # Coordinated rollouts: the revision the member's Service selects, the one being rolled out there,
    # whether that one is ready, what it waits for, and whether it has no room beside the old one.
    revision: str | None = None
    target: str | None = None
    target_ready: bool = False
    target_message: str | None = None
    blocked: bool = False

    @property
    def serving(self) -> bool:
        return self.plan is not None and self.plan.feasible

    @property
    def desired(self) -> int:
        """Replicas the member's plan places (the HPA may run more)."""
        return sum(a.replicas for a in self.plan.assignments) if self.plan is not None and self.serving else 0


@dataclass(frozen=True)
class FleetOutcome:
    """A reconcile over the fleet: every member that serves or still holds objects, and the placement's verdict."""

    members: Sequence[MemberOutcome]
    wanted: int = 1
    unschedulable: int = 0
    summary: str = ""
    coordinated: bool = False
    rollout: RolloutStatus | None = None

    @property
    def serving(self) -> list[MemberOutcome]:
        return [m for m in self.members if m.serving]

    @property
    def conversions(self) -> list[tuple[str, ConversionState]]:
        return [(m.cluster, c) for m in self.members for c in m.observed.conversions]


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


def _planned(fleet: FleetOutcome | None, invalid: str | None) -> tuple[ConditionStatus, str, str]:
    if invalid:
        return ConditionStatus.FALSE, INVALID_SPEC, invalid
    if fleet is None:
        return ConditionStatus.UNKNOWN, "Pending", "not planned yet"
    if not fleet.serving:
        return ConditionStatus.FALSE, "Unplaceable", fleet.summary
    if any(m.plan is not None and m.plan.fallback for m in fleet.serving):
        return ConditionStatus.TRUE, CPU_FALLBACK, fleet.summary
    return ConditionStatus.TRUE, PARTIALLY_PLACED if fleet.unschedulable > 0 else "Planned", fleet.summary


def waits_for_capacity(body: Mapping[str, Any]) -> bool:
    """Whether devices freed or taken on a member may change a ModelDeployment's placement or plan (raw JSON,
    as the controller stores it): not planned yet or placed nowhere, placed in part, fallen back to CPU, or
    divided by dynamic weights (what each member holds). Any other is placed in full on devices that stay its
    own, so pods of others coming and going are no news to it (the periodic resync still visits it)."""
    spec = body.get("spec") or {}
    if ((spec.get("placement") or {}).get("weights") or {}).get("dynamic") is not None:
        return True
    conditions = (body.get("status") or {}).get("conditions") or []
    planned = next((c for c in conditions if c.get("type") == PLANNED), None)
    if planned is None:
        return True
    reason = str(planned.get("reason"))
    if planned.get("status") == "True":
        return reason in (CPU_FALLBACK, PARTIALLY_PLACED)
    return reason != INVALID_SPEC  # an invalid spec waits for its author, not for devices


def _where(cluster: str, fleet: FleetOutcome) -> str:
    return f"{cluster}: " if len(fleet.members) > 1 else ""


def _converted(fleet: FleetOutcome) -> tuple[ConditionStatus, str, str]:
    conversions = fleet.conversions
    if not conversions:
        return ConditionStatus.TRUE, "NotNeeded", "the chosen runtimes load the source weights directly"
    failed = [(m, c) for m, c in conversions if c.phase == "Failed"]
    if failed:
        message = "; ".join(f"{_where(m, fleet)}Job {c.job}: {c.message}" for m, c in failed)
        return ConditionStatus.FALSE, "ConversionFailed", message
    pending = [(m, c) for m, c in conversions if c.phase != "Succeeded"]
    if pending:
        return (
            ConditionStatus.FALSE,
            "Converting",
            ", ".join(f"{_where(m, fleet)}Job {c.job} {c.phase}" for m, c in pending),
        )
    done = ", ".join(f"{_where(m, fleet)}artifact {c.cache_key} ready" for m, c in conversions)
    return ConditionStatus.TRUE, "Converted", done


def _propagated(fleet: FleetOutcome) -> tuple[ConditionStatus, str, str]:
    failing = [m for m in fleet.members if m.error]
    if failing:
        return ConditionStatus.FALSE, "PropagationFailed", "; ".join(f"{m.cluster} {m.error}" for m in failing)
    names = ", ".join(m.cluster for m in fleet.serving)
    return ConditionStatus.TRUE, "Propagated", f"applied to {names}"


def _progressing(fleet: FleetOutcome) -> tuple[ConditionStatus, str, str]:
    """A coordinated rollout across members (broadcast, all ready, switch)."""
    rollout = fleet.rollout
    if rollout is None:
        revisions = ", ".join(f"{m.cluster}={m.revision}" for m in fleet.serving if m.revision)
        return ConditionStatus.TRUE, "RolledOut", f"every member serves its current revision ({revisions})"
    if rollout.phase is RolloutPhase.ROLLED_BACK:
        return ConditionStatus.FALSE, "RolledBack", rollout.message
    if rollout.phase is RolloutPhase.BLOCKED:
        return ConditionStatus.FALSE, "RolloutBlocked", rollout.message
    return ConditionStatus.TRUE, "RollingOut", rollout.message


def _primary(fleet: FleetOutcome) -> Plan | None:
    """The plan of the member serving the most replicas (ties by name): what the printer columns show."""
    ranked = sorted(fleet.serving, key=lambda m: (-m.desired, m.cluster))
    return ranked[0].plan if ranked else None


def desired_status(
    current: ModelDeploymentStatus | None,
    generation: int | None,
    fleet: FleetOutcome | None,
    now: datetime,
    invalid: str | None = None,
    inputs_hash: str | None = None,
    plan_hash: str | None = None,
    forecast_enabled: bool = False,
) -> ModelDeploymentStatus:
    """The status a ModelDeployment should have; equal to `current` when nothing changed."""
    base = current or ModelDeploymentStatus()
    # The forecasting scaler owns its condition and status.forecast; with forecasting off, both go.
    conditions = [c for c in base.conditions if forecast_enabled or c.type != FORECASTING]
    s, r, m = _planned(fleet, invalid)
    conditions = set_condition(conditions, PLANNED, s, r, m, generation, now)
    feasible = fleet is not None and bool(fleet.serving) and not invalid
    members = list(fleet.members) if fleet is not None and not invalid else []
    if feasible and fleet is not None:
        for type_, (s, r, m) in ((CONVERTED, _converted(fleet)), (PROPAGATED, _propagated(fleet))):
            conditions = set_condition(conditions, type_, s, r, m, generation, now)
        if fleet.coordinated:
            s, r, m = _progressing(fleet)
            conditions = set_condition(conditions, PROGRESSING, s, r, m, generation, now)
    desired = sum(o.desired for o in members)
    ready = sum(o.observed.ready_replicas for o in members if o.serving)
    if feasible and desired > 0 and ready >= desired:
        s, r = ConditionStatus.TRUE, "ReplicasReady"
    else:
        s, r = ConditionStatus.FALSE, "ReplicasNotReady" if feasible else "NotPlaced"
    conditions = set_condition(conditions, READY, s, r, f"{ready}/{desired} replicas ready", generation, now)
    degraded_reasons = []
    for member in members:
        if member.plan is not None:
            degraded_reasons += [f"{_where(member.cluster, fleet)}{w}" for w in member.plan.warnings if fleet]
        if member.error:
            degraded_reasons.append(f"{member.cluster} {member.error}")
    if fleet is not None and fleet.unschedulable > 0 and feasible:
        degraded_reasons.append(f"{fleet.unschedulable} of {fleet.wanted} replicas fit on no member")
    if any(c.phase == "Failed" for o in members for c in o.observed.conversions):
        degraded_reasons.append("a conversion Job failed")
    if not feasible:
        degraded_reasons.append("no placement")
    if fleet is not None and fleet.rollout is not None and fleet.rollout.phase is RolloutPhase.ROLLED_BACK:
        degraded_reasons.append(f"rollout rolled back: {fleet.rollout.message}")
    conditions = set_condition(
        conditions,
        DEGRADED,
        ConditionStatus.TRUE if degraded_reasons else ConditionStatus.FALSE,
        "Degraded" if degraded_reasons else "AsPlanned",
        "; ".join(degraded_reasons),
        generation,
        now,
    )
    order = {t: i for i, t in enumerate((PLANNED, CONVERTED, PROPAGATED, PROGRESSING, READY, DEGRADED, FORECASTING))}
    conditions.sort(key=lambda c: order.get(c.type, 99))
    primary_plan = _primary(fleet) if feasible and fleet is not None else None
    primary = primary_plan.primary if primary_plan else None
    serving = [o for o in members if o.serving]
    return ModelDeploymentStatus(
        observed_generation=generation,
        conditions=conditions,
        plan=[entry for o in serving if o.plan for entry in o.plan.entries(o.cluster)],
        clusters=[
            ClusterStatus(
                name=o.cluster,
                desired=o.desired,
                ready=o.observed.ready_replicas,
                revision=o.revision or None,
                endpoint=o.observed.endpoint,
            )
            for o in sorted(members, key=lambda o: o.cluster)
        ],
        replicas=desired,
        ready_replicas=ready,
        forecast=base.forecast if forecast_enabled else None,
        rollout=fleet.rollout if fleet is not None and not invalid else None,
        backend=primary.backend if primary else None,
        precision=primary.precision.value if primary else None,
        tensor_parallel=primary.tensor_parallel if primary else None,
        cluster_count=len(serving),
        inputs_hash=inputs_hash,
        plan_hash=plan_hash,
        # An invalid spec changes nothing on the members: what ran keeps using its artifacts, which deletion
        # must still release.
        artifacts=list(base.artifacts)
        if invalid
        else sorted(
            {
                a.option.conversion.cache_key
                for o in serving
                if o.plan
                for a in o.plan.assignments
                if a.option.conversion
            }
        ),
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
