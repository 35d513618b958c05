"""The demo's forecasting replay: the floor a cold start before the burst, the HPA alone a cold start behind."""

from __future__ import annotations

import math
from typing import Any

from typer.testing import CliRunner

from autoglm.face.cli import app
from autoglm.face.demo_forecast import COLD_START_SECONDS, STEP_SECONDS, burst_table, replay_burst, summary


def test_the_forecasting_scaler_has_the_burst_ready_when_it_arrives_and_the_hpa_alone_a_cold_start_later() -> None:
    replay = replay_burst()
    burst, need, lead = replay.burst, replay.needed(replay.burst), math.ceil(COLD_START_SECONDS / STEP_SECONDS)
    assert need > 1.5 * replay.needed(burst - 1), "the burst doubles the load"
    since = replay.ready_for_burst_since(replay.predictive)
    assert since is not None and since <= burst and replay.predictive.ready[burst] >= need
    assert replay.reactive.ready[burst] < need and replay.caught_up_at(replay.reactive) == burst + lead
    assert replay.predictive.unserved_pct < replay.reactive.unserved_pct / 5
    rows = burst_table(replay).rows
    assert len(rows) == 16
    text = summary(replay)
    assert f"ready from {since // 12:02d}:{since % 12 * 5:02d}" in text and "the HPA alone from 09:10" in text


def test_the_offline_demo_shows_the_forecasting_replay_too(monkeypatch: Any) -> None:
    from autoglm.face.cli import showcase

    monkeypatch.setattr(showcase, "missing_extras", lambda *_: ["sandbox"])
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "pip install 'open-autoglm[sandbox]'" in result.output
    assert "forecasting scaler: day 4" in result.output and "the HPA alone from 09:10" in result.output
