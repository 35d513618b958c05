"""Measure real weight and KV-cache bytes of the GLM architectures on a GPU (run on the device machine).

Needs only torch, transformers and pyyaml (the device image has them, not our package). Reads the
architectures from operator/autoglm/data/models.yaml, instantiates each with random weights (fewer
layers where the full model does not fit one H100), measures, and writes JSON that
`benchmarks/memory_report.py` compares with the planner's memory model.

    python3 benchmarks/memory_check_gpu.py --out results.json
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import (
    Glm4Config,
    Glm4ForCausalLM,
    Glm4MoeConfig,
    Glm4MoeForCausalLM,
    GlmConfig,
    GlmForCausalLM,
)

ROOT = Path(__file__).resolve().parent.parent
# Layers instantiated per model; the full model is extrapolated from the measured bytes of one layer.
LAYERS = {"GLM-4.5-Air": 6, "GLM-4.5": 6}
KV_TOKENS = 4096


def hf_config(arch: dict[str, Any], layers: int) -> Any:
    common = dict(
        vocab_size=arch["vocabSize"],
        hidden_size=arch["hiddenSize"],
        intermediate_size=arch["intermediateSize"],
        num_hidden_layers=layers,
        num_attention_heads=arch["numAttentionHeads"],
        num_key_value_heads=arch["numKvHeads"],
        head_dim=arch["headDim"],
        max_position_embeddings=min(arch["maxContext"], 131072),
        attention_bias=arch.get("attentionBias", True),
        tie_word_embeddings=arch.get("tieWordEmbeddings", False),
        pad_token_id=0,
    )
    kind = arch["modelType"]
    if kind == "glm4_moe":
        return Glm4MoeForCausalLM, Glm4MoeConfig(
            **common,
            n_routed_experts=arch["numExperts"],
            num_experts_per_tok=arch["numExpertsPerToken"],
            n_shared_experts=arch["numSharedExperts"],
            moe_intermediate_size=arch["moeIntermediateSize"],
            first_k_dense_replace=arch["firstDenseLayers"],
        )
    if kind == "glm4":
        return Glm4ForCausalLM, Glm4Config(**common)
    # chatglm (chatglm3-6b, glm-4-9b-chat) has the same tensors as transformers' Glm (glm-4-9b-chat-hf).
    return GlmForCausalLM, GlmConfig(**common)


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def quantizable(name: str, param: torch.Tensor) -> bool:
    """Linear weights of the decoder layers; embeddings, head, norms, router and biases stay 16-bit."""
    if param.dim() < 2 or ".layers." not in f".{name}":
        return False
    return not any(k in name for k in ("norm", "gate.weight", "router", "bias"))


def to_fp8_in_place(model: torch.nn.Module) -> int:
    """Store quantizable weights as float8_e4m3fn with one fp32 scale per tensor; returns tensors converted."""
    converted = 0
    for name, param in list(model.named_parameters()):
        if not quantizable(name, param):
            continue
        scale = param.detach().abs().amax().float().clamp(min=1e-12) / 448.0
        q = (param.detach().float() / scale).to(torch.float8_e4m3fn)
        param.data = q
        module_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(module_name)
        owner.register_buffer(f"{attr}_scale", scale.reshape(()))
        converted += 1
        del q
    return converted


def measure(name: str, arch: dict[str, Any]) -> dict[str, Any]:
    full_layers = arch["numLayers"]
    layers = LAYERS.get(name, full_layers)
    cls, config = hf_config(arch, layers)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    t0 = time.time()
    with torch.device("cuda"):
        try:
            model = cls._from_config(config, dtype=torch.bfloat16)
        except TypeError:
            model = cls._from_config(config, torch_dtype=torch.bfloat16)
    model.eval()
    torch.cuda.synchronize()
    allocated_bf16 = torch.cuda.memory_allocated() - base
    exact_bf16 = tensor_bytes(model)
    last_layer_bf16 = tensor_bytes(model.model.layers[-1])

    # KV cache: one sequence of KV_TOKENS tokens, cache kept, logits of the last token only.
    ids = torch.randint(0, arch["vocabSize"], (1, KV_TOKENS), device="cuda")
    before = torch.cuda.memory_allocated()
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    del out
    gc.collect()
    torch.cuda.synchronize()
    kv_allocated = torch.cuda.memory_allocated() - before
    kv_exact = 0
    pairs = (
        [(layer.keys, layer.values) for layer in cache.layers]
        if hasattr(cache, "layers")
        else list(zip(cache.key_cache, cache.value_cache, strict=True))
    )
    for keys, values in pairs:
        kv_exact += keys.numel() * keys.element_size() + values.numel() * values.element_size()
    del cache, ids
    gc.collect()
    torch.cuda.empty_cache()

    base_fp8 = torch.cuda.memory_allocated()
    converted = to_fp8_in_place(model)
    gc.collect()
    torch.cuda.empty_cache()
    allocated_fp8 = allocated_bf16 - (base_fp8 - torch.cuda.memory_allocated())
    exact_fp8 = tensor_bytes(model)
    last_layer_fp8 = tensor_bytes(model.model.layers[-1])
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return {
        "name": name,
        "class": cls.__name__,
        "layers_instantiated": layers,
        "layers_full": full_layers,
        "bf16": {"allocated": allocated_bf16, "tensors": exact_bf16, "last_layer": last_layer_bf16},
        "fp8": {
            "allocated": allocated_fp8,
            "tensors": exact_fp8,
            "last_layer": last_layer_fp8,
            "tensors_converted": converted,
        },
        "kv": {"tokens": KV_TOKENS, "allocated": kv_allocated, "tensors": kv_exact},
        "seconds": round(time.time() - t0, 1),
    }


def gpu_properties() -> dict[str, Any]:
    fields = "name,memory.total,compute_cap,driver_version,pci.device_id,power.limit,count"
    raw = (
        subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[0]
    )
    values = [v.strip() for v in raw.split(",")]
    props = dict(zip(fields.split(","), values, strict=True))
    props["torch_device_name"] = torch.cuda.get_device_name(0)
    props["torch_total_memory"] = torch.cuda.get_device_properties(0).total_memory
    props["cuda_runtime"] = torch.version.cuda
    return props


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="*")
    args = parser.parse_args()
    catalog = yaml.safe_load((ROOT / "operator/autoglm/data/models.yaml").read_text())
    results: dict[str, Any] = {"gpu": gpu_properties(), "torch": torch.__version__, "models": []}
    import transformers

    results["transformers"] = transformers.__version__
    for entry in catalog["models"]:
        if args.models and entry["name"] not in args.models:
            continue
        print(f"measuring {entry['name']} ...", flush=True)
        results["models"].append(measure(entry["name"], entry["architecture"]))
        print(json.dumps(results["models"][-1]), flush=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
