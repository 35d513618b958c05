"""Karmada mode's objects (core.karmada, pure): the optional kinds go to the members that serve them, each with
its own runtime's spec."""

from __future__ import annotations

from typing import Any

from autoglm.core.karmada import (
    MemberPart,
    claim_override_classes,
    claim_override_storage,
    member_apply_failure,
    propagation_objects,
    shared_claim_override,
    shared_name,
    shared_policy,
)
from tests.unit.test_render import RUNTIMES, _md, _plan

POOL = ("inference.networking.k8s.io/v1", "InferencePool")


def _parts() -> tuple[Any, list[MemberPart]]:
    md = _md(replicas={"min": 1, "max": 1}, expose={"inferencePool": {"endpointPicker": "epp"}})
    members = {"gpu": "nvidia-h100.yaml", "ascend": "huawei-ascend.yaml", "edge": "cpu.yaml"}
    return md, [MemberPart(name, _plan(md, nodes)) for name, nodes in members.items()]


def _policies(objects: list[Any], kind: str, selecting: str) -> list[Any]:
    """The policies of `kind` (PropagationPolicy, OverridePolicy) that select objects of kind `selecting`."""
    return [o for o in objects if o["kind"] == kind and o["spec"]["resourceSelectors"][0]["kind"] == selecting]


def _rules(objects: list[Any], selecting: str) -> dict[str, Any]:
    """Member -> its override rule, from the OverridePolicies of the objects of kind `selecting`."""
    overrides = _policies(objects, "OverridePolicy", selecting)
    return {r["targetCluster"]["clusterNames"][0]: r for o in overrides for r in o["spec"]["overrideRules"]}


def _http_port(part: MemberPart) -> int:
    ports = RUNTIMES[part.plan.assignments[0].option.backend].spec.ports
    return next(p.container_port for p in ports if p.name == "http")


def test_the_inference_pool_goes_to_the_members_that_serve_it_each_with_its_runtimes_port() -> None:
    md, parts = _parts()
    assert len({_http_port(p) for p in parts}) > 1, "the members' runtimes should listen on different ports"
    serving = {"gpu": {POOL}, "edge": {POOL}, "ascend": set()}
    objects = propagation_objects(md, parts, RUNTIMES, serving)
    (pool,) = [o for o in objects if o["kind"] == "InferencePool"]
    (policy,) = _policies(objects, "PropagationPolicy", "InferencePool")
    assert sorted(policy["spec"]["placement"]["clusterAffinity"]["clusterNames"]) == ["edge", "gpu"]
    rules = _rules(objects, "InferencePool")
    for part in parts:
        if part.cluster == "ascend":
            continue
        rule = rules.get(part.cluster)
        spec = rule["overriders"]["plaintext"][0]["value"] if rule else pool["spec"]
        assert spec["targetPorts"] == [{"number": _http_port(part)}], part.cluster
        assert spec["endpointPickerRef"]["name"] == "epp"


def test_no_member_serving_the_kind_means_no_pool_and_no_policy_for_it() -> None:
    md, parts = _parts()
    for serving in (None, {"gpu": set(), "edge": set(), "ascend": set()}):
        objects = propagation_objects(md, parts, RUNTIMES, serving)
        kinds = {o["kind"] for o in objects} | {
            s["kind"] for o in objects if o["kind"].endswith("Policy") for s in o["spec"]["resourceSelectors"]
        }
        assert "InferencePool" not in kinds and "PodMonitor" not in kinds


