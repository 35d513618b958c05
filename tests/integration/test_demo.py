"""`autoglm demo` on the sandbox: three vendors' member clusters, ModelDeployments applied once, placed with each
member's own plan, one member stopped and failed over, then back; output for a person.

Both propagation modes run as the README's command does (a process, its output piped), side by side: each mostly
waits for its clusters, and each draws its ports from its own range ($AUTOGLM_SANDBOX_PORTS)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from autoglm.sandbox import fleet
from autoglm.sandbox.cluster import PORTS_ENV

MODES = {"karmada": "20000-25999", "direct": "26000-31999"}


def _check(mode: str, out: str, state_dir: Path) -> None:
    assert f"({mode} mode)" in out
    for member in ("member gpu: pods", "member ascend: pods", "member edge: pods"):
        assert member in out
    # Each member its own runtime, the conversions done, the CPU fallback, full names although piped.
    for backend in ("vllm-cuda", "vllm-ascend", "llm-tpu-bmodel", "tensorrt-llm", "llama-cpp-cpu"):
        assert backend in out, backend
    for name in ("glm-4-32b-cpu-fallback", "chatglm3-6b-everywhere", "chatglm3-sophon-int8"):
        assert name in out, name
    for resource in ("nvidia.com/gpu=", "huawei.com/Ascend910=", "sophgo.com/tpu="):
        assert resource in out, resource
    assert "ascend stopped: after" in out and "ascend back: replicas returned" in out
    # The last table is printed once the failed-over deployment runs exactly its share on every member again (no
    # replicas still draining); a row of the fleet still moving then says so.
    last = out.rsplit("ascend back: replicas returned", 1)[1].split("stopped the sandbox clusters", 1)[0]
    (glm,) = [line for line in last.splitlines() if line.startswith("glm-4-9b-chat ")]
    assert "3/3 " in glm and "rebalancing" not in glm, last
    # One request of each protocol through the gateway to llama.cpp standing for the gpu and ascend members.
    assert "one front door" in out
    for protocol in ("HTTP OpenAI", "HTTP unified", "gRPC", "MQTT autoglm/v1/glm-4-9b-chat/request"):
        assert protocol in out, protocol
    # The fourth verb: the forecasting scaler beside the HPA alone, replayed.
    assert "forecasting scaler: day 4" in out and "the HPA alone from 09:10" in out
    # For a person: no library log lines.
    assert "OS signals are ignored" not in out and "Request attempt" not in out
    assert "stopped the sandbox clusters" in out
    assert fleet.status(state_dir) and not any(row.running for row in fleet.status(state_dir))


def test_demo_tells_the_multi_cluster_story_in_both_modes(
    sandbox_binaries: dict[str, Path], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Direct mode runs the autoglm installed from the wheel with its sandbox extra (not editable), from a folder
    outside the checkout: the demo needs nothing of a source tree. Karmada mode starts first, from the checkout,
    and runs while that install is made (mostly pip waiting on the registry); the operator image's install is
    made while both run."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"COLUMNS": "80"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs: dict[str, subprocess.Popen[str]] = {}
    logs = {mode: tmp_path / f"{mode}.out" for mode in MODES}

    def start(mode: str, program: str) -> None:
        with logs[mode].open("w") as log:  # a file, not a pipe nobody reads while the install runs
            runs[mode] = subprocess.Popen(
                [program, "demo", "--state-dir", str(tmp_path / mode), "--timeout", "150", "--propagation", mode],
                env=env | {PORTS_ENV: MODES[mode]},
                cwd=elsewhere,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )

    try:
        start("karmada", "autoglm")
        sandbox_venv: Path = request.getfixturevalue("sandbox_venv")
        start("direct", str(sandbox_venv / "bin" / "autoglm"))
        # The operator image's install (test_image_install's) is made while both demos run, which mostly wait.
        request.getfixturevalue("image_venv")
        for run in runs.values():
            run.wait(timeout=900)
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
    for mode, run in runs.items():
        output = logs[mode].read_text()
        assert run.returncode == 0, f"{mode}:\n{output}"
        _check(mode, output, tmp_path / mode)
