"""Leader election with real processes: two `autoglm run --leader-elect` on one (audited) API server, under a
ServiceAccount's token as in a pod. One leads and reconciles; the standby only reads the Lease; a killed leader is
replaced within the lease duration and nothing is done twice; a stopped one hands over at once."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from autoglm.core.render import LABEL_DEPLOYMENT
from autoglm.sandbox.cluster import free_port
from autoglm.shell.clusters import install_crds
from autoglm.shell.controllers import OperatorContext, run_kopf
from autoglm.shell.kubeconfig import user_agent
from tests.conftest import load_nodes
from tests.integration.conftest import Cluster, _start, token_kubeconfig
from tests.integration.test_sandbox import eventually

GROUP, VERSION, PLURAL = "autoglm.io", "v1alpha1", "modeldeployments"
LEASE_NAMESPACE, LEASE = "autoglm-system", "open-autoglm"
ACCOUNT = "operator"
LEASE_SECONDS = 15
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


@pytest.fixture(scope="module")
def elect_cluster(sandbox_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Twelve 8x H100 nodes (room for every deployment of the module's tests at once), its API server auditing
    ServiceAccounts."""
    nodes = []
    for i in range(6):
        for node in load_nodes("nvidia-h100.yaml"):
            node = copy.deepcopy(node)
            name = f"{node['metadata']['name']}-{i}"
            node["metadata"]["name"] = node["metadata"]["labels"]["kubernetes.io/hostname"] = name
            nodes.append(node)
    for clusters in _start(tmp_path_factory, {"elect": nodes}, audit=True):
        cluster = clusters["elect"]
        install_crds(cluster.api)
        cluster.core.create_namespace({"metadata": {"name": LEASE_NAMESPACE}})
        yield cluster


