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
from autoglm.shell.clusters import install_crds
from tests.conftest import EXAMPLES, load_nodes
from tests.image_install import Wheels, build_wheel_as_the_image_does


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
    tmp_path_factory: pytest.TempPathFactory,
    clusters: dict[str, list[dict[str, Any]]],
    karmada: bool = False,
    audit: bool = False,
    crds: bool = True,
) -> Iterator[dict[str, Cluster]]:
    state_dir = tmp_path_factory.mktemp("sandbox")
    # The CRDs before the controllers: the garbage collector watches ModelDeployments from its first discovery, so
    # a deletion's cascade is not 30 s late in the first module that installs them (the e2e scenarios' was).
    states, _ = fleet.up(
        state_dir,
        clusters,
        cold_start_seconds=0.0,
        karmada=karmada,
        audit=audit,
        before_controllers=(lambda state: install_crds(state.api_client())) if crds else None,
    )
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


@pytest.fixture(scope="session")
def image_wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    """The wheel operator/Dockerfile's build stage makes."""
    return build_wheel_as_the_image_does(tmp_path_factory.mktemp("image-wheel"))


@pytest.fixture(scope="session")
def image_venv(image_wheels: Wheels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """autoglm installed from its wheel into a fresh venv, as the operator image installs it (not editable)."""
    return image_wheels.install_as_the_image_does("operator", tmp_path_factory.mktemp("image-install"))


@pytest.fixture(scope="session")
def sandbox_venv(image_wheels: Wheels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install 'open-autoglm[sandbox]'` from the same wheel into a fresh venv: what the demo needs."""
    return image_wheels.install_with_extras("sandbox", tmp_path_factory.mktemp("sandbox-install"))


# The node-health observation (test_node_health.py) runs in the background from the first test after the closed
# loop's, whose timings a busy machine would disturb; its tests then read the outcome.
BACKGROUND: dict[str, Any] = {}


@pytest.fixture(scope="session", autouse=True)
def node_health(
    request: pytest.FixtureRequest, sandbox_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The node-health runner when this session runs test_node_health.py, else None."""
    from tests.integration.test_node_health import HealthRunner

    if not any(item.module.__name__.endswith("test_node_health") for item in request.session.items):
        yield None
        return
    runner = BACKGROUND["node_health"] = HealthRunner(tmp_path_factory.mktemp("node-health"))
    try:
        yield runner
    finally:
        BACKGROUND.clear()
        runner.close()


def pytest_runtest_setup(item: pytest.Item) -> None:
    runner = BACKGROUND.get("node_health")
    if runner is not None and not item.module.__name__.endswith("test_closed_loop"):  # type: ignore[attr-defined]
        runner.start()


@pytest.fixture
def namespace(sandbox: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    sandbox.core.create_namespace({"metadata": {"name": name}})
    yield name
    sandbox.core.delete_namespace(name)


@contextmanager
def devices_withdrawn(
    cluster: Cluster, resources: tuple[str, ...] = ("nvidia.com/gpu",), nodes: tuple[str, ...] | None = None
) -> Iterator[None]:
    """Set the nodes' capacity of these device resources to 0 (as a failed device plugin would), then restore
    it; without `nodes`, every node that has any of them."""
    items = [cluster.core.read_node_status(n) for n in nodes] if nodes else cluster.core.list_node().items
    saved = {
        node.metadata.name: {r: node.status.allocatable[r] for r in resources if r in node.status.allocatable}
        for node in items
    }
    saved = {name: values for name, values in saved.items() if values}

    def set_devices(node: str, values: dict[str, str]) -> None:
        cluster.core.patch_node_status(node, {"status": {"allocatable": values, "capacity": values}})

    for node, values in saved.items():
        set_devices(node, dict.fromkeys(values, "0"))
    try:
        yield
    finally:
        for node, values in saved.items():
            set_devices(node, values)


def gpus_withdrawn(cluster: Cluster, nodes: tuple[str, ...] = ("h100-0", "h100-1")) -> Any:
    """The two H100 nodes of the test clusters lose their GPUs for the block."""
    return devices_withdrawn(cluster, ("nvidia.com/gpu",), nodes)


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


def token_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of a ServiceAccount, as its Pod would mount it (the sandbox audits
    ServiceAccounts' requests, not the admin's)."""
    from autoglm.shell.members import flatten_kubeconfig

    request = {"spec": {"expirationSeconds": 3600, "audiences": []}}
    token = cluster.core.create_namespaced_service_account_token(account, namespace, request).status.token
    admin = yaml.safe_load(cluster.state.kubeconfig.read_text())
    server = admin["clusters"][0]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": server["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(flatten_kubeconfig(doc, cluster.state.kubeconfig.parent)))
    return path


@contextmanager
def storage_class(cluster: Cluster, name: str, expandable: bool) -> Iterator[None]:
    """A StorageClass (expandable or not) with one large volume for it, bound as soon as a claim asks."""
    storage, core = client.StorageV1Api(cluster.api), client.CoreV1Api(cluster.api)
    storage.create_storage_class(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "kubernetes.io/no-provisioner",
            "allowVolumeExpansion": expandable,
            "volumeBindingMode": "Immediate",
        }
    )
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "10Ti"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": name,
                "hostPath": {"path": f"/tmp/{name}"},
            },
        }
    )
    try:
        yield
    finally:
        core.delete_persistent_volume(name)
        storage.delete_storage_class(name)
