"""The closed loop keeps the simulator honest: a ramp replayed 30x faster than real time onto a ModelDeployment
that the real operator, the real HPA controller (reading each Ready pod's load through a custom metrics API)
and KWOK's cold start scale, against the simulator on the same trace and policy."""

from __future__ import annotations

from autoglm.face.closed_loop import LoopSettings, run_reactive
from tests.conftest import load_nodes

# Three 10-minute blocks of a morning ramp (ServeGen's shape: the rate changes every 10 minutes), 25 minutes.
RAMP = [42600.0] * 5 + [48800.0] * 10 + [54400.0] * 10


def test_the_reactive_hpa_in_a_real_control_plane_matches_the_simulator() -> None:
    settings = LoopSettings(capacity=5440.0, compression=30.0, warmup_steps=12)
    result = run_reactive(RAMP, load_nodes("nvidia-h100.yaml"), settings)
    loop, simulated = result.loop, result.simulated
    assert loop.late_ticks <= 2, "the machine could not keep the replay's pace"
    # both scale 8 -> 9 -> 10, each a cold start (5 trace minutes) after the HPA asks
    assert loop.ready[0] == 8 and loop.ready[-1] == 10 and simulated.ready[-1] == 10
    assert loop.unserved_pct > 1.0 and simulated.unserved_pct > 1.0
    assert result.unserved_gap <= 0.25, (loop.unserved_pct, simulated.unserved_pct)
    assert result.replica_minutes_gap <= 0.1, (loop.replica_minutes, simulated.replica_minutes)
