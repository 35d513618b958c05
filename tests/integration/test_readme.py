"""The README's commands run as printed: every line of every ```bash block either runs here (in a copy of the
checkout, against a sandbox cluster of its own, with the pinned kubectl and helm on PATH) or is listed below with
the reason it cannot run in a test and the test that covers it. A README change that breaks a command, or adds
one this file does not know, fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoglm.sandbox import tools
from tests.chart import binary
from tests.conftest import ROOT, load_nodes
from tests.integration.conftest import Cluster, _start

# Lines that cannot run here as printed, by their start, with why and where they are covered.
NOT_RUN = {
    "pip install": "installs: .ci/run runs it, test_image_install installs the wheel",
    "python -m pytest": "the suite itself (.ci/run)",
    "ruff check": ".ci/run",
    "autoglm run": "runs until stopped: test_operator, test_leader_election and test_install run it",
    "helm install": "needs a cluster that runs pods: test_install installs the chart and runs helm test",
    "helm test": "test_install",
    "kubectl apply --server-side -k manifests/overlays": "test_install and test_kustomize",
    "kubectl apply -n argocd": "needs Argo CD: test_argocd checks the Application and the health check",
    "autoglm gateway": "runs until stopped: test_gateway and test_members run it",
    "curl": "asks a running gateway: test_gateway",
    "autoglm join": "names a member's kubeconfig file: test_members joins as a user does",
    "autoglm unjoin": "test_members",
    "kubectl get memberclusters": "after a join: test_members",
    "autoglm forecast": "replays days of trace: benchmarks/forecast_traces.py, test_forecast_cli",
    "python benchmarks/": "benchmarks run on demand, their results committed",
    "autoglm crds            #": "writes into the checkout (the copy's crds/ equal the committed ones: test_chart)",
    "autoglm catalog --out": "writes into the checkout: test_chart checks the file",
    "python e2e/kustomize_base.py": "writes into the checkout: test_kustomize checks the file",
}


def readme_commands(text: str) -> list[str]:
    """Each command of the README's ```bash blocks: continuation lines joined, comment-only lines dropped."""
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S):
        pending = ""
        for line in block.splitlines():
            if pending:
                line = pending + line.lstrip()
                pending = ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            if re.split(r"\s#\s", line, maxsplit=1)[0].count("'") % 2:  # a quoted argument going on over lines
                pending = line + "\n"
                continue
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def _runs_here(command: str) -> bool:
    return not any(command.startswith(start) for start in NOT_RUN)


@pytest.fixture(scope="module")
def readme_cluster(sandbox_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of its own, without the CRDs (the README installs them): nothing here touches the shared one."""
    nodes = load_nodes("nvidia-h100.yaml") + load_nodes("cpu.yaml")
    yield from (c["readme"] for c in _start(tmp_path_factory, {"readme": nodes}, crds=False))


def test_the_readme_commands_that_run_here_are_known_and_every_other_one_says_why() -> None:
    commands = readme_commands((ROOT / "README.md").read_text())
    runnable = [c for c in commands if _runs_here(c)]
    # The commands a newcomer types first: plans offline and from a live cluster, render, install the CRDs and the
    # catalog, apply an example, list it.
    for start in (
        "autoglm plan",
        "autoglm inventory",
        "autoglm render",
        "autoglm crds --out",
        "until kubectl wait",
        "kubectl apply -f",
    ):
        assert any(c.startswith(start) for c in runnable), start
    unused = [start for start in NOT_RUN if not any(c.startswith(start) for c in commands)]
    assert unused == [], "NOT_RUN names commands the README no longer shows"
    unknown = [c for c in runnable if c.split()[0] not in ("autoglm", "kubectl", "until")]
    assert unknown == [], "a README command this test neither runs nor excuses"


def test_every_readme_command_runs_as_printed(readme_cluster: Cluster, tmp_path: Path) -> None:
    kubectl = [str(binary("kubectl")), "--kubeconfig", str(readme_cluster.state.kubeconfig)]  # fails when missing
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        symlinks=True,
        ignore=shutil.ignore_patterns(".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"),
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(readme_cluster.state.kubeconfig),
        "PATH": f"{tools.tools_dir()}{os.pathsep}{os.environ['PATH']}",
        "COLUMNS": "200",
    }
    ran = []
    for command in readme_commands((ROOT / "README.md").read_text()):
        if not _runs_here(command):
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
        ran.append(command)
    assert len(ran) >= 8, ran
    # What the commands did is there: the CRDs served, the catalog and the example applied.
    listed = subprocess.run([*kubectl, "get", "md", "-A", "-o", "name"], capture_output=True, text=True, check=True)
    assert "modeldeployment.autoglm.io/glm-4-9b-chat" in listed.stdout
    runtimes = subprocess.run([*kubectl, "get", "br", "-o", "name"], capture_output=True, text=True, check=True)
    assert "backendruntime.autoglm.io/vllm-cuda" in runtimes.stdout
