"""Render a Plan into Kubernetes objects (plain dicts, ready for server-side apply). Pure.

Per plan assignment (one accelerator pool): a Deployment, or for pipeline parallelism over nodes one
StatefulSet per replica with a headless Service. Per ModelDeployment: a Service on the OpenAI port, an HPA
on the primary workload, a PodMonitor, and the conversion Job where the runtime needs a compiled model.
The model cache PVC is per namespace and shared, so converted artifacts outlive any one deployment.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoglm.api.backendruntime import BackendRuntime
from autoglm.api.modeldeployment import ModelDeployment
from autoglm.core.backends import fill
from autoglm.core.customize import credential_env, customized_pod, pull_secrets
from autoglm.core.hardware import GIB
from autoglm.core.images import DEFAULT_HELPER_IMAGE
from autoglm.core.planner import ARTIFACT_ROOT, MODEL_ROOT, Assignment, ConversionStep, Plan, PoolOption

FIELD_MANAGER = "autoglm"
LABEL_DEPLOYMENT = "autoglm.io/modeldeployment"
INFERENCE_POOL_API = "inference.networking.k8s.io/v1"  # Gateway API Inference Extension v1
LABEL_POOL = "autoglm.io/pool"
LABEL_CACHE_KEY = "autoglm.io/cache-key"
# Who owns an object on a member cluster, where ownerReferences cannot point (they stay within one cluster).
LABEL_OWNER_NAMESPACE = "autoglm.io/owner-namespace"
LABEL_OWNER_UID = "autoglm.io/owner-uid"
# Which host cluster's operator made an object on a member (the host's kube-system namespace uid): a member may
# be joined to more than one host, and only the owner's host may collect the object once its owner is gone.
LABEL_HOST = "autoglm.io/host"
ANNOTATION_PLAN_HASH = "autoglm.io/plan-hash"
ANNOTATION_ENGINE = "autoglm.io/engine-version"
ANNOTATION_RENDERED = "autoglm.io/rendered"  # a hash of the object as rendered (see stamped)
# Which revision a workload runs, when a deployment spans members: the Services select one revision, so a new
# one can become ready beside the old in every member before they all switch.
LABEL_REVISION = "autoglm.io/revision"
CACHE_CLAIM = "autoglm-model-cache"
# Host memory a serving runtime's process needs beyond the weights it loads (Python, the engine, its buffers).
HOST_BASE_GIB = 4
Manifest = dict[str, Any]


def dns_label(text: str, limit: int = 63) -> str:
    """A DNS-1123 label no longer than `limit`; long names keep a hash suffix so they stay unique."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if len(slug) <= limit:
        return slug
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{slug[: limit - 7].rstrip('-')}-{digest}"


def workload_name(md_name: str, option: PoolOption) -> str:
    return dns_label(f"{md_name}-{option.accelerator}", 52)


def template_hash(option: PoolOption) -> str:
    """Changes only with what the pods run (image, args, env, layout), not with capacity or replica counts,
    so another deployment taking devices never rolls this one's pods."""
    keys = (
        "pool",
        "backend",
        "image",
        "command",
        "args",
        "env",
        "precision",
        "tensor_parallel",
        "pipeline_parallel",
        "cpu",
        "resource_name",
        "node_selector",
        "hosts",
        "taints",
        "collective_env",
        "conversion",
        "pod_annotations",
        "weight_mounts",
        "pod_template",
        "credentials_secret",
        "env_refs",
    )
    data = option.model_dump(mode="json", include=set(keys))
    for optional in ("pod_annotations", "weight_mounts", "pod_template", "credentials_secret", "env_refs"):
        if not data[optional]:
            del data[optional]  # absent and empty hash the same: an upgrade rolls no pods
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def member_revision(plan: Plan) -> str:
    """Changes only with what this member's pods run (its assignments' template hashes): a short name part."""
    parts = sorted(template_hash(a.option) for a in plan.assignments)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:8]


