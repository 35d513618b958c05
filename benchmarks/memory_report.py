"""Compare the planner's memory model with bytes measured on a real GPU; write the table and a node fixture.

    python benchmarks/memory_report.py benchmarks/results/memory-h100.json

Writes benchmarks/results/memory-h100.md (predicted vs measured, error per row) and
tests/fixtures/nodes/h100-measured.yaml (a GPU Feature Discovery-style Node built from the nvidia-smi
reading), and exits 1 when any error exceeds 5 %.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from autoglm.api.common import Precision
from autoglm.api.modeldeployment import KvCacheDtype
from autoglm.core.models import build_profile, kv_bytes_per_token, load_model_catalog, weight_bytes

ROOT = Path(__file__).resolve().parent.parent
# PyTorch's CUDA caching allocator rounds every block up to 512 bytes.
CUDA_ALLOCATOR_ALIGNMENT = 512
LIMIT = 0.05
GIB = 1024**3


def _err(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured


def rows(measurements: dict[str, Any]) -> list[dict[str, Any]]:
    catalog = load_model_catalog()
    out = []
    for m in measurements["models"]:
        entry = catalog.find(m["name"])
        assert entry is not None, m["name"]
        arch = entry.architecture.model_copy(update={"num_layers": m["layers_instantiated"]})
        full = build_profile(entry.name, entry.architecture, quantization=catalog.quantization)
        reduced = build_profile(entry.name, arch, quantization=catalog.quantization)
        extra_layers = m["layers_full"] - m["layers_instantiated"]
        for precision in (Precision.BF16, Precision.FP8):
            measured = m[precision.value]["allocated"]
            predicted = weight_bytes(reduced, precision, CUDA_ALLOCATOR_ALIGNMENT)
            measured_full = measured + extra_layers * m[precision.value]["last_layer"]
            predicted_full = weight_bytes(full, precision, CUDA_ALLOCATOR_ALIGNMENT)
            out.append(
                {
                    "model": m["name"],
                    "what": f"weights {precision.value}",
                    "layers": f"{m['layers_instantiated']}/{m['layers_full']}",
                    "predicted": predicted,
                    "measured": measured,
                    "error": _err(predicted, measured),
                    "predicted_full": predicted_full,
                    "measured_full": measured_full,
                    "error_full": _err(predicted_full, measured_full),
                }
            )
        tokens = m["kv"]["tokens"]
        measured_kv = m["kv"]["tensors"]
        predicted_kv = kv_bytes_per_token(reduced, KvCacheDtype.BF16) * tokens
        full_kv = kv_bytes_per_token(full, KvCacheDtype.BF16) * tokens
        measured_full_kv = measured_kv * m["layers_full"] // m["layers_instantiated"]
        out.append(
            {
                "model": m["name"],
                "what": f"KV cache bf16, {tokens} tokens",
                "layers": f"{m['layers_instantiated']}/{m['layers_full']}",
                "predicted": predicted_kv,
                "measured": measured_kv,
                "error": _err(predicted_kv, measured_kv),
                "predicted_full": full_kv,
                "measured_full": measured_full_kv,
                "error_full": _err(full_kv, measured_full_kv),
            }
        )
    return out


def markdown(measurements: dict[str, Any], table: list[dict[str, Any]]) -> str:
    gpu = measurements["gpu"]
    lines = [
        "# Memory model vs. a real H100",
        "",
        f"Measured on {gpu['name']} ({gpu['memory.total']} MiB, compute capability {gpu['compute_cap']}, "
        f"driver {gpu['driver_version']}), torch {measurements['torch']}, transformers "
        f"{measurements['transformers']}, with `benchmarks/memory_check_gpu.py`; compared by "
        "`benchmarks/memory_report.py`.",
        "",
        "Each GLM architecture is instantiated with random weights (transformers' Glm / Glm4 / Glm4Moe "
        "classes; chatglm3-6b and glm-4-9b-chat have the same tensors as Glm). The MoE models are built with "
        "6 layers and scaled back to the full depth with the measured bytes of one layer. *Weights* are "
        "`torch.cuda.memory_allocated()` after loading; fp8 stores every decoder linear weight as "
        "float8_e4m3fn with one fp32 scale per tensor (what `vllm --quantization fp8` does to a bf16 "
        "checkpoint), the rest stays bf16. *KV cache* is the bytes of the key/value tensors transformers "
        "keeps after a 4096-token forward pass. Predictions use memoryAlignment 512 (the CUDA caching "
        "allocator's block size).",
        "",
        "| model | measured | layers built | predicted | measured | error | predicted (full) | "
        "measured (full) | error (full) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r['model']} | {r['what']} | {r['layers']} | {r['predicted'] / GIB:.3f} GiB | "
            f"{r['measured'] / GIB:.3f} GiB | {r['error']:+.2%} | {r['predicted_full'] / GIB:.2f} GiB | "
            f"{r['measured_full'] / GIB:.2f} GiB | {r['error_full']:+.2%} |"
        )
    worst = max(max(abs(r["error"]), abs(r["error_full"])) for r in table)
    lines += ["", f"Largest error: {worst:.2%} (limit {LIMIT:.0%})."]
    return "\n".join(lines) + "\n"


def node_fixture(gpu: dict[str, Any]) -> dict[str, Any]:
    """A Node as GPU Feature Discovery would label it, from the nvidia-smi reading."""
    major, _, minor = gpu["compute_cap"].partition(".")
    product = gpu["name"].replace(" ", "-")
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": "h100-measured-0",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.memory": gpu["memory.total"],
        "nvidia.com/gpu.count": gpu["count"],
        "nvidia.com/gpu.compute.major": major,
        "nvidia.com/gpu.compute.minor": minor,
        "nvidia.com/gpu.family": "hopper",
        "nvidia.com/cuda.driver.major": gpu["driver_version"].split(".")[0],
        "nvidia.com/mig.capable": "true",
    }
    count = str(gpu["count"])
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": "h100-measured-0",
                    "labels": labels,
                    "annotations": {"autoglm.io/source": "nvidia-smi on the device machine"},
                },
                "status": {
                    "capacity": {"cpu": "16", "memory": "128Gi", "nvidia.com/gpu": count, "pods": "110"},
                    "allocatable": {"cpu": "16", "memory": "125Gi", "nvidia.com/gpu": count, "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        ],
    }


def main() -> int:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "benchmarks/results/memory-h100.json")
    measurements = json.loads(source.read_text())
    table = rows(measurements)
    (ROOT / "benchmarks/results/memory-h100.md").write_text(markdown(measurements, table))
    fixture = ROOT / "tests/fixtures/nodes/h100-measured.yaml"
    fixture.parent.mkdir(parents=True, exist_ok=True)
    fixture.write_text(
        "# Generated by benchmarks/memory_report.py from nvidia-smi on the device machine; do not edit.\n"
        + yaml.safe_dump(node_fixture(measurements["gpu"]), sort_keys=False)
    )
    print(markdown(measurements, table))
    return 0 if all(abs(r["error"]) <= LIMIT and abs(r["error_full"]) <= LIMIT for r in table) else 1


if __name__ == "__main__":
    raise SystemExit(main())
