"""The API models, the generated CRDs and the example manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from autoglm.api import RESOURCES, ModelDeployment, ModelDeploymentSpec
from autoglm.api.crd import crd_manifest
from autoglm.face.cli import render_crds
from tests.conftest import EXAMPLES, ROOT
from tests.crd_validation import schema_errors

MD_CRD = crd_manifest(ModelDeployment)


def test_generated_crds_match_committed_files() -> None:
    for name, text in render_crds().items():
        committed = (ROOT / "crds" / name).read_text()
        assert committed == text, f"crds/{name} drifted from the API models: run `autoglm crds`"


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        found += _walk(sub, f"{path}.{name}")
    if "items" in node:
        found += _walk(node["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.crd.kind)
def test_crd_is_structural_and_documented(resource: Any) -> None:
    crd = crd_manifest(resource)
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "type" in node, f"{path} has no type (not structural)"
        assert node.get("additionalProperties") is not False, f"{path}: additionalProperties false"
        assert "$ref" not in node and "anyOf" not in node, path
        if path.count(".") >= 2 and not path.endswith("[]"):
            assert node.get("description"), f"{path} has no description for kubectl explain"
    assert crd["spec"]["names"]["shortNames"]
    assert "autoglm" in crd["spec"]["names"]["categories"]
    assert version["additionalPrinterColumns"]
    if "status" in resource.model_fields:
        assert version["subresources"] == {"status": {}}


def test_modeldeployment_printer_columns_cover_the_plan() -> None:
    names = [c["name"] for c in MD_CRD["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert names == ["Model", "Backend", "Precision", "TP", "Ready", "Clusters", "Age"]


def test_spec_defaults_are_owned_by_the_model() -> None:
    spec = ModelDeploymentSpec.model_validate({"model": {"name": "glm-4-9b-chat"}})
    assert spec.precision.value == "auto"
    assert spec.backend == "auto"
    assert spec.fallback_policy.value == "cpu"
    assert spec.memory_alignment == 64
    assert (spec.replicas.min, spec.replicas.max) == (1, 1)
    assert spec.placement.replica_scheduling.value == "Divided"
    schema_spec = MD_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert schema_spec["properties"]["memoryAlignment"]["default"] == 64
    assert schema_spec["properties"]["precision"]["default"] == "auto"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid_for_pydantic_and_the_crd_schema(path: Path) -> None:
    for doc in _documents(path):
        ModelDeployment.model_validate(doc)
        assert schema_errors(MD_CRD, doc) == []


INVALID = {
    "model-is-string.yaml": "spec.model",
    "min-above-max.yaml": "spec.replicas",
    "unknown-precision.yaml": "spec.precision",
    "alignment-not-power-of-two.yaml": "spec.memoryAlignment",
    "unknown-field.yaml": "spec",
    "zero-weights.yaml": "spec.placement.weights",
    "toleration-exists-with-value.yaml": "spec.placement.clusterTolerations",
}


@pytest.mark.parametrize(("name", "field"), sorted(INVALID.items()))
def test_invalid_examples_are_rejected_naming_the_field(name: str, field: str) -> None:
    doc = _documents(EXAMPLES / "invalid" / name)[0]
    with pytest.raises(ValidationError) as exc:
        ModelDeployment.model_validate(doc)
    pydantic_paths = [".".join(str(p) for p in e["loc"]) for e in exc.value.errors()]
    assert any(p.startswith(field) for p in pydantic_paths), pydantic_paths
    if name == "zero-weights.yaml":
        return  # a sum over a list is not expressible in CEL without extension libraries; pydantic guards it
    errors = schema_errors(MD_CRD, doc)
    assert errors, f"the CRD schema accepted {name}"
    assert any(e.startswith(field) for e in errors), errors


def test_invalid_example_set_is_complete() -> None:
    assert {p.name for p in (EXAMPLES / "invalid").glob("*.yaml")} == set(INVALID)


def test_cel_rule_matches_pydantic_for_replicas() -> None:
    good = {
        "apiVersion": "autoglm.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "x"},
        "spec": {"model": {"name": "m"}, "replicas": {"min": 2, "max": 2}},
    }
    assert schema_errors(MD_CRD, good) == []
    bad = {**good, "spec": {"model": {"name": "m"}, "replicas": {"min": 3, "max": 2}}}
    assert schema_errors(MD_CRD, bad) == ["spec.replicas: replicas.min must not exceed replicas.max"]


def test_static_and_dynamic_weights_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="either static or dynamic"):
        ModelDeploymentSpec.model_validate(
            {
                "model": {"name": "m"},
                "placement": {"weights": {"static": [{"cluster": "a", "weight": 1}], "dynamic": "FreeAccelerators"}},
            }
        )


@pytest.mark.parametrize("path", sorted((EXAMPLES / "runtimes").glob("*.yaml")), ids=lambda p: p.name)
def test_runtime_examples_are_valid(path: Path) -> None:
    from autoglm.api import BackendRuntime
    from autoglm.core.backends import unknown_placeholders

    crd = crd_manifest(BackendRuntime)
    for doc in _documents(path):
        runtime = BackendRuntime.model_validate(doc)
        assert schema_errors(crd, doc) == []
        assert unknown_placeholders(runtime) == set()
