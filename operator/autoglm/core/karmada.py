"""Karmada mode (pure): a placement with per-member plans as Karmada objects on the Karmada API server.

One template Deployment carries the replicas every member runs on a single node; a PropagationPolicy divides
it over those members with the placement's shares as static weights (Karmada's division gives each exactly
its share, since the weights sum to the template's replicas), and an OverridePolicy gives each member whose
plan differs from the template its own pod spec (image, command and args, device resource and count, node
selector, tolerations, env). What one member runs alone (a second pool, a multi-node StatefulSet, a
conversion Job and the model cache) is propagated to that member by a policy of its own. The Service goes
to every serving member; the optional kinds (InferencePool, PodMonitor) to the serving members that serve
their CRD, each member's differing spec (its runtime's port, its metrics path) by an override, as in
direct mode, where a member without the CRD gets the deployment without them.

Karmada's own failover (taint-based eviction) is not used: the operator decides where replicas go, as in
direct mode, and rewrites the policy when a member fails or returns; Karmada carries it out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoglm.api.backendruntime import BackendRuntime
from autoglm.api.modeldeployment import ClusterToleration, ModelDeployment
from autoglm.core.images import DEFAULT_HELPER_IMAGE
from autoglm.core.planner import Assignment, Plan
from autoglm.core.render import (
    ANNOTATION_PLAN_HASH,
    LABEL_DEPLOYMENT,
    Manifest,
    Target,
    conversion_job,
    dns_label,
    model_cache_claim,
    object_meta,
    service_spec,
    serving_objects,
    template_hash,
    workload_labels,
)

POLICY_GROUP = "policy.karmada.io/v1alpha1"
WORK_GROUP = "work.karmada.io"
# Karmada keeps a member's replica count for a workload template with this label (its HPA scaled it there).
RETAIN_REPLICAS = "resourcetemplate.karmada.io/retain-replicas"
# Rendered only where their CRD is served: (apiVersion, kind).
OPTIONAL_KINDS = (("inference.networking.k8s.io/v1", "InferencePool"), ("monitoring.coreos.com/v1", "PodMonitor"))


@dataclass(frozen=True)
class MemberPart:
    """One member's share: its name, its plan for that share, and its HPA's ceiling there (its share of
    spec.replicas.max; None: the whole of it)."""

    cluster: str
    plan: Plan
    max_replicas: int | None = None


def template_name(md: ModelDeployment) -> str:
    return dns_label(md.metadata.name, 52)


def binding_name(kind: str, name: str) -> str:
    """The ResourceBinding Karmada makes for a resource (names.GenerateBindingName)."""
    return f"{name.replace(':', '.')}-{kind}".lower()


def _divided(part: MemberPart) -> Assignment | None:
    """The member's assignment that joins the divided template: its first, when it runs on one node."""
    first = part.plan.assignments[0] if part.plan.assignments else None
    return first if first is not None and first.option.pipeline_parallel == 1 else None


def _selector(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "namespace": meta["namespace"]}


def cluster_tolerations(tolerations: Sequence[ClusterToleration]) -> list[dict[str, str]]:
    """A placement's tolerations as a PropagationPolicy's clusterTolerations (corev1.Toleration, empty fields
    left out): the operator names the clusters itself, and Karmada's TaintToleration filter must let them pass."""
    return [{k: v for k, v in t.model_dump(mode="json").items() if v} for t in tolerations]


def _policy(md: ModelDeployment, name: str, resources: Sequence[Manifest], placement: dict[str, Any]) -> Manifest:
    tolerations = cluster_tolerations(md.spec.placement.cluster_tolerations)
    return {
        "apiVersion": POLICY_GROUP,
        "kind": "PropagationPolicy",
        "metadata": object_meta(md, name),
        "spec": {
            "resourceSelectors": [_selector(o) for o in resources],
            "placement": placement | ({"clusterTolerations": tolerations} if tolerations else {}),
        },
    }


def _override(md: ModelDeployment, name: str, template: Manifest, rules: list[dict[str, Any]]) -> Manifest:
    return {
        "apiVersion": POLICY_GROUP,
        "kind": "OverridePolicy",
        "metadata": object_meta(md, name),
        "spec": {"resourceSelectors": [_selector(template)], "overrideRules": rules},
    }


