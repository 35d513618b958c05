"""Rendering plans into Kubernetes objects, validated against the Kubernetes 1.34 schemas."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from autoglm.api import ModelDeployment, Precision
from autoglm.api.backendruntime import HostCpu
from autoglm.core.backends import load_default_catalog
from autoglm.core.hardware import GIB, build_inventory
from autoglm.core.models import profile_for, weight_bytes
from autoglm.core.planner import Plan, plan
from autoglm.core.render import (
    ANNOTATION_ENGINE,
    ANNOTATION_PLAN_HASH,
    CACHE_CLAIM,
    LABEL_DEPLOYMENT,
    LABEL_HOST,
    LABEL_OWNER_NAMESPACE,
    LABEL_OWNER_UID,
    Target,
    conversion_job,
    drifted,
    keep_scale,
    model_cache_claim,
    quantity,
    serving_objects,
    stamped,
    template_hash,
    workload_name,
)
from tests.conftest import inventory_of, load_nodes

RUNTIMES = {b.metadata.name: b for b in load_default_catalog()}


def _md(**spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "glm", "namespace": "serving", "uid": "1234-uid"},
            "spec": {"model": {"name": "glm-4-9b-chat"}, **spec},
        }
    )


def _plan(md: ModelDeployment, *node_sets: str) -> Plan:
    return plan(
        inventory_of(*node_sets),
        profile_for(md.spec.model),
        list(RUNTIMES.values()),
        md.spec,
        served_name=md.metadata.name,
    )


def _validate(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # not a built-in kind
        kubernetes_validate.validate(obj, "1.34.0", strict=True)


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_deployment_service_hpa_podmonitor_for_a_gpu_plan() -> None:
    md = _md(replicas={"min": 2, "max": 6}, autoscaling={"metric": "vllm:num_requests_running", "targetPerReplica": 12})
    p = _plan(md, "nvidia-h100.yaml")
    objects = serving_objects(md, p, RUNTIMES)
    _validate(objects)
    (deploy,) = _by_kind(objects, "Deployment")
    assert deploy["metadata"]["name"] == workload_name("glm", p.assignments[0].option)
    assert deploy["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "vllm/vllm-openai:v0.11.0"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NCCL_SOCKET_NTHREADS"] == "4" and env["NCCL_NSOCKS_PERTHREAD"] == "8"
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert deploy["spec"]["template"]["metadata"]["annotations"][ANNOTATION_PLAN_HASH] == template_hash(
        p.assignments[0].option
    )
    (hpa,) = _by_kind(objects, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm:num_requests_running"
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    (svc,) = _by_kind(objects, "Service")
    assert svc["spec"]["selector"] == {"autoglm.io/modeldeployment": "glm"}
    (monitor,) = _by_kind(objects, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def test_a_fixed_size_gets_no_hpa_unless_it_forecasts() -> None:
    fixed = _md(replicas={"min": 2, "max": 2})
    objects = serving_objects(fixed, _plan(fixed, "nvidia-h100.yaml"), RUNTIMES)
    assert not _by_kind(objects, "HorizontalPodAutoscaler")  # it could change nothing
    (deployment,) = _by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    # A member whose share of the ceiling is its floor is fixed too.
    ranged = _md(replicas={"min": 2, "max": 6})
    assert not _by_kind(serving_objects(ranged, _plan(ranged, "nvidia-h100.yaml"), RUNTIMES, replicas_max=2),
                        "HorizontalPodAutoscaler")  # fmt: skip
    forecasting = _md(replicas={"min": 2, "max": 2}, autoscaling={"forecast": {"enabled": True}})
    (hpa,) = _by_kind(
        serving_objects(forecasting, _plan(forecasting, "nvidia-h100.yaml"), RUNTIMES), "HorizontalPodAutoscaler"
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 2)


def test_workloads_carry_their_runtimes_engine_release_outside_the_pod_template() -> None:
    md = _md()
    (deployment,) = _by_kind(serving_objects(md, _plan(md, "nvidia-h100.yaml"), RUNTIMES), "Deployment")
    assert deployment["metadata"]["annotations"][ANNOTATION_ENGINE] == RUNTIMES["vllm-cuda"].spec.engine_version
    # Not on the pods: recording the release (or a change of it alone) restarts nothing.
    assert ANNOTATION_ENGINE not in deployment["spec"]["template"]["metadata"]["annotations"]
    big = _md(
        model={"name": "GLM-4.5"}, precision="bf16", resources={"contextLength": 8192, "maxConcurrentSequences": 4}
    )
    (sts,) = _by_kind(serving_objects(big, _plan(big, "nvidia-h100.yaml"), RUNTIMES), "StatefulSet")
    assert sts["metadata"]["annotations"][ANNOTATION_ENGINE] == RUNTIMES["vllm-cuda"].spec.engine_version
    # A runtime that names no release gets no annotation.
    trt = _md(model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    assert RUNTIMES["tensorrt-llm"].spec.engine_version is None
    (built,) = _by_kind(serving_objects(trt, _plan(trt, "nvidia-h100.yaml"), RUNTIMES), "Deployment")
    assert ANNOTATION_ENGINE not in (built["metadata"].get("annotations") or {})


def test_host_memory_and_shared_memory_follow_what_a_pod_loads_and_how_many_devices_share_it() -> None:
    small = _md()
    big = _md(
        model={"name": "GLM-4.5"}, precision="fp8", resources={"contextLength": 8192, "maxConcurrentSequences": 4}
    )
    pods = {}
    for name, md in (("small", small), ("big", big)):
        p = _plan(md, "nvidia-h100.yaml")
        (deployment,) = _by_kind(serving_objects(md, p, RUNTIMES), "Deployment")
        pods[name] = (p.assignments[0].option, deployment["spec"]["template"]["spec"])
    for option, pod in pods.values():
        server = pod["containers"][0]
        weights_gib = option.memory.weights * option.tensor_parallel / GIB
        requested = int(server["resources"]["requests"]["memory"].removesuffix("Gi"))
        assert weights_gib + 4 <= requested < weights_gib + 5  # the weights it loads and the runtime's 4 GiB
        assert "memory" not in server["resources"]["limits"]  # requested, not limited: no OOM kill at load
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]["sizeLimit"]
        assert shm == ("1Gi" if option.tensor_parallel == 1 else f"{min(16, 2 * option.tensor_parallel)}Gi")
    (small_option, small_pod), (big_option, big_pod) = pods["small"], pods["big"]
    assert small_option.tensor_parallel == 1 and big_option.tensor_parallel == 8
    memory = [
        int(p["containers"][0]["resources"]["requests"]["memory"].removesuffix("Gi")) for p in (small_pod, big_pod)
    ]
    assert memory[1] > 10 * memory[0]  # a 355B model asks for far more host memory than a 9B one


def test_host_cpu_comes_from_the_runtime_for_each_device_a_pod_drives_and_llama_cpp_threads_match_it() -> None:
    small, big = _md(), _md(model={"name": "GLM-4.5"}, precision="fp8", resources={"contextLength": 8192})
    cpus = {}
    for name, md in (("small", small), ("big", big)):
        p = _plan(md, "nvidia-h100.yaml")
        (deployment,) = _by_kind(serving_objects(md, p, RUNTIMES), "Deployment")
        resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
        option = p.assignments[0].option
        cpu = RUNTIMES[option.backend].spec.cpu
        assert (cpu.base, cpu.per_device) == (2, 1)  # vLLM's documented minimum: 2 + N cores
        assert resources["requests"]["cpu"] == quantity(2 + option.tensor_parallel)
        assert "cpu" not in resources["limits"]  # a throttled engine loop stalls every device
        cpus[name] = resources["requests"]["cpu"]
    assert cpus == {"small": "3", "big": "10"}
    # A runtime of the user's asks for its own: 4 + 2 a device.
    vllm = RUNTIMES["vllm-cuda"]
    own = vllm.model_copy(update={"spec": vllm.spec.model_copy(update={"cpu": HostCpu(base=4, per_device=2.5)})})
    p = plan(inventory_of("nvidia-h100.yaml"), profile_for(big.spec.model), [own], big.spec, served_name="glm")
    (deployment,) = _by_kind(serving_objects(big, p, {"vllm-cuda": own}), "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "24"
    # CPU serving: llama.cpp runs one generation thread for each CPU its pod requests.
    md = _md(model={"name": "GLM-4.5-Air"}, resources={"contextLength": 4096, "maxConcurrentSequences": 2})
    (deployment,) = _by_kind(serving_objects(md, _plan(md, "cpu.yaml"), RUNTIMES), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    threads = container["args"][container["args"].index("-t") + 1]
    assert container["resources"]["requests"]["cpu"] == threads == "8"


def test_ascend_pods_request_npus_and_get_hccl_env() -> None:
    md = _md()
    nodes = [n for n in load_nodes("huawei-ascend.yaml") if n["metadata"]["name"] == "ascend-910b3-0"]
    p = plan(build_inventory(nodes), profile_for(md.spec.model), list(RUNTIMES.values()), md.spec)
    objects = serving_objects(md, p, RUNTIMES)
    _validate(objects)
    container = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"huawei.com/Ascend910": "1"}
    assert "HCCL_CONNECT_TIMEOUT" in {e["name"] for e in container["env"]}


def test_multi_node_plan_renders_statefulsets_with_a_leader() -> None:
    md = _md(
        model={"name": "GLM-4.5"}, precision="bf16", resources={"contextLength": 8192, "maxConcurrentSequences": 4}
    )
    p = _plan(md, "nvidia-h100.yaml")
    assert p.primary is not None and p.primary.pipeline_parallel == 2
    objects = serving_objects(md, p, RUNTIMES)
    _validate(objects)
    (sts,) = _by_kind(objects, "StatefulSet")
    assert sts["spec"]["replicas"] == 2 and sts["spec"]["podManagementPolicy"] == "Parallel"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert "ray start --head" in " ".join(container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert env["AUTOGLM_LEADER_ADDRESS"]["value"].startswith(sts["metadata"]["name"] + "-0.")
    assert "pod-index" in env["AUTOGLM_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    headless = [s for s in _by_kind(objects, "Service") if s["spec"].get("clusterIP") == "None"]
    assert headless and headless[0]["metadata"]["name"] == sts["spec"]["serviceName"]
    assert not _by_kind(objects, "HorizontalPodAutoscaler")  # replicas of multi-node groups are not HPA-scaled


def test_conversion_job_and_the_wait_before_serving() -> None:
    md = _md(model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    p = _plan(md, "nvidia-h100.yaml")
    option = p.assignments[0].option
    job = conversion_job(md, option)
    assert job is not None
    _validate([job])
    assert job["metadata"]["name"].startswith("autoglm-convert-")
    assert "ownerReferences" not in job["metadata"]  # shared by every deployment with the same cache key
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][-1]
    assert "trtllm-build" in script and script.endswith(f"touch {option.conversion.artifact_path}/.complete")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    pod = _by_kind(serving_objects(md, p, RUNTIMES), "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["name"] == "wait-for-artifact"


def test_a_runtimes_resources_per_job_reach_its_conversion_jobs_requests() -> None:
    md = _md(model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    trt = RUNTIMES["tensorrt-llm"]
    assert trt.spec.conversion is not None
    conversion = trt.spec.conversion.model_copy(update={"resources_per_job": {"cpu": "16", "memory": "96Gi"}})
    runtime = trt.model_copy(update={"spec": trt.spec.model_copy(update={"conversion": conversion})})
    p = plan(inventory_of("nvidia-h100.yaml"), profile_for(md.spec.model), [runtime], md.spec, served_name="glm")
    job = conversion_job(md, p.assignments[0].option)
    assert job is not None
    _validate([job])
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    # The engine build runs on the GPU it is built for, with the host CPU and memory the runtime asks for.
    assert resources == {
        "requests": {"nvidia.com/gpu": "1", "cpu": "16", "memory": "96Gi"},
        "limits": {"nvidia.com/gpu": "1"},
    }


def test_model_cache_claim_is_shared_and_sized_from_the_weights() -> None:
    md = _md()
    profile = profile_for(md.spec.model)
    claim = model_cache_claim(md, weight_bytes(profile, Precision.BF16))
    assert claim is not None
    _validate([claim])
    assert claim["metadata"]["name"] == CACHE_CLAIM and "ownerReferences" not in claim["metadata"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "27Gi"
    assert model_cache_claim(_md(modelCache={"enabled": False}), 1) is None


def test_cpu_fallback_requests_memory_not_accelerators() -> None:
    md = _md(model={"name": "GLM-4.5-Air"}, resources={"contextLength": 4096, "maxConcurrentSequences": 2})
    p = _plan(md, "cpu.yaml")
    objects = serving_objects(md, p, RUNTIMES)
    _validate(objects)
    pod = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["cpu-spr-0", "cpu-spr-1"]
    assert container["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")


def test_nothing_to_serve_for_an_infeasible_plan() -> None:
    md = _md(model={"name": "GLM-4.5"}, fallbackPolicy="none")
    p = _plan(md, "nvidia-mixed.yaml")
    assert not p.feasible and serving_objects(md, p, RUNTIMES) == []


@pytest.mark.parametrize("name", ["a" * 80, "GLM_4.5.Air"])
def test_names_are_valid_dns_labels(name: str) -> None:
    md = ModelDeployment.model_validate(
        {"metadata": {"name": "x", "namespace": "n"}, "spec": {"model": {"name": "glm-4-9b-chat"}}}
    )
    md.metadata.name = name
    p = _plan(md, "nvidia-h100.yaml")
    for obj in serving_objects(md, p, RUNTIMES):
        assert len(obj["metadata"]["name"]) <= 63
        assert all(len(v) <= 63 for v in obj["metadata"]["labels"].values())


def test_capacity_changes_do_not_roll_pods() -> None:
    md = _md(replicas={"min": 1, "max": 4})
    nodes = load_nodes("nvidia-h100.yaml")
    busy = [
        {
            "spec": {"nodeName": "h100-1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "6"}}}]},
            "status": {"phase": "Running"},
        }
    ]
    profile = profile_for(md.spec.model)
    free = plan(build_inventory(nodes), profile, list(RUNTIMES.values()), md.spec, served_name="glm")
    crowded = plan(build_inventory(nodes, pods=busy), profile, list(RUNTIMES.values()), md.spec, served_name="glm")
    assert free.assignments[0].option.max_replicas != crowded.assignments[0].option.max_replicas
    assert template_hash(free.assignments[0].option) == template_hash(crowded.assignments[0].option)
    first = _by_kind(serving_objects(md, free, RUNTIMES), "Deployment")[0]["spec"]["template"]
    second = _by_kind(serving_objects(md, crowded, RUNTIMES), "Deployment")[0]["spec"]["template"]
    assert first == second


def test_grpc_port_is_exposed_when_the_runtime_offers_one() -> None:
    md = _md()
    p = _plan(md, "nvidia-h100.yaml")
    runtimes = dict(RUNTIMES)
    assert [x["name"] for x in _by_kind(serving_objects(md, p, runtimes), "Service")[0]["spec"]["ports"]] == ["http"]
    grpc = runtimes["vllm-cuda"].model_copy(deep=True)
    grpc.spec.ports.append(grpc.spec.ports[0].model_copy(update={"name": "grpc", "container_port": 50051}))
    runtimes["vllm-cuda"] = grpc
    objects = serving_objects(md, p, runtimes)
    _validate(objects)
    assert [x["name"] for x in _by_kind(objects, "Service")[0]["spec"]["ports"]] == ["http", "grpc"]


def test_objects_for_a_remote_member_carry_the_owner_as_labels_not_references() -> None:
    md = _md(replicas={"min": 2, "max": 6})
    p = _plan(md, "nvidia-h100.yaml")
    remote = serving_objects(md, p, RUNTIMES, replicas_max=3, target=Target(remote=True, host="host-uid"))
    _validate(remote)
    for obj in remote:
        assert "ownerReferences" not in obj["metadata"]
        labels = obj["metadata"]["labels"]
        assert (labels[LABEL_OWNER_NAMESPACE], labels[LABEL_OWNER_UID], labels[LABEL_DEPLOYMENT]) == (
            "serving",
            "1234-uid",
            "glm",
        )
        assert labels[LABEL_HOST] == "host-uid"  # the orphan collector finds what this host made by it
    (hpa,) = _by_kind(remote, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 3)  # this member's share of the ceiling
    local = serving_objects(md, p, RUNTIMES)
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "1234-uid" for o in local)
    assert not any(LABEL_HOST in o["metadata"]["labels"] for o in local)
    assert _by_kind(local, "HorizontalPodAutoscaler")[0]["spec"]["maxReplicas"] == 6


def test_drift_is_what_the_operator_renders_changed_not_server_defaults_or_hpa_scale() -> None:
    md = _md(replicas={"min": 2, "max": 6})
    rendered = serving_objects(md, _plan(md, "nvidia-h100.yaml"), RUNTIMES)
    (deployment,) = _by_kind(rendered, "Deployment")
    live = copy.deepcopy(deployment)
    live["spec"]["revisionHistoryLimit"] = 10  # a server default
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["replicas"] = 5  # the HPA scaled it up
    live["status"] = {"readyReplicas": 5}
    assert not drifted(deployment, live, rendered)
    assert drifted(deployment, None, rendered)  # deleted by someone
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:latest"
    assert drifted(deployment, edited, rendered)
    relabelled = copy.deepcopy(live)
    del relabelled["metadata"]["labels"][LABEL_DEPLOYMENT]
    assert drifted(deployment, relabelled, rendered)
    # Re-applying keeps what the HPA asked for, within its bounds.
    assert keep_scale(deployment, live, rendered)["spec"]["replicas"] == 5
    live["spec"]["replicas"] = 50
    assert keep_scale(deployment, live, rendered)["spec"]["replicas"] == 6
    (hpa,) = _by_kind(rendered, "HorizontalPodAutoscaler")
    hpa_live = copy.deepcopy(hpa)
    hpa_live["spec"]["metrics"][0]["pods"]["target"]["averageValue"] = quantity(8.0)
    assert not drifted(hpa, hpa_live, rendered)


def test_a_stamped_object_is_sent_again_only_when_its_rendering_or_the_live_object_changed() -> None:
    md = _md(replicas={"min": 2, "max": 6})
    rendered = [stamped(o) for o in serving_objects(md, _plan(md, "nvidia-h100.yaml"), RUNTIMES)]
    (deployment,) = _by_kind(rendered, "Deployment")
    assert stamped(copy.deepcopy(deployment)) == stamped(deployment)  # deterministic, and stamping is idempotent
    live = copy.deepcopy(deployment)
    live["spec"]["revisionHistoryLimit"] = 10  # a server default
    live["spec"]["replicas"] = 5  # the HPA scaled it up
    assert not drifted(deployment, live, rendered)
    # Applied by an operator version that did not stamp: sent once more.
    unstamped = copy.deepcopy(live)
    del unstamped["metadata"]["annotations"]["autoglm.io/rendered"]
    assert drifted(deployment, unstamped, rendered)
    # A field the operator no longer renders is still on the live object: only the stamp tells.
    before = copy.deepcopy(live)
    before["spec"]["template"]["spec"]["nodeSelector"]["retired"] = "true"
    assert not drifted(deployment, {**before, "metadata": deployment["metadata"]}, rendered)
    before = stamped({**before, "metadata": {**before["metadata"], "annotations": {}}})
    assert drifted(deployment, before, rendered)


def test_quantities_are_written_as_the_api_server_writes_them_back() -> None:
    assert [quantity(v) for v in (8.0, 12, 0.5, 2.25)] == ["8", "12", "500m", "2250m"]


def test_weights_on_a_users_claim_are_mounted_where_the_runtime_loads_them() -> None:
    """A pvc:// source is mounted read-only at the path the runtime's model argument names, in the serving
    pods; weights on s3:// and the like are not fetched: the plan refuses them, saying what to give instead."""
    md = ModelDeployment.model_validate(
        {
            "metadata": {"name": "glm", "namespace": "serving", "uid": "1234-uid"},
            "spec": {"model": {"name": "glm-4-9b-chat", "source": "pvc://weights/glm-4-9b-chat/main"}},
        }
    )
    p = _plan(md, "nvidia-h100.yaml")
    objects = serving_objects(md, p, RUNTIMES)
    _validate(objects)
    (deploy,) = _by_kind(objects, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    server = pod["containers"][0]
    mount = next(m for m in server["volumeMounts"] if m["name"].startswith("weights-"))
    assert mount == {
        "name": mount["name"],
        "mountPath": server["args"][0],
        "readOnly": True,
        "subPath": "glm-4-9b-chat/main",
    }
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
    s3 = _md()
    s3 = ModelDeployment.model_validate(
        {**s3.model_dump(by_alias=True), "spec": {"model": {"name": "glm-4-9b-chat", "source": "s3://b/glm"}}}
    )
    refused = _plan(s3, "nvidia-h100.yaml")
    assert not refused.feasible and not serving_objects(s3, refused, RUNTIMES)
    assert refused.summary == (
        "spec.model.source s3://b/glm: the operator does not fetch s3:// weights; copy them to a "
        "PersistentVolumeClaim and give pvc://CLAIM/PATH, or give hf://ORG/REPO"
    )
    # A pre-quantized checkpoint there is left out, and the model served from its own source.
    checkpoint = {"precision": "int4", "format": "awq", "source": "gs://b/glm-awq"}
    with_checkpoint = ModelDeployment.model_validate(
        {**s3.model_dump(by_alias=True), "spec": {"model": {"name": "glm-4-9b-chat", "checkpoints": [checkpoint]}}}
    )
    served = _plan(with_checkpoint, "nvidia-h100.yaml")
    assert served.feasible and any("checkpoint gs://b/glm-awq not used" in w for w in served.warnings)


def test_spec_expose_sets_the_services_type_and_http_port() -> None:
    default = _by_kind(serving_objects(_md(), _plan(_md(), "nvidia-h100.yaml"), RUNTIMES), "Service")[0]["spec"]
    assert "type" not in default and default["ports"][0] == {"name": "http", "port": 8000, "targetPort": "http"}
    md = _md(expose={"service": {"type": "LoadBalancer", "port": 8443}})
    objects = serving_objects(md, _plan(md, "nvidia-h100.yaml"), RUNTIMES)
    _validate(objects)
    spec = _by_kind(objects, "Service")[0]["spec"]
    assert spec["type"] == "LoadBalancer" and spec["ports"][0] == {"name": "http", "port": 8443, "targetPort": "http"}


def test_spec_expose_inference_pool_renders_a_pool_of_the_serving_pods_for_a_conformant_gateway() -> None:
    assert not _by_kind(serving_objects(_md(), _plan(_md(), "nvidia-h100.yaml"), RUNTIMES), "InferencePool")
    md = _md(expose={"inferencePool": {"endpointPicker": "glm-epp", "failureMode": "FailOpen"}})
    objects = serving_objects(md, _plan(md, "nvidia-h100.yaml"), RUNTIMES)
    (pool,) = _by_kind(objects, "InferencePool")
    (deploy,) = _by_kind(objects, "Deployment")
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()  # selects the serving pods
    port = deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert pool["spec"]["targetPorts"] == [{"number": port}]
    assert pool["spec"]["endpointPickerRef"] == {"name": "glm-epp", "port": {"number": 9002}, "failureMode": "FailOpen"}
