"""Session-scoped sandbox clusters: real kube-apiserver, etcd, controllers, scheduler and KWOK fake nodes.

The binaries are built once (cached by `autoglm sandbox build`); when they cannot be built the tests fail
with the build's message: a missing sandbox is never a silent skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from autoglm.sandbox import build, fleet
from autoglm.sandbox.build import SandboxError
from autoglm.sandbox.cluster import ClusterState
from tests.conftest import EXAMPLES, load_nodes


@dataclass
class Cluster:
    state: ClusterState
    api: client.ApiClient

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)


@pytest.fixture(scope="session")
def sandbox_binaries() -> dict[str, Path]:
    try:
        build.build()
        return build.binaries(components=build.COMPONENTS)
    except SandboxError as exc:
        pytest.fail(f"sandbox unavailable: {exc}", pytrace=False)


def _start(
    tmp_path_factory: pytest.TempPathFactory, clusters: dict[str, list[dict[str, Any]]], karmada: bool = False
) -> Iterator[dict[str, Cluster]]:
    state_dir = tmp_path_factory.mktemp("sandbox")
    states, _ = fleet.up(state_dir, clusters, cold_start_seconds=0.0, karmada=karmada)
    try:
        yield {name: Cluster(state, state.api_client()) for name, state in states.items()}
    finally:
        fleet.down(state_dir)


@pytest.fixture(scope="session")
def sandbox(sandbox_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster: two 8x H100 nodes and three CPU nodes."""
    nodes = load_nodes("nvidia-h100.yaml") + load_nodes("cpu.yaml")
    yield from (c["one"] for c in _start(tmp_path_factory, {"one": nodes}))


@pytest.fixture(scope="session")
def sandbox_fleet(
    sandbox_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Cluster]]:
    """Three clusters of different vendors."""
    clusters = {
        "gpu": load_nodes("nvidia-h100.yaml") + load_nodes("nvidia-mixed.yaml"),
        "ascend": load_nodes("huawei-ascend.yaml"),
        "edge": load_nodes("cpu.yaml") + load_nodes("sophgo.yaml") + load_nodes("kunlunxin.yaml"),
    }
    yield from _start(tmp_path_factory, clusters)


@pytest.fixture(scope="session")
def karmada_fleet(
    sandbox_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Cluster]]:
    """An NVIDIA and an Ascend cluster joined in Push mode to a Karmada control plane (key "karmada")."""
    clusters = {"gpu": load_nodes("nvidia-h100.yaml"), "ascend": load_nodes("huawei-ascend.yaml")}
    yield from _start(tmp_path_factory, clusters, karmada=True)


@pytest.fixture
def namespace(sandbox: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    sandbox.core.create_namespace({"metadata": {"name": name}})
    yield name
    sandbox.core.delete_namespace(name)


@contextmanager
def gpus_withdrawn(cluster: Cluster, nodes: tuple[str, ...] = ("h100-0", "h100-1")) -> Iterator[None]:
    """Set the nodes' nvidia.com/gpu capacity to 0 (as a failed device plugin would), then restore it."""
    saved = {node: cluster.core.read_node_status(node).status.allocatable["nvidia.com/gpu"] for node in nodes}

    def set_gpus(node: str, value: str) -> None:
        body = {"status": {"allocatable": {"nvidia.com/gpu": value}, "capacity": {"nvidia.com/gpu": value}}}
        cluster.core.patch_node_status(node, body)

    for node in nodes:
        set_gpus(node, "0")
    try:
        yield
    finally:
        for node, value in saved.items():
            set_gpus(node, value)


@contextmanager
def extra_runtime(cluster: Cluster, name: str, priority: int) -> Iterator[dict[str, Any]]:
    """The example SGLang BackendRuntime under another name and priority, removed afterwards."""
    body = yaml.safe_load((EXAMPLES / "runtimes" / "sglang-cuda.yaml").read_text())
    body["metadata"]["name"] = name
    body["spec"]["priority"] = priority
    custom = client.CustomObjectsApi(cluster.api)
    custom.create_cluster_custom_object("autoglm.io", "v1alpha1", "backendruntimes", body)
    try:
        yield body
    finally:
        custom.delete_cluster_custom_object("autoglm.io", "v1alpha1", "backendruntimes", name)
