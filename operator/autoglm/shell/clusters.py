"""One Kubernetes cluster as the operator sees it: read nodes, pods and runtimes, apply objects, write status.

Thin on purpose: every decision is made in the pure core; this module only moves data in and out. A
cluster is a value passed around (the host is member `local`), never a global.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from autoglm import API_GROUP, API_VERSION
from autoglm.core.render import FIELD_MANAGER, LABEL_DEPLOYMENT
from autoglm.shell.watchcache import WatchCache

Manifest = dict[str, Any]
logger = logging.getLogger(__name__)
# Node facts change in waves (a rollout relabelling every node); a pools rebuild per second is enough.
NODES_SETTLE_SECONDS = 1.0
# Connections kept open per API server: reconcile workers, their side-by-side applies, watches and Events
# (the client's default, 5 per core, makes a busy operator open and drop TLS connections all the time).
CONNECTIONS = 64
# Reads of one reconcile that do not depend on each other (the lists of each owned kind) run side by side here.
_READS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="autoglm-read")
EVENT_QUEUE = 1000  # Events waiting to be posted; past this they are dropped (an API server that slow has worse)
# Kinds the operator owns per ModelDeployment, for pruning what a new plan no longer renders.
# How long `ensure` trusts that an object it found or created is still there.
ENSURE_TTL_SECONDS = 30.0

OWNED_KINDS = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("inference.networking.k8s.io/v1", "InferencePool"),
    # Karmada mode: the policies the operator writes beside the templates (skipped where not served).
    ("policy.karmada.io/v1alpha1", "PropagationPolicy"),
    ("policy.karmada.io/v1alpha1", "OverridePolicy"),
)


def _node_facts(node: Manifest) -> Manifest:
    """What the inventory reads of a Node; the rest (managedFields, images, ...) is dropped to save memory."""
    meta, spec, status = node.get("metadata", {}), node.get("spec", {}), node.get("status", {})
    # Thousands of nodes carry the same label keys and values, resource names and amounts, condition types
    # and statuses: one copy of each string.
    return {
        "metadata": {"name": meta.get("name"), "labels": _interned(meta.get("labels"))},
        "spec": {k: spec[k] for k in ("taints", "unschedulable") if k in spec},
        "status": {
            "capacity": _interned(status.get("capacity")),
            "allocatable": _interned(status.get("allocatable")),
            # Only what each condition says, not when it was last said: heartbeats change no facts.
            "conditions": [
                {"type": sys.intern(str(c.get("type"))), "status": sys.intern(str(c.get("status")))}
                for c in status.get("conditions") or []
            ],
        },
    }


def _interned(strings: Mapping[str, Any] | None) -> dict[str, Any]:
    return {sys.intern(k): sys.intern(v) if isinstance(v, str) else v for k, v in (strings or {}).items()}


def _pod_facts(pod: Manifest) -> Manifest | None:
    """What the inventory reads of a pod that holds devices: bound to a node, not finished (None otherwise).
    Its phase is left out: Pending and Running hold the same devices."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    return {
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "labels")},
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [{"resources": c.get("resources", {})} for c in spec.get("containers", [])],
        },
    }


