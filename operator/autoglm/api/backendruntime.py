"""BackendRuntime: one serving runtime (image + args) for a set of accelerators, precisions and formats."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from autoglm.api.common import ApiModel, Condition, CrdInfo, Precision, Resource
from autoglm.api.podtemplate import EnvVarSource


class AcceleratorSelector(ApiModel):
    vendor: str = Field(min_length=1, description="Vendor key: nvidia, huawei, cambricon, kunlunxin, ... or cpu.")
    products: list[str] = Field(
        default_factory=list,
        description="Product name globs (fnmatch, case-insensitive) this runtime runs on; empty means all.",
    )
    min_compute_capability: str | None = Field(
        default=None, pattern=r"^\d+\.\d+$", description="Lowest compute capability (NVIDIA major.minor)."
    )


class EnvVar(ApiModel):
    name: str = Field(min_length=1, description="Variable name.")
    value: str = Field(default="", description="Value; may use the same {placeholders} as args.")
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Read from a Secret's or ConfigMap's key (in each deployment's namespace) or a pod field, "
        "instead of a value: a token never sits in this cluster-scoped object.",
    )

    @model_validator(mode="after")
    def _value_or_reference(self) -> Self:
        if self.value and self.value_from is not None:
            raise ValueError(f"env {self.name}: give value or valueFrom, not both")
        return self


class PortSpec(ApiModel):
    name: str = Field(min_length=1, description="Port name (http, grpc, metrics).")
    container_port: int = Field(ge=1, le=65535, description="Port inside the container.")
    protocol: Literal["TCP", "UDP"] = Field(default="TCP", description="Transport protocol.")


class Conversion(ApiModel):
    """A compile step that turns the source weights into the format the runtime loads."""

    image: str = Field(min_length=1, description="Tool image.")
    tool_version: str = Field(min_length=1, description="Tool version; part of the artifact cache key.")
    command: list[str] = Field(default_factory=list, description="Entrypoint override.")
    args: list[str] = Field(default_factory=list, description="Arguments, with {placeholders}.")
    produces: str = Field(min_length=1, description="Artifact format: tensorrt-engine, om, bmodel, gguf, ...")
    resources_per_job: dict[str, str] = Field(
        default_factory=dict, description="Extra resource requests of the conversion Job (cpu, memory)."
    )
    needs_accelerator: bool = Field(
        default=False, description="The compile step must run on the target accelerator (TensorRT engines)."
    )


class QuantizedWeights(ApiModel):
    """Where one quantized precision's weights come from, for a runtime that loads checkpoints."""

    online: bool = Field(
        default=False,
        description="The runtime quantizes the 16-bit checkpoint as it loads it (precisionArgs say how).",
    )
    formats: list[str] = Field(
        default_factory=list,
        description=(
            "Pre-quantized checkpoint formats it loads (awq, gptq, compressed-tensors, msmodelslim-w8a8): a "
            "checkpoint of the model in one of them (spec.model.checkpoints, or the catalog's) is served as is."
        ),
    )
    conversion: Conversion | None = Field(
        default=None,
        description="A Job that quantizes the 16-bit checkpoint into such weights, cached like compile steps.",
    )


class HostCpu(ApiModel):
    """Host CPU a serving pod requests: `base` for the engine's own processes plus `perDevice` for each device
    the pod drives (vLLM's documented minimum is 2 + N cores: its API server, its engine core's busy loop and
    one worker per device). Requested, never limited: a throttled engine loop stalls every device."""

    base: float = Field(default=2.0, ge=0, description="CPUs for the engine's own processes (server, scheduler).")
    per_device: float = Field(default=1.0, ge=0, description="CPUs for each accelerator device a pod drives.")


class Translator(StrEnum):
    TGI = "tgi"


