"""Offline planning: `autoglm plan`, `render`, `inventory`, and the generated `crds` and `catalog`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from autoglm.api import RESOURCES, BackendRuntime, ModelDeployment
from autoglm.api.crd import crd_manifest
from autoglm.core.backends import load_default_catalog, merge_catalogs
from autoglm.core.hardware import build_inventory
from autoglm.core.images import DEFAULT_HELPER_IMAGE
from autoglm.core.models import ProfileError, load_model_catalog, profile_for
from autoglm.core.planner import plan as make_plan
from autoglm.face.cli.common import (
    EXIT_INFEASIBLE,
    HelperImage,
    ImageRegistry,
    Output,
    app,
    cluster_arg,
    emit,
    err,
    fail,
    images_from,
    labels_arg,
    out,
)
from autoglm.face.manifest import InputError, InputProblem, parse_objects, read_nodes
from autoglm.face.report import fleet_view, inventory_table, plan_view


@app.command()
def plan(
    file: Annotated[Path, typer.Option("-f", "--filename", help="ModelDeployment YAML (one or more documents).")],
    nodes: Annotated[
        Path | None, typer.Option("--nodes", help="Nodes of one cluster, as `kubectl get nodes -o yaml` prints them.")
    ] = None,
    cluster: Annotated[
        list[str] | None,
        typer.Option("--cluster", help="NAME=NODES.yaml: a member cluster; repeat to place across several."),
    ] = None,
    cluster_labels: Annotated[
        list[str] | None,
        typer.Option("--cluster-labels", help="NAME=key=value[,key=value]: labels of a member, for selectors."),
    ] = None,
    backends: Annotated[
        Path | None, typer.Option("--backends", help="Extra or overriding BackendRuntime YAML.")
    ] = None,
    output: Annotated[Output, typer.Option("-o", "--output", help="table, yaml or json.")] = Output.TABLE,
    model_config: Annotated[
        Path | None,
        typer.Option("--model-config", help="The model's Hugging Face config.json: its shapes are the architecture."),
    ] = None,
) -> None:
    """Show, offline, the plan the operator would make for each ModelDeployment: on one cluster's nodes
    (--nodes), or placed across member clusters (--cluster, with spec.placement) with each member's own plan.
    With --model-config, each deployment's architecture is read from that config.json (spec.model.architecture
    fields still override it), so any decoder the catalog does not know can be planned.

    Exit status: 0 every deployment placed, 1 some cannot be placed (reasons printed), 2 bad input.
    """
    if (nodes is None) == (not cluster):
        raise fail([InputProblem("command line", "--nodes/--cluster", "give either --nodes or --cluster NAME=...")])
    try:
        deployments = parse_objects(file, ModelDeployment, "ModelDeployment")
        extra = parse_objects(backends, BackendRuntime, "BackendRuntime") if backends else []
        members = {name: read_nodes(path) for name, path in (cluster_arg(c) for c in cluster or [])}
        node_list = read_nodes(nodes) if nodes else []
    except InputError as exc:
        raise fail(exc.problems) from None
    if model_config is not None:
        deployments = _with_model_config(deployments, model_config)
    labels = dict(labels_arg(v) for v in cluster_labels or [])
    unknown = sorted(set(labels) - set(members))
    if unknown:
        raise fail([InputProblem("command line", "--cluster-labels", f"no --cluster named {', '.join(unknown)}")])
    catalog = merge_catalogs(load_default_catalog(), extra)
    if members:
        _plan_fleet(file, deployments, members, labels, catalog, output)
        return
    inventory = build_inventory(node_list)
    results = [(md, p) for md, _, p in _plan_each(file, deployments, inventory, catalog)]
    if output is Output.TABLE:
        out.print(inventory_table(inventory))
        for md, p in results:
            out.print()
            out.print(plan_view(p, f"{md.metadata.namespace or 'default'}/{md.metadata.name}"))
    else:
        data = [
            {"name": md.metadata.name, "namespace": md.metadata.namespace, "plan": p.model_dump(mode="json")}
            for md, p in results
        ]
        emit(data, output)
    if not all(p.feasible for _, p in results):
        raise typer.Exit(EXIT_INFEASIBLE)


@app.command()
def render(
    file: Annotated[Path, typer.Option("-f", "--filename", help="ModelDeployment YAML (one or more documents).")],
    nodes: Annotated[
        Path, typer.Option("--nodes", help="Nodes of the cluster, as `kubectl get nodes -o yaml` prints them.")
    ],
    backends: Annotated[
        Path | None, typer.Option("--backends", help="Extra or overriding BackendRuntime YAML.")
    ] = None,
    helper_image: HelperImage = DEFAULT_HELPER_IMAGE,
    image_registry: ImageRegistry = "",
) -> None:
    """Print, as YAML, exactly the objects the operator would apply for each ModelDeployment's plan on these
    nodes (model cache claim, conversion Jobs, workloads, Service, HPA, PodMonitor): for review before a GitOps
    merge, as `helm template` is. Owner references carry no uid until the deployment exists.

    Exit status: 0 every deployment rendered, 1 some cannot be placed (reasons on stderr), 2 bad input.
    """
    from autoglm.api.common import Precision
    from autoglm.core.models import weight_bytes
    from autoglm.core.render import desired_objects

    try:
        deployments = parse_objects(file, ModelDeployment, "ModelDeployment")
        extra = parse_objects(backends, BackendRuntime, "BackendRuntime") if backends else []
        node_list = read_nodes(nodes)
    except InputError as exc:
        raise fail(exc.problems) from None
    images = images_from(helper_image, image_registry)
    catalog = images.catalog(merge_catalogs(load_default_catalog(), extra))
    runtimes = {b.metadata.name: b for b in catalog}
    documents: list[dict[str, Any]] = []
    infeasible = False
    for md, profile, result in _plan_each(file, deployments, build_inventory(node_list), catalog):
        if not result.feasible:
            infeasible = True
            err.print(f"{md.metadata.namespace or 'default'}/{md.metadata.name}: {result.summary}")
            continue
        documents += desired_objects(md, result, runtimes, weight_bytes(profile, Precision.BF16), images.helper_image)
    typer.echo(yaml.safe_dump_all(documents, sort_keys=False), nl=False)
    if infeasible:
        raise typer.Exit(EXIT_INFEASIBLE)


def _with_model_config(deployments: list[ModelDeployment], path: Path) -> list[ModelDeployment]:
    """Every deployment with its architecture read from a config.json file (bad file: exit 2, naming it)."""
    from autoglm.core.model_config import parse_config, with_config

    try:
        config = parse_config(path.read_text(), str(path))
    except (OSError, ProfileError) as exc:
        raise fail([InputProblem(str(path), "--model-config", str(exc))]) from None
    return [
        md.model_copy(update={"spec": md.spec.model_copy(update={"model": with_config(md.spec.model, config)})})
        for md in deployments
    ]


def _profiles(file: Path, deployments: list[ModelDeployment]) -> list[tuple[ModelDeployment, Any]]:
    """Each deployment's model profile; a model that cannot be profiled fails the command with the file, field
    and problem (exit 2), after every deployment was tried."""
    models = load_model_catalog()
    results = []
    problems: list[InputProblem] = []
    for md in deployments:
        try:
            results.append((md, profile_for(md.spec.model, models)))
        except ProfileError as exc:
            problems.append(InputProblem(str(file), "spec.model", str(exc)))
    if problems:
        raise fail(problems)
    return results


def _plan_each(
    file: Path, deployments: list[ModelDeployment], inventory: Any, catalog: list[BackendRuntime]
) -> list[tuple[ModelDeployment, Any, Any]]:
    """Each deployment's model profile and its plan on one inventory."""
    return [
        (md, profile, make_plan(inventory, profile, catalog, md.spec, served_name=md.metadata.name))
        for md, profile in _profiles(file, deployments)
    ]


