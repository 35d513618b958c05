"""The images: operator/Dockerfile's stages, users and entrypoints (their install steps are run by
tests/integration/test_image_install.py)."""

from __future__ import annotations

import json
import re
import tomllib

import yaml

from tests.chart import CHART
from tests.conftest import ROOT
from tests.dockerfile import stages as dockerfile_stages


def test_two_slim_non_root_images_from_one_wheel_the_operator_by_default() -> None:
    stages = dockerfile_stages()
    # The operator last: a plain `docker build` gives it; `--target gateway` the front door.
    assert [name for _, name, _ in stages] == ["build", "gateway", "operator"]
    assert all(base.startswith("python:3.11-slim") for base, _, _ in stages)
    chart = yaml.safe_load(
        (CHART / "templates" / "deployment.yaml").read_text().split("securityContext:")[1].split("containers:")[0]
    )
    entrypoints = {}
    for _, name, instructions in stages[1:]:
        image = dict(instructions)
        user = image["USER"].split(":")
        assert all(part.isdigit() and int(part) != 0 for part in user), "a numeric non-root user, as runAsNonRoot needs"
        assert chart["runAsUser"] == int(user[0]) and chart["runAsGroup"] == int(user[1])
        assert image["COPY"].startswith("--from=build ")
        entrypoints[name] = json.loads(image["ENTRYPOINT"])
    assert entrypoints == {"gateway": ["autoglm", "gateway"], "operator": ["autoglm", "run"]}


def test_the_operator_image_installs_the_package_alone_and_the_gateway_image_its_extra() -> None:
    """pip only warns about an extra a package does not provide: a misspelt one would build an image without it."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = {
        name: next(args for instruction, args in steps if instruction == "RUN" and "pip install" in args)
        for _, name, steps in dockerfile_stages()[1:]
    }
    assert re.findall(r"\.whl\)?\[([a-z,]+)\]", installs["operator"]) == []
    (named,) = re.findall(r"\.whl\)?\[([a-z,]+)\]", installs["gateway"])
    assert named == "gateway" and named in extras
