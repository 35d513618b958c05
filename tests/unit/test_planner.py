"""Planner decisions and the reasons it gives."""

from __future__ import annotations

import copy
import random

from autoglm.api.common import Precision
from autoglm.core.hardware import build_inventory
from autoglm.core.models import profile_for
from autoglm.core.planner import plan, tensor_parallel_sizes
from tests.conftest import inventory_of, load_nodes, spec


def _plan(nodes: str | list[str], catalog, **fields):
    names = [nodes] if isinstance(nodes, str) else nodes
    s = spec(**fields)
    return plan(inventory_of(*names), profile_for(s.model), catalog, s)


def test_hopper_gets_fp8_at_tp1(catalog) -> None:
    p = _plan("nvidia-h100.yaml", catalog, model={"name": "glm-4-9b-chat"})
    o = p.primary
    assert p.feasible and o is not None
    assert (o.backend, o.precision, o.tensor_parallel) == ("vllm-cuda", Precision.FP8, 1)
    assert "--quantization" in o.args and "fp8" in o.args
    assert o.args[o.args.index("--tensor-parallel-size") + 1] == "1"
    assert o.max_replicas == 16


def test_ampere_gets_bf16_and_turing_fp16(catalog) -> None:
    nodes = [n for n in load_nodes("nvidia-mixed.yaml") if n["metadata"]["name"] in ("a10-0", "t4-0")]
    s = spec(model={"name": "chatglm3-6b"}, resources={"contextLength": 4096, "maxConcurrentSequences": 4})
    p = plan(build_inventory(nodes), profile_for(s.model), catalog, s)
    by_pool = {o.pool: o for o in p.options}
    assert by_pool["nvidia-a10-24gb-x1"].precision is Precision.BF16
    t4 = by_pool["nvidia-t4-16gb-x4"]
    assert t4.precision is Precision.FP16 and "float16" in t4.args


def test_smallest_tensor_parallel_that_fits(catalog) -> None:
    p = _plan(
        "nvidia-h100.yaml",
        catalog,
        model={"name": "GLM-4-32B-0414"},
        precision="bf16",
        resources={"contextLength": 32768, "maxConcurrentSequences": 8},
    )
    o = p.primary
    assert o is not None and o.tensor_parallel == 2  # 60.7 GiB of weights cannot sit on one 80 GB H100
    assert any(r.reason.startswith("bf16") for r in p.rejections) is False
    assert o.memory.total <= o.memory.usable


def test_long_context_kv_cache_sets_tensor_parallel(catalog) -> None:
    short = _plan(
        "nvidia-h100.yaml",
        catalog,
        model={"name": "glm-4-9b-chat-1m"},
        precision="bf16",
        resources={"contextLength": 8192, "maxConcurrentSequences": 1},
    )
    long = _plan(
        "nvidia-h100.yaml",
        catalog,
        model={"name": "glm-4-9b-chat-1m"},
        precision="bf16",
        resources={"contextLength": 1048576, "maxConcurrentSequences": 1},
    )
    assert short.primary and long.primary
    assert short.primary.tensor_parallel == 1 and long.primary.tensor_parallel == 2
    assert long.primary.memory.kv_cache > long.primary.memory.weights


W8A8 = {"precision": "int8", "format": "msmodelslim-w8a8", "source": "pvc://models/GLM-4.5-w8a8"}


def test_quantizes_only_when_needed_to_fit(catalog) -> None:
    one_node = [n for n in load_nodes("huawei-ascend.yaml") if n["metadata"]["name"] == "ascend-910b3-0"]
    s = spec(
        model={"name": "GLM-4.5", "checkpoints": [W8A8]},
        resources={"contextLength": 32768, "maxConcurrentSequences": 8},
    )
    p = plan(build_inventory(one_node), profile_for(s.model), catalog, s)
    chosen = p.primary
    assert chosen is not None and chosen.precision is Precision.INT8 and chosen.tensor_parallel == 8
    rejected = {r.precision for r in p.rejections}
    assert {Precision.BF16, Precision.FP16} <= rejected
    assert "quantized because" in chosen.reasons[1]
    # the W8A8 checkpoint is what vllm-ascend loads, with its quantization method
    assert chosen.args[0] == "/models/GLM-4.5-int8" and chosen.args[-2:] == ["--quantization", "ascend"]
    assert "msmodelslim-w8a8 checkpoint pvc://models/GLM-4.5-w8a8" in " ".join(chosen.reasons)
    # With a second node the model keeps bf16 and spans both nodes instead of quantizing.
    two = _plan(
        "huawei-ascend.yaml",
        catalog,
        model={"name": "GLM-4.5"},
        resources={"contextLength": 32768, "maxConcurrentSequences": 8},
    )
    spanned = next(o for o in two.options if o.pool == "huawei-ascend910b3-x8")
    assert (spanned.precision, spanned.tensor_parallel, spanned.pipeline_parallel) == (Precision.BF16, 8, 2)


