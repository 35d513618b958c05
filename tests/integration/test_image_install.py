"""The operator image's install steps run here (wheel, fresh venv, packages from the registry) so the installed
`autoglm` starts and has its data files: minutes of pip, so an integration test, not a unit one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import EXAMPLES


def test_the_dockerfiles_install_steps_give_a_working_autoglm(image_venv: Path) -> None:
    """The wheel the image builds installs into a fresh venv with its dependencies: `autoglm run --help` works
    and the packaged catalog plans an example (test_demo runs the demo from the same install)."""
    venv = image_venv
    autoglm = venv / "bin" / "autoglm"
    done = subprocess.run([str(autoglm), "run", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--leader-elect" in done.stdout, done.stderr
    plan = subprocess.run(
        [
            str(autoglm),
            "plan",
            "-f",
            str(EXAMPLES / "glm-4-9b-chat.yaml"),
            "--nodes",
            str(EXAMPLES / "nodes" / "nvidia-h100.yaml"),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plan.returncode == 0 and '"vllm-cuda"' in plan.stdout, plan.stderr
    # The gateway's gRPC stubs were generated from the .proto by the wheel build (they are not committed).
    probe = "from autoglm.gateway.v1 import inference_pb2_grpc as g; print(g.InferenceStub)"
    stubs = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60)
    assert stubs.returncode == 0 and "InferenceStub" in stubs.stdout, stubs.stderr
