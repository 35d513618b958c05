"""Model profiles: architecture facts -> parameter count, weight bytes per precision, KV-cache bytes per token."""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from autoglm.api.common import Precision
from autoglm.api.modeldeployment import Checkpoint, KvCacheDtype, ModelArchitecture, ModelSource

# Fields the profile cannot be computed without (the rest have sound defaults).
REQUIRED_FIELDS = ("hidden_size", "num_layers", "num_attention_heads", "intermediate_size", "vocab_size")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class QuantScheme(_Frozen):
    bytes_per_weight: float = Field(alias="bytesPerWeight", gt=0)
    scale_bytes: float = Field(alias="scaleBytes", ge=0)
    scale_group: int = Field(alias="scaleGroup", ge=-1)


class TensorGroup(_Frozen):
    """`count` tensors of shape [rows, cols]; linear weights are [out_features, in_features]."""

    name: str
    rows: int
    cols: int
    count: int
    quantizable: bool

    @property
    def elements(self) -> int:
        return self.rows * self.cols * self.count


class ModelProfile(_Frozen):
    """Everything the planner needs to size one model."""

    name: str
    source: str | None
    model_type: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    max_context: int
    is_moe: bool
    tensors: list[TensorGroup]
    parameters: int = Field(description="Total parameters computed from the tensor shapes.")
    active_parameters: int = Field(description="Parameters touched per token (MoE: routed top-k only).")
    published_parameters: int | None = None
    quantization: dict[Precision, QuantScheme] = Field(description="Storage of each precision.")
    checkpoints: tuple[Checkpoint, ...] = Field(
        default=(), description="Pre-quantized checkpoints, the deployment's own before the catalog's."
    )


class CatalogEntry(_Frozen):
    name: str
    source: str
    architecture: ModelArchitecture
    checkpoints: list[Checkpoint] = Field(default_factory=list)


class ModelCatalog(_Frozen):
    models: list[CatalogEntry]
    quantization: dict[Precision, QuantScheme]

    def find(self, name: str) -> CatalogEntry | None:
        wanted = name.lower()
        for entry in self.models:
            if entry.name.lower() == wanted or (entry.source and entry.source.lower().endswith("/" + wanted)):
                return entry
        return None


def load_model_catalog(text: str | None = None) -> ModelCatalog:
    """The shipped GLM catalog and quantization table, or one given as YAML text."""
    if text is None:
        return _shipped_catalog()
    return ModelCatalog.model_validate(yaml.safe_load(text))


@cache
def _shipped_catalog() -> ModelCatalog:
    text = resources.files("autoglm").joinpath("data/models.yaml").read_text(encoding="utf-8")
    return ModelCatalog.model_validate(yaml.safe_load(text))


class ProfileError(ValueError):
    """The model cannot be sized: unknown name without architecture, or facts missing."""


def resolve_architecture(model: ModelSource, catalog: ModelCatalog) -> tuple[ModelArchitecture, str | None]:
    """Catalog facts for the model name, overridden field by field by the spec's architecture."""
    entry = catalog.find(model.name)
    base: dict[str, Any] = entry.architecture.model_dump(exclude_none=True) if entry else {}
    overrides = model.architecture.model_dump(exclude_none=True) if model.architecture else {}
    if entry is None and not overrides:
        known = ", ".join(e.name for e in catalog.models)
        raise ProfileError(
            f"model {model.name!r} is not in the built-in catalog ({known}); "
            "give spec.model.architecture (hiddenSize, numLayers, numAttentionHeads, intermediateSize, vocabSize, ...)"
        )
    merged = ModelArchitecture.model_validate({**base, **overrides})
    source = model.source or (entry.source if entry else None)
    return merged, source