def _plan_fleet(
    file: Path,
    deployments: list[ModelDeployment],
    members: dict[str, list[dict[str, Any]]],
    labels: dict[str, dict[str, str]],
    catalog: list[BackendRuntime],
    output: Output,
) -> None:
    from datetime import UTC, datetime

    from autoglm.core.placement import fleet_plan

    inventories = {name: build_inventory(nodes) for name, nodes in members.items()}
    results = [
        (md, fleet_plan(inventories, labels, profile, catalog, md.spec, md.metadata.name, datetime.now(UTC)))
        for md, profile in _profiles(file, deployments)
    ]
    if output is Output.TABLE:
        for md, fleet in results:
            out.print(fleet_view(fleet, f"{md.metadata.namespace or 'default'}/{md.metadata.name}"))
    else:
        data = [
            {
                "name": md.metadata.name,
                "namespace": md.metadata.namespace,
                "members": [
                    {
                        "name": s.name,
                        "replicas": s.replicas,
                        "maxReplicas": s.max_replicas,
                        "capacity": s.capacity,
                        "weight": s.weight,
                        "reasons": s.reasons,
                        "plan": s.plan.model_dump(mode="json") if s.plan else None,
                    }
                    for s in fleet.shares
                ],
                "excluded": fleet.excluded,
                "unschedulable": fleet.unschedulable,
                "summary": fleet.summary,
            }
            for md, fleet in results
        ]
        emit(data, output)
    if not all(fleet.serving and fleet.unschedulable == 0 for _, fleet in results):
        raise typer.Exit(EXIT_INFEASIBLE)


