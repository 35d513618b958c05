"""`autoglm forecast` as a user runs it: the comparison, its JSON and plot, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoglm.face.cli import app
from tests.unit.synthetic_traces import diurnal_with_bursts, to_csv

runner = CliRunner()


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days: the second day's bursts are foretold by the first. Replayed with a refit every 6 h, a comparison
    takes seconds (the long replays of real traces are benchmarks/forecast_traces.py's)."""
    path = tmp_path_factory.mktemp("traces") / "diurnal.csv"
    path.write_text(to_csv(diurnal_with_bursts(days=2)))
    return path


def test_json_compares_the_policies_on_the_same_trace(trace: Path) -> None:
    args = ["forecast", "--trace", str(trace), "--cold-start", "5m", "--capacity", "60", "--json"]
    result = runner.invoke(app, [*args, "--refit", "6h", "--policies", "reactive,predictive,oracle"])
    assert result.exit_code == 0, result.output
    measures = json.loads(result.output)
    assert list(measures) == ["reactive", "predictive", "oracle"]
    assert measures["predictive"]["unserved_pct"] < measures["reactive"]["unserved_pct"]
    assert measures["oracle"]["unserved_pct"] <= measures["predictive"]["unserved_pct"]
    for key in ("under_provisioned_minutes", "replica_minutes", "scale_events", "fit_predict_seconds"):
        assert key in measures["predictive"]


def test_the_peers_run_through_the_same_rule_and_a_plot_is_written(trace: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "forecast",
            "--trace",
            str(trace),
            "--cold-start",
            "5m",
            "--capacity",
            "60",
            "--refit",
            "12h",
            "--policies",
            "reactive,auto-arima,holt-winters",
            "--out",
            str(tmp_path),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for text in ("reactive", "auto-arima", "holt-winters", "unserved", "replica-minutes", "plot:"):
        assert text in result.output
    assert (tmp_path / "diurnal.png").read_bytes()[:4] == b"\x89PNG"
    measures = json.loads((tmp_path / "diurnal.json").read_text())
    assert measures["holt-winters"]["refits"] > 0 and measures["auto-arima"]["fit_predict_seconds"] > 0


@pytest.mark.parametrize(
    ("content", "args", "expected"),
    [
        ("minute,requests\n0,1\n1,x\n", [], "line 3: requests 'x' is not a number"),
        ("minute,requests\n0,1\n1,2\n", ["--cold-start", "soon"], "not a duration"),
        ("minute,requests\n0,1\n1,2\n", ["--policies", "prophet"], "unknown prophet"),
    ],
)
def test_bad_input_exits_2_with_the_line_and_problem(
    tmp_path: Path, content: str, args: list[str], expected: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    base = ["forecast", "--trace", str(path), "--cold-start", "5m", "--capacity", "10"]
    result = runner.invoke(app, [*base, *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert expected in result.output
