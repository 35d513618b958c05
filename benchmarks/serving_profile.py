"""A serving profile of one replica on one GPU: cold start (process start -> first token, split into load and
warm-up) and, per concurrency, time to first token, inter-token latency and throughput. The per-replica
capacity curve the forecasting scaler needs (spec.autoscaling.capacityProfile).

    python benchmarks/serving_profile.py --out profile.json [--model glm-4-9b-chat] [--prompt 512] [--new 64]

This is the Hugging Face transformers path with random weights of the model's real architecture (from the
operator's model catalog, no download): static batches, eager PyTorch with SDPA attention, one sequence per
batch row. It is not vLLM (no continuous batching, paged attention or CUDA graphs), whose figures are higher;
benchmarks/results/serving-h100.md puts published vLLM figures beside it. Run on the device machine (H100).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # as near process start as Python lets us measure

ROOT = Path(__file__).resolve().parents[1]


def model_for(name: str) -> tuple[object, object]:
    """The transformers class and config of the catalog's architecture (benchmarks/memory_check_gpu.py maps
    the catalog's fields onto transformers' GLM configs)."""
    import yaml

    from memory_check_gpu import hf_config

    catalog = yaml.safe_load((ROOT / "operator" / "autoglm" / "data" / "models.yaml").read_text())
    arch = next(m["architecture"] for m in catalog["models"] if m["name"] == name)
    return hf_config(arch, arch["numLayers"])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="glm-4-9b-chat")
    parser.add_argument("--prompt", type=int, default=512, help="Prompt tokens per sequence.")
    parser.add_argument("--new", type=int, default=64, help="Tokens generated per sequence.")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64,128")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch
    from transformers import DynamicCache

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import memory_check_gpu  # noqa: F401 - torch and transformers' GLM classes load here, in the import phase

    imported = time.perf_counter()
    model_class, config = model_for(args.model)
    config._attn_implementation = "sdpa"  # type: ignore[attr-defined]
    with torch.device("meta"):
        model = model_class(config).to(torch.bfloat16)  # type: ignore[operator]
    model = model.to_empty(device="cuda")
    with torch.no_grad():
        for parameter in model.parameters():  # random weights of the real shapes, written on the GPU
            parameter.normal_(0.0, 0.02)
    model.eval()
    torch.cuda.synchronize()
    loaded = time.perf_counter()
    parameters = sum(p.numel() for p in model.parameters())

    def generate(batch: int) -> tuple[float, list[float]]:
        """One static batch: prefill, then `new` decode steps. Returns TTFT and each step's time."""
        prompt = torch.randint(0, config.vocab_size, (batch, args.prompt), device="cuda")
        cache = DynamicCache()
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            out = model(input_ids=prompt, past_key_values=cache, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
            torch.cuda.synchronize()
            ttft = time.perf_counter() - start
            steps = []
            for _ in range(args.new - 1):
                t0 = time.perf_counter()
                out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True)
                token = out.logits[:, -1:].argmax(-1)
                torch.cuda.synchronize()
                steps.append(time.perf_counter() - t0)
        return ttft, steps

    first_ttft, _ = generate(1)  # the first token ever: CUDA context, kernels chosen, allocator warmed
    warmed = time.perf_counter()
    points = []
    for batch in (int(c) for c in args.concurrency.split(",")):
        try:
            generate(batch)  # this shape's own warm-up
            ttft, steps = generate(batch)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            points.append({"concurrency": batch, "outOfMemory": True})
            break
        itl = statistics.median(steps)
        total = ttft + sum(steps)
        points.append(
            {
                "concurrency": batch,
                "ttftSeconds": round(ttft, 5),
                "itlSeconds": round(itl, 6),
                "itlP90Seconds": round(sorted(steps)[int(0.9 * len(steps))], 6),
                "outputTokensPerSecond": round(batch * args.new / total, 1),
                "peakMemoryGiB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            }
        )
        print(json.dumps(points[-1]), flush=True)
        torch.cuda.empty_cache()
    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    result = {
        "model": args.model,
        "path": "transformers (eager PyTorch, SDPA attention, static batches), random weights, bf16",
        "gpu": smi,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "parameters": parameters,
        "promptTokens": args.prompt,
        "newTokens": args.new,
        "coldStart": {
            "importSeconds": round(imported - STARTED, 3),
            "loadSeconds": round(loaded - imported, 3),
            "warmupSeconds": round(warmed - loaded, 3),
            "firstTokenSeconds": round(warmed - STARTED, 3),
            "firstTtftSeconds": round(first_ttft, 3),
        },
        "points": points,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["coldStart"]))


if __name__ == "__main__":
    main()
