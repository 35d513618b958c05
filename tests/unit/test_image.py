"""The operator image: operator/Dockerfile's stages, user and entrypoint (its install steps are run by
tests/integration/test_image_install.py)."""

from __future__ import annotations

import json

import yaml

from tests.chart import CHART
from tests.dockerfile import stages as dockerfile_stages


def test_the_image_is_multi_stage_slim_non_root_and_runs_the_operator() -> None:
    stages = dockerfile_stages()
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
