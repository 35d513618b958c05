"""A model's own config.json as its architecture: the GLM catalog's numbers come back from the published GLM
config, and a model outside the catalog (Qwen2-7B-Instruct) is sized from its real shape. Fixtures and their
sources: tests/fixtures/model-configs/README.md."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from autoglm.api.modeldeployment import ModelArchitecture, ModelSource
from autoglm.core.model_config import architecture_from_config, with_config
from autoglm.core.models import build_profile, load_model_catalog, profile_for
from autoglm.face.cli import app
from tests.conftest import NODE_SETS

CONFIGS = Path(__file__).resolve().parents[1] / "fixtures" / "model-configs"


def _config(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((CONFIGS / name).read_text())
    return data


def test_glm_4_9b_chats_config_gives_the_catalogs_architecture_and_parameter_count() -> None:
    read = architecture_from_config(_config("glm-4-9b-chat.json"))
    entry = load_model_catalog().find("glm-4-9b-chat")
    assert entry is not None
    assert read == entry.architecture.model_copy(update={"parameters": None})
    assert build_profile("x", read).parameters == profile_for(ModelSource(name="glm-4-9b-chat")).parameters


def test_a_model_outside_the_catalog_is_sized_from_its_config() -> None:
    """Qwen2-7B-Instruct: grouped-query attention (28 heads, 4 KV heads) with q/k/v biases its config does not
    state, untied embeddings: 7,615,616,512 parameters, the count its model card gives as 7.62B."""
    read = architecture_from_config(_config("qwen2-7b-instruct.json"))
    assert (read.model_type, read.num_kv_heads, read.attention_bias, read.max_context) == ("qwen2", 4, True, 32768)
    assert build_profile("qwen2-7b-instruct", read).parameters == 7_615_616_512
    # what the spec states still wins over the file
    model = ModelSource(name="qwen2-7b-instruct", architecture=ModelArchitecture(max_context=8192))
    assert with_config(model, _config("qwen2-7b-instruct.json")).architecture.max_context == 8192  # type: ignore[union-attr]


def test_plan_reads_a_config_json_and_names_a_bad_one(tmp_path: Path) -> None:
    md = tmp_path / "md.yaml"
    md.write_text(
        "apiVersion: autoglm.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: qwen}\n"
        "spec:\n  model: {name: qwen2-7b-instruct, source: 'hf://Qwen/Qwen2-7B-Instruct'}\n"
    )
    runner = CliRunner()
    nodes = str(NODE_SETS / "nvidia-h100.yaml")
    config = str(CONFIGS / "qwen2-7b-instruct.json")
    result = runner.invoke(app, ["plan", "-f", str(md), "--nodes", nodes, "--model-config", config, "-o", "json"])
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.output)
    assert item["plan"]["parameters"] == 7_615_616_512
    assert item["plan"]["assignments"][0]["option"]["backend"] == "vllm-cuda"
    without = runner.invoke(app, ["plan", "-f", str(md), "--nodes", nodes])
    assert without.exit_code == 2 and "not in the built-in catalog" in without.output
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    broken = runner.invoke(app, ["plan", "-f", str(md), "--nodes", nodes, "--model-config", str(bad)])
    assert broken.exit_code == 2 and str(bad) in broken.output and "not JSON" in broken.output


def test_the_configmap_example_holds_the_published_config_and_plans() -> None:
    import yaml

    from autoglm.api.modeldeployment import ModelDeployment
    from autoglm.core.backends import load_default_catalog
    from autoglm.core.model_config import parse_config
    from autoglm.core.planner import plan
    from tests.conftest import EXAMPLES, inventory_of

    configmap, body = yaml.safe_load_all((EXAMPLES / "model-config" / "qwen2-7b-instruct.yaml").read_text())
    md = ModelDeployment.model_validate(body)
    ref = md.spec.model.config_map
    assert ref is not None and ref.name == configmap["metadata"]["name"]
    config = parse_config(configmap["data"][ref.key], "example")
    assert config == _config("qwen2-7b-instruct.json")
    profile = profile_for(with_config(md.spec.model, config))
    result = plan(inventory_of("nvidia-h100.yaml"), profile, load_default_catalog(), md.spec)
    assert result.feasible and profile.parameters == 7_615_616_512
