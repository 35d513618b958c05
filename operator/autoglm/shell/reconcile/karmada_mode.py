"""Karmada mode: the deployment's template, PropagationPolicy and OverridePolicies go to the Karmada API server;
conversions and endpoints are read from the members through Karmada's cluster proxy; readiness comes back from
the ResourceBindings."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from autoglm.core.karmada import (
    OPTIONAL_KINDS,
    POLICY_GROUP,
    WORK_GROUP,
    MemberPart,
    binding_name,
    claim_override_classes,
    claim_override_storage,
    cluster_tolerations,
    member_apply_failure,
    member_status,
    propagation_objects,
    shared_claim_override,
    shared_name,
    shared_objects,
    shared_policy,
)
from autoglm.core.placement import MemberShare
from autoglm.core.render import LABEL_CACHE_KEY, Manifest, dns_label, drifted
from autoglm.core.status import ConversionState, MemberOutcome, Observed
from autoglm.shell.clusters import service_endpoint
from autoglm.shell.problems import UNREACHABLE, short_reason
from autoglm.shell.reconcile.cache_claim import CacheClaimTooSmall, size_bytes, storage
from autoglm.shell.reconcile.conversion import job_state
from autoglm.shell.reconcile.request import ARTIFACT_FINALIZER, Request, ref

if TYPE_CHECKING:
    from autoglm.shell.reconcile.reconciler import Reconciler

logger = logging.getLogger(__name__)


def propagate(r: Reconciler, req: Request, shares: Sequence[MemberShare], digest: str) -> list[MemberOutcome]:
    """Karmada mode: convert where needed, write the template, policies and overrides to the Karmada API
    server, and read each member's readiness back from the ResourceBindings."""
    md, namespace, name = req.md, req.namespace, req.md.metadata.name
    karmada = r.cluster
    parts: list[MemberPart] = []
    conversions: dict[str, list[ConversionState]] = {}
    held: dict[str, str] = {}
    for share in shares:
        assert share.plan is not None
        try:
            conversions[share.name] = member_conversions(r, req, share)
        except CacheClaimTooSmall as exc:  # no pods on a cache the weights do not fit in
            conversions[share.name], held[share.name] = [], str(exc)
            continue
        states = conversions[share.name]
        if all(c.phase == "Succeeded" for c in states):
            parts.append(MemberPart(share.name, share.plan, share.max_replicas))
    rendered = propagation_objects(md, parts, req.runtimes, optional_kinds(r, parts), r.images.helper_image)
    owned = karmada.owned(namespace, name) if req.current.plan_hash or req.current.clusters else []
    live = {(o["kind"], o["metadata"]["name"]): o for o in owned}
    wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    same = req.current.inputs_hash == digest and req.current.observed_generation == req.generation
    for obj in rendered:
        key = (obj["kind"], obj["metadata"]["name"])
        if not same or key not in live or drifted(obj, live[key], rendered):
            karmada.apply(obj)
            req.applied.append(ref(obj))
    for key, obj in live.items():
        if key not in wanted:
            karmada.delete(obj)
            req.deleted.append(ref(obj))
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
        ready, replicas, errors = 0, 0, [held[share.name]] if share.name in held else []
        for obj in rendered:
            if obj["kind"] not in ("Deployment", "StatefulSet") or part is None:
                continue
            seen = member_status(bindings.get(obj["metadata"]["name"])).get(share.name)
            if seen is None:
                continue
            got_ready, got, applied = seen
            if not applied:
                errors.append(f"did not apply {obj['kind']}/{obj['metadata']['name']} (its Karmada binding says)")
            if obj["kind"] == "Deployment":
                ready, replicas = ready + got_ready, replicas + got
            else:
                replicas += 1
                ready += int(got > 0 and got_ready >= got)
        address = endpoint(r, req, share.name) if part is not None else None
        outcomes.append(
            MemberOutcome(
                share.name,
                plan=share.plan,
                observed=Observed(ready, replicas, conversions[share.name], address),
                error="; ".join(errors) or None,
            )
        )
    return outcomes


def optional_kinds(r: Reconciler, parts: Sequence[MemberPart]) -> dict[str, set[tuple[str, str]]]:
    """Karmada mode: member -> the optional kinds (InferencePool, PodMonitor) both the Karmada API server,
    which keeps the template, and the member, asked through the cluster proxy, serve. An unreachable
    member serves none this pass (the kind's object leaves it, and comes back with it)."""
    stored = {k for k in OPTIONAL_KINDS if r.cluster.has_kind(*k)}
    served: dict[str, set[tuple[str, str]]] = {}
    for part in parts if stored else ():
        member = r.member_client(part.cluster)
        if member is None:
            continue
        try:
            served[part.cluster] = {k for k in stored if member.has_kind(*k)}
        except UNREACHABLE as exc:  # discovery through the proxy failed: as unreachable, for this pass
            logger.debug("member %s: discovery failed: %s", part.cluster, short_reason(exc))
    return served


def endpoint(r: Reconciler, req: Request, member_name: str) -> str | None:
    """Karmada mode: a LoadBalancer Service's address, read from the member through the cluster proxy (a
    ClusterIP Service is not reachable from where the Karmada API server's clients are: no read)."""
    if req.md.spec.expose.service.type != "LoadBalancer":
        return None
    member = r.member_client(member_name)
    if member is None:
        return None
    try:
        service = member.get("v1", "Service", dns_label(req.md.metadata.name), req.namespace)
    except UNREACHABLE as exc:  # the member unreachable now: no endpoint this pass, not a failed reconcile
        logger.debug("member %s: reading the Service failed: %s", member_name, short_reason(exc))
        return None
    return service_endpoint([service] if service else [], on_host=False)


