"""Fake nodes heartbeat as kubelets do, so pods stay Ready for as long as the sandbox runs; a node taken down
has its pods marked NotReady by the real node lifecycle controller, and Ready again when it comes back.

Two clusters are watched side by side for three minutes (the default 40 s Lease and 50 s grace period, as on
a real cluster): an idle one with a single pod, and a loaded one with 200 pods where one node is taken down
and brought back during the run. Every change of every pod's Ready condition is recorded from a watch, so a
NotReady blip between two samples cannot go unseen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import NODE_LEASE_SECONDS, ClusterState
from autoglm.sandbox.nodes import NODE_LEASE_NAMESPACE, node_ready, resume_heartbeat, stop_heartbeat
from tests.conftest import load_nodes

OBSERVE_SECONDS = 180.0
LOADED_PODS = 200
DOWN_NODE = "h100-0"


def _pod_ready(pod: Any) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])
    )


@dataclass
class ReadyRecorder:
    """Every change of a pod's Ready condition in one cluster, from a list and then a watch."""

    api: client.ApiClient
    transitions: list[tuple[float, str, str, bool]] = field(default_factory=list)  # (time, pod, node, ready)
    ready: dict[str, bool] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _see(self, pod: Any, deleted: bool = False) -> None:
        name, node = pod.metadata.name, pod.spec.node_name or ""
        now = time.monotonic()
        with self.lock:
            self.nodes[name] = node
            is_ready = False if deleted else _pod_ready(pod)
            if self.ready.get(name) != is_ready:
                self.ready[name] = is_ready
                self.transitions.append((now, name, node, is_ready))

    def run(self) -> None:
        core = client.CoreV1Api(self.api)
        version = ""
        while not self.stop.is_set():
            if not version:
                listed = core.list_pod_for_all_namespaces()
                for pod in listed.items:
                    self._see(pod)
                version = listed.metadata.resource_version
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    core.list_pod_for_all_namespaces, resource_version=version, timeout_seconds=5
                ):
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    self._see(pod, deleted=event["type"] == "DELETED")
            except ApiException as exc:
                if exc.status != 410:
                    raise
                version = ""  # expired: list again

    def snapshot(self) -> tuple[list[tuple[float, str, str, bool]], dict[str, bool], dict[str, str]]:
        with self.lock:
            return list(self.transitions), dict(self.ready), dict(self.nodes)


@dataclass
class HealthRun:
    states: dict[str, ClusterState]
    recorders: dict[str, ReadyRecorder]
    all_ready_at: dict[str, float]
    ended_at: float
    down_pods: set[str]
    stopped_at: float
    node_unknown_at: float
    resumed_at: float
    back_at: float
    not_ready_events: dict[str, list[Any]]
    leases: dict[str, list[Any]]
    leases_read_at: datetime
    nodes_at_end: dict[str, list[Any]]


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    # As in the report: a pod that tolerates everything is never evicted, so only
                    # readiness can take it out of service.
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0"}],
                },
            },
        },
    }


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def _wait_ready(recorder: ReadyRecorder, cluster: str, count: int) -> float:
    return _wait(f"{cluster}: {count} pods Ready", lambda: sum(recorder.snapshot()[1].values()) >= count, 120)


def _node_not_ready_events(api: client.ApiClient) -> list[Any]:
    events = client.CoreV1Api(api).list_event_for_all_namespaces().items
    return [e for e in events if e.reason == "NodeNotReady"]


