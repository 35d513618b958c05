"""What `autoglm demo` deploys: its member clusters (example node sets and labels) and its ModelDeployments.
Data only, nothing of the sandbox: without the sandbox extra the demo plans the same fleet offline."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from autoglm.core.hardware import nodes_from_document

# Member cluster -> example node sets (autoglm/data/nodes, linked as manifests/examples/nodes) and its labels.
MEMBERS: dict[str, tuple[list[str], dict[str, str]]] = {
    "gpu": (["nvidia-h100.yaml", "nvidia-mixed.yaml"], {"vendor": "nvidia"}),
    "ascend": (["huawei-ascend.yaml", "huawei-ascend-910b3-extra.yaml"], {"vendor": "huawei"}),
    "edge": (["sophgo.yaml", "kunlunxin.yaml", "cpu.yaml"], {"vendor": "edge"}),
}
# Short windows so the outage shows within a minute; production defaults are 300 s and 120 s.
FAILOVER = {"tolerationSeconds": 10, "rebalanceSeconds": 10}
# Applied once, to the host; placement decides which members serve each.
DEPLOYMENTS: list[dict[str, Any]] = [
    {
        "name": "glm-4-9b-chat",
        "spec": {
            "model": {"name": "glm-4-9b-chat"},
            # Exactly 3: the sandbox has no metrics pipeline, so an HPA there could raise a member's replicas (to a
            # failover's floor) but never lower them again when the member's share shrinks on its return.
            "replicas": {"min": 3, "max": 3},
            "placement": {
                "clusters": ["gpu", "ascend"],
                "weights": {"static": [{"cluster": "gpu", "weight": 2}, {"cluster": "ascend", "weight": 1}]},
                "failover": FAILOVER,
            },
        },
    },
    {
        "name": "chatglm3-6b-everywhere",
        "spec": {
            "model": {"name": "chatglm3-6b"},
            "resources": {"contextLength": 2048, "maxConcurrentSequences": 1},
            "placement": {"replicaScheduling": "Duplicated", "failover": FAILOVER},
        },
    },
    {
        "name": "chatglm3-sophon-int8",
        "spec": {
            "model": {"name": "chatglm3-6b"},
            "backend": "llm-tpu-bmodel",
            "precision": "int8",
            "resources": {"contextLength": 2048, "maxConcurrentSequences": 1},
            "placement": {"clusters": ["edge"]},
        },
    },
    {
        "name": "glm-4-5",
        "spec": {
            "model": {"name": "GLM-4.5"},
            "resources": {"contextLength": 32768, "maxConcurrentSequences": 8},
            "placement": {"clusterSelector": {"matchLabels": {"vendor": "huawei"}}, "failover": FAILOVER},
        },
    },
    {
        "name": "chatglm3-tensorrt",
        "spec": {
            "model": {"name": "chatglm3-6b"},
            "backend": "tensorrt-llm",
            "precision": "bf16",
            "placement": {"clusters": ["gpu"]},
        },
    },
    # bf16 fits neither the BM1684X cards nor a runtime on the P800: fallbackPolicy cpu serves it on CPU.
    {
        "name": "glm-4-32b-cpu-fallback",
        "spec": {
            "model": {"name": "GLM-4-32B-0414"},
            "precision": "bf16",
            "resources": {"contextLength": 4096, "maxConcurrentSequences": 2},
            "placement": {"clusters": ["edge"]},
        },
    },
]


def example_nodes(names: list[str], root: Path) -> list[dict[str, Any]]:
    return [n for name in names for n in nodes_from_document(yaml.safe_load((root / name).read_text()))]


def examples_root() -> Path:
    """The example node sets, package data (a checkout's manifests/examples/nodes links to them): an installed
    autoglm runs the demo as a checkout does."""
    return Path(str(resources.files("autoglm"))) / "data" / "nodes"
