"""spec.template and spec.model.credentialsSecret: what a platform team adds reaches every serving pod, merged
with the plan's choices (never instead of them), and the pods stay valid Kubernetes objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from autoglm.api import BackendRuntime, ModelDeployment
from autoglm.api.podtemplate import CREDENTIAL_KEYS
from autoglm.core.models import profile_for
from autoglm.core.placement import fleet_plan, member_spec
from autoglm.core.planner import plan
from autoglm.core.render import conversion_job, serving_objects, template_hash
from tests.conftest import inventory_of
from tests.unit.test_render import RUNTIMES, _by_kind, _md, _plan, _validate

TEMPLATE: dict[str, Any] = {
    "labels": {"team": "search", "cost-center": "4711"},
    "annotations": {"sidecar.istio.io/inject": "true"},
    "nodeSelector": {"pool": "inference", "nvidia.com/gpu.product": "SOMETHING-ELSE"},
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]
            }
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"team": "search"}},
                    },
                }
            ]
        },
    },
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
    "imagePullSecrets": ["registry-cred"],
    "serviceAccountName": "llm-serving",
    "priorityClassName": "inference-high",
    "schedulerName": "volcano",
    "runtimeClassName": "nvidia",
    "securityContext": {"fsGroup": 1000},
    "containerSecurityContext": {"allowPrivilegeEscalation": False},
    "env": [
        {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "token"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "proxy-settings"}}],
    "volumes": [{"name": "certs", "secret": {"secretName": "corp-ca"}}],
    "volumeMounts": [{"name": "certs", "mountPath": "/etc/ssl/corp", "readOnly": True}],
    "resources": {"requests": {"cpu": "12", "memory": "96Gi"}, "limits": {"memory": "128Gi"}},
}


def _pod(md: ModelDeployment, nodes: str = "nvidia-h100.yaml") -> tuple[dict[str, Any], dict[str, Any]]:
    objects = serving_objects(md, _plan(md, nodes), RUNTIMES)
    _validate(objects)
    (deployment,) = _by_kind(objects, "Deployment")
    template = deployment["spec"]["template"]
    return template["metadata"], template["spec"]


def test_the_template_reaches_the_pod_merged_with_the_plans_choices() -> None:
    plain_meta, plain = _pod(_md())
    meta, pod = _pod(_md(template=TEMPLATE))
    server = pod["containers"][0]
    # Scheduling: the plan's accelerator selection kept on a key both give; the user's keys added.
    assert pod["nodeSelector"] == {**plain["nodeSelector"], "pool": "inference"}
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] != "SOMETHING-ELSE"
    assert pod["tolerations"] == [*plain["tolerations"], TEMPLATE["tolerations"][0]]
    assert pod["affinity"]["podAntiAffinity"] == TEMPLATE["affinity"]["podAntiAffinity"]
    assert pod["affinity"]["nodeAffinity"] == TEMPLATE["affinity"]["nodeAffinity"]  # the GPU plan has none
    assert (pod["schedulerName"], pod["priorityClassName"], pod["runtimeClassName"]) == (
        "volcano",
        "inference-high",
        "nvidia",
    )
    assert pod["serviceAccountName"] == "llm-serving" and pod["imagePullSecrets"] == [{"name": "registry-cred"}]
    assert pod["securityContext"] == {"fsGroup": 1000}
    assert server["securityContext"] == {"allowPrivilegeEscalation": False}
    # The server container: env added (a Secret's value by reference), mounts added, host resources replaced,
    # the devices the plan asked for kept.
    env = {e["name"]: e for e in server["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "wandb", "key": "token"}}
    assert env["VLLM_LOGGING_LEVEL"]["value"] == "DEBUG" and "HF_HOME" in env
    assert server["envFrom"] == [{"configMapRef": {"name": "proxy-settings"}}]
    assert {"name": "certs", "mountPath": "/etc/ssl/corp", "readOnly": True} in server["volumeMounts"]
    assert {"name": "certs", "secret": {"secretName": "corp-ca"}} in pod["volumes"]
    assert server["resources"]["requests"] == {"nvidia.com/gpu": "1", "cpu": "12", "memory": "96Gi"}
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "128Gi"}
    # Labels: the user's beside the operator's, which the selector needs; annotations added.
    assert meta["labels"] == {**TEMPLATE["labels"], **plain_meta["labels"]}
    assert meta["annotations"]["sidecar.istio.io/inject"] == "true"


def test_required_node_terms_are_anded_with_the_plans_on_cpu_pools() -> None:
    """A CPU pool pins its nodes by a required term; the user's term must hold as well, not instead."""
    cpu = {"model": {"name": "glm-4-9b-chat"}, "resources": {"contextLength": 4096, "maxConcurrentSequences": 2}}
    plain = _pod(_md(**cpu), "cpu.yaml")[1]
    (plan_term,) = plain["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    pod = _pod(_md(**cpu, template={"affinity": TEMPLATE["affinity"]}), "cpu.yaml")[1]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    user = TEMPLATE["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["matchExpressions"] == [
        *plan_term["matchExpressions"],
        *user["nodeSelectorTerms"][0]["matchExpressions"],
    ]


def test_the_credentials_secret_reaches_every_container_that_downloads_never_in_plaintext() -> None:
    md = _md(model={"name": "chatglm3-6b", "credentialsSecret": "hf-token"}, backend="tensorrt-llm", precision="bf16")
    p = _plan(md, "nvidia-h100.yaml")
    job = conversion_job(md, p.assignments[0].option)
    assert job is not None
    (deployment,) = _by_kind(serving_objects(md, p, RUNTIMES), "Deployment")
    for container in (
        deployment["spec"]["template"]["spec"]["containers"][0],
        job["spec"]["template"]["spec"]["containers"][0],
    ):
        env = {e["name"]: e for e in container["env"]}
        for key in CREDENTIAL_KEYS:
            assert env[key] == {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": key, "optional": True}},
            }
            assert "value" not in env[key]
    # Without a Secret: no credential variables at all.
    plain = _md()
    (deployment,) = _by_kind(serving_objects(plain, _plan(plain, "nvidia-h100.yaml"), RUNTIMES), "Deployment")
    assert not {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]} & set(
        CREDENTIAL_KEYS
    )


