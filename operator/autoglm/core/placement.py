"""Placement across member clusters (pure): which members serve a ModelDeployment, with how many replicas each.

Semantics follow Karmada's PropagationPolicy: candidates by cluster names, label selector, region and zone (its
ClusterAffinity), with a member's NoSchedule/NoExecute taints tolerated or not (its clusterTolerations); `Duplicated`
(every member runs the full count) or `Divided` by static weights (members not listed get none; when no
listed member is a candidate, all weigh the same) or by dynamic weights (what each member can hold with its
own plan). Splits use largest remainders and never exceed what a member can hold: a member's excess spills
to members with room, in proportion to their weights, and what no member can hold is reported as
unschedulable. Each member gets its own plan (backend, image, precision, TP may differ). Failover: a member
NotReady for longer than the toleration is no candidate; one that comes back is a candidate again only after
the rebalance window, so a flapping member does not move replicas back and forth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from autoglm.api.backendruntime import BackendRuntime
from autoglm.api.membercluster import Taint
from autoglm.api.modeldeployment import ClusterToleration, ModelDeploymentSpec, ReplicaScheduling
from autoglm.core.hardware import Inventory
from autoglm.core.models import ModelProfile
from autoglm.core.planner import Plan, plan


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class MemberView(_Frozen):
    """What placement knows of one member cluster."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    ready: bool = True
    # When the Ready condition last changed; None when unknown (taken as long ago).
    since: datetime | None = None
    recovered: bool = Field(default=False, description="Ready again after being NotReady (not a first join).")
    region: str | None = None
    zone: str | None = None
    taints: tuple[Taint, ...] = Field(default=(), description="Taints a placement must tolerate to use the member.")
    reason: str = Field(default="", description="Why the member is not Ready, when it is not.")

    @property
    def matched_by(self) -> tuple[object, ...]:
        """What a placement matches a member by, besides readiness: a change of any of them re-places every
        deployment (both modes' member heartbeats compare it)."""
        return (self.labels, self.region, self.zone, self.taints)


class MemberShare(_Frozen):
    """One member's part of the placement."""

    name: str
    replicas: int = Field(description="Replicas to run there (the HPA's floor).")
    max_replicas: int = Field(description="The HPA's ceiling there.")
    capacity: int = Field(description="Replicas the member's free devices hold with its own plan.")
    weight: float
    plan: Plan | None = Field(default=None, description="The member's plan, for its share.")
    reasons: list[str] = Field(default_factory=list)


class FleetPlan(_Frozen):
    """The placement over the fleet: shares per member (members with 0 replicas included, with reasons)."""

    shares: list[MemberShare]
    wanted: int
    unschedulable: int
    excluded: dict[str, str] = Field(description="Members that are no candidates, and why.")
    summary: str
    # When a member's candidacy next changes with no event: its failover toleration or rebalance window ends.
    recheck_at: datetime | None = None

    @property
    def placed(self) -> int:
        return sum(s.replicas for s in self.shares)

    @property
    def serving(self) -> list[MemberShare]:
        return [s for s in self.shares if s.replicas > 0 and s.plan is not None and s.plan.feasible]

    def share(self, name: str) -> MemberShare | None:
        return next((s for s in self.shares if s.name == name), None)


def capacity(plan: Plan) -> int:
    """Replicas a plan's options hold on free devices, one runtime per pool (what the planner would fill)."""
    best: dict[str, int] = {}
    for option in plan.options:
        if option.max_replicas > 0 and option.pool not in best:
            best[option.pool] = option.max_replicas
    return sum(best.values())


def candidates(
    members: Sequence[MemberView], spec: ModelDeploymentSpec, now: datetime
) -> tuple[list[MemberView], dict[str, str]]:
    """Members the placement may use, and the others with the reason."""
    placement = spec.placement
    failover = placement.failover
    chosen: list[MemberView] = []
    excluded: dict[str, str] = {}
    named = set(placement.clusters)
    selector = placement.cluster_selector.match_labels if placement.cluster_selector else {}
    for member in sorted(members, key=lambda m: m.name):
        since = member.since or datetime.min.replace(tzinfo=now.tzinfo)
        if named and member.name not in named:
            excluded[member.name] = "not in placement.clusters"
        elif any(member.labels.get(k) != v for k, v in selector.items()):
            excluded[member.name] = f"labels do not match {selector}"
        elif placement.regions and member.region not in placement.regions:
            excluded[member.name] = f"region {member.region or '(none)'} not in placement.regions"
        elif placement.zones and member.zone not in placement.zones:
            excluded[member.name] = f"zone {member.zone or '(none)'} not in placement.zones"
        elif untolerated := untolerated_taints(member.taints, placement.cluster_tolerations):
            excluded[member.name] = f"tainted {', '.join(untolerated)}, not in placement.clusterTolerations"
        elif not member.ready and now - since >= timedelta(seconds=failover.toleration_seconds):
            excluded[member.name] = (
                f"NotReady for {(now - since).total_seconds():.0f} s (toleration {failover.toleration_seconds} s)"
                + (f": {member.reason}" if member.reason else "")
            )
        elif member.recovered and member.ready and now - since < timedelta(seconds=failover.rebalance_seconds):
            excluded[member.name] = (
                f"Ready again for {(now - since).total_seconds():.0f} s; replicas return after "
                f"{failover.rebalance_seconds} s"
            )
        else:
            chosen.append(member)
    for name in sorted(named - {m.name for m in members}):
        excluded[name] = "no such member cluster"
    return chosen, excluded


