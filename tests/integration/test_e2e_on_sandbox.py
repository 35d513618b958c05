"""The e2e scenarios (`e2e/`, for whatever $KUBECONFIG points to) run in CI too: against a sandbox cluster, as a user
would run them against kind or a real cluster, so they cannot rot unseen."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.integration.conftest import Cluster


def test_the_e2e_scenarios_pass_against_a_sandbox_cluster(sandbox: Cluster) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "e2e"],
        cwd=ROOT,
        env={**os.environ, "KUBECONFIG": str(sandbox.state.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
