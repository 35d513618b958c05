"""The operator image's install steps run here (wheel, fresh venv, packages from the registry) so the installed
`autoglm` starts and has its data files: minutes of pip, so an integration test, not a unit one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import EXAMPLES

# Each extra's libraries (pyproject), by import name: the operator's image carries none of them.
NOT_THE_OPERATORS = ("grpc", "paho", "opentelemetry.sdk", "uvloop", "cryptography", "gguf", "pmdarima", "matplotlib")


def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "autoglm"), *args], capture_output=True, text=True, timeout=120)


def test_the_dockerfiles_install_steps_give_a_working_operator_without_the_extras(image_venv: Path) -> None:
    """The wheel the image builds installs into a fresh venv with its dependencies: `autoglm run --help` works,
    the packaged catalog plans an example, and none of the extras' libraries came with it; the commands that need
    one say which (test_demo runs the demo from a `[sandbox]` install of the same wheel)."""
    venv = image_venv
    done = _run(venv, "run", "--help")
    assert done.returncode == 0 and "--leader-elect" in done.stdout, done.stderr
    plan = _run(
        venv,
        "plan",
        "-f",
        str(EXAMPLES / "glm-4-9b-chat.yaml"),
        "--nodes",
        str(EXAMPLES / "nodes" / "nvidia-h100.yaml"),
        "-o",
        "json",
    )
    assert plan.returncode == 0 and '"vllm-cuda"' in plan.stdout, plan.stderr
    probe = (
        "import importlib.util as u\n"
        f"for m in {NOT_THE_OPERATORS!r}:\n"
        "    try: print(m, u.find_spec(m) is not None)\n"
        "    except ModuleNotFoundError: print(m, False)\n"
    )
    found = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60)
    assert found.stdout.split() == [word for m in NOT_THE_OPERATORS for word in (m, "False")], found.stdout
    gateway = _run(venv, "gateway", "--backend", "m=http://127.0.0.1:1")
    assert gateway.returncode == 1 and "pip install 'open-autoglm[gateway]'" in gateway.stderr, gateway.stderr
    sandbox = _run(venv, "sandbox", "status")
    assert sandbox.returncode == 1 and "pip install 'open-autoglm[sandbox]'" in sandbox.stderr, sandbox.stderr
    # The demo without its extra: how to get it, and the fleet's plans offline.
    demo = _run(venv, "demo")
    assert demo.returncode == 0 and "pip install 'open-autoglm[sandbox]'" in demo.stderr, demo.stderr
    assert "glm-4-32b-cpu-fallback" in demo.stdout and "vllm-ascend" in demo.stdout, demo.stdout


def test_the_sandbox_extra_brings_the_gateway_with_the_stubs_its_wheel_build_generated(sandbox_venv: Path) -> None:
    """The gateway's gRPC stubs were generated from the .proto by the wheel build (they are not committed)."""
    probe = "from autoglm.gateway.v1 import inference_pb2_grpc as g; print(g.InferenceStub)"
    python = str(sandbox_venv / "bin" / "python")
    stubs = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    assert stubs.returncode == 0 and "InferenceStub" in stubs.stdout, stubs.stderr
    assert _run(sandbox_venv, "gateway", "--help").returncode == 0
