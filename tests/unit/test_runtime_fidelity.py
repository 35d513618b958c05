"""Every plan's decision reaches the pod: for every runtime in the catalog, every precision it offers and the
tensor/pipeline-parallel layouts it allows, the rendered objects (serving pods, and the conversion Job where
there is one) carry the plan's TP, PP, precision, context and concurrency. Table-driven over the catalog, so a
new runtime entry cannot skip a decision."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoglm.api.backendruntime import BackendRuntime
from autoglm.api.common import Precision
from autoglm.api.modeldeployment import ModelDeployment
from autoglm.core.backends import accelerator_mismatch, load_default_catalog, model_type_mismatch
from autoglm.core.hardware import AcceleratorPool, build_inventory, nodes_from_document
from autoglm.core.models import ModelProfile, activation_dtype, load_model_catalog, profile_for
from autoglm.core.planner import TORCH_DTYPE, Assignment, Plan, PoolOption, option_for, tensor_parallel_sizes
from autoglm.core.render import conversion_job, serving_objects
from autoglm.core.weights import UNQUANTIZED

NODE_SETS = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "nodes"
CATALOG = load_default_catalog()
CONTEXT, SEQUENCES = 8192, 12


def _pools() -> list[AcceleratorPool]:
    nodes = [n for f in sorted(NODE_SETS.glob("*.yaml")) for n in nodes_from_document(yaml.safe_load(f.read_text()))]
    return [p for p in build_inventory(nodes).pools if p.known]


POOLS = _pools()


def _deployment(model: str, checkpoints: list[dict[str, str]]) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "autoglm.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "fidelity", "namespace": "default", "uid": "u"},
            "spec": {
                "model": {"name": model, "checkpoints": checkpoints},
                "resources": {"contextLength": CONTEXT, "maxConcurrentSequences": SEQUENCES},
            },
        }
    )


def _model_for(runtime: BackendRuntime) -> str:
    for entry in load_model_catalog().models:
        if model_type_mismatch(runtime, entry.architecture.model_type or "") is None:
            return entry.name
    raise AssertionError(f"no catalog model has a type {runtime.metadata.name} serves")


def _checkpoints(runtime: BackendRuntime, precision: Precision) -> list[dict[str, str]]:
    """A checkpoint the deployment names, where the runtime can only load pre-quantized weights."""
    entry = runtime.spec.quantized_weights.get(precision.value)
    if entry is None or entry.online or entry.conversion is not None or not entry.formats:
        return []
    return [{"precision": precision.value, "format": entry.formats[0], "source": "pvc://models/quantized"}]


def _cases() -> list[tuple[str, Precision, int, int]]:
    cases = []
    for runtime in CATALOG:
        for precision in runtime.spec.precisions:
            pool = _pool(runtime, precision)
            profile = profile_for(_deployment(_model_for(runtime), []).spec.model)
            sizes = [1] if pool.is_cpu else _tp_sizes(runtime, pool, profile)
            pps = [1, 2] if runtime.spec.multi_node and not pool.is_cpu else [1]
            cases += [(runtime.metadata.name, precision, tp, pp) for tp, pp in itertools.product(sizes, pps)]
    return cases


def _tp_sizes(runtime: BackendRuntime, pool: AcceleratorPool, profile: ModelProfile) -> list[int]:
    limit = min(pool.devices_per_node, pool.max_tensor_parallel or 64, runtime.spec.max_tensor_parallel or 64)
    sizes = tensor_parallel_sizes(profile, limit)
    return sorted({sizes[0], sizes[-1]})


def _pool(runtime: BackendRuntime, precision: Precision) -> AcceleratorPool:
    for pool in POOLS:
        if accelerator_mismatch(runtime, pool) is None and precision in pool.precisions:
            return pool
    raise AssertionError(f"no example node set has a pool where {runtime.metadata.name} runs {precision.value}")


def _render(name: str, precision: Precision, tp: int, pp: int) -> tuple[PoolOption, list[dict[str, Any]]]:
    runtime = next(r for r in CATALOG if r.metadata.name == name)
    md = _deployment(_model_for(runtime), _checkpoints(runtime, precision))
    option = option_for(profile_for(md.spec.model), md.spec, _pool(runtime, precision), runtime, precision, tp, pp)
    assert not isinstance(option, str), f"{name} {precision.value}: {option}"
    plan = Plan(
        model=md.spec.model.name,
        parameters=0,
        feasible=True,
        fallback=False,
        assignments=[Assignment(option=option, replicas=1)],
        options=[option],
        rejections=[],
        warnings=[],
        summary="",
    )
    objects = serving_objects(md, plan, {name: runtime})
    job = conversion_job(md, option)
    return option, objects + ([job] if job else [])


def _server(objects: list[dict[str, Any]]) -> dict[str, Any]:
    workload = next(o for o in objects if o["kind"] in ("Deployment", "StatefulSet"))
    container: dict[str, Any] = workload["spec"]["template"]["spec"]["containers"][0]
    return container


def _words(objects: list[dict[str, Any]]) -> list[str]:
    """Every word the pods and Jobs run with: commands, args (shell strings split) and env values."""
    words: list[str] = []
    for o in objects:
        if o["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            for text in [*c.get("command", []), *c.get("args", [])]:
                words += re.split(r"[\s=]+", text)
            words += [str(e.get("value", "")) for e in c.get("env", [])]
    return [w.strip("\"'") for w in words if w]


def _flag_values(runtime: BackendRuntime, placeholder: str) -> list[str]:
    """The flags (or env names) the runtime's templates give `placeholder` to."""
    texts = [*runtime.spec.args, *itertools.chain(*runtime.spec.precision_args.values())]
    flags = [texts[i - 1] for i, t in enumerate(texts) if t == "{" + placeholder + "}" and i > 0]
    conversions = [runtime.spec.conversion, *(q.conversion for q in runtime.spec.quantized_weights.values())]
    for conversion in conversions:
        for text in conversion.args if conversion else []:
            flags += re.findall(r"(-{1,2}[\w-]+)[ =]\{" + placeholder + r"\}", text)
    flags += [e.name for e in runtime.spec.env if e.value == "{" + placeholder + "}"]
    return flags


