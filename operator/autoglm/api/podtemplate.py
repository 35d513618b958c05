"""spec.template: what a platform team adds to every serving pod (KServe's predictor and the NIM Operator's
NIMService carry the same), and spec.model.credentialsSecret's keys.

Small Kubernetes structures are typed here (tolerations, env, envFrom, mounts, resources), so a wrong field is
refused with its path; large ones (affinity, volumes, security contexts) are kept as the user wrote them and
checked by the API server when the pods are applied.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, WithJsonSchema, model_validator

from autoglm.api.common import ApiModel

# A Kubernetes object kept as written (affinity, a volume, a security context): the API server validates it.
RawObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
# The environment variables a model download reads, by the key of spec.model.credentialsSecret that holds each.
CREDENTIAL_KEYS = (
    "HF_TOKEN",
    "MODELSCOPE_API_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON",
)


class KeyRef(ApiModel):
    name: str = Field(min_length=1, description="The Secret's or ConfigMap's name, in the deployment's namespace.")
    key: str = Field(min_length=1, description="The key whose value is used.")
    optional: bool | None = Field(default=None, description="Start the pod even when the key is missing.")


class FieldRef(ApiModel):
    field_path: str = Field(min_length=1, description="A pod field: metadata.name, status.podIP, ...")


class EnvVarSource(ApiModel):
    secret_key_ref: KeyRef | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeyRef | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: FieldRef | None = Field(default=None, description="A field of the pod.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [n for n in ("secret_key_ref", "config_map_key_ref", "field_ref") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("valueFrom: give exactly one of secretKeyRef, configMapKeyRef, fieldRef")
        return self


class EnvVar(ApiModel):
    name: str = Field(min_length=1, description="Variable name.")
    value: str | None = Field(default=None, description="A literal value.")
    value_from: EnvVarSource | None = Field(
        default=None, description="Where the value comes from (a Secret's key: never in plaintext in the spec)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: give value or valueFrom, not both")
        return self


class NamedRef(ApiModel):
    name: str = Field(min_length=1, description="The Secret's or ConfigMap's name.")
    optional: bool | None = Field(default=None, description="Start the pod even when it is missing.")


class EnvFromSource(ApiModel):
    prefix: str | None = Field(default=None, description="Prepended to every key.")
    secret_ref: NamedRef | None = Field(default=None, description="Every key of a Secret.")
    config_map_ref: NamedRef | None = Field(default=None, description="Every key of a ConfigMap.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("envFrom: give exactly one of secretRef, configMapRef")
        return self


class Toleration(ApiModel):
    key: str | None = Field(default=None, description="The taint key; empty with Exists tolerates every taint.")
    operator: Literal["Equal", "Exists"] = Field(default="Equal", description="Equal or Exists.")
    value: str | None = Field(default=None, description="The taint value, for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The effect tolerated; empty: every effect."
    )
    toleration_seconds: int | None = Field(default=None, ge=0, description="NoExecute: how long the pod stays.")


class VolumeMount(ApiModel):
    name: str = Field(min_length=1, description="A volume of template.volumes.")
    mount_path: str = Field(min_length=1, pattern=r"^/", description="Where in the server container.")
    read_only: bool | None = Field(default=None, description="Mounted read-only.")
    sub_path: str | None = Field(default=None, description="A path inside the volume.")


class ComputeResources(ApiModel):
    requests: dict[str, str] = Field(
        default_factory=dict, description="cpu, memory, ephemeral-storage: replace the computed requests."
    )
    limits: dict[str, str] = Field(default_factory=dict, description="cpu, memory: replace the computed limits.")

    @model_validator(mode="after")
    def _host_resources_only(self) -> Self:
        allowed = {"cpu", "memory", "ephemeral-storage"}
        for part in ("requests", "limits"):
            other = sorted(set(getattr(self, part)) - allowed)
            if other:
                raise ValueError(
                    f"resources.{part}: {', '.join(other)} (only {', '.join(sorted(allowed))}: the plan sets the "
                    "accelerators)"
                )
        return self


class PodTemplate(ApiModel):
    """Added to every serving pod; the plan's own choices (the accelerator's node selection, its devices, its
    tolerations) are kept: the user's are merged with them, never instead of them."""

    labels: dict[str, str] = Field(default_factory=dict, description="Pod labels (the operator's own win).")
    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations (Istio, Prometheus).")
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels the pods also need; a key the plan selects the accelerator by keeps the plan's.",
    )
    affinity: RawObject | None = Field(
        default=None,
        description="A Kubernetes Affinity. Required node terms are ANDed with the plan's; preferred terms and pod "
        "(anti-)affinity are added.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Added to the plan's (a cluster's own GPU or dedicated-node taints)."
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secrets (in the deployment's namespace) to pull the images with."
    )
    service_account_name: str | None = Field(default=None, description="The pods' ServiceAccount.")
    priority_class_name: str | None = Field(default=None, description="The pods' PriorityClass.")
    scheduler_name: str | None = Field(default=None, description="Another scheduler (volcano, hami-scheduler).")
    runtime_class_name: str | None = Field(default=None, description="A RuntimeClass (nvidia, kata).")
    security_context: RawObject | None = Field(default=None, description="The pod's PodSecurityContext.")
    container_security_context: RawObject | None = Field(
        default=None, description="The server container's SecurityContext."
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Added to the server container's; one of the same name replaces it."
    )
    env_from: list[EnvFromSource] = Field(default_factory=list, description="Secrets and ConfigMaps as env.")
    volumes: list[RawObject] = Field(default_factory=list, description="Kubernetes Volumes added to the pod.")
    volume_mounts: list[VolumeMount] = Field(default_factory=list, description="Mounts in the server container.")
    resources: ComputeResources = Field(
        default_factory=ComputeResources, description="Host CPU and memory instead of the computed ones."
    )

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> Self:
        names = {v.get("name") for v in self.volumes}
        missing = sorted({m.name for m in self.volume_mounts} - names)
        if missing:
            raise ValueError(f"volumeMounts: {', '.join(missing)} named in no template.volumes entry")
        return self

    def merged(self, override: PodTemplate) -> PodTemplate:
        """This template with a member's override on top: maps merged (the override's keys win), lists added,
        single values replaced where the override gives one."""
        data = self.model_dump(exclude_none=True)
        over = override.model_dump(exclude_none=True, exclude_defaults=True)
        for key, value in over.items():
            if isinstance(value, dict) and key not in ("affinity", "security_context", "container_security_context"):
                if key == "resources":
                    data[key] = {p: {**data[key].get(p, {}), **value.get(p, {})} for p in ("requests", "limits")}
                else:
                    data[key] = {**data.get(key, {}), **value}
            elif isinstance(value, list):
                data[key] = [*data.get(key, []), *value]
            else:
                data[key] = value
        return PodTemplate.model_validate(data)
