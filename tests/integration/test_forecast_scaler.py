"""The forecasting scaler against a real Prometheus (built from its Go module, history backfilled with
promtool) and a real control plane: the floor rises ahead of a predicted burst, reaches the HPA through the
placement, and holds with a condition when Prometheus is down or the metrics are stale."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client

from autoglm.sandbox import fleet
from autoglm.sandbox.build import PROMETHEUS, binaries
from autoglm.sandbox.cluster import ClusterState
from autoglm.sandbox.prometheus import NAME, openmetrics, start_prometheus, url
from autoglm.shell.controllers import OperatorContext
from autoglm.shell.prometheus import PrometheusReader, PrometheusUnavailable
from tests.integration.conftest import Cluster
from tests.integration.test_operator import GROUP, PLURAL, VERSION, _get
from tests.integration.test_sandbox import crds_installed  # noqa: F401  (fixture)

DAYS = 2
BASE, BURST = 16.0, 40.0  # requests running: 2 replicas at 8 each, then 5
BURST_IN_SECONDS = 420  # the daily burst starts 7 minutes after "now"
MODEL = "burst"


def _load(stamps: np.ndarray, burst_tod: float) -> np.ndarray:
    """BASE, and BURST for 30 minutes from the same time every day; a little noise."""
    tod = stamps % 86400
    since = (tod - burst_tod) % 86400
    rng = np.random.default_rng(3)
    return np.where(since < 1800, BURST, BASE) * rng.lognormal(0, 0.02, len(stamps))


@pytest.fixture(scope="module")
def history_end() -> float:
    return math.floor(time.time() / 60) * 60 - 60


@pytest.fixture(scope="module")
def prometheus(
    sandbox: Cluster, tmp_path_factory: pytest.TempPathFactory, history_end: float
) -> Iterator[ClusterState]:
    """Prometheus whose history holds two days of this deployment's vLLM metrics and a series that stopped
    an hour ago."""
    binaries(components=(PROMETHEUS,))  # fails with the build's message when it is not built
    folder = tmp_path_factory.mktemp("prometheus")
    stamps = np.arange(history_end - DAYS * 86400 + 60, history_end + 1, 60.0)
    running = _load(stamps, (history_end + BURST_IN_SECONDS) % 86400)
    labels = {"namespace": "forecast", "model_name": MODEL}
    old = stamps[stamps < history_end - 3600]
    text = openmetrics(
        {
            "vllm:num_requests_running": [(labels, list(zip(stamps.tolist(), running.tolist(), strict=True)))],
            "vllm:num_requests_waiting": [(labels, [(s, 0.0) for s in stamps.tolist()])],
            "autoglm_test_stopped_load": [({}, [(s, BASE) for s in old.tolist()])],
        }
    )
    source = folder / "history.om"
    source.write_text(text)
    state = start_prometheus(folder / NAME, backfill=[source])
    try:
        yield state
    finally:
        fleet.down(folder)


def test_the_reader_gets_the_backfilled_history_in_chunks_and_says_when_prometheus_is_down(
    prometheus: ClusterState, history_end: float
) -> None:
    reader = PrometheusReader(url(prometheus), timeout_seconds=3, retries=1, backoff_seconds=0.1)
    query = 'sum(vllm:num_requests_running{namespace="forecast",model_name="burst"})'
    minutes = reader.history(query, DAYS * 86400, 60.0, now=history_end + 60)
    assert minutes.newest_age_seconds <= 120
    known = minutes.series.values[~np.isnan(minutes.series.values)]
    assert len(known) >= DAYS * 1440 - 5 and set(np.round(known / BASE)) <= {1.0, 2.0, 3.0}
    # 15-second steps over two days are 11,520 points: more than one query may ask for
    fine = reader.history(query, DAYS * 86400, 15.0, now=history_end + 60)
    assert len(fine.series) == DAYS * 5760 and np.isfinite(fine.series.values).sum() > DAYS * 5700
    stopped = reader.history("sum(autoglm_test_stopped_load)", 7200, 60.0, now=history_end + 60)
    assert stopped.newest_age_seconds > 3000  # the series stopped an hour ago
    fleet.stop(Path(prometheus.directory).parent, NAME)
    try:
        with pytest.raises(PrometheusUnavailable, match=r"Prometheus at http://127\.0\.0\.1"):
            reader.history(query, 3600, 60.0)
    finally:
        fleet.start(Path(prometheus.directory).parent, NAME)


def _deployment(cluster: Cluster, name: str, **forecast: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "forecast"},
        "spec": {
            "model": {"name": "glm-4-9b-chat"},
            "replicas": {"min": 1, "max": 8},
            "autoscaling": {"targetPerReplica": 8, "forecast": {"enabled": True, "leadTimeSeconds": 300, **forecast}},
        },
    }
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(GROUP, VERSION, "forecast", PLURAL, body)
    return _get(cluster, "forecast", name)


def _hpa_floor(cluster: Cluster) -> int:
    hpas = client.AutoscalingV2Api(cluster.api).list_namespaced_horizontal_pod_autoscaler("forecast").items
    (hpa,) = [h for h in hpas if MODEL in h.metadata.name]
    return int(hpa.spec.min_replicas)


def _forecasting(cluster: Cluster, name: str) -> dict[str, Any]:
    status = _get(cluster, "forecast", name)["status"]
    return next(c for c in status["conditions"] if c["type"] == "Forecasting")


def test_the_floor_rises_ahead_of_the_burst_reaches_the_hpa_and_holds_through_an_outage(
    sandbox: Cluster,
    prometheus: ClusterState,
    crds_installed: None,  # noqa: F811
) -> None:
    core = client.CoreV1Api(sandbox.api)
    core.create_namespace({"metadata": {"name": "forecast"}})
    context = OperatorContext.from_kubeconfig(str(sandbox.state.kubeconfig), resync_seconds=600)
    context.prometheus_url = url(prometheus)
    try:
        context.members.heartbeat()  # as the operator does at startup: the host is member local
        _deployment(sandbox, MODEL)
        context.sync("forecast", MODEL)
        assert _hpa_floor(sandbox) == 1
        done = context.sync("forecast", MODEL, forecast=True)
        assert done is not None
        tick = done.tick
        forecast = _get(sandbox, "forecast", MODEL)["status"]["forecast"]
        # the burst (40 running at 8 per replica) comes in 7 minutes: the floor is raised for it now, to the
        # replicas the burst needs, well above the 2 the current load needs
        assert tick.event is not None and tick.event[1] == "ForecastFloor", tick
        assert forecast["model"] and forecast["floor"] * 8 >= BURST, tick
        assert forecast["currentLoad"] == pytest.approx(BASE, rel=0.1)
        assert _forecasting(sandbox, MODEL)["status"] == "True"
        assert _hpa_floor(sandbox) == forecast["floor"]  # placed and applied through the reconcile
        context.reconciler.cluster.flush_events()
        events = core.list_namespaced_event("forecast").items
        assert any(e.reason == "ForecastFloor" and "floor 1 ->" in e.message for e in events)

        # The spec names a predictor: the next tick uses it (no backtest), and status says which ran.
        chosen = forecast["model"]
        forced = "ridge" if chosen != "ridge" else "gradientBoosting"
        client.CustomObjectsApi(sandbox.api).patch_namespaced_custom_object(
            GROUP, VERSION, "forecast", PLURAL, MODEL, {"spec": {"autoscaling": {"forecast": {"model": forced}}}}
        )
        context.sync("forecast", MODEL, forecast=True)
        ran = {"ridge": "ridge", "gradientBoosting": "gradient-boosting"}[forced]
        forecast = _get(sandbox, "forecast", MODEL)["status"]["forecast"]
        assert forecast["model"] == ran, forecast
        assert f"({ran}, as spec.autoscaling.forecast.model asks)" in _forecasting(sandbox, MODEL)["message"]

        fleet.stop(Path(prometheus.directory).parent, NAME)
        try:
            context.sync("forecast", MODEL, forecast=True)
            held = _forecasting(sandbox, MODEL)
            assert (held["status"], held["reason"]) == ("False", "PrometheusUnavailable")
            assert f"holding the floor at {forecast['floor']}" in held["message"]
            assert _hpa_floor(sandbox) == forecast["floor"]
        finally:
            fleet.start(Path(prometheus.directory).parent, NAME)

        _deployment(sandbox, "stopped", query="sum(autoglm_test_stopped_load)")
        context.sync("forecast", "stopped")
        context.sync("forecast", "stopped", forecast=True)
        stale = _forecasting(sandbox, "stopped")
        assert (stale["status"], stale["reason"]) == ("False", "MetricsStale") and "s old" in stale["message"]
    finally:
        core.delete_namespace("forecast")
