"""Status conditions and the Events they deserve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autoglm.api.common import ConditionStatus
from autoglm.core.backends import load_default_catalog
from autoglm.core.models import profile_for
from autoglm.core.planner import plan
from autoglm.core.status import ConversionState, Observed, condition_events, desired_status, set_condition
from tests.conftest import inventory_of, spec

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def _plan(**fields):
    s = spec(model={"name": "glm-4-9b-chat"}, **fields)
    return plan(inventory_of("nvidia-h100.yaml"), profile_for(s.model), load_default_catalog(), s)


def test_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition([], "Ready", ConditionStatus.FALSE, "ReplicasNotReady", "0/1", 1, T0)
    same = set_condition(first, "Ready", ConditionStatus.FALSE, "ReplicasNotReady", "0/1 still", 1, T1)
    assert same[0].last_transition_time == T0 and same[0].message == "0/1 still"
    flipped = set_condition(same, "Ready", ConditionStatus.TRUE, "ReplicasReady", "1/1", 1, T1)
    assert flipped[0].last_transition_time == T1


def test_status_is_stable_when_nothing_changes() -> None:
    p = _plan()
    observed = Observed(ready_replicas=1, replicas=1)
    first = desired_status(None, 3, p, observed, T0, inputs_hash="a", plan_hash="b")
    second = desired_status(first, 3, p, observed, T1, inputs_hash="a", plan_hash="b")
    assert first == second
    assert (first.backend, first.precision, first.tensor_parallel, first.ready_replicas) == ("vllm-cuda", "fp8", 1, 1)
    assert [c.type for c in first.conditions] == ["Planned", "Converted", "Ready", "Degraded"]


def test_conditions_for_conversion_states() -> None:
    p = _plan()
    running = desired_status(None, 1, p, Observed(conversions=[ConversionState("k", "job-k", "Running")]), T0)
    converted = {c.type: c for c in running.conditions}["Converted"]
    assert (converted.status, converted.reason) == (ConditionStatus.FALSE, "Converting")
    failed = desired_status(
        running, 1, p, Observed(conversions=[ConversionState("k", "job-k", "Failed", "BackoffLimitExceeded")]), T1
    )
    by_type = {c.type: c for c in failed.conditions}
    assert by_type["Converted"].reason == "ConversionFailed" and "BackoffLimitExceeded" in by_type["Converted"].message
    assert by_type["Degraded"].status is ConditionStatus.TRUE


def test_invalid_spec_and_unplaceable() -> None:
    invalid = desired_status(None, 1, None, Observed(), T0, invalid="model 'x' is not in the built-in catalog")
    planned = {c.type: c for c in invalid.conditions}["Planned"]
    assert (planned.status, planned.reason) == (ConditionStatus.FALSE, "InvalidSpec")
    unplaceable = desired_status(None, 1, _plan(backend="mindie-om"), Observed(), T0)
    assert {c.type: c for c in unplaceable.conditions}["Planned"].reason == "Unplaceable"
    assert unplaceable.plan == [] and unplaceable.backend is None


def test_events_only_for_transitions() -> None:
    p = _plan()
    start = desired_status(None, 1, p, Observed(ready_replicas=0, replicas=1), T0)
    first = condition_events([], start.conditions)
    assert ("Normal", "Planned") in [(t, r) for t, r, _ in first]
    assert all(r != "ReplicasNotReady" for _, r, _ in first)  # progress is not news
    assert all(r != "AsPlanned" for _, r, _ in first)
    ready = desired_status(start, 1, p, Observed(ready_replicas=1, replicas=1), T1)
    assert [(t, r) for t, r, _ in condition_events(start.conditions, ready.conditions)] == [("Normal", "ReplicasReady")]
    assert condition_events(ready.conditions, ready.conditions) == []
