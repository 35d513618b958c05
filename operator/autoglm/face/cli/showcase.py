"""`autoglm demo`: the multi-cluster story on the sandbox, or offline plans without one."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from autoglm.api import ModelDeployment
from autoglm.core.backends import load_default_catalog
from autoglm.core.hardware import build_inventory
from autoglm.core.models import load_model_catalog, profile_for
from autoglm.face.cli.common import (
    DEFAULT_STATE,
    app,
    err,
    install_hint,
    missing_extras,
    out,
    refuse,
)
from autoglm.face.report import fleet_view


class DemoMode(StrEnum):
    AUTO = "auto"
    DIRECT = "direct"
    KARMADA = "karmada"


@app.command()
def demo(
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="Use this cluster instead of a sandbox.")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the clusters (or namespace) running.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each step.")] = 180.0,
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Sandbox state folder.")] = DEFAULT_STATE / "demo",
    propagation: Annotated[
        DemoMode,
        typer.Option("--propagation", help="karmada when its binaries are built (auto), else direct; or name one."),
    ] = DemoMode.AUTO,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the libraries' log lines too.")] = False,
) -> None:
    """A fleet of three vendors' clusters: ModelDeployments applied once, placed across the members with each
    member's own plan, one member stopped and failed over, then back; cleaned up afterwards."""
    if missing_extras("sandbox", "gateway"):
        hint = escape(install_hint(["sandbox"]))  # which brings the gateway's
        err.print(f"[yellow]no sandbox[/yellow]: the demo's clusters and front door need {hint}", highlight=False)
        err.print("showing offline plans instead")
        _offline_demo(out)
        raise typer.Exit(0)
    from autoglm.face import demo as demo_run
    from autoglm.sandbox import build as sandbox_builder

    if not verbose:
        demo_run.quiet_libraries()
    console = out
    if kubeconfig and propagation is DemoMode.AUTO:
        ok = demo_run.run_demo_in_cluster(str(kubeconfig), console, timeout, keep)
        raise typer.Exit(0 if ok else 1)
    try:
        sandbox_builder.build(
            components=sandbox_builder.CLUSTER_COMPONENTS, log=lambda line: console.print(line, highlight=False)
        )
    except sandbox_builder.SandboxError as exc:
        err.print(f"[yellow]no sandbox[/yellow]: {exc}")
        err.print("showing offline plans instead; install Go and run `autoglm sandbox build` for the full demo")
        _offline_demo(console)
        raise typer.Exit(0) from None
    missing = _karmada_missing()
    if propagation is DemoMode.KARMADA and missing:
        raise refuse(f"{missing} (see --karmada-src)", 1)
    karmada = propagation is DemoMode.KARMADA or (propagation is DemoMode.AUTO and not missing)
    if propagation is DemoMode.AUTO and missing:
        console.print(
            "direct mode, not Karmada: Karmada is not built here; `autoglm sandbox build --karmada-src "
            "karmada-vX.Y.Z-src.tar.xz` builds it where the Go proxy refuses its module",
            highlight=False,
        )
    ok = demo_run.run_demo_fleet(state_dir, karmada, console, timeout, keep)
    raise typer.Exit(0 if ok else 1)


def _karmada_missing() -> str | None:
    """Why Karmada cannot run here (None when its binaries are built)."""
    from autoglm.sandbox import build as sandbox_builder

    try:
        sandbox_builder.binaries(components=(sandbox_builder.KARMADA,))
    except sandbox_builder.SandboxError as exc:
        return str(exc)
    return None


def _offline_demo(console: Console) -> None:
    """Without the sandbox: the same fleet planned offline, as `autoglm plan --cluster` shows it, and the
    forecasting replay."""
    from datetime import UTC, datetime

    from autoglm.core.placement import fleet_plan
    from autoglm.face.demo_fleet import DEPLOYMENTS, MEMBERS, example_nodes, examples_root
    from autoglm.face.demo_forecast import show_forecasting

    root = examples_root()
    inventories = {n: build_inventory(example_nodes(f, root)) for n, (f, _) in MEMBERS.items()}
    labels = {n: lab for n, (_, lab) in MEMBERS.items()}
    catalog, models = load_default_catalog(), load_model_catalog()
    for item in DEPLOYMENTS:
        md = ModelDeployment.model_validate({"metadata": {"name": item["name"]}, "spec": item["spec"]})
        profile = profile_for(md.spec.model, models)
        now = datetime.now(UTC)
        console.print(
            fleet_view(
                fleet_plan(inventories, labels, profile, catalog, md.spec, md.metadata.name, now), md.metadata.name
            )
        )
    show_forecasting(console)
