"""One hour of churn on a leader-elected operator pair across three member clusters, beside the bare kopf peer.

    python benchmarks/soak.py [--minutes 60] [--rate 2] [--outage-every 600] [--outage-seconds 60]
                              [--kill-every 900] [--no-peer] [--out benchmarks/results/soak.txt]

A host sandbox cluster with three members joined in direct mode (gpu: H100 nodes, ascend: 910B nodes, edge:
CPU nodes) and two `autoglm run --leader-elect --no-local` processes on the host, restarted when they die as a
Deployment would. ModelDeployments are created, updated (precision, replicas) and deleted at `--rate` operations a
second: mostly creates for the first 12 minutes (about 1,000 live at the peak), then a third each. Every
`--outage-every` seconds one member is stopped for `--outage-seconds` (gpu, ascend, edge in turn); every
`--kill-every` seconds the leader is SIGKILLed. The peer (benchmarks/peer_operator.py, the same bare kopf operator
as reconcile_scale.py, with as many workers as ours) gets the same operations in its own namespace of the host.

Every 5 minutes: the resident memory of each process, live deployments, how many (deployment, member) pairs the
members hold against what the statuses say, the latency of the operations finished in the window (create ->
Planned=True, update -> observedGeneration, delete -> gone) at p50 and p99, deletions stuck for more than 2
minutes. At the end, once the churn stops and everything settles: leftovers on the members (objects of no
deployment), duplicate Deployments, stuck deletions, and every status checked against the members.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from rich.console import Console
from rich.table import Table

from autoglm.core.render import LABEL_DEPLOYMENT, LABEL_REVISION
from autoglm.sandbox import fleet
from autoglm.shell.clusters import ClusterClient, install_crds
from autoglm.shell.members import flatten_kubeconfig, join

sys.path.insert(0, str(Path(__file__).resolve().parent))
from propagation import member_nodes
from reconcile_scale import percentile
from reconcile_scale import rss_mib as process_rss_mib

HERE = Path(__file__).resolve().parent
GROUP, VERSION, PLURAL = "autoglm.io", "v1alpha1", "modeldeployments"
MEMBERS = ("gpu", "ascend", "edge")
OURS, PEER = "soak", "peer"
LEASE_NAMESPACE = "autoglm-system"
WINDOW = 300.0
STUCK_SECONDS = 120.0
# Where a deployment goes, in turn: each member alone, and gpu and ascend divided.
# The orphan collector's pass (the operator's default is 300 s): within the 5 minutes the end waits to settle.
ORPHAN_INTERVAL = 120
PLACEMENTS: list[list[str]] = [["gpu"], ["ascend"], ["edge"], ["gpu", "ascend"]]


def rss_mib(pid: int) -> float:
    """reconcile_scale's figure, 0 for a process already gone (a killed leader sampled after its death)."""
    try:
        return process_rss_mib(pid)
    except OSError:
        return 0.0


@dataclass
class Op:
    kind: str  # create, update, delete
    name: str
    started: float
    generation: int = 0
    finished: float | None = None


@dataclass
class Tracker:
    """What one namespace's operations asked for and when each was seen done (from a watch)."""

    namespace: str
    peer: bool = False
    ops: list[Op] = field(default_factory=list)
    waiting: dict[str, list[Op]] = field(default_factory=dict)  # name -> its operations not seen done yet
    live: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)
            self.waiting.setdefault(op.name, []).append(op)
            if op.kind == "delete":
                self.live.discard(op.name)
            elif op.kind == "create":
                self.live.add(op.name)

    def seen(self, event: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        now = time.monotonic()
        status = body.get("status") or {}
        planned = any(c["type"] == "Planned" and c["status"] == "True" for c in status.get("conditions") or [])
        with self.lock:
            left = []
            for op in self.waiting.get(name, []):
                if op.kind == "delete":
                    done = event == "DELETED"
                elif op.kind == "create":
                    done = planned
                else:
                    done = (status.get("observedGeneration") or 0) >= op.generation
                if done:
                    op.finished = now
                elif event != "DELETED":  # gone before it was seen done: it no longer waits
                    left.append(op)
            if left:
                self.waiting[name] = left
            else:
                self.waiting.pop(name, None)

    def window(self, start: float, end: float) -> list[float]:
        with self.lock:
            return [o.finished - o.started for o in self.ops if o.finished is not None and start <= o.finished < end]


def watch_namespace(api: client.ApiClient, tracker: Tracker, stop: threading.Event) -> None:
    """Every event of the namespace's ModelDeployments, resumed from the last resourceVersion seen (no gaps)."""
    custom = client.CustomObjectsApi(api)
    version = ""
    while not stop.is_set():
        stream = watch.Watch()
        try:
            for event in stream.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                tracker.namespace,
                PLURAL,
                timeout_seconds=60,
                resource_version=version,
            ):
                tracker.seen(event["type"], event["object"])
                version = event["object"]["metadata"]["resourceVersion"]
                if stop.is_set():
                    stream.stop()
        except client.ApiException as exc:
            if exc.status == 410:  # too old: the tracker is told only what happens from now on
                print(f"watch of {tracker.namespace}: resourceVersion too old; events were lost", flush=True)
                version = ""
        except Exception as exc:  # a dropped connection is made again; the host itself never stops here
            print(f"watch of {tracker.namespace}: {type(exc).__name__}; again", flush=True)
            time.sleep(1)


