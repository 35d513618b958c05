"""Karmada mode: member clusters are Karmada's Clusters, read through its cluster proxy; the deployment's
objects go to the Karmada API server with Karmada's policies, and status comes back from ResourceBindings.

The operator needs no member credentials: a member's Nodes and pods are read at
/apis/cluster.karmada.io/v1alpha1/clusters/NAME/proxy/..., which Karmada's aggregated API server forwards with
the caller's identity.
"""

from __future__ import annotations

import copy
import logging
import threading
from datetime import datetime
from typing import Any

from kubernetes import client

from autoglm.api.membercluster import Taint
from autoglm.core.placement import MemberView
from autoglm.shell.clusters import ClusterClient
from autoglm.shell.kubeconfig import BoundedApiClient
from autoglm.shell.members import MemberChange

CLUSTERS = ("cluster.karmada.io", "v1alpha1", "clusters")
PROXY = "/apis/cluster.karmada.io/v1alpha1/clusters/{name}/proxy"
# Taints Karmada itself puts on a NotReady or unreachable Cluster: readiness, which the failover toleration
# judges; only other (a person's) NoSchedule/NoExecute taints keep placements off a member.
READINESS_TAINTS = ("cluster.karmada.io/not-ready", "cluster.karmada.io/unreachable")
# A Cluster whose Ready condition changed this long after it was created came back from NotReady (Karmada has
# one reason, ClusterReady, for both), so placement gives it the rebalance window.
JOIN_SETTLE_SECONDS = 60.0
logger = logging.getLogger(__name__)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def proxy_client(
    host: client.ApiClient, name: str, request_timeout: float, user_agent: str | None = None
) -> ClusterClient:
    """A client for one member that talks to it through Karmada's cluster proxy with the host's credentials."""
    cfg = copy.copy(host.configuration)
    cfg.host = host.configuration.host.rstrip("/") + PROXY.format(name=name)
    return ClusterClient(name, BoundedApiClient(cfg, request_timeout, user_agent), request_timeout=request_timeout)


class KarmadaMembers:
    """The member clusters Karmada knows, with their readiness and a proxy client each (the same questions the
    direct-mode MemberRegistry answers)."""

    def __init__(self, host: ClusterClient, request_timeout: float = 5.0, user_agent: str | None = None):
        self.host = host
        self.request_timeout = request_timeout
        self.user_agent = user_agent
        self._views: dict[str, MemberView] = {}
        self._clients: dict[str, ClusterClient] = {}
        self._seen_down: set[str] = set()  # NotReady at some point while this process watched
        self._listed = False  # Karmada's Clusters have been read at least once
        self._lock = threading.Lock()

    def heartbeat(self) -> MemberChange:
        """Read Karmada's Clusters; FLEET when the set or a member's readiness changed (Karmada keeps the
        devices in use to itself: no USAGE here)."""
        raw: Any = self.host.custom.list_cluster_custom_object(*CLUSTERS)
        views: dict[str, MemberView] = {}
        for item in raw["items"]:
            meta, spec = item["metadata"], item.get("spec") or {}
            ready = next(
                (c for c in (item.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None
            )
            since = _time(ready.get("lastTransitionTime")) if ready else None
            created = _time(meta.get("creationTimestamp"))
            is_ready = bool(ready and ready.get("status") == "True")
            if not is_ready:
                self._seen_down.add(meta["name"])
            late = bool(since and created and (since - created).total_seconds() > JOIN_SETTLE_SECONDS)
            recovered = is_ready and (meta["name"] in self._seen_down or late)
            taints = [t for t in spec.get("taints") or [] if t.get("key") not in READINESS_TAINTS]
            views[meta["name"]] = MemberView(
                name=meta["name"],
                labels=dict(meta.get("labels") or {}),
                ready=is_ready,
                since=since,
                recovered=recovered,
                region=spec.get("region"),
                zone=spec.get("zone") or next(iter(spec.get("zones") or []), None),
                taints=tuple(
                    Taint.model_validate({k: t[k] for k in ("key", "value", "effect") if k in t}) for t in taints
                ),
                reason="" if ready and ready.get("status") == "True" else (ready or {}).get("message", "not ready"),
            )
        with self._lock:
            changed = {n: (v.ready, v.matched_by) for n, v in views.items()} != {
                n: (v.ready, v.matched_by) for n, v in self._views.items()
            }
            self._views = views
            self._listed = True
            for name in views:
                if name not in self._clients:
                    self._clients[name] = proxy_client(self.host.api, name, self.request_timeout, self.user_agent)
            for name in set(self._clients) - set(views):
                del self._clients[name]
        return MemberChange.FLEET if changed else MemberChange.NONE

    def views(self) -> list[MemberView]:
        with self._lock:
            return list(self._views.values())

    def client(self, name: str) -> ClusterClient | None:
        with self._lock:
            return self._clients.get(name)

    def get(self, name: str) -> MemberView | None:
        with self._lock:
            return self._views.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._views)

    def synced(self) -> bool:
        with self._lock:
            return self._listed
