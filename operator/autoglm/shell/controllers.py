"""kopf handlers: thin adapters from watch events to the Reconciler. No decisions here.

`build_registry(context)` returns a registry for `kopf.operator`, so handlers close over an explicit
context (clients, caches, metrics) instead of module globals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client import ApiException

from autoglm import API_GROUP, API_VERSION
from autoglm.core.backends import load_default_catalog
from autoglm.core.forecast.decision import forecast_enabled
from autoglm.core.hardware import load_accelerator_table
from autoglm.shell.clusters import CONNECTIONS, ClusterClient
from autoglm.shell.inventories import InventoryCache
from autoglm.shell.karmada import KarmadaMembers
from autoglm.shell.kubeconfig import client_configuration
from autoglm.shell.members import MemberRegistry, MemberSource
from autoglm.shell.metrics import OperatorMetrics
from autoglm.shell.reconciler import PROPAGATION_FINALIZER, MemberUnavailable, Outcome, Reconciler

MD = (API_GROUP, API_VERSION, "modeldeployments")
RUNTIMES = (API_GROUP, API_VERSION, "backendruntimes")
MEMBERS = (API_GROUP, API_VERSION, "memberclusters")
KARMADA_CLUSTERS = ("cluster.karmada.io", "v1alpha1", "clusters")
MAX_BACKOFF = 300.0
logger = logging.getLogger(__name__)


@dataclass
class OperatorContext:
    """What every handler needs; built once per process from one kubeconfig (or the pod's service account)."""

    reconciler: Reconciler
    metrics: OperatorMetrics
    configuration: client.Configuration
    resync_seconds: float = 30.0
    namespaces: tuple[str, ...] = ()
    catalog_changed: threading.Event = field(default_factory=threading.Event)
    heartbeat_seconds: float = 10.0
    members_changed: threading.Event = field(default_factory=threading.Event)
    members_dirty: threading.Event = field(default_factory=threading.Event)
    prometheus_url: str | None = None
    forecast_seconds: float = 60.0
    scaler: Any = None  # autoglm.shell.scaler.ForecastScaler, made when a deployment first asks for one
    _locks: tuple[threading.Lock, ...] = field(default_factory=lambda: tuple(threading.Lock() for _ in range(64)))
    _deferred_failures: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reconciler.on_deferred = self.deferred_landed

    def deferred_landed(self, body: Mapping[str, Any], ok: bool) -> None:
        """A reconcile's deferred applies (its Service, HPA, ...) have landed. One failed: reconcile the deployment
        again after a backoff, doubling while it keeps failing, as kopf retries a handler that raised."""
        meta = body["metadata"]
        key = (meta.get("namespace") or "", meta.get("name") or "")
        if ok:
            self._deferred_failures.pop(key, None)
            return
        failures = self._deferred_failures[key] = self._deferred_failures.get(key, 0) + 1
        self.metrics.errors.inc()
        delay = min(MAX_BACKOFF, 2.0**failures)
        timer = threading.Timer(delay, self._reconcile_outside_kopf, args=(body, failures, "retry"))
        timer.daemon = True
        timer.start()

    def _reconcile_outside_kopf(self, body: Mapping[str, Any], retry: int, what: str) -> None:
        """A fresh reconcile from the operator's own loops, where no kopf retries a failure: said, never raised."""
        meta = body["metadata"]
        try:
            self.reconcile(body, retry, fresh=True)
        except kopf.TemporaryError as exc:
            logger.warning("%s of %s/%s: %s", what, meta.get("namespace"), meta.get("name"), exc)
        except Exception:
            # A bug must not stop every later pass: say so loudly and go on.
            logger.exception("%s of %s/%s failed", what, meta.get("namespace"), meta.get("name"))

    @property
    def members(self) -> MemberSource:
        assert self.reconciler.members is not None
        return self.reconciler.members

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: str | None,
        cluster: str = "local",
        resync_seconds: float = 30.0,
        metrics: OperatorMetrics | None = None,
        include_local: bool = True,
        heartbeat_seconds: float = 10.0,
        failure_threshold: int = 3,
        karmada: bool = False,
    ) -> OperatorContext:
        """Direct mode: the kubeconfig's cluster is the host (member local unless not include_local) and
        MemberClusters name the others. Karmada mode: the kubeconfig is a Karmada API server; its Clusters
        are the members."""
        cfg = client_configuration(kubeconfig)
        cfg.connection_pool_maxsize = CONNECTIONS
        host = ClusterClient(cluster, client.ApiClient(cfg))
        inventories = InventoryCache(load_accelerator_table())  # one per process: heartbeats and reconciles
        members: MemberSource = (
            KarmadaMembers(host)
            if karmada
            else MemberRegistry(
                host, include_local=include_local, failure_threshold=failure_threshold, inventories=inventories
            )
        )
        return cls(
            Reconciler(
                host,
                load_default_catalog(),
                members,
                karmada=karmada,
                accelerators=inventories.table,
                inventories=inventories,
            ),
            metrics or OperatorMetrics(),
            cfg,
            resync_seconds,
            heartbeat_seconds=heartbeat_seconds,
        )

    def connection(self) -> kopf.ConnectionInfo:
        cfg = self.configuration
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        return kopf.ConnectionInfo(
            server=cfg.host,
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
            token=token.removeprefix("Bearer ").strip() if token else None,
            scheme="Bearer" if token else None,
        )

    def resync_loop(self, stop: threading.Event, poll_seconds: float = 5.0) -> None:
        """Reconcile every watched deployment once per pass, one at a time; a reconcile writes only when
        something moved.

        A pass runs every `resync_seconds`, and early when the BackendRuntimes changed (within
        `poll_seconds`) or the nodes' accelerator capacity changed and then held for a poll. Heartbeats do not count:
        only labels, taints, schedulability, capacity and allocatable are compared. One loop, not a kopf
        timer per object, keeps memory flat and leaves the workers to new and changed deployments.
        """
        last_pass = time.monotonic()
        fingerprint = previous = self._fingerprint()
        while not stop.wait(min(poll_seconds, self.resync_seconds)):
            current = self._fingerprint()
            due = time.monotonic() - last_pass >= self.resync_seconds
            members = self.members_changed.is_set()
            # A capacity change passes early once it has settled (the same at two polls in a row): a thousand
            # nodes relabelled one by one over minutes make one pass at the end, not one every poll.
            settled = current != fingerprint and current == previous
            previous = current
            if not (due or settled or self.catalog_changed.is_set() or members):
                continue
            if current != fingerprint:
                self.metrics.inventory_changes.labels("node").inc()
            if members:
                self.metrics.inventory_changes.labels("member").inc()
            fingerprint, last_pass = current, time.monotonic()
            self.catalog_changed.clear()
            self.members_changed.clear()
            for body in self.reconciler.cluster.model_deployments(self.namespaces):
                if stop.is_set():
                    return
                self._reconcile_outside_kopf(body, 0, "resync")

    def _fingerprint(self) -> int:
        """The capacity of every connected member (heartbeats ignored)."""
        parts = []
        for name in self.members.names():
            member = self.members.client(name)
            if member is not None:
                try:
                    parts.append((name, capacity_fingerprint(member.nodes())))
                except Exception as exc:
                    parts.append((name, hash(type(exc).__name__)))
        return hash(tuple(parts))

    def member_loop(self, stop: threading.Event) -> None:
        """Heartbeat every member every `heartbeat_seconds` (sooner when a MemberCluster changed); a change of
        readiness or capacity, or a member not settled (NotReady, or back within its rebalance window), makes
        the resync loop re-place every deployment, so failover and rebalance happen without other events."""
        while not stop.is_set():
            try:
                changed = self.members.heartbeat()
            except ApiException as exc:
                logger.warning("member heartbeat: host API error %s %s", exc.status, exc.reason)
                changed = False
            views = self.members.views()
            if changed or any(not v.ready or v.recovered for v in views):
                self.members_changed.set()
            self.members_dirty.wait(self.heartbeat_seconds)
            self.members_dirty.clear()

    def forecast_loop(self, stop: threading.Event) -> None:
        """Every `forecast_seconds`, one forecast tick for each deployment with forecasting on. numpy and
        scikit-learn load with the first such deployment, never for an operator that has none.

        Ticks fall a quarter interval after the clock's multiples of the interval (15 s past the minute by
        default): just after each step's sample lands, whatever the time the loop started or a tick took."""
        while not stop.wait(self._until_next_tick(time.time())):
            for body in self.reconciler.cluster.model_deployments(self.namespaces):
                if stop.is_set():
                    return
                if not forecast_enabled(body):
                    if self.scaler is not None:
                        self.scaler.forget(f"{body['metadata'].get('namespace')}/{body['metadata']['name']}")
                    continue
                try:
                    self.forecast_once(body)
                except ApiException as exc:
                    logger.warning("forecast of %s: API error %s %s", body["metadata"]["name"], exc.status, exc.reason)
                except Exception:
                    logger.exception("forecast of %s failed", body["metadata"]["name"])

    def _until_next_tick(self, now: float) -> float:
        interval = self.forecast_seconds
        phase = interval / 4
        due = math.floor((now - phase) / interval) * interval + interval + phase
        return max(0.0, due - now)

    def forecast_once(self, body: Any) -> Any:
        """One tick for one deployment, under its lock, from a fresh read: status.forecast, the Forecasting
        condition, an Event when the floor moves, and then a reconcile that places and applies the new floor."""
        from autoglm.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
        from autoglm.shell.prometheus import PrometheusReader
        from autoglm.shell.scaler import ForecastScaler, forecast_status_patch

        if self.scaler is None:
            self.scaler = ForecastScaler(PrometheusReader(self.prometheus_url) if self.prometheus_url else None)
        cluster = self.reconciler.cluster
        with self.object_lock(body):
            meta = body["metadata"]
            body = self._live(body)
            if body is None:
                return None
            md = ModelDeployment.model_validate({k: v for k, v in body.items() if k != "status"})
            status = ModelDeploymentStatus.model_validate(body.get("status") or {})
            tick = self.scaler.tick(md, status.backend, status.forecast, status.replicas, self._cold_starts(md))
            patch = forecast_status_patch(status, tick, body["metadata"].get("generation"), self.reconciler.clock())
            cluster.patch_status(meta["namespace"], meta["name"], patch)
            if tick.event is not None:
                cluster.event(body, *tick.event)
            if tick.floor_moved:
                self._reconcile({**body, "status": {**(body.get("status") or {}), **patch}}, 0)
            return tick

    def _cold_starts(self, md: Any) -> list[float]:
        """The deployment's pods' creation -> Ready times, in every member that answers."""
        from autoglm.core.forecast.decision import cold_starts
        from autoglm.core.render import LABEL_DEPLOYMENT

        pods: list[dict[str, Any]] = []
        for name in self.members.names():
            member = self.members.client(name)
            if member is None:
                continue
            try:
                pods += member.pods(md.metadata.namespace or "default", f"{LABEL_DEPLOYMENT}={md.metadata.name}")
            except ApiException as exc:
                logger.info("cold starts from %s: API error %s", name, exc.status)
        return cold_starts(pods)

    def object_lock(self, body: Any) -> threading.Lock:
        """The lock of one ModelDeployment: kopf runs one handler per object at a time, but the resync loop
        runs beside kopf, and a resync reconcile of a deployment that is being deleted would put back on the
        members what the deletion just removed, for nobody to remove again. Striped: bounded memory."""
        meta = body["metadata"]
        return self._locks[hash((meta.get("namespace"), meta.get("name"))) % len(self._locks)]

    def reconcile(self, body: Any, retry: int, fresh: bool = False) -> Outcome | None:
        """One reconcile under the object's lock. With `fresh` (the resync loop, whose list may be older than
        a deletion), the object is read again first; None when it is gone or going (its deletion is handled
        by the deletion handlers)."""
        with self.object_lock(body):
            if fresh:
                body = self._live(body)
                if body is None:
                    return None
            return self._reconcile(body, retry)

    def _live(self, body: Any) -> Any:
        """The deployment read again; None when it is gone or being deleted."""
        meta = body["metadata"]
        live = self.reconciler.cluster.get(
            f"{API_GROUP}/{API_VERSION}", "ModelDeployment", meta["name"], meta["namespace"]
        )
        return None if live is None or live["metadata"].get("deletionTimestamp") else live

    def _reconcile(self, body: Any, retry: int) -> Outcome:
        start = time.perf_counter()
        try:
            outcome = self.reconciler.reconcile(dict(body))
        except MemberUnavailable as exc:
            raise kopf.TemporaryError(f"waiting for a member to clean up: {exc}", delay=10) from exc
        except ApiException as exc:
            self.metrics.errors.inc()
            # Exponential backoff on API trouble; an invalid or unplaceable spec never lands here.
            raise kopf.TemporaryError(
                f"API error {exc.status}: {exc.reason}", delay=min(MAX_BACKOFF, 2.0**retry)
            ) from exc
        finally:
            self.metrics.duration.observe(time.perf_counter() - start)
        plan = outcome.plan
        if outcome.invalid or plan is None or not plan.feasible:
            self.metrics.reconciles.labels("not-placed").inc()
            if outcome.status_written:
                self.metrics.plan_failures.inc()
        else:
            self.metrics.reconciles.labels("placed").inc()
            primary = plan.primary
            if outcome.status_written and primary is not None:
                self.metrics.plans.labels(primary.backend, primary.precision.value).inc()
        return outcome


