"""ModelDeployment: what a user applies to serve one model across the fleet."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from autoglm.api.common import ApiModel, Condition, CrdInfo, Precision, PrecisionChoice, Resource, cel_rules
from autoglm.api.podtemplate import PodTemplate

# CEL has no bit operations, so the power-of-two rule is written as membership; 1 B to 1 MiB covers every
# allocator granularity in use (CUDA 256 B, Ascend 32 B/512 B, 2 MiB pages are not per-tensor).
ALIGNMENTS = [2**i for i in range(0, 21)]


class ModelArchitecture(ApiModel):
    """Architecture facts of a transformer, named as in Hugging Face config.json; enough to size it."""

    model_type: str | None = Field(
        default=None,
        description="HF model_type (chatglm, glm, glm4, glm4_moe, ...); backends declare which they serve.",
    )
    hidden_size: int | None = Field(default=None, ge=1, description="Width of the residual stream.")
    num_layers: int | None = Field(default=None, ge=1, description="Number of decoder layers.")
    num_attention_heads: int | None = Field(default=None, ge=1, description="Query heads per layer.")
    num_kv_heads: int | None = Field(
        default=None, ge=1, description="Key/value heads per layer (GQA/MQA groups); equals heads for MHA."
    )
    head_dim: int | None = Field(default=None, ge=1, description="Per-head dimension; default hidden/heads.")
    intermediate_size: int | None = Field(default=None, ge=1, description="Dense MLP (SwiGLU) width.")
    vocab_size: int | None = Field(default=None, ge=1, description="Vocabulary (embedding rows).")
    max_context: int | None = Field(default=None, ge=1, description="Longest context the model supports.")
    tie_word_embeddings: bool | None = Field(default=None, description="Output head shares the embedding.")
    attention_bias: bool | None = Field(default=None, description="QKV projections carry a bias.")
    num_experts: int | None = Field(default=None, ge=0, description="Routed experts per MoE layer; 0 = dense.")
    num_experts_per_token: int | None = Field(default=None, ge=0, description="Routed experts active per token.")
    num_shared_experts: int | None = Field(default=None, ge=0, description="Always-active experts per MoE layer.")
    moe_intermediate_size: int | None = Field(default=None, ge=1, description="Width of one expert's MLP.")
    first_dense_layers: int | None = Field(
        default=None, ge=0, description="Leading layers with a dense MLP before the MoE layers begin."
    )
    parameters: int | None = Field(
        default=None,
        ge=1,
        description="Published total parameter count; only a cross-check, sizes come from the shapes.",
    )


class Checkpoint(ApiModel):
    """A pre-quantized checkpoint of the model (AWQ, GPTQ, compressed-tensors, msModelSlim W8A8, ...)."""

    precision: Precision = Field(description="The precision its weights are stored in.")
    format: str = Field(
        min_length=1, description="Its format, as runtimes name it in quantizedWeights (awq, gptq, msmodelslim-w8a8)."
    )
    source: str = Field(
        description="Where it comes from: hf://org/repo or pvc://claim/path (a checkpoint elsewhere is not used).",
        pattern=r"^(hf|pvc|oci|s3|gs|file)://.+",
    )


class ConfigMapKey(ApiModel):
    """A key of a ConfigMap in the deployment's namespace."""

    name: str = Field(min_length=1, description="ConfigMap name.")
    key: str = Field(default="config.json", min_length=1, description="Key holding the model's config.json.")


