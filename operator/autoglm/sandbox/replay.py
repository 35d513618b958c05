"""A load trace replayed onto a deployment's fake pods, in compressed time: the closed loop's demand side.

Every tick (a quarter of a trace step by default) it counts the deployment's Ready pods and the replicas asked
for, serves min(demand, ready x capacity), and counts what was not served (it does not queue) and the
replica-minutes; it gives the cluster's HPA its per-pod metric (through CustomMetrics) and exposes the
deployment's load as vLLM's gauges on 127.0.0.1 for Prometheus (running = served, waiting = the rest).

The gauges carry the time their tick was due as an explicit sample timestamp. Prometheus otherwise stamps a
sample with the time its scrape started: a scrape begun just before a step's end but answered late (this
process also runs the operator's fits) would stamp the next step's load inside this step, and the operator,
reading the step's last sample, would see the load one step early and fit on a shifted history."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autoglm.sandbox.cluster import ClusterState, free_port
from autoglm.sandbox.local_http import LocalServer
from autoglm.sandbox.metrics_api import CustomMetrics


@dataclass
class ReplayResult:
    """What the deployment did under the trace (trace time: steps of the trace, replica-minutes)."""

    unserved_pct: float
    replica_minutes: float
    under_provisioned_minutes: float
    ready: list[int] = field(default_factory=list)  # ready replicas at the end of each step
    asked: list[int] = field(default_factory=list)
    late_ticks: int = 0  # ticks that started more than half a tick late (the machine could not keep up)
    started: float = 0.0  # wall-clock time the first tick was due (unix seconds)


class Replay:
    """Replays `demand` (load per trace step) onto the pods labelled `selector` in `namespace`."""

    def __init__(
        self,
        state: ClusterState,
        namespace: str,
        selector: str,
        model_name: str,
        demand: Sequence[float],
        capacity: float,
        seconds_per_step: float,
        metrics: CustomMetrics,
        ticks_per_step: int = 4,
        step_minutes: float = 1.0,
    ):
        from kubernetes import client

        api = state.api_client()
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.namespace, self.selector, self.model_name = namespace, selector, model_name
        self.demand, self.capacity = list(demand), capacity
        self.seconds_per_step, self.ticks = seconds_per_step, ticks_per_step
        self.step_minutes = step_minutes
        self.metrics = metrics
        self.port = free_port()
        # None until the first tick: a scrape before the replay starts must add no sample (a 0 there would sit
        # in the series between the backfilled history and the live load, and pull every lag feature down).
        # With the time the tick that set them was due (unix milliseconds): one tuple, replaced whole.
        self._gauges: tuple[int, dict[str, float]] | None = None
        self._server: LocalServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Replay:
        self._server = LocalServer(self.port, self._respond, "sandbox-replay-metrics")
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.stop()

    def _respond(self, path: str) -> tuple[int, bytes, str]:
        return 200, self.exposition().encode(), "text/plain; version=0.0.4"

    def exposition(self) -> str:
        sample = self._gauges
        if sample is None:
            return "# TYPE vllm:num_requests_running gauge\n# TYPE vllm:num_requests_waiting gauge\n"
        stamp, gauges = sample
        labels = f'model_name="{self.model_name}",namespace="{self.namespace}"'
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{{{labels}}} {gauges['running']} {stamp}\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{{{labels}}} {gauges['waiting']} {stamp}\n"
        )

    def _observe(self) -> tuple[list[str], int]:
        """The Ready pods' names and the replicas asked for (every Deployment of the selector)."""
        pods = _items(
            self.core.list_namespaced_pod(self.namespace, label_selector=self.selector, _preload_content=False)
        )
        ready = [
            str(p["metadata"]["name"])
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions") or [])
        ]
        deployments = _items(
            self.apps.list_namespaced_deployment(self.namespace, label_selector=self.selector, _preload_content=False)
        )
        return ready, sum(int(d["spec"].get("replicas") or 0) for d in deployments)

    def run(self, progress: Callable[[int], None] | None = None, count_from: int = 0) -> ReplayResult:
        """Replay every step; the result counts from step `count_from` (the steps before it settle the
        deployment, as the simulator's history does)."""
        tick = self.seconds_per_step / self.ticks
        unserved = total = replica_minutes = under = 0.0
        ready_per_step, asked_per_step = [], []
        late = 0
        start, wall_start = time.monotonic(), time.time()
        for step, load in enumerate(self.demand):
            for k in range(self.ticks):
                due = start + (step * self.ticks + k) * tick
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif -wait > tick / 2:
                    late += 1
                ready, asked = self._observe()
                served = min(load, len(ready) * self.capacity)
                stamp = round((wall_start + (due - start)) * 1000)
                self._gauges = stamp, {"running": served, "waiting": load - served}
                self.metrics.set(self.namespace, {name: load / len(ready) for name in ready} if ready else {})
                if step < count_from:
                    continue
                unserved += (load - served) / self.ticks
                total += load / self.ticks
                replica_minutes += asked * self.step_minutes / self.ticks
                under += self.step_minutes / self.ticks if served < load else 0.0
            if step >= count_from:
                ready_per_step.append(len(ready))
                asked_per_step.append(asked)
            if progress is not None:
                progress(step)
        return ReplayResult(
            100 * unserved / total if total else 0.0,
            replica_minutes,
            under,
            ready_per_step,
            asked_per_step,
            late,
            wall_start,
        )


def _items(response: Any) -> list[dict[str, Any]]:
    """The items of a list answered raw (`_preload_content=False`): plain JSON, no model objects."""
    return list(json.loads(response.data)["items"])
