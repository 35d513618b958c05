"""One reconcile of a ModelDeployment over its member clusters: observe -> place and plan (pure) -> render
(pure) -> act in each member -> aggregate status on the host.

Direct propagation: each member's objects are applied to that member with server-side apply. ownerReferences
cannot cross clusters, so objects carry the owner's namespace, name and uid as labels, and on members other
than the host a finalizer (autoglm.io/propagation) makes deletion remove them. The single-cluster operator is
the same thing with one member, `local`.

Independent of kopf so it can be driven by the handlers, by tests against a sandbox, and by the demo.
Restart-safe: everything it needs is read back from the API servers; a second call with nothing changed
writes nothing; a member's object edited or deleted by someone else is put back (drift repair).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes.client import ApiException
from pydantic import ValidationError

from autoglm.api import BackendRuntime, ModelDeployment, Precision
from autoglm.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus, RolloutPhase, RolloutStatus
from autoglm.core.backends import merge_catalogs
from autoglm.core.forecast.decision import forecast_enabled, with_floor
from autoglm.core.hardware import (
    AcceleratorTable,
    Inventory,
    load_accelerator_table,
    with_released,
)
from autoglm.core.karmada import (
    OPTIONAL_KINDS,
    WORK_GROUP,
    MemberPart,
    binding_name,
    member_status,
    propagation_objects,
    shared_objects,
    shared_policy,
)
from autoglm.core.model_config import parse_config, with_config
from autoglm.core.models import ModelCatalog, ModelProfile, ProfileError, load_model_catalog, profile_for, weight_bytes
from autoglm.core.placement import MemberShare, MemberView, place
from autoglm.core.planner import Plan, inputs_digest, plan
from autoglm.core.render import (
    LABEL_CACHE_KEY,
    LABEL_DEPLOYMENT,
    LABEL_REVISION,
    Target,
    artifact_cleanup_job,
    conversion_job,
    conversion_job_name,
    dns_label,
    drifted,
    keep_scale,
    member_revision,
    model_cache_claim,
    plan_hash,
    serving_objects,
    stamped,
)
from autoglm.core.status import (
    ConversionState,
    FleetOutcome,
    MemberOutcome,
    Observed,
    condition_events,
    desired_status,
)
from autoglm.shell.clusters import ClusterClient, ready_replicas, service_endpoint
from autoglm.shell.inventories import InventoryCache
from autoglm.shell.members import LOCAL, MemberSource, classify

Manifest = dict[str, Any]
PROPAGATION_FINALIZER = "autoglm.io/propagation"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Applies of one reconcile's objects run side by side here; shared by every reconcile of the process.
_APPLIES = ThreadPoolExecutor(max_workers=64, thread_name_prefix="autoglm-apply")
# On the host, neither the status nor the reconcile waits for these: what the status reports comes from the
# workloads. A Service in particular can take long to create: a kube-apiserver allocates ClusterIPs one at a
# time, each an IPAddress object written through its own API (measured at 20 creates/s on 5,000 nodes: 0.43 s
# a Service at p50 against 0.08 s a Deployment), and a burst of creates would hold every worker waiting on it.
# One that fails gets a Warning Event and the deployment is reconciled again (Reconciler.on_deferred).
DEFERRED_KINDS = frozenset({"Service", "HorizontalPodAutoscaler", "PodMonitor", "InferencePool"})
logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one reconcile did, for handlers, metrics and tests."""

    plan: Plan | None
    status_written: bool
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    invalid: str | None = None
    fleet: FleetOutcome | None = None


class MemberUnavailable(Exception):
    """A member that still counts (within its failover toleration) cannot be cleaned up yet; retry later."""


def _ref(obj: Mapping[str, Any], cluster: str = LOCAL) -> str:
    meta = obj["metadata"]
    where = "" if cluster == LOCAL else f"{cluster}:"
    return f"{where}{obj['kind']}/{meta['name']}"


def _job_state(job: Mapping[str, Any] | None, name: str, key: str) -> ConversionState:
    if job is None:
        return ConversionState(key, name, "Pending", "not created")
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Failed", "FailureTarget") and cond.get("status") == "True":
            return ConversionState(key, name, "Failed", f"{cond.get('reason')}: {cond.get('message') or ''}".strip())
        if cond.get("type") == "Complete" and cond.get("status") == "True":
            return ConversionState(key, name, "Succeeded")
    if status.get("succeeded"):
        return ConversionState(key, name, "Succeeded")
    return ConversionState(key, name, "Running" if status.get("active") else "Pending")