def propagation_objects(
    md: ModelDeployment,
    parts: Sequence[MemberPart],
    runtimes: Mapping[str, BackendRuntime],
    optional: Mapping[str, Collection[tuple[str, str]]] | None = None,
    helper_image: str = DEFAULT_HELPER_IMAGE,
) -> list[Manifest]:
    """The deployment's own objects on the Karmada API server for these member parts (workloads, then their
    policies); all owned by the ModelDeployment, so they go with it. Conversion objects: shared_objects.
    `optional`: member -> the OPTIONAL_KINDS it (and the Karmada API server) serves; none when not given.
    `helper_image`: the operator's (see core.images), in pods that wait for a conversion's artifact."""
    parts = sorted((p for p in parts if p.plan.feasible and p.plan.assignments), key=lambda p: p.cluster)
    if not parts:
        return []
    objects: list[Manifest] = []
    divided = [(p, a) for p in parts if (a := _divided(p)) is not None]
    name = template_name(md)
    policies: list[Manifest] = []
    if divided:
        # The member serving the most replicas gives the template its pod spec; the others override it.
        base_part, base = min(divided, key=lambda pa: (-pa[1].replicas, pa[0].cluster))
        # Each member's own part, rendered once: the template's pod spec, the overrides and the HPAs' bounds.
        own = {
            part.cluster: serving_objects(
                md,
                part.plan.model_copy(update={"assignments": [assignment]}),
                runtimes,
                replicas_max=part.max_replicas,
                helper_image=helper_image,
            )
            for part, assignment in divided
        }
        template = next(o for o in own[base_part.cluster] if o["kind"] == "Deployment")
        template["metadata"] = object_meta(md, name)
        template["spec"]["replicas"] = sum(a.replicas for _, a in divided)
        template["spec"]["selector"] = {"matchLabels": {LABEL_DEPLOYMENT: workload_labels(md)[LABEL_DEPLOYMENT]}}
        template["spec"]["template"]["metadata"]["labels"] = workload_labels(md)
        objects.append(template)
        rules = []
        for part, assignment in divided:
            if template_hash(assignment.option) == template_hash(base.option):
                continue
            pod = next(o for o in own[part.cluster] if o["kind"] == "Deployment")["spec"]["template"]["spec"]
            rules.append(
                {
                    "targetCluster": {"clusterNames": [part.cluster]},
                    "overriders": {
                        "plaintext": [
                            {"path": "/spec/template/spec", "operator": "replace", "value": pod},
                            {
                                "path": "/spec/template/metadata/annotations",
                                "operator": "replace",
                                "value": {ANNOTATION_PLAN_HASH: template_hash(assignment.option)},
                            },
                        ]
                    },
                }
            )
        if rules:
            policies.append(_override(md, name, template, rules))
        hpa = _member_hpas(md, divided, own, name)
        if hpa is not None:
            # Each member's HPA scales its own part; Karmada keeps what it scaled to (instead of writing the
            # divided count back on every sync) for a template that carries the retain-replicas label.
            template["metadata"]["labels"][RETAIN_REPLICAS] = "true"
            hpa_template, hpa_rules = hpa
            objects.append(hpa_template)
            hpa_name = dns_label(f"{name}-hpa", 63)
            if hpa_rules:
                policies.append(_override(md, hpa_name, hpa_template, hpa_rules))
            placed = {"clusterAffinity": {"clusterNames": [p.cluster for p, _ in divided]}}
            policies.append(_policy(md, hpa_name, [hpa_template], placed))
        placement = {
            "clusterAffinity": {"clusterNames": [p.cluster for p, _ in divided]},
            "replicaScheduling": {
                "replicaSchedulingType": "Divided",
                "replicaDivisionPreference": "Weighted",
                "weightPreference": {
                    "staticWeightList": [
                        {"targetCluster": {"clusterNames": [p.cluster]}, "weight": a.replicas} for p, a in divided
                    ]
                },
            },
        }
        policies.append(_policy(md, name, [template], placement))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(md, dns_label(md.metadata.name)),
        "spec": service_spec(
            md,
            {LABEL_DEPLOYMENT: workload_labels(md)[LABEL_DEPLOYMENT]},
            [a for p in parts for a in p.plan.assignments],
            runtimes,
        ),
    }
    objects.append(service)
    policies.append(
        _policy(md, f"{name}-service", [service], {"clusterAffinity": {"clusterNames": [p.cluster for p in parts]}})
    )
    for template, members, overrides in _optional(md, parts, runtimes, optional or {}):
        objects.append(template)
        policy_name = dns_label(f"{name}-{template['kind'].lower()}", 63)
        if overrides:
            policies.append(_override(md, policy_name, template, overrides))
        policies.append(_policy(md, policy_name, [template], {"clusterAffinity": {"clusterNames": members}}))
    for part in parts:
        alone = _alone(md, part, runtimes, _divided(part) is not None, helper_image)
        if alone:
            objects += alone
            policies.append(
                _policy(
                    md,
                    dns_label(f"{name}-{part.cluster}", 63),
                    alone,
                    {"clusterAffinity": {"clusterNames": [part.cluster]}},
                )
            )
    return objects + policies