class ClusterClient:
    """Reads and writes one cluster through the official Kubernetes client.

    Nodes and pods come from watch caches (shell.watchcache): listed once, then kept current by a watch, and
    shared by every reconcile; a thousand nodes' heartbeats cost neither lists nor new inventories. With
    `snapshot_ttl` 0 they are listed on every call instead (tests that must see what they just changed).
    BackendRuntimes are listed at most once per `snapshot_ttl` seconds.
    """

    # How long a kind found unserved stays so before discovery is asked again.
    UNSERVED_RECHECK_SECONDS = 60.0

    def __init__(
        self, name: str, api: client.ApiClient, snapshot_ttl: float = 2.0, request_timeout: float | None = None
    ):
        self.name = name
        self.api = api
        self.snapshot_ttl = snapshot_ttl
        # Every call to a member cluster is bounded: an unreachable member must not hold a reconcile.
        self.timeout: dict[str, Any] = {"_request_timeout": request_timeout} if request_timeout else {}
        self._lock = threading.Lock()
        self._discovery_lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._ensured: dict[tuple[str, str, str, str], tuple[float, Manifest]] = {}  # (when, as found or made)
        self.ensure_ttl = ENSURE_TTL_SECONDS if snapshot_ttl > 0 else 0.0
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._dynamic: DynamicClient | None = None
        self._resources: dict[tuple[str, str], tuple[Any, float]] = {}  # (resource or None, when looked up)
        self._identity: str | None = None
        self._events: queue.Queue[tuple[Manifest, str, str, str]] = queue.Queue(maxsize=EVENT_QUEUE)
        self._event_thread: threading.Thread | None = None
        self._nodes = WatchCache(f"{name}-nodes", self._node_request, _node_facts, settle_seconds=NODES_SETTLE_SECONDS)
        self._pods = WatchCache(f"{name}-pods", self._pod_request, _pod_facts)

    def _query(self, query: dict[str, Any]) -> dict[str, Any]:
        if not query.get("watch"):
            return {"_preload_content": False, **query, **self.timeout}
        connect = self.timeout.get("_request_timeout") or 10.0
        return {
            "_preload_content": False,
            **query,
            "allow_watch_bookmarks": True,
            # The server ends the watch after timeout_seconds; a connection silent for longer is dead.
            "_request_timeout": (connect, query["timeout_seconds"] + 30),
        }

    def _node_request(self, query: dict[str, Any]) -> Any:
        return self.core.list_node(**self._query(query))

    def _pod_request(self, query: dict[str, Any]) -> Any:
        selector = "status.phase!=Succeeded,status.phase!=Failed"
        return self.core.list_pod_for_all_namespaces(field_selector=selector, **self._query(query))

    def _raw(self, response: Any) -> Any:
        return json.loads(response.data)

    # --- observe ---------------------------------------------------------------------------------------

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._cache.get(key)
            if hit and time.monotonic() - hit[0] < self.snapshot_ttl:
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (time.monotonic(), value)
        return value

    def invalidate(self) -> None:
        """The next read of anything lists it again."""
        with self._lock:
            self._cache.clear()
            self._ensured.clear()
        self._nodes.invalidate()
        self._pods.invalidate()

    def close(self) -> None:
        """Stop the watches (they also stop by themselves when unused)."""
        self._nodes.stop()
        self._pods.stop()

    def nodes(self) -> list[Manifest]:
        """Every node's facts (shared; do not modify): the same list object until a node's facts change."""
        if self.snapshot_ttl <= 0:
            return [_node_facts(n) for n in self._raw(self._node_request({}))["items"]]
        return self._nodes.snapshot()

    def pods(self, namespace: str, selector: str) -> list[Manifest]:
        """The pods of a label selector in a namespace, as JSON."""
        response = self.core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False, **self.timeout
        )
        return list(self._raw(response)["items"])

    def device_pods(self) -> list[Manifest]:
        """Pods bound to a node that still hold resources (not Succeeded/Failed), in every namespace."""
        if self.snapshot_ttl <= 0:
            items = self._raw(self._pod_request({}))["items"]
            return [facts for p in items if (facts := _pod_facts(p)) is not None]
        return self._pods.snapshot()

    def backend_runtimes(self) -> list[Manifest]:
        def load() -> Any:
            try:
                raw: Any = self.custom.list_cluster_custom_object(
                    API_GROUP, API_VERSION, "backendruntimes", **self.timeout
                )
            except ApiException as exc:
                if exc.status == 404:
                    return []
                raise
            return raw["items"]

        runtimes: list[Manifest] = self._cached("runtimes", load)
        return runtimes

    def model_deployments(self, namespaces: tuple[str, ...] = ()) -> list[Manifest]:
        """Every ModelDeployment in the namespaces (all namespaces when none are given)."""
        if not namespaces:
            raw: Any = self.custom.list_cluster_custom_object(
                API_GROUP, API_VERSION, "modeldeployments", **self.timeout
            )
            return list(raw["items"])
        found: list[Manifest] = []
        for ns in namespaces:
            raw = self.custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION, ns, "modeldeployments", **self.timeout
            )
            found += raw["items"]
        return found

    def owned(self, namespace: str, md_name: str) -> list[Manifest]:
        """Objects labelled as rendered for this ModelDeployment: one list per kind the cluster serves, side by side
        (a reconcile waits for one round trip, not for one per kind)."""
        return self.labelled(f"{LABEL_DEPLOYMENT}={md_name}", namespace)

    def labelled(self, selector: str, namespace: str | None = None) -> list[Manifest]:
        """Objects of the kinds the operator renders that match a label selector, in the namespace (every
        namespace when None): one list per kind the cluster serves, side by side."""
        served = [(key, r) for key in OWNED_KINDS if (r := self._resource(*key)) is not None]
        lists = [
            (key, _READS.submit(resource.get, namespace=namespace, label_selector=selector, **self.timeout))
            for key, resource in served
        ]
        found: list[Manifest] = []
        for key, listed in lists:
            try:
                items = listed.result().items
            except ApiException as exc:
                if exc.status != 404:
                    raise
                # The kind's CRD was removed since discovery: unserved now (asked again later), nothing of it.
                with self._discovery_lock:
                    self._resources[key] = (None, time.monotonic())
                continue
            found += [item.to_dict() for item in items]
        return found

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Manifest | None:
        """The live object as JSON (camelCase, like apply's answer), or None when it does not exist."""
        try:
            resource = self._resource(api_version, kind)
            found: Manifest = resource.get(name=name, namespace=namespace, **self.timeout).to_dict()
            return found
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def identity(self) -> str:
        """The cluster's identity: its kube-system namespace's uid (what cluster-api and Karmada's cluster ID use),
        read once."""
        if self._identity is None:
            found = self.get("v1", "Namespace", "kube-system", None)
            if found is None:
                raise LookupError(f"cluster {self.name} has no kube-system namespace to be identified by")
            self._identity = str(found["metadata"]["uid"])
        return self._identity

    def namespace_terminating(self, namespace: str) -> bool:
        found = self.get("v1", "Namespace", namespace, None)
        return found is None or (found.get("status") or {}).get("phase") == "Terminating"

    # --- act -------------------------------------------------------------------------------------------

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        # The dynamic client's discovery cache is not thread-safe: a lookup that misses (an unserved kind)
        # re-runs discovery, and a second reconcile thread doing the same saw a half-built cache.
        with self._discovery_lock:
            found = self._resources.get(key)
            # An unserved kind is asked again after a while: its CRD may be installed after the operator
            # started (a PodMonitor's or InferencePool's), and its objects are then rendered there too.
            if found is None or (found[0] is None and time.monotonic() - found[1] > self.UNSERVED_RECHECK_SECONDS):
                if self._dynamic is None:
                    self._dynamic = DynamicClient(self.api)  # type: ignore[no-untyped-call]
                try:
                    resource = self._dynamic.resources.get(api_version=api_version, kind=kind)
                except ResourceNotFoundError:
                    resource = None
                found = self._resources[key] = (resource, time.monotonic())
            return found[0]

    def has_kind(self, api_version: str, kind: str) -> bool:
        return self._resource(api_version, kind) is not None

    def _served(self, obj: Mapping[str, Any]) -> Any:
        """The object's resource on this cluster; LookupError when the cluster does not serve its kind."""
        resource = self._resource(obj["apiVersion"], obj["kind"])
        if resource is None:
            raise LookupError(f"{obj['apiVersion']} {obj['kind']} is not served by cluster {self.name}")
        return resource

    def apply(self, obj: Manifest) -> Manifest:
        """Server-side apply as field manager `autoglm`; it takes ownership of the fields it renders."""
        resource = self._served(obj)
        meta = obj["metadata"]
        result = resource.server_side_apply(
            body=obj,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            **self.timeout,
        )
        return dict(result.to_dict())

    def merge_patch(self, obj: Mapping[str, Any], patch: Manifest) -> Manifest:
        """A JSON merge patch of the object: only the fields `patch` names change, whoever else owns the rest."""
        resource = self._served(obj)
        meta = obj["metadata"]
        result = resource.patch(
            body=patch,
            name=meta["name"],
            namespace=meta.get("namespace"),
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
            **self.timeout,
        )
        return dict(result.to_dict())

    def ensure(self, obj: Manifest) -> bool:
        """Create the object if it does not exist; never change one that does. True when created.

        What was found or created is remembered for `ensure_ttl` seconds: every deployment of a namespace
        ensures the same model-cache claim before its applies, and a GET of an object known to exist would
        otherwise be one more round trip on every create. One deleted meanwhile is created again after that."""
        key = _key(obj)
        with self._lock:
            seen = self._ensured.get(key)
            if seen is not None and time.monotonic() - seen[0] < self.ensure_ttl:
                return False
        meta = obj["metadata"]
        found = self.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        self.remember(found if found is not None else self.apply(obj))
        return found is None

    def remember(self, live: Manifest) -> None:
        """Take `live` as the object `ensure` found (an object changed since, by this client, is so again)."""
        with self._lock:
            self._ensured[_key(live)] = (time.monotonic(), live)

    def forget(self, obj: Mapping[str, Any]) -> None:
        """The next `ensure` of the object reads it again."""
        with self._lock:
            self._ensured.pop(_key(obj), None)

    def ensured(self, obj: Mapping[str, Any]) -> Manifest | None:
        """The object as `ensure` last found or made it (None when it has not, or forgot it)."""
        with self._lock:
            seen = self._ensured.get(_key(obj))
        return seen[1] if seen is not None else None

    def create(self, obj: Manifest) -> bool:
        """Create the object; one that exists already is left as it is. True when created."""
        resource = self._served(obj)
        try:
            resource.create(body=obj, namespace=obj["metadata"].get("namespace"), **self.timeout)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete(self, obj: Mapping[str, Any], exact: bool = False) -> bool:
        """Delete the object (its dependents in the background); False when it was not there. With `exact`, only
        the very object given (a uid precondition): one made again under the same name meanwhile stays."""
        resource = self._resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        self.forget(obj)
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if exact:
            options["preconditions"] = {"uid": meta["uid"]}
        try:
            resource.delete(name=meta["name"], namespace=meta.get("namespace"), body=options, **self.timeout)
        except ApiException as exc:
            if exc.status == 404 or (exact and exc.status == 409):
                return False
            raise
        return True

    def write_status(self, body: Mapping[str, Any], status: Manifest) -> Manifest:
        """Replace a ModelDeployment's whole status, on the condition that the object is still the version
        `body` was read at (a 409 otherwise: someone wrote since, so the caller reads again and recomputes).
        Nobody's fields are lost: a status computed from an older read never lands. Returns the object as the
        server now has it."""
        meta = body["metadata"]
        doc = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "ModelDeployment",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "status": status,
        }
        written: Any = self.custom.replace_namespaced_custom_object_status(
            API_GROUP, API_VERSION, meta["namespace"], "modeldeployments", meta["name"], doc, **self.timeout
        )
        return dict(written)

    def model_deployment(self, namespace: str, name: str) -> Manifest | None:
        """One ModelDeployment as the server has it now; None when it does not exist."""
        try:
            found: Any = self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, "modeldeployments", name, **self.timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found)

    def patch_member_status(self, name: str, status: Manifest) -> None:
        self.custom.patch_cluster_custom_object_status(
            API_GROUP, API_VERSION, "memberclusters", name, {"status": status}, **self.timeout
        )

    def patch_runtime_status(self, name: str, status: Manifest) -> None:
        self.custom.patch_cluster_custom_object_status(
            API_GROUP, API_VERSION, "backendruntimes", name, {"status": status}, **self.timeout
        )

    def member_clusters(self) -> list[Manifest]:
        raw: Any = self.custom.list_cluster_custom_object(API_GROUP, API_VERSION, "memberclusters", **self.timeout)
        return list(raw["items"])

    def add_finalizer(self, namespace: str, name: str, finalizer: str) -> Manifest | None:
        """Add one finalizer to a ModelDeployment; returns the object as the server then has it (None when it is
        gone). Raises FinalizerNotUpdated when the edit kept conflicting."""
        return self._edit_finalizers(namespace, name, lambda have: have if finalizer in have else [*have, finalizer])

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> Manifest | None:
        return self._edit_finalizers(namespace, name, lambda have: [f for f in have if f != finalizer])

    def _edit_finalizers(
        self, namespace: str, name: str, change: Callable[[list[str]], list[str]], attempts: int = 10
    ) -> Manifest | None:
        """Read, change and write the finalizers on the condition that nothing else changed them meanwhile
        (a resourceVersion precondition), again on each conflict, with a short growing pause between tries."""
        for attempt in range(attempts):
            body = self.model_deployment(namespace, name)
            if body is None:
                return None
            have = list(body["metadata"].get("finalizers") or [])
            want = change(have)
            if want == have:
                return body
            patch = {"metadata": {"finalizers": want, "resourceVersion": body["metadata"]["resourceVersion"]}}
            try:
                written: Any = self.custom.patch_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, "modeldeployments", name, patch, **self.timeout
                )
                return dict(written)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409:
                    raise
            logger.debug("the finalizers of %s/%s changed meanwhile; again (attempt %d)", namespace, name, attempt + 1)
            time.sleep(min(1.0, 0.05 * 2**attempt))
        raise FinalizerNotUpdated(f"the finalizers of {namespace}/{name} kept changing under {attempts} attempts")

    def event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the object, as `kubectl describe` shows them (cluster-scoped: in default).

        Posted in the background, as client-go's event recorder does: an Event is for people, and a reconcile
        must not wait for it. One that cannot be posted is logged and dropped, never retried forever."""
        try:
            self._events.put_nowait((dict(involved), type_, reason, message))
        except queue.Full:
            name = involved["metadata"].get("name")
            logger.warning("event %s on %s dropped: %d are waiting", reason, name, EVENT_QUEUE)
            return
        with self._lock:
            if self._event_thread is None:
                self._event_thread = threading.Thread(target=self._post_events, name=f"events-{self.name}", daemon=True)
                self._event_thread.start()

    def flush_events(self, timeout: float = 10.0) -> None:
        """Wait until every Event asked for so far was posted (or dropped)."""
        deadline = time.monotonic() + timeout
        while self._events.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def _post_events(self) -> None:
        while True:
            try:
                involved, type_, reason, message = self._events.get(timeout=60)
            except queue.Empty:
                with self._lock:  # idle: stop, unless an event came meanwhile; the next event starts a thread
                    if self._events.empty():
                        self._event_thread = None
                        return
                continue
            try:
                self._post_event(involved, type_, reason, message)
            except Exception as exc:
                logger.warning("event %s on %s not posted: %s", reason, involved["metadata"].get("name"), exc)
            finally:
                self._events.task_done()

    def _post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC)
        body: Any = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "autoglm-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "autoglm-operator",
        }
        self.core.create_namespaced_event(namespace, body, **self.timeout)


class FinalizerNotUpdated(RuntimeError):
    """A finalizer edit that kept meeting conflicting writes: nothing was changed; the reconcile is retried."""


def service_endpoint(objects: Iterable[Mapping[str, Any]], on_host: bool) -> str | None:
    """Where the gateway reaches a member's serving Service (the deployment's one, not a headless group's):
    a LoadBalancer's first ingress address, else, on the host cluster (where the gateway runs), its cluster DNS
    name; None when it cannot be reached from outside the member yet."""
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj.get("kind") != "Service" or spec.get("clusterIP") == "None":
            continue
        port = next((p.get("port") for p in spec.get("ports") or [] if p.get("name") == "http"), None)
        if port is None:
            continue
        ingress = (((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [{}])[0]
        address = ingress.get("ip") or ingress.get("hostname")
        if spec.get("type") == "LoadBalancer" and address:
            return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"
        if on_host:
            meta = obj.get("metadata") or {}
            return f"http://{meta.get('name')}.{meta.get('namespace')}.svc:{port}"
    return None


def ready_replicas(objects: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(ready, desired) replica groups: Deployment pods, or StatefulSets whose every pod is ready."""
    ready = desired = 0
    for obj in objects:
        status = obj.get("status") or {}
        spec = obj.get("spec") or {}
        if obj.get("kind") == "Deployment":
            desired += spec.get("replicas") or 0
            ready += status.get("readyReplicas") or 0
        elif obj.get("kind") == "StatefulSet":
            desired += 1
            wanted = spec.get("replicas") or 0
            if wanted and (status.get("readyReplicas") or 0) >= wanted:
                ready += 1
    return ready, desired


def install_crds(api: client.ApiClient) -> None:
    """Create the autoglm.io CRDs (existing ones are left alone); wait until served."""
    from autoglm.api import RESOURCES
    from autoglm.api.crd import crd_manifest

    ext = client.ApiextensionsV1Api(api)
    for body in [crd_manifest(r) for r in RESOURCES]:
        try:
            ext.create_custom_resource_definition(body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        raw: Any = ext.list_custom_resource_definition(_preload_content=False)
        items = json.loads(raw.data)["items"]
        crds = [c for c in items if c["spec"]["group"] == API_GROUP]
        if len(crds) == len(RESOURCES) and all(
            any(
                x["type"] == "Established" and x["status"] == "True"
                for x in (c.get("status") or {}).get("conditions") or []
            )
            for c in crds
        ):
            return
        time.sleep(0.2)


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])
