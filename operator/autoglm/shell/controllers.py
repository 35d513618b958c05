"""kopf handlers: thin adapters from watch events to the Reconciler. No decisions here.

`build_registry(context)` returns a registry for `kopf.operator`, so handlers close over an explicit
context (clients, caches, metrics) instead of module globals.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client import ApiException

from autoglm import API_GROUP, API_VERSION
from autoglm.core.backends import load_default_catalog
from autoglm.shell.clusters import ClusterClient
from autoglm.shell.metrics import OperatorMetrics
from autoglm.shell.reconciler import Outcome, Reconciler

MD = (API_GROUP, API_VERSION, "modeldeployments")
RUNTIMES = (API_GROUP, API_VERSION, "backendruntimes")
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

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: str | None,
        cluster: str = "local",
        resync_seconds: float = 30.0,
        metrics: OperatorMetrics | None = None,
    ) -> OperatorContext:
        cfg = client.Configuration()
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            try:
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        cluster_client = ClusterClient(cluster, client.ApiClient(cfg))
        return cls(
            Reconciler(cluster_client, load_default_catalog()), metrics or OperatorMetrics(), cfg, resync_seconds
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

        A pass runs every `resync_seconds`, and early (within `poll_seconds`, which debounces bursts)
        when the nodes' accelerator capacity or the BackendRuntimes changed. Heartbeats do not count:
        only labels, taints, schedulability, capacity and allocatable are compared. One loop, not a kopf
        timer per object, keeps memory flat and leaves the workers to new and changed deployments.
        """
        last_pass = time.monotonic()
        fingerprint = capacity_fingerprint(self.reconciler.cluster.nodes())
        while not stop.wait(min(poll_seconds, self.resync_seconds)):
            current = capacity_fingerprint(self.reconciler.cluster.nodes())
            due = time.monotonic() - last_pass >= self.resync_seconds
            if not (due or current != fingerprint or self.catalog_changed.is_set()):
                continue
            if current != fingerprint:
                self.metrics.inventory_changes.labels("node").inc()
            fingerprint, last_pass = current, time.monotonic()
            self.catalog_changed.clear()
            for body in self.reconciler.cluster.model_deployments(self.namespaces):
                if stop.is_set():
                    return
                try:
                    self.reconcile(body, 0)
                except kopf.TemporaryError as exc:
                    meta = body["metadata"]
                    logger.warning("resync of %s/%s: %s", meta.get("namespace"), meta.get("name"), exc)

    def reconcile(self, body: Any, retry: int) -> Outcome:
        start = time.perf_counter()
        try:
            outcome = self.reconciler.reconcile(dict(body))
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
        settings.execution.max_workers = 8

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
        threading.Thread(target=context.resync_loop, args=(stop,), name="autoglm-resync", daemon=True).start()

    @kopf.on.cleanup(registry=registry)
    def stop_resync(**_: Any) -> None:
        stop.set()

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
