"""A rendered pod with the user's spec.template merged in (pure): the plan's choices are kept, the user's added.

- nodeSelector: merged; on a key both give, the plan's value stays (it selects the accelerator).
- affinity: the user's required node terms are ANDed with the plan's (every plan term gets the user's
  expressions; Kubernetes ORs the terms), preferred terms and pod (anti-)affinity are added.
- tolerations, imagePullSecrets, volumes, envFrom: added; env: added, one of the same name replaced (the plan's
  HF_HOME and collective variables only by a name the user gives on purpose).
- resources: the user's cpu, memory and ephemeral-storage replace the computed ones; devices stay the plan's.
- labels: the user's, then the operator's (its selector labels must hold).
"""

from __future__ import annotations

import copy
from typing import Any

from autoglm.api.podtemplate import CREDENTIAL_KEYS, PodTemplate


def credential_env(secret: str | None) -> list[dict[str, Any]]:
    """The download credentials of spec.model.credentialsSecret, each read from the Secret (optional: a Secret
    holding only HF_TOKEN serves); nothing when no Secret is named."""
    if not secret:
        return []
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for key in CREDENTIAL_KEYS
    ]


def pull_secrets(template: PodTemplate | None) -> list[dict[str, str]]:
    """The template's imagePullSecrets as a pod lists them; none without a template."""
    return [{"name": name} for name in template.image_pull_secrets] if template is not None else []


def with_env(env: list[dict[str, Any]], extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`env` with `extra` added; a variable of the same name is replaced where it stood."""
    names = {e["name"] for e in extra}
    return [e for e in env if e["name"] not in names] + extra


def _node_affinity(plan: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    key = "requiredDuringSchedulingIgnoredDuringExecution"
    merged = {**plan, **{k: v for k, v in user.items() if k != key}}
    preferred = "preferredDuringSchedulingIgnoredDuringExecution"
    if preferred in plan or preferred in user:
        merged[preferred] = [*plan.get(preferred, []), *user.get(preferred, [])]
    plan_terms = (plan.get(key) or {}).get("nodeSelectorTerms") or []
    user_terms = (user.get(key) or {}).get("nodeSelectorTerms") or []
    if plan_terms and user_terms:
        # (p1 OR p2) AND (u1 OR u2) = every pair's expressions together.
        terms = [
            {
                field: [*p.get(field, []), *u.get(field, [])]
                for field in ("matchExpressions", "matchFields")
                if p.get(field) or u.get(field)
            }
            for p in plan_terms
            for u in user_terms
        ]
        merged[key] = {"nodeSelectorTerms": terms}
    elif plan_terms or user_terms:
        merged[key] = {"nodeSelectorTerms": plan_terms or user_terms}
    return merged


def _affinity(plan: dict[str, Any] | None, user: dict[str, Any]) -> dict[str, Any]:
    merged = {**(plan or {}), **{k: v for k, v in user.items() if k != "nodeAffinity"}}
    if "nodeAffinity" in user or (plan and "nodeAffinity" in plan):
        merged["nodeAffinity"] = _node_affinity((plan or {}).get("nodeAffinity") or {}, user.get("nodeAffinity") or {})
    return merged


def customized_pod(
    pod: dict[str, Any], labels: dict[str, str], template: PodTemplate | None
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(pod spec, pod labels, extra pod annotations) with the template merged into the pod's first container
    (the server) and the pod."""
    if template is None:
        return pod, labels, {}
    pod = copy.deepcopy(pod)
    server = pod["containers"][0]
    t = template.model_dump(mode="json", by_alias=True, exclude_none=True)
    if template.node_selector:
        pod["nodeSelector"] = {**template.node_selector, **(pod.get("nodeSelector") or {})}
    if template.affinity:
        pod["affinity"] = _affinity(pod.get("affinity"), template.affinity)
    if template.tolerations:
        pod["tolerations"] = [*(pod.get("tolerations") or []), *t["tolerations"]]
    if template.image_pull_secrets:
        pod["imagePullSecrets"] = pull_secrets(template)
    for field in ("serviceAccountName", "priorityClassName", "schedulerName", "runtimeClassName"):
        if field in t:
            pod[field] = t[field]
    if template.security_context:
        pod["securityContext"] = dict(template.security_context)
    if template.container_security_context:
        server["securityContext"] = dict(template.container_security_context)
    if template.env:
        server["env"] = with_env(server.get("env") or [], t["env"])
    if template.env_from:
        server["envFrom"] = [*(server.get("envFrom") or []), *t["envFrom"]]
    if template.volumes:
        pod["volumes"] = [*(pod.get("volumes") or []), *template.volumes]
    if template.volume_mounts:
        server["volumeMounts"] = [*(server.get("volumeMounts") or []), *t["volumeMounts"]]
    resources = server.setdefault("resources", {})
    for part in ("requests", "limits"):
        given = getattr(template.resources, part)
        if given:
            resources[part] = {**(resources.get(part) or {}), **given}
    return pod, {**template.labels, **labels}, dict(template.annotations)
