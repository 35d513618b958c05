"""The operator image: operator/Dockerfile's stages, user and entrypoint, and its install steps run here (wheel,
fresh venv) so the installed `autoglm` starts and has its data files."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.chart import CHART
from tests.conftest import EXAMPLES, ROOT

DOCKERFILE = ROOT / "operator" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _stages() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(base image, stage name, instructions) per FROM."""
    stages: list[tuple[str, str, list[tuple[str, str]]]] = []
    for instruction, args in _instructions():
        if instruction == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: FROM {args}"
            stages.append((words[0], words[2], []))
        else:
            stages[-1][2].append((instruction, args))
    return stages


def test_the_image_is_multi_stage_slim_non_root_and_runs_the_operator() -> None:
    stages = _stages()
    assert [name for _, name, _ in stages] == ["build", "runtime"]
    assert all(base.startswith("python:3.11-slim") for base, _, _ in stages)
    runtime = dict(stages[-1][2])
    user = runtime["USER"].split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user), "a numeric non-root user, as runAsNonRoot needs"
    assert json.loads(runtime["ENTRYPOINT"]) == ["autoglm", "run"]
    assert runtime["COPY"].startswith("--from=build ")
    chart = yaml.safe_load(
        (CHART / "templates" / "deployment.yaml").read_text().split("securityContext:")[1].split("containers:")[0]
    )
    assert chart["runAsUser"] == int(user[0]) and chart["runAsGroup"] == int(user[1])


def _pip_runs(stage: list[tuple[str, str]]) -> list[str]:
    return [args for instruction, args in stage if instruction == "RUN" and "pip" in args]


def test_the_dockerfiles_install_steps_give_a_working_autoglm(tmp_path: Path) -> None:
    """The build stage's and the runtime stage's pip commands, run as the Dockerfile runs them with its paths
    moved under tmp (and the pip cache allowed, for time): the wheel installs into a fresh venv with its
    dependencies, `autoglm run --help` works and the packaged catalog plans an example."""
    src, wheels, venv = tmp_path / "src", tmp_path / "wheels", tmp_path / "opt-autoglm"
    src.mkdir()
    (build_stage, runtime_stage) = [s[2] for s in _stages()]
    # What the build stage COPYs, without the stubs an editable install generated here: the build makes its own.
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*_pb2*")
    for instruction, args in build_stage:
        if instruction == "COPY":
            *sources, _ = args.split()
            for name in sources:
                if (ROOT / name).is_dir():
                    shutil.copytree(ROOT / name, src / name, ignore=ignore)
                else:
                    shutil.copy(ROOT / name, src / name)
    moves = {"/wheels": str(wheels), "/opt/autoglm": str(venv), "--no-cache-dir ": ""}
    commands = _pip_runs(build_stage) + _pip_runs(runtime_stage)
    assert len(commands) == 2, commands
    for command in commands:
        for old, new in moves.items():
            command = command.replace(old, new)
        command = command.replace("pip wheel", f"{shlex.quote(sys.executable)} -m pip wheel", 1)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command], cwd=src, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
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
