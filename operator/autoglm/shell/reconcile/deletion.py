"""Deletion and withdrawal: a deployment's objects removed from members (ownerReferences cannot cross clusters)
and its conversion artifacts released, each finalizer removed once its job is done; a member that no longer
serves a deployment has its objects removed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from autoglm.core.render import artifact_cleanup_job, conversion_job_name
from autoglm.core.status import MemberOutcome
from autoglm.shell.members import LOCAL
from autoglm.shell.problems import UNREACHABLE
from autoglm.shell.reconcile.request import ARTIFACT_FINALIZER, PROPAGATION_FINALIZER, Outcome, Request, ref

if TYPE_CHECKING:
    from autoglm.shell.reconcile.reconciler import Reconciler

logger = logging.getLogger(__name__)


def withdraw(r: Reconciler, req: Request, name: str) -> MemberOutcome | None:
    """Remove this deployment's objects from a member that no longer serves it; None once it holds none.
    An unreachable member stays listed (desired 0) with the reason, and is tried again next time."""
    member = r.member_client(name)
    namespace, md_name = req.namespace, req.md.metadata.name
    if member is None:
        if r.members is not None and r.members.get(name) is None:
            return None  # the member left the fleet (unjoined): nothing to reach it with
        return MemberOutcome(name, error="not connected; its objects are removed once it is back")
    try:
        for obj in member.owned(namespace, md_name):
            member.delete(obj)
            req.deleted.append(ref(obj, name))
    except UNREACHABLE as exc:
        if name == LOCAL:
            raise
        return MemberOutcome(name, error=f"{r.unreachable(name, exc)}; its objects are removed once it is back")
    return None


def finalize(r: Reconciler, body: Mapping[str, Any]) -> Outcome:
    """On deletion: remove the deployment's objects from every remote member, then release the conversion
    artifacts no other deployment uses, removing each finalizer once its job is done.

    A joined member that cannot be reached holds the deletion, however long it is gone (Karmada's Works wait for
    their cluster the same way): the outcome says why it waits, and the caller retries with backoff and an Event.
    Objects on a member cannot be owned across clusters, so a deletion that let go early would leave them there
    for good. A member that is gone for good is unjoined (`autoglm unjoin`, or the MemberCluster deleted): that
    releases every deletion waiting for it. The spec is not validated: an object whose spec no longer passes the
    API's rules can still be deleted."""
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    outcome = Outcome(plan=None, status_written=False, deleting=True, body=dict(body))
    namespace, name = meta["namespace"], meta["name"]
    if PROPAGATION_FINALIZER in finalizers:
        waiting = clean_members(r, body, outcome.deleted)
        if waiting:
            outcome.waiting = waiting
            return outcome
        outcome.body = r.cluster.remove_finalizer(namespace, name, PROPAGATION_FINALIZER)
        logger.info(
            "%s/%s (uid %s): deleted; removed from members: %s",
            namespace,
            name,
            meta.get("uid"),
            ", ".join(outcome.deleted) or "nothing",
        )
    if ARTIFACT_FINALIZER in finalizers:
        released = release(r, body)
        if released:
            logger.info("%s/%s: released conversion artifacts %s", namespace, name, ", ".join(released))
        outcome.body = r.cluster.remove_finalizer(namespace, name, ARTIFACT_FINALIZER)
    return outcome


def clean_members(r: Reconciler, body: Mapping[str, Any], removed: list[str]) -> str | None:
    """Remove the deployment's objects from every joined remote member (and any its status still names); what it
    still waits for, or None once every one of them holds none."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    clusters = ((body.get("status") or {}).get("clusters")) or []
    names = {str(c.get("name")) for c in clusters if isinstance(c, dict) and c.get("name")}
    names |= set(r.members.names()) if r.members else set()
    waiting = []
    for member_name in sorted(names - {LOCAL}):
        member = r.member_client(member_name)
        if member is None and (r.members is None or r.members.get(member_name) is None):
            continue  # unjoined: nothing to reach it with, and nothing that waits for it any more
        try:
            if member is None:
                raise ConnectionError("not connected")
            for obj in member.owned(namespace, name):
                member.delete(obj)
                removed.append(ref(obj, member_name))
        except UNREACHABLE as exc:
            waiting.append(f"{member_name} {r.unreachable(member_name, exc)}")
    if waiting:
        return "waiting to remove its objects from " + "; ".join(waiting)
    return None


def release(r: Reconciler, body: Mapping[str, Any]) -> list[str]:
    """On deletion: remove the conversion artifacts (Job and cached files) no other deployment uses, in every
    member that has them."""
    meta = body["metadata"]
    mine = set((body.get("status") or {}).get("artifacts") or [])
    others = [
        md
        for md in r.cluster.model_deployments((meta["namespace"],))
        if md["metadata"]["name"] != meta["name"] and not md["metadata"].get("deletionTimestamp")
    ]
    in_use = {key for md in others for key in (md.get("status") or {}).get("artifacts") or []}
    released = sorted(mine - in_use)
    clusters = {c.get("name") for c in (body.get("status") or {}).get("clusters") or []} or {LOCAL}
    for cluster in sorted(c for c in clusters if c):
        member = r.member_client(cluster)
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
            member.ensure(artifact_cleanup_job(meta["namespace"], key, r.images.helper_image))
    return released
