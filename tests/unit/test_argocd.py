"""manifests/argocd: the Application installs the chart with values its schema accepts, and the kustomization
puts the health check into argocd-cm under the key Argo CD reads. The health check itself runs on statuses the
operator wrote on the sandbox (tests/integration/test_install.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.argocd import HEALTH_CHECK
from tests.chart import CHART, run, template
from tests.conftest import ROOT

ARGOCD = ROOT / "manifests" / "argocd"


def test_the_application_installs_the_chart_with_values_its_schema_accepts(tmp_path: Path) -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    source = app["spec"]["source"]
    assert (ROOT / source["path"]).resolve() == CHART.resolve()
    objects = template(tmp_path, source["helm"]["valuesObject"], release=source["helm"]["releaseName"])
    namespace = app["spec"]["destination"]["namespace"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["metadata"]["namespace"] == namespace
    # The same names as the kustomize base, so either install path can replace the other.
    base = (ROOT / "manifests" / "base" / "operator.yaml").read_text()
    assert f"name: {deployment['metadata']['name']}\n" in base
    assert {"CreateNamespace=true", "ServerSideApply=true"} <= set(app["spec"]["syncPolicy"]["syncOptions"])


def test_the_health_check_lands_in_argocd_cm_under_the_key_argo_cd_reads() -> None:
    built = [d for d in yaml.safe_load_all(run("kubectl", "kustomize", str(ARGOCD)).stdout) if d]
    (config,) = [d for d in built if d["kind"] == "ConfigMap"]
    assert config["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    assert config["data"] == {"resource.customizations.health.autoglm.io_ModelDeployment": HEALTH_CHECK.read_text()}
    assert [d["kind"] for d in built if d is not config] == ["Application"]
