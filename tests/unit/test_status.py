"""Status conditions and the Events they deserve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autoglm.api.common import Condition, ConditionStatus
from autoglm.api.modeldeployment import ForecastStatus
from autoglm.core.backends import load_default_catalog
from autoglm.core.models import profile_for
from autoglm.core.planner import plan
from autoglm.core.status import (
    ConversionState,
    FleetOutcome,
    MemberOutcome,
    Observed,
    condition_events,
    desired_status,
    set_condition,
    waits_for_capacity,
)
from tests.conftest import inventory_of, spec

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def _plan(**fields):
    s = spec(model={"name": "glm-4-9b-chat"}, **fields)
    return plan(inventory_of("nvidia-h100.yaml"), profile_for(s.model), load_default_catalog(), s)


def _local(p, observed: Observed | None = None, error: str | None = None) -> FleetOutcome:
    """The host alone (member local), as the single-cluster operator runs."""
    return FleetOutcome([MemberOutcome("local", p, observed or Observed(), error)], summary=p.summary if p else "")


def test_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition([], "Ready", ConditionStatus.FALSE, "ReplicasNotReady", "0/1", 1, T0)
    same = set_condition(first, "Ready", ConditionStatus.FALSE, "ReplicasNotReady", "0/1 still", 1, T1)
    assert same[0].last_transition_time == T0 and same[0].message == "0/1 still"
    flipped = set_condition(same, "Ready", ConditionStatus.TRUE, "ReplicasReady", "1/1", 1, T1)
    assert flipped[0].last_transition_time == T1


def test_status_is_stable_when_nothing_changes() -> None:
    p = _plan()
    fleet = _local(p, Observed(ready_replicas=1, replicas=1))
    first = desired_status(None, 3, fleet, T0, inputs_hash="a", plan_hash="b")
    second = desired_status(first, 3, fleet, T1, inputs_hash="a", plan_hash="b")
    assert first == second
    assert (first.backend, first.precision, first.tensor_parallel, first.ready_replicas) == ("vllm-cuda", "fp8", 1, 1)
    assert [c.type for c in first.conditions] == ["Planned", "Converted", "Propagated", "Ready", "Degraded"]
    assert [(c.name, c.desired, c.ready) for c in first.clusters] == [("local", 1, 1)]


def test_conditions_for_conversion_states() -> None:
    p = _plan()
    running = desired_status(None, 1, _local(p, Observed(conversions=[ConversionState("k", "job-k", "Running")])), T0)
    converted = {c.type: c for c in running.conditions}["Converted"]
    assert (converted.status, converted.reason) == (ConditionStatus.FALSE, "Converting")
    failed = desired_status(
        running,
        1,
        _local(p, Observed(conversions=[ConversionState("k", "job-k", "Failed", "BackoffLimitExceeded")])),
        T1,
    )
    by_type = {c.type: c for c in failed.conditions}
    assert by_type["Converted"].reason == "ConversionFailed" and "BackoffLimitExceeded" in by_type["Converted"].message
    assert by_type["Degraded"].status is ConditionStatus.TRUE


def test_invalid_spec_and_unplaceable() -> None:
    invalid = desired_status(None, 1, None, T0, invalid="model 'x' is not in the built-in catalog")
    planned = {c.type: c for c in invalid.conditions}["Planned"]
    assert (planned.status, planned.reason) == (ConditionStatus.FALSE, "InvalidSpec")
    unplaceable = desired_status(None, 1, _local(_plan(backend="mindie-om")), T0)
    assert {c.type: c for c in unplaceable.conditions}["Planned"].reason == "Unplaceable"
    assert unplaceable.plan == [] and unplaceable.backend is None


def test_events_only_for_transitions() -> None:
    p = _plan()
    start = desired_status(None, 1, _local(p, Observed(ready_replicas=0, replicas=1)), T0)
    first = condition_events([], start.conditions)
    assert ("Normal", "Planned") in [(t, r) for t, r, _ in first]
    assert all(r != "ReplicasNotReady" for _, r, _ in first)  # progress is not news
    assert all(r != "AsPlanned" for _, r, _ in first)
    ready = desired_status(start, 1, _local(p, Observed(ready_replicas=1, replicas=1)), T1)
    assert [(t, r) for t, r, _ in condition_events(start.conditions, ready.conditions)] == [("Normal", "ReplicasReady")]
    assert condition_events(ready.conditions, ready.conditions) == []


def test_members_aggregate_and_a_failing_member_is_named() -> None:
    gpu, ascend = _plan(replicas={"min": 3, "max": 3}), _plan()
    fleet = FleetOutcome(
        [
            MemberOutcome("gpu", gpu, Observed(ready_replicas=3, replicas=3)),
            MemberOutcome(
                "ascend",
                ascend,
                Observed(ready_replicas=0, replicas=1),
                error="unreachable for 13 s: connection refused",
            ),
            MemberOutcome(
                "edge", None, error="unreachable: connection refused; its objects are removed once it is back"
            ),
        ],
        wanted=5,
        unschedulable=1,
        summary="gpu: 3x; ascend: 1x",
    )
    status = desired_status(None, 2, fleet, T0)
    by_type = {c.type: c for c in status.conditions}
    assert (by_type["Propagated"].status, by_type["Propagated"].reason) == (ConditionStatus.FALSE, "PropagationFailed")
    propagated = by_type["Propagated"].message
    assert "ascend unreachable for 13 s: connection refused" in propagated and "edge unreachable:" in propagated
    assert "ascend unreachable for 13 s: connection refused" in by_type["Degraded"].message
    assert (status.replicas, status.ready_replicas, status.cluster_count) == (4, 3, 2)
    assert [(c.name, c.desired, c.ready) for c in status.clusters] == [("ascend", 1, 0), ("edge", 0, 0), ("gpu", 3, 3)]
    assert {e.cluster for e in status.plan} == {"gpu", "ascend"}
    assert status.backend == "vllm-cuda"  # the member serving the most replicas
    assert "1 of 5 replicas fit on no member" in by_type["Degraded"].message
    assert (by_type["Planned"].status, by_type["Planned"].reason) == (ConditionStatus.TRUE, "PartiallyPlaced")


def _stored(spec_: dict[str, object], planned: tuple[str, str] | None) -> dict[str, object]:
    conditions = [{"type": "Planned", "status": planned[0], "reason": planned[1]}] if planned else []
    return {"metadata": {"name": "m"}, "spec": spec_, "status": {"conditions": conditions}}


def test_waits_for_capacity_only_where_free_devices_can_change_the_placement() -> None:
    plain = {"model": {"name": "glm-4-9b-chat"}}
    dynamic = {**plain, "placement": {"weights": {"dynamic": "FreeAccelerators"}}}
    assert waits_for_capacity(_stored(plain, None))  # not reconciled yet
    assert waits_for_capacity(_stored(plain, ("False", "Unplaceable")))
    assert waits_for_capacity(_stored(plain, ("True", "PartiallyPlaced")))
    assert waits_for_capacity(_stored(plain, ("True", "CPUFallback")))
    assert waits_for_capacity(_stored(dynamic, ("True", "Planned")))  # its split follows what members hold
    # Placed in full on devices that stay its own, or invalid whatever the devices: no news to it.
    assert not waits_for_capacity(_stored(plain, ("True", "Planned")))
    assert not waits_for_capacity(_stored(plain, ("False", "InvalidSpec")))


def test_the_forecasting_condition_and_status_are_the_scalers_and_go_when_forecasting_is_off() -> None:
    fleet = _local(_plan(), Observed(ready_replicas=1, replicas=1))
    scaled = desired_status(None, 1, fleet, T0).model_copy(
        update={
            "forecast": ForecastStatus(floor=4),
            "conditions": [
                *desired_status(None, 1, fleet, T0).conditions,
                Condition(type="Forecasting", status=ConditionStatus.TRUE, reason="Forecasting", message="ridge"),
            ],
        }
    )
    kept = desired_status(scaled, 1, fleet, T1, forecast_enabled=True)
    assert kept.forecast == ForecastStatus(floor=4) and "Forecasting" in [c.type for c in kept.conditions]
    off = desired_status(scaled, 2, fleet, T1)
    assert off.forecast is None and "Forecasting" not in [c.type for c in off.conditions]


def test_an_invalid_spec_keeps_the_artifacts_in_use_so_deletion_still_releases_them() -> None:
    # What ran keeps running (an invalid spec changes nothing on the members) and keeps using its artifacts.
    before = desired_status(None, 1, _local(_plan()), T0).model_copy(update={"artifacts": ["glm-trt-bf16-sm90"]})
    invalid = desired_status(before, 2, None, T1, invalid="spec.placement.weights: every weight is 0")
    assert invalid.artifacts == ["glm-trt-bf16-sm90"]
    assert next(c for c in invalid.conditions if c.type == "Planned").reason == "InvalidSpec"
    # A valid plan again says what it uses now.
    assert desired_status(invalid, 3, _local(_plan()), T1).artifacts == []