def test_no_precision_is_offered_without_weights_that_exist(catalog) -> None:
    """GLM-4.5 on one Ascend node fits only at int8, and int8 on vllm-ascend needs an msModelSlim W8A8 checkpoint:
    without one the planner offers nothing and says so."""
    one_node = [n for n in load_nodes("huawei-ascend.yaml") if n["metadata"]["name"] == "ascend-910b3-0"]
    s = spec(model={"name": "GLM-4.5"}, resources={"contextLength": 32768, "maxConcurrentSequences": 8})
    p = plan(build_inventory(one_node), profile_for(s.model), catalog, s)
    assert p.primary is None
    why = next(r.reason for r in p.rejections if r.backend == "vllm-ascend" and r.precision is Precision.INT8)
    assert "needs a pre-quantized checkpoint (msmodelslim-w8a8)" in why and "spec.model.checkpoints" in why


def test_a_quantization_job_makes_int4_weights_for_vllm_and_the_pod_loads_them(catalog) -> None:
    p = _plan("nvidia-h100.yaml", catalog, model={"name": "glm-4-9b-chat"}, precision="int4")
    chosen = p.primary
    assert chosen is not None and chosen.conversion is not None
    job = chosen.conversion
    assert job.produces == "compressed-tensors" and job.tool_version == "llmcompressor-0.8.1"
    assert job.args[0].split()[-3:] == ["THUDM/glm-4-9b-chat", job.artifact_path, "W4A16"]
    assert chosen.args[0] == job.artifact_path  # vLLM serves what the Job wrote, not the bf16 checkpoint
    # a checkpoint the deployment names is served as it is, and no Job runs
    awq = {"precision": "int4", "format": "awq", "source": "hf://example-org/glm-4-9b-chat-awq"}
    named = _plan("nvidia-h100.yaml", catalog, model={"name": "glm-4-9b-chat", "checkpoints": [awq]}, precision="int4")
    assert named.primary is not None and named.primary.conversion is None
    assert named.primary.args[0] == "example-org/glm-4-9b-chat-awq"


def test_multi_node_pipeline_when_one_node_cannot_hold_it(catalog) -> None:
    p = _plan(
        "nvidia-h100.yaml",
        catalog,
        model={"name": "GLM-4.5"},
        precision="bf16",
        resources={"contextLength": 8192, "maxConcurrentSequences": 4},
    )
    o = p.primary
    assert o is not None and (o.tensor_parallel, o.pipeline_parallel) == (8, 2)
    assert o.devices_per_replica == 16 and o.max_replicas == 1


def test_unplaceable_model_explains_every_rejection_in_gib(catalog) -> None:
    p = _plan("nvidia-mixed.yaml", catalog, model={"name": "GLM-4.5"}, fallbackPolicy="none")
    assert not p.feasible and not p.assignments
    memory_reasons = [r.reason for r in p.rejections if "GiB" in r.reason]
    assert memory_reasons
    assert any("usable" in r and "weights" in r for r in memory_reasons)
    assert "cannot be placed" in p.summary


def test_cpu_fallback_only_when_no_accelerator_fits(catalog) -> None:
    p = _plan(
        ["sophgo.yaml", "cpu.yaml"],
        catalog,
        model={"name": "GLM-4.5-Air"},
        resources={"contextLength": 4096, "maxConcurrentSequences": 2},
    )
    assert p.feasible and p.fallback
    o = p.primary
    assert o is not None and o.is_cpu and o.backend == "llama-cpp-cpu" and o.precision is Precision.INT8
    assert o.conversion is not None and o.conversion.produces == "gguf"
    assert any("falling back to CPU" in w for w in p.warnings)
    none = _plan(
        ["sophgo.yaml", "cpu.yaml"],
        catalog,
        model={"name": "GLM-4.5-Air"},
        fallbackPolicy="none",
        resources={"contextLength": 4096, "maxConcurrentSequences": 2},
    )
    assert not none.feasible
    assert any("fallbackPolicy is none" in r.reason for r in none.rejections)
    with_gpu = _plan(["nvidia-h100.yaml", "cpu.yaml"], catalog, model={"name": "GLM-4-32B-0414"})
    assert not with_gpu.fallback and not with_gpu.primary.is_cpu