def test_every_policy_carries_the_placements_cluster_tolerations_so_karmada_lets_a_tolerated_member_pass() -> None:
    tolerations = [{"key": "maintenance", "value": "true", "effect": "NoSchedule"}, {"operator": "Exists"}]
    md = _md(
        replicas={"min": 1, "max": 1},
        placement={"clusterTolerations": tolerations},
        expose={"inferencePool": {"endpointPicker": "epp"}},
    )
    parts = [MemberPart(n, _plan(md, f)) for n, f in {"gpu": "nvidia-h100.yaml", "edge": "cpu.yaml"}.items()]
    policies = [
        o for o in propagation_objects(md, parts, RUNTIMES, {"gpu": {POOL}}) if o["kind"] == "PropagationPolicy"
    ]
    assert len(policies) >= 3  # the workload's, the Service's, the pool's
    # corev1.Toleration's fields, empty ones left out (Karmada's default operator is Equal, as the API's).
    expected = [
        {"key": "maintenance", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
        {"operator": "Exists"},
    ]
    for policy in policies:
        assert policy["spec"]["placement"]["clusterTolerations"] == expected, policy["metadata"]["name"]
    # None asked for: none written.
    plain = _md(replicas={"min": 1, "max": 1})
    objects = propagation_objects(plain, [MemberPart("gpu", _plan(plain, "nvidia-h100.yaml"))], RUNTIMES)
    assert all("clusterTolerations" not in o["spec"]["placement"] for o in objects if o["kind"] == "PropagationPolicy")
    shared = shared_policy(objects[0], ["gpu"], expected)
    assert shared["spec"]["placement"]["clusterTolerations"] == expected


def _split(floor: dict[str, int], ceiling: dict[str, int], forecast: bool = False) -> tuple[Any, list[MemberPart]]:
    total = {"min": sum(floor.values()), "max": sum(ceiling.values())}
    autoscaling = {"forecast": {"enabled": True, "capacityPerReplica": 10}} if forecast else {}
    md = _md(replicas=total, autoscaling=autoscaling)
    nodes = {"gpu": "nvidia-h100.yaml", "ascend": "huawei-ascend.yaml"}
    parts = [
        MemberPart(name, _plan(_md(replicas={"min": floor[name], "max": floor[name]}), nodes[name]), ceiling[name])
        for name in floor
    ]
    return md, parts


def test_each_member_serving_the_divided_template_gets_an_hpa_bounded_by_its_own_share() -> None:
    md, parts = _split({"gpu": 3, "ascend": 1}, {"gpu": 9, "ascend": 3})
    objects = propagation_objects(md, parts, RUNTIMES)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    # The HPA scales the template's Deployment; Karmada keeps what each member's HPA scaled it to.
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert deployment["metadata"]["labels"]["resourcetemplate.karmada.io/retain-replicas"] == "true"
    bounds = {"gpu": (3, 9), "ascend": (1, 3)}
    (policy,) = _policies(objects, "PropagationPolicy", "HorizontalPodAutoscaler")
    assert sorted(policy["spec"]["placement"]["clusterAffinity"]["clusterNames"]) == ["ascend", "gpu"]
    rules = _rules(objects, "HorizontalPodAutoscaler")
    for cluster, (low, high) in bounds.items():
        if cluster in rules:
            values = {op["path"]: op["value"] for op in rules[cluster]["overriders"]["plaintext"]}
            assert values == {"/spec/minReplicas": low, "/spec/maxReplicas": high}, cluster
        else:
            assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (low, high), cluster
    assert len(rules) == 1  # one member's bounds are the template's, the other's override them


def test_no_hpa_where_no_members_part_can_scale_and_a_forecasting_deployment_keeps_one() -> None:
    md, parts = _split({"gpu": 2, "ascend": 1}, {"gpu": 2, "ascend": 1})
    objects = propagation_objects(md, parts, RUNTIMES)
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert "resourcetemplate.karmada.io/retain-replicas" not in deployment["metadata"]["labels"]
    # The forecast's floor moves within the bounds: the HPA stays, as in direct mode.
    md, parts = _split({"gpu": 2, "ascend": 1}, {"gpu": 2, "ascend": 1}, forecast=True)
    assert [o for o in propagation_objects(md, parts, RUNTIMES) if o["kind"] == "HorizontalPodAutoscaler"]


def test_a_grown_cache_claim_reaches_every_member_by_a_shared_override_and_a_members_refusal_is_read_back() -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "autoglm-model-cache", "namespace": "llm"},
        "spec": {"resources": {"requests": {"storage": "40Gi"}}},
    }
    # Each member's own class written back: Karmada keeps only volumeName when it updates a member's claim.
    policy = shared_claim_override(claim, "200Gi", {"gpu": "fast", "ascend": "sandbox"})
    assert policy["kind"] == "OverridePolicy" and policy["metadata"]["name"] == shared_policy(claim, [])["metadata"][
        "name"
    ] == shared_name(claim)
    size, *classes = policy["spec"]["overrideRules"]
    assert "targetCluster" not in size  # every member the claim goes to
    assert [(c["targetCluster"]["clusterNames"], c["overriders"]["plaintext"]) for c in classes] == [
        (["ascend"], [{"path": "/spec/storageClassName", "operator": "add", "value": "sandbox"}]),
        (["gpu"], [{"path": "/spec/storageClassName", "operator": "add", "value": "fast"}]),
    ]
    assert claim_override_classes(policy) == {"gpu": "fast", "ascend": "sandbox"} and claim_override_classes(None) == {}
    assert policy["spec"]["resourceSelectors"] == [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "autoglm-model-cache", "namespace": "llm"}
    ]
    assert claim_override_storage(policy) == "200Gi" and claim_override_storage(None) is None
    binding = {
        "status": {
            "aggregatedStatus": [
                {"clusterName": "gpu", "applied": True},
                {  # as Karmada writes a failure: `applied` omitted, the message there
                    "clusterName": "ascend",
                    "appliedMessage": "Failed to apply all manifests (0/1):\n persistentvolumeclaims is forbidden",
                },
                {"clusterName": "edge"},  # not applied yet, not failed either
            ]
        }
    }
    assert member_apply_failure(binding, "gpu") is None and member_apply_failure(binding, "edge") is None
    assert (
        member_apply_failure(binding, "ascend")
        == "Failed to apply all manifests (0/1): persistentvolumeclaims is forbidden"
    )
