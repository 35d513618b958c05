"""The peer for reconcile_scale.py: the least a hand-written kopf operator does for a ModelDeployment.

    kopf run benchmarks/peer_operator.py --standalone -n NAMESPACE

On create it makes one Deployment for the object (one replica, the model name as its image tag) and
patches the object's status Planned=True. No hardware inventory, no planning: a floor to measure the
operator's own cost against, run side by side in the same sandbox.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes import client, config

LABEL = "autoglm.io/modeldeployment"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = 100
    settings.execution.max_workers = 16  # as many as autoglm run --workers by default
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="peer.autoglm.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="peer.autoglm.io", key="last-handled-configuration"
    )
    config.load_kube_config()  # type: ignore[no-untyped-call]


@kopf.on.create("autoglm.io", "v1alpha1", "modeldeployments")
def create(body: kopf.Body, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    labels = {LABEL: name}
    deployment = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "server", "image": f"vllm/vllm-openai:{body['spec']['model']['name']}"}]
                },
            },
        },
    }
    kopf.adopt(deployment)
    client.AppsV1Api().create_namespaced_deployment(namespace, deployment)
    patch.status["conditions"] = [{"type": "Planned", "status": "True", "reason": "Planned", "message": ""}]