@pytest.fixture(scope="module")
def kubeconfig(elect_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ServiceAccount's token, as a pod mounts it (its requests are audited; the admin's are not)."""
    core = elect_cluster.core
    core.create_namespaced_service_account(LEASE_NAMESPACE, {"metadata": {"name": ACCOUNT}})
    client.RbacAuthorizationV1Api(elect_cluster.api).create_cluster_role_binding(
        {
            "metadata": {"name": "operator-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": LEASE_NAMESPACE}],
        }
    )
    return token_kubeconfig(elect_cluster, LEASE_NAMESPACE, ACCOUNT, tmp_path_factory.mktemp("elect") / "kubeconfig")


@dataclass
class Candidate:
    name: str
    process: subprocess.Popen[bytes]
    health: int
    log: Path

    def readiness(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/readyz", timeout=2) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""


@contextmanager
def candidates(kubeconfig: Path, namespace: str, names: tuple[str, ...] = ("a", "b")) -> Iterator[dict[str, Candidate]]:
    """`autoglm run --leader-elect` once per name (its pod name), watching `namespace`; stopped afterwards."""
    started: dict[str, Candidate] = {}
    try:
        for name in names:
            health = free_port()
            log = kubeconfig.parent / f"operator-{name}-{namespace}.log"
            command = [
                *(sys.executable, "-c", "from autoglm.face.cli import main; main()", "run"),
                *("--kubeconfig", str(kubeconfig), "-n", namespace, "--leader-elect"),
                *("--leader-election-namespace", LEASE_NAMESPACE, "--leader-election-id", LEASE),
                *("--liveness", f"http://127.0.0.1:{health}/healthz", "--metrics-port", "0", "--resync", "5"),
            ]
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "POD_NAME": name, "PYTHONUNBUFFERED": "1"},
                )
            started[name] = Candidate(name, process, health, log)
        yield started
    except BaseException:
        for candidate in started.values():  # where each one was, in its log
            if candidate.process.poll() is None:
                candidate.process.send_signal(signal.SIGUSR1)
        time.sleep(1)
        raise
    finally:
        for candidate in started.values():
            if candidate.process.poll() is None:
                candidate.process.terminate()
        for candidate in started.values():
            try:
                candidate.process.wait(30)
            except subprocess.TimeoutExpired:
                candidate.process.kill()
                candidate.process.wait()


def _holder(cluster: Cluster) -> str:
    try:
        lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(LEASE, LEASE_NAMESPACE)
    except client.ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


def _namespace(cluster: Cluster) -> str:
    name = f"elect-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace({"metadata": {"name": name}})
    return name


def _create(cluster: Cluster, namespace: str, name: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": "glm-4-9b-chat"}, "modelCache": {"enabled": False}},
    }
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def _planned(cluster: Cluster, namespace: str) -> set[str]:
    items = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return {
        i["metadata"]["name"]
        for i in items["items"]
        if any(
            c["type"] == "Planned" and c["status"] == "True" for c in (i.get("status") or {}).get("conditions") or []
        )
    }


def _audit(cluster: Cluster, since: int = 0) -> list[dict[str, Any]]:
    lines = cluster.state.audit_log.read_text().splitlines()[since:]
    account = f"system:serviceaccount:{LEASE_NAMESPACE}:{ACCOUNT}"
    return [e for e in map(json.loads, lines) if e["user"]["username"] == account]


def _audit_lines(cluster: Cluster) -> int:
    return len(cluster.state.audit_log.read_text().splitlines()) if cluster.state.audit_log.exists() else 0


def test_one_leader_reconciles_the_standby_reports_not_ready_and_only_the_leader_writes(
    elect_cluster: Cluster, kubeconfig: Path
) -> None:
    namespace = _namespace(elect_cluster)
    seen = _audit_lines(elect_cluster)
    with candidates(kubeconfig, namespace) as running:
        leader = eventually(lambda: _holder(elect_cluster), timeout=30)
        (standby,) = [n for n in running if n != leader]
        eventually(lambda: running[leader].readiness()[0] == 200, timeout=30)
        # The standby reads the Lease every retry period: until its first read after the leader took it, it says
        # the Lease is not held yet (also a 503). Its answer once it has seen the holder:
        code, text = eventually(
            lambda: (answer := running[standby].readiness())[0] and "not held yet" not in answer[1] and answer,
            timeout=30,
        )
        assert code == 503 and f"held by {leader}" in text, (code, text)
        names = {f"md-{i}" for i in range(5)}
        for name in sorted(names):
            _create(elect_cluster, namespace, name)
        eventually(lambda: _planned(elect_cluster, namespace) == names, timeout=60)
        time.sleep(6)  # a resync pass and a few renewals more
        assert running[standby].process.poll() is None and running[leader].process.poll() is None
    audit = _audit(elect_cluster, seen)
    agents = {e["userAgent"] for e in audit}
    assert user_agent(leader) in agents and user_agent(standby) in agents, agents
    # A request the server refused changed nothing: when the Lease does not exist yet, both candidates read it
    # (404) and create it, as client-go's do, and the second create is answered 409. Those two answers are the only
    # refusals the standby may get: whichever candidate reads first is told 404, the standby as well as the leader.
    accepted = [e for e in audit if e["responseStatus"]["code"] < 400]
    writers = {e["userAgent"] for e in accepted if e["verb"] in WRITES}
    assert writers == {user_agent(leader)}, writers
    asked = {(e["verb"], e["objectRef"]["resource"]) for e in accepted if e["userAgent"] == user_agent(standby)}
    assert asked == {("get", "leases")}, asked
    refused = {
        (e["verb"], e["objectRef"]["resource"], e["responseStatus"]["code"])
        for e in audit
        if e["userAgent"] == user_agent(standby) and e["responseStatus"]["code"] >= 400
    }
    assert refused <= {("get", "leases", 404), ("create", "leases", 409)}, refused


def test_a_leader_killed_mid_burst_is_replaced_within_the_lease_and_nothing_is_done_twice(
    elect_cluster: Cluster, kubeconfig: Path
) -> None:
    namespace = _namespace(elect_cluster)
    names = [f"burst-{i:02d}" for i in range(60)]
    with candidates(kubeconfig, namespace) as running:
        leader = eventually(lambda: _holder(elect_cluster), timeout=30)
        (standby,) = [n for n in running if n != leader]
        eventually(lambda: running[leader].readiness()[0] == 200, timeout=30)
        for name in names[:30]:
            _create(elect_cluster, namespace, name)
        running[leader].process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        for name in names[30:]:
            _create(elect_cluster, namespace, name)
        eventually(lambda: _planned(elect_cluster, namespace) == set(names), timeout=90, interval=0.5)
        planned_after = time.monotonic() - killed
        assert _holder(elect_cluster) == standby
    assert planned_after <= LEASE_SECONDS + 10, f"the last deployment was planned {planned_after:.1f} s after the kill"
    deployments = client.AppsV1Api(elect_cluster.api).list_namespaced_deployment(namespace).items
    owners = sorted(d.metadata.labels[LABEL_DEPLOYMENT] for d in deployments)
    assert owners == names, "exactly one Deployment per ModelDeployment"


def test_a_stopped_leader_releases_the_lease_and_the_standby_takes_over_within_seconds(
    elect_cluster: Cluster, kubeconfig: Path
) -> None:
    namespace = _namespace(elect_cluster)
    with candidates(kubeconfig, namespace) as running:
        leader = eventually(lambda: _holder(elect_cluster), timeout=30)
        (standby,) = [n for n in running if n != leader]
        eventually(lambda: running[leader].readiness()[0] == 200, timeout=30)
        running[leader].process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        eventually(
            lambda: _holder(elect_cluster) == standby and running[standby].readiness()[0] == 200,
            timeout=20,
            interval=0.05,
        )
        handed_over = time.monotonic() - stopped
        assert running[leader].process.wait(20) == 0, running[leader].log.read_text()[-2000:]
        _create(elect_cluster, namespace, "after")
        eventually(lambda: _planned(elect_cluster, namespace) == {"after"}, timeout=30)
    assert handed_over < 5, f"the hand-over took {handed_over:.1f} s"
    assert "released the Lease" in running[leader].log.read_text()


def test_the_stop_hook_runs_once_the_controller_stopped_writing_not_after_kopfs_watches_wound_down(
    elect_cluster: Cluster,
) -> None:
    """Where a leader releases its Lease. kopf gives each task still running at a stop a 5 s grace: a request it
    was retrying when SIGTERM came (seen in CI: a stop 0.3 s after the leader took the Lease, during kopf's
    discovery) held the release back 5 s. Those tasks only watch; our threads are what write."""
    namespace = _namespace(elect_cluster)
    context = OperatorContext.from_kubeconfig(str(elect_cluster.state.kubeconfig), resync_seconds=600)
    stop, ready = threading.Event(), threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []
    hooked: list[tuple[float, list[str]]] = []

    def on_stopped() -> None:
        hooked.append((time.monotonic(), [t.name for t in context.threads if t.is_alive()]))

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        await run_kopf(context, [namespace], stop, ready, on_stopped=on_stopped)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    assert len(context.threads) > 1
    # A task of the operator's loop that is still running at the stop, as that retried request was.
    asyncio.run_coroutine_threadsafe(asyncio.sleep(60), loops[0])
    stopped = time.monotonic()
    stop.set()
    thread.join(30)
    wound_down = time.monotonic() - stopped
    assert not thread.is_alive()
    assert wound_down >= 4, f"kopf wound down in {wound_down:.1f} s: no task was left running to wait for"
    assert len(hooked) == 1, hooked
    at, alive = hooked[0]
    assert alive == [], f"the hook ran while {alive} could still write"
    assert at - stopped < 2, f"the hook ran {at - stopped:.1f} s after the stop (kopf wound down in {wound_down:.1f} s)"
