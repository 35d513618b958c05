"""The closed loop keeps the simulator honest: a trace replayed 30x faster than real time onto a ModelDeployment
that the real operator (forecasting from a real Prometheus), the real HPA controller (reading each Ready pod's
load through a custom metrics API) and KWOK's cold start scale, against the simulator on the same trace."""

from __future__ import annotations

from autoglm.core.forecast.decision import ScalingRule
from autoglm.core.forecast.series import LoadSeries
from autoglm.core.forecast.simulate import Scenario, simulate
from autoglm.face.closed_loop import LoopSettings, run
from tests.conftest import load_nodes
from tests.unit.synthetic_traces import diurnal_with_bursts

DAY = 1440
# Day 3 from 08:50 to 09:15: the daily 09:00 burst doubles the load, which the two days before it foretell.
# The warm-up replays the history's last 8 minutes live, time for the deployment to scale from 1 replica.
START, STEPS, WARMUP = 2 * DAY + 530, 25, 8
BURST = 540 - 530


def test_the_forecasting_operator_in_a_real_control_plane_matches_the_simulator() -> None:
    trace = diurnal_with_bursts(days=3).values
    demand, history = trace[START : START + STEPS], trace[:START]
    capacity = float(demand.max()) / 10
    settings = LoopSettings(capacity=capacity, compression=30.0, warmup_steps=WARMUP)
    result = run(demand.tolist(), load_nodes("nvidia-h100.yaml"), settings, history.tolist(), START)
    loop, simulated = result.loop, result.simulated
    assert loop.late_ticks <= 2, "the machine could not keep the replay's pace"
    # The operator maps real time to trace time from the planned start: a replay begun off it would shift every
    # time-of-day feature the operator computes.
    assert result.planned_start is not None
    off = loop.started - result.planned_start
    assert abs(off) < 60 / settings.compression / 8, f"the replay began {off:+.3f} s off its planned start"
    # Its pods start within the lead it was given (decision -> Ready is the simulator's cold start): a measured cold
    # start beyond it would lengthen the operator's lead, and it would look (and scale) a step further ahead.
    lead = f"in {settings.cold_start_seconds / settings.compression:.0f} s"
    assert all(lead in d for d in result.decisions), (lead, result.decisions)
    # The operator reads the same history from Prometheus as the simulator has, fits on the same schedule and
    # decides the same floors: ready replicas agree step for step (a step's timing may slip by one).
    differing = [i for i, (a, b) in enumerate(zip(loop.ready, simulated.ready, strict=True)) if a != b]
    assert len(differing) <= 2, (
        f"loop {loop.ready} vs simulator {simulated.ready}, asked {loop.asked}; the simulator chose "
        f"{simulated.models}; the operator said: {result.decisions}; its ticks:\n" + "\n".join(result.ticks)
    )
    assert result.replica_minutes_gap <= 0.1, (loop.replica_minutes, simulated.replica_minutes)
    # Both are ready for the burst when it comes, where the HPA alone is a cold start late.
    assert loop.ready[BURST] >= 10 and simulated.ready[BURST] >= 10, loop.ready
    rule = ScalingRule(capacity, capacity, 1, settings.max_replicas)
    reactive = simulate(LoadSeries(trace[: START + STEPS], 60.0, 0.0), Scenario(rule, 300.0), None, count_from=START)
    assert reactive.unserved_pct > 5.0
    assert loop.unserved_pct <= 0.1 * reactive.unserved_pct, (loop.unserved_pct, reactive.unserved_pct)
    assert abs(loop.unserved_pct - simulated.unserved_pct) <= 0.1 * reactive.unserved_pct