@app.command()
def inventory(
    nodes: Annotated[Path, typer.Option("--nodes", help="Nodes, as `kubectl get nodes -o yaml` prints them.")],
) -> None:
    """Show the accelerator pools the operator sees in a node list."""
    try:
        node_list = read_nodes(nodes)
    except InputError as exc:
        raise fail(exc.problems) from None
    out.print(inventory_table(build_inventory(node_list)))


def render_crds() -> dict[str, str]:
    """File name -> YAML text of every generated CRD."""
    header = "# Generated by `autoglm crds` from operator/autoglm/api; do not edit.\n"
    files = {
        f"{r.crd.plural}.yaml": header + yaml.safe_dump(crd_manifest(r), sort_keys=False, width=120) for r in RESOURCES
    }
    return files


CHART = Path("charts/open-autoglm")


def _write_or_check(files: dict[Path, str], check: bool) -> list[str]:
    """Write each file, or with `check` only list those that differ from what would be written."""
    drift = []
    for target, text in files.items():
        if check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                drift.append(str(target))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        out.print(f"wrote {target}")
    return drift


@app.command()
def crds(
    directories: Annotated[
        list[Path] | None,
        typer.Option(
            "--out",
            help="Directory to write the CRDs to (repeatable); default crds/, and the chart's in a checkout.",
        ),
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Only report drift; exit 1 if files differ.")] = False,
) -> None:
    """Write the CustomResourceDefinitions generated from the pydantic API models (the chart installs the same
    files from its own crds/ folder, which Helm requires inside the chart)."""
    # The chart's copy only where the chart is: run outside a checkout, nothing appears beside crds/.
    targets = directories or [Path("crds"), *([CHART / "crds"] if CHART.is_dir() else [])]
    rendered = render_crds()
    files = {d / name: text for d in targets for name, text in rendered.items()}
    # kustomize reads crds/ as a base (manifests/base); Helm would take a kustomization.yaml for a CRD.
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(rendered),
    }
    text = "# Generated by `autoglm crds`; do not edit.\n" + yaml.safe_dump(kustomization, sort_keys=False)
    files.update({d / "kustomization.yaml": text for d in targets if d.resolve() != (CHART / "crds").resolve()})
    drift = _write_or_check(files, check)
    if drift:
        err.print(f"CRDs out of date (run `autoglm crds`): {', '.join(drift)}")
        raise typer.Exit(1)


def render_catalog() -> str:
    """The default BackendRuntime catalog as a YAML stream."""
    docs = [b.to_manifest() for b in load_default_catalog()]
    for doc in docs:  # no empty labels or annotations: kustomize drops them, and the base must equal the chart
        doc["metadata"] = {k: v for k, v in doc["metadata"].items() if v != {}}
    return yaml.safe_dump_all(docs, sort_keys=False, width=120)


@app.command()
def catalog(
    output: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (the chart's: charts/open-autoglm/files/...).")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Only report drift of --out; exit 1 if it differs.")] = False,
) -> None:
    """Print the default BackendRuntime catalog as YAML (for kubectl apply), or write it where the chart reads it."""
    text = render_catalog()
    if output is None:
        typer.echo(text)
        return
    header = "# Generated by `autoglm catalog --out` from operator/autoglm/data/backends.yaml; do not edit.\n"
    if _write_or_check({output: header + text}, check):
        err.print(f"catalog out of date (run `autoglm catalog --out {output}`): {output}")
        raise typer.Exit(1)