def test_conversion_step_and_cache_key(catalog) -> None:
    p = _plan("nvidia-h100.yaml", catalog, model={"name": "chatglm3-6b"}, backend="tensorrt-llm", precision="bf16")
    conv = p.primary.conversion
    assert conv is not None and conv.produces == "tensorrt-engine" and conv.needs_accelerator
    assert conv.artifact_path.endswith(conv.cache_key)
    assert "--dtype bfloat16" in conv.args[0] and "--tp_size 1" in conv.args[0]
    again = _plan(
        "nvidia-h100.yaml",
        catalog,
        model={"name": "chatglm3-6b"},
        backend="tensorrt-llm",
        precision="bf16",
        replicas={"min": 3, "max": 3},
    )
    assert again.primary.conversion.cache_key == conv.cache_key  # same model, chip, precision, tool
    other = _plan(
        "nvidia-h100.yaml",
        catalog,
        model={"name": "chatglm3-6b", "revision": "v1.1"},
        backend="tensorrt-llm",
        precision="bf16",
    )
    assert other.primary.conversion.cache_key != conv.cache_key


def test_ascend_om_conversion_uses_atc_for_the_soc(catalog) -> None:
    p = _plan(
        "huawei-ascend.yaml",
        catalog,
        model={"name": "chatglm3-6b"},
        backend="mindie-om",
        resources={"contextLength": 2048, "maxConcurrentSequences": 1},
    )
    o = next(x for x in p.options if x.accelerator == "Ascend910A")
    assert "--framework=5" in o.conversion.args[0] and "--soc_version=Ascend910A" in o.conversion.args[0]


def test_user_backend_and_precision_errors_are_reasons(catalog) -> None:
    p = _plan("nvidia-h100.yaml", catalog, model={"name": "glm-4-9b-chat"}, backend="sglang")
    assert not p.feasible and "not in the catalog" in p.rejections[0].reason
    p = _plan("nvidia-h100.yaml", catalog, model={"name": "GLM-4.5"}, backend="tensorrt-llm")
    assert any("serves model types chatglm, not glm4_moe" in r.reason for r in p.rejections)
    p = _plan("huawei-ascend.yaml", catalog, model={"name": "glm-4-9b-chat"}, precision="fp8", fallbackPolicy="none")
    assert not p.feasible
    assert any("fp8 is not supported by vllm-ascend on Ascend910B3" in r.reason for r in p.rejections)


def test_unknown_accelerators_are_reported_not_used(catalog) -> None:
    p = _plan("kunlunxin.yaml", catalog, model={"name": "GLM-4.5-Air"}, precision="int4")
    assert p.feasible and p.primary.accelerator == "P800"
    assert any(r.pool == "kunlunxin-unknown-x8" and "unknown" in r.reason for r in p.rejections)
    assert any("fastdeploy-xpu supports P800, not R200" in r.reason for r in p.rejections) is False


def test_replicas_spill_over_to_the_next_pool_when_free_devices_run_out(catalog) -> None:
    p = _plan(
        ["nvidia-h100.yaml", "amd.yaml"],
        catalog,
        model={"name": "GLM-4.5-Air"},
        precision="bf16",
        replicas={"min": 6, "max": 6},
        resources={"contextLength": 8192, "maxConcurrentSequences": 4},
    )
    placed = {a.option.pool: a.replicas for a in p.assignments}
    assert sum(placed.values()) == 6
    assert len(placed) == 2
    many = _plan(
        "nvidia-h100.yaml",
        catalog,
        model={"name": "GLM-4.5-Air"},
        precision="bf16",
        replicas={"min": 50, "max": 50},
    )
    assert many.feasible and any("only" in w and "of 50 replicas" in w for w in many.warnings)


def test_no_free_devices_is_a_reason(catalog) -> None:
    nodes = load_nodes("nvidia-h100.yaml")
    pods = [
        {
            "spec": {
                "nodeName": n["metadata"]["name"],
                "containers": [{"resources": {"requests": {"nvidia.com/gpu": "8"}}}],
            },
            "status": {"phase": "Running"},
        }
        for n in nodes
    ]
    s = spec(model={"name": "glm-4-9b-chat"}, fallbackPolicy="none")
    p = plan(build_inventory(nodes, pods=pods), profile_for(s.model), catalog, s)
    assert not p.feasible
    assert any(r.kind == "capacity" and "but needs" in r.reason and "free" in r.reason for r in p.rejections)


