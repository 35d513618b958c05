"""Run one sandbox cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK on 127.0.0.1.

Every process is started in its own session with its pid, port, command, health URL and log file recorded
under the cluster's folder, so `down` stops exactly what `up` started, a folder that is up cannot be started
twice, and a stopped cluster can be started again with its etcd data (a member outage and its return).
The Karmada control plane (karmada.py) is run the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from autoglm.sandbox.build import SandboxError
from autoglm.sandbox.pki import CertificateAuthority, Credential, service_account_keys, write_kubeconfig

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
STATE_FILE = "state.json"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# KWOK leaves pods with this annotation alone: the pods of a node in an outage (see nodes.py).
OUTAGE_ANNOTATION = "autoglm.io/node-outage"
# A kubelet's default Lease: 40 s, renewed every 10 s; the node lifecycle controller's grace period (50 s by
# default) keeps Kubernetes' ratio to it, so a shorter Lease (for scale runs or quick outage tests) stays sound.
NODE_LEASE_SECONDS = 40
# How often the HPA controller syncs every HPA: Kubernetes' default. Each sync of an HPA whose metrics are not
# served (none are, here) costs discovery calls, a status write and a Warning Event.
HPA_SYNC_SECONDS = 15
GRACE_PER_LEASE = 1.25


# The API server of each kind of control plane.
APISERVER = {"kubernetes": "kube-apiserver", "karmada": "karmada-apiserver"}


@dataclass
class ClusterState:
    """What `up` recorded: enough for `status`, `down`, `stop` and `start` in a later process."""

    name: str
    directory: str
    kind: str = "kubernetes"
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)
    # component -> argv (without the binary) and health URL, in start order: how to start it again.
    commands: dict[str, list[str]] = field(default_factory=dict)
    health: dict[str, str] = field(default_factory=dict)
    nodes: int = 0
    node_lease_seconds: int = NODE_LEASE_SECONDS

    @property
    def kubeconfig(self) -> Path:
        return Path(self.directory) / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        """What ServiceAccounts asked of the API server and what it answered (JSON lines, Metadata level)."""
        return Path(self.directory) / "audit.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports[APISERVER[self.kind]]}"

    @property
    def ca(self) -> Path:
        return Path(self.directory) / "pki" / "ca.crt"

    @property
    def admin(self) -> Credential:
        pki = Path(self.directory) / "pki"
        return Credential(pki / "admin.crt", pki / "admin.key")

    def running(self) -> list[str]:
        """The recorded components whose process still runs our binary."""
        return [c for c, pid in self.pids.items() if process_alive(pid, self.binaries.get(c))]

    def api_client(self) -> Any:
        """A Kubernetes client for this cluster's admin kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def save(self) -> None:
        (Path(self.directory) / STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> ClusterState | None:
        path = directory / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.exists() else None


_PORTS_GIVEN: set[int] = set()
_PORTS_LOCK = threading.Lock()
LOWEST_PORT = 20000
PORTS_ENV = "AUTOGLM_SANDBOX_PORTS"


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral range (the local ports of outgoing connections) begins."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_range() -> tuple[int, int]:
    """Where sandbox ports are drawn from: $AUTOGLM_SANDBOX_PORTS (`LOW-HIGH`) when set, so that sandboxes
    started by separate processes at once (two demos, a test run beside a demo) never draw the same port;
    otherwise from 20000 to the kernel's ephemeral range."""
    text = os.environ.get(PORTS_ENV, "")
    if text:
        low, _, high = text.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
            raise SandboxError(f"${PORTS_ENV}={text!r}: expected LOW-HIGH, two ports with 1024 <= LOW < HIGH")
        return int(low), int(high)
    return LOWEST_PORT, min(_ephemeral_low(), 32768)


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range. bind(0) hands out a port from that
    range, which any outgoing connection (a client of another component) may take before the server binds
    it: "address already in use" at start-up, seen here. Ports given once are not given again by this
    process, so components started together never share one."""
    low, high = port_range()
    with _PORTS_LOCK:
        for _ in range(500):
            port = random.randrange(low, high)
            if port in _PORTS_GIVEN:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _PORTS_GIVEN.add(port)
            return port
    with socket.socket() as s:  # the low range is exhausted: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_alive(pid: int, binary: str | None = None) -> bool:
    """The pid runs, and (when given) runs `binary`: a reused pid is not ours."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if binary:
        try:
            return os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(binary)
        except OSError:
            return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


def _https_ok(url: str, ca: Path, cred: Credential | None, timeout: float = 2.0) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    if cred:
        context.load_cert_chain(str(cred.cert), str(cred.key))
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when the URL answers 200 within `timeout`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = ""
    if log and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-10:])
    raise SandboxError(f"{what} did not become ready within {timeout:.0f} s (log: {log}){tail}")


