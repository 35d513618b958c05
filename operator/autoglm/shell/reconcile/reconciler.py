"""One reconcile of a ModelDeployment over its member clusters: observe -> place and plan (pure) -> render (pure) ->
act in each member -> aggregate status on the host.

Direct propagation: each member's objects are applied to that member with server-side apply. ownerReferences
cannot cross clusters, so objects carry the owner's namespace, name and uid as labels, and on members other
than the host a finalizer (autoglm.io/propagation) makes deletion remove them. The single-cluster operator is
the same thing with one member, `local`. Karmada mode (karmada_mode.py) hands the same decision to Karmada.

The parts, one job each, as Karmada splits its controllers: snapshots (catalog and inventories), apply, conversion,
rollout, karmada_mode, deletion. Independent of kopf so the controller, tests against a sandbox and the demo drive
it alike. Restart-safe: everything it needs is read back from the API servers; a second call with nothing changed
writes nothing; a member's object edited or deleted by someone else is put back (drift repair).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from autoglm.api import BackendRuntime, ModelDeployment
from autoglm.api.common import validation_message
from autoglm.api.modeldeployment import ModelDeploymentStatus, RolloutPhase
from autoglm.core.forecast.decision import forecast_enabled, with_floor
from autoglm.core.hardware import AcceleratorTable, Inventory, load_accelerator_table
from autoglm.core.images import Images
from autoglm.core.model_config import parse_config, with_config
from autoglm.core.models import ModelCatalog, ProfileError, load_model_catalog, profile_for
from autoglm.core.placement import MemberShare, MemberView, member_spec, place
from autoglm.core.planner import Plan, inputs_digest, plan
from autoglm.core.render import (
    Target,
    member_revision,
    model_cache_claim,
    plan_hash,
    serving_objects,
    stamped,
)
from autoglm.core.status import FleetOutcome, MemberOutcome, condition_events, desired_status
from autoglm.shell.clusters import ClusterClient
from autoglm.shell.inventories import InventoryCache
from autoglm.shell.members import LOCAL, MembersNotListed, MemberSource
from autoglm.shell.problems import UNREACHABLE, short_reason
from autoglm.shell.reconcile import deletion, karmada_mode, rollout
from autoglm.shell.reconcile.apply import DeferredApplies, converge
from autoglm.shell.reconcile.cache_claim import CacheClaimTooSmall
from autoglm.shell.reconcile.conversion import convert
from autoglm.shell.reconcile.request import (
    ARTIFACT_FINALIZER,
    PROPAGATION_FINALIZER,
    Manifest,
    ObjectGone,
    Outcome,
    Request,
    digest,
    observed,
)
from autoglm.shell.reconcile.snapshots import Snapshots
from autoglm.shell.reconcile.strays import StrayMembers

logger = logging.getLogger(__name__)


@dataclass
class Reconciler:
    cluster: ClusterClient  # the host: ModelDeployments, BackendRuntimes, MemberClusters, status, Events
    defaults: Sequence[BackendRuntime]
    members: MemberSource | None = None  # None: the host is the only member (local)
    # Karmada mode: `cluster` is the Karmada API server; objects go there with Karmada's policies.
    karmada: bool = False
    models: ModelCatalog = field(default_factory=load_model_catalog)
    accelerators: AcceleratorTable = field(default_factory=load_accelerator_table)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    inventories: InventoryCache | None = None  # shared with the member heartbeat; made here when not given
    apply_timeout: float = 30.0  # how long a reconcile waits for the last one's deferred applies
    images: Images = field(default_factory=Images)  # the helper image and the mirror every image is pulled from
    snapshots: Snapshots = field(init=False, repr=False)
    deferred: DeferredApplies = field(init=False, repr=False)
    strays: StrayMembers = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.inventories is None:
            self.inventories = InventoryCache(self.accelerators)
        self.snapshots = Snapshots(self.cluster, self.defaults, self.inventories, self.member_client, self.images)
        self.deferred = DeferredApplies(self.cluster, self.apply_timeout)
        self.strays = StrayMembers()

    # --- members ---------------------------------------------------------------------------------------

    def member_views(self) -> list[MemberView]:
        return self.members.views() if self.members is not None else [MemberView(name=LOCAL)]

    def member_client(self, name: str) -> ClusterClient | None:
        if self.members is None:
            return self.cluster if name == LOCAL else None
        return self.members.client(name)

    def unreachable(self, member: str, exc: BaseException) -> str:
        """`unreachable for 13 s: connection refused` (after the member's name): how long, from its heartbeats."""
        view = next((v for v in self.member_views() if v.name == member), None)
        since = view.since if view is not None and not view.ready else None
        how_long = f" for {(self.clock() - since).total_seconds():.0f} s" if since else ""
        return f"unreachable{how_long}: {short_reason(exc)}"

    # --- finalizers ------------------------------------------------------------------------------------

    def hold_finalizer(self, req: Request, finalizer: str = PROPAGATION_FINALIZER) -> None:
        """Before anything lands on a remote member (or a shared artifact is made), deletion must be able to
        remove it: ownerReferences cannot reach there. What the server answers is what is believed."""
        if finalizer not in req.finalizers:
            self.edit(req, self.cluster.add_finalizer, finalizer)
            if finalizer not in req.finalizers:
                raise ObjectGone(f"{req.namespace}/{req.md.metadata.name} is being deleted")

    def edit(self, req: Request, change: Callable[[str, str, str], Manifest | None], finalizer: str) -> Manifest:
        """One finalizer edit; the request then holds the object and finalizers the server returned."""
        written = change(req.namespace, req.md.metadata.name, finalizer)
        if written is None:
            raise ObjectGone(f"{req.namespace}/{req.md.metadata.name} no longer exists")
        req.body = written
        req.finalizers = list(written["metadata"].get("finalizers") or [])
        return written

    # --- reconcile -------------------------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        # The last reconcile's deferred applies land before this one sends anything (the queue never runs one
        # deployment twice at once): two applies of one object in flight could land in either order.
        self.deferred.settle(namespace, name)
        if self.members is not None and not self.members.synced():
            raise MembersNotListed("the member clusters have not been listed yet (the host did not answer)")
        if meta.get("deletionTimestamp"):
            return deletion.finalize(self, body)
        try:
            current = ModelDeploymentStatus.model_validate(body.get("status") or {})
        except ValidationError:
            current = ModelDeploymentStatus()  # written by hand or by an older operator: rebuilt from scratch
        try:
            md = ModelDeployment.model_validate({k: v for k, v in body.items() if k != "status"})
        except ValidationError as exc:
            return self._finish(body, current, generation, None, validation_message(exc), None, None)
        # While forecasting, the scaler's floor is the minimum: placed, planned and split over members as any.
        md = md.model_copy(update={"spec": with_floor(md.spec, current.forecast)})
        try:
            model = self._model_source(md)
            profile = profile_for(model, self.models)
        except ProfileError as exc:
            return self._finish(body, current, generation, None, str(exc), None, None)
        # The architecture a ConfigMap gave is part of what was planned (and of the inputs' digest).
        md = md.model_copy(update={"spec": md.spec.model_copy(update={"model": model})})

        req = Request(
            md, profile, self.snapshots.catalog(), current, generation, list(meta.get("finalizers") or []), dict(body)
        )
        now = self.clock()
        views = self.member_views()
        inventories: dict[str, Inventory] = {}
        plans: dict[tuple[str, int], Plan] = {}

        def inventory(member: str) -> Inventory:
            if member not in inventories:
                inventories[member] = self.snapshots.member_inventory(member, namespace, name)
            return inventories[member]

        def plan_for(member: str, replicas: int) -> Plan:
            if (member, replicas) not in plans:
                spec = member_spec(md.spec, member, replicas)
                plans[member, replicas] = plan(inventory(member), profile, req.catalog, spec, served_name=name)
            return plans[member, replicas]

        previous = {c.name: c.desired for c in current.clusters}
        fleet = place(views, md.spec, plan_for, now, previous)
        inputs = digest(
            [
                [m.model_dump(mode="json", exclude={"since"}) for m in sorted(views, key=lambda v: v.name)],
                {m: inputs_digest(md.spec, req.catalog, inv) for m, inv in sorted(inventories.items())},
            ]
        )
        shares = [s for s in fleet.shares if s.replicas > 0 and s.plan is not None and s.plan.feasible]
        progress = None
        key = (namespace, name)
        suspects: set[str] = set()
        if self.karmada:
            outcomes = karmada_mode.propagate(self, req, shares, inputs)
        else:
            # The members about to be applied to are remembered until a status naming them lands (strays.py);
            # with those remembered before, they may hold its objects beyond what its status names.
            self.strays.add(key, (s.name for s in shares))
            suspects = self.strays.get(key)
            req.coordinated = len(shares) > 1 or any(c.revision for c in current.clusters)
            req.serving = {c.name: c.revision or "" for c in current.clusters}
            if current.rollout is not None and current.rollout.phase is RolloutPhase.ROLLED_BACK:
                req.held = dict(current.rollout.targets)
            outcomes = [self._serve(req, share) for share in shares]
            if req.coordinated:
                outcomes, progress = rollout.coordinate(self, req, outcomes)
            serving = {o.cluster for o in outcomes}
            for member in sorted((set(previous) | suspects) - serving):
                leftover = deletion.withdraw(self, req, member)
                if leftover is not None:
                    outcomes.append(leftover)
        phash = digest(sorted((o.cluster, plan_hash(o.plan)) for o in outcomes if o.plan is not None))
        result = FleetOutcome(
            outcomes, fleet.wanted, fleet.unschedulable, fleet.summary, coordinated=req.coordinated, rollout=progress
        )
        outcome = self._finish(req.body, current, generation, result, None, inputs, phash)
        # Its status now names every member that holds its objects (or they were withdrawn).
        self.strays.discard(key, suspects)
        written = outcome.body or req.body
        if ARTIFACT_FINALIZER in req.finalizers and not (written.get("status") or {}).get("artifacts"):
            # No plan uses a conversion artifact any more: deletion has nothing to release.
            req.body = written
            outcome.body = self.edit(req, self.cluster.remove_finalizer, ARTIFACT_FINALIZER)
        if req.pending:
            self.deferred.land(dict(req.body), req.pending)
            req.applied += [ref for _, ref in req.pending]
            outcome.deferred = True
        outcome.applied, outcome.deleted = req.applied, req.deleted
        if fleet.recheck_at is not None:
            outcome.requeue_after = (fleet.recheck_at - now).total_seconds()
        outcome.plan = next((o.plan for o in outcomes if o.serving), None) or _probe(fleet.shares)
        return outcome

    def _serve(self, req: Request, share: MemberShare) -> MemberOutcome:
        """Convert, apply and observe one member's part; a remote member's failure is its outcome, not a crash."""
        assert share.plan is not None
        member = self.member_client(share.name)
        if member is None:
            return MemberOutcome(share.name, plan=share.plan, error="not connected (no usable kubeconfig)")
        try:
            return self._apply_member(req, member, share)
        except CacheClaimTooSmall as exc:
            return MemberOutcome(share.name, plan=share.plan, error=str(exc))
        except UNREACHABLE as exc:
            if share.name == LOCAL:
                raise  # the host's API errors go to the controller's backoff
            logger.warning("member %s: %s", share.name, short_reason(exc))
            logger.debug("member %s: the error in full", share.name, exc_info=exc)
            return MemberOutcome(share.name, plan=share.plan, error=self.unreachable(share.name, exc))

    def _apply_member(self, req: Request, member: ClusterClient, share: MemberShare) -> MemberOutcome:
        md, current = req.md, req.current
        namespace, name = req.namespace, md.metadata.name
        remote = member.name != LOCAL
        result = share.plan
        assert result is not None
        if remote:
            self.hold_finalizer(req)
            member.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        conversions = convert(self, req, member, result)
        failed = {c.cache_key for c in conversions if c.phase == "Failed"}
        if failed:
            # A runtime whose artifact cannot be built is dropped, and the member's plan made again without it
            # (which is where fallbackPolicy decides between another runtime, CPU, or nothing).
            broken = {
                a.option.backend
                for a in result.assignments
                if a.option.conversion and a.option.conversion.cache_key in failed
            }
            catalog = [b for b in req.catalog if b.metadata.name not in broken]
            inventory = self.snapshots.inventory(member, namespace, name)
            own = member_spec(md.spec, member.name, share.replicas)  # the member's overrides, as placement planned
            result = plan(inventory, req.profile, catalog, own, served_name=name)
            conversions = [c for c in conversions if c.phase == "Failed"] + [
                c for c in convert(self, req, member, result) if c.cache_key not in failed
            ]
        blocked = any(a.option.conversion and a.option.conversion.cache_key in failed for a in result.assignments)
        converting = any(c.phase not in ("Succeeded", "Failed") for c in conversions)
        known = member.name in {c.name for c in current.clusters}
        # A deployment that never had a plan applied here owns nothing here yet: skip the lists.
        owned = member.owned(namespace, name) if known or current.plan_hash else []
        if not (result.feasible and not blocked and not converting):
            return MemberOutcome(member.name, plan=result, observed=observed(member, owned, conversions))
        revision = member_revision(result) if req.coordinated else None
        rendered = [
            stamped(o)
            for o in serving_objects(
                md,
                result,
                req.runtimes,
                replicas_max=share.max_replicas,
                helper_image=self.images.helper_image,
                target=Target(
                    remote=remote,
                    suffix=f"-{revision}" if revision else "",
                    revision=revision,
                    host=self.cluster.identity() if remote else "",
                ),
            )
            if member.has_kind(o["apiVersion"], o["kind"])  # optional kinds the member does not serve are left out
        ]
        live = {(o["kind"], o["metadata"]["name"]): o for o in owned}
        serving = req.serving.get(member.name)
        if revision is not None and serving is not None and serving != revision:
            return rollout.roll(self, req, member, share, result, conversions, rendered, live, serving, revision)
        claim = model_cache_claim(md, req.cache_bytes)
        # Deferred only on the host and outside coordinated rollouts, whose Service switch must not race the apply.
        defer = not remote and not req.coordinated
        owned = converge(req, member, rendered, live, prune=True, claim=claim, defer=defer)
        return MemberOutcome(member.name, plan=result, observed=observed(member, owned, conversions), revision=revision)

    def _model_source(self, md: ModelDeployment) -> Any:
        """spec.model, with the architecture its ConfigMap's config.json describes, if it names one."""
        ref = md.spec.model.config_map
        if ref is None:
            return md.spec.model
        namespace = md.metadata.namespace or "default"
        where = f"spec.model.configMap {namespace}/{ref.name} key {ref.key}"
        found = self.cluster.get("v1", "ConfigMap", ref.name, namespace)
        if found is None:
            raise ProfileError(f"{where}: no such ConfigMap")
        text = (found.get("data") or {}).get(ref.key)
        if text is None:
            raise ProfileError(f"{where}: the ConfigMap has no such key")
        return with_config(md.spec.model, parse_config(text, where))

    def _finish(
        self,
        body: Mapping[str, Any],
        current: ModelDeploymentStatus,
        generation: int | None,
        fleet: FleetOutcome | None,
        invalid: str | None,
        inputs: str | None,
        phash: str | None,
    ) -> Outcome:
        new = desired_status(
            current,
            generation,
            fleet,
            self.clock(),
            invalid,
            inputs,
            phash,
            forecast_enabled=forecast_enabled(body),
        )
        old_doc = current.model_dump(mode="json", by_alias=True, exclude_none=True)
        new_doc = new.model_dump(mode="json", by_alias=True, exclude_none=True)
        events = []
        written = dict(body)
        if new_doc != old_doc:
            written = self.cluster.write_status(body, new_doc)
            for type_, reason, message in condition_events(current.conditions, new.conditions):
                self.cluster.event(body, type_, reason, message)
                events.append(reason)
        return Outcome(
            plan=None, status_written=new_doc != old_doc, events=events, invalid=invalid, fleet=fleet, body=written
        )


def _probe(shares: Sequence[MemberShare]) -> Plan | None:
    """Some plan for a deployment no member serves (its rejections say why), for metrics and callers."""
    return next((s.plan for s in shares if s.plan is not None), None)
