"""The operator's images (core.images): the helper image and the mirror every rendered image is pulled from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autoglm.core.backends import load_default_catalog
from autoglm.core.images import _REGISTRY, Images, mirrored, registry_problem, split_reference
from autoglm.core.karmada import MemberPart, propagation_objects
from autoglm.core.models import profile_for
from autoglm.core.planner import plan
from autoglm.core.render import artifact_cleanup_job, conversion_job, serving_objects, template_hash
from autoglm.face.cli import app
from tests.conftest import EXAMPLES, NODE_SETS, inventory_of
from tests.unit.test_render import _md, _validate

MIRROR = "registry.corp.example:5000/ai"
CHART = Path(__file__).resolve().parents[2] / "charts" / "open-autoglm"


@pytest.mark.parametrize(
    ("reference", "registry", "path"),
    [
        ("busybox:1.37", "docker.io", "library/busybox:1.37"),
        ("vllm/vllm-openai:v0.11.0", "docker.io", "vllm/vllm-openai:v0.11.0"),
        ("nvcr.io/nvidia/tritonserver:25.01-py3", "nvcr.io", "nvidia/tritonserver:25.01-py3"),
        ("quay.io/ascend/vllm-ascend:v0.11.0rc0", "quay.io", "ascend/vllm-ascend:v0.11.0rc0"),
        ("localhost/tools/sh:1", "localhost", "tools/sh:1"),
        ("registry:5000/x/y@sha256:" + "a" * 64, "registry:5000", "x/y@sha256:" + "a" * 64),
    ],
)
def test_a_reference_splits_into_its_registry_and_path_as_docker_reads_it(
    reference: str, registry: str, path: str
) -> None:
    assert split_reference(reference) == (registry, path)
    assert mirrored(reference, MIRROR) == f"{MIRROR}/{path}"
    assert mirrored(reference, MIRROR + "/") == f"{MIRROR}/{path}"
    assert mirrored(reference, "") == reference


def test_a_mirror_must_be_a_registry_host_with_an_optional_port_and_path() -> None:
    for good in (MIRROR, "harbor.example.com", "10.0.0.5:5000/proxy/docker-hub"):
        assert registry_problem(good) is None, good
    for bad, why in (("https://harbor.example.com", "scheme"), ("Harbor.Example.com", "not a registry host")):
        problem = registry_problem(bad)
        assert problem is not None and why in problem, (bad, problem)
    with pytest.raises(ValueError, match="scheme"):
        Images(registry="https://harbor.example.com")
    with pytest.raises(ValueError, match="helper image is empty"):
        Images(helper=" ")


def test_the_charts_schema_refuses_the_mirrors_the_operator_refuses() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["images"]["properties"]["registry"]["pattern"] == "^$|" + _REGISTRY.pattern
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["images"] == {"helper": Images().helper, "registry": ""}


def _images_of(runtime: Any) -> list[str]:
    spec = runtime.spec
    conversions = [spec.conversion] + [q.conversion for q in spec.quantized_weights.values()]
    return [spec.image] + [c.image for c in conversions if c is not None]


def test_every_image_of_every_runtime_is_pulled_from_the_mirror() -> None:
    catalog = load_default_catalog()
    assert any(q.conversion for r in catalog for q in r.spec.quantized_weights.values()), "a quantization Job"
    mirrored_catalog = Images(registry=MIRROR).catalog(catalog)
    for before, after in zip(catalog, mirrored_catalog, strict=True):
        assert _images_of(after) == [mirrored(i, MIRROR) for i in _images_of(before)], before.metadata.name
        assert after.spec.model_dump(exclude={"image", "conversion", "quantized_weights"}) == before.spec.model_dump(
            exclude={"image", "conversion", "quantized_weights"}
        )
    assert Images().catalog(catalog) == catalog


def _converted(images: Images) -> tuple[Any, Any]:
    md = _md(model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    catalog = images.catalog(load_default_catalog())
    result = plan(inventory_of("nvidia-h100.yaml"), profile_for(md.spec.model), catalog, md.spec, served_name="glm")
    return md, result


def _pod_images(pod: dict[str, Any]) -> list[str]:
    return [c["image"] for c in [*pod.get("initContainers", []), *pod["containers"]]]


def test_a_converted_deployment_pulls_everything_from_the_mirror_and_waits_with_the_helper() -> None:
    images = Images(helper="tools/sh:1", registry=MIRROR)
    md, result = _converted(images)
    runtimes = {b.metadata.name: b for b in images.catalog(load_default_catalog())}
    option = result.assignments[0].option
    objects = serving_objects(md, result, runtimes, helper_image=images.helper_image)
    job, cleanup = conversion_job(md, option), artifact_cleanup_job("serving", "k" * 16, images.helper_image)
    assert job is not None
    _validate([*objects, job, cleanup])
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    pods = [deploy["spec"]["template"]["spec"], job["spec"]["template"]["spec"], cleanup["spec"]["template"]["spec"]]
    pulled = [image for pod in pods for image in _pod_images(pod)]
    assert len(pulled) == 4 and all(image.startswith(f"{MIRROR}/") for image in pulled), pulled
    assert _pod_images(pods[0])[0] == f"{MIRROR}/tools/sh:1"  # the wait for the artifact
    assert _pod_images(pods[2]) == [f"{MIRROR}/tools/sh:1"]
    # Pods pulled from elsewhere are other pods: the plan's template hash changes, and they roll.
    assert template_hash(option) != template_hash(_converted(Images())[1].assignments[0].option)


def test_karmada_mode_templates_wait_with_the_helper_image() -> None:
    md, result = _converted(Images())
    runtimes = {b.metadata.name: b for b in load_default_catalog()}
    objects = propagation_objects(md, [MemberPart("gpu", result)], runtimes, helper_image="tools/sh:1")
    (deploy,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deploy["spec"]["template"]["spec"]["initContainers"][0]["image"] == "tools/sh:1"


def test_autoglm_render_shows_the_mirrored_images_and_refuses_a_bad_mirror() -> None:
    runner = CliRunner()
    args = ["render", "-f", str(EXAMPLES / "chatglm3-6b-tensorrt.yaml"), "--nodes", str(NODE_SETS / "nvidia-h100.yaml")]
    result = runner.invoke(app, [*args, "--image-registry", MIRROR, "--helper-image", "tools/sh:1"])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.output))
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")]
    pulled = [image for pod in pods for image in _pod_images(pod)]
    assert len(pulled) == 3 and all(image.startswith(f"{MIRROR}/") for image in pulled), pulled
    assert f"{MIRROR}/tools/sh:1" in pulled
    bad = runner.invoke(app, [*args, "--image-registry", "https://harbor.example.com"])
    assert bad.exit_code == 2
    assert "--image-registry" in bad.output and "scheme" in bad.output