def plan_hash(plan: Plan) -> str:
    """Changes whenever what would be rendered changes; stored on the objects and in status."""
    data = [a.model_dump(mode="json") for a in plan.assignments]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": md.api_version,
        "kind": md.kind,
        "name": md.metadata.name,
        "uid": md.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def workload_labels(md: ModelDeployment, pool: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "autoglm-serving",
        "app.kubernetes.io/instance": dns_label(md.metadata.name),
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        LABEL_DEPLOYMENT: dns_label(md.metadata.name),
    }
    if pool:
        labels[LABEL_POOL] = dns_label(pool)
    return labels


def object_meta(
    md: ModelDeployment, name: str, pool: str | None = None, remote: bool = False, host: str = ""
) -> dict[str, Any]:
    """Object metadata: on the host an ownerReference (garbage collection deletes it with its owner); on a
    member cluster the owner's namespace and uid as labels, which the propagation finalizer deletes by, and the
    host's identity, by which the host's orphan collector finds what it made there (see core.orphans)."""
    meta: dict[str, Any] = {"name": name, "namespace": md.metadata.namespace, "labels": workload_labels(md, pool)}
    if remote:
        meta["labels"] |= {LABEL_OWNER_NAMESPACE: md.metadata.namespace or "", LABEL_OWNER_UID: md.metadata.uid or ""}
        if host:
            meta["labels"][LABEL_HOST] = host
    else:
        meta["ownerReferences"] = [owner_reference(md)]
    return meta


def quantity(value: float) -> str:
    """A number as the API server writes a quantity back (8.0 -> "8", 0.5 -> "500m"), so a re-read object
    compares equal to what was rendered."""
    if float(value).is_integer():
        return str(int(value))
    millis = round(value * 1000)
    return f"{millis}m" if abs(value * 1000 - millis) < 1e-9 else repr(value)


def cache_size(weight_bytes: int) -> str:
    """1.5x the weights (room for a converted copy), at least 10 GiB."""
    return f"{max(10, math.ceil(weight_bytes * 1.5 / GIB))}Gi"


def model_cache_claim(md: ModelDeployment, weight_bytes: int) -> Manifest | None:
    cache = md.spec.model_cache
    if not cache.enabled:
        return None
    spec: dict[str, Any] = {
        "accessModes": [cache.access_mode.value],
        "resources": {"requests": {"storage": cache.size or cache_size(weight_bytes)}},
    }
    if cache.storage_class_name:
        spec["storageClassName"] = cache.storage_class_name
    meta = {
        "name": CACHE_CLAIM,
        "namespace": md.metadata.namespace,
        "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
    }
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def _volumes(
    md: ModelDeployment, option: PoolOption | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    shm = shm_size(option) if option is not None else "1Gi"
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}}]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if md.spec.model_cache.enabled:
        volumes.append({"name": "model-cache", "persistentVolumeClaim": {"claimName": CACHE_CLAIM}})
        mounts += [
            {"name": "model-cache", "mountPath": MODEL_ROOT, "subPath": "models"},
            {"name": "model-cache", "mountPath": ARTIFACT_ROOT, "subPath": "artifacts"},
        ]
    # Weights on a claim of the user's (pvc://claim/path), read-only where the runtime loads them.
    for index, (path, where) in enumerate(sorted((option.weight_mounts if option else {}).items())):
        claim, _, sub = where.partition("/")
        name = f"weights-{index}"
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": name, "mountPath": path, "readOnly": True, **({"subPath": sub} if sub else {})})
    return volumes, mounts