def build_profile(
    name: str,
    arch: ModelArchitecture,
    source: str | None = None,
    quantization: dict[Precision, QuantScheme] | None = None,
) -> ModelProfile:
    """Tensor shapes of a GLM-style decoder (GQA attention, SwiGLU MLP, optional MoE) and their totals."""
    missing = [f for f in REQUIRED_FIELDS if getattr(arch, f) is None]
    if missing:
        names = ", ".join(ModelArchitecture.model_fields[f].alias or f for f in missing)
        raise ProfileError(f"model {name!r}: architecture is missing {names}")
    h = int(arch.hidden_size or 0)
    layers = int(arch.num_layers or 0)
    heads = int(arch.num_attention_heads or 0)
    kv = int(arch.num_kv_heads or heads)
    hd = int(arch.head_dim or h // heads)
    ffn = int(arch.intermediate_size or 0)
    vocab = int(arch.vocab_size or 0)
    if heads % kv:
        raise ProfileError(f"model {name!r}: numAttentionHeads ({heads}) is not a multiple of numKvHeads ({kv})")
    experts = int(arch.num_experts or 0)
    dense_layers = int(arch.first_dense_layers or 0) if experts else layers
    if dense_layers > layers:
        raise ProfileError(f"model {name!r}: firstDenseLayers ({dense_layers}) exceeds numLayers ({layers})")
    moe_layers = layers - dense_layers
    moe_ffn = int(arch.moe_intermediate_size or ffn)
    shared = int(arch.num_shared_experts or 0)
    qkv_out = heads * hd + 2 * kv * hd

    groups = [
        TensorGroup(name="embed_tokens", rows=vocab, cols=h, count=1, quantizable=False),
        TensorGroup(name="attn.qkv", rows=qkv_out, cols=h, count=layers, quantizable=True),
        TensorGroup(name="attn.o", rows=h, cols=heads * hd, count=layers, quantizable=True),
        TensorGroup(name="norms", rows=1, cols=h, count=2 * layers + 1, quantizable=False),
    ]
    if arch.attention_bias is not False:
        groups.append(TensorGroup(name="attn.qkv_bias", rows=1, cols=qkv_out, count=layers, quantizable=False))
    if dense_layers:
        groups += [
            TensorGroup(name="mlp.gate_up", rows=2 * ffn, cols=h, count=dense_layers, quantizable=True),
            TensorGroup(name="mlp.down", rows=h, cols=ffn, count=dense_layers, quantizable=True),
        ]
    if moe_layers:
        groups += [
            TensorGroup(name="moe.router", rows=experts, cols=h, count=moe_layers, quantizable=False),
            TensorGroup(
                name="moe.experts.gate_up",
                rows=2 * moe_ffn,
                cols=h,
                count=moe_layers * experts,
                quantizable=True,
            ),
            TensorGroup(name="moe.experts.down", rows=h, cols=moe_ffn, count=moe_layers * experts, quantizable=True),
        ]
        if shared:
            groups += [
                TensorGroup(
                    name="moe.shared.gate_up",
                    rows=2 * moe_ffn * shared,
                    cols=h,
                    count=moe_layers,
                    quantizable=True,
                ),
                TensorGroup(name="moe.shared.down", rows=h, cols=moe_ffn * shared, count=moe_layers, quantizable=True),
            ]
    if not arch.tie_word_embeddings:
        groups.append(TensorGroup(name="lm_head", rows=vocab, cols=h, count=1, quantizable=False))

    total = sum(g.elements for g in groups)
    inactive = 0
    if moe_layers and experts:
        top_k = int(arch.num_experts_per_token or experts)
        per_expert = 3 * moe_ffn * h
        inactive = moe_layers * (experts - top_k) * per_expert
    return ModelProfile(
        name=name,
        source=source,
        model_type=arch.model_type or "unknown",
        hidden_size=h,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv,
        head_dim=hd,
        max_context=int(arch.max_context or 4096),
        is_moe=bool(moe_layers),
        tensors=groups,
        parameters=total,
        active_parameters=total - inactive,
        published_parameters=arch.parameters,
        quantization=quantization if quantization is not None else load_model_catalog().quantization,
    )


def profile_for(model: ModelSource, catalog: ModelCatalog | None = None) -> ModelProfile:
    """The profile of a ModelDeployment's model: catalog entry plus spec overrides."""
    catalog = catalog or load_model_catalog()
    arch, source = resolve_architecture(model, catalog)
    profile = build_profile(model.name, arch, source, catalog.quantization)
    entry = catalog.find(model.name)
    # The catalog's checkpoints are of its source: a deployment that names other weights does not get them.
    own = entry.checkpoints if entry is not None and source == entry.source else []
    return profile.model_copy(update={"checkpoints": (*model.checkpoints, *own)})


def _align(nbytes: float, alignment: int) -> int:
    return int(math.ceil(nbytes / alignment) * alignment)


def activation_dtype(precision: Precision, chip_precisions: list[Precision]) -> Precision:
    """The 16-bit type unquantized tensors and activations use next to `precision` on a chip."""
    if precision in (Precision.BF16, Precision.FP16):
        return precision
    return Precision.BF16 if Precision.BF16 in chip_precisions else Precision.FP16


def weight_bytes(
    profile: ModelProfile,
    precision: Precision,
    alignment: int = 1,
    tensor_parallel: int = 1,
) -> int:
    """Bytes of weights on ONE device when split `tensor_parallel` ways, every tensor rounded up to `alignment`.

    Quantizable (linear) weights take the precision's storage plus its scales; the rest stays 16-bit.
    """
    scheme = profile.quantization[precision]
    total = 0
    for g in profile.tensors:
        shard_rows = math.ceil(g.rows / tensor_parallel) if g.rows > 1 else 1
        elements = shard_rows * g.cols
        if g.quantizable:
            data = elements * scheme.bytes_per_weight
            if scheme.scale_group == -1:
                scales = scheme.scale_bytes
            elif scheme.scale_group == 0:
                scales = shard_rows * scheme.scale_bytes
            else:
                scales = shard_rows * math.ceil(g.cols / scheme.scale_group) * scheme.scale_bytes
            per_tensor = _align(data, alignment) + (_align(scales, alignment) if scales else 0)
        else:
            per_tensor = _align(elements * 2, alignment)
        total += per_tensor * g.count
    return total


_KV_BYTES = {KvCacheDtype.FP8: 1, KvCacheDtype.BF16: 2, KvCacheDtype.FP16: 2}


def kv_element_bytes(kv_dtype: KvCacheDtype) -> int:
    """Bytes per KV element; auto follows the 16-bit activation type."""
    return _KV_BYTES.get(kv_dtype, 2)


def kv_heads_per_device(profile: ModelProfile, tensor_parallel: int) -> int:
    """KV heads one device holds: split across TP ranks, replicated once TP exceeds the KV head count."""
    return max(1, math.ceil(profile.num_kv_heads / tensor_parallel))


def kv_bytes_per_token(profile: ModelProfile, kv_dtype: KvCacheDtype, tensor_parallel: int = 1) -> int:
    """KV-cache bytes one token occupies on ONE device (keys and values, every layer)."""
    return (
        2
        * profile.num_layers
        * kv_heads_per_device(profile, tensor_parallel)
        * profile.head_dim
        * kv_element_bytes(kv_dtype)
    )
