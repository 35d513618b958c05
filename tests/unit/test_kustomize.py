"""manifests/: the kustomize base gives the chart's default objects (plus the Namespace), and the overlays build
valid objects that differ from it only as they say."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from autoglm.face.cli import render_crds
from e2e.kustomize_base import chart_defaults, kustomize_labels, render
from tests.chart import run
from tests.conftest import ROOT
from tests.crd_validation import schema_errors

MANIFESTS = ROOT / "manifests"
OPERATOR = ("Deployment", "autoglm-system", "autoglm-open-autoglm")


def _build(path: str) -> dict[tuple[str, str, str], Any]:
    docs = [d for d in yaml.safe_load_all(run("kubectl", "kustomize", str(MANIFESTS / path)).stdout) if d]
    objects = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}
    assert len(objects) == len(docs), "no object twice"
    return objects


def _key(d: Any) -> tuple[str, str, str]:
    return d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]


def test_the_base_is_the_charts_defaults_its_crds_and_a_namespace() -> None:
    assert (MANIFESTS / "base" / "operator.yaml").read_text() == render(), "run `python e2e/kustomize_base.py`"
    base = _build("base")
    chart = {_key(d): kustomize_labels(d) for d in chart_defaults()}
    crds = {_key(d): d for text in render_crds().values() for d in yaml.safe_load_all(text) if d}
    namespace = ("Namespace", "", "autoglm-system")
    assert set(base) == set(chart) | set(crds) | {namespace}
    for key, obj in chart.items():
        assert base[key] == obj, key
    for key, crd in crds.items():
        assert base[key] == crd, key
    assert base[namespace]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _validate(objects: dict[tuple[str, str, str], Any]) -> None:
    crds = {d["spec"]["names"]["kind"]: d for text in render_crds().values() for d in yaml.safe_load_all(text) if d}
    for key, obj in objects.items():
        if obj["kind"] in crds:
            assert schema_errors(crds[obj["kind"]], obj) == [], key
        else:
            kubernetes_validate.validate(obj, "1.34.0", strict=True)


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_each_overlay_builds_valid_objects_that_differ_only_as_it_says(overlay: str) -> None:
    base, built = _build("base"), _build(f"overlays/{overlay}")
    _validate(built)
    changed = {k for k in base if built.get(k) != base[k]}
    assert changed == {OPERATOR}
    container = built[OPERATOR]["spec"]["template"]["spec"]["containers"][0]
    before = base[OPERATOR]["spec"]["template"]["spec"]["containers"][0]
    if overlay == "dev":
        assert set(built) == set(base)
        assert container["image"] == "ghcr.io/open-autoglm/operator:dev" and container["imagePullPolicy"] == "Always"
        assert container["args"] == [*before["args"], "--verbose"]
    else:
        (pdb,) = [o for k, o in built.items() if k not in base]
        assert pdb["kind"] == "PodDisruptionBudget" and pdb["spec"]["minAvailable"] == 1
        labels = built[OPERATOR]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert built[OPERATOR]["spec"]["replicas"] == 2 and "--leader-elect" in container["args"]
        spread = built[OPERATOR]["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
        assert container["args"] == before["args"]
