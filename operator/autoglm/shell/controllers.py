"""The operator's one reconcile path: every reason to reconcile a ModelDeployment puts its key on one work queue, and
workers take keys off it and reconcile them (controller-runtime's model).

Sources only enqueue: kopf's watch events (a new object, a changed spec, labels or annotations, a deletion; a
status-only change, which is the operator's own write, is not a reason), the periodic resync, a member's readiness
or capacity changing (devices in use: only the deployments waiting for room), a failover or rebalance window
ending (a requeue-after), the BackendRuntimes or the nodes' accelerators changing, a forecast tick falling due, a
deferred apply that failed, a retry after an error. The queue collapses a key queued twice, never hands one key
to two workers (one object's reconciles are serialized; unrelated objects never wait on each other), and brings
failures back after an exponential backoff with jitter.

A worker reads the object from the store (shell.store: the newest version the watch or the operator's own writes
have shown), runs the due forecast tick, then the Reconciler, and decides what happens to the key: forgotten on
success, retried with backoff on an error (a bug's traceback goes to the log and a ReconcileError to the
status), requeued while a deletion waits for a member (with an Event each time).

BackendRuntimes go through the same queue: each is checked against the API's own rules and gets a Valid
condition, and a Warning Event naming the field when it is rejected.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import kopf
from kubernetes import client
from kubernetes.client import ApiException
from pydantic import ValidationError

from autoglm import API_GROUP, API_VERSION
from autoglm.api import BackendRuntime
from autoglm.api.common import ConditionStatus, validation_message
from autoglm.api.modeldeployment import ModelDeploymentStatus
from autoglm.core.backends import load_default_catalog
from autoglm.core.forecast.decision import forecast_enabled
from autoglm.core.hardware import load_accelerator_table
from autoglm.core.images import Images
from autoglm.core.orphans import orphans, strays
from autoglm.core.render import LABEL_DEPLOYMENT, LABEL_HOST, LABEL_OWNER_UID
from autoglm.core.status import DEGRADED, condition_events, set_condition, waits_for_capacity
from autoglm.shell.clusters import CONNECTIONS, ClusterClient, FinalizerNotUpdated
from autoglm.shell.inventories import InventoryCache
from autoglm.shell.karmada import KarmadaMembers
from autoglm.shell.kubeconfig import (
    DEFAULT_API_TIMEOUT,
    DEFAULT_MEMBER_TIMEOUT,
    BoundedApiClient,
    client_configuration,
)
from autoglm.shell.members import LOCAL, MemberChange, MemberRegistry, MembersNotListed, MemberSource
from autoglm.shell.metrics import OperatorMetrics
from autoglm.shell.problems import UNREACHABLE, short_reason
from autoglm.shell.reconcile import DeferredApplyStuck, ObjectGone, Outcome, Reconciler
from autoglm.shell.store import ObjectStore, key_of
from autoglm.shell.workqueue import DEFAULT_WORKERS, LOW, NORMAL, WorkQueue

MD = (API_GROUP, API_VERSION, "modeldeployments")
RUNTIMES = (API_GROUP, API_VERSION, "backendruntimes")
MEMBERS = (API_GROUP, API_VERSION, "memberclusters")
KARMADA_CLUSTERS = ("cluster.karmada.io", "v1alpha1", "clusters")
REQUEUE_MARGIN_SECONDS = 1.0
# How long a stopping process waits for its own writes to end (controller-runtime's graceful shutdown timeout).
STOP_GRACE_SECONDS = 30.0
DEPLOYMENT, RUNTIME = "ModelDeployment", "BackendRuntime"
VALID = "Valid"
# Failures that are not bugs: an API server that refused or could not be reached, a finalizer edit that kept
# conflicting. Retried with backoff, said in one line.
RETRYABLE: tuple[type[BaseException], ...] = (FinalizerNotUpdated, DeferredApplyStuck, MembersNotListed, *UNREACHABLE)
logger = logging.getLogger(__name__)


class ObjectKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass
class Processed:
    """What one pass over a key did (for tests and tools that reconcile a key synchronously)."""

    outcome: Outcome | None = None
    tick: Any = None  # autoglm.shell.scaler.Tick, when a forecast tick ran
    waiting: str | None = None  # a deletion that waits for a member: why


@dataclass
class OperatorContext:
    """The operator's controller: its queue, store, workers and the loops that feed it; built once per process."""

    reconciler: Reconciler
    metrics: OperatorMetrics
    configuration: client.Configuration
    resync_seconds: float = 30.0
    namespaces: tuple[str, ...] = ()
    heartbeat_seconds: float = 10.0
    prometheus_url: str | None = None
    prometheus_timeout: float = 10.0
    forecast_seconds: float = 60.0
    orphan_seconds: float = 300.0  # between passes of the orphan collector (0: none)
    workers: int = DEFAULT_WORKERS
    api_timeout: float = DEFAULT_API_TIMEOUT
    user_agent: str | None = None
    scaler: Any = None  # autoglm.shell.scaler.ForecastScaler, made when a deployment first asks for one
    queue: WorkQueue[ObjectKey] = field(default_factory=WorkQueue)
    store: ObjectStore = field(default_factory=ObjectStore)
    catalog_changed: threading.Event = field(default_factory=threading.Event)
    members_changed: threading.Event = field(default_factory=threading.Event)
    members_dirty: threading.Event = field(default_factory=threading.Event)
    usage_changed: threading.Event = field(default_factory=threading.Event)  # only devices in use changed
    _forecast_due: set[ObjectKey] = field(default_factory=set)
    _deferred: set[ObjectKey] = field(default_factory=set)  # keys whose deferred applies are in flight
    _lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)  # the workers and loops start() started

    def __post_init__(self) -> None:
        self.reconciler.deferred.on_landed = self._deferred_landed
        self.metrics.queue_depth.set_function(self.queue.depth)
        self.queue.on_wait = self.metrics.queue_wait.observe

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
        api_timeout: float = DEFAULT_API_TIMEOUT,
        member_timeout: float = DEFAULT_MEMBER_TIMEOUT,
        user_agent: str | None = None,
        images: Images | None = None,
    ) -> OperatorContext:
        """Direct mode: the kubeconfig's cluster is the host (member local unless not include_local) and
        MemberClusters name the others. Karmada mode: the kubeconfig is a Karmada API server; its Clusters
        are the members. Every call to the host has `api_timeout`, to a member `member_timeout`."""
        cfg = client_configuration(kubeconfig)
        cfg.connection_pool_maxsize = CONNECTIONS
        host = ClusterClient(cluster, BoundedApiClient(cfg, api_timeout, user_agent), request_timeout=api_timeout)
        inventories = InventoryCache(load_accelerator_table())  # one per process: heartbeats and reconciles
        members: MemberSource = (
            KarmadaMembers(host, request_timeout=member_timeout, user_agent=user_agent)
            if karmada
            else MemberRegistry(
                host,
                include_local=include_local,
                failure_threshold=failure_threshold,
                request_timeout=member_timeout,
                inventories=inventories,
                user_agent=user_agent,
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
                apply_timeout=api_timeout,
                images=images or Images(),
            ),
            metrics or OperatorMetrics(),
            cfg,
            resync_seconds,
            heartbeat_seconds=heartbeat_seconds,
            api_timeout=api_timeout,
            user_agent=user_agent,
        )

    def connection(self) -> kopf.ConnectionInfo:
        cfg = self.configuration
        token = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        return IdentifiedConnection(
            server=cfg.host,
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
            token=token.removeprefix("Bearer ").strip() if token else None,
            scheme="Bearer" if token else None,
            user_agent=self.user_agent,
        )

    # --- sources: they only enqueue ----------------------------------------------------------------------

    def observe(self, event: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a ModelDeployment: keep the newest version; enqueue when it is new, gone, or its
        spec, labels, annotations or deletion changed (not for status-only writes: those are the operator's)."""
        namespace, name = key_of(body)
        key = ObjectKey(DEPLOYMENT, namespace, name)
        if event == "DELETED":
            self.store.remove((namespace, name), body)
            self.queue.add(key)
            return
        held, kept = self.store.put(body)
        if kept and (held is None or _asks_for_reconcile(held, body)):
            # The initial list (a start, a new leader) is a resync of everything; a change is news.
            self.queue.add(key, LOW if event is None else NORMAL)

    def enqueue_all(self) -> None:
        """Every deployment, behind whatever a change of its own asked for (low priority)."""
        for namespace, name in self.store.known():
            self.queue.add(ObjectKey(DEPLOYMENT, namespace, name), LOW)

    def enqueue_waiting(self) -> None:
        """The deployments that devices in use coming or going may concern (waits_for_capacity), at low
        priority: a burst of pods changes what is free on every heartbeat, and the others are placed in full."""
        for namespace, name in self.store.known():
            body = self.store.get((namespace, name))
            if body is not None and waits_for_capacity(body):
                self.queue.add(ObjectKey(DEPLOYMENT, namespace, name), LOW)

    def runtime_observed(self, name: str) -> None:
        self.reconciler.cluster.invalidate()
        self.catalog_changed.set()
        self.metrics.inventory_changes.labels("backendruntime").inc()
        self.queue.add(ObjectKey(RUNTIME, "", name))

    def _deferred_landed(self, body: Mapping[str, Any], ok: bool) -> None:
        """A reconcile's deferred applies (its Service, HPA, ...) have landed; a failed one is a failed reconcile:
        retried with the queue's backoff."""
        namespace, name = key_of(body)
        key = ObjectKey(DEPLOYMENT, namespace, name)
        with self._lock:
            self._deferred.discard(key)
        if ok:
            self.queue.forget(key)
            return
        self.metrics.errors.inc()
        self._retry(key)

    # --- the workers -------------------------------------------------------------------------------------

    def worker(self) -> None:
        """Take keys off the queue until it shuts down."""
        while (key := self.queue.get()) is not None:
            try:
                self.handle(key)
            finally:
                self.queue.done(key)

    def handle(self, key: ObjectKey) -> Processed | None:
        """One pass over a key, and what becomes of the key: forgotten, retried with backoff, or requeued."""
        started = time.perf_counter()
        try:
            done = self._runtime(key.name) if key.kind == RUNTIME else self.process(key)
        except ApiException as exc:
            if exc.status == 409:  # written meanwhile: read the object again and recompute
                self._refresh(key)
                self._retry(key)
                logger.info("%s %s: changed while being reconciled; again with its newest version", key.kind, key)
                return None
            if exc.status == 404:  # the object (or something it needs) is gone: what is there now decides
                self._refresh(key)
            self._failed(key, exc)
            return None
        except ObjectGone as exc:  # deleted while being reconciled: no version of it is acted on again
            logger.info("%s %s: %s", key.kind, key, exc)
            self._refresh(key)
            return None
        except RETRYABLE as exc:
            self._failed(key, exc)
            return None
        except Exception as exc:
            # A bug: its traceback in the log, a ReconcileError in the status, and the key retried with backoff.
            logger.exception("%s %s: reconcile failed", key.kind, key)
            self.metrics.errors.inc()
            delay = self._retry(key)
            if key.kind == DEPLOYMENT:
                self._report_error(key, exc, delay)
            return None
        finally:
            self.metrics.duration.observe(time.perf_counter() - started)
        if done is not None and done.waiting:
            delay = self._retry(key)
            body = self.store.get((key.namespace, key.name))
            if body is not None:
                self.reconciler.cluster.event(
                    body, "Warning", "DeletionWaiting", f"{done.waiting}; tried again in {delay:.0f} s"
                )
            return done
        with self._lock:
            pending = key in self._deferred
        if not pending:
            self.queue.forget(key)
        if done is not None and done.outcome is not None and done.outcome.requeue_after is not None:
            # A member's toleration or rebalance window ends then: this deployment's placement changes with no
            # event to say so (a little late rather than early: the window is compared in whole seconds).
            self.queue.add_after(key, done.outcome.requeue_after + REQUEUE_MARGIN_SECONDS)
        return done

    def _retry(self, key: ObjectKey) -> float:
        self.metrics.retries.inc()
        return self.queue.add_rate_limited(key)

    def _failed(self, key: ObjectKey, exc: BaseException) -> None:
        """An API server that refused or could not be reached: said in one line, retried with backoff."""
        self.metrics.errors.inc()
        delay = self._retry(key)
        logger.warning("%s %s: %s; tried again in %.1f s", key.kind, key, short_reason(exc), delay)
        logger.debug("%s %s: the error in full", key.kind, key, exc_info=exc)

    def process(self, key: ObjectKey) -> Processed | None:
        """The due forecast tick, then the reconcile, of the newest version of one ModelDeployment."""
        body = self.store.get((key.namespace, key.name))
        if body is None:
            self._forget(key)
            return None
        with self._lock:
            tick_due = key in self._forecast_due
            self._forecast_due.discard(key)
        done = Processed()
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        if tick_due and forecast_enabled(body) and not deleting:
            done.tick, body = self._tick(body)
            self.store.put(body)
        outcome = self.reconciler.reconcile(body)
        if outcome.body is not None:
            self.store.put(outcome.body)
        if outcome.deferred:
            with self._lock:
                self._deferred.add(key)
        done.outcome, done.waiting = outcome, outcome.waiting
        self._count(outcome)
        return done

    def sync(self, namespace: str, name: str, forecast: bool = False) -> Processed | None:
        """Read one ModelDeployment from the API server and reconcile it now, in this thread (tests and tools;
        the operator's own workers run the same `process`). With `forecast`, its forecast tick runs first."""
        body = self.reconciler.cluster.model_deployment(namespace, name)
        key = ObjectKey(DEPLOYMENT, namespace, name)
        if body is None:
            self.store.remove((namespace, name))
        else:
            self.store.put(body)
        if forecast:
            with self._lock:
                self._forecast_due.add(key)
        return self.process(key)

    def _refresh(self, key: ObjectKey) -> None:
        if key.kind != DEPLOYMENT:
            return
        try:
            body = self.reconciler.cluster.model_deployment(key.namespace, key.name)
        except UNREACHABLE as exc:
            logger.info("%s: not read again: %s", key, short_reason(exc))
            return
        if body is None:
            self.store.remove((key.namespace, key.name))
        else:
            self.store.put(body)

    def _forget(self, key: ObjectKey) -> None:
        """The object is gone: nothing of it stays in memory."""
        self.queue.drop(key)
        with self._lock:
            self._forecast_due.discard(key)
            self._deferred.discard(key)
        self.reconciler.deferred.forget(key.namespace, key.name)
        self.reconciler.strays.forget((key.namespace, key.name))
        if self.scaler is not None:
            self.scaler.forget(str(key))

    def _count(self, outcome: Outcome) -> None:
        plan = outcome.plan
        if outcome.deleting:
            return
        if outcome.invalid or plan is None or not plan.feasible:
            self.metrics.reconciles.labels("not-placed").inc()
            if outcome.status_written:
                self.metrics.plan_failures.inc()
            return
        self.metrics.reconciles.labels("placed").inc()
        primary = plan.primary
        if outcome.status_written and primary is not None:
            self.metrics.plans.labels(primary.backend, primary.precision.value).inc()

    def _report_error(self, key: ObjectKey, exc: BaseException, delay: float) -> None:
        """Degraded=True with reason ReconcileError on the object, and a Warning Event when that is news."""
        body = self.store.get((key.namespace, key.name))
        if body is None:
            return
        message = f"reconcile failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        message = message[:200].rstrip(": ") + f" (see the operator's log; tried again in {delay:.0f} s)"
        try:
            current = ModelDeploymentStatus.model_validate(body.get("status") or {})
        except ValidationError:
            current = ModelDeploymentStatus()
        now = self.reconciler.clock()
        generation = body["metadata"].get("generation")
        conditions = set_condition(
            current.conditions, DEGRADED, ConditionStatus.TRUE, "ReconcileError", message, generation, now
        )
        status = current.model_copy(update={"conditions": conditions})
        try:
            written = self.reconciler.cluster.write_status(
                body, status.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
        except UNREACHABLE as write_error:
            logger.warning("%s: the error not written to its status: %s", key, short_reason(write_error))
            return
        self.store.put(written)
        for type_, reason, text in condition_events(current.conditions, conditions):
            self.reconciler.cluster.event(body, type_, reason, text)

    # --- forecasting ---------------------------------------------------------------------------------------

    def _tick(self, body: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """One forecast tick: status.forecast and the Forecasting condition written (on the condition that the
        object did not change since it was read), an Event when the floor moves. Returns the tick and the object
        as written, which the reconcile that follows places and applies."""
        from autoglm.api.modeldeployment import ModelDeployment
        from autoglm.shell.prometheus import PrometheusReader
        from autoglm.shell.scaler import ForecastScaler, forecast_status

        if self.scaler is None:
            reader = PrometheusReader(self.prometheus_url, self.prometheus_timeout) if self.prometheus_url else None
            self.scaler = ForecastScaler(reader)
        md = ModelDeployment.model_validate({k: v for k, v in body.items() if k != "status"})
        status = ModelDeploymentStatus.model_validate(body.get("status") or {})
        tick = self.scaler.tick(md, status.backend, status.forecast, status.replicas, self._cold_starts(md))
        new = forecast_status(status, tick, body["metadata"].get("generation"), self.reconciler.clock())
        written = self.reconciler.cluster.write_status(body, new)
        if tick.event is not None:
            self.reconciler.cluster.event(body, *tick.event)
        return tick, written

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
            except UNREACHABLE as exc:
                logger.info("cold starts from %s: %s", name, short_reason(exc))
        return cold_starts(pods)

    # --- BackendRuntimes ---------------------------------------------------------------------------------

    def _runtime(self, name: str) -> Processed | None:
        """Check one BackendRuntime against the API's own rules; write its Valid condition when it changed, with
        a Warning Event naming the field and problem when it is rejected."""
        raw = next((r for r in self.reconciler.cluster.backend_runtimes() if r["metadata"]["name"] == name), None)
        if raw is None:
            return None
        try:
            BackendRuntime.model_validate(
                {k: v for k, v in raw.items() if k in ("apiVersion", "kind", "metadata", "spec")}
            )
        except ValidationError as exc:
            verdict = (ConditionStatus.FALSE, "InvalidSpec", validation_message(exc) + "; not offered to any plan")
        else:
            verdict = (ConditionStatus.TRUE, "Accepted", "in the catalog")
        status = raw.get("status") or {}
        conditions = status.get("conditions") or []
        current = next((c for c in conditions if c.get("type") == VALID), None)
        generation = raw["metadata"].get("generation")
        status_, reason, message = verdict
        if (
            current is not None
            and (current.get("status"), current.get("reason"), current.get("message"))
            == (status_.value, reason, message)
            and status.get("observedGeneration") == generation
        ):
            return None
        changed = current is None or current.get("status") != status_.value
        now = self.reconciler.clock().isoformat().replace("+00:00", "Z")
        condition = {
            "type": VALID,
            "status": status_.value,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": now if changed or current is None else current.get("lastTransitionTime", now),
        }
        others = [c for c in conditions if c.get("type") != VALID]
        self.reconciler.cluster.patch_runtime_status(
            name, {"observedGeneration": generation, "conditions": [*others, condition]}
        )
        if status_ is ConditionStatus.FALSE:
            self.reconciler.cluster.event(raw, "Warning", reason, f"BackendRuntime {name}: {message}")
        return None

    # --- the loops that feed the queue -------------------------------------------------------------------

    def resync_loop(self, stop: threading.Event, poll_seconds: float = 5.0) -> None:
        """Enqueue every deployment once per `resync_seconds`, and early when the BackendRuntimes changed
        (within `poll_seconds`), a member's readiness or capacity changed, or the nodes' accelerator capacity
        changed and then held for a poll (a fleet relabelled node by node makes one pass when it is done).
        Heartbeats do not count: only labels, taints, schedulability, capacity and allocatable are compared."""
        last_pass = time.monotonic()
        fingerprint = previous = self._fingerprint()
        while not stop.wait(min(poll_seconds, self.resync_seconds)):
            current = self._fingerprint()
            due = time.monotonic() - last_pass >= self.resync_seconds
            members = self.members_changed.is_set()
            settled = current != fingerprint and current == previous
            previous = current
            if not (due or settled or self.catalog_changed.is_set() or members):
                if self.usage_changed.is_set():
                    self.usage_changed.clear()
                    self.enqueue_waiting()
                continue
            if current != fingerprint:
                self.metrics.inventory_changes.labels("node").inc()
            if members:
                self.metrics.inventory_changes.labels("member").inc()
            fingerprint, last_pass = current, time.monotonic()
            self.catalog_changed.clear()
            self.members_changed.clear()
            self.usage_changed.clear()  # this pass visits the waiting ones too
            self.enqueue_all()

    def _fingerprint(self) -> int:
        """The capacity of every connected member (heartbeats ignored)."""
        parts = []
        for name in self.members.names():
            member = self.members.client(name)
            if member is not None:
                try:
                    parts.append((name, capacity_fingerprint(member.nodes())))
                except UNREACHABLE as exc:
                    parts.append((name, hash(type(exc).__name__)))
        return hash(tuple(parts))

    def member_loop(self, stop: threading.Event) -> None:
        """Heartbeat every member every `heartbeat_seconds` (sooner when a MemberCluster changed). A member joining
        or leaving, or its readiness or device totals changing, makes the resync loop enqueue every deployment;
        devices in use changing, only the deployments waiting for room. A failover toleration or rebalance window
        running out is no heartbeat's news: the reconcile that saw the window asked to run again when it ends."""
        while not stop.is_set():
            try:
                changed = self.members.heartbeat()
            except UNREACHABLE as exc:
                logger.warning("member heartbeat: the host did not answer: %s", short_reason(exc))
                changed = MemberChange.NONE
            if changed is MemberChange.FLEET:
                self.members_changed.set()
            elif changed is MemberChange.USAGE:
                self.usage_changed.set()
            self.members_dirty.wait(self.heartbeat_seconds)
            self.members_dirty.clear()

    def forecast_loop(self, stop: threading.Event) -> None:
        """Every `forecast_seconds`, a forecast tick falls due for each deployment with forecasting on: marked,
        and its key enqueued (the worker runs the tick, then the reconcile). numpy and scikit-learn load with
        the first such deployment, never for an operator that has none.

        Ticks fall a quarter interval after the clock's multiples of the interval (15 s past the minute by
        default): just after each step's sample lands, whatever the time the loop started or a tick took."""
        while not stop.wait(self._until_next_tick(time.time())):
            for namespace, name in self.store.known():
                body = self.store.get((namespace, name))
                key = ObjectKey(DEPLOYMENT, namespace, name)
                if body is None:
                    continue
                if forecast_enabled(body):
                    with self._lock:
                        self._forecast_due.add(key)
                    self.queue.add(key)
                elif self.scaler is not None:
                    self.scaler.forget(str(key))

    def orphan_loop(self, stop: threading.Event) -> None:
        """Every `orphan_seconds`, the objects on members whose owner is gone are removed (collect_orphans)."""
        while not stop.wait(self.orphan_seconds):
            try:
                self.collect_orphans()
            except UNREACHABLE as exc:
                logger.warning("orphans not collected: the host did not answer: %s", short_reason(exc))

    def collect_orphans(self) -> list[str]:
        """Remove from every connected member what this host made there for a ModelDeployment that no longer
        exists (core.orphans); returns them as `member:Kind/namespace/name`. The members are listed before the
        host: an object found there was made for an owner that existed then, so an owner missing from the host's
        list made afterwards is gone, never one not yet seen. Karmada mode: Karmada keeps its members' objects."""
        if self.reconciler.karmada:
            return []
        found: dict[str, tuple[ClusterClient, list[dict[str, Any]]]] = {}
        host = self.reconciler.cluster.identity()
        since = self.queue.now()
        for name in self.members.names():
            member = self.members.client(name)
            if member is None or name == LOCAL:
                continue  # the host's own objects have ownerReferences: its garbage collector removes them
            try:
                found[name] = (member, member.labelled(f"{LABEL_HOST}={host}"))
            except UNREACHABLE as exc:
                logger.info("orphans on %s not looked for: %s", name, short_reason(exc))
        if not found:
            return []
        owners = self.reconciler.cluster.model_deployments(self.namespaces)
        live = {md["metadata"]["uid"] for md in owners}
        self._look_for_strays(owners, host, found, in_flight=self.queue.busy_since(since))
        removed = []
        for name, (member, objects) in found.items():
            for obj in orphans(objects, host, live, self.namespaces):
                meta = obj["metadata"]
                what = f"{name}:{obj['kind']}/{meta.get('namespace')}/{meta['name']}"
                try:
                    if not member.delete(obj, exact=True):
                        continue  # removed meanwhile (by the deletion that was cleaning it up), or made anew
                except UNREACHABLE as exc:
                    logger.info("orphan %s not removed: %s", what, short_reason(exc))
                    continue
                labels = meta.get("labels") or {}
                logger.warning(
                    "removed %s (made %s): its ModelDeployment %s/%s (uid %s) no longer exists",
                    what,
                    meta.get("creationTimestamp"),
                    meta.get("namespace"),
                    labels.get(LABEL_DEPLOYMENT),
                    labels.get(LABEL_OWNER_UID),
                )
                self.metrics.orphans.labels(name).inc()
                removed.append(what)
        return removed

    def _look_for_strays(
        self,
        owners: list[dict[str, Any]],
        host: str,
        found: dict[str, tuple[ClusterClient, list[dict[str, Any]]]],
        in_flight: set[ObjectKey],
    ) -> None:
        """A live deployment whose objects are on a member its status does not name is reconciled with that
        member among those to withdraw from (reconcile/strays.py), so they do not stay there unseen.

        Not one a worker held while the members and the host were read (`in_flight`): a reconcile applies to the
        members before it writes the status naming them, so one in flight looks like this for a moment (the
        soak's collector pointed at two right after a member came back, while hundreds were being placed on it
        again); that reconcile remembers where it applied until its status lands anyway."""
        named = {
            md["metadata"]["uid"]: {str(c.get("name")) for c in (md.get("status") or {}).get("clusters") or []}
            for md in owners
            if not md["metadata"].get("deletionTimestamp")
        }
        keys = {md["metadata"]["uid"]: (md["metadata"]["namespace"], md["metadata"]["name"]) for md in owners}
        for name, (_, objects) in found.items():
            for uid in sorted(strays(objects, host, named, name)):
                namespace, md_name = keys[uid]
                if ObjectKey(DEPLOYMENT, namespace, md_name) in in_flight:
                    continue
                logger.info(
                    "%s/%s has objects on %s, which its status does not name: looked at again", namespace, md_name, name
                )
                self.reconciler.strays.add((namespace, md_name), {name})
                self.queue.add(ObjectKey(DEPLOYMENT, namespace, md_name))

    def _until_next_tick(self, now: float) -> float:
        interval = self.forecast_seconds
        phase = interval / 4
        due = math.floor((now - phase) / interval) * interval + interval + phase
        return max(0.0, due - now)

    def start(self, stop: threading.Event) -> None:
        """The workers and the loops, as daemon threads (kept in `threads`); `stop` (and the queue's shutdown)
        ends them."""
        threads = [threading.Thread(target=self.worker, name=f"autoglm-worker-{i}") for i in range(self.workers)]
        threads += [
            threading.Thread(target=self.member_loop, args=(stop,), name="autoglm-members"),
            threading.Thread(target=self.resync_loop, args=(stop,), name="autoglm-resync"),
            threading.Thread(target=self.forecast_loop, args=(stop,), name="autoglm-forecast"),
        ]
        if self.orphan_seconds > 0:
            threads.append(threading.Thread(target=self.orphan_loop, args=(stop,), name="autoglm-orphans"))
        for thread in threads:
            thread.daemon = True
            thread.start()
        self.threads = threads

    def stop(self, stop: threading.Event) -> None:
        stop.set()
        self.members_dirty.set()
        self.queue.shut_down()

    def drain(self, timeout: float) -> bool:
        """After stop(): wait until this process writes nothing more (its workers and loops ended, its deferred
        applies landed, its Events posted), for at most `timeout` s; True when it got there. Only then may a
        leader hand its Lease over, or two processes would write at once."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        for thread in self.threads:
            thread.join(left())
        busy = [thread.name for thread in self.threads if thread.is_alive()]
        if not self.reconciler.deferred.drain(left()):
            busy.append("deferred applies")
        clusters = [self.reconciler.cluster] + [
            member
            for name in self.members.names()
            if (member := self.members.client(name)) is not None and member is not self.reconciler.cluster
        ]
        for cluster in clusters:
            cluster.flush_events(left())
        if busy:
            logger.warning("still writing %.0f s after the stop: %s", timeout, ", ".join(busy))
        return not busy


@dataclass(frozen=True, kw_only=True)
class IdentifiedConnection(kopf.ConnectionInfo):
    """kopf's connection with this process's User-Agent on every request (the audit log names the writer)."""

    user_agent: str | None = None

    def as_http_headers(self) -> dict[str, str]:
        headers: dict[str, str] = dict(super().as_http_headers())
        if self.user_agent:
            headers["User-Agent"] = self.user_agent
        return headers


def _asks_for_reconcile(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a watch event of a ModelDeployment is news to act on: its spec (generation), labels, annotations
    or deletion changed. A status-only change is the operator's own write."""
    a, b = old.get("metadata") or {}, new.get("metadata") or {}
    return any(a.get(f) != b.get(f) for f in ("generation", "deletionTimestamp", "labels", "annotations", "uid"))


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


def build_registry(context: OperatorContext, on_stopped: Callable[[], None] | None = None) -> kopf.OperatorRegistry:
    """kopf as the event source only: its watches feed the queue; no kopf handler reconciles, and kopf keeps no
    state on the objects (no finalizers or annotations of its own). `on_stopped` is called once, at the stop, when
    this process has stopped writing (a leader releases its Lease there)."""
    registry = kopf.OperatorRegistry()
    stop = threading.Event()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our own Events say what happened
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # kopf says "Handler ... succeeded" for every watch event: the handlers only enqueue keys.
            logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        settings.networking.request_timeout = context.api_timeout
        settings.networking.connect_timeout = context.api_timeout
        # A watch the server ends after 5 minutes; one silent for longer than that is dead and is made again.
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = context.api_timeout

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return context.connection()

    @kopf.on.event(*MD, registry=registry)
    async def deployment_event(event: Mapping[str, Any], **_: Any) -> None:
        context.observe(event.get("type"), event["object"])

    @kopf.on.event(*RUNTIMES, registry=registry)
    async def runtime_event(event: Mapping[str, Any], **_: Any) -> None:
        context.runtime_observed(event["object"]["metadata"]["name"])

    @kopf.on.event(*MEMBERS, registry=registry)
    async def member_event(**_: Any) -> None:
        context.members_dirty.set()

    if context.reconciler.karmada:

        @kopf.on.event(*KARMADA_CLUSTERS, registry=registry)
        async def karmada_cluster_event(**_: Any) -> None:
            context.members_dirty.set()

    @kopf.on.startup(registry=registry)
    def start_controller(**_: Any) -> None:
        # Members are known before the first reconcile: placement with none would call everything unplaceable.
        try:
            context.members.heartbeat()
        except UNREACHABLE as exc:
            logger.warning("member heartbeat: the host did not answer: %s", short_reason(exc))
        context.start(stop)

    @kopf.on.cleanup(registry=registry)
    def stop_controller(**_: Any) -> None:
        context.stop(stop)
        # kopf's own tasks may take seconds more to wind down (a request it was retrying at the stop waits out a
        # 5 s grace), but they only watch: once our threads are done, nothing writes, and the Lease can go now.
        if on_stopped is not None and context.drain(STOP_GRACE_SECONDS):
            on_stopped()

    return registry


async def run_kopf(
    context: OperatorContext,
    namespaces: list[str],
    stop_flag: Any = None,
    ready_flag: Any = None,
    on_stopped: Callable[[], None] | None = None,
) -> None:
    """kopf's watches feeding the controller, until stopped (a signal, or `stop_flag`)."""
    await kopf.operator(
        registry=build_registry(context, on_stopped),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


@contextmanager
def operator_thread(context: OperatorContext, namespace: str | None = None) -> Iterator[None]:
    """The operator in a background thread (no leader election), for the demo, tests and e2e; stopped on exit."""
    stop, ready = threading.Event(), threading.Event()
    context.namespaces = (namespace,) if namespace else ()

    def main() -> None:
        asyncio.run(run_kopf(context, [namespace] if namespace else [], stop, ready))

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