class BackendRuntimeSpec(ApiModel):
    accelerator: AcceleratorSelector = Field(description="Which accelerators this runtime serves on.")
    model_types: list[str] = Field(default_factory=lambda: ["*"], description="HF model_type values served; * for any.")
    precisions: list[Precision] = Field(min_length=1, description="Serving precisions it supports.")
    image: str = Field(min_length=1, description="Serving image.")
    engine_version: str | None = Field(
        default=None,
        description=(
            "The serving engine release the image carries, as pip names it (vllm==0.11.0; a platform plugin "
            "after a plus: vllm==0.10.0+vllm-ascend==0.10.0rc1). Written on its workloads as the annotation "
            "autoglm.io/engine-version; the catalog's arguments are checked against that release's own argument "
            "definitions by the project's tests."
        ),
    )
    command: list[str] = Field(default_factory=list, description="Entrypoint override.")
    args: list[str] = Field(
        default_factory=list,
        description=(
            "Arguments with placeholders: {model} {servedName} {tp} {pp} {dtype} {contextLength} "
            "{maxSeqs} {totalContext} {port} {artifact} {quant} {socVersion} {gpuMemoryUtilization} {threads}."
        ),
    )
    precision_args: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra arguments per precision (e.g. fp8: [--quantization, fp8])."
    )
    quant_names: dict[str, str] = Field(
        default_factory=dict,
        description="Each precision's name in the runtime's tools (int4: Q4_K_M, w4bf16, ...), for {quant}.",
    )
    quantized_weights: dict[str, QuantizedWeights] = Field(
        default_factory=dict,
        description=(
            "Per quantized precision (fp8, int8, int4): where its weights come from. A quantized precision with "
            "no entry here, and no compile step, is not offered: no checkpoint of that precision would exist."
        ),
    )
    env: list[EnvVar] = Field(default_factory=list, description="Container environment.")
    pod_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations on the serving pods (sidecar injection, scrape hints, a node's warm-up policy).",
    )
    ports: list[PortSpec] = Field(
        default_factory=lambda: [PortSpec(name="http", container_port=8000)], description="Container ports."
    )
    health_path: str = Field(default="/health", description="HTTP readiness/liveness path.")
    metrics_path: str | None = Field(default="/metrics", description="Prometheus metrics path, if any.")
    openai_compatible: bool = Field(default=True, description="Serves the OpenAI HTTP API.")
    translator: Translator | None = Field(
        default=None,
        description="For a server whose API is not OpenAI-shaped (openaiCompatible false): the gateway's "
        "translator to its API (tgi: Text Generation Inference's /generate and /generate_stream, also served by "
        "MindIE).",
    )
    multi_node: bool = Field(default=False, description="Can span nodes (pipeline parallel over the network).")
    leader_command: list[str] = Field(
        default_factory=list,
        description="Multi-node: command of the first pod of a replica (args follow); default: command.",
    )
    worker_command: list[str] = Field(
        default_factory=list,
        description="Multi-node: command of the other pods; they join $AUTOGLM_LEADER_ADDRESS (no args).",
    )
    max_tensor_parallel: int | None = Field(default=None, ge=1, description="Largest TP the runtime supports.")
    max_concurrent_sequences: int | None = Field(
        default=None,
        ge=1,
        description="The most sequences one replica serves at once, where the runtime fixes it (a compiled "
        "engine's batch); the plan sizes the KV cache for no more, and says so.",
    )
    runtime_overhead_gib: float = Field(
        alias="runtimeOverheadGiB",
        default=1.5,
        ge=0,
        description="Per-device memory the runtime itself needs (context, graphs, workspace).",
    )
    conversion: Conversion | None = Field(default=None, description="Compile step, when the format needs one.")
    cpu: HostCpu = Field(
        default_factory=HostCpu,
        description="Host CPU a serving pod requests: base + perDevice x its devices; {threads} in args is that count.",
    )
    priority: int = Field(default=0, description="Higher wins when several runtimes fit.")

    @model_validator(mode="after")
    def _translated_when_not_openai(self) -> Self:
        if not self.openai_compatible and self.translator is None:
            raise ValueError("translator: required when openaiCompatible is false (the gateway must reach it)")
        if self.openai_compatible and self.translator is not None:
            raise ValueError("translator: only for a runtime whose API is not OpenAI-shaped (openaiCompatible false)")
        return self


class BackendRuntimeStatus(ApiModel):
    observed_generation: int | None = Field(default=None, description="The generation the operator last checked.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Valid: whether the operator accepted the runtime into its catalog, and if not, which field "
        "is wrong and why (the CRD schema admits what only the operator's own rules reject).",
    )


class BackendRuntime(Resource):
    """BackendRuntime is a serving runtime for a set of accelerators, precisions and model formats."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="BackendRuntime",
        plural="backendruntimes",
        singular="backendruntime",
        short_names=["br", "backend"],
        categories=["autoglm"],
        namespaced=False,
        printer_columns=[
            {"name": "Vendor", "type": "string", "jsonPath": ".spec.accelerator.vendor"},
            {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
            {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
            {"name": "Valid", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Valid")].status'},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )

    kind: Literal["BackendRuntime"] = Field(default="BackendRuntime", description="BackendRuntime")
    spec: BackendRuntimeSpec = Field(description="Runtime definition.")
    status: BackendRuntimeStatus | None = Field(default=None, description="Written by the operator.")
