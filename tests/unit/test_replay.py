"""The closed loop's replay stamps its gauges with the time each tick was due, not the time a scrape reads them:
a tick that answers late (its pod list slow, the process busy) cannot move a step's load into the next step."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace
from typing import Any

from kubernetes import client

from autoglm.sandbox.replay import Replay

TICK = 0.05
SLOW = 0.03  # each tick's pod list takes this long


class _Metrics:
    """Where the replay hands the HPA its per-pod values: here, a record of each tick's exposition."""

    def __init__(self) -> None:
        self.replay: Replay | None = None
        self.seen: list[tuple[float, str]] = []

    def set(self, namespace: str, values: Any) -> None:
        assert self.replay is not None
        self.seen.append((time.time(), self.replay.exposition()))


class _SlowReplay(Replay):
    def _observe(self) -> tuple[list[str], int]:
        time.sleep(SLOW)
        return ["pod-0"], 1


def test_each_sample_carries_the_time_its_tick_was_due() -> None:
    metrics = _Metrics()
    state: Any = SimpleNamespace(api_client=client.ApiClient)
    replay = _SlowReplay(state, "ns", "app=x", "glm", [1.0, 3.0], 2.0, 4 * TICK, metrics)  # type: ignore[arg-type]
    metrics.replay = replay
    assert "vllm:num_requests_running{" not in replay.exposition()  # nothing before the first tick
    result = replay.run()
    assert result.ready == [1, 1]
    stamps, loads = [], []
    for set_at, text in metrics.seen:
        running = next(line for line in text.splitlines() if line.startswith("vllm:num_requests_running{"))
        waiting = next(line for line in text.splitlines() if line.startswith("vllm:num_requests_waiting{"))
        _, served, stamp = running.rsplit(" ", 2)
        assert waiting.rsplit(" ", 1)[1] == stamp
        stamps.append(int(stamp) / 1000)
        loads.append(float(served) + float(waiting.rsplit(" ", 2)[1]))
        assert int(stamp) / 1000 <= set_at - SLOW + 0.005  # when the tick was due, before its slow list
    assert loads == [1.0] * 4 + [3.0] * 4
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(abs(g - TICK) < 0.0015 for g in gaps), gaps  # on the grid, whatever each tick took
