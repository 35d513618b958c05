"""Planner: inventory x model profile x backend catalog x spec -> Plan, with a reason for every rejection.

Pure and deterministic: the same inputs give the same Plan, and nothing here talks to a cluster.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from autoglm.api.backendruntime import BackendRuntime
from autoglm.api.common import Precision, PrecisionChoice
from autoglm.api.modeldeployment import FallbackPolicy, KvCacheDtype, ModelDeploymentSpec, PlanEntry
from autoglm.api.podtemplate import PodTemplate
from autoglm.core.backends import (
    accelerator_mismatch,
    fill,
    model_type_mismatch,
    precisions_offered,
    unknown_placeholders,
)
from autoglm.core.hardware import GIB, AcceleratorPool, Inventory
from autoglm.core.models import ModelProfile, activation_dtype, kv_bytes_per_token, weight_bytes
from autoglm.core.weights import WeightSource, weight_source

QUALITY_RANK = {Precision.FP8: 0, Precision.BF16: 0, Precision.FP16: 0, Precision.INT8: 1, Precision.INT4: 2}
TORCH_DTYPE = {Precision.BF16: "bfloat16", Precision.FP16: "float16"}
ARTIFACT_ROOT = "/cache/artifacts"
MODEL_ROOT = "/models"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemoryEstimate(_Frozen):
    """Bytes one device of one replica needs, against what it has."""

    weights: int
    kv_cache: int
    runtime_overhead: int
    usable: int
    device_memory: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.runtime_overhead

    def describe(self) -> str:
        return (
            f"{_gib(self.total)} per device (weights {_gib(self.weights)} + KV cache {_gib(self.kv_cache)} + "
            f"runtime {_gib(self.runtime_overhead)}) of {_gib(self.usable)} usable"
        )


class ConversionStep(_Frozen):
    """A compile Job that must finish before serving; its output is cached under `cache_key`."""

    backend: str
    image: str
    command: list[str]
    args: list[str]
    produces: str
    tool_version: str
    cache_key: str
    artifact_path: str
    needs_accelerator: bool
    resources: dict[str, str] = Field(default_factory=dict, description="The runtime's resourcesPerJob requests.")


class PoolOption(_Frozen):
    """One way to serve the model on one pool: runtime, precision, parallelism, memory and capacity."""

    pool: str
    vendor: str
    accelerator: str
    resource_name: str | None
    backend: str
    backend_priority: int
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    precision: Precision
    kv_cache_dtype: KvCacheDtype
    tensor_parallel: int
    pipeline_parallel: int
    devices_per_replica: int
    cpu: float = Field(description="Host CPUs each serving pod requests (the runtime's base + perDevice x devices).")
    max_replicas: int = Field(description="Replicas the pool's free devices hold.")
    memory: MemoryEstimate
    conversion: ConversionStep | None
    is_cpu: bool
    node_selector: dict[str, str]
    taints: list[dict[str, str]] = Field(default_factory=list)
    hosts: list[str] = Field(
        default_factory=list, description="CPU pools: the exact nodes (a CPU node has no product label to select)."
    )
    collective_env: dict[str, str] = Field(default_factory=dict)
    env_refs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="The runtime's variables read from a Secret, ConfigMap or pod field."
    )
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    weight_mounts: dict[str, str] = Field(
        default_factory=dict,
        description="Weights on a PersistentVolumeClaim: mount path -> claim/path (from pvc:// sources).",
    )
    pod_template: PodTemplate | None = Field(
        default=None, description="spec.template (with the member's override), added to the rendered pods."
    )
    credentials_secret: str | None = Field(
        default=None, description="spec.model.credentialsSecret: its keys reach every container that downloads."
    )
    replica_tflops: float
    reasons: list[str]


class RejectionKind(StrEnum):
    """How close a rejected option came, closest first: the order rejections are shown in."""

    CAPACITY = "capacity"  # fits, but too few free devices now
    WEIGHTS = "weights"  # fits, but no weights of that precision exist yet
    MEMORY = "memory"  # does not fit in device memory
    PRECISION = "precision"  # the precision or KV-cache type is not available there
    RUNTIME = "runtime"  # the runtime does not serve this accelerator or cannot be used
    MODEL_TYPE = "model-type"  # the runtime does not serve this kind of model


RANK = {kind: i for i, kind in enumerate(RejectionKind)}


class Rejection(_Frozen):
    pool: str
    backend: str | None = None
    precision: Precision | None = None
    reason: str
    kind: RejectionKind = RejectionKind.RUNTIME
    shortfall: float = Field(default=0.0, description="Within a kind, how far off: devices short, GiB over.")


def ranked(rejections: Sequence[Rejection]) -> list[Rejection]:
    """Closest first: short of free devices (fewest short first), then missing weights, then memory (least
    over first), ..., model types the runtime does not serve last. Conditions, Events and `autoglm plan` use
    this order."""
    return sorted(rejections, key=lambda r: (RANK[r.kind], r.shortfall))


class Assignment(_Frozen):
    option: PoolOption
    replicas: int


class Plan(_Frozen):
    model: str
    parameters: int
    feasible: bool
    fallback: bool = Field(description="Served on CPU because no accelerator option fits.")
    assignments: list[Assignment]
    options: list[PoolOption] = Field(description="Every feasible option, best first.")
    rejections: list[Rejection]
    warnings: list[str]
    summary: str

    @property
    def primary(self) -> PoolOption | None:
        return self.assignments[0].option if self.assignments else (self.options[0] if self.options else None)

    def entries(self, cluster: str = "local") -> list[PlanEntry]:
        """The plan as ModelDeployment status entries."""
        return [
            PlanEntry(
                cluster=cluster,
                pool=a.option.pool,
                accelerator=a.option.accelerator,
                backend=a.option.backend,
                image=a.option.image,
                precision=a.option.precision.value,
                tensor_parallel=a.option.tensor_parallel,
                pipeline_parallel=a.option.pipeline_parallel,
                replicas=a.replicas,
                reasons=a.option.reasons,
            )
            for a in self.assignments
        ]


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.1f} GiB"


def tensor_parallel_sizes(profile: ModelProfile, limit: int) -> list[int]:
    """TP sizes a runtime can shard this model over: divisors of the attention heads that also split or
    evenly replicate the KV heads, up to `limit`."""
    heads, kv = profile.num_attention_heads, profile.num_kv_heads
    return [t for t in range(1, limit + 1) if heads % t == 0 and (kv % t == 0 or t % kv == 0)]


def _kv_dtype(spec: ModelDeploymentSpec, activation: Precision) -> KvCacheDtype:
    chosen = spec.resources.kv_cache_dtype
    if chosen is KvCacheDtype.AUTO:
        return KvCacheDtype.BF16 if activation is Precision.BF16 else KvCacheDtype.FP16
    return chosen


@dataclass
class _Memo:
    """Per-plan memo: the same weights and templates are sized and checked for many pools."""

    weights: dict[tuple[Precision, int], int] = field(default_factory=dict)
    placeholders: dict[str, set[str]] = field(default_factory=dict)

    def weight_bytes(self, profile: ModelProfile, precision: Precision, alignment: int, tp: int) -> int:
        key = (precision, tp)
        if key not in self.weights:
            self.weights[key] = weight_bytes(profile, precision, alignment, tp)
        return self.weights[key]

    def unknown_placeholders(self, runtime: BackendRuntime) -> set[str]:
        name = runtime.metadata.name
        if name not in self.placeholders:
            self.placeholders[name] = unknown_placeholders(runtime)
        return self.placeholders[name]


class _Shape(NamedTuple):
    """One candidate layout of a replica on a pool."""

    pool: AcceleratorPool
    runtime: BackendRuntime
    precision: Precision
    kv_dtype: KvCacheDtype
    tp: int
    pp: int


@dataclass
class _Request:
    """What one plan() call is sizing, shared by every pool it looks at."""

    profile: ModelProfile
    spec: ModelDeploymentSpec
    context: int
    served_name: str
    memo: _Memo


def _estimate(req: _Request, shape: _Shape) -> MemoryEstimate:
    profile, spec, context, memo = req.profile, req.spec, req.context, req.memo
    pool, runtime, precision, kv_dtype, tp, pp = shape
    weights = memo.weight_bytes(profile, precision, spec.memory_alignment, tp)
    kv = kv_bytes_per_token(profile, kv_dtype, tp) * context * sequences(spec, runtime)
    usable = int(pool.memory_bytes * (1 - spec.resources.memory_headroom))
    return MemoryEstimate(
        weights=math.ceil(weights / pp),
        kv_cache=math.ceil(kv / pp),
        runtime_overhead=int(runtime.spec.runtime_overhead_gib * GIB),
        usable=usable,
        device_memory=pool.memory_bytes,
    )


def host_cpu(runtime: BackendRuntime, devices: int) -> float:
    """Host CPUs a serving pod requests: the runtime's base plus its per-device share for the pod's devices."""
    return runtime.spec.cpu.base + runtime.spec.cpu.per_device * devices


def sequences(spec: ModelDeploymentSpec, runtime: BackendRuntime) -> int:
    """Concurrent sequences one replica serves: the spec's, unless the runtime fixes fewer."""
    limit = runtime.spec.max_concurrent_sequences
    wanted = spec.resources.max_concurrent_sequences
    return min(wanted, limit) if limit is not None else wanted


