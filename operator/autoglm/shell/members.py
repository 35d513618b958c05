"""Member clusters in direct mode: one client per MemberCluster, heartbeats, inventories and status.

Each MemberCluster names a kubeconfig Secret on the host; the registry builds a client from it (TLS always
verified, every call with a bounded timeout), asks the member's API server whether it is ready, reads its
Nodes and pods into an accelerator inventory, and writes the MemberCluster's status: Ready with a reason a
person can act on, the last heartbeat, and free/total devices per accelerator. A missing or bad Secret, an
unreachable API server and rejected credentials are conditions, never a crash. The host cluster is member
`local` unless the operator runs with --no-local.

Readiness is damped like Karmada's cluster-failure-threshold: a reachable member turns NotReady only after
`failure_threshold` heartbeats in a row fail; a configuration problem (no Secret, no key, a kubeconfig that
does not parse or skips TLS verification) is NotReady at once.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

import yaml
from kubernetes import client, config
from kubernetes.client import ApiException

from autoglm import API_GROUP, API_VERSION
from autoglm.api.common import ConditionStatus
from autoglm.api.membercluster import AcceleratorCapacity, MemberCluster, MemberClusterStatus, Taint
from autoglm.core.hardware import AcceleratorTable, Inventory, load_accelerator_table
from autoglm.core.placement import MemberView
from autoglm.core.status import condition_events, set_condition
from autoglm.shell.clusters import CONNECTIONS, ClusterClient
from autoglm.shell.inventories import InventoryCache
from autoglm.shell.kubeconfig import DEFAULT_MEMBER_TIMEOUT, BoundedApiClient
from autoglm.shell.problems import UNREACHABLE, short_reason

LOCAL = "local"
READY = "Ready"
SECRET_NAMESPACE = "autoglm-system"
# Reasons of the Ready condition; MemberRecovered tells placement the member came back (rebalance window).
JOINED, RECOVERED = "MemberReady", "MemberRecovered"
logger = logging.getLogger(__name__)


class MemberSource(Protocol):
    """Where the reconciler learns the fleet: MemberRegistry (direct mode) or KarmadaMembers (Karmada mode)."""

    def heartbeat(self) -> MemberChange: ...
    def views(self) -> list[MemberView]: ...
    def client(self, name: str) -> ClusterClient | None: ...
    def get(self, name: str) -> object | None: ...
    def names(self) -> list[str]: ...
    def synced(self) -> bool: ...


class MembersNotListed(Exception):
    """The member clusters have not been listed yet (the host did not answer the first heartbeat): a reconcile
    would take every member for unjoined, withdraw deployments from none and let deletions go with their objects
    still on the members. Retried with backoff until a heartbeat has listed them."""


class MemberChange(IntEnum):
    """What one heartbeat round saw change, least to most."""

    NONE = 0
    # Only the devices in use changed (pods came or went): news to the deployments waiting for room.
    USAGE = 1
    # A member joined or left, or its readiness or device totals changed: any placement may change.
    FLEET = 2


class MemberProblem(Exception):
    """Why a member cannot be used: `reason` is the condition's reason, the message says what to do."""

    def __init__(self, reason: str, message: str, immediate: bool = True):
        super().__init__(message)
        self.reason = reason
        self.immediate = immediate