class ModelSource(ApiModel):
    name: str = Field(
        min_length=1,
        description="Model name: a built-in GLM catalog entry (glm-4-9b-chat, ...) or any name with architecture.",
    )
    source: str | None = Field(
        default=None,
        description="Where weights come from: hf://org/repo (downloaded into the model cache) or pvc://claim/path "
        "(mounted); s3://, gs://, oci:// and file:// are refused with the plan's reason (copy them to a claim).",
        pattern=r"^(hf|pvc|oci|s3|gs|file)://.+",
    )
    revision: str = Field(default="main", description="Source revision (git ref, tag or digest).")
    architecture: ModelArchitecture | None = Field(
        default=None, description="Architecture facts; required for models outside the built-in catalog."
    )
    checkpoints: list[Checkpoint] = Field(
        default_factory=list,
        description="Pre-quantized checkpoints of this model, used for their precision before the catalog's.",
    )
    config_map: ConfigMapKey | None = Field(
        default=None,
        description="The model's Hugging Face config.json in a ConfigMap: its shapes are the architecture (for "
        "any decoder outside the catalog); fields of `architecture` still override them.",
    )
    credentials_secret: str | None = Field(
        default=None,
        min_length=1,
        description="A Secret in the deployment's namespace whose keys HF_TOKEN, MODELSCOPE_API_TOKEN, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN reach every container that downloads the "
        "weights (the server, the conversion Jobs) as environment variables read from the Secret, never copied "
        "into a spec. Keys it lacks are left out.",
    )


class FallbackPolicy(StrEnum):
    CPU = "cpu"
    NONE = "none"


class KvCacheDtype(StrEnum):
    AUTO = "auto"
    FP8 = "fp8"
    BF16 = "bf16"
    FP16 = "fp16"


class ResourceBudget(ApiModel):
    context_length: int = Field(
        default=8192,
        ge=1,
        description="Tokens of context to budget KV cache for per sequence (capped at the model's maximum).",
    )
    max_concurrent_sequences: int = Field(
        default=16, ge=1, description="Sequences served at once by one replica; KV cache is sized for all."
    )
    memory_headroom: float = Field(
        default=0.10,
        ge=0.0,
        lt=0.9,
        description="Fraction of device memory left unused for fragmentation and the runtime's own peaks.",
    )
    kv_cache_dtype: KvCacheDtype = Field(
        default=KvCacheDtype.AUTO, description="KV cache element type; auto follows the activation type."
    )