def _value_after(words: list[str], flag: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == flag]


@pytest.mark.parametrize(("name", "precision", "tp", "pp"), _cases())
def test_every_decision_of_the_plan_reaches_the_pod(name: str, precision: Precision, tp: int, pp: int) -> None:
    runtime = next(r for r in CATALOG if r.metadata.name == name)
    option, objects = _render(name, precision, tp, pp)
    words = _words(objects)
    server = _server(objects)
    # the pod runs the option's arguments (a multi-node launcher runs them after its own)
    assert server["args"][-len(option.args) :] == option.args if option.args else True
    pool = _pool(runtime, precision)
    context = min(CONTEXT, profile_for(_deployment(_model_for(runtime), []).spec.model).max_context)
    sequences = min(SEQUENCES, runtime.spec.max_concurrent_sequences or SEQUENCES)
    expected = {
        "tp": str(tp),
        "pp": str(pp),
        "contextLength": str(context),
        "maxSeqs": str(sequences),
        "totalContext": str(context * sequences),
    }
    if precision in UNQUANTIZED or Precision.BF16 in pool.precisions or Precision.FP16 in pool.precisions:
        expected["dtype"] = TORCH_DTYPE[activation_dtype(precision, pool.precisions)]
    env = {e["name"]: e.get("value") for e in server.get("env", [])}
    for placeholder, value in expected.items():
        for flag in _flag_values(runtime, placeholder):
            found = [env[flag]] if flag in env else _value_after(words, flag)
            assert value in found, f"{name}: {flag} should carry {placeholder}={value}"
    # what a decision needs to be said somewhere, it is
    said = {p for p in expected if _flag_values(runtime, p)}
    if not pool.is_cpu and runtime.spec.max_tensor_parallel != 1:
        assert "tp" in said, f"{name} never passes the tensor-parallel size"
    if runtime.spec.multi_node:
        assert "pp" in said, f"{name} spans nodes but never passes the pipeline-parallel size"
        workload = next(o for o in objects if o["kind"] in ("Deployment", "StatefulSet"))
        assert workload["spec"]["replicas"] == pp or pp == 1
    assert said & {"contextLength", "totalContext"}, f"{name} never passes the context length"
    if runtime.spec.max_concurrent_sequences is None:
        assert "maxSeqs" in said, f"{name} never passes the number of concurrent sequences"
    else:  # a runtime that fixes it: the plan says so
        assert any("concurrent sequences per replica" in r for r in option.reasons)


@pytest.mark.parametrize("name", [r.metadata.name for r in CATALOG])
def test_each_precision_a_runtime_offers_renders_differently(name: str) -> None:
    """The precision reaches the command: two precisions of one runtime never render the same pods and Jobs
    (the dtype, a quantization argument, the weights loaded or the engine built differ)."""
    runtime = next(r for r in CATALOG if r.metadata.name == name)
    rendered = {}
    for precision in runtime.spec.precisions:
        _, objects = _render(name, precision, 1, 1)
        rendered[precision] = sorted(_words(objects))
    for a, b in itertools.combinations(rendered, 2):
        assert rendered[a] != rendered[b], f"{name} renders {a.value} and {b.value} the same"
