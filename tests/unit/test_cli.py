"""`autoglm plan`, `inventory` and `crds` as a user runs them: outputs and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoglm.face.cli import app
from tests.conftest import EXAMPLES, NODE_SETS

runner = CliRunner()
FLEET = str(NODE_SETS / "fleet.yaml")


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_gets_an_explained_plan(example: Path) -> None:
    nodes = FLEET if example.name != "cpu-fallback.yaml" else str(NODE_SETS / "cpu.yaml")
    result = runner.invoke(app, ["plan", "-f", str(example), "--nodes", nodes, "-o", "json"])
    assert result.exit_code == 0, result.output
    for item in json.loads(result.output):
        plan = item["plan"]
        assert plan["feasible"] and plan["assignments"]
        assert all(plan["assignments"][0]["option"]["reasons"])


def test_table_output_shows_inventory_placement_and_rejections() -> None:
    result = runner.invoke(
        app, ["plan", "-f", str(EXAMPLES / "glm-4.5.yaml"), "--nodes", FLEET], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    for text in ("Accelerator inventory", "Placement", "Rejected options", "vllm-cuda", "why:"):
        assert text in result.output


def test_yaml_output(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "plan",
            "-f",
            str(EXAMPLES / "glm-4-9b-chat.yaml"),
            "--nodes",
            str(NODE_SETS / "nvidia-h100.yaml"),
            "-o",
            "yaml",
        ],
    )
    assert result.exit_code == 0
    assert "precision: fp8" in result.output


def test_unplaceable_exits_1_with_reasons() -> None:
    result = runner.invoke(
        app,
        [
            "plan",
            "-f",
            str(EXAMPLES / "glm-4.5.yaml"),
            "--nodes",
            str(NODE_SETS / "nvidia-mixed.yaml"),
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 1
    plan = json.loads(result.output)[0]["plan"]
    assert not plan["feasible"] and plan["rejections"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("kind: ModelDeployment\nspec: [unclosed\n", "invalid YAML"),
        (
            "apiVersion: autoglm.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec:\n"
            "  model: {name: glm-4-9b-chat}\n  replica: {min: 1}\n",
            "spec.replica: unknown field",
        ),
        (
            "apiVersion: autoglm.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec:\n"
            "  model: {name: glm-4-9b-chat}\n  replicas: {min: 3, max: 1}\n",
            "spec.replicas: replicas.min (3)",
        ),
        (
            "apiVersion: autoglm.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec:\n"
            "  model: {name: my-private-model}\n",
            "spec.model: model 'my-private-model' is not in the built-in",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "kind: expected ModelDeployment"),
    ],
)
def test_bad_input_names_file_and_field_and_exits_2(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "md.yaml"
    path.write_text(content)
    result = runner.invoke(app, ["plan", "-f", str(path), "--nodes", FLEET])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and expected in result.output
    assert "Traceback" not in result.output


def test_bad_nodes_file_exits_2(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text("kind: Pod\nmetadata: {name: p}\n")
    result = runner.invoke(app, ["plan", "-f", str(EXAMPLES / "glm-4-9b-chat.yaml"), "--nodes", str(nodes)])
    assert result.exit_code == 2 and "expected kind Node" in result.output
    missing = runner.invoke(app, ["plan", "-f", str(tmp_path / "nope.yaml"), "--nodes", FLEET])
    assert missing.exit_code == 2 and "cannot read file" in missing.output


def test_extra_backends_file_overrides_the_catalog() -> None:
    extra = EXAMPLES / "runtimes" / "sglang-cuda.yaml"  # priority 150, above vllm-cuda's 100
    result = runner.invoke(
        app,
        [
            "plan",
            "-f",
            str(EXAMPLES / "glm-4-9b-chat.yaml"),
            "--nodes",
            str(NODE_SETS / "nvidia-h100.yaml"),
            "--backends",
            str(extra),
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["plan"]["assignments"][0]["option"]["backend"] == "sglang-cuda"


def test_inventory_command() -> None:
    result = runner.invoke(app, ["inventory", "--nodes", FLEET], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "Ascend910B3" in result.output and "unknown" in result.output


def test_crds_check_detects_drift(tmp_path: Path) -> None:
    assert runner.invoke(app, ["crds", "--out", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["crds", "--out", str(tmp_path), "--check"]).exit_code == 0
    (tmp_path / "modeldeployments.yaml").write_text("# edited by hand\n")
    drift = runner.invoke(app, ["crds", "--out", str(tmp_path), "--check"])
    assert drift.exit_code == 1 and "out of date" in drift.output


def test_catalog_command_prints_backend_runtimes() -> None:
    result = runner.invoke(app, ["catalog"])
    assert result.exit_code == 0 and "kind: BackendRuntime" in result.output and "llama-cpp-cpu" in result.output


def test_plan_across_member_clusters_gives_each_member_its_plan() -> None:
    args = [
        "plan",
        "-f",
        str(EXAMPLES / "multi-cluster-divided.yaml"),
        "--cluster",
        f"gpu={NODE_SETS / 'nvidia-h100.yaml'}",
        "--cluster",
        f"ascend={NODE_SETS / 'huawei-ascend.yaml'}",
        "--cluster",
        f"edge={NODE_SETS / 'sophgo.yaml'}",
        "-o",
        "json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.output)
    members = {m["name"]: m for m in item["members"]}
    assert set(members) == {"gpu", "ascend"} and item["excluded"] == {"edge": "not in placement.clusters"}
    assert (members["gpu"]["replicas"], members["ascend"]["replicas"]) == (3, 1)
    backends = {n: m["plan"]["assignments"][0]["option"]["backend"] for n, m in members.items()}
    assert backends == {"gpu": "vllm-cuda", "ascend": "vllm-ascend"}
    table = runner.invoke(app, args[:-2], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "Members" in table.output and "vllm-ascend" in table.output


def test_plan_across_members_selects_by_label_and_reports_what_fits_nowhere(tmp_path: Path) -> None:
    md = tmp_path / "md.yaml"
    md.write_text(
        "apiVersion: autoglm.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: edge-only}\n"
        "spec:\n  model: {name: glm-4-9b-chat}\n  replicas: {min: 8, max: 8}\n"
        "  placement: {clusterSelector: {matchLabels: {site: edge}}}\n"
    )
    result = runner.invoke(
        app,
        [
            "plan", "-f", str(md),
            "--cluster", f"gpu={NODE_SETS / 'nvidia-h100.yaml'}",
            "--cluster", f"edge={NODE_SETS / 'sophgo.yaml'}",
            "--cluster-labels", "edge=site=edge",
            "-o", "json",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # 2 of 8 fit nowhere
    (item,) = json.loads(result.output)
    assert [(m["name"], m["replicas"]) for m in item["members"]] == [("edge", 6)]
    assert item["unschedulable"] == 2 and "labels do not match" in item["excluded"]["gpu"]


def test_plan_needs_nodes_or_clusters_and_labels_need_a_cluster() -> None:
    example = str(EXAMPLES / "glm-4-9b-chat.yaml")
    assert runner.invoke(app, ["plan", "-f", example]).exit_code == 2
    bad = runner.invoke(
        app, ["plan", "-f", example, "--cluster", f"a={NODE_SETS / 'cpu.yaml'}", "--cluster-labels", "b=x=y"]
    )
    assert bad.exit_code == 2 and "no --cluster named b" in bad.output


def test_render_prints_what_the_operator_applies_and_a_t4_gets_weights_that_exist(tmp_path: Path) -> None:
    """The issue's T4 case: glm-4-9b-chat on one 16 GB T4 fits only quantized. `autoglm render` prints the model
    cache claim, the llm-compressor Job that writes int8 weights, and a vLLM pod that loads them (not the bf16
    checkpoint); every object is valid for Kubernetes 1.34."""
    import kubernetes_validate
    import yaml

    nodes = yaml.safe_load((NODE_SETS / "nvidia-mixed.yaml").read_text())
    t4 = next(n for n in nodes["items"] if n["metadata"]["name"] == "t4-0")
    t4["metadata"]["labels"]["nvidia.com/gpu.count"] = "1"
    for field in ("capacity", "allocatable"):
        t4["status"][field]["nvidia.com/gpu"] = "1"
    (tmp_path / "t4.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [t4]}))
    md = yaml.safe_load((EXAMPLES / "glm-4-9b-chat.yaml").read_text())
    md["spec"]["resources"]["maxConcurrentSequences"] = 4
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(md))
    result = runner.invoke(app, ["render", "-f", str(tmp_path / "md.yaml"), "--nodes", str(tmp_path / "t4.yaml")])
    assert result.exit_code == 0, result.output
    objects = list(yaml.safe_load_all(result.output))
    assert [o["kind"] for o in objects] == [
        "PersistentVolumeClaim",
        "Job",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodMonitor",
    ]
    for obj in objects:
        if not obj["apiVersion"].startswith("monitoring.coreos.com"):
            kubernetes_validate.validate(obj, "1.34.0", strict=True)
    job, deployment = objects[1], objects[2]
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    artifact = script.split("THUDM/glm-4-9b-chat ")[1].split()[0]
    assert "llmcompressor==0.8.1" in script and script.split(artifact)[1].split()[0] == "W8A8"
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert server["args"][0] == artifact and "--dtype" in server["args"]
    assert deployment["spec"]["template"]["spec"]["initContainers"][0]["name"] == "wait-for-artifact"


def test_render_of_a_deployment_that_cannot_be_placed_exits_1_with_the_reason() -> None:
    result = runner.invoke(
        app, ["render", "-f", str(EXAMPLES / "glm-4.5.yaml"), "--nodes", str(NODE_SETS / "cpu.yaml")]
    )
    assert result.exit_code == 1
    assert "cannot be placed" in result.output


def test_leader_election_outside_a_pod_asks_for_the_leases_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("AUTOGLM_LEADER_ELECTION_NAMESPACE", raising=False)
    result = CliRunner().invoke(app, ["run", "--leader-elect", "--kubeconfig", "/nonexistent", "--metrics-port", "0"])
    assert result.exit_code == 2
    assert "--leader-election-namespace is required outside a pod" in result.output


def test_leader_election_timings_must_nest(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["run", "--leader-elect", "--leader-election-namespace", "ops", "--kubeconfig", "/nonexistent"]
    result = CliRunner().invoke(app, [*args, "--leader-election-renew-deadline", "20", "--metrics-port", "0"])
    assert result.exit_code == 2 and "lease duration > renew deadline > retry period" in result.output


def test_piped_output_is_plain_columns_with_every_name_and_line_whole_as_kubectl_prints() -> None:
    """Piped into another command, a table is not cut to the pipe's 80 columns (`vllm-…` helps no one), has no
    box drawing for grep or awk to step over, and no line is wrapped."""
    done = subprocess.run(
        [
            sys.executable, "-c", "from autoglm.face.cli import main; main()", "plan",
            "-f", str(EXAMPLES / "glm-4-9b-chat.yaml"), "--nodes", str(EXAMPLES / "nodes" / "huawei-ascend.yaml"),
        ],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}, timeout=120, check=True,
    )  # fmt: skip
    assert "…" not in done.stdout
    for name in ("huawei-ascend910b3-x8", "huawei-ascend310p3-x4", "vllm-ascend", "Ascend910B3"):
        assert name in done.stdout, name
    assert not set(done.stdout) & set("┃│━─┏┓┗┛┡┩└┘╇╈┳┻"), done.stdout
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("replicas "))
    row = lines[lines.index(header) + 1].split()
    assert header.split()[:4] == ["replicas", "pool", "backend", "precision"] and row[2] == "vllm-ascend", lines
    (why,) = [line for line in lines if line.startswith("why: ")]
    assert len(why) > 250 and why.endswith("weights bf16: the model's checkpoint"), why  # whole, on one line
