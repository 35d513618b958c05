"""The forecasting scaler against its peers on every shared trace, in one run, through one simulator.

    python benchmarks/forecast_traces.py [--traces ../shared/traces] [--cold-start 300] [--peak-replicas 15]

For each trace (per-minute requests; runs of >= 10 zeros are collection gaps, as the traces' README says of
ServeGen): capacity per replica so the peak needs `--peak-replicas` (>= 10) replicas, cold start 5 minutes,
and every policy through the same decision rule and simulated HPA: reactive (the HPA alone), predictive
(ours), auto-ARIMA (pmdarima, as NVIDIA Dynamo's planner fits it), Holt-Winters (statsmodels) and the oracle.
Writes benchmarks/results/forecast.md (the table, the goals, attributions) and one plot per trace.

Goals (issue 13 §5): predictive leaves <= 1/3 of reactive's unserved demand at <= 1.1x its replica-minutes,
less unserved than auto-ARIMA and Holt-Winters at no more replica-minutes, fit+predict no slower than
auto-ARIMA. Traces shorter than the history a backtest needs leave predictive reactive only (stated).
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from autoglm.core.forecast import POLICIES, QUANTILE
from autoglm.core.forecast.decision import ScalingRule
from autoglm.core.forecast.series import parse_trace
from autoglm.core.forecast.simulate import Result, Scenario, forecaster_for, simulate
from autoglm.face.forecast_report import comparison_table, plot

ROOT = Path(__file__).resolve().parents[1]
ZERO_GAP_MINUTES = 10
SHORT_HISTORY = (
    "too little history on this trace for a backtest: predictive stayed reactive only (so did Holt-Winters, "
    "which needs two days); auto-ARIMA fits from 10 points"
)
ATTRIBUTION = (
    "Traces (../shared/traces/README.md): `servegen_m_small.csv` from Alibaba Cloud Model Studio, `alibaba/ServeGen` "
    "(Apache-2.0; Xiang et al., arXiv:2505.09999); `azure_llm_2023_conv.csv` and `azure_llm_2023_code.csv` from the "
    "Azure LLM inference trace 2023, `Azure/AzurePublicDataset` (CC-BY 4.0; Patel et al., Splitwise, ISCA 2024); "
    "`mooncake_conversation.csv` from Moonshot's Kimi, `kvcache-ai/Mooncake` FAST'25 release (Apache-2.0)."
)


def goals(results: dict[str, Result]) -> list[str]:
    """Each goal of issue 13 §5 with its figures, met or not."""
    ours, reactive = results["predictive"], results["reactive"]
    lines = []
    if not ours.models:
        lines.append(SHORT_HISTORY)
    if reactive.unserved_pct > 0:
        ratio = ours.unserved_pct / reactive.unserved_pct
        cost = ours.replica_minutes / reactive.replica_minutes
        met = ratio <= 1 / 3 and cost <= 1.1
        lines.append(
            f"{'met' if met else 'NOT met'}: unserved {ratio:.2f} of reactive's (<= 0.33) at {cost:.3f}x "
            "its replica-minutes (<= 1.1)"
        )
    for peer in ("auto-arima", "holt-winters"):
        if peer in results:
            other = results[peer]
            met = ours.unserved_pct < other.unserved_pct and ours.replica_minutes <= other.replica_minutes
            lines.append(
                f"{'met' if met else 'NOT met'}: vs {peer} unserved {ours.unserved_pct:.3f} % "
                f"vs {other.unserved_pct:.3f} %, "
                f"replica-minutes {ours.replica_minutes:,.0f} vs {other.replica_minutes:,.0f}"
            )
    if "auto-arima" in results:
        arima = results["auto-arima"].fit_predict_seconds
        met = ours.fit_predict_seconds <= arima
        lines.append(
            f"{'met' if met else 'NOT met'}: fit+predict {1000 * ours.fit_predict_seconds:.1f} ms vs "
            f"auto-ARIMA {1000 * arima:.1f} ms"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=ROOT.parent / "shared" / "traces")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cold-start", type=float, default=300.0, help="Seconds.")
    parser.add_argument("--peak-replicas", type=int, default=15)
    parser.add_argument("--policies", default=",".join(POLICIES))
    args = parser.parse_args()
    console = Console(width=140)
    policies = args.policies.split(",")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    report = [
        "# Forecasting scaler vs its peers, every shared trace",
        "",
        f"`python benchmarks/forecast_traces.py` ({datetime.date.today()}, commit {commit.strip()}, 2-core machine). "
        f"Cold start {args.cold_start:g} s; capacity per replica so the peak needs {args.peak_replicas} replicas; "
        f"HPA sync 15 s, tolerance 0.1, scale-down stabilization 300 s; forecasts every 60 s, every predictor refitted "
        f"every 15 min; upper quantile {QUANTILE}. Unserved load does not queue. Runs of >= {ZERO_GAP_MINUTES} zeros "
        "are collection gaps and count for nothing.",
        "",
    ]
    for path in sorted(args.traces.glob("*.csv")):
        series = parse_trace(path.read_text(), str(path), zero_gap_runs=ZERO_GAP_MINUTES)
        capacity = float(np.nanmax(series.values)) / args.peak_replicas
        scenario = Scenario(ScalingRule(capacity, capacity), args.cold_start)
        results: dict[str, Result] = {}
        with Progress(console=console, transient=True) as progress:
            for name in policies:
                task = progress.add_task(f"{path.name}: {name}", total=len(series))
                started = time.perf_counter()
                results[name] = simulate(
                    series,
                    scenario,
                    forecaster_for(name, series, scenario),
                    progress=lambda i, t=task: progress.update(t, completed=i + 1) if i % 200 == 0 else None,
                )
                console.print(f"{path.name}: {name} done in {time.perf_counter() - started:.0f} s")
        days = len(series) * series.step_seconds / 86400
        title = f"{path.name}: {days:.2f} days, {series.gaps()} gap minutes, capacity {capacity:,.0f}/min per replica"
        console.print(comparison_table(list(results.values()), title))
        picture = plot(series, list(results.values()), capacity, args.out / "forecast" / f"{path.stem}.png", title)
        report += [f"## {path.name}", "", title, "", markdown(results), ""]
        report += [f"- {line}" for line in goals(results)]
        report += ["", f"![{path.stem}](forecast/{picture.name})", ""]
    report += [ATTRIBUTION, ""]
    (args.out / "forecast.md").write_text("\n".join(report))
    console.print(f"wrote {args.out / 'forecast.md'}")


def markdown(results: dict[str, Result]) -> str:
    reactive = results.get("reactive")
    rows = [
        "| policy | unserved | x reactive | under-provisioned | replica-minutes | x reactive | scale events | "
        "fit+predict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        unserved_x = f"{r.unserved_pct / reactive.unserved_pct:.2f}" if reactive and reactive.unserved_pct else "-"
        cost_x = f"{r.replica_minutes / reactive.replica_minutes:.3f}" if reactive else "-"
        models = f" ({', '.join(f'{k} {v}' for k, v in sorted(r.models.items()))})" if r.models else ""
        fit = f"{1000 * r.fit_predict_seconds:.1f} ms" if r.refits else "-"
        rows.append(
            f"| {r.policy}{models} | {r.unserved_pct:.3f} % | {unserved_x} | {r.under_provisioned_minutes:.0f} min "
            f"| {r.replica_minutes:,.0f} | {cost_x} | {r.scale_events} | {fit} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
