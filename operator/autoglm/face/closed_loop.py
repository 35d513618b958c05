"""The closed loop: a trace replayed in compressed time onto a ModelDeployment that the real operator, the real
HPA controller and KWOK's cold start scale in a sandbox cluster; compared with the simulator on the same trace.

Time runs `compression` times faster than the trace's: a trace minute lasts 60 / compression seconds, and so do
the HPA sync (15 trace seconds), the cold start, the stabilization window and the HPA's scale-up period, each
scaled the same way. The real HPA reads each Ready pod's share of the load through a custom metrics API
(sandbox.metrics_api), as it would read vLLM's metric through prometheus-adapter."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from autoglm.core.forecast.decision import ScalingRule
from autoglm.core.forecast.series import LoadSeries
from autoglm.core.forecast.simulate import Result, Scenario, simulate
from autoglm.core.render import LABEL_DEPLOYMENT
from autoglm.sandbox import fleet
from autoglm.sandbox.metrics_api import CustomMetrics
from autoglm.sandbox.replay import Replay, ReplayResult
from autoglm.shell.clusters import install_crds
from autoglm.shell.controllers import OperatorContext, operator_thread

METRIC = "vllm:num_requests_running"
NAMESPACE = "closed-loop"
NAME = "loop"
HPA_SYNC_TRACE_SECONDS = 15.0


@dataclass(frozen=True)
class LoopSettings:
    capacity: float
    cold_start_seconds: float = 300.0  # trace time
    compression: float = 15.0
    max_replicas: int = 16
    warmup_steps: int = 0  # steps of the first load replayed before counting, so both start settled


@dataclass(frozen=True)
class Comparison:
    loop: ReplayResult
    simulated: Result

    @property
    def unserved_gap(self) -> float:
        """|loop - simulator| / simulator of unserved demand (0 when both are 0)."""
        return _gap(self.loop.unserved_pct, self.simulated.unserved_pct)

    @property
    def replica_minutes_gap(self) -> float:
        return _gap(self.loop.replica_minutes, self.simulated.replica_minutes)


def _gap(a: float, b: float) -> float:
    return abs(a - b) / b if b else (0.0 if a == 0 else math.inf)


def _scaled(seconds: float, compression: float) -> float:
    return seconds / compression


def run_reactive(
    demand: Sequence[float],
    nodes: Sequence[dict[str, Any]],
    settings: LoopSettings,
    log: Callable[[str], None] = lambda _: None,
) -> Comparison:
    """The reactive HPA in the closed loop and in the simulator, on the same trace (one step a minute)."""
    compression = settings.compression
    sync = _scaled(HPA_SYNC_TRACE_SECONDS, compression)
    state_dir = Path(tempfile.mkdtemp(prefix="closed-loop-"))
    states, _ = fleet.up(
        state_dir,
        {"loop": list(nodes)},
        cold_start_seconds=_scaled(settings.cold_start_seconds, compression),
        hpa_sync_seconds=sync,
    )
    state = states["loop"]
    try:
        api = state.api_client()
        install_crds(api)
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        context = OperatorContext.from_kubeconfig(str(state.kubeconfig), resync_seconds=30)
        with operator_thread(context), CustomMetrics(state, METRIC) as metrics:
            _create(api, settings, compression)
            selector = f"{LABEL_DEPLOYMENT}={NAME}"
            seconds_per_step = 60.0 / compression
            log(f"replaying {len(demand)} steps, {seconds_per_step:g} s each")
            warm = Replay(
                state,
                NAMESPACE,
                selector,
                NAME,
                [demand[0]] * settings.warmup_steps,
                settings.capacity,
                seconds_per_step,
                metrics,
            )
            with warm:
                warm.run()
            replay = Replay(state, NAMESPACE, selector, NAME, demand, settings.capacity, seconds_per_step, metrics)
            with replay:
                loop = replay.run()
    finally:
        fleet.down(state_dir)
    rule = ScalingRule(settings.capacity, settings.capacity, 1, settings.max_replicas)
    series = LoadSeries(_floats(demand), 60.0)
    simulated = simulate(series, Scenario(rule, settings.cold_start_seconds), None)
    return Comparison(loop, simulated)


def _floats(values: Sequence[float]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=float)


def _create(api: Any, settings: LoopSettings, compression: float) -> None:
    body = {
        "apiVersion": "autoglm.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": "glm-4-9b-chat"},
            "replicas": {"min": 1, "max": settings.max_replicas},
            "modelCache": {"enabled": False},
            "autoscaling": {
                "metric": METRIC,
                "targetPerReplica": settings.capacity,
                "scaleDownStabilizationSeconds": max(1, round(_scaled(300, compression))),
                "scaleUpPeriodSeconds": max(1, round(_scaled(15, compression))),
            },
        },
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "autoglm.io", "v1alpha1", NAMESPACE, "modeldeployments", body
    )
    apps = client.AppsV1Api(api)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if apps.list_namespaced_deployment(NAMESPACE, label_selector=f"{LABEL_DEPLOYMENT}={NAME}").items:
            return
        time.sleep(0.5)
    raise RuntimeError("the operator did not create the deployment within 60 s")
