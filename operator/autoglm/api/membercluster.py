"""MemberCluster: a cluster the operator places replicas on; the host cluster is always member `local`."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from autoglm.api.common import ApiModel, Condition, CrdInfo, Resource


class SecretKeyRef(ApiModel):
    name: str = Field(min_length=1, description="Secret name.")
    namespace: str = Field(default="autoglm-system", description="Secret namespace.")
    key: str = Field(default="kubeconfig", description="Key holding the kubeconfig.")


class Taint(ApiModel):
    key: str = Field(min_length=1, description="Taint key.")
    value: str = Field(default="", description="Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(description="Taint effect.")


class MemberClusterSpec(ApiModel):
    kubeconfig_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Kubeconfig of the member; absent for the host cluster (local)."
    )
    region: str | None = Field(
        default=None, description="The member's region, matched by a ModelDeployment's placement.regions."
    )
    zone: str | None = Field(default=None, description="The member's zone, matched by placement.zones.")
    taints: list[Taint] = Field(
        default_factory=list,
        description="NoSchedule and NoExecute taints keep a ModelDeployment's replicas off the member unless its "
        "placement.clusterTolerations tolerate them; PreferNoSchedule does not (as in Karmada's scheduler).",
    )


class AcceleratorCapacity(ApiModel):
    accelerator: str = Field(description="Accelerator product.")
    free: int = Field(ge=0, description="Devices free.")
    total: int = Field(ge=0, description="Devices in total.")


class MemberClusterStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list, description="Ready and friends.")
    last_heartbeat: datetime | None = Field(default=None, description="Last successful contact.")
    capacity: list[AcceleratorCapacity] = Field(default_factory=list, description="Capacity summary.")


class MemberCluster(Resource):
    """MemberCluster is a Kubernetes cluster the operator places model replicas on."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="MemberCluster",
        plural="memberclusters",
        singular="membercluster",
        short_names=["mc", "member"],
        categories=["autoglm"],
        namespaced=False,
        printer_columns=[
            {"name": "Region", "type": "string", "jsonPath": ".spec.region"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )

    kind: Literal["MemberCluster"] = Field(default="MemberCluster", description="MemberCluster")
    spec: MemberClusterSpec = Field(default_factory=MemberClusterSpec, description="Member definition.")
    status: MemberClusterStatus | None = Field(default=None, description="Observed state.")