@dataclass
class Member:
    """One member as the operator sees it now."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    client: ClusterClient | None = None
    ready: bool = False
    reason: str = "Pending"
    message: str = "not contacted yet"
    since: datetime | None = None
    failures: int = 0
    region: str | None = None
    zone: str | None = None
    taints: tuple[Taint, ...] = ()
    secret_version: str | None = None
    status: MemberClusterStatus = field(default_factory=MemberClusterStatus)

    def view(self) -> MemberView:
        return MemberView(
            name=self.name,
            labels=self.labels,
            ready=self.ready,
            since=self.since,
            recovered=self.reason == RECOVERED,
            region=self.region,
            zone=self.zone,
            taints=self.taints,
            reason="" if self.ready else f"{self.reason}: {self.message}",
        )


def client_from_kubeconfig(
    text: str,
    name: str,
    context: str | None = None,
    request_timeout: float = DEFAULT_MEMBER_TIMEOUT,
    user_agent: str | None = None,
) -> client.ApiClient:
    """A client for one member from its kubeconfig; refuses one that turns TLS verification off."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MemberProblem("KubeconfigInvalid", f"the kubeconfig of {name} is not YAML: {exc}") from None
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise MemberProblem("KubeconfigInvalid", f"the kubeconfig of {name} has no clusters")
    if any((c.get("cluster") or {}).get("insecure-skip-tls-verify") for c in doc["clusters"]):
        raise MemberProblem(
            "InsecureKubeconfig",
            f"the kubeconfig of {name} sets insecure-skip-tls-verify; give it the member's CA "
            "(certificate-authority-data) instead",
        )
    cfg = client.Configuration()
    try:
        config.load_kube_config_from_dict(doc, context=context, client_configuration=cfg, persist_config=False)  # type: ignore[no-untyped-call]
    except (config.ConfigException, KeyError, TypeError, ValueError) as exc:
        raise MemberProblem("KubeconfigInvalid", f"the kubeconfig of {name} cannot be used: {exc}") from None
    cfg.retries = 0  # a heartbeat that fails says so at once; the failure threshold does the damping
    cfg.connection_pool_maxsize = CONNECTIONS
    return BoundedApiClient(cfg, request_timeout, user_agent)


def classify(exc: BaseException, name: str) -> MemberProblem:
    """A failed call to a member (one of problems.UNREACHABLE), as a condition reason and a one-line message."""
    if isinstance(exc, ApiException):
        if exc.status == 401:
            return MemberProblem(
                "Unauthorized",
                f"{name} rejected the operator's credentials (expired or revoked); run autoglm join {name} again",
                immediate=False,
            )
        if exc.status == 403:
            return MemberProblem("Forbidden", f"{name} forbids the operator: {short_reason(exc)}", immediate=False)
        return MemberProblem("APIError", f"{name} answered {short_reason(exc)}", immediate=False)
    reason = short_reason(exc)
    if reason.startswith("TLS"):
        return MemberProblem("TLSError", f"{name}: {reason}", immediate=False)
    return MemberProblem("Unreachable", f"{name}: {reason}", immediate=False)


def capacity_of(inventory: Inventory) -> list[AcceleratorCapacity]:
    """Free and total devices per accelerator product (CPU pools are not devices)."""
    totals: dict[str, tuple[int, int]] = {}
    for pool in inventory.pools:
        if pool.is_cpu or not pool.known:
            continue
        free, total = totals.get(pool.product, (0, 0))
        totals[pool.product] = (
            free + sum(count * n for count, n in pool.free_histogram.items()),
            total + pool.devices_per_node * len(pool.node_names),
        )
    return [AcceleratorCapacity(accelerator=k, free=f, total=t) for k, (f, t) in sorted(totals.items())]