def _env(option: PoolOption, extra: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    values = {"HF_HOME": f"{MODEL_ROOT}/.hf", **option.collective_env, **option.env, **(extra or {})}
    literal = [{"name": k, "value": v} for k, v in sorted(values.items()) if k not in option.env_refs]
    return literal + [{"name": k, "valueFrom": dict(ref)} for k, ref in sorted(option.env_refs.items())]


def shm_size(option: PoolOption) -> str:
    """/dev/shm for a serving pod: PyTorch and NCCL/HCCL pass tensors between a pod's device workers through shared
    memory (vLLM's docs run tensor parallelism with --shm-size or --ipc=host), so 2 GiB a device when a pod
    spans several, at most 16 GiB; 1 GiB for one device or CPU (the engine's own queues). It counts against the
    pod's memory, so it is never larger than it must be."""
    devices = option.tensor_parallel if option.resource_name and not option.is_cpu else 1
    return f"{min(16, 2 * devices)}Gi" if devices > 1 else "1Gi"


def host_memory(option: PoolOption) -> str:
    """Host memory an accelerator pod requests: the weights its devices load pass through it (read from the
    checkpoint, then copied to the devices), plus HOST_BASE_GIB for the runtime's own process; a 355B model asks
    for far more than a 9B one. Requested, not limited: the load's peak must not be an OOM kill."""
    loaded = option.memory.weights * option.tensor_parallel
    return f"{math.ceil(loaded / GIB) + HOST_BASE_GIB}Gi"


def _resources(option: PoolOption) -> dict[str, Any]:
    cpu = quantity(option.cpu)
    if option.is_cpu or not option.resource_name:
        memory = f"{math.ceil(option.memory.total / GIB)}Gi"
        return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
    count = str(option.tensor_parallel)
    return {
        "requests": {option.resource_name: count, "cpu": cpu, "memory": host_memory(option)},
        "limits": {option.resource_name: count},
    }


def _probes(runtime: BackendRuntime) -> dict[str, Any]:
    get = {"path": runtime.spec.health_path, "port": "http"}
    return {
        # Weights can take many minutes to load; the startup probe holds the others off until then.
        "startupProbe": {"httpGet": get, "periodSeconds": 10, "failureThreshold": 360},
        "readinessProbe": {"httpGet": get, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {"httpGet": get, "periodSeconds": 20, "failureThreshold": 3},
    }


def _ports(runtime: BackendRuntime) -> list[dict[str, Any]]:
    return [{"name": p.name, "containerPort": p.container_port, "protocol": p.protocol} for p in runtime.spec.ports]


def _wait_for_artifact(conversion: ConversionStep, mounts: list[dict[str, Any]], helper_image: str) -> dict[str, Any]:
    marker = f"{conversion.artifact_path}/.complete"
    return {
        "name": "wait-for-artifact",
        "image": helper_image,
        "command": ["sh", "-c", f"until [ -f {marker} ]; do echo waiting for {marker}; sleep 5; done"],
        "volumeMounts": mounts,
    }


def _pod_spec(
    md: ModelDeployment,
    option: PoolOption,
    runtime: BackendRuntime,
    command: list[str],
    args: list[str],
    helper_image: str,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    volumes, mounts = _volumes(md, option)
    container: dict[str, Any] = {
        "name": "server",
        "image": option.image,
        "args": args,
        "env": _env(option, extra_env) + credential_env(option.credentials_secret),
        "ports": _ports(runtime),
        "resources": _resources(option),
        "volumeMounts": mounts,
        **_probes(runtime),
    }
    if command:
        container["command"] = command
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": 60,
    }
    if option.node_selector:
        spec["nodeSelector"] = dict(option.node_selector)
    if option.hosts:
        # CPU pools carry no product label; pin to the pool's nodes so CPU replicas never take an
        # accelerator node's memory.
        term = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": option.hosts}]}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    if option.taints:
        spec["tolerations"] = [
            {"key": t["key"], "operator": "Exists", "effect": t["effect"]} for t in option.taints if "key" in t
        ]
    if option.conversion and md.spec.model_cache.enabled:
        spec["initContainers"] = [_wait_for_artifact(option.conversion, mounts, helper_image)]
    return spec


@dataclass(frozen=True)
class Target:
    """Where rendered objects go: a member other than the host (owner labels instead of ownerReferences), a
    suffix for workload names (Karmada mode keeps one member's own workloads apart), and a revision (the
    workloads carry it and the Service selects only it: coordinated rollouts across members)."""

    remote: bool = False
    suffix: str = ""
    revision: str | None = None
    host: str = ""  # the host cluster's identity, on remote objects (LABEL_HOST)

    def labels(self, md: ModelDeployment, pool: str | None = None) -> dict[str, str]:
        return workload_labels(md, pool) | ({LABEL_REVISION: self.revision} if self.revision else {})

    def shared_meta(self, md: ModelDeployment, name: str, pool: str | None = None) -> dict[str, Any]:
        """Metadata of an object every revision shares (a Service, an HPA, ...): no revision label."""
        return object_meta(md, name, pool, self.remote, self.host)

    def meta(self, md: ModelDeployment, name: str, pool: str | None = None) -> dict[str, Any]:
        meta = self.shared_meta(md, name, pool)
        if self.revision:
            meta["labels"] = {**meta["labels"], LABEL_REVISION: self.revision}
        return meta


HOST = Target()


def _with_engine(meta: dict[str, Any], runtime: BackendRuntime) -> dict[str, Any]:
    """The workload's metadata with the engine release its runtime declares (on the workload, not the pod
    template: recording it never restarts a serving pod)."""
    if not runtime.spec.engine_version:
        return meta
    return {**meta, "annotations": {**(meta.get("annotations") or {}), ANNOTATION_ENGINE: runtime.spec.engine_version}}


def _deployment(
    md: ModelDeployment, a: Assignment, runtime: BackendRuntime, digest: str, target: Target, helper_image: str
) -> Manifest:
    option = a.option
    name = dns_label(workload_name(md.metadata.name, option) + target.suffix, 63)
    labels = target.labels(md, option.pool)
    selector = {k: labels[k] for k in (LABEL_DEPLOYMENT, LABEL_POOL, LABEL_REVISION) if k in labels}
    meta = _with_engine(target.meta(md, name, option.pool), runtime)
    unavailable = md.spec.rollout.max_unavailable
    pod, pod_labels, annotations = customized_pod(
        _pod_spec(md, option, runtime, option.command, option.args, helper_image), labels, option.pod_template
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": a.replicas,
            "selector": {"matchLabels": selector},
            # Accelerators are scarce: surge only when nothing may be unavailable.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": 0 if unavailable else 1},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {**annotations, **option.pod_annotations, ANNOTATION_PLAN_HASH: digest},
                },
                "spec": pod,
            },
        },
    }