class Launcher:
    """Starts a control plane's processes and records how, so they can be stopped and started again."""

    def __init__(self, state: ClusterState, binaries: Mapping[str, Path]):
        self.state = state
        self.binaries = binaries
        self.dir = Path(state.directory)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)

    def log(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    def start(self, component: str, args: list[str], health: str | None = None, binary: str | None = None) -> None:
        """Start `component` (the program `binary`, by default the component's own name) in its own session."""
        self.state.binaries[component] = str(self.binaries[binary or component])
        self.state.commands[component] = args
        if health:
            self.state.health[component] = health
        self._spawn(component)

    def _spawn(self, component: str) -> None:
        with self.log(component).open("ab") as out:
            proc = subprocess.Popen(
                [self.state.binaries[component], *self.state.commands[component]],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                start_new_session=True,
            )
        self.state.pids[component] = proc.pid
        self.state.save()

    def wait(self, component: str, timeout: float) -> None:
        """Until the component answers its health URL (or, without one, its process runs)."""
        wait_until(
            f"{self.state.name}: {component}", lambda: healthy(self.state, component), timeout, self.log(component)
        )

    def etcd(self, timeout: float) -> None:
        """Start this control plane's etcd (data in DIR/etcd-data) and wait for it."""
        port, peer = self.state.ports["etcd"], self.state.ports["etcd-peer"]
        self.start(
            "etcd",
            [
                f"--name={self.state.name}",
                f"--data-dir={self.dir / 'etcd-data'}",
                f"--listen-client-urls=http://127.0.0.1:{port}",
                f"--advertise-client-urls=http://127.0.0.1:{port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster={self.state.name}=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
            health=f"http://127.0.0.1:{port}/health",
        )
        self.wait("etcd", timeout)

    def restart(self, timeout: float) -> None:
        """Start every recorded process again, in the recorded order, each once the one before is healthy."""
        for component in self.state.commands:
            self._spawn(component)
            self.wait(component, timeout)


def healthy(state: ClusterState, component: str) -> bool:
    """The component's health URL answers 200 (its own API server is asked as admin); without one, it runs."""
    pid = state.pids.get(component)
    if not pid or not process_alive(pid, state.binaries.get(component)):
        return False
    url = state.health.get(component)
    if url is None:
        return True
    if url.startswith("http://"):
        return http_ok(url)
    if url.startswith(state.server):
        return _https_ok(url, state.ca, state.admin)
    return _https_ok(url, state.ca, None)


def prepare_directory(name: str, directory: Path, kind: str = "kubernetes") -> ClusterState:
    """A fresh state for a control plane in `directory`; refuses a folder whose processes still run."""
    existing = ClusterState.load(directory)
    if existing and existing.running():
        raise SandboxError(f"cluster {name} in {directory} is already up; run `autoglm sandbox down` first")
    directory.mkdir(parents=True, exist_ok=True)
    # A folder that is down starts from scratch: stale etcd data would resurrect the last run's objects.
    shutil.rmtree(directory / "etcd-data", ignore_errors=True)
    state = ClusterState(name=name, directory=str(directory.resolve()), kind=kind)
    state.save()
    return state


def admin_client(state: ClusterState) -> Any:
    """A Kubernetes client for the control plane's admin kubeconfig."""
    return state.api_client()


def server_side_apply(api: Any, objects: list[dict[str, Any]], manager: str = "autoglm-sandbox") -> None:
    """Create or update each object with server-side apply, in order."""
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
    for obj in objects:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        meta = obj["metadata"]
        resource.server_side_apply(
            body=obj, name=meta["name"], namespace=meta.get("namespace"), field_manager=manager, force_conflicts=True
        )


def _pki(directory: Path, name: str) -> dict[str, Any]:
    pki = directory / "pki"
    ca = CertificateAuthority(pki, f"{name}-ca")
    return {
        "ca": ca.cert_path,
        "serving": ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ips=("127.0.0.1",),
            server=True,
        ),
        "admin": ca.issue("admin", "autoglm-sandbox-admin", "system:masters"),
        # Components run with admin rights: without per-controller service accounts the bootstrap roles of
        # system:kube-controller-manager are too narrow, and this is a local test cluster.
        "kcm": ca.issue("kube-controller-manager", "system:kube-controller-manager", "system:masters"),
        "scheduler": ca.issue("kube-scheduler", "system:kube-scheduler", "system:masters"),
        "kwok": ca.issue("kwok", "kwok-controller", "system:masters"),
        "sa": service_account_keys(pki),
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _stages(directory: Path, cold_start_seconds: float) -> Path:
    text = resources.files("autoglm.sandbox").joinpath("kwok-stages.yaml").read_text(encoding="utf-8")
    path = directory / "kwok-stages.yaml"
    path.write_text(text.replace("COLD_START_MS", str(int(cold_start_seconds * 1000))))
    return path


# With `audit`, requests made with ServiceAccount tokens are audited: the components and tests use certificates,
# so the log holds what an operator running under its chart's ServiceAccount did, for the least-privilege test.
# Off by default: an audited API server answers every request more slowly (measured at 5,000 nodes, 20 creates
# a second: the bare kopf peer's p50 doubled), which the scale benchmarks must not pay.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
"""


def start_cluster(
    name: str,
    directory: Path,
    binaries: Mapping[str, Path],
    cold_start_seconds: float = 0.0,
    timeout: float = 60.0,
    node_lease_seconds: int = NODE_LEASE_SECONDS,
    hpa_sync_seconds: float = HPA_SYNC_SECONDS,
    audit: bool = False,
    before_controllers: Callable[[ClusterState], None] | None = None,
) -> ClusterState:
    """Start one control plane; returns once kube-apiserver answers /readyz and the controllers are healthy.
    With `audit`, ServiceAccounts' requests are written to `state.audit_log`. `before_controllers` is called
    once the API server answers and before the controllers start: CRDs made there are watched by the garbage
    collector from its first discovery (it looks for new kinds only every 30 s, which a test deleting a custom
    resource right after installing its CRD waits for)."""
    state = prepare_directory(name, directory)
    state.node_lease_seconds = node_lease_seconds
    state.ports = {c: free_port() for c in COMPONENTS}
    state.ports["etcd-peer"] = free_port()
    state.save()
    certs = _pki(directory, name)
    launch = Launcher(state, binaries)
    server = state.server
    kubeconfigs = {
        who: write_kubeconfig(directory / "pki" / f"{who}.kubeconfig", name, server, certs["ca"], certs[who])
        for who in ("kcm", "scheduler", "kwok")
    }
    write_kubeconfig(state.kubeconfig, name, server, certs["ca"], certs["admin"])
    ports = state.ports

    launch.etcd(timeout)
    sa_key, sa_pub = certs["sa"]
    audit_flags = (
        [
            f"--audit-policy-file={_write(directory / 'audit-policy.yaml', AUDIT_POLICY)}",
            f"--audit-log-path={state.audit_log}",
            "--audit-log-maxbackup=1",
        ]
        if audit
        else []
    )
    launch.start(
        "kube-apiserver",
        [
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['kube-apiserver']}",
            f"--tls-cert-file={certs['serving'].cert}",
            f"--tls-private-key-file={certs['serving'].key}",
            f"--client-ca-file={certs['ca']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # Loopback addresses cannot be written into the kubernetes Service's endpoints.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={directory / 'pki'}",
            "--profiling=false",
            # Stopping: open watches (the operator's, a test's) are cut after 2 s instead of holding the server
            # for its 60 s shutdown timeout (past the stop's grace, a SIGKILL).
            "--shutdown-send-retry-after=true",
            *audit_flags,
        ],
        health=f"{server}/readyz",
    )
    launch.wait("kube-apiserver", timeout)
    if before_controllers is not None:
        before_controllers(state)

    common = ["--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"]
    launch.start(
        "kube-controller-manager",
        [
            f"--kubeconfig={kubeconfigs['kcm']}",
            f"--authentication-kubeconfig={kubeconfigs['kcm']}",
            f"--authorization-kubeconfig={kubeconfigs['kcm']}",
            f"--secure-port={ports['kube-controller-manager']}",
            f"--service-account-private-key-file={sa_key}",
            f"--root-ca-file={certs['ca']}",
            "--use-service-account-credentials=false",
            f"--horizontal-pod-autoscaler-sync-period={round(hpa_sync_seconds * 1000)}ms",
            f"--node-monitor-grace-period={math.ceil(node_lease_seconds * GRACE_PER_LEASE)}s",
            "--controllers=*",
            *common,
        ],
        health=f"https://127.0.0.1:{ports['kube-controller-manager']}/healthz",
    )
    launch.start(
        "kube-scheduler",
        [
            f"--kubeconfig={kubeconfigs['scheduler']}",
            f"--authentication-kubeconfig={kubeconfigs['scheduler']}",
            f"--authorization-kubeconfig={kubeconfigs['scheduler']}",
            f"--secure-port={ports['kube-scheduler']}",
            *common,
        ],
        health=f"https://127.0.0.1:{ports['kube-scheduler']}/healthz",
    )
    launch.start(
        "kwok",
        [
            f"--kubeconfig={kubeconfigs['kwok']}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            f"--config={_stages(directory, cold_start_seconds)}",
            f"--node-lease-duration-seconds={node_lease_seconds}",
            f"--disregard-status-with-annotation-selector={OUTAGE_ANNOTATION}=true",
            "--cidr=10.0.0.1/16",
            "--node-ip=10.255.0.1",
            f"--server-address=127.0.0.1:{ports['kwok']}",
        ],
        health=f"http://127.0.0.1:{ports['kwok']}/healthz",
    )
    for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
        launch.wait(component, timeout)
    return state


def restart_cluster(directory: Path, timeout: float = 60.0) -> ClusterState:
    """Start a stopped control plane again with its recorded commands, ports, certificates and etcd data."""
    state = ClusterState.load(directory)
    if state is None or not state.commands:
        raise SandboxError(f"no sandbox control plane was started in {directory}")
    if state.running():
        raise SandboxError(f"{state.name} is running ({', '.join(state.running())}); stop it first")
    missing = [b for b in state.binaries.values() if not Path(b).exists()]
    if missing:
        raise SandboxError(f"{state.name}: {', '.join(missing)} no longer exist; run `autoglm sandbox build`")
    Launcher(state, {}).restart(timeout)
    return state


def stop_cluster(directory: Path, grace: float = 10.0) -> list[str]:
    """Stop the processes recorded for this cluster (newest first); returns what was stopped."""
    return stop_clusters([directory], grace).get(directory, [])


def stop_clusters(directories: list[Path], grace: float = 10.0) -> dict[Path, list[str]]:
    """Stop several clusters at once: every process is signalled first and all share one grace period, so a
    fleet stops in one grace, not one per cluster."""
    states = {d: s for d in directories if (s := ClusterState.load(d)) is not None}
    stopped: dict[Path, list[str]] = {}
    for directory, state in states.items():
        stopped[directory] = []
        for component in reversed(list(state.pids)):
            pid = state.pids[component]
            if process_alive(pid, state.binaries.get(component)):
                os.killpg(pid, signal.SIGTERM)
                stopped[directory].append(component)
    deadline = time.monotonic() + grace
    for directory, components in stopped.items():
        state = states[directory]
        for component in components:
            pid = state.pids[component]
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_alive(pid):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        state.pids = {}
        state.save()
    return stopped


@dataclass(frozen=True)
class ComponentStatus:
    cluster: str
    component: str
    pid: int | None
    port: int | None
    running: bool
    healthy: bool


def cluster_status(directory: Path) -> list[ComponentStatus]:
    state = ClusterState.load(directory)
    if state is None:
        return []
    out = []
    for component in state.commands:
        pid = state.pids.get(component)
        running = bool(pid) and process_alive(pid or 0, state.binaries.get(component))
        ok = running and healthy(state, component)
        out.append(ComponentStatus(state.name, component, pid, state.ports.get(component), running, ok))
    return out


STORAGE_CLASS = "sandbox"
PREMADE_VOLUMES = 128


def provide_storage(state: ClusterState, volumes: int = PREMADE_VOLUMES) -> None:
    """A default StorageClass with pre-made volumes, so PersistentVolumeClaims bind as on a real cluster.

    There is no storage provisioner: the volumes are hostPath PVs nobody mounts (KWOK runs no containers).
    Claims bind when their first pod is scheduled (WaitForFirstConsumer, as local and most CSI classes do): the
    scheduler binds one itself instead of finding it unbound, parking the pod as unschedulable and, when the
    claim's binding event is missed, not trying it again for five minutes (seen: a member's pods Pending with
    no node while its claim was Bound).
    """
    from kubernetes import client

    api_client = state.api_client()
    storage: Any = {
        "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        # As the clouds' and most CSI drivers' default classes do: a bound claim may grow (the operator grows the
        # namespace's model cache for a larger model). Nothing resizes these volumes; the claims' requests grow.
        "allowVolumeExpansion": True,
    }
    client.StorageV1Api(api_client).create_storage_class(storage)
    core = client.CoreV1Api(api_client)
    for i in range(volumes):
        pv: Any = {
            "metadata": {"name": f"sandbox-pv-{i:03d}"},
            "spec": {
                "capacity": {"storage": "10Ti"},
                "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                "storageClassName": STORAGE_CLASS,
                "persistentVolumeReclaimPolicy": "Delete",
                "hostPath": {"path": f"/tmp/autoglm-sandbox-pv-{i:03d}"},
            },
        }
        core.create_persistent_volume(pv)
