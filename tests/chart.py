"""Run the pinned helm and kubectl (fetched by `autoglm sandbox build`) on the chart and manifests/."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoglm.sandbox import tools
from autoglm.sandbox.build import SandboxError
from tests.conftest import ROOT

CHART = ROOT / "charts" / "open-autoglm"


def binary(name: str) -> Path:
    """The pinned binary, fetched once when missing; a machine that cannot get it fails the test, never skips."""
    try:
        tools.fetch()
        return tools.tool(name)
    except SandboxError as exc:
        pytest.fail(f"{name} unavailable: {exc}", pytrace=False)


def run(
    name: str, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(binary(name)), *args], capture_output=True, text=True, env=env, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done


def values_file(tmp: Path, values: dict[str, Any]) -> Path:
    path = tmp / f"values-{abs(hash(repr(sorted(values.items())))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def template(
    tmp: Path, values: dict[str, Any], release: str = "autoglm", namespace: str = "autoglm-system"
) -> list[Any]:
    """`helm template` with these values (CRDs included), as objects."""
    args = ["template", release, str(CHART), "-n", namespace, "--include-crds", "-f", str(values_file(tmp, values))]
    return [d for d in yaml.safe_load_all(run("helm", *args).stdout) if d]
