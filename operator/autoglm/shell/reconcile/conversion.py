"""Conversion: the Jobs that compile a runtime's format (a TensorRT engine, an ATC `.om`, a `.bmodel`, GGUF) into the
namespace's model cache, one per cache key, reused by every deployment that needs the same artifact."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from autoglm.core.planner import Plan
from autoglm.core.render import conversion_job, model_cache_claim
from autoglm.core.status import ConversionState
from autoglm.shell.clusters import ClusterClient
from autoglm.shell.reconcile.cache_claim import ensure_cache_claim
from autoglm.shell.reconcile.request import ARTIFACT_FINALIZER, Request, ref

if TYPE_CHECKING:
    from autoglm.shell.reconcile.reconciler import Reconciler


def job_state(job: Mapping[str, Any] | None, name: str, key: str) -> ConversionState:
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


def convert(r: Reconciler, req: Request, member: ClusterClient, result: Plan) -> list[ConversionState]:
    """The conversion Jobs the member's plan needs (made when missing, after the artifact finalizer is held) and
    their state."""
    md = req.md
    jobs = [
        (job, a.option.conversion.cache_key)
        for a in result.assignments
        if a.option.conversion and (job := conversion_job(md, a.option)) is not None
    ]
    if jobs:
        r.hold_finalizer(req, ARTIFACT_FINALIZER)
    claim = model_cache_claim(md, req.cache_bytes)
    if jobs and claim and ensure_cache_claim(member, claim):
        req.applied.append(ref(claim, member.name))
    states = []
    for job, key in jobs:
        name = job["metadata"]["name"]
        existing = member.get("batch/v1", "Job", name, md.metadata.namespace)
        if existing is None:
            existing = member.apply(job)
            req.applied.append(ref(job, member.name))
        states.append(job_state(existing, name, key))
    return states
