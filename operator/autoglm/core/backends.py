"""Backend catalog: which BackendRuntime serves which accelerator, model type, precision and format."""

from __future__ import annotations

import fnmatch
import string
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import yaml

from autoglm.api.backendruntime import BackendRuntime
from autoglm.api.common import Precision
from autoglm.core.hardware import AcceleratorPool

PLACEHOLDERS = frozenset(
    {
        "model",
        "servedName",
        "tp",
        "pp",
        "dtype",
        "contextLength",
        "maxSeqs",
        "totalContext",
        "port",
        "artifact",
        "quant",
        "socVersion",
        "gpuMemoryUtilization",
        "threads",
    }
)


def load_default_catalog(text: str | None = None) -> list[BackendRuntime]:
    """The BackendRuntime entries shipped with the package (data/backends.yaml), or parsed from YAML text."""
    if text is None:
        text = resources.files("autoglm").joinpath("data/backends.yaml").read_text(encoding="utf-8")
    return [BackendRuntime.model_validate(doc) for doc in yaml.safe_load_all(text) if doc]


def merge_catalogs(defaults: Iterable[BackendRuntime], overrides: Iterable[BackendRuntime]) -> list[BackendRuntime]:
    """User entries replace defaults of the same name and add new ones; order: priority, then name."""
    merged = {b.metadata.name: b for b in defaults}
    merged.update({b.metadata.name: b for b in overrides})
    return sorted(merged.values(), key=lambda b: (-b.spec.priority, b.metadata.name))


def _cc(value: str) -> tuple[int, int]:
    major, _, minor = value.partition(".")
    return int(major), int(minor or 0)


def accelerator_mismatch(runtime: BackendRuntime, pool: AcceleratorPool) -> str | None:
    """Why `runtime` cannot run on `pool`, or None when it can."""
    sel = runtime.spec.accelerator
    name = runtime.metadata.name
    if sel.vendor != pool.vendor:
        return f"{name} runs on {sel.vendor}, not {pool.vendor}"
    if sel.products and not any(fnmatch.fnmatch(pool.product.lower(), p.lower()) for p in sel.products):
        return f"{name} supports {', '.join(sel.products)}, not {pool.product}"
    if sel.min_compute_capability:
        if pool.compute_capability is None:
            return f"{name} needs compute capability {sel.min_compute_capability}; {pool.product}'s is unknown"
        if _cc(pool.compute_capability) < _cc(sel.min_compute_capability):
            return (
                f"{name} needs compute capability >= {sel.min_compute_capability}, "
                f"{pool.product} has {pool.compute_capability}"
            )
    return None


def model_type_mismatch(runtime: BackendRuntime, model_type: str) -> str | None:
    types = runtime.spec.model_types
    if "*" in types or model_type in types:
        return None
    return f"{runtime.metadata.name} serves model types {', '.join(types)}, not {model_type}"


def precisions_offered(runtime: BackendRuntime, pool: AcceleratorPool) -> list[Precision]:
    """Precisions both the runtime and the chip support, in the pool's order of preference."""
    supported = set(runtime.spec.precisions)
    return [p for p in pool.preferred_precisions if p in supported]


class _StrictMapping(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def unknown_placeholders(runtime: BackendRuntime) -> set[str]:
    """Placeholders used in the runtime's templates that the planner does not provide."""
    texts = list(runtime.spec.args) + [e.value for e in runtime.spec.env] + list(runtime.spec.command)
    for extra in runtime.spec.precision_args.values():
        texts += extra
    conversions = [runtime.spec.conversion] + [q.conversion for q in runtime.spec.quantized_weights.values()]
    for conversion in conversions:
        if conversion is not None:
            texts += conversion.args + conversion.command
    used = {field for text in texts for _, field, _, _ in string.Formatter().parse(text) if field}
    return used - PLACEHOLDERS


def fill(templates: Iterable[str], values: Mapping[str, Any]) -> list[str]:
    """Substitute {placeholders}; an unknown placeholder raises KeyError naming it."""
    strict = _StrictMapping({k: str(v) for k, v in values.items()})
    return [t.format_map(strict) for t in templates]