def _multi_node(
    md: ModelDeployment, a: Assignment, runtime: BackendRuntime, digest: str, target: Target, helper_image: str
) -> list[Manifest]:
    """One StatefulSet of `pipeline_parallel` pods per replica, with a headless Service for stable names."""
    option = a.option
    base = dns_label(workload_name(md.metadata.name, option) + target.suffix, 52)
    objects: list[Manifest] = []
    for index in range(a.replicas):
        name = dns_label(f"{base}-{index}", 52)
        labels = {**target.labels(md, option.pool), "autoglm.io/replica": str(index)}
        leader = f"{name}-0.{name}.{md.metadata.namespace}.svc"
        env = {"AUTOGLM_LEADER_ADDRESS": leader, "AUTOGLM_NNODES": str(option.pipeline_parallel)}
        leader_cmd = fill(runtime.spec.leader_command, {}) if runtime.spec.leader_command else option.command
        worker_cmd = fill(runtime.spec.worker_command, {}) if runtime.spec.worker_command else option.command
        # Pod 0 leads and serves; the others join it. The ordinal comes from the StatefulSet pod-index label.
        launcher = [
            "bash",
            "-ec",
            'if [ "$AUTOGLM_NODE_RANK" = 0 ]; then exec "$@"; else exec ' + " ".join(_shell(worker_cmd)) + "; fi",
            "--",
            *leader_cmd,
            *option.args,
        ]
        pod = _pod_spec(md, option, runtime, launcher[:4], launcher[4:], helper_image, env)
        pod["containers"][0]["env"].append(
            {
                "name": "AUTOGLM_NODE_RANK",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
            }
        )
        pod, pod_labels, annotations = customized_pod(pod, labels, option.pod_template)
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": target.meta(md, name, option.pool),
                "spec": {
                    "clusterIP": "None",
                    "selector": labels,
                    "publishNotReadyAddresses": True,
                    "ports": [{"name": "http", "port": 8000, "targetPort": "http"}],
                },
            }
        )
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": _with_engine(target.meta(md, name, option.pool), runtime),
                "spec": {
                    "serviceName": name,
                    "replicas": option.pipeline_parallel,
                    "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {
                            "labels": pod_labels,
                            "annotations": {**annotations, **option.pod_annotations, ANNOTATION_PLAN_HASH: digest},
                        },
                        "spec": pod,
                    },
                },
            }
        )
    return objects


