"""Model profiles: parameters, weight bytes per precision, KV cache per token."""

from __future__ import annotations

import json

import pytest

from autoglm.api.common import Precision
from autoglm.api.modeldeployment import KvCacheDtype, ModelArchitecture, ModelSource
from autoglm.core.models import (
    ProfileError,
    build_profile,
    kv_bytes_per_token,
    kv_heads_per_device,
    load_model_catalog,
    profile_for,
    weight_bytes,
)
from tests.conftest import ROOT

CATALOG = load_model_catalog()


@pytest.mark.parametrize("entry", CATALOG.models, ids=lambda e: e.name)
def test_parameter_count_matches_the_published_total(entry) -> None:
    profile = profile_for(ModelSource(name=entry.name), CATALOG)
    assert profile.published_parameters
    assert abs(profile.parameters - profile.published_parameters) / profile.published_parameters < 0.02


def test_chatglm3_parameters_are_exact() -> None:
    assert profile_for(ModelSource(name="chatglm3-6b")).parameters == 6_243_584_000


def test_moe_active_parameters() -> None:
    air = profile_for(ModelSource(name="GLM-4.5-Air"))
    full = profile_for(ModelSource(name="GLM-4.5"))
    assert air.is_moe and 11e9 < air.active_parameters < 14e9  # "12B active"
    assert 31e9 < full.active_parameters < 35e9  # "32B active"


def test_kv_cache_is_gqa_aware_and_replicated_past_kv_heads() -> None:
    p = profile_for(ModelSource(name="glm-4-9b-chat"))  # 40 layers, 2 KV heads of 128
    assert kv_bytes_per_token(p, KvCacheDtype.BF16) == 2 * 40 * 2 * 128 * 2
    assert kv_bytes_per_token(p, KvCacheDtype.FP8) == 2 * 40 * 2 * 128
    assert kv_heads_per_device(p, 2) == 1
    assert kv_heads_per_device(p, 8) == 1  # replicated, not split below one head
    assert kv_bytes_per_token(p, KvCacheDtype.BF16, 8) == kv_bytes_per_token(p, KvCacheDtype.BF16) // 2


def test_weight_bytes_by_precision() -> None:
    p = profile_for(ModelSource(name="GLM-4-32B-0414"))
    bf16, fp8, int8, int4 = (
        weight_bytes(p, x) for x in (Precision.BF16, Precision.FP8, Precision.INT8, Precision.INT4)
    )
    assert bf16 > fp8 > int4
    assert int8 > fp8  # per-channel scales cost more than one per tensor
    embeddings = 2 * 151552 * 6144 * 2
    assert fp8 > (bf16 - embeddings) / 2  # embeddings and head stay 16-bit
    linear = sum(g.elements for g in p.tensors if g.quantizable)
    assert int4 > linear * 0.5  # group scales on top of the 4-bit data


def test_alignment_rounds_every_tensor_up() -> None:
    p = profile_for(ModelSource(name="chatglm3-6b"))
    tensors = sum(g.count for g in p.tensors)
    plain = weight_bytes(p, Precision.BF16, 1)
    aligned = weight_bytes(p, Precision.BF16, 4096)
    assert plain < aligned <= plain + tensors * 4096


def test_tensor_parallel_splits_weights() -> None:
    p = profile_for(ModelSource(name="GLM-4.5"))
    one = weight_bytes(p, Precision.FP8)
    eight = weight_bytes(p, Precision.FP8, tensor_parallel=8)
    assert one / 8 <= eight < one / 8 * 1.01


def test_unknown_model_needs_architecture() -> None:
    with pytest.raises(ProfileError, match="not in the built-in catalog"):
        profile_for(ModelSource(name="my-model"))
    with pytest.raises(ProfileError, match=r"missing .*vocabSize"):
        profile_for(
            ModelSource(
                name="my-model",
                architecture=ModelArchitecture(
                    hidden_size=1024, num_layers=2, num_attention_heads=8, intermediate_size=4096
                ),
            )
        )


def test_spec_architecture_overrides_catalog_fields() -> None:
    p = profile_for(ModelSource(name="glm-4-9b-chat", architecture=ModelArchitecture(max_context=32768)))
    assert p.max_context == 32768 and p.num_layers == 40


def test_heads_must_group_evenly() -> None:
    arch = ModelArchitecture(
        hidden_size=64,
        num_layers=1,
        num_attention_heads=6,
        num_kv_heads=4,
        intermediate_size=128,
        vocab_size=10,
    )
    with pytest.raises(ProfileError, match="not a multiple"):
        build_profile("odd", arch)


def test_memory_model_within_five_percent_of_the_h100_measurement() -> None:
    """benchmarks/results/memory-h100.json was measured on a real H100 (benchmarks/memory_check_gpu.py)."""
    measured = json.loads((ROOT / "benchmarks/results/memory-h100.json").read_text())
    assert measured["gpu"]["name"].startswith("NVIDIA H100")
    for m in measured["models"]:
        entry = CATALOG.find(m["name"])
        assert entry is not None
        arch = entry.architecture.model_copy(update={"num_layers": m["layers_instantiated"]})
        p = build_profile(m["name"], arch, quantization=CATALOG.quantization)
        for precision in (Precision.BF16, Precision.FP8):
            predicted = weight_bytes(p, precision, 512)
            assert abs(predicted - m[precision.value]["allocated"]) / m[precision.value]["allocated"] <= 0.05
        predicted_kv = kv_bytes_per_token(p, KvCacheDtype.BF16) * m["kv"]["tokens"]
        assert abs(predicted_kv - m["kv"]["tensors"]) / m["kv"]["tensors"] <= 0.05
