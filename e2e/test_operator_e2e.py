"""The operator's scenarios against whatever $KUBECONFIG points to (kind, k3s, a real cluster).

    KUBECONFIG=~/.kube/config python -m pytest e2e

Runs the operator in this process, scoped to one fresh namespace it deletes afterwards; installs the CRDs
if missing. Skipped, with this message, when $KUBECONFIG is not set.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from autoglm.shell.clusters import install_crds
from autoglm.shell.controllers import OperatorContext, operator_thread

KUBECONFIG = os.environ.get("KUBECONFIG")
if not KUBECONFIG:
    pytest.skip("e2e needs a cluster: set $KUBECONFIG (see e2e/README.md for kind)", allow_module_level=True)

GROUP, VERSION, PLURAL = "autoglm.io", "v1alpha1", "modeldeployments"


def eventually(check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"not true within {timeout} s")


@pytest.fixture(scope="module")
def api() -> client.ApiClient:
    return config.new_client_from_config(config_file=KUBECONFIG)


@pytest.fixture(scope="module")
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"autoglm-e2e-{uuid.uuid4().hex[:6]}"
    install_crds(api)
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    context = OperatorContext.from_kubeconfig(KUBECONFIG, resync_seconds=5)
    with operator_thread(context, name):
        yield name
    client.CoreV1Api(api).delete_namespace(name)


def _create(api: client.ApiClient, ns: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "chatglm3-6b"}, **spec},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def _condition(api: client.ApiClient, ns: str, name: str, type_: str) -> dict[str, Any] | None:
    body = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return next((c for c in (body.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def test_plans_and_applies_or_explains(api: client.ApiClient, namespace: str) -> None:
    _create(api, namespace, "small", resources={"contextLength": 2048, "maxConcurrentSequences": 1})
    planned = eventually(lambda: _condition(api, namespace, "small", "Planned"))
    if planned["status"] == "True":
        eventually(lambda: client.AppsV1Api(api).list_namespaced_deployment(namespace).items)
    else:
        assert planned["reason"] in ("Unplaceable", "InvalidSpec") and planned["message"]


def test_bad_spec_gets_condition_and_event(api: client.ApiClient, namespace: str) -> None:
    _create(api, namespace, "bad", model={"name": "no-such-model"})
    planned = eventually(lambda: _condition(api, namespace, "bad", "Planned"))
    assert planned["reason"] == "InvalidSpec"
    # Events are posted after the status, in the background, as client-go's recorder does.
    eventually(
        lambda: any(
            e.involved_object.name == "bad" and e.reason == "InvalidSpec"
            for e in client.CoreV1Api(api).list_namespaced_event(namespace).items
        ),
        timeout=30,
    )


def test_delete_cascades(api: client.ApiClient, namespace: str) -> None:
    _create(api, namespace, "gone", resources={"contextLength": 2048, "maxConcurrentSequences": 1})
    eventually(lambda: _condition(api, namespace, "gone", "Planned"))
    client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")
    eventually(
        lambda: (
            not [
                d
                for d in client.AppsV1Api(api).list_namespaced_deployment(namespace).items
                if d.metadata.labels.get("autoglm.io/modeldeployment") == "gone"
            ]
        )
    )
