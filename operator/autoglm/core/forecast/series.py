"""Per-interval load series: read from a trace CSV with errors that name the line, gaps kept as NaN."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

Values = npt.NDArray[np.float64]


class TraceError(ValueError):
    """A trace that cannot be read: where (line) and what."""

    def __init__(self, source: str, line: int, problem: str):
        super().__init__(f"{source}: line {line}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class LoadSeries:
    """Load per interval (e.g. requests per minute) from `start`, one value every `step_seconds`.

    NaN marks a collection gap: nothing is known there, which is not the same as no load."""

    values: Values
    step_seconds: float
    start: float = 0.0

    def __len__(self) -> int:
        return len(self.values)

    @property
    def steps_per_day(self) -> int:
        return round(86400 / self.step_seconds)

    def gaps(self) -> int:
        return int(np.isnan(self.values).sum())

    def head(self, count: int) -> LoadSeries:
        return LoadSeries(self.values[:count], self.step_seconds, self.start)


def _timestamp(cell: str) -> float:
    """A minute offset (`0`, `1`, ...) as seconds, or an ISO time (`2023-11-16T18:17Z`) as epoch seconds."""
    try:
        return float(cell) * 60.0
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(cell.replace("Z", "+00:00")).timestamp()
    except ValueError as error:
        raise ValueError(f"time {cell!r} is neither a minute offset nor an ISO time") from error


def parse_trace(text: str, source: str = "trace", column: str = "requests", zero_gap_runs: int = 0) -> LoadSeries:
    """A trace CSV (first column the time: minute offset or ISO time; `column` the load) as a series.

    Missing intervals and empty cells are gaps. With `zero_gap_runs` > 0, a run of at least that many zeros
    is taken for a collection gap too (traces where a broken collector reads 0, as ServeGen's do)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise TraceError(source, 1, "empty file: expected a header such as 'minute,requests'")
    header = [h.strip() for h in header]
    if column not in header:
        raise TraceError(source, 1, f"no column {column!r} (columns: {', '.join(header)})")
    index = header.index(column)
    times: list[float] = []
    loads: list[float] = []
    for line, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) <= index:
            raise TraceError(source, line, f"{len(row)} fields, expected at least {index + 1}")
        try:
            time = _timestamp(row[0].strip())
        except ValueError as error:
            raise TraceError(source, line, str(error)) from None
        if times and time <= times[-1]:
            raise TraceError(source, line, f"time {row[0].strip()!r} does not come after the line before")
        cell = row[index].strip()
        try:
            load = float(cell) if cell else math.nan
        except ValueError:
            raise TraceError(source, line, f"{column} {cell!r} is not a number") from None
        if load < 0 or math.isinf(load):
            raise TraceError(source, line, f"{column} {cell!r} must be a finite number >= 0")
        times.append(time)
        loads.append(load)
    if len(times) < 2:
        raise TraceError(source, 2, "a trace needs at least two intervals")
    stamps = np.asarray(times)
    step = float(np.min(np.diff(stamps)))
    slots = np.rint((stamps - stamps[0]) / step).astype(int)
    if not np.allclose(slots * step, stamps - stamps[0], atol=step * 0.01):
        bad = int(np.argmax(~np.isclose(slots * step, stamps - stamps[0], atol=step * 0.01)))
        raise TraceError(source, bad + 2, f"time is not on the trace's {step:g} s grid")
    values = np.full(int(slots[-1]) + 1, np.nan)
    values[slots] = loads
    if zero_gap_runs > 0:
        values = mask_zero_runs(values, zero_gap_runs)
    return LoadSeries(values, step, float(stamps[0]))


def mask_zero_runs(values: Values, min_run: int) -> Values:
    """`values` with every run of at least `min_run` zeros replaced by NaN."""
    masked = values.copy()
    zero = values == 0
    run_start = None
    for i, is_zero in enumerate([*zero.tolist(), False]):
        if is_zero and run_start is None:
            run_start = i
        elif not is_zero and run_start is not None:
            if i - run_start >= min_run:
                masked[run_start:i] = np.nan
            run_start = None
    return masked
