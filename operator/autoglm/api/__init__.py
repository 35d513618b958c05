"""The autoglm.io/v1alpha1 API as pydantic models; the CRDs in crds/ are generated from these."""

from autoglm.api.backendruntime import BackendRuntime, BackendRuntimeSpec
from autoglm.api.common import Condition, ConditionStatus, ObjectMeta, Precision, PrecisionChoice, Resource
from autoglm.api.membercluster import MemberCluster, MemberClusterSpec
from autoglm.api.modeldeployment import (
    ModelArchitecture,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    PlanEntry,
)

RESOURCES: tuple[type[Resource], ...] = (ModelDeployment, BackendRuntime, MemberCluster)

__all__ = [
    "RESOURCES",
    "BackendRuntime",
    "BackendRuntimeSpec",
    "Condition",
    "ConditionStatus",
    "MemberCluster",
    "MemberClusterSpec",
    "ModelArchitecture",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ObjectMeta",
    "PlanEntry",
    "Precision",
    "PrecisionChoice",
    "Resource",
]
