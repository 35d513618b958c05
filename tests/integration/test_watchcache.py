"""The nodes and pods the operator reads come from watch caches: current within moments, shared by every
reader, and unchanged (the same list object) by anything the inventory does not read, such as heartbeats."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from autoglm.shell.clusters import ClusterClient
from tests.integration.conftest import Cluster


def _until(read: Callable[[], Any], good: Callable[[Any], bool] = bool, timeout: float = 10.0) -> Any:
    """The first value `read` gives that is `good`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if good(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s")


def _label(nodes: list[dict[str, Any]], node: str, key: str) -> str | None:
    found = next(n for n in nodes if n["metadata"]["name"] == node)
    return (found["metadata"].get("labels") or {}).get(key)


def test_node_changes_arrive_by_watch_and_heartbeats_change_nothing(sandbox: Cluster) -> None:
    cluster = ClusterClient("watch-test", sandbox.api)
    try:
        first = cluster.nodes()
        assert {n["metadata"]["name"] for n in first} >= {"h100-0", "h100-1"}
        # A cluster just started still changes its nodes (taints lifted, labels added): let it settle.
        settled = -1
        while settled != cluster._nodes.changes:
            settled = cluster._nodes.changes
            time.sleep(2)
        first, changes = cluster.nodes(), cluster._nodes.changes
        assert cluster.nodes() is first  # shared until something changes
        key, value = "autoglm.io/watch-test", uuid.uuid4().hex[:8]
        # What the inventory does not read (an annotation, a heartbeat time) changes no facts...
        sandbox.core.patch_node("h100-0", {"metadata": {"annotations": {key: value}}})
        beat = {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}
        sandbox.core.patch_node_status("h100-0", {"status": {"conditions": [beat]}})
        # ... and a label does; events arrive in order, so once the label shows, the others were seen.
        sandbox.core.patch_node("h100-1", {"metadata": {"labels": {key: value}}})
        labelled = _until(cluster.nodes, lambda nodes: _label(nodes, "h100-1", key) == value)
        assert labelled is not first
        assert cluster._nodes.changes == changes + 1, "the annotation or heartbeat changed the snapshot"
        sandbox.core.patch_node("h100-1", {"metadata": {"labels": {key: None}}})
        _until(cluster.nodes, lambda nodes: _label(nodes, "h100-1", key) is None)
    finally:
        sandbox.core.patch_node("h100-0", {"metadata": {"annotations": {"autoglm.io/watch-test": None}}})
        cluster.close()


def test_bound_pods_are_counted_and_leave_when_deleted(sandbox: Cluster, namespace: str) -> None:
    cluster = ClusterClient("watch-test-pods", sandbox.api)
    try:
        before = len(cluster.device_pods())
        pod = {
            "metadata": {"name": "holder"},
            "spec": {
                "nodeName": "h100-1",  # bound directly, as the scheduler would
                "tolerations": [{"operator": "Exists"}],
                "containers": [
                    {"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "2"}}},
                ],
            },
        }
        sandbox.core.create_namespaced_pod(namespace, pod)
        pods = _until(cluster.device_pods, lambda pods: len(pods) == before + 1)
        mine = next(p for p in pods if p["metadata"]["name"] == "holder")
        assert mine["spec"]["nodeName"] == "h100-1"
        assert mine["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
        sandbox.core.delete_namespaced_pod("holder", namespace, grace_period_seconds=0)
        _until(cluster.device_pods, lambda pods: len(pods) == before)
    finally:
        cluster.close()


def test_invalidate_lists_again_at_once(sandbox: Cluster) -> None:
    cluster = ClusterClient("watch-test-invalidate", sandbox.api)
    try:
        first = cluster.nodes()
        cluster._nodes.stop()  # no watch: only a new list can see the change
        time.sleep(0.2)
        sandbox.core.patch_node("h100-0", {"metadata": {"labels": {"autoglm.io/watch-test": "listed"}}})
        cluster.invalidate()
        assert _label(cluster.nodes(), "h100-0", "autoglm.io/watch-test") == "listed"
        assert cluster.nodes() is not first
    finally:
        sandbox.core.patch_node("h100-0", {"metadata": {"labels": {"autoglm.io/watch-test": None}}})
        cluster.close()


def test_lists_come_in_pages(sandbox: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoglm.shell import watchcache

    monkeypatch.setattr(watchcache, "LIST_PAGE", 2)  # five nodes: three pages
    cluster = ClusterClient("watch-test-pages", sandbox.api)
    try:
        names = {n["metadata"]["name"] for n in cluster.nodes()}
        assert names == {n.metadata.name for n in sandbox.core.list_node().items}
        assert len(names) > 2 * watchcache.LIST_PAGE
    finally:
        cluster.close()
