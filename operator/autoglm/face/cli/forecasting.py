"""`autoglm forecast`: the forecasting policies replayed on a trace, side by side."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TaskID

from autoglm.core.forecast import POLICIES, QUANTILE
from autoglm.face.cli.common import (
    app,
    err,
    fail,
    out,
)
from autoglm.face.manifest import InputProblem


@app.command()
def forecast(
    trace: Annotated[Path, typer.Option("--trace", help="CSV: a time column (minute offset or ISO time), then load.")],
    cold_start: Annotated[str, typer.Option("--cold-start", help="A replica's cold start (e.g. 5m, 300s).")],
    capacity: Annotated[float, typer.Option("--capacity", help="Load one replica serves per interval.", min=0.0)],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write the plot (PNG) and results (JSON) here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {policy: measures} as JSON.")] = False,
    column: Annotated[str, typer.Option("--column", help="The load column.")] = "requests",
    zero_gap_minutes: Annotated[
        int, typer.Option("--zero-gap-minutes", help="Runs of at least this many zeros are collection gaps (0: none).")
    ] = 0,
    policies: Annotated[
        str, typer.Option("--policies", help="Comma-separated: reactive, predictive, auto-arima, holt-winters, oracle.")
    ] = ",".join(POLICIES),
    window: Annotated[str, typer.Option("--window", help="Window past the lead the floor must carry.")] = "1m",
    refit: Annotated[str, typer.Option("--refit", help="Refit every (all predictors alike).")] = "15m",
    stabilization: Annotated[str, typer.Option("--stabilization", help="Scale-down stabilization.")] = "300s",
    quantile: Annotated[
        float, typer.Option("--quantile", help="Upper forecast quantile.", min=0.5, max=0.999)
    ] = QUANTILE,
    target: Annotated[
        float | None, typer.Option("--target", help="HPA target load per replica (default: --capacity).")
    ] = None,
    min_replicas: Annotated[int, typer.Option("--min-replicas", min=0)] = 1,
    max_replicas: Annotated[int, typer.Option("--max-replicas", min=1)] = 1_000_000,
) -> None:
    """Replay a load trace through the reactive HPA, the forecasting scaler, auto-ARIMA, Holt-Winters and the
    oracle (all through the same decision rule) and compare unserved demand against replica-minutes.

    Exit status: 0 done, 2 bad input (the trace's line and problem).
    """
    # numpy, scikit-learn and the peers' libraries load here, not with the operator (`autoglm run`).
    from autoglm.core.forecast.decision import ScalingRule
    from autoglm.core.forecast.peers import PeerUnavailable
    from autoglm.core.forecast.series import TraceError, parse_trace
    from autoglm.core.forecast.simulate import Scenario, forecaster_for, simulate
    from autoglm.face.forecast_report import comparison_table, parse_duration
    from autoglm.face.forecast_report import plot as forecast_plot

    try:
        if capacity <= 0:
            raise ValueError("--capacity must be > 0")
        names = [p.strip() for p in policies.split(",") if p.strip()]
        unknown = sorted(set(names) - set(POLICIES))
        if unknown or not names:
            raise ValueError(
                f"--policies: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(POLICIES)}"
            )
        rule = ScalingRule(
            capacity,
            target or capacity,
            min_replicas,
            max_replicas,
            stabilization_seconds=parse_duration(stabilization),
        )
        scenario = Scenario(
            rule, parse_duration(cold_start), window_seconds=parse_duration(window), refit_seconds=parse_duration(refit)
        )
        series = parse_trace(trace.read_text(), str(trace), column=column, zero_gap_runs=zero_gap_minutes)
    except TraceError as exc:
        raise fail([InputProblem(exc.source, f"line {exc.line}", exc.problem)]) from None
    except (ValueError, OSError) as exc:
        raise fail([InputProblem(str(trace), "", str(exc))]) from None
    results = []
    with Progress(transient=True, console=err, disable=as_json or len(series) < 2000) as progress:
        for name in names:
            task = progress.add_task(name, total=len(series))
            try:
                forecaster = forecaster_for(name, series, scenario, q=quantile)
            except PeerUnavailable as exc:
                raise fail([InputProblem("command line", "--policies", str(exc))]) from None
            results.append(simulate(series, scenario, forecaster, progress=_advance(progress, task, len(series))))
    summary = {r.policy: r.summary() for r in results}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{trace.stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
        title = f"{trace.name}: cold start {cold_start}, capacity {capacity:g} per replica"
        png = forecast_plot(series, results, capacity, out_dir / f"{trace.stem}.png", title)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    days = len(series) * series.step_seconds / 86400
    out.print(
        comparison_table(
            results,
            f"{trace.name}: {days:.1f} days, {series.gaps()} gap steps, cold start {cold_start}, capacity {capacity:g}",
        )
    )
    if out_dir is not None:
        out.print(f"plot: {png}")


def _advance(progress: Progress, task: TaskID, steps: int) -> Callable[[int], None]:
    def advance(step: int) -> None:
        if step % 500 == 0 or step == steps - 1:
            progress.update(task, completed=step + 1)

    return advance
