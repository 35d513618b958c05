"""The forecasting scaler's pure core: traces, features, predictors, the decision rule and the simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoglm.api.modeldeployment import ForecastModel, ForecastSpec
from autoglm.core.forecast.decision import (
    ScalingRule,
    lead_seconds,
    predictive_replicas,
    reactive_replicas,
    recommend,
    stabilized,
    with_floor,
    within_horizon,
)
from autoglm.core.forecast.features import Horizon, leading_peak, table, trailing_mean
from autoglm.core.forecast.predictors import PredictorName, choose_predictor, fit_predictor, select_predictor
from autoglm.core.forecast.series import LoadSeries, TraceError, parse_trace
from autoglm.core.forecast.simulate import Oracle, Predictive, Scenario, oracle_peaks, simulate
from tests.unit.synthetic_traces import diurnal_with_bursts, to_csv


def test_a_trace_reads_minute_offsets_and_iso_times_with_missing_rows_as_gaps() -> None:
    series = parse_trace("minute,requests\n0,5\n1,6\n3,8\n")
    assert series.step_seconds == 60
    assert series.values[:2].tolist() == [5, 6] and math.isnan(series.values[2]) and series.values[3] == 8
    iso = parse_trace("minute,requests\n2023-11-16T18:15Z,1\n2023-11-16T18:16Z,\n2023-11-16T18:17Z,3\n")
    assert len(iso) == 3 and iso.gaps() == 1 and iso.start == pytest.approx(1700158500)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("minute,requests\n0,1\n1,lots\n", 3, "'lots' is not a number"),
        ("minute,requests\n0,1\n0,2\n", 3, "does not come after"),
        ("minute,requests\n0,1\n1,-4\n", 3, "finite number >= 0"),
        ("minute,load\n0,1\n1,2\n", 1, "no column 'requests'"),
        ("minute,requests\n0,1\nnoon,2\n", 3, "neither a minute offset nor an ISO time"),
        ("", 1, "empty file"),
    ],
)
def test_a_bad_trace_names_the_line_and_the_problem(text: str, line: int, problem: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_trace(text, "t.csv")
    assert caught.value.line == line and problem in caught.value.problem
    assert str(caught.value).startswith(f"t.csv: line {line}: ")


def test_runs_of_zeros_become_gaps_only_when_asked_and_only_long_ones() -> None:
    text = "minute,requests\n" + "".join(f"{i},{v}\n" for i, v in enumerate([5, 0, 5, 0, 0, 0, 5]))
    assert parse_trace(text).gaps() == 0
    masked = parse_trace(text, zero_gap_runs=3).values
    assert masked[1] == 0 and np.isnan(masked[3:6]).all() and masked[6] == 5


def test_trailing_means_and_leading_peaks_skip_gaps() -> None:
    x = np.array([1.0, np.nan, 3.0, 5.0, 2.0])
    assert trailing_mean(x, 2).tolist()[1:] == [1.0, 3.0, 4.0, 3.5]
    peaks = leading_peak(x, 1, 2)
    assert peaks[:3].tolist() == [3.0, 5.0, 5.0] and np.isnan(peaks[3:]).all()


def test_features_use_only_the_past_so_a_replay_may_compute_them_once() -> None:
    series = diurnal_with_bursts(days=2)
    horizon = Horizon(5, 5, 1440, 60.0)
    whole = table(series.values, horizon)
    cut = 2000
    part = table(series.values[:cut], horizon)
    np.testing.assert_array_equal(whole.features[:cut], part.features)
    # the target looks ahead: known in the whole trace, not yet at the cut
    assert np.isnan(part.target[cut - 1]) and np.isfinite(whole.target[cut - 1])


def test_the_reactive_recommendation_is_the_hpa_formula_with_its_tolerance() -> None:
    rule = ScalingRule(capacity_per_replica=100, target_per_replica=100)
    assert reactive_replicas(1050, 10, rule) == 10  # 5 % over target: within the tolerance
    assert reactive_replicas(1150, 10, rule) == 12
    assert reactive_replicas(300, 10, rule) == 3
    assert reactive_replicas(float("nan"), 7, rule) == 7  # no metric, no action
    assert predictive_replicas(1001, rule) == 11 and predictive_replicas(1000, rule) == 10


def test_a_drop_takes_effect_only_after_the_stabilization_window() -> None:
    history = [(0.0, 10), (100.0, 4)]
    assert stabilized([*history, (200.0, 3)], 200.0, 300.0) == 10
    assert stabilized([*history, (301.0, 3)], 301.0, 300.0) == 4
    rule = ScalingRule(100, 100, min_replicas=2, max_replicas=20)
    held = recommend(150, 10, None, rule, history, 200.0, why_no_forecast="2 hours of history")
    assert held.replicas == 10 and held.predictive is None
    assert any("reactive only: 2 hours of history" in r for r in held.reasons)
    assert any("held at 10" in r for r in held.reasons)
    ahead = recommend(150, 2, 1890, rule, [], 0.0)
    assert (ahead.replicas, ahead.reactive, ahead.predictive) == (19, 2, 19)
    assert recommend(150, 2, 5000, rule, [], 0.0).replicas == 20  # clamped to max


def test_the_lead_is_the_measured_cold_start_once_there_are_enough() -> None:
    assert lead_seconds([], None, 300) == 300
    assert lead_seconds([200, 900], None, 300) == 300  # two are not enough to trust
    assert lead_seconds([400, 420, 480, 500, 640], None, 300) == 640
    assert lead_seconds([100, 110, 120], 600, 300) == 600


def test_the_lead_is_bounded_by_the_horizon_and_says_so_when_the_cold_start_is_longer() -> None:
    assert within_horizon(300, 1800) == (300, "")
    lead, note = within_horizon(900, 600)
    assert lead == 600 and note == "cold start 900 s is beyond horizonSeconds 600: the HPA covers the rest"
    with pytest.raises(ValueError, match="leadTimeSeconds 900 exceeds horizonSeconds 600"):
        ForecastSpec.model_validate({"enabled": True, "leadTimeSeconds": 900, "horizonSeconds": 600})


def test_forecast_model_forces_the_named_predictor_or_narrows_the_backtest() -> None:
    data = table(diurnal_with_bursts(days=4).values, Horizon(5, 5, 1440, 60.0))
    for model, name in ((ForecastModel.RIDGE, "ridge"), (ForecastModel.GRADIENT_BOOSTING, "gradient-boosting")):
        forced = choose_predictor(data, 0.9, model)
        assert forced.name == name and forced.reason == f"{name}, as spec.autoscaling.forecast.model asks"
        assert forced.scores == {}  # no backtest ran: a named predictor needs only the history to fit on
    seasonal = choose_predictor(data, 0.9, ForecastModel.SEASONAL)
    # four days: a week ago is unknown, so the backtest among the seasonal ones has only the day to score
    assert seasonal.name == PredictorName.SEASONAL_DAY and set(seasonal.scores) == {"seasonal-day"}
    assert seasonal.reason.endswith("forecast.model seasonal allows only those")
    auto = choose_predictor(data, 0.9)
    assert auto == select_predictor(data, 0.9) and {"ridge", "gradient-boosting"} <= set(auto.scores)


def test_too_little_history_fits_no_predictor_and_says_why() -> None:
    short = diurnal_with_bursts(days=1).head(200)
    data = table(short.values, Horizon(5, 5, 1440, 60.0))
    selection = select_predictor(data, 0.9)
    assert selection.name is None and "a backtest needs" in selection.reason
    assert fit_predictor(PredictorName.SEASONAL_DAY, data, 0.9) is None


def test_the_backtest_picks_a_predictor_that_knows_the_daily_cycle() -> None:
    series = diurnal_with_bursts(days=4)
    data = table(series.values, Horizon(5, 5, 1440, 60.0))
    selection = select_predictor(data, 0.9)
    assert selection.name is not None and selection.name != PredictorName.SEASONAL_WEEK  # no week of history
    assert set(selection.scores) >= {"seasonal-day", "ridge", "gradient-boosting"}
    assert selection.scores[selection.name] == min(selection.scores.values())
    # the status says why: every candidate's score, not only the winner's name
    assert selection.reason.startswith(f"{selection.name} had the lowest backtest loss")
    assert all(
        f"{name} {score:.3g}" in selection.reason for name, score in selection.scores.items() if name != selection.name
    )


def test_predictive_beats_reactive_on_a_diurnal_trace_with_bursts() -> None:
    # Two days, counted on the second (whose bursts the first foretells), refitted every 6 h: seconds, not the
    # minutes a long replay takes (those are benchmarks/forecast_traces.py's, on real traces).
    series = diurnal_with_bursts(days=2)
    rule = ScalingRule(capacity_per_replica=60, target_per_replica=60)
    scenario = Scenario(rule, cold_start_seconds=300, refit_seconds=6 * 3600)
    horizon = scenario.horizon(series)
    day = 1440
    reactive = simulate(series, scenario, None, count_from=day)
    predictive = simulate(series, scenario, Predictive(horizon), count_from=day)
    oracle = simulate(series, scenario, Oracle(oracle_peaks(series, horizon)), count_from=day)
    assert reactive.unserved_pct > 0.5
    assert predictive.unserved_pct < 0.5 * reactive.unserved_pct
    assert predictive.replica_minutes < 1.25 * reactive.replica_minutes
    assert oracle.unserved_pct < 0.05 * reactive.unserved_pct
    assert predictive.models and predictive.refits > 0


def test_the_simulator_counts_what_a_late_scale_up_loses() -> None:
    # 10 minutes at 100, then 10 at 300: 2 replicas of 60 ready after a cold start of 5 minutes.
    series = LoadSeries(np.array([100.0] * 10 + [300.0] * 10), 60.0)
    rule = ScalingRule(capacity_per_replica=60, target_per_replica=60)
    result = simulate(series, Scenario(rule, cold_start_seconds=300), None)
    # from minute 10 the HPA asks for 5; they serve from minute 15: 5 minutes short by 300 - 120
    assert result.unserved_pct == pytest.approx(100 * 5 * 180 / 4000)
    assert result.under_provisioned_minutes == pytest.approx(5)
    assert result.ready[-1] == 5


def test_gaps_count_for_nothing() -> None:
    values = np.array([100.0] * 10 + [np.nan] * 5 + [100.0] * 5)
    rule = ScalingRule(capacity_per_replica=60, target_per_replica=60)
    result = simulate(LoadSeries(values, 60.0), Scenario(rule, cold_start_seconds=60), None)
    assert result.replica_minutes == pytest.approx(15 * 2)


def test_the_synthetic_trace_round_trips_through_csv() -> None:
    series = diurnal_with_bursts(days=1)
    again = parse_trace(to_csv(series))
    np.testing.assert_allclose(again.values, series.values, atol=1e-3)


def test_the_floor_is_the_minimum_while_forecasting_within_the_replica_bounds() -> None:
    from autoglm.api.modeldeployment import ForecastStatus
    from tests.conftest import spec

    on = spec(
        model={"name": "glm-4-9b-chat"}, replicas={"min": 2, "max": 6}, autoscaling={"forecast": {"enabled": True}}
    )
    assert with_floor(on, ForecastStatus(floor=4)).replicas.min == 4
    assert with_floor(on, ForecastStatus(floor=9)).replicas.min == 6  # never above max
    assert with_floor(on, ForecastStatus(floor=1)).replicas.min == 2  # never below min
    assert with_floor(on, None) is on
    off = spec(model={"name": "glm-4-9b-chat"}, replicas={"min": 2, "max": 6})
    assert with_floor(off, ForecastStatus(floor=4)).replicas.min == 2


def test_the_load_query_follows_the_backend_unless_the_user_gives_one() -> None:
    from autoglm.core.forecast.queries import capacity_per_replica, load_query
    from tests.conftest import spec

    s = spec(model={"name": "glm-4-9b-chat"}, autoscaling={"targetPerReplica": 8})
    vllm = load_query(s, "chat", "prod", "vllm-ascend")
    assert vllm == (
        'sum(vllm:num_requests_running{namespace="prod",model_name="chat"}) + '
        'sum(vllm:num_requests_waiting{namespace="prod",model_name="chat"})'
    )
    assert load_query(s, "chat", "prod", "mindie-om").startswith("sum(vllm:num_requests_running{")  # the HPA metric
    custom = spec(model={"name": "glm-4-9b-chat"}, autoscaling={"forecast": {"query": "sum(rate(x[1m]))"}})
    assert load_query(custom, "chat", "prod", "vllm-cuda") == "sum(rate(x[1m]))"
    assert capacity_per_replica(s) == 8


def test_cold_starts_are_measured_from_ready_pods_only() -> None:
    from autoglm.core.forecast.decision import cold_starts

    def pod(created: str, ready: str | None) -> dict[str, object]:
        conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready}] if ready else []
        return {"metadata": {"creationTimestamp": created}, "status": {"conditions": conditions}}

    pods = [pod("2026-11-26T10:00:00Z", "2026-11-26T10:04:30Z"), pod("2026-11-26T10:00:00Z", None), {}]
    assert cold_starts(pods) == [270.0]


def test_refits_fall_on_the_clocks_quarter_hours_and_the_forecaster_starts_where_asked() -> None:
    """The simulator refits as the operator does, with the first step past each multiple of the refit interval
    (not every N steps from the series' start), and from `forecast_from` on only."""
    refits: list[int] = []

    class Recording:
        name = "recording"

        def refit(self, x: np.ndarray, t: int) -> None:
            refits.append(t)

        def upper(self, x: np.ndarray, t: int) -> float | None:
            return None

    series = LoadSeries(np.full(60, 100.0), 60.0, 600.0)  # starts at 00:10
    rule = ScalingRule(50.0, 50.0, 1, 10)
    simulate(series, Scenario(rule, 300.0, refit_seconds=900.0), Recording(), forecast_from=3)
    # t is the newest step a fit sees: 00:12 (the start), then 00:15, 00:30, 00:45, 01:00
    assert refits == [2, 5, 20, 35, 50]


def test_forecast_ticks_fall_a_quarter_interval_past_the_clocks_multiples() -> None:
    from types import SimpleNamespace

    from autoglm.shell.controllers import OperatorContext

    context = SimpleNamespace(forecast_seconds=60.0)
    assert OperatorContext._until_next_tick(context, 100.0) == pytest.approx(35.0)  # type: ignore[arg-type]
    assert OperatorContext._until_next_tick(context, 130.0) == pytest.approx(5.0)  # type: ignore[arg-type]
    assert OperatorContext._until_next_tick(context, 135.0) == pytest.approx(60.0)  # type: ignore[arg-type]


def test_a_late_refit_knows_how_many_steps_past_its_boundary_it_runs() -> None:
    from autoglm.core.forecast.decision import refit_lateness

    # Refits every 15 minutes of one-minute steps: the step at :15 is timely, the one at :17 two steps late.
    assert refit_lateness(15 * 60, 900, 60) == 0
    assert refit_lateness(17 * 60, 900, 60) == 2
    assert refit_lateness(29 * 60, 900, 60) == 14
    # Steps off the boundary (a grid that starts 30 s in): the first step past it is timely.
    assert refit_lateness(15 * 60 + 30, 900, 60) == 0
    assert refit_lateness(16 * 60 + 30, 900, 60) == 1


def test_capacity_per_replica_comes_from_the_measured_profile_at_the_latency_targets() -> None:
    """The H100 profile committed in benchmarks/results: TTFT <= 1 s and ITL <= 100 ms hold up to 32 sequences
    (64 takes 1.19 s to the first token); an explicit capacityPerReplica still wins, and without either the
    HPA's target is the capacity."""
    import yaml

    from autoglm.api.modeldeployment import ModelDeployment
    from autoglm.core.forecast.queries import capacity_from_profile, capacity_per_replica
    from tests.conftest import EXAMPLES

    md = ModelDeployment.model_validate(yaml.safe_load((EXAMPLES / "glm-4-9b-chat-capacity-profile.yaml").read_text()))
    profile = md.spec.autoscaling.forecast.capacity_profile
    assert profile is not None and capacity_per_replica(md.spec) == 32.0
    tight = profile.model_copy(update={"ttft_target_seconds": 0.1})  # up to 4 pass; 8 takes 142 ms
    assert capacity_from_profile(tight) == 4
    assert capacity_from_profile(profile.model_copy(update={"ttft_target_seconds": 0.01})) == 1
    given = md.spec.model_copy(deep=True)
    given.autoscaling.forecast.capacity_per_replica = 20
    assert capacity_per_replica(given) == 20
    given.autoscaling.forecast.capacity_per_replica = None
    given.autoscaling.forecast.capacity_profile = None
    assert capacity_per_replica(given) == md.spec.autoscaling.target_per_replica