class ReplicaRange(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(("self.min <= self.max", "replicas.min must not exceed replicas.max"))
    )

    min: int = Field(default=1, ge=0, description="Replicas kept at all times.")
    max: int = Field(
        default=1,
        ge=1,
        description="Upper bound for the autoscaler; equal to min, a fixed size (no HPA unless it forecasts).",
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must not exceed replicas.max ({self.max})")
        return self


class ReplicaScheduling(StrEnum):
    DUPLICATED = "Duplicated"
    DIVIDED = "Divided"


class ClusterWeight(ApiModel):
    cluster: str = Field(min_length=1, description="Member cluster name.")
    weight: int = Field(ge=0, description="Relative share of replicas.")


class DynamicWeight(StrEnum):
    FREE_ACCELERATORS = "FreeAccelerators"


class PlacementWeights(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!(has(self.dynamic) && has(self.static) && size(self.static) > 0)",
                "give either static or dynamic weights, not both",
            )
        )
    )

    static: list[ClusterWeight] = Field(default_factory=list, description="Fixed weights per cluster.")
    dynamic: DynamicWeight | None = Field(
        default=None, description="Weigh clusters by what they have free instead of static weights."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.static and self.dynamic is not None:
            raise ValueError("placement.weights: give either static or dynamic, not both")
        if self.static and sum(w.weight for w in self.static) <= 0:
            raise ValueError("placement.weights.static: weights must sum to more than 0")
        return self


class LabelSelector(ApiModel):
    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels that must all match.")


class Failover(ApiModel):
    toleration_seconds: int = Field(
        default=300, ge=0, description="How long a cluster may be NotReady before its replicas move."
    )
    rebalance_seconds: int = Field(
        default=120,
        ge=0,
        description="How long a cluster that came back must stay Ready before replicas move back to it; "
        "a cluster that flaps inside this window keeps none.",
    )


class MemberOverride(ApiModel):
    cluster: str = Field(min_length=1, description="The member cluster it applies to.")
    template: PodTemplate = Field(
        description="Merged over spec.template on that member: its own pull secret, its own GPU taint's toleration."
    )


class ClusterToleration(ApiModel):
    """Tolerates a MemberCluster's taint, as a Pod's toleration does a Node's (Karmada's clusterTolerations)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!(has(self.operator) && self.operator == 'Exists' && has(self.value) && self.value != '')",
                "a toleration with operator Exists takes no value",
            ),
            (
                "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
                "a toleration without a key must have operator Exists",
            ),
        )
    )

    key: str = Field(
        default="", max_length=316, description="The taint key; empty with operator Exists tolerates every taint."
    )
    operator: Literal["Equal", "Exists"] = Field(
        default="Equal", description="Equal: the taint's value must be `value`. Exists: any value."
    )
    value: str = Field(default="", max_length=63, description="The taint value, for operator Equal.")
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="", description="The taint effect to tolerate; empty tolerates every effect."
    )

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Self:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists takes no value")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key must have operator Exists")
        return self

    def tolerates(self, key: str, value: str, effect: str) -> bool:
        if self.effect and self.effect != effect:
            return False
        if not self.key:
            return True
        return self.key == key and (self.operator == "Exists" or self.value == value)


class Placement(ApiModel):
    clusters: list[str] = Field(
        default_factory=list, description="Member clusters to use; empty means every Ready member."
    )
    cluster_selector: LabelSelector | None = Field(default=None, description="Select members by label.")
    regions: list[str] = Field(
        default_factory=list,
        description="Only members whose MemberCluster spec.region (Karmada: Cluster spec.region) is one of these; "
        "empty: any region.",
    )
    zones: list[str] = Field(
        default_factory=list,
        description="Only members whose MemberCluster spec.zone (Karmada: Cluster spec.zone) is one of these; "
        "empty: any zone.",
    )
    member_overrides: list[MemberOverride] = Field(
        default_factory=list,
        description="Per member, what its pods need beyond spec.template (a member's own registry secret or "
        "GPU taint).",
    )
    cluster_tolerations: list[ClusterToleration] = Field(
        default_factory=list,
        max_length=64,
        description="A member with a NoSchedule or NoExecute taint gets replicas only when one of these tolerates it.",
    )
    replica_scheduling: ReplicaScheduling = Field(
        default=ReplicaScheduling.DIVIDED,
        description="Duplicated: every cluster runs the full count. Divided: the count is split by weight.",
    )
    weights: PlacementWeights = Field(default_factory=PlacementWeights, description="How Divided splits.")
    failover: Failover = Field(default_factory=Failover, description="Cluster failover behaviour.")


class ForecastModel(StrEnum):
    AUTO = "auto"
    SEASONAL = "seasonal"
    RIDGE = "ridge"
    GRADIENT_BOOSTING = "gradientBoosting"


class CapacityPoint(ApiModel):
    """One measured load level of one replica (benchmarks/serving_profile.py measures them)."""

    concurrency: int = Field(ge=1, description="Sequences in flight (vLLM: requests running).")
    ttft_seconds: float = Field(gt=0, description="Time to first token at that load.")
    itl_seconds: float = Field(gt=0, description="Inter-token latency at that load.")


class CapacityProfile(ApiModel):
    """A replica's measured latency against load; its capacity is the most load that meets the targets."""

    points: list[CapacityPoint] = Field(min_length=1, description="Measured points, any order.")
    ttft_target_seconds: float | None = Field(default=None, gt=0, description="Largest acceptable TTFT.")
    itl_target_seconds: float | None = Field(default=None, gt=0, description="Largest acceptable ITL.")


class ForecastSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "!has(self.leadTimeSeconds) || !has(self.horizonSeconds) "
                "|| self.leadTimeSeconds <= self.horizonSeconds",
                "leadTimeSeconds must not exceed horizonSeconds",
            )
        )
    )

    enabled: bool = Field(default=False, description="Scale ahead of predicted load.")
    horizon_seconds: int = Field(
        default=1800,
        ge=60,
        description="How far ahead the forecast looks: the lead (leadTimeSeconds, or the measured cold start) is "
        "capped at this, and a longer cold start is left to the reactive HPA (the Forecasting condition says so).",
    )
    model: ForecastModel = Field(
        default=ForecastModel.AUTO,
        description="Predictor: auto lets a backtest choose among all, seasonal between a day and a week ago; "
        "ridge and gradientBoosting are used as named. status.forecast.model says which ran.",
    )
    lead_time_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Scale this early (at most horizonSeconds); default is the measured replica cold start.",
    )
    capacity_per_replica: float | None = Field(
        default=None,
        gt=0,
        description="Load one replica serves, in the load query's unit; default from capacityProfile, else "
        "autoscaling.targetPerReplica.",
    )
    capacity_profile: CapacityProfile | None = Field(
        default=None,
        description="A replica's measured TTFT and ITL against concurrency: its capacity is the highest "
        "concurrency that meets both targets (used when capacityPerReplica is not given).",
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        description="PromQL for the deployment's total load; default by backend (vLLM: running + waiting "
        "requests of its model_name in its namespace).",
    )

    @model_validator(mode="after")
    def _lead_within_horizon(self) -> Self:
        if self.lead_time_seconds is not None and self.lead_time_seconds > self.horizon_seconds:
            raise ValueError(
                f"autoscaling.forecast: leadTimeSeconds {self.lead_time_seconds} exceeds horizonSeconds "
                f"{self.horizon_seconds} (the forecast looks no further than its horizon)"
            )
        return self


