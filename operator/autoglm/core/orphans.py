"""Which objects on a member cluster belong to a ModelDeployment that no longer exists, or to one whose status does
not name that member.

ownerReferences cannot cross clusters, so no garbage collector removes a member's objects when their owner on the
host goes. The propagation finalizer removes them on deletion; this is the net under it, as Kubernetes' garbage
collector is for ownerReferences: an object that landed after its owner's deletion had looked (a write the member's
API server carried out after its client had given up on it) is found here and removed.

A reconcile withdraws a deployment from the members its status names and no longer serves. Objects on a member the
status never came to name (applied, then the status write failed and the operator restarted before the next one)
would stay there, unseen: `strays` names those owners, whose next reconcile looks at that member too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from autoglm.core.render import LABEL_HOST, LABEL_OWNER_NAMESPACE, LABEL_OWNER_UID


def orphans(
    objects: Sequence[Mapping[str, Any]], host: str, live: Collection[str], namespaces: Collection[str] = ()
) -> list[Mapping[str, Any]]:
    """The objects this host made (labelled with its identity) whose owner's uid is not among `live`, the uids of
    the ModelDeployments that exist now. With `namespaces` (an operator that watches only those), only objects
    whose owners lived there: another operator's owners are not known here. Objects without the labels (made by
    hand, by another host, or by an operator before it labelled them) are never orphans."""
    found = []
    for obj in objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        uid, owner_namespace = labels.get(LABEL_OWNER_UID), labels.get(LABEL_OWNER_NAMESPACE)
        if labels.get(LABEL_HOST) != host or not host or not uid or not owner_namespace:
            continue
        if namespaces and owner_namespace not in namespaces:
            continue
        if uid not in live:
            found.append(obj)
    return found


def strays(
    objects: Iterable[Mapping[str, Any]], host: str, named: Mapping[str, Collection[str]], member: str
) -> set[str]:
    """The uids of live owners (`named`: uid -> the members its status names) whose objects this host made on
    `member` although their status does not name it. Owners that are gone are `orphans`' business."""
    found = set()
    for obj in objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        uid = str(labels.get(LABEL_OWNER_UID) or "")
        if host and labels.get(LABEL_HOST) == host and uid in named and member not in named[uid]:
            found.add(uid)
    return found
