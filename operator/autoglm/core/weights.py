"""Where a plan's weights come from: the model's own 16-bit checkpoint, a pre-quantized checkpoint of it, the
runtime quantizing as it loads, or a quantization Job whose output the conversion cache keeps. A precision
none of these provides is not offered: a plan never names weights that do not exist. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from autoglm.api.backendruntime import BackendRuntime, Conversion
from autoglm.api.common import Precision
from autoglm.api.modeldeployment import Checkpoint

if TYPE_CHECKING:
    from collections.abc import Sequence

# The precisions a 16-bit checkpoint serves as it is (a cast at load, which the runtime's dtype argument asks).
UNQUANTIZED = frozenset({Precision.BF16, Precision.FP16})


@dataclass(frozen=True)
class WeightSource:
    """How the weights of one (runtime, precision) come about."""

    how: str
    checkpoint: Checkpoint | None = None  # a pre-quantized checkpoint, served as it is
    quantization: Conversion | None = None  # a Job that makes them


def weight_source(
    runtime: BackendRuntime, precision: Precision, checkpoints: Sequence[Checkpoint]
) -> WeightSource | str:
    """The source of `precision` weights for `runtime`, or why there is none (a rejection reason)."""
    name = runtime.metadata.name
    if precision in UNQUANTIZED:
        return WeightSource(f"{precision.value}: the model's checkpoint")
    if runtime.spec.conversion is not None:
        return WeightSource(f"{precision.value}: made by {name}'s {runtime.spec.conversion.produces} compile step")
    entry = runtime.spec.quantized_weights.get(precision.value)
    if entry is None:
        return f"{precision.value} on {name}: {name} names no source of {precision.value} weights (quantizedWeights)"
    for checkpoint in checkpoints:
        if checkpoint.precision is precision and checkpoint.format in entry.formats:
            return WeightSource(f"{precision.value}: {checkpoint.format} checkpoint {checkpoint.source}", checkpoint)
    if entry.online:
        return WeightSource(f"{precision.value}: {name} quantizes the 16-bit checkpoint as it loads it")
    if entry.conversion is not None:
        tool = entry.conversion.tool_version
        return WeightSource(
            f"{precision.value}: quantized by {tool} into the model cache", quantization=entry.conversion
        )
    formats = ", ".join(entry.formats) or "none"
    return (
        f"{precision.value} on {name} needs a pre-quantized checkpoint ({formats}): none is named for this model "
        f"(spec.model.checkpoints) and {name} has no job that makes one"
    )