class Autoscaling(ApiModel):
    metric: str = Field(
        default="vllm:num_requests_running",
        min_length=1,
        description="Per-replica load metric the HPA and the forecaster read.",
    )
    target_per_replica: float = Field(default=8.0, gt=0, description="Desired metric value per replica.")
    scale_down_stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="A lower replica count takes effect only after holding this long (the HPA's and the "
        "forecast floor's).",
    )
    scale_up_period_seconds: int = Field(
        default=15,
        ge=1,
        le=1800,
        description="The HPA adds at most max(100 %, 4 pods) per this many seconds (Kubernetes' default policy).",
    )
    forecast: ForecastSpec = Field(default_factory=ForecastSpec, description="Predictive scaling.")


class Rollout(ApiModel):
    max_unavailable: int = Field(default=0, ge=0, description="Replicas that may be down during a rollout.")
    deadline_seconds: int = Field(
        default=900,
        ge=10,
        description="Across several member clusters, how long a new revision may take to be ready in every "
        "member before every member rolls back to the old one.",
    )
    canary_percent: int = Field(default=0, ge=0, le=100, description="Traffic share for a new plan version.")
    regression_threshold: float = Field(
        default=0.1, ge=0, le=1, description="Relative latency/throughput loss that rolls a canary back."
    )


class AccessMode(StrEnum):
    READ_WRITE_MANY = "ReadWriteMany"
    READ_WRITE_ONCE = "ReadWriteOnce"


class ModelCache(ApiModel):
    enabled: bool = Field(default=True, description="Keep weights and converted artifacts on a volume.")
    storage_class_name: str | None = Field(default=None, description="StorageClass; default class when unset.")
    size: str | None = Field(
        default=None, pattern=r"^[0-9]+(Gi|Ti)$", description="Volume size; default 1.5x the source weights."
    )
    access_mode: AccessMode = Field(
        default=AccessMode.READ_WRITE_MANY, description="ReadWriteMany lets replicas on many nodes share it."
    )


class ServiceType(StrEnum):
    CLUSTER_IP = "ClusterIP"
    LOAD_BALANCER = "LoadBalancer"


class ServiceExposure(ApiModel):
    type: ServiceType = Field(
        default=ServiceType.CLUSTER_IP,
        description="ClusterIP: reached inside its cluster. LoadBalancer: each member's Service gets an address the "
        "gateway reaches from outside that member (status.clusters[].endpoint).",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="The Service's OpenAI-compatible HTTP port.")


class FailureMode(StrEnum):
    FAIL_CLOSE = "FailClose"
    FAIL_OPEN = "FailOpen"