def test_the_conversion_job_pulls_with_the_templates_secrets() -> None:
    md = _md(
        model={"name": "chatglm3-6b"},
        backend="tensorrt-llm",
        precision="bf16",
        template={"imagePullSecrets": ["mirror"]},
    )
    job = conversion_job(md, _plan(md, "nvidia-h100.yaml").assignments[0].option)
    assert job is not None and job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "mirror"}]
    _validate([job])


def test_each_member_gets_its_own_override_over_the_shared_template() -> None:
    spec = _md(
        template={"imagePullSecrets": ["shared"], "labels": {"team": "search"}},
        placement={
            "replicaScheduling": "Duplicated",
            "memberOverrides": [
                {
                    "cluster": "ascend",
                    "template": {
                        "imagePullSecrets": ["ascend-registry"],
                        "tolerations": [{"key": "huawei.com/npu-maintenance", "operator": "Exists"}],
                        "labels": {"team": "search-cn"},
                    },
                }
            ],
        },
    ).spec
    assert member_spec(spec, "gpu") is spec
    ascend = member_spec(spec, "ascend").template
    assert ascend.image_pull_secrets == ["shared", "ascend-registry"] and ascend.labels == {"team": "search-cn"}
    # The share given, every plan made for the member (placement's, a re-plan after a failed conversion, the
    # rollout's room check) asks for it with the member's template.
    shared = member_spec(spec, "ascend", 3)
    assert shared.replicas.min == 3 and shared.template == member_spec(spec, "ascend").template
    fleet = fleet_plan(
        {"gpu": inventory_of("nvidia-h100.yaml"), "ascend": inventory_of("huawei-ascend.yaml")},
        {},
        profile_for(spec.model),
        list(RUNTIMES.values()),
        spec,
        "glm",
        datetime(2026, 12, 4, tzinfo=UTC),
    )
    secrets = {}
    for share in fleet.serving:
        assert share.plan is not None
        md = _md(**spec.model_dump(by_alias=True, exclude_none=True))
        (deployment,) = _by_kind(serving_objects(md, share.plan, RUNTIMES), "Deployment")
        secrets[share.name] = deployment["spec"]["template"]["spec"]["imagePullSecrets"]
    assert secrets == {
        "gpu": [{"name": "shared"}],
        "ascend": [{"name": "shared"}, {"name": "ascend-registry"}],
    }


def test_a_template_change_is_a_new_revision_and_no_template_changes_nothing() -> None:
    plain = _plan(_md(), "nvidia-h100.yaml").assignments[0].option
    empty = _plan(_md(template={}), "nvidia-h100.yaml").assignments[0].option
    labelled = _plan(_md(template={"labels": {"team": "x"}}), "nvidia-h100.yaml").assignments[0].option
    assert empty.pod_template is None and template_hash(empty) == template_hash(plain)
    assert template_hash(labelled) != template_hash(plain)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ({"resources": {"requests": {"nvidia.com/gpu": "8"}}}, "the plan sets the accelerators"),
        ({"volumeMounts": [{"name": "nowhere", "mountPath": "/x"}]}, "named in no template.volumes entry"),
        ({"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}, "not both"),
        ({"env": [{"name": "A", "valueFrom": {}}]}, "exactly one of secretKeyRef"),
        ({"envFrom": [{}]}, "exactly one of secretRef, configMapRef"),
        ({"tolerations": [{"key": "k", "effect": "Sometimes"}]}, "effect"),
    ],
)
def test_a_wrong_template_is_refused_naming_the_field(template: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as exc:
        _md(template=template)
    assert any(e["loc"][:2] == ("spec", "template") for e in exc.value.errors())


def test_a_runtimes_env_may_come_from_a_secret_instead_of_a_value_in_the_cluster_scoped_object() -> None:
    vllm = RUNTIMES["vllm-cuda"]
    env = [
        *vllm.spec.env,
        {"name": "MODELSCOPE_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "modelscope", "key": "token"}}},
    ]
    runtime = BackendRuntime.model_validate(
        {
            **vllm.model_dump(by_alias=True, exclude_none=True),
            "spec": {**vllm.spec.model_dump(by_alias=True, exclude_none=True), "env": env},
        }
    )
    md = _md()
    p = plan(inventory_of("nvidia-h100.yaml"), profile_for(md.spec.model), [runtime], md.spec, served_name="glm")
    (deployment,) = _by_kind(serving_objects(md, p, {runtime.metadata.name: runtime}), "Deployment")
    _validate([deployment])
    found = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert found["MODELSCOPE_API_TOKEN"] == {
        "name": "MODELSCOPE_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "modelscope", "key": "token"}},
    }
    assert all("value" in found[e.name] for e in vllm.spec.env)  # the literal ones as before
    with pytest.raises(ValidationError, match="value or valueFrom, not both"):
        BackendRuntime.model_validate(
            {
                **vllm.model_dump(by_alias=True, exclude_none=True),
                "spec": {
                    **vllm.spec.model_dump(by_alias=True, exclude_none=True),
                    "env": [{"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                },
            }
        )
