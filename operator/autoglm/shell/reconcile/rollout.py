"""Coordinated rollouts across members (broadcast -> all ready -> switch): the new revision runs beside the old in
every member, every member's Service switches together once all are ready, and a deadline rolls everyone back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from autoglm.api.modeldeployment import RolloutPhase, RolloutStatus
from autoglm.core.placement import MemberShare, member_spec
from autoglm.core.planner import Plan, plan
from autoglm.core.status import ConversionState, MemberOutcome, Observed
from autoglm.shell.clusters import ClusterClient, ready_replicas, service_endpoint
from autoglm.shell.members import LOCAL
from autoglm.shell.reconcile.apply import converge
from autoglm.shell.reconcile.request import WORKLOAD_KINDS, Manifest, Request, observed, ref, revision_of

if TYPE_CHECKING:
    from autoglm.shell.reconcile.reconciler import Reconciler


def roll(
    r: Reconciler,
    req: Request,
    member: ClusterClient,
    share: MemberShare,
    result: Plan,
    conversions: list[ConversionState],
    rendered: list[Manifest],
    live: Mapping[tuple[str, str], Manifest],
    serving: str,
    target: str,
) -> MemberOutcome:
    """One member in a coordinated rollout: the new revision's workloads run beside the old ones, whose
    Service and HPA stay as they are until every member has the new revision ready (see _coordinate)."""
    old = [o for o in live.values() if revision_of(o) == serving and o["kind"] in WORKLOAD_KINDS]
    ready, replicas = ready_replicas(old)
    endpoint = service_endpoint(live.values(), on_host=member.name == LOCAL)  # selects the old revision still
    observed = Observed(ready, replicas, conversions, endpoint)
    outcome = MemberOutcome(member.name, plan=result, observed=observed, revision=serving, target=target)
    new = [o for o in rendered if o["kind"] in WORKLOAD_KINDS or revision_of(o) == target]
    if req.held.get(member.name) == target:
        for obj in live.values():  # a rolled-back revision's leftovers
            if revision_of(obj) == target:
                member.delete(obj)
                req.deleted.append(ref(obj, member.name))
        return outcome
    short = (
        surge_shortfall(r, req, member, share, result)
        if not any(revision_of(o) == target for o in live.values())
        else None
    )
    if short:
        return replace(outcome, target_message=short, blocked=True)
    applied = converge(req, member, new, {k: v for k, v in live.items() if revision_of(v) == target}, prune=False)
    new_ready, _ = ready_replicas(applied)
    desired = sum(a.replicas for a in result.assignments)
    req.switches[member.name] = (member, rendered, live)
    return replace(
        outcome,
        target_ready=new_ready >= desired > 0,
        target_message=f"{member.name}: {new_ready}/{desired} replicas of revision {target} ready",
    )


def surge_shortfall(r: Reconciler, req: Request, member: ClusterClient, share: MemberShare, result: Plan) -> str | None:
    """Whether the new revision fits beside the old one (whose pods still hold their devices); None if it
    does, else what is missing."""
    inventory = r.snapshots.full_inventory(member)  # the old revision's pods count as taken
    room = plan(inventory, req.profile, req.catalog, member_spec(req.md.spec, member.name, share.replicas))
    fits = {(o.pool, o.backend, o.precision, o.tensor_parallel): o.max_replicas for o in room.options}
    for a in result.assignments:
        o = a.option
        have = fits.get((o.pool, o.backend, o.precision, o.tensor_parallel), 0)
        if have < a.replicas:
            return (
                f"{member.name}: the new revision needs {a.replicas} replicas on {o.pool} beside the old "
                f"ones; {have} fit there now"
            )
    return None


def coordinate(
    r: Reconciler, req: Request, outcomes: list[MemberOutcome]
) -> tuple[list[MemberOutcome], RolloutStatus | None]:
    """Broadcast, all ready, switch (seed §2.5): once every rolling member has its new revision ready, every
    member's Service and HPA switch to it together and the old revision goes; past the deadline, every
    member drops the new revision and keeps the old, and the rollout is reported rolled back."""
    now = r.clock()
    rolling = [o for o in outcomes if o.target is not None]
    previous = req.current.rollout
    if not rolling:
        if previous is not None and previous.phase is RolloutPhase.ROLLED_BACK and req.held:
            return outcomes, previous
        return outcomes, None
    targets = {o.cluster: o.target for o in rolling if o.target}
    if previous is not None and previous.phase is RolloutPhase.ROLLED_BACK and previous.targets == targets:
        return outcomes, previous
    started = previous.started if previous is not None and previous.targets == targets and previous.started else now
    blocked = [o for o in rolling if o.blocked]
    if blocked:
        message = "; ".join(o.target_message or "" for o in blocked) + " (waiting for room)"
        return outcomes, RolloutStatus(phase=RolloutPhase.BLOCKED, targets=targets, started=started, message=message)
    if all(o.target_ready for o in rolling):
        switched = []
        for o in outcomes:
            if o.target is None:
                switched.append(o)
                continue
            member, rendered, live = req.switches[o.cluster]
            objects = converge(req, member, rendered, live, prune=True, force=True)
            seen = observed(member, objects, o.observed.conversions)
            switched.append(replace(o, revision=o.target, target=None, observed=seen))
        return switched, None
    waited = (now - started).total_seconds()
    if waited > req.md.spec.rollout.deadline_seconds:
        laggards = [o.target_message or o.cluster for o in rolling if not o.target_ready]
        for o in rolling:
            member = req.switches[o.cluster][0]
            for obj in member.owned(req.namespace, req.md.metadata.name):
                if revision_of(obj) == o.target:
                    member.delete(obj)
                    req.deleted.append(ref(obj, o.cluster))
        message = (
            f"not ready in every member after {req.md.spec.rollout.deadline_seconds} s ("
            + "; ".join(laggards)
            + "); every member keeps its previous revision"
        )
        rolled_back = [replace(o, target=None) for o in outcomes]
        return rolled_back, RolloutStatus(
            phase=RolloutPhase.ROLLED_BACK, targets=targets, started=started, message=message
        )
    message = "; ".join(o.target_message or o.cluster for o in rolling)
    return outcomes, RolloutStatus(phase=RolloutPhase.PROGRESSING, targets=targets, started=started, message=message)
