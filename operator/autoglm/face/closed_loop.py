"""The closed loop: a trace replayed in compressed time onto a ModelDeployment that the real operator, the real
HPA controller and KWOK's cold start scale in a sandbox cluster; compared with the simulator on the same trace.

Time runs `compression` times faster than the trace's: a trace minute lasts 60 / compression seconds, and so do
the HPA sync (15 trace seconds), the cold start, the stabilization window and the HPA's scale-up period, each
scaled the same way. The real HPA reads each Ready pod's share of the load through a custom metrics API
(sandbox.metrics_api), as it would read vLLM's metric through prometheus-adapter."""

from __future__ import annotations

import logging
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
from autoglm.core.forecast.simulate import Predictive, Result, Scenario, simulate
from autoglm.core.render import LABEL_DEPLOYMENT
from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import stop_cluster
from autoglm.sandbox.metrics_api import CustomMetrics
from autoglm.sandbox.prometheus import NAME as PROMETHEUS_NAME
from autoglm.sandbox.prometheus import SCRAPE_JOB, openmetrics, set_targets, start_prometheus
from autoglm.sandbox.prometheus import url as prometheus_url
from autoglm.sandbox.replay import Replay, ReplayResult
from autoglm.shell.clusters import install_crds
from autoglm.shell.controllers import OperatorContext, operator_thread
from autoglm.shell.prometheus import PrometheusReader
from autoglm.shell.scaler import REFIT_SECONDS, ForecastScaler

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
    # With forecasting: when the replay was meant to start (the scaler maps real time to trace time from it).
    planned_start: float | None = None
    # What the operator said it decided, in order: its ForecastFloor Events and its last Forecasting condition
    # (predictor, predicted peak, why that predictor); a disagreement with the simulator starts there.
    decisions: tuple[str, ...] = ()
    # Every forecast tick of the operator: the counted step it ran in (real time, from the planned start), what
    # it read (its newest step, in trace time) and what it predicted and decided.
    ticks: tuple[str, ...] = ()

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
    return run(demand, nodes, settings, log=log)


def run(
    demand: Sequence[float],
    nodes: Sequence[dict[str, Any]],
    settings: LoopSettings,
    history: Sequence[float] = (),
    trace_start_minute: int = 0,
    log: Callable[[str], None] = lambda _: None,
) -> Comparison:
    """The closed loop and the simulator on the same trace: the HPA alone, or with `history` (the trace's steps
    before `demand`) the forecasting scaler too, reading a real Prometheus whose past holds that history."""
    compression = settings.compression
    predictive = bool(history)
    seconds_per_step = 60.0 / compression
    state_dir = Path(tempfile.mkdtemp(prefix="closed-loop-"))
    states, _ = fleet.up(
        state_dir,
        {"loop": list(nodes)},
        cold_start_seconds=_pod_start(settings, predictive),
        hpa_sync_seconds=_scaled(HPA_SYNC_TRACE_SECONDS, compression),
    )
    state = states["loop"]
    try:
        api = state.api_client()
        install_crds(api)
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        context = OperatorContext.from_kubeconfig(str(state.kubeconfig), resync_seconds=30)
        context.forecast_seconds = seconds_per_step
        with operator_thread(context), CustomMetrics(state, METRIC) as metrics:
            _create(api, settings, compression, predictive)
            selector = f"{LABEL_DEPLOYMENT}={NAME}"
            # Warm-up steps settle the deployment before counting: the HPA alone on the first load; with the
            # forecaster, the history's last steps, replayed live after the rest came from Prometheus' past, so
            # that the operator and the simulator have both been deciding for a while when counting starts.
            warmup = min(settings.warmup_steps, len(history) - 1) if predictive else settings.warmup_steps
            warm = list(history[len(history) - warmup :]) if predictive else [demand[0]] * warmup
            log(f"warming up {warmup} steps, then {len(demand)} steps of {seconds_per_step:g} s")
            steps = [*warm, *demand]
            replay = Replay(state, NAMESPACE, selector, NAME, steps, settings.capacity, seconds_per_step, metrics)
            start_at = 0.0
            with replay, _TickLog() as ticks:
                if predictive:
                    past = history[: len(history) - warmup]
                    start_at, url, scaler = _prometheus_with_history(
                        state_dir, past, len(steps), replay, settings, trace_start_minute - warmup
                    )
                    time.sleep(max(0.0, start_at - time.time()))
                    # The operator starts forecasting as the replay starts, as the simulator's forecaster does:
                    # a tick before it would choose its predictor on a shorter history than the simulator's.
                    context.prometheus_url, context.scaler = url, scaler
                    # Each step starts an eighth of a step after the grid point the operator reads: a scrape
                    # begun just before a grid point but answered just after the step changed would otherwise
                    # stamp the new step's load before it (Prometheus stamps a sample when the scrape starts),
                    # and the operator would see every step one step early, as it did in some runs.
                    time.sleep(max(0.0, start_at + seconds_per_step / 8 - time.time()))
                loop = replay.run(count_from=warmup)
            decisions = _decisions(api)
    finally:
        fleet.down(state_dir)
    planned = start_at + seconds_per_step / 8 if predictive else None
    simulated = _simulate(demand, history, settings, trace_start_minute, warmup)
    told = tuple(f"step {(at - start_at) / seconds_per_step - warmup:+.2f}: {message}" for at, message in ticks.records)
    return Comparison(loop, simulated, planned, decisions, told)


