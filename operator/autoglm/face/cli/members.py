"""Member clusters of direct mode: `autoglm join` and `unjoin`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from autoglm.face.cli.common import (
    app,
    cluster_api,
    err,
    fail,
    out,
    refuse,
)
from autoglm.face.manifest import InputProblem

# The operator's cluster, for join and unjoin alike.
HostKubeconfig = Annotated[
    Path | None,
    typer.Option(
        "--host-kubeconfig",
        help="The operator's cluster; if unset, in a pod its ServiceAccount, else the current kubeconfig.",
    ),
]


def _host(host_kubeconfig: Path | None) -> Any:
    from autoglm.shell.clusters import ClusterClient

    return ClusterClient("local", cluster_api(host_kubeconfig))


@app.command()
def join(
    name: Annotated[str, typer.Argument(help="Member cluster name (a DNS label).")],
    kubeconfig: Annotated[Path, typer.Option("--kubeconfig", help="The member's kubeconfig.")],
    context: Annotated[str | None, typer.Option("--context", help="Context in it; its current one if unset.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="k=v label for placement selectors.")] = None,
    host_kubeconfig: HostKubeconfig = None,
    namespace: Annotated[str, typer.Option("--namespace", help="Where the kubeconfig Secret goes.")] = "autoglm-system",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Contact the member first.")] = True,
) -> None:
    """Join a member cluster (like karmadactl join): its kubeconfig Secret and MemberCluster on the host."""
    import re

    from autoglm.shell.members import MemberProblem, flatten_kubeconfig
    from autoglm.shell.members import join as join_member

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise fail([InputProblem("command line", "NAME", f"{name!r} is not a DNS label")])
    labels: dict[str, str] = {}
    for pair in label or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail([InputProblem("command line", "--label", f"expected k=v, got {pair!r}")])
        labels[key] = value
    try:
        doc = yaml.safe_load(kubeconfig.read_text())
        flat = flatten_kubeconfig(doc, kubeconfig.resolve().parent, context)
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError) as exc:
        raise fail([InputProblem(str(kubeconfig), "kubeconfig", str(exc))]) from None
    except MemberProblem as exc:
        raise fail([InputProblem(str(kubeconfig), "kubeconfig", str(exc))]) from None
    try:
        join_member(_host(host_kubeconfig), name, flat, labels, namespace, verify=verify)
    except MemberProblem as exc:
        raise refuse(f"{exc.reason}: {exc}", 1) from None
    out.print(f"member {name} joined: MemberCluster/{name}, Secret {namespace}/member-{name}")


@app.command()
def unjoin(
    name: Annotated[str, typer.Argument(help="Member cluster name.")],
    host_kubeconfig: HostKubeconfig = None,
) -> None:
    """Remove a member cluster's MemberCluster and kubeconfig Secret from the host."""
    from autoglm.shell.members import unjoin as unjoin_member

    removed = unjoin_member(_host(host_kubeconfig), name)
    if not removed:
        err.print(f"no MemberCluster {name}")
        raise typer.Exit(1)
    out.print(f"removed {', '.join(removed)}")
