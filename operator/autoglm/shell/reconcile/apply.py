"""Applying a member's rendered objects: what is new, changed or drifted is sent (side by side), what is no longer
rendered is removed; the slowest writes on the host land after the reconcile returns (deferred)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any

from autoglm.core.render import drifted, keep_scale
from autoglm.shell.clusters import ClusterClient
from autoglm.shell.problems import short_reason
from autoglm.shell.reconcile.cache_claim import ensure_cache_claim
from autoglm.shell.reconcile.request import DeferredApplyStuck, Manifest, Request, ref

# Applies of one reconcile's objects run side by side here; shared by every reconcile of the process.
_APPLIES = ThreadPoolExecutor(max_workers=64, thread_name_prefix="autoglm-apply")
# On the host, neither the status nor the reconcile waits for these: what the status reports comes from the
# workloads. A Service in particular can take long to create: a kube-apiserver allocates ClusterIPs one at a
# time, each an IPAddress object written through its own API (measured at 20 creates/s on 5,000 nodes: 0.43 s
# a Service at p50 against 0.08 s a Deployment), and a burst of creates would hold every worker waiting on it.
# One that fails gets a Warning Event and the deployment is reconciled again (DeferredApplies.on_landed).
DEFERRED_KINDS = frozenset({"Service", "HorizontalPodAutoscaler", "PodMonitor", "InferencePool"})
logger = logging.getLogger(__name__)


def converge(
    req: Request,
    member: ClusterClient,
    rendered: list[Manifest],
    live: Mapping[tuple[str, str], Manifest],
    prune: bool,
    claim: Manifest | None = None,
    force: bool = False,
    defer: bool = False,
) -> list[Manifest]:
    """Apply what is new, changed or drifted (rendered objects are stamped: an unchanged one is not sent
    again); with `prune`, delete what is no longer rendered. Returns the objects as they now are
    (server-side apply answers with the live object: no second list). With `defer`, the DEFERRED_KINDS'
    applies are left running in `req.pending` and stand in as they were (live, else as rendered)."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    stale = [o for o in rendered if force or drifted(o, live.get((o["kind"], o["metadata"]["name"])), rendered)]
    applied: dict[tuple[str, str], Manifest] = {}
    if stale:
        # The claim first: pods created before their claim wait out the scheduler's backoff.
        if claim and ensure_cache_claim(member, claim):
            req.applied.append(ref(claim, member.name))
        bodies = [keep_scale(o, live.get((o["kind"], o["metadata"]["name"])), rendered) for o in stale]
        # One deployment's objects do not depend on each other (an HPA may name a Deployment that is not
        # there yet): sent side by side, a create waits for the slowest write, not for the sum of them.
        futures = [_APPLIES.submit(member.apply, body) for body in bodies]
        # Every apply the reconcile waits for has ended before one's failure is raised: an apply left running
        # past its reconcile could land after the next one (a deletion's cleanup among them) had looked, and
        # leave an object on a member that nothing owns.
        wait([f for o, f in zip(stale, futures, strict=True) if not (defer and o["kind"] in DEFERRED_KINDS)])
        for obj, body, future in zip(stale, bodies, futures, strict=True):
            key = (obj["kind"], obj["metadata"]["name"])
            if defer and obj["kind"] in DEFERRED_KINDS:
                req.pending.append((future, ref(obj, member.name)))
                applied[key] = live.get(key) or body
                continue
            applied[key] = future.result()
            req.applied.append(ref(obj, member.name))
    if prune:
        for key, obj in live.items():
            if key not in wanted:
                member.delete(obj)
                req.deleted.append(ref(obj, member.name))
    return [applied.get(key) or live[key] for key in wanted if key in applied or key in live]


class DeferredApplies:
    """The deferred applies still landing, per deployment. The next reconcile of a deployment waits for its last
    one's to land first (two applies of one object in flight could land in either order), for at most `timeout`
    (each apply is bounded by its own request timeout; this bounds the wait should one not be)."""

    def __init__(self, cluster: ClusterClient, timeout: float):
        self.cluster = cluster
        self.timeout = timeout
        # Told once a reconcile's deferred applies have all landed: the deployment, and whether all succeeded
        # (the controller retries one that did not, with the queue's backoff).
        self.on_landed: Callable[[Mapping[str, Any], bool], None] | None = None
        self._outstanding: dict[tuple[str, str], list[Future[Manifest]]] = {}
        self._lock = threading.Lock()

    def settle(self, namespace: str, name: str) -> None:
        """Wait for the deployment's last deferred applies; DeferredApplyStuck when they do not land in time."""
        with self._lock:
            outstanding = self._outstanding.get((namespace, name), [])
        if not outstanding:
            return
        _, late = wait(outstanding, timeout=self.timeout)
        if late:
            raise DeferredApplyStuck(f"{len(late)} applies of the last reconcile still running")
        with self._lock:
            if self._outstanding.get((namespace, name)) is outstanding:
                del self._outstanding[(namespace, name)]

    def land(self, body: dict[str, Any], pending: list[tuple[Future[Manifest], str]]) -> None:
        """Let the deferred applies finish without holding the reconcile: a failed one gets a Warning Event, and
        `on_landed` hears once they all have landed."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        futures = [future for future, _ in pending]
        with self._lock:
            self._outstanding[key] = futures
        left = [len(pending)]
        lock = threading.Lock()

        def landed(what: str, future: Future[Manifest]) -> None:
            error = future.exception()
            if error is not None:
                message = short_reason(error)
                logger.warning("%s/%s: %s not applied: %s", *key, what, message)
                logger.debug("%s/%s: %s not applied", *key, what, exc_info=error)
                self.cluster.event(body, "Warning", "ApplyFailed", f"{what}: {message}")
            with lock:
                left[0] -= 1
                done = left[0] == 0
            if done:
                with self._lock:
                    if self._outstanding.get(key) is futures:
                        del self._outstanding[key]
                if self.on_landed is not None:
                    self.on_landed(body, all(f.exception() is None for f in futures))

        for future, what in pending:
            future.add_done_callback(partial(landed, what))

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._outstanding.pop((namespace, name), None)

    def drain(self, timeout: float) -> bool:
        """Wait for every deferred apply still in flight (a stopping leader's last writes); True when all landed."""
        with self._lock:
            outstanding = [future for futures in self._outstanding.values() for future in futures]
        _, late = wait(outstanding, timeout=timeout)
        return not late
