"""How `autoglm forecast` shows its comparison: a table per policy and a plot of load vs ready capacity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from autoglm.core.forecast.series import LoadSeries
from autoglm.core.forecast.simulate import Result

DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`300`, `300s`, `5m`, `1.5h`, `1d` as seconds; ValueError otherwise."""
    value = text.strip()
    unit = DURATION_UNITS.get(value[-1:])
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 300s, 5m, 1h)") from None
    if seconds < 0:
        raise ValueError(f"{text!r}: a duration must not be negative")
    return seconds


def comparison_table(results: list[Result], title: str) -> Table:
    reactive = next((r for r in results if r.policy == "reactive"), None)
    table = Table(title=title)
    for column in (
        "policy",
        "unserved",
        "vs reactive",
        "under-provisioned",
        "replica-minutes",
        "vs reactive",
        "scale events",
        "fit+predict",
    ):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in results:
        unserved_ratio = (
            f"{r.unserved_pct / reactive.unserved_pct:.2f}" if reactive and reactive.unserved_pct > 0 else "-"
        )
        cost_ratio = (
            f"{r.replica_minutes / reactive.replica_minutes:.2f}x" if reactive and reactive.replica_minutes else "-"
        )
        table.add_row(
            r.policy + (f" ({', '.join(sorted(r.models))})" if r.models else ""),
            f"{r.unserved_pct:.3f} %",
            unserved_ratio,
            f"{r.under_provisioned_minutes:.0f} min",
            f"{r.replica_minutes:,.0f}",
            cost_ratio,
            str(r.scale_events),
            f"{1000 * r.fit_predict_seconds:.1f} ms" if r.refits else "-",
        )
    return table


def plot(series: LoadSeries, results: list[Result], capacity: float, path: Path, title: str) -> Path:
    """One panel per policy: the load, and the capacity its ready replicas gave."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(len(series)) * series.step_seconds / 3600
    figure, axes = plt.subplots(len(results), 1, figsize=(12, 2.2 * len(results)), sharex=True, squeeze=False)
    for axis, result in zip(axes[:, 0], results, strict=True):
        axis.fill_between(hours, np.nan_to_num(series.values), color="0.8", label="load", step="post")
        axis.plot(
            hours,
            np.asarray(result.ready) * capacity,
            lw=0.8,
            color="C0",
            label="ready capacity",
            drawstyle="steps-post",
        )
        axis.set_title(
            f"{result.policy}: unserved {result.unserved_pct:.3f} %, {result.replica_minutes:,.0f} replica-minutes",
            fontsize=9,
            loc="left",
        )
        axis.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("hours")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
