"""What every reconcile reads and shares: the catalog (the defaults merged with the BackendRuntimes) and each
member's accelerator inventory, built once per snapshot of its nodes and pods and shared by every deployment."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from autoglm.api import BackendRuntime
from autoglm.core.backends import merge_catalogs
from autoglm.core.hardware import Inventory, with_released
from autoglm.core.images import Images
from autoglm.core.render import LABEL_DEPLOYMENT
from autoglm.shell.clusters import ClusterClient
from autoglm.shell.inventories import InventoryCache
from autoglm.shell.members import LOCAL
from autoglm.shell.problems import UNREACHABLE, short_reason

Manifest = dict[str, Any]
logger = logging.getLogger(__name__)


class Snapshots:
    def __init__(
        self,
        cluster: ClusterClient,
        defaults: Sequence[BackendRuntime],
        inventories: InventoryCache,
        member_client: Callable[[str], ClusterClient | None],
        images: Images | None = None,
    ):
        self.cluster = cluster
        self.defaults = defaults
        self.inventories = inventories
        self.member_client = member_client
        self.images = images or Images()
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def remember(self, key: tuple[Any, ...], sources: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """Per-snapshot memo. Entries hold their source snapshots, so an id() reused by a newer snapshot
        never returns a stale result. Reconciles run on several threads: the lock also makes one of them
        build what the others then share, instead of each building its own."""
        with self._lock:
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
        result: list[BackendRuntime] = self.remember(("catalog", "", id(raw)), (raw,), lambda: self._catalog(raw))
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
                # The CRD schema admitted it; a pydantic-only rule rejects it, so it is not offered (its status
                # and a Warning Event say why: the controller checks every BackendRuntime).
                logger.debug("BackendRuntime %s is invalid: left out of the catalog", raw["metadata"].get("name"))
        # Mirrored here, before any plan reads an image: plans, their hashes and every pod then pull from it.
        return self.images.catalog(merge_catalogs(self.defaults, user))

    def full_inventory(self, member: ClusterClient) -> Inventory:
        """The member's pools with every device pod counted as taken; one per (nodes, pods) snapshot."""
        return self.inventories.inventory(member.name, member.nodes(), member.device_pods())

    def inventory(self, member: ClusterClient, namespace: str, name: str) -> Inventory:
        """The member's pools with this deployment's own pods counted as free (it may keep using what it holds).

        One inventory per snapshot serves every deployment; each one's own pods are handed back in O(its pods)
        (with_released), not by building the inventory again over every node."""
        full = self.full_inventory(member)
        pods = member.device_pods()
        owners: dict[tuple[str, str], list[Manifest]] = self.remember(
            ("pods-by-owner", member.name, id(pods)), (pods,), lambda: pods_by_owner(pods)
        )
        own = owners.get((namespace, name))
        return with_released(full, own) if own else full

    def member_inventory(self, member: str, namespace: str, name: str) -> Inventory:
        """The member's inventory; when it cannot be read, the last one read (a member within its failover
        toleration keeps its share on what was last known), else an empty one."""
        member_client = self.member_client(member)
        key = ("last-inventory", member)  # one per member: a stale fallback need not be per deployment
        if member_client is not None:
            try:
                inventory = self.inventory(member_client, namespace, name)
            except UNREACHABLE as exc:
                if member == LOCAL:
                    raise
                logger.info("member %s: inventory not read (%s); using the last one", member, short_reason(exc))
            else:
                with self._lock:
                    self._memo[key] = ((), inventory)
                return inventory
        with self._lock:
            last = self._memo.get(key)
        return last[1] if last else Inventory(pools=[], nodes_seen=0)


def pods_by_owner(pods: Sequence[Manifest]) -> dict[tuple[str, str], list[Manifest]]:
    """Pods by the deployment that made them: (namespace, name) -> pods."""
    found: dict[tuple[str, str], list[Manifest]] = {}
    for pod in pods:
        meta = pod["metadata"]
        owner = (meta.get("labels") or {}).get(LABEL_DEPLOYMENT)
        if owner:
            found.setdefault((meta.get("namespace") or "", owner), []).append(pod)
    return found
