"""`autoglm demo` on the sandbox: several vendors, several clusters, Pods running on fake accelerators."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from autoglm.face.cli import app
from autoglm.sandbox import fleet


def test_demo_runs_models_on_several_vendors_in_several_clusters(
    sandbox_binaries: dict[str, Path], tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--state-dir", str(tmp_path), "--timeout", "150"], env={"KUBECONFIG": None, "COLUMNS": "220"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for cluster in ("cluster gpu", "cluster ascend", "cluster edge"):
        assert cluster in out
    for backend in ("vllm-cuda", "tensorrt-llm", "vllm-ascend", "llm-tpu-bmodel", "fastdeploy-xpu", "llama-cpp-cpu"):
        assert backend in out, backend
    for resource in ("nvidia.com/gpu=", "huawei.com/Ascend910=", "sophgo.com/tpu=", "kunlunxin.com/xpu="):
        assert resource in out, resource
    assert "CPUFallback" in out and "Running" in out
    assert "stopped the sandbox clusters" in out
    assert fleet.status(tmp_path) and not any(row.running for row in fleet.status(tmp_path))
