"""One reconcile's inputs and result, shared by the reconciler's parts, and the small pure helpers they all use."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from autoglm.api import BackendRuntime, ModelDeployment, Precision
from autoglm.api.modeldeployment import ModelDeploymentStatus
from autoglm.core.models import ModelProfile, weight_bytes
from autoglm.core.planner import Plan
from autoglm.core.render import LABEL_REVISION
from autoglm.core.status import ConversionState, FleetOutcome, Observed
from autoglm.shell.clusters import ClusterClient, ready_replicas, service_endpoint
from autoglm.shell.members import LOCAL

Manifest = dict[str, Any]
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Held while objects of the deployment live on members other than the host (ownerReferences cannot reach
# there): deletion removes them first.
PROPAGATION_FINALIZER = "autoglm.io/propagation"
# Held while the deployment uses conversion artifacts (a Job and cached files that other deployments may share):
# deletion releases those no other deployment uses.
ARTIFACT_FINALIZER = "autoglm.io/release-artifacts"


@dataclass
class Outcome:
    """What one reconcile did, for the controller, metrics and tests."""

    plan: Plan | None
    status_written: bool
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    invalid: str | None = None
    fleet: FleetOutcome | None = None
    body: Manifest | None = None  # the object as the server returned it after this reconcile's writes
    deferred: bool = False  # applies still landing (on_deferred hears how they ended)
    deleting: bool = False
    waiting: str | None = None  # a deletion that cannot complete yet: why (the caller retries with backoff)
    requeue_after: float | None = None  # reconcile again after this long: a failover or rebalance falls due


class ObjectGone(Exception):
    """The ModelDeployment was deleted while it was being reconciled: nothing more to do for it."""


class DeferredApplyStuck(Exception):
    """The last reconcile's deferred applies have not landed within their timeout."""


@dataclass
class Request:
    """One reconcile's inputs, shared by the members' steps."""

    md: ModelDeployment
    profile: ModelProfile
    catalog: list[BackendRuntime]
    current: ModelDeploymentStatus
    generation: int | None
    finalizers: list[str] = field(default_factory=list)
    body: Manifest = field(default_factory=dict)  # the object as last read or written
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
    # Applies the status does not wait for (see apply.DEFERRED_KINDS), with the reference each is recorded under.
    pending: list[tuple[Future[Manifest], str]] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.md.metadata.namespace or ""

    @property
    def runtimes(self) -> dict[str, BackendRuntime]:
        return {b.metadata.name: b for b in self.catalog}

    @property
    def cache_bytes(self) -> int:
        # The cache volume is shared by the namespace, sized from the source (16-bit) weights: grown for a larger
        # model (cache_claim.py).
        return weight_bytes(self.profile, Precision.BF16)


def ref(obj: Mapping[str, Any], cluster: str = LOCAL) -> str:
    meta = obj["metadata"]
    where = "" if cluster == LOCAL else f"{cluster}:"
    return f"{where}{obj['kind']}/{meta['name']}"


def revision_of(obj: Mapping[str, Any]) -> str:
    """The revision an object belongs to ("" for one made before the deployment spanned members)."""
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION, ""))


def digest(parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def observed(member: ClusterClient, objects: list[Manifest], conversions: Sequence[ConversionState]) -> Observed:
    """What a member runs for a deployment: its ready and desired replicas, conversions, and its endpoint."""
    ready, replicas = ready_replicas(objects)
    return Observed(ready, replicas, conversions, service_endpoint(objects, on_host=member.name == LOCAL))