class _TickLog(logging.Handler):
    """Collects the scaler's per-tick debug records (wall time, message) while the loop runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, str]] = []
        self._logger = logging.getLogger("autoglm.shell.scaler")
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.DEBUG:
            self.records.append((record.created, record.getMessage()))

    def __enter__(self) -> _TickLog:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *_: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


def _pod_start(settings: LoopSettings, predictive: bool) -> float:
    """KWOK's delay from a pod's creation to Ready (real seconds), such that a replica asked for at a step is
    ready one cold start after that step began, as in the simulator. The HPA's pods start as soon as it decides.
    The operator decides a quarter step after the step began (its ticks fall there, once the step's sample has
    landed) and raises the Deployment's replicas with the floor at once: its pods' own start is shorter by that
    quarter step. It must be: the operator measures each pod's creation -> Ready (in whole seconds, so up to a
    second long) and lengthens its lead to a cold start longer than leadTimeSeconds, which would look a step
    further ahead than the simulator and scale a step early."""
    cold = _scaled(settings.cold_start_seconds, settings.compression)
    return cold - 60.0 / settings.compression / 4 if predictive else cold


def _decisions(api: Any) -> tuple[str, ...]:
    """The operator's ForecastFloor Events on the deployment (oldest first) and its Forecasting condition."""
    events = client.CoreV1Api(api).list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={NAME}")
    floors = sorted(
        (e for e in events.items if e.reason == "ForecastFloor"),
        key=lambda e: int(e.metadata.resource_version or 0),  # the order etcd wrote them in
    )
    md: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "autoglm.io", "v1alpha1", NAMESPACE, "modeldeployments", NAME
    )
    conditions = [
        f"{c['type']}={c['status']} {c.get('reason')}: {c.get('message')}"
        for c in (md.get("status") or {}).get("conditions") or []
        if c["type"] == "Forecasting"
    ]
    return (*(str(e.message) for e in floors), *conditions)


def _prometheus_with_history(
    state_dir: Path,
    history: Sequence[float],
    live_steps: int,
    replay: Replay,
    settings: LoopSettings,
    trace_start_minute: int,
) -> tuple[float, str, ForecastScaler]:
    """Start Prometheus with `history` in its past, spaced as the replay's steps and ending where the replay
    starts (at trace minute `trace_start_minute`), scraping the replay; give the operator a scaler that reads
    it. Returns when the replay starts, Prometheus' URL and the scaler the operator is to use from then."""
    step = 60.0 / settings.compression
    # The labels the live scrape will carry (job, instance): the history and the replay are one series, so the
    # history's last sample does not linger beside the live ones for Prometheus' 5-minute lookback.
    labels = {"namespace": NAMESPACE, "model_name": NAME, "job": SCRAPE_JOB, "instance": replay.address}
    source = state_dir / "history.om"
    margin = 8.0
    while True:
        # Steps start on multiples of the step, where the operator reads its samples (the query's grid). Each
        # history value is stamped in its step's middle, as a scrape during the step would be: the reading at
        # the step's end holds it, for the history as for the live load.
        start_at = math.ceil((time.time() + margin) / step) * step
        stamps = [start_at - (len(history) - i - 0.5) * step for i in range(len(history))]
        source.write_text(
            openmetrics(
                {
                    "vllm:num_requests_running": [(labels, list(zip(stamps, history, strict=True)))],
                    "vllm:num_requests_waiting": [(labels, [(s, 0.0) for s in stamps])],
                }
            )
        )
        prometheus = start_prometheus(state_dir / PROMETHEUS_NAME, backfill=[source])
        # Late (a cold disk, a busy machine): the replay could not start where the history ends. Again, with
        # a fresh history and twice the time (a start is well under a second when the machine is not busy).
        if time.time() < start_at - step or margin > 60:
            break
        stop_cluster(Path(prometheus.directory))
        margin *= 2
    set_targets(prometheus, "replay", [replay.address], {})
    url = prometheus_url(prometheus)
    scaler = ForecastScaler(
        PrometheusReader(url),
        step_seconds=step,
        # the whole history and replay, so that the operator fits on what the simulator fits on
        history_seconds=(len(history) + live_steps + 2) * step,
        refit_seconds=REFIT_SECONDS,
        compression=settings.compression,
        trace_origin=(start_at, trace_start_minute * 60.0),
    )
    return start_at, url, scaler


def _simulate(
    demand: Sequence[float],
    history: Sequence[float],
    settings: LoopSettings,
    trace_start_minute: int,
    warmup: int = 0,
) -> Result:
    """The simulator on the loop's trace; its forecaster starts where the loop's operator did, `warmup` steps
    before counting, with the history before that as its past (so both choose their predictor on the same
    data)."""
    rule = ScalingRule(settings.capacity, settings.capacity, 1, settings.max_replicas)
    scenario = Scenario(rule, settings.cold_start_seconds)
    series = LoadSeries(_floats([*history, *demand]), 60.0, (trace_start_minute - len(history)) * 60.0)
    forecaster = Predictive(scenario.horizon(series)) if history else None
    return simulate(series, scenario, forecaster, count_from=len(history), forecast_from=len(history) - warmup)


def _floats(values: Sequence[float]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=float)


def _create(api: Any, settings: LoopSettings, compression: float, predictive: bool) -> None:
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
                "forecast": {
                    "enabled": predictive,
                    "leadTimeSeconds": math.ceil(_scaled(settings.cold_start_seconds, compression)),
                    "capacityPerReplica": settings.capacity,
                },
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