class Candidates:
    """The operator pair: restarted when one dies (a Deployment's controller would); the leader is read from the
    Lease."""

    def __init__(self, kubeconfig: str, log_dir: Path):
        self.kubeconfig, self.log_dir = kubeconfig, log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[int, float] = {}  # pid -> when it started (monotonic)
        self.restarts: dict[str, int] = defaultdict(int)
        self.identities: dict[str, str] = {}  # the Lease's holder name -> the slot it runs in
        self._stop = threading.Event()
        for name in ("a", "b"):
            self._start(name)
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()

    def _start(self, name: str) -> None:
        # A restarted process is a new pod (a new name), as the ReplicaSet makes after a pod is killed: it joins as
        # a standby instead of taking its own Lease back at once.
        identity = f"{name}{self.restarts[name] or ''}"
        command = [
            *("autoglm", "run", "--kubeconfig", self.kubeconfig, "-n", OURS, "--no-local", "--leader-elect"),
            *("--leader-election-namespace", LEASE_NAMESPACE, "--liveness", "", "--metrics-port", "0"),
            *("--member-heartbeat", "5", "--resync", "30", "--orphan-interval", str(ORPHAN_INTERVAL)),
        ]
        log = (self.log_dir / f"operator-{identity}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAME": identity}
        )
        self.identities[identity] = name
        self.started_at[self.processes[name].pid] = time.monotonic()

    def _supervise(self) -> None:
        while not self._stop.wait(1):
            for name, process in list(self.processes.items()):
                if process.poll() is not None:
                    self.restarts[name] += 1
                    time.sleep(2)  # a kubelet's restart is not instant either
                    self._start(name)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def holder(api: client.ApiClient) -> str:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease("open-autoglm", LEASE_NAMESPACE)
    except client.ApiException:
        return ""
    return str(lease.spec.holder_identity or "")


