"""The long-running processes: `autoglm run` (the operator), `gateway` (the front door), `probe` (the node probe)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from autoglm.core.images import DEFAULT_HELPER_IMAGE
from autoglm.face.cli.common import (
    HelperImage,
    ImageRegistry,
    Propagation,
    app,
    cluster_api,
    fail,
    images_from,
    out,
    refuse,
    require_extras,
)
from autoglm.face.manifest import InputProblem
from autoglm.shell.kubeconfig import DEFAULT_API_TIMEOUT, DEFAULT_MEMBER_TIMEOUT
from autoglm.shell.workqueue import DEFAULT_WORKERS


def _leader_election_namespace(given: str | None) -> str:
    """Where the Lease lives: as given, else the namespace the pod runs in (as controller-runtime finds it)."""
    if given:
        return given
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    served = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if served.is_file():
        return served.read_text().strip()
    raise refuse(
        "--leader-election-namespace is required outside a pod (the Lease's namespace; in a pod it defaults to the "
        "pod's own)"
    )


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

    images = images_from(helper_image, image_registry)
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
            raise refuse(str(exc)) from None
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
    require_extras("gateway", "gateway")
    import asyncio
    import logging
    import ssl

    from autoglm.gateway.admission import Admission, load_keys
    from autoglm.gateway.routing import Router, static_backends
    from autoglm.gateway.server import Listen, MqttSettings, TlsFiles, serve, setup_tracing
    from autoglm.gateway.service import InferenceService

    if not backend and not from_cluster:
        raise refuse("nothing to route to: give --from-cluster, or backends with --backend MODEL=URL")
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
        raise refuse(str(exc)) from None
    if keys is None and not allow_anonymous:
        raise refuse("give --api-keys FILE, or --allow-anonymous to serve callers without a key")
    if (tls_cert is None) != (tls_key is None) or (client_ca is not None and tls_cert is None):
        raise refuse("--tls-cert and --tls-key go together, and --client-ca needs them")
    tls = TlsFiles(tls_cert, tls_key, client_ca) if tls_cert is not None and tls_key is not None else None
    if tls is not None:
        try:
            tls.ssl_context()
        except (OSError, ssl.SSLError) as exc:
            raise refuse(f"--tls-cert/--tls-key/--client-ca: {exc}") from None
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if otlp_endpoint:
        setup_tracing(otlp_endpoint)
    router = Router(backends)
    service = InferenceService(router, Admission(keys) if keys is not None else None, timeout=timeout)
    listen = Listen(host, port, grpc_port, mqtt, tls)
    background = None
    if from_cluster:
        from autoglm.gateway.discovery import DeploymentRoutes

        try:
            api = cluster_api(kubeconfig)
            service.ready = False

            def routed() -> None:
                service.ready = True

            background = DeploymentRoutes(router, api, namespace, on_refresh=routed).run
        except Exception as exc:  # kubernetes' config loaders raise their own types
            raise refuse(f"--from-cluster: no usable kubeconfig or in-cluster account: {exc}") from None
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
        raise refuse(str(exc), 1) from None


@app.command()
def probe(
    node: Annotated[
        str | None, typer.Option("--node", envvar="NODE_NAME", help="This node's name (the DaemonSet sets NODE_NAME).")
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", help="Default: in a pod its ServiceAccount, else the current kubeconfig."),
    ] = None,
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

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    core = None
    if not dry_run:
        if not node:
            raise fail([InputProblem("command line", "--node", "give --node or set NODE_NAME")])
        core = kube_client.CoreV1Api(cluster_api(kubeconfig))
    probe_run(node or "", core, once, interval, dry_run, echo=typer.echo)