class MemberRegistry:
    """Every member cluster, refreshed by `heartbeat()`; the reconciler asks it for views and clients."""

    def __init__(
        self,
        host: ClusterClient,
        include_local: bool = True,
        failure_threshold: int = 3,
        request_timeout: float = DEFAULT_MEMBER_TIMEOUT,
        accelerators: AcceleratorTable | None = None,
        inventories: InventoryCache | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        user_agent: str | None = None,
    ):
        self.host = host
        self.user_agent = user_agent
        self.include_local = include_local
        self.failure_threshold = failure_threshold
        self.request_timeout = request_timeout
        self.accelerators = accelerators or load_accelerator_table()
        self.inventories = inventories or InventoryCache(self.accelerators)
        self.clock = clock
        self._members: dict[str, Member] = {}
        self._listed = False  # a heartbeat has listed the MemberClusters at least once
        self._lock = threading.Lock()

    # --- read ------------------------------------------------------------------------------------------

    def synced(self) -> bool:
        with self._lock:
            return self._listed

    def views(self) -> list[MemberView]:
        with self._lock:
            return [m.view() for m in self._members.values()]

    def client(self, name: str) -> ClusterClient | None:
        with self._lock:
            member = self._members.get(name)
            return member.client if member else None

    def get(self, name: str) -> Member | None:
        with self._lock:
            return self._members.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._members)

    # --- refresh ---------------------------------------------------------------------------------------

    def heartbeat(self) -> MemberChange:
        """One round over every MemberCluster, and the largest change it saw."""
        objects = {o["metadata"]["name"]: o for o in self.host.member_clusters()}
        if self.include_local and LOCAL not in objects:
            # Created, never applied: the operator's role may create MemberClusters but not change them.
            self.host.create(
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": "MemberCluster",
                    "metadata": {"name": LOCAL, "labels": {"autoglm.io/host": "true"}},
                    "spec": {},
                }
            )
            objects = {o["metadata"]["name"]: o for o in self.host.member_clusters()}
        changed = MemberChange.NONE
        with self._lock:
            for gone in set(self._members) - set(objects):
                del self._members[gone]
                changed = MemberChange.FLEET
        for name, body in sorted(objects.items()):
            changed = max(changed, self._beat(name, body))
        with self._lock:
            self._listed = True
        return changed

    def _beat(self, name: str, body: dict[str, Any]) -> MemberChange:
        # A copy, changed here and put back whole by _record: readers on other threads see the member as it
        # was or as it is, never half-updated.
        with self._lock:
            held = self._members.get(name)
        member = replace(held) if held is not None else Member(name=name)
        current = MemberClusterStatus.model_validate(body.get("status") or {})
        if member.since is None:  # first sight after a restart: continue from what the API server holds
            ready_cond = next((c for c in current.conditions if c.type == READY), None)
            if ready_cond is not None:
                member.ready = ready_cond.status is ConditionStatus.TRUE
                member.reason, member.message = ready_cond.reason, ready_cond.message
                member.since = ready_cond.last_transition_time
        member.labels = dict(body["metadata"].get("labels") or {})
        try:
            spec = MemberCluster.model_validate({k: v for k, v in body.items() if k != "status"}).spec
        except ValueError as exc:
            return self._record(member, body, current, MemberProblem("InvalidSpec", str(exc)))
        member.region, member.zone, member.taints = spec.region, spec.zone, tuple(spec.taints)
        try:
            self._connect(member, spec)
            assert member.client is not None
            # The version call proves the API server answers now; nodes and pods come from the watch caches.
            client.VersionApi(member.client.api).get_code(_request_timeout=self.request_timeout)
            nodes, pods = member.client.nodes(), member.client.device_pods()
        except MemberProblem as problem:
            return self._record(member, body, current, problem)
        except UNREACHABLE as exc:
            logger.debug("member %s: heartbeat failed", name, exc_info=exc)
            return self._record(member, body, current, classify(exc, name))
        return self._record(member, body, current, None, capacity_of(self.inventories.inventory(name, nodes, pods)))

    def _connect(self, member: Member, spec: Any) -> None:
        if member.name == LOCAL and spec.kubeconfig_secret_ref is None:
            if not self.include_local:
                member.client = None
                raise MemberProblem("HostExcluded", "the operator runs with --no-local: the host serves no replicas")
            member.client = self.host
            return
        ref = spec.kubeconfig_secret_ref
        if ref is None:
            member.client = None
            raise MemberProblem(
                "NoKubeconfig", f"spec.kubeconfigSecretRef is required for {member.name} (only {LOCAL} may omit it)"
            )
        secret = self.host.get("v1", "Secret", ref.name, ref.namespace)
        if secret is None:
            member.client = None
            raise MemberProblem("SecretNotFound", f"Secret {ref.namespace}/{ref.name} does not exist")
        version = secret["metadata"].get("resourceVersion")
        if member.client is not None and version == member.secret_version:
            return
        data = secret.get("data") or {}
        if ref.key not in data:
            member.client = None
            raise MemberProblem(
                "SecretKeyMissing", f"Secret {ref.namespace}/{ref.name} has no key {ref.key!r} (it has {sorted(data)})"
            )
        try:
            text = base64.b64decode(data[ref.key]).decode()
        except ValueError:
            member.client = None
            raise MemberProblem(
                "KubeconfigInvalid", f"Secret {ref.namespace}/{ref.name} key {ref.key} is not base64"
            ) from None
        api = client_from_kubeconfig(
            text, member.name, request_timeout=self.request_timeout, user_agent=self.user_agent
        )
        member.client = ClusterClient(member.name, api, request_timeout=self.request_timeout)
        member.secret_version = version

    def _record(
        self,
        member: Member,
        body: dict[str, Any],
        current: MemberClusterStatus,
        problem: MemberProblem | None,
        capacity: list[AcceleratorCapacity] | None = None,
    ) -> MemberChange:
        now = self.clock()
        was_ready = member.ready
        if problem is None:
            member.failures = 0
            reason = member.reason if was_ready else (RECOVERED if member.since is not None else JOINED)
            member.ready, member.reason, member.message = True, reason, "heartbeat answered"
            member.status = current.model_copy(update={"last_heartbeat": now, "capacity": capacity or []})
        else:
            member.failures += 1
            if problem.immediate or not was_ready or member.failures >= self.failure_threshold:
                member.ready, member.reason, member.message = False, problem.reason, str(problem)
            else:
                logger.info(
                    "member %s: heartbeat failed (%d/%d): %s",
                    member.name,
                    member.failures,
                    self.failure_threshold,
                    problem,
                )
        if member.ready != was_ready or member.since is None:
            member.since = now
        status = ConditionStatus.TRUE if member.ready else ConditionStatus.FALSE
        conditions = set_condition(current.conditions, READY, status, member.reason, member.message, None, now)
        # set_condition keeps lastTransitionTime when the status holds; `since` follows it.
        member.since = next(c.last_transition_time for c in conditions if c.type == READY)
        new = (member.status if problem is None else current).model_copy(update={"conditions": conditions})
        old_doc = current.model_dump(mode="json", by_alias=True, exclude_none=True)
        new_doc = new.model_dump(mode="json", by_alias=True, exclude_none=True)
        # The heartbeat time alone is written at most once a minute: it is not worth a write per beat.
        beat_only = {k: v for k, v in new_doc.items() if k != "lastHeartbeat"} == {
            k: v for k, v in old_doc.items() if k != "lastHeartbeat"
        }
        stale = current.last_heartbeat is None or (now - current.last_heartbeat).total_seconds() >= 60
        if not beat_only or (problem is None and stale):
            try:
                self.host.patch_member_status(member.name, new_doc)
                for type_, reason, message in condition_events(current.conditions, conditions):
                    self.host.event(body, type_, reason, message)
            except UNREACHABLE as exc:
                logger.warning("member %s: status not written: %s", member.name, short_reason(exc))
        member.status = new
        with self._lock:
            before = self._members.get(member.name)
            self._members[member.name] = member
        if member.ready != was_ready or (before is not None and before.view().matched_by != member.view().matched_by):
            return MemberChange.FLEET
        if beat_only or problem is not None or capacity == current.capacity:
            return MemberChange.NONE
        totals = [(c.accelerator, c.total) for c in capacity or []]
        same_totals = totals == [(c.accelerator, c.total) for c in current.capacity]
        return MemberChange.USAGE if same_totals else MemberChange.FLEET