def test_mig_slices_are_single_device(catalog) -> None:
    p = _plan(
        "nvidia-mixed.yaml",
        catalog,
        model={"name": "chatglm3-6b"},
        resources={"contextLength": 2048, "maxConcurrentSequences": 2},
    )
    mig = next(o for o in p.options if "mig-3g" in o.pool)
    assert mig.tensor_parallel == 1


def test_context_longer_than_the_model_is_capped_with_a_warning(catalog) -> None:
    p = _plan("nvidia-h100.yaml", catalog, model={"name": "chatglm3-6b"}, resources={"contextLength": 100000})
    assert any("exceeds" in w for w in p.warnings)
    assert "8192" in p.primary.args


def test_plan_is_deterministic(catalog) -> None:
    nodes = load_nodes("fleet.yaml")
    s = spec(model={"name": "GLM-4.5-Air"}, replicas={"min": 3, "max": 3})
    first = plan(build_inventory(nodes), profile_for(s.model), catalog, s)
    shuffled = copy.deepcopy(nodes)
    random.Random(7).shuffle(shuffled)
    second = plan(build_inventory(shuffled), profile_for(s.model), catalog, s)
    assert first == second


def test_tensor_parallel_sizes_respect_heads_and_kv_heads() -> None:
    p = profile_for(spec(model={"name": "glm-4-9b-chat"}).model)  # 32 heads, 2 KV heads
    assert tensor_parallel_sizes(p, 8) == [1, 2, 4, 8]
    p = profile_for(spec(model={"name": "GLM-4-32B-0414"}).model)  # 48 heads, 2 KV heads
    assert tensor_parallel_sizes(p, 8) == [1, 2, 4, 6, 8]


def test_plan_entries_for_status(catalog) -> None:
    p = _plan("nvidia-h100.yaml", catalog, model={"name": "glm-4-9b-chat"}, replicas={"min": 2, "max": 4})
    entries = p.entries("local")
    assert len(entries) == 1 and entries[0].replicas == 2 and entries[0].precision == "fp8"


def test_rejections_lead_with_the_closest_option_and_say_what_holds_the_devices(catalog) -> None:
    """The issue's case: GLM-4.5 on two 910B3 nodes that each have one NPU taken by another deployment. The
    deciding rejection (8 free needed per node on two nodes, 7 free, held by default/glm-4-9b-chat) comes
    first, in the summary the condition and Event carry as in `autoglm plan`; model types the runtime does not
    serve come last."""
    from autoglm.core.hardware import with_released
    from autoglm.core.planner import RejectionKind

    nodes = load_nodes("huawei-ascend.yaml")
    pods = [
        {
            "metadata": {
                "name": f"glm-{i}",
                "namespace": "default",
                "labels": {"autoglm.io/modeldeployment": "glm-4-9b-chat"},
            },
            "spec": {"nodeName": node, "containers": [{"resources": {"limits": {"huawei.com/Ascend910": "1"}}}]},
            "status": {"phase": "Running"},
        }
        for i, node in enumerate(["ascend-910b3-0", "ascend-910b3-1"])
    ]
    inventory = build_inventory(nodes, pods=pods)
    b3 = next(p for p in inventory.pools if p.product == "Ascend910B3")
    assert b3.holders == {"default/glm-4-9b-chat": 2}
    released = next(p for p in with_released(inventory, pods[:1]).pools if p.product == "Ascend910B3")
    assert released.holders == {"default/glm-4-9b-chat": 1}
    s = spec(model={"name": "GLM-4.5"}, resources={"contextLength": 32768, "maxConcurrentSequences": 8})
    p = plan(inventory, profile_for(s.model), catalog, s)
    assert not p.feasible
    first = p.rejections[0]
    assert first.kind is RejectionKind.CAPACITY and first.shortfall == 2
    assert first.reason == (
        "bf16 fits at TP=8 x PP=2 but needs 8 free huawei.com/Ascend910 on each of 2 nodes; "
        "the 2 freest nodes have 7, 7 free, held by default/glm-4-9b-chat (2)"
    )
    assert p.summary.startswith(f"GLM-4.5 cannot be placed: huawei-ascend910b3-x8: {first.reason}")
    kinds = [r.kind for r in p.rejections]
    assert kinds == sorted(kinds, key=list(RejectionKind).index) and kinds[-1] is RejectionKind.MODEL_TYPE
