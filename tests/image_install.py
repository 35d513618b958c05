"""The operator image's install steps, run here (wheel, fresh venv, packages from the registry): the installed
`autoglm`, not the checkout's, for the tests that must prove an install works without a checkout."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.dockerfile import stages as dockerfile_stages


def _pip_runs(stage: list[tuple[str, str]]) -> list[str]:
    return [args for instruction, args in stage if instruction == "RUN" and "pip" in args]


def install_as_the_image_does(tmp_path: Path) -> Path:
    """The build stage's and the runtime stage's pip commands, run as the Dockerfile runs them with its paths
    moved under tmp (and, for time, the pip cache allowed and bytecode left to first import); the venv."""
    src, wheels, venv = tmp_path / "src", tmp_path / "wheels", tmp_path / "opt-autoglm"
    src.mkdir()
    (build_stage, runtime_stage) = [s[2] for s in dockerfile_stages()]
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
    # Bytecode is compiled on first import instead of at install (a third of pip's time here): what installs and
    # runs is the same.
    moves = {
        "/wheels": str(wheels),
        "/opt/autoglm": str(venv),
        "--no-cache-dir ": "",
        "pip install ": "pip install --no-compile ",
    }
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
    return venv
