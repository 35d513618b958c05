"""`autoglm demo` on the sandbox: three vendors' member clusters, ModelDeployments applied once, placed with each
member's own plan, one member stopped and failed over, then back; output for a person."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoglm.face.cli import app
from autoglm.sandbox import fleet


@pytest.mark.parametrize("mode", ["karmada", "direct"])
def test_demo_tells_the_multi_cluster_story(sandbox_binaries: dict[str, Path], tmp_path: Path, mode: str) -> None:
    result = CliRunner().invoke(
        app,
        ["demo", "--state-dir", str(tmp_path), "--timeout", "150", "--propagation", mode],
        env={"KUBECONFIG": None, "COLUMNS": "80"},  # piped: as when a user pipes it to a file
    )
    assert result.exit_code == 0, result.output
    out = result.output
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
    # One request of each protocol through the gateway to llama.cpp standing for the gpu and ascend members.
    assert "one front door" in out
    for protocol in ("HTTP OpenAI", "HTTP unified", "gRPC", "MQTT autoglm/v1/glm-4-9b-chat/request"):
        assert protocol in out, protocol
    # For a person: no library log lines.
    assert "OS signals are ignored" not in out and "Request attempt" not in out
    assert "stopped the sandbox clusters" in out
    assert fleet.status(tmp_path) and not any(row.running for row in fleet.status(tmp_path))