def _pods_by_owner(pods: Sequence[Manifest]) -> dict[tuple[str, str], list[Manifest]]:
    """Pods by the deployment that made them: (namespace, name) -> pods."""
    found: dict[tuple[str, str], list[Manifest]] = {}
    for pod in pods:
        meta = pod["metadata"]
        owner = (meta.get("labels") or {}).get(LABEL_DEPLOYMENT)
        if owner:
            found.setdefault((meta.get("namespace") or "", owner), []).append(pod)
    return found


def _revision_of(obj: Mapping[str, Any]) -> str:
    """The revision an object belongs to ("" for one made before the deployment spanned members)."""
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION, ""))


def _with_replicas(spec: ModelDeploymentSpec, replicas: int) -> ModelDeploymentSpec:
    return spec.model_copy(update={"replicas": spec.replicas.model_copy(update={"min": replicas})})


def _digest(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class _Request:
    """One reconcile's inputs, shared by the members' steps."""

    md: ModelDeployment
    profile: ModelProfile
    catalog: list[BackendRuntime]
    current: ModelDeploymentStatus
    generation: int | None
    finalizers: list[str] = field(default_factory=list)
    # Coordinated rollouts: does the deployment span members (revisioned workloads), which revision each
    # member's Service selects ("" for unlabelled workloads), which targets rolled back and are held.
    coordinated: bool = False
    serving: dict[str, str] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)
    switches: dict[str, tuple[ClusterClient, list[Manifest], Mapping[tuple[str, str], Manifest]]] = field(
        default_factory=dict
    )
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Applies the status does not wait for (see DEFERRED_KINDS), with the reference each is recorded under.
    pending: list[tuple[Future[Manifest], str]] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.md.metadata.namespace or ""

    @property
    def runtimes(self) -> dict[str, BackendRuntime]:
        return {b.metadata.name: b for b in self.catalog}

    @property
    def cache_bytes(self) -> int:
        # The cache volume is shared by the namespace and sized once, from the source (16-bit) weights.
        return weight_bytes(self.profile, Precision.BF16)


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

    # Told once a reconcile's deferred applies (DEFERRED_KINDS) have all landed: the deployment, and whether all
    # succeeded (the operator retries one that did not, as kopf retries a failed handler).
    on_deferred: Callable[[Mapping[str, Any], bool], None] | None = None
    _outstanding: dict[tuple[str, str], list[Future[Manifest]]] = field(default_factory=dict, repr=False)
    _memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)
    _memo_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.inventories is None:
            self.inventories = InventoryCache(self.accelerators)

    # --- members ---------------------------------------------------------------------------------------

    def member_views(self) -> list[MemberView]:
        return self.members.views() if self.members is not None else [MemberView(name=LOCAL)]

    def member_client(self, name: str) -> ClusterClient | None:
        if self.members is None:
            return self.cluster if name == LOCAL else None
        return self.members.client(name)

    # --- catalog and inventories -------------------------------------------------------------------------

    def _remember(self, key: tuple[Any, ...], sources: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """Per-snapshot memo. Entries hold their source snapshots, so an id() reused by a newer snapshot
        never returns a stale result. Reconciles run on several threads: the lock also makes one of them
        build what the others then share, instead of each building its own."""
        with self._memo_lock:
            hit = self._memo.get(key)
            if hit is None or any(a is not b for a, b in zip(hit[0], sources, strict=True)):
                # Keep only what belongs to the newest snapshots.
                stale = [
                    k
                    for k, (srcs, _) in self._memo.items()
                    if k[:2] == key[:2] and any(a is not b for a, b in zip(srcs, sources, strict=True))
                ]
                for k in stale:
                    del self._memo[k]
                hit = (sources, make())
                self._memo[key] = hit
            return hit[1]

    def catalog(self) -> list[BackendRuntime]:
        raw = self.cluster.backend_runtimes()
        result: list[BackendRuntime] = self._remember(("catalog", "", id(raw)), (raw,), lambda: self._catalog(raw))
        return result

    def _catalog(self, raws: Sequence[Mapping[str, Any]]) -> list[BackendRuntime]:
        user = []
        for raw in raws:
            try:
                user.append(
                    BackendRuntime.model_validate(
                        {k: v for k, v in raw.items() if k in ("apiVersion", "kind", "metadata", "spec")}
                    )
                )
            except ValidationError:
                continue  # the CRD schema admitted it; a pydantic-only rule rejects it, so it is not offered
        return merge_catalogs(self.defaults, user)

    def _full_inventory(self, member: ClusterClient) -> Inventory:
        """The member's pools with every device pod counted as taken; one per (nodes, pods) snapshot."""
        assert self.inventories is not None  # made in __post_init__
        return self.inventories.inventory(member.name, member.nodes(), member.device_pods())

    def _inventory(self, member: ClusterClient, namespace: str, name: str) -> Inventory:
        """The member's pools with this deployment's own pods counted as free (it may keep using what it holds).

        One inventory per snapshot serves every deployment; each one's own pods are handed back in O(its pods)
        (with_released), not by building the inventory again over every node."""
        full = self._full_inventory(member)
        pods = member.device_pods()
        owners: dict[tuple[str, str], list[Manifest]] = self._remember(
            ("pods-by-owner", member.name, id(pods)), (pods,), lambda: _pods_by_owner(pods)
        )
        own = owners.get((namespace, name))
        return with_released(full, own) if own else full

    def _member_inventory(self, member: str, namespace: str, name: str) -> Inventory:
        """The member's inventory; when it cannot be read, the last one read (a member within its failover
        toleration keeps its share on what was last known), else an empty one."""
        member_client = self.member_client(member)
        key = ("last-inventory", member)  # one per member: a stale fallback need not be per deployment
        if member_client is not None:
            try:
                inventory = self._inventory(member_client, namespace, name)
            except Exception as exc:
                if member == LOCAL:
                    raise
                logger.info("member %s: inventory not read (%s); using the last one", member, type(exc).__name__)
            else:
                with self._memo_lock:
                    self._memo[key] = ((), inventory)
                return inventory
        with self._memo_lock:
            last = self._memo.get(key)
        return last[1] if last else Inventory(pools=[], nodes_seen=0)

    # --- reconcile -------------------------------------------------------------------------------------

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        current = ModelDeploymentStatus.model_validate(body.get("status") or {})
        # The last reconcile's deferred applies land before this one sends anything (callers hold the
        # deployment's lock): two applies of one object in flight could land in either order.
        wait(self._outstanding.pop((namespace, name), []))
        if meta.get("deletionTimestamp"):
            self.finalize(body)
            return Outcome(plan=None, status_written=False)
        try:
            md = ModelDeployment.model_validate({k: v for k, v in body.items() if k != "status"})
        except ValidationError as exc:
            message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return self._finish(body, current, generation, None, message, None, None)
        # While forecasting, the scaler's floor is the minimum: placed, planned and split over members as any.
        md = md.model_copy(update={"spec": with_floor(md.spec, current.forecast)})
        try:
            model = self._model_source(md)
            profile = profile_for(model, self.models)
        except ProfileError as exc:
            return self._finish(body, current, generation, None, str(exc), None, None)
        # The architecture a ConfigMap gave is part of what was planned (and of the inputs' digest).
        md = md.model_copy(update={"spec": md.spec.model_copy(update={"model": model})})

        req = _Request(md, profile, self.catalog(), current, generation, list(meta.get("finalizers") or []))
        now = self.clock()
        views = self.member_views()
        inventories: dict[str, Inventory] = {}
        plans: dict[tuple[str, int], Plan] = {}

        def inventory(member: str) -> Inventory:
            if member not in inventories:
                inventories[member] = self._member_inventory(member, namespace, name)
            return inventories[member]

        def plan_for(member: str, replicas: int) -> Plan:
            if (member, replicas) not in plans:
                spec = _with_replicas(md.spec, replicas)
                plans[member, replicas] = plan(inventory(member), profile, req.catalog, spec, served_name=name)
            return plans[member, replicas]

        previous = {c.name: c.desired for c in current.clusters}
        fleet = place(views, md.spec, plan_for, now, previous)
        digest = _digest(
            [
                [m.model_dump(mode="json", exclude={"since"}) for m in sorted(views, key=lambda v: v.name)],
                {m: inputs_digest(md.spec, req.catalog, inv) for m, inv in sorted(inventories.items())},
            ]
        )
        shares = [s for s in fleet.shares if s.replicas > 0 and s.plan is not None and s.plan.feasible]
        rollout = None
        if self.karmada:
            outcomes = self._propagate_karmada(req, shares, digest)
        else:
            req.coordinated = len(shares) > 1 or any(c.revision for c in current.clusters)
            req.serving = {c.name: c.revision or "" for c in current.clusters}
            if current.rollout is not None and current.rollout.phase is RolloutPhase.ROLLED_BACK:
                req.held = dict(current.rollout.targets)
            outcomes = [self._serve(req, share) for share in shares]
            if req.coordinated:
                outcomes, rollout = self._coordinate(req, outcomes)
            serving = {o.cluster for o in outcomes}
            for member in sorted(set(previous) - serving):
                leftover = self._withdraw(req, member)
                if leftover is not None:
                    outcomes.append(leftover)
        phash = _digest(sorted((o.cluster, plan_hash(o.plan)) for o in outcomes if o.plan is not None))
        result = FleetOutcome(
            outcomes, fleet.wanted, fleet.unschedulable, fleet.summary, coordinated=req.coordinated, rollout=rollout
        )
        outcome = self._finish(body, current, generation, result, None, digest, phash)
        if req.pending:
            self._land_deferred(dict(body), req.pending)
            req.applied += [ref for _, ref in req.pending]
        outcome.applied, outcome.deleted = req.applied, req.deleted
        outcome.plan = next((o.plan for o in outcomes if o.serving), None) or self._probe(fleet.shares)
        return outcome

    def _land_deferred(self, body: dict[str, Any], pending: list[tuple[Future[Manifest], str]]) -> None:
        """Let the deferred applies finish without holding the reconcile: a failed one gets a Warning Event, and
        `on_deferred` hears once they all have landed."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        futures = [future for future, _ in pending]
        self._outstanding[key] = futures
        left = [len(pending)]
        lock = threading.Lock()

        def landed(ref: str, future: Future[Manifest]) -> None:
            error = future.exception()
            if error is not None:
                message = _api_message(error) if isinstance(error, ApiException) else repr(error)
                logger.warning("%s/%s: %s not applied: %s", *key, ref, message)
                self.cluster.event(body, "Warning", "ApplyFailed", f"{ref}: {message}")
            with lock:
                left[0] -= 1
                done = left[0] == 0
            if done:
                if self._outstanding.get(key) is futures:
                    self._outstanding.pop(key, None)
                if self.on_deferred is not None:
                    self.on_deferred(body, all(f.exception() is None for f in futures))

        for future, ref in pending:
            future.add_done_callback(partial(landed, ref))

    @staticmethod
    def _probe(shares: Sequence[MemberShare]) -> Plan | None:
        """Some plan for a deployment no member serves (its rejections say why), for metrics and callers."""
        return next((s.plan for s in shares if s.plan is not None), None)

    def _serve(self, req: _Request, share: MemberShare) -> MemberOutcome:
        """Convert, apply and observe one member's part; a remote member's failure is its outcome, not a crash."""
        assert share.plan is not None
        member = self.member_client(share.name)
        if member is None:
            return MemberOutcome(share.name, plan=share.plan, error="no client (the member is not connected)")
        try:
            return self._apply_member(req, member, share)
        except Exception as exc:
            if share.name == LOCAL:
                raise  # the host's API errors go to the handler's backoff
            problem = classify(exc, share.name)
            logger.warning("member %s: %s", share.name, problem)
            return MemberOutcome(share.name, plan=share.plan, error=f"{problem.reason}: {problem}")

    def _apply_member(self, req: _Request, member: ClusterClient, share: MemberShare) -> MemberOutcome:
        md, current = req.md, req.current
        namespace, name = req.namespace, md.metadata.name
        remote = member.name != LOCAL
        result = share.plan
        assert result is not None
        if remote:
            self._hold_finalizer(req)
            member.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        conversions = self._convert(req, member, result)
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
            inventory = self._inventory(member, namespace, name)
            result = plan(inventory, req.profile, catalog, _with_replicas(md.spec, share.replicas), served_name=name)
            conversions = [c for c in conversions if c.phase == "Failed"] + [
                c for c in self._convert(req, member, result) if c.cache_key not in failed
            ]
        blocked = any(a.option.conversion and a.option.conversion.cache_key in failed for a in result.assignments)
        converting = any(c.phase not in ("Succeeded", "Failed") for c in conversions)
        known = member.name in {c.name for c in current.clusters}
        # A deployment that never had a plan applied here owns nothing here yet: skip the lists.
        owned = member.owned(namespace, name) if known or current.plan_hash else []
        if not (result.feasible and not blocked and not converting):
            return MemberOutcome(member.name, plan=result, observed=_observed(member, owned, conversions))
        revision = member_revision(result) if req.coordinated else None
        rendered = [
            stamped(o)
            for o in serving_objects(
                md,
                result,
                req.runtimes,
                replicas_max=share.max_replicas,
                target=Target(remote=remote, suffix=f"-{revision}" if revision else "", revision=revision),
            )
            if member.has_kind(o["apiVersion"], o["kind"])  # optional kinds the member does not serve are left out
        ]
        live = {(o["kind"], o["metadata"]["name"]): o for o in owned}
        serving = req.serving.get(member.name)
        if revision is not None and serving is not None and serving != revision:
            return self._roll(req, member, share, result, conversions, rendered, live, serving, revision)
        claim = model_cache_claim(md, req.cache_bytes)
        # Deferred only on the host and outside coordinated rollouts, whose Service switch must not race the apply.
        defer = not remote and not req.coordinated
        owned = self._converge(req, member, rendered, live, prune=True, claim=claim, defer=defer)
        return MemberOutcome(
            member.name, plan=result, observed=_observed(member, owned, conversions), revision=revision
        )

    def _converge(
        self,
        req: _Request,
        member: ClusterClient,
        rendered: list[Manifest],
        live: Mapping[tuple[str, str], Manifest],
        prune: bool,
        claim: Manifest | None = None,
        force: bool = False,
        defer: bool = False,
    ) -> list[Manifest]:
        """Apply what is new, changed or drifted (rendered objects are stamped: an unchanged one is not sent
        again); with `prune`, delete what is no longer rendered. Returns the objects as they now are
        (server-side apply answers with the live object: no second list). With `defer`, the DEFERRED_KINDS'
        applies are left running in `req.pending` and stand in as they were (live, else as rendered)."""
        wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered}
        stale = [o for o in rendered if force or drifted(o, live.get((o["kind"], o["metadata"]["name"])), rendered)]
        applied: dict[tuple[str, str], Manifest] = {}
        if stale:
            # The claim first: pods created before their claim wait out the scheduler's backoff.
            if claim and member.ensure(claim):
                req.applied.append(_ref(claim, member.name))
            bodies = [keep_scale(o, live.get((o["kind"], o["metadata"]["name"])), rendered) for o in stale]
            # One deployment's objects do not depend on each other (an HPA may name a Deployment that is not
            # there yet): sent side by side, a create waits for the slowest write, not for the sum of them.
            futures = [_APPLIES.submit(member.apply, body) for body in bodies]
            for obj, body, future in zip(stale, bodies, futures, strict=True):
                key = (obj["kind"], obj["metadata"]["name"])
                if defer and obj["kind"] in DEFERRED_KINDS:
                    req.pending.append((future, _ref(obj, member.name)))
                    applied[key] = live.get(key) or body
                    continue
                applied[key] = future.result()
                req.applied.append(_ref(obj, member.name))
        if prune:
            for key, obj in live.items():
                if key not in wanted:
                    member.delete(obj)
                    req.deleted.append(_ref(obj, member.name))
        return [applied.get(key) or live[key] for key in wanted if key in applied or key in live]

    def _roll(
        self,
        req: _Request,
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
        old = [o for o in live.values() if _revision_of(o) == serving and o["kind"] in WORKLOAD_KINDS]
        ready, replicas = ready_replicas(old)
        endpoint = service_endpoint(live.values(), on_host=member.name == LOCAL)  # selects the old revision still
        observed = Observed(ready, replicas, conversions, endpoint)
        outcome = MemberOutcome(member.name, plan=result, observed=observed, revision=serving, target=target)
        new = [o for o in rendered if o["kind"] in WORKLOAD_KINDS or _revision_of(o) == target]
        if req.held.get(member.name) == target:
            for obj in live.values():  # a rolled-back revision's leftovers
                if _revision_of(obj) == target:
                    member.delete(obj)
                    req.deleted.append(_ref(obj, member.name))
            return outcome
        short = (
            self._surge_shortfall(req, member, share, result)
            if not any(_revision_of(o) == target for o in live.values())
            else None
        )
        if short:
            return replace(outcome, target_message=short, blocked=True)
        applied = self._converge(
            req, member, new, {k: v for k, v in live.items() if _revision_of(v) == target}, prune=False
        )
        new_ready, _ = ready_replicas(applied)
        desired = sum(a.replicas for a in result.assignments)
        req.switches[member.name] = (member, rendered, live)
        return replace(
            outcome,
            target_ready=new_ready >= desired > 0,
            target_message=f"{member.name}: {new_ready}/{desired} replicas of revision {target} ready",
        )

    def _surge_shortfall(self, req: _Request, member: ClusterClient, share: MemberShare, result: Plan) -> str | None:
        """Whether the new revision fits beside the old one (whose pods still hold their devices); None if it
        does, else what is missing."""
        inventory = self._full_inventory(member)  # the old revision's pods count as taken
        room = plan(inventory, req.profile, req.catalog, _with_replicas(req.md.spec, share.replicas))
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

    def _coordinate(
        self, req: _Request, outcomes: list[MemberOutcome]
    ) -> tuple[list[MemberOutcome], RolloutStatus | None]:
        """Broadcast, all ready, switch (seed §2.5): once every rolling member has its new revision ready, every
        member's Service and HPA switch to it together and the old revision goes; past the deadline, every
        member drops the new revision and keeps the old, and the rollout is reported rolled back."""
        now = self.clock()
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
            return outcomes, RolloutStatus(
                phase=RolloutPhase.BLOCKED, targets=targets, started=started, message=message
            )
        if all(o.target_ready for o in rolling):
            switched = []
            for o in outcomes:
                if o.target is None:
                    switched.append(o)
                    continue
                member, rendered, live = req.switches[o.cluster]
                objects = self._converge(req, member, rendered, live, prune=True, force=True)
                observed = _observed(member, objects, o.observed.conversions)
                switched.append(replace(o, revision=o.target, target=None, observed=observed))
            return switched, None
        waited = (now - started).total_seconds()
        if waited > req.md.spec.rollout.deadline_seconds:
            laggards = [o.target_message or o.cluster for o in rolling if not o.target_ready]
            for o in rolling:
                member = req.switches[o.cluster][0]
                for obj in member.owned(req.namespace, req.md.metadata.name):
                    if _revision_of(obj) == o.target:
                        member.delete(obj)
                        req.deleted.append(_ref(obj, o.cluster))
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
        return outcomes, RolloutStatus(
            phase=RolloutPhase.PROGRESSING, targets=targets, started=started, message=message
        )

    def _propagate_karmada(self, req: _Request, shares: Sequence[MemberShare], digest: str) -> list[MemberOutcome]:
        """Karmada mode: convert where needed, write the template, policies and overrides to the Karmada API
        server, and read each member's readiness back from the ResourceBindings."""
        md, namespace, name = req.md, req.namespace, req.md.metadata.name
        karmada = self.cluster
        parts: list[MemberPart] = []
        conversions: dict[str, list[ConversionState]] = {}
        for share in shares:
            assert share.plan is not None
            conversions[share.name] = self._member_conversions(req, share)
            states = conversions[share.name]
            if all(c.phase == "Succeeded" for c in states):
                parts.append(MemberPart(share.name, share.plan))
        rendered = propagation_objects(md, parts, req.runtimes, self._optional_kinds(parts))
        owned = karmada.owned(namespace, name) if req.current.plan_hash or req.current.clusters else []
        live = {(o["kind"], o["metadata"]["name"]): o for o in owned}
        wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered}
        same = req.current.inputs_hash == digest and req.current.observed_generation == req.generation
        for obj in rendered:
            key = (obj["kind"], obj["metadata"]["name"])
            if not same or key not in live or drifted(obj, live[key], rendered):
                karmada.apply(obj)
                req.applied.append(_ref(obj))
        for key, obj in live.items():
            if key not in wanted:
                karmada.delete(obj)
                req.deleted.append(_ref(obj))
        bindings = {
            obj["metadata"]["name"]: karmada.get(
                f"{WORK_GROUP}/v1alpha2",
                "ResourceBinding",
                binding_name(obj["kind"], obj["metadata"]["name"]),
                namespace,
            )
            for obj in rendered
            if obj["kind"] in ("Deployment", "StatefulSet")
        }
        outcomes = []
        for share in shares:
            part = next((p for p in parts if p.cluster == share.name), None)
            ready, replicas, errors = 0, 0, []
            for obj in rendered:
                if obj["kind"] not in ("Deployment", "StatefulSet") or part is None:
                    continue
                seen = member_status(bindings.get(obj["metadata"]["name"])).get(share.name)
                if seen is None:
                    continue
                got_ready, got, applied = seen
                if not applied:
                    errors.append(f"{obj['kind']}/{obj['metadata']['name']} not applied by Karmada")
                if obj["kind"] == "Deployment":
                    ready, replicas = ready + got_ready, replicas + got
                else:
                    replicas += 1
                    ready += int(got > 0 and got_ready >= got)
            endpoint = self._karmada_endpoint(req, share.name) if part is not None else None
            outcomes.append(
                MemberOutcome(
                    share.name,
                    plan=share.plan,
                    observed=Observed(ready, replicas, conversions[share.name], endpoint),
                    error="; ".join(errors) or None,
                )
            )
        return outcomes

    def _optional_kinds(self, parts: Sequence[MemberPart]) -> dict[str, set[tuple[str, str]]]:
        """Karmada mode: member -> the optional kinds (InferencePool, PodMonitor) both the Karmada API server,
        which keeps the template, and the member, asked through the cluster proxy, serve. An unreachable
        member serves none this pass (the kind's object leaves it, and comes back with it)."""
        stored = {k for k in OPTIONAL_KINDS if self.cluster.has_kind(*k)}
        served: dict[str, set[tuple[str, str]]] = {}
        for part in parts if stored else ():
            member = self.member_client(part.cluster)
            if member is None:
                continue
            try:
                served[part.cluster] = {k for k in stored if member.has_kind(*k)}
            except Exception as exc:  # discovery through the proxy failed: as unreachable, for this pass
                logger.debug("member %s: discovery failed: %s", part.cluster, exc)
        return served

    def _karmada_endpoint(self, req: _Request, member_name: str) -> str | None:
        """Karmada mode: a LoadBalancer Service's address, read from the member through the cluster proxy (a
        ClusterIP Service is not reachable from where the Karmada API server's clients are: no read)."""
        if req.md.spec.expose.service.type != "LoadBalancer":
            return None
        member = self.member_client(member_name)
        if member is None:
            return None
        try:
            service = member.get("v1", "Service", dns_label(req.md.metadata.name), req.namespace)
        except Exception as exc:  # the member unreachable now: no endpoint this pass, not a failed reconcile
            logger.debug("member %s: reading the Service failed: %s", member_name, exc)
            return None
        return service_endpoint([service] if service else [], on_host=False)

    def _member_conversions(self, req: _Request, share: MemberShare) -> list[ConversionState]:
        """Karmada mode: the member's conversion Jobs and cache go to it by shared policies (the union of the
        members every deployment needs them on); their state is read from the member through the proxy."""
        assert share.plan is not None
        shared = shared_objects(req.md, [MemberPart(share.name, share.plan)], req.cache_bytes)
        states = []
        member = self.member_client(share.name)
        for obj, clusters in shared:
            policy = shared_policy(obj, clusters)
            existing = self.cluster.get(
                policy["apiVersion"], "PropagationPolicy", policy["metadata"]["name"], req.namespace
            )
            have = set(
                ((existing or {}).get("spec") or {}).get("placement", {}).get("clusterAffinity", {}).get("clusterNames")
                or []
            )
            if existing is None or not set(clusters) <= have:
                policy["spec"]["placement"]["clusterAffinity"]["clusterNames"] = sorted(have | set(clusters))
                self.cluster.ensure(obj)
                self.cluster.apply(policy)
                req.applied.append(_ref(policy))
            if obj["kind"] == "Job":
                job = member.get("batch/v1", "Job", obj["metadata"]["name"], req.namespace) if member else None
                key = obj["metadata"]["labels"][LABEL_CACHE_KEY]
                states.append(_job_state(job, obj["metadata"]["name"], key))
        return states

    def _withdraw(self, req: _Request, name: str) -> MemberOutcome | None:
        """Remove this deployment's objects from a member that no longer serves it; None once it holds none.
        An unreachable member stays listed (desired 0) with the reason, and is tried again next time."""
        member = self.member_client(name)
        namespace, md_name = req.namespace, req.md.metadata.name
        if member is None:
            if self.members is not None and self.members.get(name) is None:
                return None  # the member left the fleet (unjoined): nothing to reach it with
            return MemberOutcome(name, error="not connected; its objects are removed once it is back")
        try:
            for obj in member.owned(namespace, md_name):
                member.delete(obj)
                req.deleted.append(_ref(obj, name))
        except Exception as exc:
            if name == LOCAL:
                raise
            problem = classify(exc, name)
            return MemberOutcome(name, error=f"{problem.reason}: {problem}; its objects are removed once it is back")
        return None

    def _hold_finalizer(self, req: _Request) -> None:
        """Before anything lands on a remote member, deletion must be able to remove it: ownerReferences
        cannot reach there."""
        if PROPAGATION_FINALIZER not in req.finalizers:
            self.cluster.add_finalizer(req.namespace, req.md.metadata.name, PROPAGATION_FINALIZER)
            req.finalizers.append(PROPAGATION_FINALIZER)

    def finalize(self, body: Mapping[str, Any]) -> list[str]:
        """On deletion: remove the deployment's objects from every remote member, then the finalizer.

        A member that is unreachable but still within its failover toleration holds the deletion (raises
        MemberUnavailable, so the caller retries); one past it is given up on with a Warning Event, so a
        member that is gone for good never blocks a delete forever.
        """
        meta = body["metadata"]
        if PROPAGATION_FINALIZER not in (meta.get("finalizers") or []):
            return []
        namespace, name = meta["namespace"], meta["name"]
        status = ModelDeploymentStatus.model_validate(body.get("status") or {})
        spec = ModelDeploymentSpec.model_validate((body.get("spec") or {}) | {}) if body.get("spec") else None
        toleration = spec.placement.failover.toleration_seconds if spec else 300
        views = {v.name: v for v in self.member_views()}
        removed: list[str] = []
        names = {c.name for c in status.clusters} | (set(self.members.names()) if self.members else set())
        for member_name in sorted(names - {LOCAL}):
            member = self.member_client(member_name)
            try:
                if member is None:
                    raise ConnectionError("not connected")
                for obj in member.owned(namespace, name):
                    member.delete(obj)
                    removed.append(_ref(obj, member_name))
            except Exception as exc:
                view = views.get(member_name)
                since = view.since if view and view.since else None
                waited = (self.clock() - since).total_seconds() if since else float("inf")
                if view is not None and (view.ready or waited < toleration):
                    raise MemberUnavailable(f"{member_name}: {exc}") from exc
                self.cluster.event(
                    body,
                    "Warning",
                    "CleanupSkipped",
                    f"{member_name} has been unreachable for longer than {toleration} s; objects of {name} "
                    "there are left for its garbage collection",
                )
        self.cluster.remove_finalizer(namespace, name, PROPAGATION_FINALIZER)
        return removed

    def release(self, body: Mapping[str, Any]) -> list[str]:
        """On deletion: remove the conversion artifacts (Job and cached files) no other deployment uses, in every
        member that has them."""
        meta = body["metadata"]
        mine = set((body.get("status") or {}).get("artifacts") or [])
        others = [
            md
            for md in self.cluster.model_deployments((meta["namespace"],))
            if md["metadata"]["name"] != meta["name"] and not md["metadata"].get("deletionTimestamp")
        ]
        in_use = {key for md in others for key in (md.get("status") or {}).get("artifacts") or []}
        released = sorted(mine - in_use)
        clusters = {c.get("name") for c in (body.get("status") or {}).get("clusters") or []} or {LOCAL}
        for cluster in sorted(c for c in clusters if c):
            member = self.member_client(cluster)
            # The cache volume, its files and the Jobs all go with a terminating namespace; nothing may be
            # created there any more, and trying would hold the finalizer (and so the namespace) forever.
            if member is None or member.namespace_terminating(meta["namespace"]):
                continue
            for key in released:
                member.delete(
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "metadata": {"name": conversion_job_name(key), "namespace": meta["namespace"]},
                    }
                )
                member.ensure(artifact_cleanup_job(meta["namespace"], key))
        return released

    def _convert(self, req: _Request, member: ClusterClient, result: Plan) -> list[ConversionState]:
        md = req.md
        jobs = [
            (job, a.option.conversion.cache_key)
            for a in result.assignments
            if a.option.conversion and (job := conversion_job(md, a.option)) is not None
        ]
        claim = model_cache_claim(md, req.cache_bytes)
        if jobs and claim and member.ensure(claim):
            req.applied.append(_ref(claim, member.name))
        states = []
        for job, key in jobs:
            name = job["metadata"]["name"]
            existing = member.get("batch/v1", "Job", name, md.metadata.namespace)
            if existing is None:
                existing = member.apply(job)
                req.applied.append(_ref(job, member.name))
            states.append(_job_state(existing, name, key))
        return states

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
        digest: str | None,
        phash: str | None,
    ) -> Outcome:
        new = desired_status(
            current,
            generation,
            fleet,
            self.clock(),
            invalid,
            digest,
            phash,
            forecast_enabled=forecast_enabled(body),
        )
        old_doc = current.model_dump(mode="json", by_alias=True, exclude_none=True)
        new_doc = new.model_dump(mode="json", by_alias=True, exclude_none=True)
        events = []
        if new_doc != old_doc:
            self.cluster.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], new_doc)
            for type_, reason, message in condition_events(current.conditions, new.conditions):
                self.cluster.event(body, type_, reason, message)
                events.append(reason)
        return Outcome(plan=None, status_written=new_doc != old_doc, events=events, invalid=invalid, fleet=fleet)


def _api_message(exc: ApiException) -> str:
    """What the API server said, as `kubectl` shows it: its Status message, else the status code."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or f"{exc.status} {exc.reason}")[:500]


def _observed(member: ClusterClient, objects: list[Manifest], conversions: Sequence[ConversionState]) -> Observed:
    """What a member runs for a deployment: its ready and desired replicas, conversions, and its endpoint."""
    ready, replicas = ready_replicas(objects)
    return Observed(ready, replicas, conversions, service_endpoint(objects, on_host=member.name == LOCAL))