def _capacity(pool: AcceleratorPool, tp: int, pp: int) -> int:
    if pp == 1:
        return sum(nodes * (free // tp) for free, nodes in pool.free_histogram.items())
    whole_nodes = sum(nodes for free, nodes in pool.free_histogram.items() if free >= tp)
    return whole_nodes // pp


def _cache_key(
    profile: ModelProfile,
    spec: ModelDeploymentSpec,
    precision: Precision,
    pool: AcceleratorPool,
    tool_version: str,
    tp: int,
    per_shard: bool,
) -> str:
    parts = [profile.source or profile.name, spec.model.revision, precision.value, pool.product, tool_version]
    if per_shard:
        parts.append(f"tp{tp}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def _location(source: str, name: str) -> str:
    """What the runtime loads: a Hugging Face id as is, anything else under the model root (a pvc:// source
    is mounted there, see _mounts; other schemes are expected on the model cache, a plan warning says)."""
    if source.startswith("hf://"):
        return source.removeprefix("hf://")
    return f"{MODEL_ROOT}/{name}"


def _mounts(source: str, name: str) -> dict[str, str]:
    """A pvc://claim/path source, mounted where _location points: mount path -> claim/path."""
    return {_location(source, name): source.removeprefix("pvc://")} if source.startswith("pvc://") else {}


UNFETCHED = ("s3://", "gs://", "oci://", "file://")


def _option(req: _Request, shape: _Shape, memory: MemoryEstimate, source: WeightSource) -> PoolOption:
    profile, spec, context, served_name = req.profile, req.spec, req.context, req.served_name
    pool, runtime, precision, kv_dtype, tp, pp = shape
    activation = activation_dtype(precision, pool.precisions)
    conv = runtime.spec.conversion or source.quantization
    key = _cache_key(profile, spec, precision, pool, conv.tool_version, tp, conv.needs_accelerator) if conv else ""
    artifact = f"{ARTIFACT_ROOT}/{key}" if conv else ""
    quant = runtime.spec.quant_names.get(precision.value, precision.value)
    # what the runtime (or the quantization Job) loads: the checkpoint the deployment names, else the model's own
    weights = (
        (source.checkpoint.source, f"{profile.name}-{precision.value}")
        if source.checkpoint is not None
        else (profile.source or "", profile.name)
    )
    served_sequences = sequences(spec, runtime)
    cpu = host_cpu(runtime, 0 if pool.is_cpu else tp)
    values = {
        "model": _location(*weights),
        "servedName": served_name,
        "tp": tp,
        "pp": pp,
        "dtype": TORCH_DTYPE[activation],
        "contextLength": context,
        "maxSeqs": served_sequences,
        "totalContext": context * served_sequences,
        "port": runtime.spec.ports[0].container_port if runtime.spec.ports else 8000,
        "artifact": artifact,
        "quant": quant,
        "socVersion": pool.soc_version or "",
        "gpuMemoryUtilization": f"{1 - spec.resources.memory_headroom:.2f}",
        "threads": max(1, math.floor(cpu)),
    }
    # A quantization Job reads the model's checkpoint and the runtime then loads what it wrote.
    serving = {**values, "model": artifact} if source.quantization is not None else values
    args = fill(runtime.spec.args, serving) + fill(runtime.spec.precision_args.get(precision.value, []), serving)
    conversion = None
    if conv:
        conversion = ConversionStep(
            backend=runtime.metadata.name,
            image=conv.image,
            command=fill(conv.command, values),
            args=fill(conv.args, values),
            produces=conv.produces,
            tool_version=conv.tool_version,
            cache_key=key,
            artifact_path=artifact,
            needs_accelerator=conv.needs_accelerator,
            resources=dict(conv.resources_per_job),
        )
    devices = tp * pp
    peak = pool.peak_tflops_bf16 or pool.peak_tflops_fp16 or 0.0
    reasons = [
        f"{runtime.metadata.name} (priority {runtime.spec.priority}) serves {profile.model_type} on {pool.product}",
        f"{precision.value}: "
        + (
            "requested"
            if spec.precision is not PrecisionChoice.AUTO
            else f"best precision {pool.product} runs natively that fits"
            if QUALITY_RANK[precision] == 0
            else "quantized because no 16/8-bit float precision fits"
        ),
        f"TP={tp}"
        + (f" x PP={pp} across {pp} nodes" if pp > 1 else "")
        + f": smallest split that fits, {memory.describe()}",
        f"weights {source.how}",
    ]
    if conversion:
        reasons.append(f"needs {conversion.produces} conversion (cache key {key})")
    if served_sequences < spec.resources.max_concurrent_sequences:
        reasons.append(
            f"{served_sequences} concurrent sequences per replica, the most {runtime.metadata.name} serves "
            f"(maxConcurrentSequences asks {spec.resources.max_concurrent_sequences})"
        )
    return PoolOption(
        pool=pool.name,
        vendor=pool.vendor,
        accelerator=pool.product,
        resource_name=pool.resource_name,
        backend=runtime.metadata.name,
        backend_priority=runtime.spec.priority,
        image=runtime.spec.image,
        command=fill(runtime.spec.command, serving),
        args=args,
        env={e.name: fill([e.value], serving)[0] for e in runtime.spec.env if e.value_from is None},
        env_refs={
            e.name: e.value_from.model_dump(mode="json", by_alias=True, exclude_none=True)
            for e in runtime.spec.env
            if e.value_from is not None
        },
        precision=precision,
        kv_cache_dtype=kv_dtype,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        devices_per_replica=devices,
        cpu=cpu,
        max_replicas=_capacity(pool, tp, pp),
        memory=memory,
        conversion=conversion,
        is_cpu=pool.is_cpu,
        node_selector=pool.node_selector,
        taints=pool.taints,
        hosts=sorted(pool.node_names) if pool.is_cpu else [],
        collective_env=pool.collective_env,
        pod_annotations=dict(runtime.spec.pod_annotations),
        weight_mounts=_mounts(*weights),
        pod_template=spec.template if spec.template != PodTemplate() else None,
        credentials_secret=spec.model.credentials_secret,
        replica_tflops=peak * devices,
        reasons=reasons,
    )


def _fit_on_pool(
    req: _Request, pool: AcceleratorPool, runtime: BackendRuntime, precision: Precision, source: WeightSource
) -> PoolOption | Rejection:
    profile, spec = req.profile, req.spec
    name = runtime.metadata.name
    activation = activation_dtype(precision, pool.precisions)
    kv_dtype = _kv_dtype(spec, activation)
    if kv_dtype is KvCacheDtype.FP8 and Precision.FP8 not in pool.precisions:
        return Rejection(
            pool=pool.name,
            backend=name,
            precision=precision,
            reason=f"kvCacheDtype fp8 needs FP8 support, which {pool.product} lacks",
            kind=RejectionKind.PRECISION,
        )
    limit = min(
        pool.devices_per_node,
        pool.max_tensor_parallel or pool.devices_per_node,
        runtime.spec.max_tensor_parallel or pool.devices_per_node,
    )
    sizes = tensor_parallel_sizes(profile, limit)
    if not sizes:
        return Rejection(
            pool=pool.name,
            backend=name,
            precision=precision,
            reason=f"no tensor-parallel size up to {limit} divides {profile.num_attention_heads} heads",
        )
    last = None
    for tp in sizes:
        shape = _Shape(pool, runtime, precision, kv_dtype, tp, 1)
        last = _estimate(req, shape)
        if last.total <= last.usable:
            return _option(req, shape, last, source)
    tp = sizes[-1]
    nodes = len(pool.node_names)
    if runtime.spec.multi_node and nodes > 1 and not pool.is_cpu:
        for pp in range(2, min(nodes, profile.num_layers) + 1):
            shape = _Shape(pool, runtime, precision, kv_dtype, tp, pp)
            est = _estimate(req, shape)
            if est.total <= est.usable:
                return _option(req, shape, est, source)
    assert last is not None
    where = f"TP={tp}, the most {pool.devices_per_node} {pool.product} per node allow"
    if pool.is_cpu:
        where = f"one {pool.product} node"
    hint = "" if runtime.spec.multi_node else f"; {name} cannot span nodes"
    if runtime.spec.multi_node and nodes > 1 and not pool.is_cpu:
        hint = f"; even across all {nodes} nodes of the pool it does not fit"
    return Rejection(
        pool=pool.name,
        backend=name,
        precision=precision,
        reason=f"{precision.value} at {where} needs {last.describe()}{hint}",
        kind=RejectionKind.MEMORY,
        shortfall=(last.total - last.usable) / GIB,
    )


def _runtime_candidates(
    spec: ModelDeploymentSpec, catalog: Sequence[BackendRuntime]
) -> tuple[list[BackendRuntime], str | None]:
    if spec.backend == "auto":
        return list(catalog), None
    chosen = [b for b in catalog if b.metadata.name == spec.backend]
    if not chosen:
        names = ", ".join(b.metadata.name for b in catalog)
        return [], f"backend {spec.backend!r} is not in the catalog ({names})"
    return chosen, None


def _options_on_pool(
    req: _Request, pool: AcceleratorPool, runtimes: Sequence[BackendRuntime], rejections: list[Rejection]
) -> list[PoolOption]:
    profile, spec, memo = req.profile, req.spec, req.memo
    options: list[PoolOption] = []
    for runtime in runtimes:
        name = runtime.metadata.name
        why = accelerator_mismatch(runtime, pool)
        if why:
            if spec.backend != "auto":
                rejections.append(Rejection(pool=pool.name, backend=name, reason=why))
            continue
        why = model_type_mismatch(runtime, profile.model_type)
        if why:
            rejections.append(Rejection(pool=pool.name, backend=name, reason=why, kind=RejectionKind.MODEL_TYPE))
            continue
        unknown = memo.unknown_placeholders(runtime)
        if unknown:
            rejections.append(
                Rejection(pool=pool.name, backend=name, reason=f"{name} uses unknown placeholders {sorted(unknown)}")
            )
            continue
        offered = precisions_offered(runtime, pool)
        if spec.precision is not PrecisionChoice.AUTO:
            wanted = Precision(spec.precision.value)
            if wanted not in offered:
                rejections.append(
                    Rejection(
                        pool=pool.name,
                        backend=name,
                        precision=wanted,
                        reason=f"{wanted.value} is not supported by {name} on {pool.product} "
                        f"(both support: {', '.join(p.value for p in offered) or 'none'})",
                        kind=RejectionKind.PRECISION,
                    )
                )
                continue
            offered = [wanted]
        if not offered:
            rejections.append(
                Rejection(
                    pool=pool.name,
                    backend=name,
                    reason=f"{name} and {pool.product} share no precision",
                    kind=RejectionKind.PRECISION,
                )
            )
            continue
        unplaced: PoolOption | None = None
        for precision in offered:
            source = weight_source(runtime, precision, profile.checkpoints)
            if isinstance(source, str):
                rejections.append(
                    Rejection(
                        pool=pool.name, backend=name, precision=precision, reason=source, kind=RejectionKind.WEIGHTS
                    )
                )
                continue
            fit = _fit_on_pool(req, pool, runtime, precision, source)
            if not isinstance(fit, PoolOption):
                rejections.append(fit)
                continue
            if fit.max_replicas > 0:
                options.append(fit)
                break
            # Fits in memory but no free devices for this layout: a cheaper precision may still find room.
            unplaced = unplaced or fit
        else:
            if unplaced is not None:
                options.append(unplaced)
    return options


def _rank(option: PoolOption) -> tuple[int, int, int, int, float, int, str, str]:
    return (
        0 if option.max_replicas > 0 else 1,
        QUALITY_RANK[option.precision],
        -option.backend_priority,
        option.pipeline_parallel,
        -option.replica_tflops,
        option.devices_per_replica,
        option.pool,
        option.backend,
    )


def _assign(options: list[PoolOption], wanted: int) -> list[Assignment]:
    """Fill the wanted replica count from the best option down, one runtime per pool."""
    assignments: list[Assignment] = []
    used_pools: set[str] = set()
    remaining = wanted
    for option in options:
        if remaining <= 0 or option.pool in used_pools or option.max_replicas <= 0:
            continue
        take = min(option.max_replicas, remaining)
        assignments.append(Assignment(option=option, replicas=take))
        used_pools.add(option.pool)
        remaining -= take
    return assignments


def option_for(
    profile: ModelProfile,
    spec: ModelDeploymentSpec,
    pool: AcceleratorPool,
    runtime: BackendRuntime,
    precision: Precision,
    tp: int,
    pp: int = 1,
    served_name: str | None = None,
) -> PoolOption | str:
    """The option plan() would make for this exact layout, whether or not it fits (the memory estimate says),
    or why there are no weights for it: for reviewing what each decision renders, layout by layout."""
    source = weight_source(runtime, precision, profile.checkpoints)
    if isinstance(source, str):
        return source
    context = min(spec.resources.context_length, profile.max_context)
    req = _Request(profile, spec, context, served_name or profile.name, _Memo())
    kv_dtype = _kv_dtype(spec, activation_dtype(precision, pool.precisions))
    shape = _Shape(pool, runtime, precision, kv_dtype, tp, pp)
    return _option(req, shape, _estimate(req, shape), source)


def plan(
    inventory: Inventory,
    profile: ModelProfile,
    catalog: Sequence[BackendRuntime],
    spec: ModelDeploymentSpec,
    served_name: str | None = None,
) -> Plan:
    """Choose backend, precision, parallelism and pools for one model in one cluster's inventory."""
    served = served_name or profile.name
    memo = _Memo()
    rejections: list[Rejection] = []
    warnings: list[str] = []
    context = spec.resources.context_length
    if context > profile.max_context:
        warnings.append(
            f"contextLength {context} exceeds {profile.name}'s maximum {profile.max_context}; "
            f"budgeting {profile.max_context}"
        )
        context = profile.max_context
    main_source = profile.source or ""
    if main_source.startswith(UNFETCHED):
        # Refused, not warned about: pods that start without their weights crash-loop where no one looks.
        reason = (
            f"spec.model.source {main_source}: the operator does not fetch "
            f"{main_source.split('://')[0]}:// weights; copy them to a PersistentVolumeClaim and give "
            "pvc://CLAIM/PATH, or give hf://ORG/REPO"
        )
        return Plan(
            model=profile.name,
            parameters=profile.parameters,
            feasible=False,
            fallback=False,
            assignments=[],
            options=[],
            rejections=[Rejection(pool="*", backend="*", reason=reason)],
            warnings=warnings,
            summary=reason,
        )
    unfetched = [c for c in profile.checkpoints if c.source.startswith(UNFETCHED)]
    for checkpoint in unfetched:
        warnings.append(
            f"checkpoint {checkpoint.source} not used: the operator does not fetch "
            f"{checkpoint.source.split('://')[0]}:// weights (give pvc:// or hf://)"
        )
    if unfetched:
        profile = profile.model_copy(update={"checkpoints": [c for c in profile.checkpoints if c not in unfetched]})
    req = _Request(profile=profile, spec=spec, context=context, served_name=served, memo=memo)
    runtimes, backend_error = _runtime_candidates(spec, catalog)
    if backend_error:
        rejections.append(Rejection(pool="*", backend=spec.backend, reason=backend_error))

    accel_options: list[PoolOption] = []
    cpu_pools: list[AcceleratorPool] = []
    for pool in inventory.pools:
        if not pool.known:
            rejections.append(Rejection(pool=pool.name, reason=pool.unknown_reason or "unknown accelerator"))
            continue
        if pool.is_cpu:
            cpu_pools.append(pool)
            continue
        accel_options += _options_on_pool(req, pool, runtimes, rejections)

    explicit_cpu = (
        bool(runtimes) and spec.backend != "auto" and all(r.spec.accelerator.vendor == "cpu" for r in runtimes)
    )
    accel_capacity = any(o.max_replicas > 0 for o in accel_options)
    cpu_options: list[PoolOption] = []
    fallback = False
    if cpu_pools and (explicit_cpu or not accel_capacity):
        if spec.fallback_policy is FallbackPolicy.CPU or explicit_cpu:
            for pool in cpu_pools:
                cpu_options += _options_on_pool(req, pool, runtimes, rejections)
            fallback = not explicit_cpu and any(o.max_replicas > 0 for o in cpu_options)
        else:
            rejections.append(Rejection(pool="cpu", reason="CPU nodes exist but fallbackPolicy is none"))

    pools = {p.name: p for p in inventory.pools}
    for option in accel_options:
        if option.max_replicas == 0:
            rejections.append(_short_of_devices(option, pools[option.pool]))
    rejections = ranked(rejections)
    options = sorted(accel_options + cpu_options, key=_rank)
    wanted = max(spec.replicas.min, 1)
    assignments = _assign(options, wanted)
    placed = sum(a.replicas for a in assignments)
    feasible = placed > 0
    if feasible and placed < wanted:
        warnings.append(f"only {placed} of {wanted} replicas fit on free devices")
    if fallback:
        warnings.append("no accelerator pool can serve the model; falling back to CPU (fallbackPolicy cpu)")
    summary = _summary(profile, assignments, rejections, feasible)
    return Plan(
        model=profile.name,
        parameters=profile.parameters,
        feasible=feasible,
        fallback=fallback,
        assignments=assignments,
        options=options,
        rejections=rejections,
        warnings=warnings,
        summary=summary,
    )


def _short_of_devices(option: PoolOption, pool: AcceleratorPool) -> Rejection:
    """An option that fits in memory but not on the free devices: how many it needs where, how many are free,
    and who holds the rest."""
    tp, pp = option.tensor_parallel, option.pipeline_parallel
    free = sorted(pool.free_by_node.values(), reverse=True)
    layout = f"TP={tp}" + (f" x PP={pp}" if pp > 1 else "")
    where = "on one node" if pp == 1 else f"on each of {pp} nodes"
    # the nodes a replica would use: the pp freest ones
    best = (free + [0] * pp)[:pp]
    short = sum(max(0, tp - n) for n in best)
    have = (
        f"the most free on a node is {best[0]}"
        if pp == 1
        else f"the {pp} freest nodes have {', '.join(str(n) for n in best)} free"
    )
    holders = ", ".join(f"{h} ({n})" for h, n in sorted(pool.holders.items(), key=lambda kv: (-kv[1], kv[0])))
    return Rejection(
        pool=option.pool,
        backend=option.backend,
        precision=option.precision,
        reason=f"{option.precision.value} fits at {layout} but needs {tp} free {option.resource_name} {where}; "
        f"{have}" + (f", held by {holders}" if holders else ""),
        kind=RejectionKind.CAPACITY,
        shortfall=short,
    )


def _summary(profile: ModelProfile, assignments: list[Assignment], rejections: list[Rejection], feasible: bool) -> str:
    if feasible:
        parts = [
            f"{a.replicas}x {a.option.backend} {a.option.precision.value} TP={a.option.tensor_parallel}"
            + (f" PP={a.option.pipeline_parallel}" if a.option.pipeline_parallel > 1 else "")
            + f" on {a.option.pool}"
            for a in assignments
        ]
        return f"{profile.name} ({profile.parameters / 1e9:.1f}B params): " + "; ".join(parts)
    if not rejections:
        return f"{profile.name}: no accelerator or CPU node in the inventory"
    # Lead with what came closest (rejections arrive ranked): what a user can act on first.
    return (
        f"{profile.name} cannot be placed: "
        + "; ".join(f"{r.pool}: {r.reason}" for r in rejections[:3])
        + (f" (+{len(rejections) - 3} more)" if len(rejections) > 3 else "")
    )


def inputs_digest(spec: ModelDeploymentSpec, catalog: Sequence[BackendRuntime], inventory: Inventory) -> str:
    """Changes when anything plan() reads changes: the spec, the runtimes, the pools and their free devices."""
    parts = [
        spec.model_dump(mode="json"),
        [b.spec.model_dump(mode="json") | {"name": b.metadata.name} for b in catalog],
        [
            (p.name, p.known, p.memory_bytes, p.devices_per_node, sorted(p.free_histogram.items()), len(p.node_names))
            for p in inventory.pools
        ],
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
