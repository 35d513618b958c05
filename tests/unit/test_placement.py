"""Placement across member clusters: Karmada's semantics, capacity caps, failover windows, per-member plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autoglm.api import ModelDeploymentSpec
from autoglm.api.membercluster import Taint
from autoglm.core.backends import load_default_catalog
from autoglm.core.models import load_model_catalog, profile_for
from autoglm.core.placement import MemberView, candidates, capacity, divide, place, recheck_at
from autoglm.core.planner import Plan, plan
from tests.conftest import inventory_of, spec

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NODE_FILES = {"gpu": "nvidia-h100.yaml", "ascend": "huawei-ascend.yaml", "edge": "sophgo.yaml"}


def planner_for(s: ModelDeploymentSpec, files: dict[str, str] = NODE_FILES) -> Any:
    catalog = load_default_catalog()
    profile = profile_for(s.model, load_model_catalog())
    inventories = {name: inventory_of(f) for name, f in files.items()}

    def plan_for(member: str, replicas: int) -> Plan:
        wanted = s.model_copy(update={"replicas": s.replicas.model_copy(update={"min": replicas})})
        return plan(inventories[member], profile, catalog, wanted)

    return plan_for


def members(*names: str, **overrides: dict[str, Any]) -> list[MemberView]:
    return [MemberView(name=n, **overrides.get(n, {})) for n in names]


def test_divide_uses_largest_remainders_and_is_deterministic() -> None:
    assert divide(4, {"gpu": 3, "ascend": 1}) == {"gpu": 3, "ascend": 1}
    assert divide(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    # 7 by 5:3 -> 4.375 / 2.625: the larger remainder (b) takes the last replica.
    assert divide(7, {"a": 5, "b": 3}) == {"a": 4, "b": 3}
    assert divide(10, {"c": 1, "b": 1, "a": 1}) == divide(10, {"a": 1, "b": 1, "c": 1})


def test_divide_never_exceeds_a_limit_and_spills_to_members_with_room() -> None:
    assert divide(4, {"gpu": 3, "ascend": 1}, {"gpu": 1, "ascend": 10}) == {"gpu": 1, "ascend": 3}
    assert divide(9, {"a": 1, "b": 1, "c": 1}, {"a": 0, "b": 10, "c": 10}) == {"a": 0, "b": 5, "c": 4}
    # What nobody can hold stays unplaced.
    assert divide(5, {"a": 1, "b": 1}, {"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert divide(3, {"a": 0, "b": 0}) == {"a": 0, "b": 0}


def test_candidates_by_name_selector_and_readiness() -> None:
    s = spec(
        model={"name": "glm-4-9b-chat"},
        placement={
            "clusters": ["gpu", "ascend", "edge", "gone", "flaky", "down"],
            "clusterSelector": {"matchLabels": {"tier": "prod"}},
            "failover": {"tolerationSeconds": 60, "rebalanceSeconds": 120},
        },
    )
    prod = {"labels": {"tier": "prod"}}
    views = members(
        "gpu",
        "ascend",
        "edge",
        "flaky",
        "down",
        "other",
        gpu=prod,
        ascend={**prod, "ready": False, "since": NOW - timedelta(seconds=30)},
        edge={"labels": {"tier": "dev"}},
        flaky={**prod, "recovered": True, "since": NOW - timedelta(seconds=30)},
        down={**prod, "ready": False, "since": NOW - timedelta(seconds=90), "reason": "connection refused"},
        other=prod,
    )
    chosen, excluded = candidates(views, s, NOW)
    # NotReady within the toleration still counts: its replicas stay where they are until it runs out.
    assert [m.name for m in chosen] == ["ascend", "gpu"]
    assert excluded["edge"].startswith("labels do not match")
    assert excluded["other"] == "not in placement.clusters"
    assert excluded["gone"] == "no such member cluster"
    assert excluded["down"] == "NotReady for 90 s (toleration 60 s): connection refused"
    assert "replicas return after 120 s" in excluded["flaky"]
    # A member that only just joined (never down) is used at once.
    joined = members("gpu", gpu={**prod, "since": NOW - timedelta(seconds=1)})
    assert [m.name for m in candidates(joined, s.model_copy(update={"placement": s.placement}), NOW)[0]] == ["gpu"]


def test_candidates_by_region_and_zone() -> None:
    views = members(
        "bj-a",
        "bj-b",
        "sh-a",
        "nowhere",
        **{
            "bj-a": {"region": "cn-north", "zone": "cn-north-a"},
            "bj-b": {"region": "cn-north", "zone": "cn-north-b"},
            "sh-a": {"region": "cn-east", "zone": "cn-east-a"},
        },
    )
    north = spec(model={"name": "glm-4-9b-chat"}, placement={"regions": ["cn-north"]})
    chosen, excluded = candidates(views, north, NOW)
    assert [m.name for m in chosen] == ["bj-a", "bj-b"]
    assert excluded == {
        "nowhere": "region (none) not in placement.regions",
        "sh-a": "region cn-east not in placement.regions",
    }
    zone_b = spec(model={"name": "glm-4-9b-chat"}, placement={"regions": ["cn-north"], "zones": ["cn-north-b"]})
    chosen, excluded = candidates(views, zone_b, NOW)
    assert [m.name for m in chosen] == ["bj-b"]
    assert excluded["bj-a"] == "zone cn-north-a not in placement.zones"
    # Neither given: every member, whatever its region.
    assert len(candidates(views, spec(model={"name": "glm-4-9b-chat"}), NOW)[0]) == 4


def test_taints_keep_replicas_off_unless_tolerated_as_karmada_does() -> None:
    maintenance = Taint(key="maintenance", value="true", effect="NoSchedule")
    evicting = Taint(key="gpu-fault", effect="NoExecute")
    soft = Taint(key="expensive", value="yes", effect="PreferNoSchedule")
    views = members("a", "b", "c", "d", a={"taints": (maintenance,)}, b={"taints": (evicting,)}, c={"taints": (soft,)})

    def chosen(tolerations: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
        s = spec(model={"name": "glm-4-9b-chat"}, placement={"clusterTolerations": tolerations})
        found, excluded = candidates(views, s, NOW)
        return [m.name for m in found], excluded

    # PreferNoSchedule keeps nothing off (Karmada's TaintToleration filter reads NoSchedule and NoExecute only).
    assert chosen([]) == (
        ["c", "d"],
        {
            "a": "tainted maintenance=true:NoSchedule, not in placement.clusterTolerations",
            "b": "tainted gpu-fault:NoExecute, not in placement.clusterTolerations",
        },
    )
    assert chosen([{"key": "maintenance", "value": "true"}])[0] == ["a", "c", "d"]
    # Equal needs the value; the effect, when given, must match.
    assert chosen([{"key": "maintenance", "value": "false"}])[0] == ["c", "d"]
    assert chosen([{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}])[0] == ["c", "d"]
    assert chosen([{"key": "gpu-fault", "operator": "Exists", "effect": "NoExecute"}])[0] == ["b", "c", "d"]
    # An empty key with Exists tolerates every taint.
    assert chosen([{"operator": "Exists"}])[0] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("toleration", "problem"),
    [
        ({"key": "k", "operator": "Exists", "value": "v"}, "operator Exists takes no value"),
        ({"value": "v"}, "without a key must have operator Exists"),
        ({"key": "k", "effect": "Sometimes"}, "effect"),
    ],
)
def test_a_malformed_toleration_is_refused_with_its_problem(toleration: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        spec(model={"name": "glm-4-9b-chat"}, placement={"clusterTolerations": [toleration]})


def test_recheck_at_is_when_a_toleration_or_a_rebalance_window_ends() -> None:
    s = spec(
        model={"name": "glm-4-9b-chat"},
        placement={"failover": {"tolerationSeconds": 60, "rebalanceSeconds": 120}},
    )
    down = {"ready": False, "since": NOW - timedelta(seconds=30)}
    back = {"recovered": True, "since": NOW - timedelta(seconds=100)}
    # The down member's replicas fail over at +30 s; the recovered one's return at +20 s: the earlier wins.
    assert recheck_at(members("a", "b", a=down, b=back), s, NOW) == NOW + timedelta(seconds=20)
    assert recheck_at(members("a", a=down), s, NOW) == NOW + timedelta(seconds=30)
    # Past both windows, or a member that only joined (never down): nothing falls due.
    past = {"ready": False, "since": NOW - timedelta(seconds=61)}
    joined = {"since": NOW - timedelta(seconds=5)}
    assert recheck_at(members("a", "b", a=past, b=joined), s, NOW) is None
    fleet = place(members("gpu", gpu=back), s, planner_for(s), NOW)
    assert fleet.recheck_at == NOW + timedelta(seconds=20)


def test_divided_three_to_one_gives_each_member_its_own_runtime() -> None:
    s = spec(
        model={"name": "glm-4-9b-chat"},
        replicas={"min": 4, "max": 8},
        placement={
            "clusters": ["gpu", "ascend"],
            "weights": {"static": [{"cluster": "gpu", "weight": 3}, {"cluster": "ascend", "weight": 1}]},
        },
    )
    fleet = place(members("gpu", "ascend", "edge"), s, planner_for(s), NOW)
    gpu, ascend = fleet.share("gpu"), fleet.share("ascend")
    assert gpu is not None and ascend is not None and fleet.share("edge") is None
    assert (gpu.replicas, ascend.replicas, fleet.unschedulable) == (3, 1, 0)
    assert (gpu.max_replicas, ascend.max_replicas) == (6, 2)
    assert gpu.plan is not None and gpu.plan.primary is not None and ascend.plan is not None
    assert ascend.plan.primary is not None
    assert (gpu.plan.primary.backend, gpu.plan.primary.precision.value) == ("vllm-cuda", "fp8")
    assert (ascend.plan.primary.backend, ascend.plan.primary.precision.value) == ("vllm-ascend", "bf16")
    assert sum(a.replicas for a in gpu.plan.assignments) == 3
    assert sum(a.replicas for a in ascend.plan.assignments) == 1
    assert fleet.summary == "ascend: 1x vllm-ascend bf16 TP=1; gpu: 3x vllm-cuda fp8 TP=1"


def test_static_weights_leave_unlisted_members_out_unless_none_is_a_candidate() -> None:
    s = spec(
        model={"name": "glm-4-9b-chat"},
        replicas={"min": 4, "max": 4},
        placement={"weights": {"static": [{"cluster": "gpu", "weight": 1}]}},
    )
    fleet = place(members("gpu", "ascend"), s, planner_for(s), NOW)
    assert {x.name: x.replicas for x in fleet.shares} == {"gpu": 4, "ascend": 0}
    # gpu gone for good: as in Karmada, an all-zero weight list weighs every candidate the same.
    gone = members("gpu", "ascend", gpu={"ready": False, "since": NOW - timedelta(hours=1)})
    fleet = place(gone, s, planner_for(s), NOW)
    assert {x.name: x.replicas for x in fleet.shares} == {"ascend": 4}
    assert "NotReady" in fleet.excluded["gpu"]


def test_duplicated_runs_the_full_count_where_it_fits() -> None:
    s = spec(
        model={"name": "glm-4-9b-chat"}, replicas={"min": 7, "max": 8}, placement={"replicaScheduling": "Duplicated"}
    )
    fleet = place(members("gpu", "ascend", "edge"), s, planner_for(s), NOW)
    assert {x.name: (x.replicas, x.max_replicas) for x in fleet.shares} == {
        "ascend": (7, 8),
        "edge": (6, 8),
        "gpu": (7, 8),
    }
    assert fleet.unschedulable == 1
    edge = fleet.share("edge")
    assert edge is not None and any("holds only 6 of the 7" in r for r in edge.reasons)


def test_dynamic_weights_follow_what_each_member_can_hold() -> None:
    s = spec(
        model={"name": "glm-4-9b-chat"},
        replicas={"min": 11, "max": 11},
        placement={"weights": {"dynamic": "FreeAccelerators"}},
    )
    plan_for = planner_for(s)
    fleet = place(members("gpu", "ascend", "edge"), s, plan_for, NOW)
    caps = {name: capacity(plan_for(name, 11)) for name in NODE_FILES}
    assert caps == {"gpu": 16, "ascend": 26, "edge": 6}
    shares = {x.name: x.replicas for x in fleet.shares}
    assert sum(shares.values()) == 11 and shares["ascend"] > shares["gpu"] > shares["edge"]
    assert shares == divide(11, {k: float(v) for k, v in caps.items()}, caps)


def test_a_member_that_cannot_hold_its_share_spills_and_the_rest_is_unschedulable() -> None:
    s = spec(
        model={"name": "glm-4-9b-chat"},
        replicas={"min": 8, "max": 8},
        placement={"clusters": ["edge"], "weights": {"static": [{"cluster": "edge", "weight": 1}]}},
    )
    fleet = place(members("edge"), s, planner_for(s), NOW)
    edge = fleet.share("edge")
    assert edge is not None and (edge.replicas, fleet.unschedulable) == (6, 2)
    assert fleet.summary.endswith("2 unschedulable")


@pytest.mark.parametrize("order", [("gpu", "ascend", "edge"), ("edge", "ascend", "gpu")])
def test_placement_does_not_depend_on_member_order(order: tuple[str, ...]) -> None:
    s = spec(model={"name": "glm-4-9b-chat"}, replicas={"min": 5, "max": 5})
    fleet = place(members(*order), s, planner_for(s), NOW)
    assert [(x.name, x.replicas) for x in fleet.shares] == [("ascend", 2), ("edge", 2), ("gpu", 1)]


def test_ties_keep_replicas_where_they_were() -> None:
    s = spec(model={"name": "glm-4-9b-chat"}, replicas={"min": 5, "max": 5})
    fleet = place(members("gpu", "ascend", "edge"), s, planner_for(s), NOW, previous={"gpu": 2, "ascend": 2, "edge": 1})
    assert [(x.name, x.replicas) for x in fleet.shares] == [("ascend", 2), ("edge", 1), ("gpu", 2)]


def test_cpu_fallback_is_fleet_wide_not_per_member() -> None:
    s = spec(model={"name": "glm-4-9b-chat"}, replicas={"min": 4, "max": 4})
    files = {"gpu": "nvidia-h100.yaml", "cpus": "cpu.yaml"}
    fleet = place(members("gpu", "cpus"), s, planner_for(s, files), NOW)
    cpus = fleet.share("cpus")
    assert {x.name: x.replicas for x in fleet.shares} == {"cpus": 0, "gpu": 4}
    assert cpus is not None and any("only on CPU" in r for r in cpus.reasons)
    # With no accelerator anywhere, the CPU member serves (fallbackPolicy cpu).
    alone = place(members("cpus"), s, planner_for(s, files), NOW)
    assert alone.placed == 3 and alone.shares[0].plan is not None and alone.shares[0].plan.fallback


def test_a_forecast_floor_is_split_over_members_by_the_placements_rule_and_each_hpa_gets_its_share() -> None:
    """Issue 13 §3 across members: the forecast is of the deployment's total load; its floor becomes the
    deployment's minimum, placement divides it (here by what each member's own plan can hold), and each
    member's HPA gets its share as minReplicas. One member is the same code with one share."""
    from autoglm.api import ModelDeployment
    from autoglm.api.modeldeployment import ForecastStatus
    from autoglm.core.forecast.decision import with_floor
    from autoglm.core.render import serving_objects

    s = spec(
        model={"name": "glm-4-9b-chat"},
        replicas={"min": 2, "max": 20},
        autoscaling={"forecast": {"enabled": True}},
        placement={"weights": {"dynamic": "FreeAccelerators"}},
    )
    floored = with_floor(s, ForecastStatus(floor=11))
    assert floored.replicas.min == 11
    plan_for = planner_for(floored)
    fleet = place(members("gpu", "ascend"), floored, plan_for, NOW)
    shares = {x.name: x.replicas for x in fleet.shares}
    caps = {name: capacity(plan_for(name, 11)) for name in ("gpu", "ascend")}
    assert sum(shares.values()) == 11 and shares == divide(11, {k: float(v) for k, v in caps.items()}, caps)
    runtimes = {b.metadata.name: b for b in load_default_catalog()}
    md = ModelDeployment.model_validate({"metadata": {"name": "glm", "namespace": "default"}, "spec": floored})
    for share in fleet.shares:
        assert share.plan is not None
        (hpa,) = [o for o in serving_objects(md, share.plan, runtimes) if o["kind"] == "HorizontalPodAutoscaler"]
        assert hpa["spec"]["minReplicas"] == shares[share.name]
    alone = place(members("gpu"), floored, planner_for(floored, {"gpu": "nvidia-h100.yaml"}), NOW)
    assert [x.replicas for x in alone.shares] == [11]