def member_conversions(r: Reconciler, req: Request, share: MemberShare) -> list[ConversionState]:
    """Karmada mode: the member's conversion Jobs and cache go to it by shared policies (the union of the
    members every deployment needs them on); their state is read from the member through the proxy."""
    assert share.plan is not None
    shared = shared_objects(req.md, [MemberPart(share.name, share.plan)], req.cache_bytes)
    if any(obj["kind"] == "Job" for obj, _ in shared):
        r.hold_finalizer(req, ARTIFACT_FINALIZER)
    states = []
    member = r.member_client(share.name)
    ours = cluster_tolerations(req.md.spec.placement.cluster_tolerations)
    for obj, clusters in shared:
        existing = r.cluster.get(POLICY_GROUP, "PropagationPolicy", shared_name(obj), req.namespace)
        placed = ((existing or {}).get("spec") or {}).get("placement") or {}
        have = set((placed.get("clusterAffinity") or {}).get("clusterNames") or [])
        tolerated = list(placed.get("clusterTolerations") or [])
        missing = [t for t in ours if t not in tolerated]
        if existing is None or not set(clusters) <= have or missing:
            # The union of every user's members and tolerations: a policy shared by deployments never narrows.
            policy = shared_policy(obj, sorted(have | set(clusters)), tolerated + missing)
            r.cluster.ensure(obj)
            r.cluster.apply(policy)
            req.applied.append(ref(policy))
        if obj["kind"] == "PersistentVolumeClaim":
            grow_cache_claim(r, req, obj, share.name, have | set(clusters))
        if obj["kind"] == "Job":
            job = member.get("batch/v1", "Job", obj["metadata"]["name"], req.namespace) if member else None
            key = obj["metadata"]["labels"][LABEL_CACHE_KEY]
            states.append(job_state(job, obj["metadata"]["name"], key))
    return states


def grow_cache_claim(r: Reconciler, req: Request, claim: Manifest, member_name: str, members: Collection[str]) -> None:
    """Karmada mode: a deployment needing more than the namespace's cache claim holds raises the shared claim
    override (core.karmada.shared_claim_override) to its size, and each member grows its copy where its
    StorageClass allows. A member that refused (its Karmada binding says why) is held with CacheClaimTooSmall,
    as direct mode holds one: no pods on a cache the weights do not fit in. Until a member has answered, its
    pods start, as direct mode's start once the member accepted the larger request (the volume grows later).
    `members`: those the claim's shared policy sends it to."""
    meta = claim["metadata"]
    namespace, name, want = meta["namespace"], meta["name"], storage(claim)
    # The template's size never changes after it is made (only the override grows): the ensure memo is its size,
    # so a deployment the claim fits costs no request here.
    r.cluster.ensure(claim)
    template = r.cluster.ensured(claim)
    if template is None or size_bytes(storage(template)) >= size_bytes(want):
        return  # made just now at this size, or large enough as it was made
    existing = r.cluster.get(POLICY_GROUP, "OverridePolicy", shared_name(claim), namespace)
    carried = claim_override_storage(existing)
    size = want if carried is None or size_bytes(carried) < size_bytes(want) else carried
    known = claim_override_classes(existing)
    if size != carried or member_name not in known:
        # Every member's own class, read once for all of them: an override written with one member's class only
        # would send the others a claim without theirs, which they refuse.
        policy = shared_claim_override(claim, size, {**known, **_member_claim_classes(r, claim, members)})
        if existing is None or drifted(policy, existing, [policy]):
            r.cluster.apply(policy)
            req.applied.append(ref(policy))
            return  # the members answer the new override on a later pass; the binding holds the old one's verdict
    binding = r.cluster.get(
        f"{WORK_GROUP}/v1alpha2", "ResourceBinding", binding_name("PersistentVolumeClaim", name), namespace
    )
    refused = member_apply_failure(binding, member_name)
    if refused is not None:
        raise CacheClaimTooSmall(
            f"model cache claim {name} holds {storage(template)} and this model needs {want}, and member "
            f"{member_name} would not grow it ({refused}): allow volume expansion on its StorageClass, or serve "
            "this model from a claim of its own (spec.model.source pvc://...) with spec.modelCache.enabled false"
        )


def _member_claim_classes(r: Reconciler, claim: Manifest, members: Collection[str]) -> dict[str, str]:
    """member -> the StorageClass of its copy of `claim`, for those of `members` that have one and answer
    (through Karmada's cluster proxy)."""
    meta = claim["metadata"]
    classes: dict[str, str] = {}
    for cluster in sorted(members):
        member = r.member_client(cluster)
        try:
            copy = member.get("v1", "PersistentVolumeClaim", meta["name"], meta["namespace"]) if member else None
        except UNREACHABLE as exc:
            logger.info("member %s: its cache claim's class not read: %s", cluster, short_reason(exc))
            continue
        found = ((copy or {}).get("spec") or {}).get("storageClassName")
        if found:
            classes[cluster] = str(found)
    return classes
