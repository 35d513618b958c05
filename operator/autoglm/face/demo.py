"""`autoglm demo`: sample fleets of several vendors, the operator, GLM ModelDeployments, and what happened.

On the sandbox (built on first use when Go is present) it starts three clusters with fake accelerator
nodes, runs one operator per cluster, applies ModelDeployments and waits for their Pods to run. With a
kubeconfig it does the same in one real cluster, in its own namespace, and cleans up after itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client
from kubernetes.client import ApiException
from rich.console import Console
from rich.table import Table

from autoglm import API_GROUP, API_VERSION
from autoglm.api import RESOURCES
from autoglm.api.crd import crd_manifest, kopf_peering_crds
from autoglm.core.hardware import nodes_from_document
from autoglm.shell.controllers import OperatorContext, operator_thread

DEMO_NAMESPACE = "autoglm-demo"
# Cluster name -> example node sets (from manifests/examples/nodes) and the ModelDeployments it gets.
FLEET: dict[str, tuple[list[str], list[dict[str, Any]]]] = {
    "gpu": (
        ["nvidia-h100.yaml", "nvidia-mixed.yaml"],
        [
            {"name": "glm-4-9b-chat", "spec": {"model": {"name": "glm-4-9b-chat"}, "replicas": {"min": 2, "max": 4}}},
            {
                "name": "glm-4-5-air",
                "spec": {
                    "model": {"name": "GLM-4.5-Air"},
                    "resources": {"contextLength": 32768, "maxConcurrentSequences": 8},
                },
            },
            {
                "name": "chatglm3-trt",
                "spec": {"model": {"name": "chatglm3-6b"}, "backend": "tensorrt-llm", "precision": "bf16"},
            },
        ],
    ),
    "ascend": (
        ["huawei-ascend.yaml"],
        [
            {"name": "glm-4-9b-chat", "spec": {"model": {"name": "glm-4-9b-chat"}}},
            {
                "name": "glm-4-5",
                "spec": {
                    "model": {"name": "GLM-4.5"},
                    "resources": {"contextLength": 32768, "maxConcurrentSequences": 8},
                },
            },
        ],
    ),
    "edge": (
        ["sophgo.yaml", "kunlunxin.yaml", "cpu.yaml"],
        [
            {
                "name": "chatglm3-sophon",
                "spec": {
                    "model": {"name": "chatglm3-6b"},
                    "backend": "llm-tpu-bmodel",
                    "precision": "int8",
                    "resources": {"contextLength": 2048, "maxConcurrentSequences": 1},
                },
            },
            {
                "name": "glm-4-5-air-xpu",
                "spec": {
                    "model": {"name": "GLM-4.5-Air"},
                    "precision": "int4",
                    "resources": {"contextLength": 8192, "maxConcurrentSequences": 4},
                },
            },
            # bf16 fits neither the BM1684X cards nor a runtime on the P800: fallbackPolicy cpu serves it on CPU.
            {
                "name": "glm-4-32b-cpu-fallback",
                "spec": {
                    "model": {"name": "GLM-4-32B-0414"},
                    "precision": "bf16",
                    "resources": {"contextLength": 4096, "maxConcurrentSequences": 2},
                },
            },
        ],
    ),
}


def example_nodes(names: list[str], root: Path) -> list[dict[str, Any]]:
    return [n for name in names for n in nodes_from_document(yaml.safe_load((root / name).read_text()))]


def install_crds(api: client.ApiClient) -> None:
    """Create the autoglm.io CRDs and kopf's peering CRDs (existing ones are left alone); wait until served."""
    ext = client.ApiextensionsV1Api(api)
    for body in [crd_manifest(r) for r in RESOURCES] + kopf_peering_crds():
        try:
            ext.create_custom_resource_definition(cast(Any, body))
        except ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = _raw(ext.list_custom_resource_definition(_preload_content=False))["items"]
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


def _raw(response: Any) -> Any:
    return json.loads(response.data)


def apply_deployments(api: client.ApiClient, namespace: str, items: list[dict[str, Any]]) -> None:
    core = client.CoreV1Api(api)
    ns: Any = {"metadata": {"name": namespace}}
    try:
        core.create_namespace(ns)
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom = client.CustomObjectsApi(api)
    for item in items:
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "ModelDeployment",
            "metadata": {"name": item["name"]},
            "spec": item["spec"],
        }
        try:
            custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, "modeldeployments", body)
        except ApiException as exc:
            if exc.status != 409:
                raise


