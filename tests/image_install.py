"""operator/Dockerfile's install steps, run here (wheel, fresh venv, packages from the registry): the installed
`autoglm`, not the checkout's, for the tests that must prove an install works without a checkout, and for
benchmarks/image_sizes.py."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT
from tests.dockerfile import stages as dockerfile_stages

# The Dockerfile's paths, moved under a folder of the caller's; the pip cache allowed and bytecode left to first
# import (a third of pip's time here): what installs and runs is the same.
_MOVED = {"--no-cache-dir ": "", "pip install ": "pip install --no-compile "}


def _pip_runs(stage: list[tuple[str, str]]) -> list[str]:
    return [args for instruction, args in stage if instruction == "RUN" and "pip" in args]


def _stage(name: str) -> list[tuple[str, str]]:
    """The instructions of operator/Dockerfile's stage `name`."""
    return next(instructions for _, stage, instructions in dockerfile_stages() if stage == name)


def _run(command: str, cwd: Path) -> None:
    bash = ["bash", "-euo", "pipefail", "-c", command]
    done = subprocess.run(bash, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"


@dataclass(frozen=True)
class Wheels:
    """The build stage's output: a folder holding the one wheel."""

    folder: Path

    @property
    def wheel(self) -> Path:
        (wheel,) = self.folder.glob("*.whl")
        return wheel

    def install_as_the_image_does(self, target: str, tmp_path: Path) -> Path:
        """Stage `target`'s pip command (venv, install, remove the wheels) with its paths under tmp; the venv."""
        (command,) = _pip_runs(_stage(target))
        tmp_path.mkdir(parents=True, exist_ok=True)
        wheels, venv = tmp_path / "wheels", tmp_path / "opt-autoglm"
        shutil.copytree(self.folder, wheels)
        for old, new in {"/wheels": str(wheels), "/opt/autoglm": str(venv), **_MOVED}.items():
            command = command.replace(old, new)
        _run(command, tmp_path)
        return venv

    def install_with_extras(self, extras: str, tmp_path: Path) -> Path:
        """`pip install 'WHEEL[extras]'` into a fresh venv, as a user installs the wheel; the venv."""
        tmp_path.mkdir(parents=True, exist_ok=True)
        venv = tmp_path / "venv"
        _run(f"{shlex.quote(sys.executable)} -m venv {venv}", tmp_path)
        _run(f"{venv}/bin/pip install --no-compile --quiet {shlex.quote(f'{self.wheel}[{extras}]')}", tmp_path)
        return venv


def build_wheel_as_the_image_does(tmp_path: Path) -> Wheels:
    """The build stage: what it COPYs (without the stubs an editable install generated here: the build makes its
    own), then its `pip wheel`."""
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    src.mkdir(parents=True)
    build_stage = _stage("build")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*_pb2*")
    for instruction, args in build_stage:
        if instruction == "COPY":
            *sources, _ = args.split()
            for name in sources:
                if (ROOT / name).is_dir():
                    shutil.copytree(ROOT / name, src / name, ignore=ignore)
                else:
                    shutil.copy(ROOT / name, src / name)
    (command,) = _pip_runs(build_stage)
    for old, new in {"/wheels": str(wheels), **_MOVED}.items():
        command = command.replace(old, new)
    _run(command.replace("pip wheel", f"{shlex.quote(sys.executable)} -m pip wheel", 1), src)
    return Wheels(wheels)