class InferencePoolExposure(ApiModel):
    endpoint_picker: str = Field(
        min_length=1,
        description="Service of the endpoint picker (the Inference Extension's EPP) the gateway consults.",
    )
    port: int = Field(default=9002, ge=1, le=65535, description="The endpoint picker's port.")
    failure_mode: FailureMode = Field(
        default=FailureMode.FAIL_CLOSE, description="What the gateway does when the endpoint picker does not answer."
    )


class Exposure(ApiModel):
    service: ServiceExposure = Field(default_factory=ServiceExposure, description="Each member's Service.")
    inference_pool: InferencePoolExposure | None = Field(
        default=None,
        description="Also an InferencePool (Gateway API Inference Extension, inference.networking.k8s.io/v1) of "
        "the serving pods in each member that serves the kind, for a conformant gateway (Envoy Gateway, "
        "kgateway, Istio) to front them.",
    )


class ModelDeploymentSpec(ApiModel):
    model: ModelSource = Field(description="The model to serve.")
    precision: PrecisionChoice = Field(
        default=PrecisionChoice.AUTO, description="auto picks the best the chip runs natively that fits."
    )
    backend: str = Field(default="auto", min_length=1, description="auto or a BackendRuntime name.")
    fallback_policy: FallbackPolicy = Field(
        default=FallbackPolicy.CPU,
        description="cpu: serve on CPU nodes when no accelerator fits; none: don't.",
    )
    memory_alignment: int = Field(
        default=64,
        json_schema_extra=cel_rules((f"self in {ALIGNMENTS}", "memoryAlignment must be a power of two")),
        description="Bytes every tensor allocation is rounded up to (a power of two).",
    )
    resources: ResourceBudget = Field(default_factory=ResourceBudget, description="Memory budget inputs.")
    model_cache: ModelCache = Field(default_factory=ModelCache, description="Volume for weights and artifacts.")
    replicas: ReplicaRange = Field(default_factory=ReplicaRange, description="Replica bounds.")
    placement: Placement = Field(default_factory=Placement, description="Multi-cluster placement.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Reactive and predictive scaling.")
    rollout: Rollout = Field(default_factory=Rollout, description="Rollout and canary behaviour.")
    expose: Exposure = Field(default_factory=Exposure, description="How members' Services are reached.")
    template: PodTemplate = Field(
        default_factory=PodTemplate,
        description="Added to every serving pod: labels, annotations, scheduling, pull secrets, env from Secrets, "
        "volumes, host resources.",
    )

    def with_min_replicas(self, replicas: int) -> ModelDeploymentSpec:
        """This spec with replicas.min set (a member's share, a forecast floor): what the planner is asked for."""
        return self.model_copy(update={"replicas": self.replicas.model_copy(update={"min": replicas})})

    @field_validator("memory_alignment")
    @classmethod
    def _alignment_power_of_two(cls, value: int) -> int:
        if value not in ALIGNMENTS:
            raise ValueError(f"must be a power of two between 1 and {ALIGNMENTS[-1]}, got {value}")
        return value


class PlanEntry(ApiModel):
    cluster: str = Field(default="local", description="Member cluster the entry applies to.")
    pool: str = Field(description="Accelerator pool (vendor-product-devices per node).")
    accelerator: str = Field(description="Accelerator product.")
    backend: str = Field(description="Chosen BackendRuntime.")
    image: str = Field(description="Serving image.")
    precision: str = Field(description="Serving precision.")
    tensor_parallel: int = Field(ge=1, description="Devices one replica's tensors are split over.")
    pipeline_parallel: int = Field(default=1, ge=1, description="Nodes one replica spans.")
    replicas: int = Field(ge=0, description="Replicas placed on this pool.")
    reasons: list[str] = Field(default_factory=list, description="Why this choice was made.")


class ClusterStatus(ApiModel):
    name: str = Field(description="Member cluster.")
    desired: int = Field(default=0, ge=0, description="Replicas wanted there.")
    ready: int = Field(default=0, ge=0, description="Replicas ready there.")
    revision: str | None = Field(
        default=None, description="Revision the member's Service selects (coordinated rollouts across members)."
    )
    endpoint: str | None = Field(
        default=None,
        description="Base URL of the member's Service for the gateway: its load balancer's address, or its cluster "
        "DNS name on the host cluster; none while a load balancer has no address yet.",
    )