def deployments(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    raw: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, "modeldeployments"
    )
    return list(raw["items"])


def settled(items: list[dict[str, Any]]) -> bool:
    """Every deployment is Ready, or has a final answer (not placeable, invalid, conversion failed)."""
    for md in items:
        conds = {c["type"]: c for c in (md.get("status") or {}).get("conditions", [])}
        if conds.get("Ready", {}).get("status") == "True":
            continue
        if conds.get("Planned", {}).get("status") == "False":
            continue
        return False
    return bool(items)


def md_table(cluster: str, items: list[dict[str, Any]]) -> Table:
    table = Table(title=f"cluster {cluster}: kubectl get modeldeployments", title_justify="left")
    for col in ("NAME", "MODEL", "BACKEND", "PRECISION", "TP", "READY", "PLANNED", "WHY"):
        table.add_column(col)
    for md in items:
        status = md.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions", [])}
        planned = conds.get("Planned", {})
        table.add_row(
            md["metadata"]["name"],
            md["spec"]["model"]["name"],
            status.get("backend") or "-",
            status.get("precision") or "-",
            str(status.get("tensorParallel") or "-"),
            f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}",
            planned.get("reason", "-"),
            (planned.get("message") or "")[:90],
        )
    return table


def pod_table(cluster: str, api: client.ApiClient, namespace: str) -> Table:
    core = client.CoreV1Api(api)
    nodes = {n["metadata"]["name"]: n for n in _raw(core.list_node(_preload_content=False))["items"]}
    table = Table(title=f"cluster {cluster}: serving pods", title_justify="left")
    for col in ("POD", "NODE", "ACCELERATOR", "REQUEST", "PHASE"):
        table.add_column(col)
    keys = ("nvidia.com/gpu.product", "node.kubernetes.io/npu.chip.name", "autoglm.io/accelerator.product")
    for pod in _raw(core.list_namespaced_pod(namespace, _preload_content=False))["items"]:
        node_name = pod["spec"].get("nodeName") or ""
        labels = nodes[node_name]["metadata"].get("labels", {}) if node_name in nodes else {}
        product = next((labels[k] for k in keys if k in labels), "cpu" if node_name else "-")
        limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
        request = ", ".join(f"{k}={v}" for k, v in limits.items() if "/" in k) or "cpu/memory"
        table.add_row(pod["metadata"]["name"], node_name or "(pending)", product, request, pod["status"].get("phase"))
    return table


@dataclass
class DemoCluster:
    name: str
    api: client.ApiClient
    kubeconfig: str


def run_demo(
    clusters: list[DemoCluster],
    console: Console,
    namespace: str,
    timeout: float,
    on_ready: Callable[[], None] = lambda: None,
) -> bool:
    for c in clusters:
        install_crds(c.api)
    contexts = [OperatorContext.from_kubeconfig(c.kubeconfig, cluster=c.name, resync_seconds=2.0) for c in clusters]
    with _all_operators(contexts, namespace):
        for c in clusters:
            apply_deployments(c.api, namespace, FLEET[c.name][1] if c.name in FLEET else FLEET["gpu"][1])
        console.print(
            f"applied ModelDeployments in {', '.join(c.name for c in clusters)}; waiting for the operator ..."
        )
        deadline = time.monotonic() + timeout
        done = False
        while time.monotonic() < deadline and not done:
            done = all(settled(deployments(c.api, namespace)) for c in clusters)
            time.sleep(1)
        for c in clusters:
            console.print(md_table(c.name, deployments(c.api, namespace)))
            console.print(pod_table(c.name, c.api, namespace))
        on_ready()
    return done


@contextmanager
def _all_operators(contexts: list[OperatorContext], namespace: str) -> Iterator[None]:
    with ExitStack() as stack:
        for context in contexts:
            stack.enter_context(operator_thread(context, namespace))
        yield


def examples_root() -> Path:
    packaged = Path(str(resources.files("autoglm"))).resolve().parents[1] / "manifests" / "examples" / "nodes"
    return packaged