def _shell(words: list[str]) -> list[str]:
    return ["'" + w.replace("'", "'\"'\"'") + "'" for w in words]


def conversion_job(md: ModelDeployment, option: PoolOption) -> Manifest | None:
    """The compile Job for an option's artifact; named by cache key so every deployment shares it."""
    conv = option.conversion
    if conv is None:
        return None
    volumes, mounts = _volumes(md, option)
    container: dict[str, Any] = {
        "name": "convert",
        "image": conv.image,
        "command": conv.command,
        "args": [
            *conv.args[:-1],
            conv.args[-1] + f" && mkdir -p {conv.artifact_path} && touch {conv.artifact_path}/.complete",
        ]
        if conv.args
        else [],
        "env": _env(option) + credential_env(option.credentials_secret),  # the compile reads the source weights
        "volumeMounts": mounts,
    }
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "volumes": volumes}
    if secrets := pull_secrets(option.pod_template):  # the tool image may come from the same private registry
        pod["imagePullSecrets"] = secrets
    if conv.resources:  # the runtime's resourcesPerJob: host CPU and memory a compile needs
        container["resources"] = {"requests": dict(conv.resources)}
    if conv.needs_accelerator:
        devices = _resources(option)
        container["resources"] = {
            "requests": {**devices["requests"], **conv.resources},
            "limits": devices["limits"],
        }
        if option.node_selector:
            pod["nodeSelector"] = dict(option.node_selector)
        if option.taints:
            pod["tolerations"] = [{"key": t["key"], "operator": "Exists", "effect": t["effect"]} for t in option.taints]
    labels = {"app.kubernetes.io/managed-by": FIELD_MANAGER, LABEL_CACHE_KEY: conv.cache_key}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"autoglm-convert-{conv.cache_key[:16]}",
            "namespace": md.metadata.namespace,
            "labels": labels,
            "annotations": {"autoglm.io/produces": conv.produces, "autoglm.io/tool": conv.tool_version},
        },
        "spec": {"backoffLimit": 2, "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def service_spec(
    md: ModelDeployment,
    selector: Mapping[str, str],
    assignments: Sequence[Assignment],
    runtimes: Mapping[str, BackendRuntime],
) -> dict[str, Any]:
    """The spec of a member's Service for the deployment (spec.expose.service: its type and HTTP port)."""
    expose = md.spec.expose.service
    spec: dict[str, Any] = {"selector": dict(selector), "ports": service_ports(assignments, runtimes, expose.port)}
    if expose.type != "ClusterIP":
        spec["type"] = str(expose.type)
    return spec


def service_ports(
    assignments: Sequence[Assignment], runtimes: Mapping[str, BackendRuntime], http_port: int = 8000
) -> list[dict[str, Any]]:
    """The OpenAI HTTP port, and gRPC when every runtime serving behind the Service offers one."""
    ports: list[dict[str, Any]] = [{"name": "http", "port": http_port, "targetPort": "http"}]
    if assignments and all(any(p.name == "grpc" for p in runtimes[a.option.backend].spec.ports) for a in assignments):
        ports.append({"name": "grpc", "port": 9000, "targetPort": "grpc"})
    return ports