def orphans_removed(log_dir: Path) -> list[str]:
    """What the operators' orphan collector removed (each removal is one log line: `removed MEMBER:KIND/NS/NAME`)."""
    found = []
    for log in sorted(log_dir.glob("operator-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "no longer exists" in line and "] removed " in line:
                found.append(line.split("] removed ", 1)[1].split(": its ", 1)[0])
    return found


class Churn:
    """The operations, mirrored on ours and the peer's namespaces."""

    def __init__(self, api: client.ApiClient, trackers: list[Tracker], ramp_seconds: float, seed: int = 1):
        self.custom = client.CustomObjectsApi(api)
        self.trackers = trackers
        self.ramp_seconds = ramp_seconds
        self.rng = random.Random(seed)
        self.counter = 0
        self.state: dict[str, dict[str, Any]] = {}  # live name -> its spec values
        self.errors = 0

    def step(self, elapsed: float) -> None:
        weights = (0.85, 0.10, 0.05) if elapsed < self.ramp_seconds else (1 / 3, 1 / 3, 1 / 3)
        kind = self.rng.choices(("create", "update", "delete"), weights)[0]
        if kind != "create" and not self.state:
            kind = "create"
        if kind == "create":
            name = f"md-{self.counter:05d}"
            placement = PLACEMENTS[self.counter % len(PLACEMENTS)]
            self.counter += 1
            self.state[name] = {"precision": "auto", "min": 1, "placement": placement}
        else:
            name = self.rng.choice(sorted(self.state))
        for tracker in self.trackers:
            self._apply(tracker, kind, name)
        if kind == "delete":
            del self.state[name]

    def _apply(self, tracker: Tracker, kind: str, name: str) -> None:
        values = self.state[name]
        started = time.monotonic()
        try:
            if kind == "create":
                body = {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ModelDeployment",
                    "metadata": {"name": name},
                    "spec": {
                        "model": {"name": "glm-4-9b-chat"},
                        "modelCache": {"enabled": False},
                        "replicas": {"min": 1, "max": 2},
                        "resources": {"contextLength": 4096, "maxConcurrentSequences": 4},
                        "placement": {
                            "clusters": values["placement"],
                            "failover": {"tolerationSeconds": 30, "rebalanceSeconds": 30},
                        },
                    },
                }
                tracker.start(Op("create", name, started))
                self.custom.create_namespaced_custom_object(GROUP, VERSION, tracker.namespace, PLURAL, body)
            elif kind == "update":
                if tracker is self.trackers[0]:  # one change of values, applied to both namespaces
                    if self.rng.random() < 0.5:
                        values["precision"] = "bf16" if values["precision"] == "auto" else "auto"
                    else:
                        values["min"] = 3 - values["min"]
                patch = {"spec": {"precision": values["precision"], "replicas": {"min": values["min"], "max": 2}}}
                done = self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, tracker.namespace, PLURAL, name, patch
                )
                if not tracker.peer:  # the bare peer does nothing on an update: nothing to wait for
                    tracker.start(Op("update", name, started, generation=done["metadata"]["generation"]))
            else:
                tracker.start(Op("delete", name, started))
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, tracker.namespace, PLURAL, name)
        except client.ApiException as exc:
            self.errors += 1
            print(f"{tracker.namespace}: {kind} {name}: {exc.status} {exc.reason}", flush=True)


@dataclass
class Consistency:
    held: int  # (deployment, member) pairs the members hold
    said: int  # (deployment, member) pairs the statuses say serve (desired > 0)
    differing: int  # pairs on one side only
    duplicates: int  # (deployment, member, revision) with more than one Deployment
    rolling: int  # (deployment, member) pairs running two revisions: a coordinated rollout in flight
    leftovers: list[str]  # member:Deployment of ModelDeployments that no longer exist
    stuck: list[str]  # deployments deleted more than STUCK_SECONDS ago and still there
    pairs: list[str] = field(default_factory=list)  # the differing pairs: "held" or "said" only, deployment@member


def consistency(host: client.ApiClient, members: dict[str, client.ApiClient]) -> Consistency:
    items = client.CustomObjectsApi(host).list_namespaced_custom_object(GROUP, VERSION, OURS, PLURAL)["items"]
    live = {i["metadata"]["name"] for i in items}
    now = datetime.now(UTC)
    stuck = sorted(
        i["metadata"]["name"]
        for i in items
        if i["metadata"].get("deletionTimestamp")
        and (now - datetime.fromisoformat(i["metadata"]["deletionTimestamp"].replace("Z", "+00:00"))).total_seconds()
        > STUCK_SECONDS
    )
    said = {
        (i["metadata"]["name"], c["name"])
        for i in items
        if not i["metadata"].get("deletionTimestamp")
        for c in (i.get("status") or {}).get("clusters") or []
        if c.get("desired", 0) > 0
    }
    counts: dict[tuple[str, str], int] = defaultdict(int)
    revisions: dict[tuple[str, str], list[str]] = defaultdict(list)
    leftovers = []
    for member, api in members.items():
        try:
            deployments = client.AppsV1Api(api).list_namespaced_deployment(OURS).items
        except Exception:  # a member stopped for its outage: not counted this time
            continue
        for d in deployments:
            owner = (d.metadata.labels or {}).get(LABEL_DEPLOYMENT)
            if owner not in live:
                leftovers.append(f"{member}:{d.metadata.name}")
            else:
                counts[(owner, member)] += 1
                revisions[(owner, member)].append((d.metadata.labels or {}).get(LABEL_REVISION, ""))
    held = set(counts)
    duplicates = sum(len(r) != len(set(r)) for r in revisions.values())
    rolling = sum(len(set(r)) > 1 for r in revisions.values())
    pairs = [f"held only {d}@{m}" for d, m in sorted(held - said)]
    pairs += [f"said only {d}@{m}" for d, m in sorted(said - held)]
    return Consistency(len(held), len(said), len(held ^ said), duplicates, rolling, leftovers, stuck, pairs)