# --- joining -------------------------------------------------------------------------------------------

FILE_FIELDS = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}


def flatten_kubeconfig(doc: dict[str, Any], base: Path, context: str | None = None) -> dict[str, Any]:
    """One context of a kubeconfig as a standalone document: its cluster and user only, files inlined (like
    `kubectl config view --minify --flatten`), so the Secret holds everything the operator needs."""
    name = context or doc.get("current-context")
    contexts = {c["name"]: c["context"] for c in doc.get("contexts") or []}
    if not name or name not in contexts:
        raise MemberProblem("KubeconfigInvalid", f"no context {name!r} (contexts: {', '.join(sorted(contexts))})")
    ctx = contexts[name]
    clusters = {c["name"]: dict(c["cluster"]) for c in doc.get("clusters") or []}
    users = {u["name"]: dict(u.get("user") or {}) for u in doc.get("users") or []}
    if ctx.get("cluster") not in clusters:
        raise MemberProblem(
            "KubeconfigInvalid", f"context {name} names cluster {ctx.get('cluster')!r}, which is missing"
        )
    cluster, user = clusters[ctx["cluster"]], users.get(ctx.get("user", ""), {})
    for section in (cluster, user):
        for key, data_key in FILE_FIELDS.items():
            if key in section:
                path = Path(section.pop(key)).expanduser()
                path = path if path.is_absolute() else base / path
                section[data_key] = base64.b64encode(path.read_bytes()).decode()
    if "tokenFile" in user:
        path = Path(user.pop("tokenFile")).expanduser()
        user["token"] = (path if path.is_absolute() else base / path).read_text().strip()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": ctx["cluster"], "cluster": cluster}],
        "users": [{"name": ctx.get("user", "user"), "user": user}],
        "contexts": [{"name": name, "context": {"cluster": ctx["cluster"], "user": ctx.get("user", "user")}}],
        "current-context": name,
    }