def serving_objects(
    md: ModelDeployment,
    plan: Plan,
    runtimes: Mapping[str, BackendRuntime],
    replicas_max: int | None = None,
    target: Target = HOST,
    helper_image: str = DEFAULT_HELPER_IMAGE,
) -> list[Manifest]:
    """Workloads, Service, HPA and PodMonitor for a feasible plan (conversion Jobs are separate).

    `replicas_max` is this cluster's HPA ceiling (its share of spec.replicas.max); `target` says where the
    objects go (see Target); `helper_image` waits for a conversion's artifact (the operator's, see core.images)."""
    ceiling = md.spec.replicas.max if replicas_max is None else replicas_max
    objects: list[Manifest] = []
    for a in plan.assignments:
        runtime = runtimes[a.option.backend]
        digest = template_hash(a.option)
        if a.option.pipeline_parallel > 1:
            objects += _multi_node(md, a, runtime, digest, target, helper_image)
        else:
            objects.append(_deployment(md, a, runtime, digest, target, helper_image))
    if not plan.assignments:
        return objects
    name = dns_label(md.metadata.name)
    selector = {LABEL_DEPLOYMENT: name} | ({LABEL_REVISION: target.revision} if target.revision else {})
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": target.shared_meta(md, name),  # no revision: it outlives revisions
            "spec": service_spec(md, selector, plan.assignments, runtimes),
        }
    )
    primary = plan.assignments[0]
    period = md.spec.autoscaling.scale_up_period_seconds
    others = sum(a.replicas for a in plan.assignments[1:])
    minimum = max(1, primary.replicas)
    maximum = max(minimum, ceiling - others)
    # An HPA whose floor is its ceiling can change nothing, yet the controller-manager still queries its
    # metric every 15 s (and, where no adapter serves it, records a failure each time): none is made. A
    # forecasting deployment keeps its HPA, so a floor that reaches the ceiling for a while does not reset
    # the HPA's scale-down window when it falls again.
    if primary.option.pipeline_parallel == 1 and (maximum > minimum or md.spec.autoscaling.forecast.enabled):
        objects.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": target.shared_meta(md, name),  # no revision: it outlives revisions
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": dns_label(workload_name(md.metadata.name, primary.option) + target.suffix, 63),
                    },
                    "minReplicas": minimum,
                    "maxReplicas": maximum,
                    "metrics": [
                        {
                            "type": "Pods",
                            "pods": {
                                "metric": {"name": md.spec.autoscaling.metric},
                                "target": {
                                    "type": "AverageValue",
                                    "averageValue": quantity(md.spec.autoscaling.target_per_replica),
                                },
                            },
                        }
                    ],
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": md.spec.autoscaling.scale_down_stabilization_seconds
                        },
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "selectPolicy": "Max",
                            "policies": [
                                {"type": "Percent", "value": 100, "periodSeconds": period},
                                {"type": "Pods", "value": 4, "periodSeconds": period},
                            ],
                        },
                    },
                },
            }
        )
    pool = md.spec.expose.inference_pool
    if pool is not None:
        ports = runtimes[primary.option.backend].spec.ports
        http = next((p.container_port for p in ports if p.name == "http"), ports[0].container_port if ports else 8000)
        picker = {"name": pool.endpoint_picker, "port": {"number": pool.port}, "failureMode": str(pool.failure_mode)}
        objects.append(
            {
                "apiVersion": INFERENCE_POOL_API,
                "kind": "InferencePool",
                "metadata": target.shared_meta(md, name),  # no revision: it outlives revisions
                "spec": {"selector": {"matchLabels": selector}, "targetPorts": [{"number": http}],
                         "endpointPickerRef": picker},
            }
        )  # fmt: skip
    if any(runtimes[a.option.backend].spec.metrics_path for a in plan.assignments):
        path = runtimes[primary.option.backend].spec.metrics_path or "/metrics"
        objects.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PodMonitor",
                "metadata": target.shared_meta(md, name),  # no revision: it outlives revisions
                "spec": {
                    "selector": {"matchLabels": selector},
                    "podMetricsEndpoints": [{"port": "http", "path": path, "interval": "15s"}],
                },
            }
        )
    return objects