class RolloutPhase(StrEnum):
    PROGRESSING = "Progressing"
    BLOCKED = "Blocked"
    ROLLED_BACK = "RolledBack"


class RolloutStatus(ApiModel):
    phase: RolloutPhase = Field(description="Progressing, Blocked (no room beside the old), or RolledBack.")
    targets: dict[str, str] = Field(default_factory=dict, description="Member -> the revision being rolled out.")
    started: datetime | None = Field(default=None, description="When the rollout to these targets began.")
    message: str = Field(default="", description="What it waits for, or why it rolled back.")


class ForecastStatus(ApiModel):
    predicted_load: float | None = Field(default=None, description="Peak load predicted over the horizon.")
    recommended_replicas: int | None = Field(default=None, description="Replicas the forecaster asks for.")
    model: str | None = Field(default=None, description="Predictor in use.")
    updated: datetime | None = Field(default=None, description="When the forecast was made.")
    floor: int | None = Field(
        default=None,
        ge=0,
        description="Replicas held ready ahead of load: the deployment's minimum while forecasting, split over "
        "members by the placement and written as each member's HPA minReplicas.",
    )
    current_load: float | None = Field(default=None, description="Load when the forecast was made.")
    error: float | None = Field(
        default=None, description="Recent forecast error: mean |actual - predicted| / actual of the window peak."
    )
    lead_seconds: float | None = Field(default=None, description="How far ahead it scales (the cold start).")


class ModelDeploymentStatus(ApiModel):
    observed_generation: int | None = Field(default=None, description="Last generation acted on.")
    conditions: list[Condition] = Field(default_factory=list, description="Planned, Converted, Ready, ...")
    plan: list[PlanEntry] = Field(default_factory=list, description="Chosen placement per cluster and pool.")
    clusters: list[ClusterStatus] = Field(default_factory=list, description="Replicas per member cluster.")
    replicas: int = Field(default=0, ge=0, description="Replicas desired in total.")
    ready_replicas: int = Field(default=0, ge=0, description="Replicas ready in total.")
    forecast: ForecastStatus | None = Field(default=None, description="Latest forecast.")
    rollout: RolloutStatus | None = Field(default=None, description="A coordinated rollout across members.")
    inputs_hash: str | None = Field(
        default=None, description="Digest of spec, catalog and inventory the plan was made from."
    )
    plan_hash: str | None = Field(default=None, description="Digest of the applied plan.")
    artifacts: list[str] = Field(
        default_factory=list, description="Conversion cache keys this deployment uses (cleaned when unused)."
    )
    # Flattened for printer columns: JSONPath in additionalPrinterColumns cannot pick "the first entry's".
    backend: str | None = Field(default=None, description="Primary backend (printer column).")
    precision: str | None = Field(default=None, description="Primary precision (printer column).")
    tensor_parallel: int | None = Field(default=None, description="Primary TP size (printer column).")
    cluster_count: int | None = Field(default=None, description="Clusters serving (printer column).")


class ModelDeployment(Resource):
    """ModelDeployment serves one model on the best accelerators of the fleet."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="ModelDeployment",
        plural="modeldeployments",
        singular="modeldeployment",
        short_names=["md", "mdep"],
        categories=["autoglm", "all"],
        namespaced=True,
        printer_columns=[
            {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
            {"name": "Backend", "type": "string", "jsonPath": ".status.backend"},
            {"name": "Precision", "type": "string", "jsonPath": ".status.precision"},
            {"name": "TP", "type": "integer", "jsonPath": ".status.tensorParallel"},
            {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
            {"name": "Clusters", "type": "integer", "jsonPath": ".status.clusterCount"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )

    kind: Literal["ModelDeployment"] = Field(default="ModelDeployment", description="ModelDeployment")
    spec: ModelDeploymentSpec = Field(description="Desired state.")
    status: ModelDeploymentStatus | None = Field(default=None, description="Observed state.")