def member_spec(spec: ModelDeploymentSpec, member: str, replicas: int | None = None) -> ModelDeploymentSpec:
    """The spec one member plans with: spec.template with that member's placement.memberOverrides merged over it,
    and replicas.min its share when given. Every plan made for a member comes from this spec."""
    template = spec.template
    for override in (o.template for o in spec.placement.member_overrides if o.cluster == member):
        template = template.merged(override)
    own = spec if template is spec.template else spec.model_copy(update={"template": template})
    return own if replicas is None else own.with_min_replicas(replicas)


def untolerated_taints(taints: Sequence[Taint], tolerations: Sequence[ClusterToleration]) -> list[str]:
    """The member's NoSchedule and NoExecute taints no toleration tolerates, as `key=value:Effect` (Karmada's
    TaintToleration filter: PreferNoSchedule does not keep replicas off)."""
    return [
        f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}"
        for t in taints
        if t.effect in ("NoSchedule", "NoExecute")
        and not any(x.tolerates(t.key, t.value, t.effect) for x in tolerations)
    ]


def recheck_at(members: Sequence[MemberView], spec: ModelDeploymentSpec, now: datetime) -> datetime | None:
    """The earliest time after `now` at which a member's candidacy changes only because time passed: a NotReady
    member's toleration runs out (its replicas fail over), or a recovered one's rebalance window ends (they
    return). Nothing else announces these moments, so the deployment is reconciled again then."""
    failover = (spec.placement.failover.toleration_seconds, spec.placement.failover.rebalance_seconds)
    due = []
    for member in members:
        if member.since is None:
            continue
        if not member.ready:
            due.append(member.since + timedelta(seconds=failover[0]))
        elif member.recovered:
            due.append(member.since + timedelta(seconds=failover[1]))
    later = [d for d in due if d > now]
    return min(later) if later else None


def _weights(
    chosen: Sequence[MemberView], spec: ModelDeploymentSpec, capacities: Mapping[str, int]
) -> dict[str, float]:
    weights = spec.placement.weights
    if weights.dynamic is not None:
        return {m.name: float(capacities[m.name]) for m in chosen}
    if weights.static:
        listed = {w.cluster: float(w.weight) for w in weights.static}
        static = {m.name: listed.get(m.name, 0.0) for m in chosen}
        if sum(static.values()) > 0:
            return static
    return {m.name: 1.0 for m in chosen}


