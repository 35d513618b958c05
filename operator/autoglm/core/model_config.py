"""A model's own Hugging Face config.json as the architecture the planner sizes: so any decoder the catalog does
not know is planned from its real shape. Pure.

Reads GLM's own spellings (chatglm: num_layers, ffn_hidden_size, multi_query_group_num, kv_channels,
padded_vocab_size, seq_length, add_qkv_bias), the standard ones (num_hidden_layers, intermediate_size,
num_key_value_heads, head_dim, vocab_size, max_position_embeddings, attention_bias) and the MoE ones
(n_routed_experts / num_experts / num_local_experts, num_experts_per_tok, n_shared_experts,
moe_intermediate_size, first_k_dense_replace). A multimodal wrapper's decoder is read from its text_config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoglm.api.modeldeployment import ModelArchitecture, ModelSource

# Architectures whose q/k/v projections carry a bias though their config.json does not say so.
QKV_BIAS_BY_TYPE = frozenset({"qwen2", "qwen2_moe"})


def _first(config: Mapping[str, Any], *keys: str) -> Any:
    return next((config[k] for k in keys if config.get(k) is not None), None)


def architecture_from_config(config: Mapping[str, Any]) -> ModelArchitecture:
    """The architecture facts of a config.json; what it lacks stays unset (build_profile names what is
    required and missing)."""
    text = config.get("text_config")
    cfg: Mapping[str, Any] = text if isinstance(text, Mapping) and text.get("hidden_size") else config
    model_type = cfg.get("model_type") or config.get("model_type")
    heads = cfg.get("num_attention_heads")
    if cfg.get("multi_query_attention") and cfg.get("multi_query_group_num"):
        kv_heads = cfg["multi_query_group_num"]  # ChatGLM's grouped-query attention
    else:
        kv_heads = _first(cfg, "num_key_value_heads") or heads
    bias = _first(cfg, "add_qkv_bias", "attention_bias")
    experts = _first(cfg, "n_routed_experts", "num_experts", "num_local_experts")
    return ModelArchitecture(
        model_type=model_type,
        hidden_size=cfg.get("hidden_size"),
        num_layers=_first(cfg, "num_layers", "num_hidden_layers"),
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=_first(cfg, "kv_channels", "head_dim"),
        intermediate_size=_first(cfg, "ffn_hidden_size", "intermediate_size"),
        vocab_size=_first(cfg, "padded_vocab_size", "vocab_size"),
        max_context=_first(cfg, "seq_length", "max_position_embeddings"),
        tie_word_embeddings=bool(_first(config, "tie_word_embeddings")),
        attention_bias=bool(bias) if bias is not None else model_type in QKV_BIAS_BY_TYPE,
        num_experts=experts,
        num_experts_per_token=cfg.get("num_experts_per_tok") if experts else None,
        num_shared_experts=cfg.get("n_shared_experts") if experts else None,
        moe_intermediate_size=cfg.get("moe_intermediate_size") if experts else None,
        first_dense_layers=cfg.get("first_k_dense_replace") if experts else None,
    )


def with_config(model: ModelSource, config: Mapping[str, Any]) -> ModelSource:
    """The model with its architecture read from `config`, overridden field by field by what the spec gives."""
    read = architecture_from_config(config).model_dump(exclude_none=True)
    given = model.architecture.model_dump(exclude_none=True) if model.architecture else {}
    return model.model_copy(update={"architecture": ModelArchitecture.model_validate({**read, **given})})


def parse_config(text: str, where: str) -> dict[str, Any]:
    """config.json text as a mapping; a ProfileError naming `where` when it is not a JSON object."""
    import json

    from autoglm.core.models import ProfileError

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a config.json is a JSON object, got {type(data).__name__}")
    return data