def join(
    host: ClusterClient,
    name: str,
    kubeconfig: dict[str, Any],
    labels: dict[str, str] | None = None,
    namespace: str = SECRET_NAMESPACE,
    verify: bool = True,
    request_timeout: float = DEFAULT_MEMBER_TIMEOUT,
) -> dict[str, Any]:
    """Create (or update) the member's kubeconfig Secret and its MemberCluster on the host, as `karmadactl join`
    does; with `verify`, the member's API server must answer with these credentials first."""
    if name == LOCAL:
        raise MemberProblem("InvalidName", f"{LOCAL} is the host cluster; join other clusters under other names")
    text = yaml.safe_dump(kubeconfig, sort_keys=False)
    if verify:
        api = client_from_kubeconfig(text, name)
        try:
            client.VersionApi(api).get_code(_request_timeout=request_timeout)
        except UNREACHABLE as exc:
            raise classify(exc, name) from None
    secret_name = f"member-{name}"
    host.ensure({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    host.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": secret_name, "namespace": namespace, "labels": {"autoglm.io/member": name}},
            "data": {"kubeconfig": base64.b64encode(text.encode()).decode()},
        }
    )
    return host.apply(
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "MemberCluster",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"kubeconfigSecretRef": {"name": secret_name, "namespace": namespace, "key": "kubeconfig"}},
        }
    )


def unjoin(host: ClusterClient, name: str) -> list[str]:
    """Remove the MemberCluster and the Secret `join` made; returns what was deleted."""
    removed = []
    body = host.get(f"{API_GROUP}/{API_VERSION}", "MemberCluster", name, None)
    if body is not None:
        ref = (body.get("spec") or {}).get("kubeconfigSecretRef") or {}
        host.delete(body)
        removed.append(f"MemberCluster/{name}")
        secret_name, namespace = ref.get("name"), ref.get("namespace", SECRET_NAMESPACE)
        if secret_name and host.get("v1", "Secret", secret_name, namespace) is not None:
            host.delete(
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name, "namespace": namespace}}
            )
            removed.append(f"Secret/{namespace}/{secret_name}")
    return removed