def _covers(want: Any, have: Any) -> bool:
    """Every field of `want` is in `have` with the same value (the server adds defaults; that is no drift)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _covers(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(_covers, want, have))
    return bool(want == have) or str(want) == str(have)


def _scaled_by_hpa(obj: Mapping[str, Any], rendered: list[Manifest]) -> dict[str, Any] | None:
    """The rendered HPA that scales this Deployment, if any."""
    if obj.get("kind") != "Deployment":
        return None
    for other in rendered:
        target = (other.get("spec") or {}).get("scaleTargetRef") or {}
        if other.get("kind") == "HorizontalPodAutoscaler" and target.get("name") == obj["metadata"]["name"]:
            return other
    return None


def drifted(obj: Mapping[str, Any], live: Mapping[str, Any] | None, rendered: list[Manifest]) -> bool:
    """The live object lacks or changed something the operator renders (edited or deleted by someone else).
    The replica count of a Deployment an HPA scales is the HPA's to change, so it is not compared."""
    if live is None:
        return True
    spec = dict(obj.get("spec") or {})
    if _scaled_by_hpa(obj, rendered) is not None:
        spec.pop("replicas", None)
    meta = obj.get("metadata") or {}
    live_meta = live.get("metadata") or {}
    return not (
        _covers(spec, live.get("spec") or {})
        and _covers(meta.get("labels") or {}, live_meta.get("labels") or {})
        and _covers(meta.get("annotations") or {}, live_meta.get("annotations") or {})
    )


def stamped(obj: Manifest) -> Manifest:
    """The object with a hash of itself as an annotation. A later reconcile that renders the same thing finds
    the live object not drifted and sends nothing; one that renders something else finds the annotation
    differs, even where the change is a field it stopped rendering (which the live object still has, so a
    comparison of rendered fields alone would miss it)."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
    meta = obj["metadata"]
    annotations = {**(meta.get("annotations") or {}), ANNOTATION_RENDERED: digest}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def keep_scale(obj: Manifest, live: Mapping[str, Any] | None, rendered: list[Manifest]) -> Manifest:
    """The object to apply: a Deployment its HPA scaled up keeps the HPA's count (within the HPA's bounds), so
    a re-apply never scales down what the autoscaler asked for."""
    hpa = _scaled_by_hpa(obj, rendered)
    if hpa is None or live is None:
        return obj
    current = (live.get("spec") or {}).get("replicas") or 0
    bounded = min(max(current, obj["spec"]["replicas"]), hpa["spec"]["maxReplicas"])
    return {**obj, "spec": {**obj["spec"], "replicas": bounded}}


def artifact_cleanup_job(namespace: str, cache_key: str, helper_image: str = DEFAULT_HELPER_IMAGE) -> Manifest:
    """Removes one conversion artifact from the shared cache once no deployment uses it."""
    path = f"{ARTIFACT_ROOT}/{cache_key}"
    labels = {"app.kubernetes.io/managed-by": FIELD_MANAGER, LABEL_CACHE_KEY: cache_key}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"autoglm-clean-{cache_key[:16]}", "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "clean",
                            "image": helper_image,
                            "command": ["rm", "-rf", path],
                            "volumeMounts": [
                                {"name": "model-cache", "mountPath": ARTIFACT_ROOT, "subPath": "artifacts"}
                            ],
                        }
                    ],
                    "volumes": [{"name": "model-cache", "persistentVolumeClaim": {"claimName": CACHE_CLAIM}}],
                },
            },
        },
    }


def conversion_job_name(cache_key: str) -> str:
    return f"autoglm-convert-{cache_key[:16]}"


def desired_objects(
    md: ModelDeployment,
    plan: Plan,
    runtimes: Mapping[str, BackendRuntime],
    cache_bytes: int,
    helper_image: str = DEFAULT_HELPER_IMAGE,
) -> list[Manifest]:
    """Everything the operator applies for a feasible plan on one cluster, in the order it applies them: the
    model cache claim, the conversion Jobs, then the serving objects (stamped as applied)."""
    claim = model_cache_claim(md, cache_bytes)
    jobs = [job for a in plan.assignments if a.option.conversion and (job := conversion_job(md, a.option))]
    return (
        ([claim] if claim else [])
        + jobs
        + [stamped(o) for o in serving_objects(md, plan, runtimes, helper_image=helper_image)]
    )