def _member_hpas(
    md: ModelDeployment,
    divided: Sequence[tuple[MemberPart, Assignment]],
    own: Mapping[str, Sequence[Manifest]],
    name: str,
) -> tuple[Manifest, list[dict[str, Any]]] | None:
    """The HPA every member serving the divided template gets, scaling that template's Deployment there, and an
    override rule for each member whose bounds differ from the template's: its own floor (its share of
    spec.replicas.min, or of the forecast's floor) and ceiling (its share of spec.replicas.max), as direct mode
    renders them (`own`: each member's part as rendered for it). None when no member's part would be autoscaled
    (its floor is its ceiling everywhere)."""
    bounds: list[tuple[str, int, int]] = []
    template: Manifest | None = None
    for part, assignment in divided:
        hpa = next((o for o in own[part.cluster] if o["kind"] == "HorizontalPodAutoscaler"), None)
        if hpa is None:
            bounds.append((part.cluster, assignment.replicas, assignment.replicas))
            continue
        template = template or hpa
        bounds.append((part.cluster, hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]))
    if template is None:
        return None
    template = {**template, "metadata": object_meta(md, dns_label(md.metadata.name))}
    template["spec"] = {**template["spec"], "scaleTargetRef": {**template["spec"]["scaleTargetRef"], "name": name}}
    base = (template["spec"]["minReplicas"], template["spec"]["maxReplicas"])
    rules = [
        {
            "targetCluster": {"clusterNames": [cluster]},
            "overriders": {
                "plaintext": [
                    {"path": "/spec/minReplicas", "operator": "replace", "value": low},
                    {"path": "/spec/maxReplicas", "operator": "replace", "value": high},
                ]
            },
        }
        for cluster, low, high in bounds
        if (low, high) != base
    ]
    return template, rules


def _optional(
    md: ModelDeployment,
    parts: Sequence[MemberPart],
    runtimes: Mapping[str, BackendRuntime],
    optional: Mapping[str, Collection[tuple[str, str]]],
) -> list[tuple[Manifest, list[str], list[dict[str, Any]]]]:
    """Per optional kind the deployment renders: the template (the first member's object), the members that
    serve the kind, and an override rule for each member whose own spec differs from the template's."""
    found: dict[tuple[str, str], list[tuple[str, Manifest]]] = {}
    for part in parts:
        kinds = optional.get(part.cluster) or ()
        if not kinds:  # the common case, no CRD served: nothing to render again
            continue
        for obj in serving_objects(md, part.plan, runtimes):
            key = (obj["apiVersion"], obj["kind"])
            if key in OPTIONAL_KINDS and key in kinds:
                found.setdefault(key, []).append((part.cluster, obj))
    result = []
    for key in OPTIONAL_KINDS:
        if key not in found:
            continue
        (_, template), *others = found[key]
        overrides = [
            {
                "targetCluster": {"clusterNames": [cluster]},
                "overriders": {"plaintext": [{"path": "/spec", "operator": "replace", "value": obj["spec"]}]},
            }
            for cluster, obj in others
            if obj["spec"] != template["spec"]
        ]
        result.append((template, [cluster for cluster, _ in found[key]], overrides))
    return result


def _alone(
    md: ModelDeployment,
    part: MemberPart,
    runtimes: Mapping[str, BackendRuntime],
    divided_first: bool,
    helper_image: str,
) -> list[Manifest]:
    """What only this member runs: its other pools and its multi-node replicas (named apart per member)."""
    rest = part.plan.assignments[1:] if divided_first else part.plan.assignments
    if not rest:
        return []
    plan = part.plan.model_copy(update={"assignments": rest})
    target = Target(suffix=f"-{dns_label(part.cluster, 10)}")
    rendered = serving_objects(md, plan, runtimes, target=target, helper_image=helper_image)
    return [
        o
        for o in rendered
        if o["kind"] in ("Deployment", "StatefulSet")
        or (o["kind"] == "Service" and o["spec"].get("clusterIP") == "None")
    ]


def shared_objects(
    md: ModelDeployment, parts: Sequence[MemberPart], cache_bytes: int
) -> list[tuple[Manifest, list[str]]]:
    """Conversion Jobs and the model cache claim, with the members that need them. They are the namespace's, shared
    by every deployment using the artifact, so their policies (see shared_policy) belong to no deployment and
    take the union of the members every user needs."""
    needs: dict[tuple[str, str], tuple[Manifest, set[str]]] = {}
    for part in parts:
        jobs = [job for a in part.plan.assignments if (job := conversion_job(md, a.option)) is not None]
        # Serving pods mount the cache whenever it is enabled, so every serving member needs the claim.
        claim = model_cache_claim(md, cache_bytes)
        for obj in ([claim] if claim else []) + jobs:
            key = (obj["kind"], obj["metadata"]["name"])
            needs.setdefault(key, (obj, set()))[1].add(part.cluster)
    return [(obj, sorted(clusters)) for obj, clusters in needs.values()]