def capacity_fingerprint(nodes: list[dict[str, Any]]) -> int:
    """Changes when anything the planner reads of the nodes changes; not on heartbeats."""
    facts = [
        (
            n["metadata"].get("name"),
            tuple(sorted((n["metadata"].get("labels") or {}).items())),
            repr(n.get("spec")),
            tuple(sorted(((n.get("status") or {}).get("allocatable") or {}).items())),
            tuple(sorted(((n.get("status") or {}).get("capacity") or {}).items())),
            any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            ),
        )
        for n in nodes
    ]
    return hash(tuple(sorted(facts, key=lambda f: f[0] or "")))


def build_registry(context: OperatorContext) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # State lives in the API server (annotations), never only in memory: restarts lose nothing.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="autoglm.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="autoglm.io", key="last-handled-configuration"
        )
        settings.persistence.finalizer = "autoglm.io/release-artifacts"
        settings.posting.level = 100  # our own Events say what happened; kopf's per-handler ones are noise
        # Reconciles mostly wait on API servers; the slowest writes (a Service's ClusterIP) land after the
        # handler returns (reconciler.DEFERRED_KINDS). Eight workers at 0.5 s each had kept up with 16 creates a
        # second, so a burst of 20 a second queued behind them.
        settings.execution.max_workers = 16

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return context.connection()

    @kopf.on.create(*MD, registry=registry)
    @kopf.on.update(*MD, registry=registry)
    @kopf.on.resume(*MD, registry=registry)
    def reconcile_spec(body: kopf.Body, retry: int, **_: Any) -> None:
        context.reconcile(body, retry)

    # A finalizer only where deletion must clean something ownerReferences cannot: shared artifacts.
    @kopf.on.delete(*MD, registry=registry, when=lambda status, **_: bool((status or {}).get("artifacts")))
    def release_artifacts(body: kopf.Body, **_: Any) -> None:
        released = context.reconciler.release(dict(body))
        if released:
            logger.info("released conversion artifacts %s", ", ".join(released))

    stop = threading.Event()

    @kopf.on.startup(registry=registry)
    def start_resync(**_: Any) -> None:
        # Members are known before the first reconcile: placement with none would call everything unplaceable.
        context.members.heartbeat()
        threading.Thread(target=context.member_loop, args=(stop,), name="autoglm-members", daemon=True).start()
        threading.Thread(target=context.resync_loop, args=(stop,), name="autoglm-resync", daemon=True).start()
        threading.Thread(target=context.forecast_loop, args=(stop,), name="autoglm-forecast", daemon=True).start()

    @kopf.on.cleanup(registry=registry)
    def stop_resync(**_: Any) -> None:
        stop.set()
        context.members_dirty.set()

    @kopf.on.event(*MEMBERS, registry=registry)
    def member_changed(**_: Any) -> None:
        context.members_dirty.set()

    if context.reconciler.karmada:

        @kopf.on.event(*KARMADA_CLUSTERS, registry=registry)
        def karmada_cluster_changed(**_: Any) -> None:
            context.members_dirty.set()

    # Objects on other members cannot be garbage-collected by ownerReferences: the reconciler holds the
    # propagation finalizer while it has any there, and removes them (and it) when the deployment goes.
    @kopf.on.event(
        *MD,
        registry=registry,
        when=lambda body, **_: (
            bool(body.get("metadata", {}).get("deletionTimestamp"))
            and PROPAGATION_FINALIZER in (body.get("metadata", {}).get("finalizers") or [])
        ),
    )
    def propagation_cleanup(body: kopf.Body, **_: Any) -> None:
        try:
            with context.object_lock(body):
                removed = context.reconciler.finalize(dict(body))
        except MemberUnavailable as exc:
            logger.info("deletion of %s waits: %s", body.get("metadata", {}).get("name"), exc)
            return
        if removed:
            logger.info("removed from members: %s", ", ".join(removed))

    @kopf.on.event(*RUNTIMES, registry=registry)
    def runtime_changed(**_: Any) -> None:
        context.reconciler.cluster.invalidate()
        context.catalog_changed.set()
        context.metrics.inventory_changes.labels("backendruntime").inc()

    return registry


@contextmanager
def operator_thread(context: OperatorContext, namespace: str | None = None) -> Iterator[None]:
    """The operator in a background thread (standalone), for the demo, tests and e2e; stopped on exit."""
    stop, ready = threading.Event(), threading.Event()
    context.namespaces = (namespace,) if namespace else ()

    def main() -> None:
        asyncio.run(
            kopf.operator(
                registry=build_registry(context),
                standalone=True,
                clusterwide=namespace is None,
                namespaces=[namespace] if namespace else [],
                stop_flag=stop,
                ready_flag=ready,
            )
        )

    thread = threading.Thread(target=main, name="autoglm-operator", daemon=True)
    thread.start()
    if not ready.wait(30):
        stop.set()
        raise RuntimeError("the operator did not start within 30 s")
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
