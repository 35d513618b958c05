"""Which PromQL measures a deployment's load: per backend, a generic fallback, or the user's own."""

from __future__ import annotations

from autoglm.api.modeldeployment import ModelDeploymentSpec

# The catalog's vLLM runtimes (vllm-cuda, vllm-rocm, vllm-ascend, ...) all serve vLLM's metrics
# (vllm:num_requests_running, vllm:num_requests_waiting, labelled by model_name).
VLLM_PREFIX = "vllm"


def _selector(name: str, namespace: str) -> str:
    return f'{{namespace="{namespace}",model_name="{name}"}}'


def load_query(spec: ModelDeploymentSpec, name: str, namespace: str, backend: str | None) -> str:
    """The deployment's total load, in the unit `capacity per replica` is given in: the user's query, else
    for vLLM the requests running plus waiting (demand, not only what is served), else the HPA's metric
    summed over the deployment's pods. The served model name is the deployment's name."""
    if spec.autoscaling.forecast.query:
        return spec.autoscaling.forecast.query
    selector = _selector(name, namespace)
    if backend is not None and backend.startswith(VLLM_PREFIX):
        return f"sum(vllm:num_requests_running{selector}) + sum(vllm:num_requests_waiting{selector})"
    return f"sum({spec.autoscaling.metric}{selector})"


def capacity_per_replica(spec: ModelDeploymentSpec) -> float:
    return spec.autoscaling.forecast.capacity_per_replica or spec.autoscaling.target_per_replica