def still_waiting(host: client.ApiClient, tracker: Tracker, limit: int = 20) -> list[str]:
    """The operations not seen done, told apart: a create or update the operator answered for its generation with
    Planned=False (e.g. no room on the members) has its answer, just not the one the tracker waits for; counted by
    reason. Each one without an answer gets a line with what its object's status says now."""
    with tracker.lock:
        waiting = [op for ops in tracker.waiting.values() for op in ops]
    custom = client.CustomObjectsApi(host)
    answered: dict[str, int] = defaultdict(int)
    lines = []
    now = time.monotonic()
    for op in sorted(waiting, key=lambda o: o.started):
        try:
            body = custom.get_namespaced_custom_object(GROUP, VERSION, tracker.namespace, PLURAL, op.name)
        except client.ApiException as exc:
            lines.append(f"{op.kind} {op.name} ({now - op.started:.0f} s ago): the object answers {exc.status}")
            continue
        meta, status = body["metadata"], body.get("status") or {}
        planned = next((c for c in status.get("conditions") or [] if c["type"] == "Planned"), None)
        current = (status.get("observedGeneration") or 0) >= (meta.get("generation") or 0)
        if op.kind != "delete" and planned is not None and planned["status"] == "False" and current:
            answered[str(planned.get("reason"))] += 1
            continue
        said = (
            f"Planned={planned['status']} {planned.get('reason')}: {str(planned.get('message'))[:90]}"
            if planned
            else "no Planned condition"
        )
        lines.append(
            f"{op.kind} {op.name} ({now - op.started:.0f} s ago): generation {meta.get('generation')}, observed "
            f"{status.get('observedGeneration')}, deleting {bool(meta.get('deletionTimestamp'))}; {said}"
        )
    summary = f"{sum(answered.values())} answered Planned=False for their generation {dict(answered)}"
    return [f"{summary}; {len(lines)} without an answer:", *lines[:limit]]


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=2.0, help="Operations a second, on each operator.")
    parser.add_argument("--ramp-minutes", type=float, default=12.0)
    parser.add_argument("--outage-every", type=float, default=600.0)
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument("--kill-every", type=float, default=900.0)
    parser.add_argument("--nodes", type=int, default=70, help="Accelerator nodes per member (8 devices each).")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--out", type=Path, help="Also write the report here.")
    parser.add_argument("--logs", type=Path, help="Keep the operators' logs in this folder.")
    args = parser.parse_args()
    console = Console(width=200, record=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        state_dir = Path(tmp)
        clusters = {
            "host": member_nodes("cpu.yaml", "cpu-spr-0", 1),
            "gpu": member_nodes("nvidia-h100.yaml", "h100-0", args.nodes),
            "ascend": member_nodes("huawei-ascend.yaml", "ascend-910b3-0", args.nodes),
            "edge": member_nodes("cpu.yaml", "cpu-spr-0", args.nodes),
        }
        states, _ = fleet.up(state_dir, clusters)
        try:
            run(args, state_dir, states, console)
        finally:
            fleet.down(state_dir)
    if args.out:
        args.out.write_text(console.export_text())


def run(args: argparse.Namespace, state_dir: Path, states: dict[str, Any], console: Console) -> None:
    kubeconfig = str(states["host"].kubeconfig)
    host = config.new_client_from_config(config_file=kubeconfig)
    members = {m: states[m].api_client() for m in MEMBERS}
    install_crds(host)
    core = client.CoreV1Api(host)
    for namespace in (OURS, PEER, LEASE_NAMESPACE):
        core.create_namespace({"metadata": {"name": namespace}})
    host_client = ClusterClient("host", host)
    for member in MEMBERS:
        path = states[member].kubeconfig
        join(host_client, member, flatten_kubeconfig(yaml.safe_load(path.read_text()), path.parent), {"site": member})
    ours = Tracker(OURS)
    trackers = [ours]
    peer_process = None
    if not args.no_peer:
        peer = Tracker(PEER, peer=True)
        trackers.append(peer)
        peer_process = subprocess.Popen(
            ["kopf", "run", str(HERE / "peer_operator.py"), "--standalone", "-n", PEER, "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "KUBECONFIG": kubeconfig},
        )
    stop = threading.Event()
    for tracker in trackers:
        threading.Thread(target=watch_namespace, args=(host, tracker, stop), daemon=True).start()
    logs = args.logs or state_dir
    logs.mkdir(parents=True, exist_ok=True)
    candidates = Candidates(kubeconfig, logs)
    while not holder(host):
        time.sleep(0.5)
    churn = Churn(host, trackers, args.ramp_minutes * 60)
    kills = f"the leader SIGKILLed every {args.kill_every / 60:.0f} min" if args.kill_every else "no leader killed"
    table = Table(
        title=f"soak: {args.minutes:.0f} min, {args.rate:g} operations/s on each operator, a member stopped for "
        f"{args.outage_seconds:.0f} s every {args.outage_every / 60:.0f} min, {kills}; members gpu/ascend/edge of "
        f"{args.nodes} nodes each (2-core machine)"
    )
    for column in (
        "min",
        "leader",
        "RSS a / b",
        "RSS peer",
        "live",
        "held / said (differ)",
        "ops",
        "p50",
        "p99",
        "peer p50",
        "peer p99",
        "stuck",
        "events",
    ):
        table.add_column(column, justify="right")
    started = time.monotonic()
    window_start, next_outage, next_kill = started, started + args.outage_every, started + args.kill_every
    outage: tuple[str, float] | None = None
    outages = 0
    notes: list[str] = []
    # name -> (minutes since that process started, pid, MiB, whether it held the Lease)
    rss_series: dict[str, list[tuple[float, int, float, bool]]] = defaultdict(list)
    tick = 1.0 / args.rate
    next_op = started
    try:
        while (now := time.monotonic()) - started < args.minutes * 60:
            if now >= next_op:
                churn.step(now - started)
                next_op += tick
            if outage is None and now >= next_outage:
                member = MEMBERS[outages % len(MEMBERS)]
                outages += 1
                fleet.stop(state_dir, member)
                outage = (member, now)
                notes.append(f"{(now - started) / 60:.1f} min: {member} stopped")
            if outage is not None and now - outage[1] >= args.outage_seconds:
                fleet.start(state_dir, outage[0])
                notes.append(f"{(time.monotonic() - started) / 60:.1f} min: {outage[0]} started")
                outage, next_outage = None, next_outage + args.outage_every
            if args.kill_every and now >= next_kill:
                leader = holder(host)
                if leader in candidates.identities:
                    candidates.processes[candidates.identities[leader]].send_signal(signal.SIGKILL)
                    notes.append(f"{(now - started) / 60:.1f} min: leader {leader} SIGKILLed")
                next_kill += args.kill_every
            if now - window_start >= WINDOW:
                report(table, args, started, window_start, now, host, members, candidates, peer_process, trackers)
                leader = candidates.identities.get(holder(host))
                for name, process in candidates.processes.items():
                    age = (now - candidates.started_at[process.pid]) / 60
                    rss_series[name].append((age, process.pid, rss_mib(process.pid), name == leader))
                if peer_process is not None:
                    peer_sample = ((now - started) / 60, peer_process.pid, rss_mib(peer_process.pid), True)
                    rss_series["peer"].append(peer_sample)
                window_start = now
            time.sleep(max(0.0, min(next_op, window_start + WINDOW) - time.monotonic()))
        if outage is not None:
            fleet.start(state_dir, outage[0])
        # Settle: every operation done and the members as the statuses say, or 5 minutes.
        churn_end = time.monotonic()
        deadline = churn_end + 300
        end = consistency(host, members)
        while time.monotonic() < deadline and (
            any(t.waiting for t in trackers) or end.differing or end.stuck or end.leftovers or end.rolling
        ):
            time.sleep(5)
            end = consistency(host, members)
        notes.append(f"settled {time.monotonic() - churn_end:.0f} s after the churn stopped")
        report(table, args, started, window_start, time.monotonic(), host, members, candidates, peer_process, trackers)
        console.print(table)
        for note in notes:
            console.print(f"  {note}")
        unfinished = {t.namespace: len(t.waiting) for t in trackers}
        console.print(
            f"end: {len(ours.live)} live; members hold {end.held} (deployment, member) pairs, statuses say "
            f"{end.said}, {end.differing} differ {end.pairs[:5]}; duplicate Deployments {end.duplicates}; "
            f"rollouts in flight "
            f"{end.rolling}; leftovers "
            f"{len(end.leftovers)} {end.leftovers[:5]}; stuck deletions {len(end.stuck)} {end.stuck[:5]}; "
            f"operations not seen done {unfinished}; "
            f"operator restarts {dict(candidates.restarts)}; API errors of the churn {churn.errors}; "
            f"objects the orphan collector removed {orphans_removed(candidates.log_dir)}"
        )
        for line in still_waiting(host, ours):
            console.print(f"  not seen done: {line}")
        growth(console, rss_series, args)
    finally:
        stop.set()
        candidates.stop()
        if peer_process is not None:
            peer_process.terminate()
            peer_process.wait(30)


def report(
    table: Table,
    args: argparse.Namespace,
    started: float,
    window_start: float,
    now: float,
    host: client.ApiClient,
    members: dict[str, client.ApiClient],
    candidates: Candidates,
    peer_process: subprocess.Popen[bytes] | None,
    trackers: list[Tracker],
) -> None:
    ours = trackers[0]
    done = ours.window(window_start, now)
    peer_done = trackers[1].window(window_start, now) if len(trackers) > 1 else []
    seen = consistency(host, members)
    rss = " / ".join(f"{rss_mib(p.pid):.0f}" for p in candidates.processes.values())
    events = len(client.CoreV1Api(host).list_namespaced_event(OURS).items)
    table.add_row(
        f"{(now - started) / 60:.0f}",
        holder(host),
        f"{rss} MiB",
        f"{rss_mib(peer_process.pid):.0f} MiB" if peer_process is not None else "-",
        str(len(ours.live)),
        f"{seen.held} / {seen.said} ({seen.differing})",
        str(len(done)),
        f"{percentile(done, 0.5):.2f} s",
        f"{percentile(done, 0.99):.2f} s",
        f"{percentile(peer_done, 0.5):.2f} s" if peer_done else "-",
        f"{percentile(peer_done, 0.99):.2f} s" if peer_done else "-",
        str(len(seen.stuck)),
        str(events),
    )
    print(f"window to {(now - started) / 60:.0f} min: {len(done)} ops, {len(ours.live)} live", flush=True)


def growth(console: Console, series: dict[str, list[tuple[float, int, float, bool]]], args: argparse.Namespace) -> None:
    """RSS growth against the goal (<= 10% after the first 10 minutes), per leader term of each process (one pid,
    its consecutive samples as leader): a standby holds no caches of the deployments and takes them on when it
    leads, so a term's first 10 minutes are its warm-up and the baseline is its first sample 10 minutes or more
    into the term. A term too short for a baseline and a later sample is said so, not counted. The peer has one
    term: the whole run."""
    for name, points in series.items():
        by_pid: dict[int, list[tuple[float, float, bool]]] = defaultdict(list)
        for minute, pid, mib, leading in points:
            if mib > 0:  # a process already gone reads 0
                by_pid[pid].append((minute, mib, leading))
        for pid, samples in by_pid.items():
            terms: list[list[tuple[float, float]]] = []
            for i, (minute, mib, leading) in enumerate(samples):
                if not leading:
                    continue
                if i == 0 or not samples[i - 1][2]:
                    terms.append([])
                terms[-1].append((minute, mib))
            for term in terms:
                settled = [(m, v) for m, v in term if m - term[0][0] >= 10]
                where = f"RSS {name} (pid {pid}), leading from {term[0][0]:.0f} to {term[-1][0]:.0f} min of its life"
                if len(settled) < 2:
                    shown = ", ".join(f"{v:.0f}" for _, v in term)
                    console.print(f"{where}: too short for the goal (samples {shown} MiB)")
                    continue
                change = settled[-1][1] / settled[0][1] - 1
                console.print(
                    f"{where}: {settled[0][1]:.0f} MiB 10+ min in -> {settled[-1][1]:.0f} MiB "
                    f"{settled[-1][0] - settled[0][0]:.0f} min later ({100 * change:+.1f}%)"
                )


if __name__ == "__main__":
    main()
