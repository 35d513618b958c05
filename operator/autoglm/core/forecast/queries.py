"""Which PromQL measures a deployment's load: per backend, a generic fallback, or the user's own."""

from __future__ import annotations

from autoglm.api.modeldeployment import CapacityProfile, ModelDeploymentSpec

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
    """Load one replica serves: as given, else derived from its measured profile, else the HPA's target."""
    forecast = spec.autoscaling.forecast
    if forecast.capacity_per_replica:
        return forecast.capacity_per_replica
    if forecast.capacity_profile is not None:
        return float(capacity_from_profile(forecast.capacity_profile))
    return spec.autoscaling.target_per_replica


def capacity_from_profile(profile: CapacityProfile) -> int:
    """The highest measured concurrency at which TTFT and ITL both meet their targets (and every lower point
    does too: a load that fails a target below a passing one is not trusted past it); 1 if none does."""
    capacity = 1
    for point in sorted(profile.points, key=lambda p: p.concurrency):
        ttft_ok = profile.ttft_target_seconds is None or point.ttft_seconds <= profile.ttft_target_seconds
        itl_ok = profile.itl_target_seconds is None or point.itl_seconds <= profile.itl_target_seconds
        if not (ttft_ok and itl_ok):
            break
        capacity = point.concurrency
    return capacity
