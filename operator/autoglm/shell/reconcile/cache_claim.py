"""The namespace's model-cache claim: made by the first deployment that needs it, grown when a deployment needs
more than it holds. Kubernetes grows only a bound claim whose StorageClass allows volume expansion (and never
shrinks one); where it refuses, the deployment is held with the reason rather than started on a cache its
weights do not fit in."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kubernetes.client import ApiException
from kubernetes.utils import parse_quantity

from autoglm.shell.clusters import ClusterClient
from autoglm.shell.problems import short_reason

Manifest = dict[str, Any]


class CacheClaimTooSmall(Exception):
    """The namespace's cache claim is smaller than a deployment needs, and the cluster would not grow it."""


def storage(claim: Mapping[str, Any]) -> str:
    return str(((claim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))


def size_bytes(quantity: str) -> Decimal:
    return Decimal(parse_quantity(quantity))  # type: ignore[no-untyped-call]


def ensure_cache_claim(member: ClusterClient, claim: Manifest) -> bool:
    """Make the claim, or grow the one there to `claim`'s size when it is smaller. True when it was made or grown;
    CacheClaimTooSmall (naming both sizes and the cluster's reason) when it is too small and cannot grow."""
    created = member.ensure(claim)
    live = member.ensured(claim)
    if created or live is None or size_bytes(storage(live)) >= size_bytes(storage(claim)):
        return created
    # Remembered as too small: as it is now (grown by another deployment meanwhile, or bound since).
    meta = claim["metadata"]
    live = member.get(claim["apiVersion"], claim["kind"], meta["name"], meta.get("namespace"))
    if live is None:
        member.forget(claim)
        return ensure_cache_claim(member, claim)
    member.remember(live)
    if size_bytes(storage(live)) >= size_bytes(storage(claim)):
        return False
    name, have, want = meta["name"], storage(live), storage(claim)
    phase = (live.get("status") or {}).get("phase")
    if phase != "Bound":
        raise CacheClaimTooSmall(
            f"model cache claim {name} holds {have} and this model needs {want}; it is {phase or 'not bound'}, and "
            "Kubernetes grows only a bound claim: it grows once the namespace's first serving pod has bound it"
        )
    try:
        # Only the request: the claim's class and access modes are the first deployment's, and immutable.
        grown = member.merge_patch(claim, {"spec": {"resources": {"requests": {"storage": want}}}})
    except ApiException as exc:
        if exc.status not in (403, 422):
            raise
        raise CacheClaimTooSmall(
            f"model cache claim {name} holds {have} and this model needs {want}, and the cluster would not grow it "
            f"({short_reason(exc)}): allow volume expansion on its StorageClass, or serve this model from a claim "
            "of its own (spec.model.source pvc://...) with spec.modelCache.enabled false"
        ) from None
    member.remember(grown)
    return True