class HealthRunner:
    """The whole observation in a thread: it is three minutes of waiting, so the suite runs it beside the other
    integration tests (tests/integration/conftest.py starts it after the timing-sensitive closed loop) and the
    tests below only read its outcome. The other tests' load on the machine makes "under load" harder, not
    easier."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.started = False
        self._stop = threading.Event()
        self._done = threading.Event()
        self._result: HealthRun | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="node-health", daemon=True)

    def start(self) -> None:
        if not self.started:
            self.started = True
            self._thread.start()

    def result(self) -> HealthRun:
        self.start()
        self._done.wait()
        if self._error is not None:
            raise AssertionError(f"the node-health run failed: {self._error!r}") from self._error
        assert self._result is not None
        return self._result

    def close(self) -> None:
        self._stop.set()
        if self.started:
            self._thread.join(60)
        fleet.down(self.state_dir)

    def _run(self) -> None:
        try:
            self._result = self._observe()
        except BaseException as exc:  # handed to the tests through result()
            self._error = exc
        finally:
            self._done.set()

    def _observe(self) -> HealthRun:
        clusters = {
            "idle": load_nodes("nvidia-h100.yaml"),
            "loaded": load_nodes("nvidia-h100.yaml") + load_nodes("cpu.yaml"),
        }
        states, _ = fleet.up(self.state_dir, clusters)
        apis = {name: state.api_client() for name, state in states.items()}
        recorders = {name: ReadyRecorder(api) for name, api in apis.items()}
        threads = [threading.Thread(target=r.run, daemon=True) for r in recorders.values()]
        for thread in threads:
            thread.start()
        try:
            wanted = {"idle": 1, "loaded": LOADED_PODS}
            for name, replicas in wanted.items():
                client.AppsV1Api(apis[name]).create_namespaced_deployment("default", _deployment("server", replicas))
            all_ready_at = {name: _wait_ready(recorders[name], name, count) for name, count in wanted.items()}

            loaded = recorders["loaded"]
            core = client.CoreV1Api(apis["loaded"])
            down_pods = {pod for pod, node in loaded.snapshot()[2].items() if node == DOWN_NODE}
            stopped_at = time.monotonic()
            stop_heartbeat(states["loaded"], DOWN_NODE)
            grace = NODE_LEASE_SECONDS * 1.25
            node_unknown_at = _wait(
                f"{DOWN_NODE} not Ready", lambda: not node_ready(core.read_node(DOWN_NODE)), grace + NODE_LEASE_SECONDS
            )
            _wait(f"the pods of {DOWN_NODE} NotReady", lambda: not any(loaded.snapshot()[1][p] for p in down_pods), 30)
            time.sleep(5)
            resumed_at = time.monotonic()
            resume_heartbeat(states["loaded"], DOWN_NODE)
            back_at = _wait(
                f"{DOWN_NODE} and its pods Ready again",
                lambda: node_ready(core.read_node(DOWN_NODE)) and all(loaded.snapshot()[1][p] for p in down_pods),
                NODE_LEASE_SECONDS,
            )
            ended_at = max(all_ready_at.values()) + OBSERVE_SECONDS
            if self._stop.wait(max(0.0, ended_at - time.monotonic())):
                raise RuntimeError("stopped before the observation ended")
        finally:
            for recorder in recorders.values():
                recorder.stop.set()
            for thread in threads:
                thread.join(10)
        return HealthRun(
            states=states,
            recorders=recorders,
            all_ready_at=all_ready_at,
            ended_at=time.monotonic(),
            down_pods=down_pods,
            stopped_at=stopped_at,
            node_unknown_at=node_unknown_at,
            resumed_at=resumed_at,
            back_at=back_at,
            not_ready_events={name: _node_not_ready_events(api) for name, api in apis.items()},
            leases={
                name: client.CoordinationV1Api(api).list_namespaced_lease(NODE_LEASE_NAMESPACE).items
                for name, api in apis.items()
            },
            leases_read_at=datetime.now(UTC),
            nodes_at_end={name: client.CoreV1Api(api).list_node().items for name, api in apis.items()},
        )


@pytest.fixture(scope="module")
def health_run(node_health: HealthRunner | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HealthRun]:
    if node_health is not None:  # started beside the other tests by the session
        yield node_health.result()
        return
    runner = HealthRunner(tmp_path_factory.mktemp("node-health"))
    try:
        yield runner.result()
    finally:
        runner.close()


def _lost_readiness(run: HealthRun, cluster: str, pods: set[str] | None = None) -> list[tuple[float, str, str]]:
    """(seconds after all were Ready, pod, node) for every Ready -> NotReady change among `pods` (all if None)."""
    start = run.all_ready_at[cluster]
    transitions, _, _ = run.recorders[cluster].snapshot()
    return [
        (round(t - start, 1), pod, node)
        for t, pod, node, ready in transitions
        if not ready and t >= start and (pods is None or pod in pods)
    ]


def test_a_pod_stays_ready_for_three_minutes_on_an_idle_sandbox(health_run: HealthRun) -> None:
    assert health_run.ended_at - health_run.all_ready_at["idle"] >= OBSERVE_SECONDS
    assert _lost_readiness(health_run, "idle") == []
    assert all(health_run.recorders["idle"].snapshot()[1].values())
    assert health_run.not_ready_events["idle"] == []
    assert all(node_ready(n) for n in health_run.nodes_at_end["idle"])


def test_every_node_heartbeats_through_its_lease(health_run: HealthRun) -> None:
    now = health_run.leases_read_at  # the run ended (and read its leases) before this test, maybe long before
    for cluster, nodes in health_run.nodes_at_end.items():
        leases = {lease.metadata.name: lease for lease in health_run.leases[cluster]}
        assert set(leases) == {n.metadata.name for n in nodes}, cluster
        for name, lease in leases.items():
            assert lease.spec.lease_duration_seconds == NODE_LEASE_SECONDS
            # Renewed every quarter of its duration; a quarter more leaves room for a busy machine.
            age = (now - lease.spec.renew_time).total_seconds()
            assert age < NODE_LEASE_SECONDS / 2, (cluster, name, age)


def test_pods_of_healthy_nodes_stay_ready_under_load(health_run: HealthRun) -> None:
    _, ready, nodes = health_run.recorders["loaded"].snapshot()
    assert len(ready) == LOADED_PODS
    healthy = {pod for pod, node in nodes.items() if node != DOWN_NODE}
    assert len(healthy) >= LOADED_PODS // 2
    assert health_run.ended_at - health_run.all_ready_at["loaded"] >= OBSERVE_SECONDS
    assert _lost_readiness(health_run, "loaded", healthy) == []
    assert {e.involved_object.name for e in health_run.not_ready_events["loaded"]} <= {
        *health_run.down_pods,
        DOWN_NODE,
    }


def test_a_node_taken_down_and_back_makes_its_pods_not_ready_then_ready(health_run: HealthRun) -> None:
    run = health_run
    assert run.down_pods, f"no pod was scheduled on {DOWN_NODE}"
    # The real node lifecycle controller noticed after its grace period, not before.
    silent_for = run.node_unknown_at - run.stopped_at
    assert NODE_LEASE_SECONDS / 4 < silent_for <= NODE_LEASE_SECONDS * 1.25 + 20
    transitions, ready, _ = run.recorders["loaded"].snapshot()
    for pod in run.down_pods:
        changes = [(t, r) for t, p, _, r in transitions if p == pod and t > run.stopped_at]
        assert [r for _, r in changes] == [False, True], (pod, changes)
        (went_down, _), (came_back, _) = changes
        assert went_down < run.resumed_at < came_back
        assert ready[pod]
    marked = {e.involved_object.name for e in run.not_ready_events["loaded"] if e.involved_object.kind == "Pod"}
    assert marked == run.down_pods
    assert all(e.source.component == "node-controller" for e in run.not_ready_events["loaded"])
    assert run.back_at - run.resumed_at < NODE_LEASE_SECONDS