def shared_policy(obj: Manifest, clusters: Sequence[str], tolerations: Sequence[Mapping[str, str]] = ()) -> Manifest:
    """The policy of a shared object: to `clusters`, with the tolerations of every deployment that needs it there."""
    placement: dict[str, Any] = {"clusterAffinity": {"clusterNames": sorted(clusters)}}
    if tolerations:
        placement["clusterTolerations"] = [dict(t) for t in tolerations]
    return {
        "apiVersion": POLICY_GROUP,
        "kind": "PropagationPolicy",
        "metadata": _shared_meta(obj),
        "spec": {"resourceSelectors": [_selector(obj)], "placement": placement},
    }


def shared_name(obj: Mapping[str, Any]) -> str:
    """The name of a shared object's policies (its PropagationPolicy and, for the cache claim, its
    OverridePolicy): the object's, shared by every deployment of the namespace."""
    return dns_label(f"autoglm-share-{obj['kind']}-{obj['metadata']['name']}", 63)


def _shared_meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": shared_name(obj),
        "namespace": obj["metadata"]["namespace"],
        "labels": {"app.kubernetes.io/managed-by": "autoglm"},
    }


CLAIM_STORAGE = "/spec/resources/requests/storage"
CLAIM_CLASS = "/spec/storageClassName"


def shared_claim_override(claim: Manifest, storage: str, classes: Mapping[str, str]) -> Manifest:
    """The OverridePolicy carrying a grown size to every member's copy of the namespace's model-cache claim.
    The template keeps the size its first deployment gave it: Karmada's API server binds no volume and holds no
    StorageClass, and Kubernetes resizes only a bound claim whose class allows it, which each member decides for
    its own copy. Shared like the claim (no deployment's), and only ever raised.

    `classes` (member -> the class its copy has): Karmada keeps only a member's volumeName when it updates a
    claim, so a template that left the class to each member's default would send no class, which the member
    refuses as a change to an immutable field; each member's own class is written back."""
    rules: list[dict[str, Any]] = [
        # No targetCluster: every member the claim's policy sends it to.
        {"overriders": {"plaintext": [{"path": CLAIM_STORAGE, "operator": "replace", "value": storage}]}}
    ]
    rules += [
        {
            "targetCluster": {"clusterNames": [cluster]},
            "overriders": {"plaintext": [{"path": CLAIM_CLASS, "operator": "add", "value": name}]},
        }
        for cluster, name in sorted(classes.items())
    ]
    return {
        "apiVersion": POLICY_GROUP,
        "kind": "OverridePolicy",
        "metadata": _shared_meta(claim),
        "spec": {"resourceSelectors": [_selector(claim)], "overrideRules": rules},
    }


def claim_override_storage(policy: Mapping[str, Any] | None) -> str | None:
    """The size a shared claim override carries (None: no override)."""
    for rule in ((policy or {}).get("spec") or {}).get("overrideRules") or []:
        for patch in (rule.get("overriders") or {}).get("plaintext") or []:
            if patch.get("path") == CLAIM_STORAGE:
                return str(patch.get("value"))
    return None


def claim_override_classes(policy: Mapping[str, Any] | None) -> dict[str, str]:
    """member -> the class a shared claim override writes back to its copy."""
    found: dict[str, str] = {}
    for rule in ((policy or {}).get("spec") or {}).get("overrideRules") or []:
        clusters = (rule.get("targetCluster") or {}).get("clusterNames") or []
        for patch in (rule.get("overriders") or {}).get("plaintext") or []:
            if patch.get("path") == CLAIM_CLASS:
                found.update({cluster: str(patch.get("value")) for cluster in clusters})
    return found


def member_apply_failure(binding: Mapping[str, Any] | None, cluster: str) -> str | None:
    """Why Karmada could not apply a binding's object to `cluster` (None: applied, or not reported yet)."""
    for item in ((binding or {}).get("status") or {}).get("aggregatedStatus") or []:
        # Karmada omits `applied` when it is false; a failure carries its appliedMessage, a pending apply neither.
        if item.get("clusterName") == cluster and not item.get("applied") and item.get("appliedMessage"):
            return " ".join(str(item["appliedMessage"]).split())
    return None


def member_status(binding: Mapping[str, Any] | None) -> dict[str, tuple[int, int, bool]]:
    """cluster -> (ready replicas, replicas, applied) from a ResourceBinding's aggregated status."""
    found: dict[str, tuple[int, int, bool]] = {}
    for item in ((binding or {}).get("status") or {}).get("aggregatedStatus") or []:
        status = item.get("status") or {}
        found[item["clusterName"]] = (
            int(status.get("readyReplicas") or 0),
            int(status.get("replicas") or 0),
            bool(item.get("applied")),
        )
    return found
