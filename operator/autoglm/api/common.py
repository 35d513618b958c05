"""Shared building blocks of the autoglm.io API: the base model, metadata and conditions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel


def cel_rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL rules (rule, message) as the JSON-schema extra the generated CRD carries: the API server refuses what
    the pydantic validators beside them refuse, with the same message."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected, values checked on assignment."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
        use_enum_values=False,
    )

    def to_manifest(self) -> dict[str, Any]:
        """The object as Kubernetes expects it: camelCase keys, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(BaseModel):
    """The subset of Kubernetes ObjectMeta the operator reads; the server's other fields are kept as-is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = Field(description="Object name, unique in its namespace.", min_length=1, max_length=253)
    namespace: str | None = Field(default=None, description="Namespace of namespaced objects.")
    labels: dict[str, str] = Field(default_factory=dict, description="Object labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Object annotations.")
    generation: int | None = Field(default=None, description="Spec generation, set by the API server.")
    uid: str | None = Field(default=None, description="Server-assigned unique id.")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A Kubernetes-style condition: one observed aspect of the object, with a machine reason and a human message."""

    type: str = Field(description="Condition type, e.g. Planned, Converted, Propagated, Ready, Degraded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase machine-readable reason for the last transition.")
    message: str = Field(default="", description="Human-readable explanation a user can act on.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was computed from."
    )
    last_transition_time: datetime | None = Field(default=None, description="When the status last changed.")


class Precision(StrEnum):
    """Numeric formats a model can be served in, best quality first for the 16-bit ones."""

    FP8 = "fp8"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
    INT4 = "int4"


class PrecisionChoice(StrEnum):
    AUTO = "auto"
    FP8 = "fp8"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"
    INT4 = "int4"


class CrdInfo(BaseModel):
    """How a top-level API model becomes a CustomResourceDefinition."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    categories: list[str]
    namespaced: bool
    printer_columns: list[dict[str, Any]]


class Resource(ApiModel):
    """A top-level custom resource: apiVersion/kind/metadata/spec/status."""

    crd: ClassVar[CrdInfo]

    api_version: str = Field(default="autoglm.io/v1alpha1", description="autoglm.io/v1alpha1")
    kind: str = Field(description="Object kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line: each field's path and what is wrong with it (`spec.placement.weights: ...`)."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