def divide(
    total: int,
    weights: Mapping[str, float],
    limits: Mapping[str, int] | None = None,
    previous: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Split `total` by weight with largest remainders, never above a member's limit; a capped member's excess
    goes to the others with room by their weights. Ties go to the larger weight, then to the member that had
    more replicas before (so nothing moves without cause, as Karmada keeps lastReplicas), then by name."""
    before = previous or {}
    result = {name: 0 for name in weights}
    room = {name: (limits[name] if limits is not None else total) for name in weights}
    remaining = total
    while remaining > 0:
        open_ = {n: w for n, w in weights.items() if w > 0 and room[n] > result[n]}
        weight_sum = sum(open_.values())
        if weight_sum <= 0:
            break
        ideal = {n: remaining * w / weight_sum for n, w in open_.items()}
        take = {n: min(math.floor(v), room[n] - result[n]) for n, v in ideal.items()}
        left = remaining - sum(take.values())
        order = sorted(open_, key=lambda n: (-(ideal[n] - math.floor(ideal[n])), -open_[n], -before.get(n, 0), n))
        for name in order:
            if left <= 0:
                break
            if take[name] < room[name] - result[name]:
                take[name] += 1
                left -= 1
        given = sum(take.values())
        for name, count in take.items():
            result[name] += count
        remaining -= given
        if given == 0:
            break
    return result


def place(
    members: Sequence[MemberView],
    spec: ModelDeploymentSpec,
    plan_for: Callable[[str, int], Plan],
    now: datetime,
    previous: Mapping[str, int] | None = None,
) -> FleetPlan:
    """Decide each member's replicas and plan. `plan_for(member, replicas)` runs the planner on that member's
    inventory for that many replicas (it is called once to learn capacity, then once with the share).
    `previous` is the replicas each member had, which settles ties."""
    chosen, excluded = candidates(members, spec, now)
    wanted = max(spec.replicas.min, 1)
    ceiling = max(spec.replicas.max, wanted)
    probes = {m.name: plan_for(m.name, wanted) for m in chosen}
    capacities = {name: capacity(p) for name, p in probes.items()}
    # CPU fallback is fleet-wide, as the planner's is cluster-wide: a member that could only serve on CPU
    # gets nothing while another member has accelerators with room.
    accelerated = any(capacities[n] > 0 and not p.fallback for n, p in probes.items())
    cpu_only = {n for n, p in probes.items() if accelerated and p.fallback}
    for name in cpu_only:
        capacities[name] = 0
    weights = _weights(chosen, spec, capacities)
    if spec.placement.replica_scheduling is ReplicaScheduling.DUPLICATED:
        floors = {m.name: min(wanted, capacities[m.name]) for m in chosen}
        ceilings = {m.name: ceiling for m in chosen}
        unschedulable = sum(wanted - f for f in floors.values()) if chosen else wanted
    else:
        floors = divide(wanted, weights, capacities, previous)
        ceilings = divide(ceiling, {n: w for n, w in weights.items() if floors[n] > 0} or weights, None, floors)
        unschedulable = wanted - sum(floors.values())
    shares = []
    for member in chosen:
        name = member.name
        replicas = floors[name]
        reasons = [f"weight {weights[name]:g}, holds {capacities[name]} replicas with its own plan"]
        if replicas < wanted and spec.placement.replica_scheduling is ReplicaScheduling.DUPLICATED:
            reasons.append(f"holds only {replicas} of the {wanted} replicas every member should run")
        member_plan = plan_for(name, replicas) if replicas > 0 else probes[name]
        if name in cpu_only:
            reasons.append("no replicas: it could serve only on CPU, and other members have accelerators")
        elif replicas == 0:
            reasons.append("no replicas: " + ("no room" if capacities[name] == 0 else "weight share rounds to 0"))
        shares.append(
            MemberShare(
                name=name,
                replicas=replicas,
                max_replicas=max(ceilings.get(name, 0), replicas) if replicas else 0,
                capacity=capacities[name],
                weight=weights[name],
                plan=member_plan,
                reasons=reasons,
            )
        )
    return FleetPlan(
        shares=shares,
        wanted=wanted,
        unschedulable=max(unschedulable, 0),
        excluded=excluded,
        summary=_summary(shares, wanted, unschedulable, excluded),
        recheck_at=recheck_at(members, spec, now),
    )


def _summary(shares: Sequence[MemberShare], wanted: int, unschedulable: int, excluded: Mapping[str, str]) -> str:
    serving = [s for s in shares if s.replicas > 0 and s.plan is not None]
    if not serving:
        # Each candidate's own plan says why (memory in GiB, free devices); prefixed when there are several.
        named = len(shares) + len(excluded) > 1
        why = [(f"{s.name}: " if named else "") + (s.plan.summary if s.plan else "no plan") for s in shares]
        why += [f"{n}: {r}" for n, r in excluded.items()]
        return "; ".join(why) or "no member cluster to place on"
    tail = f"; {unschedulable} unschedulable" if unschedulable > 0 else ""
    if len(shares) == 1 and not excluded and serving[0].plan is not None:
        return serving[0].plan.summary + tail  # one cluster: its plan says it all
    parts = []
    for s in serving:
        primary = s.plan.primary if s.plan else None
        what = f"{primary.backend} {primary.precision.value} TP={primary.tensor_parallel}" if primary else "?"
        parts.append(f"{s.name}: {s.replicas}x {what}")
    return "; ".join(parts) + tail


def fleet_plan(
    inventories: Mapping[str, Inventory],
    labels: Mapping[str, Mapping[str, str]],
    profile: ModelProfile,
    catalog: Sequence[BackendRuntime],
    spec: ModelDeploymentSpec,
    served_name: str,
    now: datetime,
) -> FleetPlan:
    """Placement over member inventories known in full (offline: `autoglm plan --cluster`), every member Ready."""
    members = [MemberView(name=name, labels=dict(labels.get(name, {}))) for name in inventories]
    plans: dict[tuple[str, int], Plan] = {}

    def plan_for(member: str, replicas: int) -> Plan:
        if (member, replicas) not in plans:
            wanted = member_spec(spec, member, replicas)
            plans[member, replicas] = plan(inventories[member], profile, catalog, wanted, served_name=served_name)
        return plans[member, replicas]

    return place(members, spec, plan_for, now)
