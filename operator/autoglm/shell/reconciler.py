"""One reconcile of a ModelDeployment in one cluster: observe -> plan (pure) -> render (pure) -> act.

Independent of kopf so it can be driven by the handlers, by tests against a sandbox, and by the demo.
Restart-safe: everything it needs is read back from the API server; a second call with nothing changed
writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from autoglm.api import BackendRuntime, ModelDeployment, Precision
from autoglm.api.modeldeployment import ModelDeploymentStatus
from autoglm.core.backends import merge_catalogs
from autoglm.core.hardware import AcceleratorTable, Inventory, build_inventory, load_accelerator_table
from autoglm.core.models import ModelCatalog, ProfileError, load_model_catalog, profile_for, weight_bytes
from autoglm.core.planner import Plan, inputs_digest, plan
from autoglm.core.render import (
    LABEL_DEPLOYMENT,
    artifact_cleanup_job,
    conversion_job,
    conversion_job_name,
    model_cache_claim,
    plan_hash,
    serving_objects,
)
from autoglm.core.status import ConversionState, Observed, condition_events, desired_status
from autoglm.shell.clusters import ClusterClient, ready_replicas

Manifest = dict[str, Any]


@dataclass
class Outcome:
    """What one reconcile did, for handlers, metrics and tests."""

    plan: Plan | None
    status_written: bool
    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    invalid: str | None = None


def _ref(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta['name']}"


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


@dataclass
class Reconciler:
    cluster: ClusterClient
    defaults: Sequence[BackendRuntime]
    models: ModelCatalog = field(default_factory=load_model_catalog)
    accelerators: AcceleratorTable = field(default_factory=load_accelerator_table)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    _memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def _remember(self, key: tuple[Any, ...], sources: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """Per-snapshot memo. Entries hold their source snapshots, so an id() reused by a newer snapshot
        never returns a stale result."""
        hit = self._memo.get(key)
        if hit is None or any(a is not b for a, b in zip(hit[0], sources, strict=True)):
            # Keep only what belongs to the newest snapshots: inventories of a thousand nodes add up.
            stale = [
                k
                for k, (srcs, _) in self._memo.items()
                if k[0] == key[0] and any(a is not b for a, b in zip(srcs, sources, strict=True))
            ]
            for k in stale:
                del self._memo[k]
            hit = (sources, make())
            self._memo[key] = hit
        return hit[1]

    def catalog(self) -> list[BackendRuntime]:
        raw = self.cluster.backend_runtimes()
        result: list[BackendRuntime] = self._remember(("catalog", id(raw)), (raw,), lambda: self._catalog(raw))
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

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = meta.get("generation")
        current = ModelDeploymentStatus.model_validate(body.get("status") or {})
        try:
            md = ModelDeployment.model_validate({k: v for k, v in body.items() if k != "status"})
        except ValidationError as exc:
            message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            return self._finish(body, current, generation, None, Observed(self.cluster.name), message, None, None)
        try:
            profile = profile_for(md.spec.model, self.models)
        except ProfileError as exc:
            return self._finish(body, current, generation, None, Observed(self.cluster.name), str(exc), None, None)

        catalog = self.catalog()
        inventory = self._inventory(namespace, name)
        digest = inputs_digest(md.spec, catalog, inventory)
        result = plan(inventory, profile, catalog, md.spec, served_name=name)
        outcome_applied: list[str] = []
        runtimes = {b.metadata.name: b for b in catalog}

        # The cache volume is shared by the namespace and sized once, from the source (16-bit) weights.
        cache_bytes = weight_bytes(profile, Precision.BF16)
        conversions = self._convert(md, result, outcome_applied, cache_bytes)
        failed = {c.cache_key for c in conversions if c.phase == "Failed"}
        if failed:
            # A runtime whose artifact cannot be built is dropped, and the plan made again without it
            # (which is where fallbackPolicy decides between another runtime, CPU, or nothing).
            broken = {
                a.option.backend
                for a in result.assignments
                if a.option.conversion and a.option.conversion.cache_key in failed
            }
            catalog = [b for b in catalog if b.metadata.name not in broken]
            result = plan(inventory, profile, catalog, md.spec, served_name=name)
            conversions = [c for c in conversions if c.phase == "Failed"] + [
                c for c in self._convert(md, result, outcome_applied, cache_bytes) if c.cache_key not in failed
            ]

        deleted: list[str] = []
        phash = plan_hash(result)
        blocked = any(a.option.conversion and a.option.conversion.cache_key in failed for a in result.assignments)
        converting = any(c.phase not in ("Succeeded", "Failed") for c in conversions)
        # A deployment that never had a plan applied owns nothing yet: skip four list calls.
        owned = self.cluster.owned(namespace, name) if current.plan_hash else []
        if result.feasible and not blocked and not converting:
            claim = model_cache_claim(md, cache_bytes)
            # Optional kinds the cluster does not serve (PodMonitor without the Prometheus Operator) are left out.
            rendered = [
                o for o in serving_objects(md, result, runtimes) if self.cluster.has_kind(o["apiVersion"], o["kind"])
            ]
            wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered}
            present = {(o["kind"], o["metadata"]["name"]) for o in owned}
            unchanged = (
                current.inputs_hash == digest
                and current.plan_hash == phash
                and current.observed_generation == generation
                and wanted == present
            )
            if not unchanged:
                if claim and self.cluster.ensure(claim):
                    outcome_applied.append(_ref(claim))
                applied_objects = []
                for obj in rendered:
                    applied_objects.append(self.cluster.apply(obj))
                    outcome_applied.append(_ref(obj))
                for obj in owned:
                    if (obj["kind"], obj["metadata"]["name"]) not in wanted:
                        self.cluster.delete(obj)
                        deleted.append(_ref(obj))
                # Server-side apply answers with the live object (status included): no second list needed.
                owned = applied_objects
        ready, desired = ready_replicas(owned)
        observed = Observed(cluster=self.cluster.name, ready_replicas=ready, replicas=desired, conversions=conversions)
        outcome = self._finish(body, current, generation, result, observed, None, digest, phash)
        outcome.applied, outcome.deleted = outcome_applied, deleted
        return outcome

    def release(self, body: Mapping[str, Any]) -> list[str]:
        """On deletion: remove the conversion artifacts (Job and cached files) no other deployment uses."""
        meta = body["metadata"]
        if self.cluster.namespace_terminating(meta["namespace"]):
            # The cache volume, its files and the Jobs all go with the namespace; nothing may be created
            # there any more, and trying would hold the finalizer (and so the namespace) forever.
            return []
        mine = set((body.get("status") or {}).get("artifacts") or [])
        others = [
            md
            for md in self.cluster.model_deployments((meta["namespace"],))
            if md["metadata"]["name"] != meta["name"] and not md["metadata"].get("deletionTimestamp")
        ]
        in_use = {key for md in others for key in (md.get("status") or {}).get("artifacts") or []}
        released = sorted(mine - in_use)
        for key in released:
            self.cluster.delete(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": conversion_job_name(key), "namespace": meta["namespace"]},
                }
            )
            self.cluster.ensure(artifact_cleanup_job(meta["namespace"], key))
        return released

    def _inventory(self, namespace: str, name: str) -> Inventory:
        """Pools with this deployment's own pods counted as free (it may keep using what it holds)."""
        nodes, pods = self.cluster.nodes(), self.cluster.device_pods()
        own_ids: list[str] = []
        others: list[Manifest] = []
        for p in pods:
            meta = p["metadata"]
            if meta.get("namespace") == namespace and (meta.get("labels") or {}).get(LABEL_DEPLOYMENT) == name:
                own_ids.append(meta.get("uid") or "")
            else:
                others.append(p)
        inventory: Inventory = self._remember(
            ("inventory", id(nodes), id(pods), tuple(sorted(own_ids))),
            (nodes, pods),
            lambda: build_inventory(nodes, self.accelerators, others if own_ids else pods),
        )
        return inventory

    def _convert(
        self, md: ModelDeployment, result: Plan, applied: list[str], cache_bytes: int
    ) -> list[ConversionState]:
        jobs = [
            (job, a.option.conversion.cache_key)
            for a in result.assignments
            if a.option.conversion and (job := conversion_job(md, a.option)) is not None
        ]
        claim = model_cache_claim(md, cache_bytes)
        if jobs and claim and self.cluster.ensure(claim):
            applied.append(_ref(claim))
        states = []
        for job, key in jobs:
            name = job["metadata"]["name"]
            existing = self.cluster.get("batch/v1", "Job", name, md.metadata.namespace)
            if existing is None:
                existing = self.cluster.apply(job)
                applied.append(_ref(job))
            states.append(_job_state(existing, name, key))
        return states

    def _finish(
        self,
        body: Mapping[str, Any],
        current: ModelDeploymentStatus,
        generation: int | None,
        result: Plan | None,
        observed: Observed,
        invalid: str | None,
        digest: str | None,
        phash: str | None,
    ) -> Outcome:
        new = desired_status(current, generation, result, observed, self.clock(), invalid, digest, phash)
        old_doc = current.model_dump(mode="json", by_alias=True, exclude_none=True)
        new_doc = new.model_dump(mode="json", by_alias=True, exclude_none=True)
        events = []
        if new_doc != old_doc:
            self.cluster.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], new_doc)
            for type_, reason, message in condition_events(current.conditions, new.conditions):
                self.cluster.event(body, type_, reason, message)
                events.append(reason)
        return Outcome(plan=result, status_written=new_doc != old_doc, events=events, invalid=invalid)
