"""Reads a deployment's load history from Prometheus (prometheus-api-client), with timeouts and retries."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from autoglm.core.forecast.series import LoadSeries

logger = logging.getLogger(__name__)
# Prometheus refuses range queries of more than 11,000 points per series.
MAX_POINTS = 10_000


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be asked, or its answer cannot be used; the message says which."""


@dataclass(frozen=True)
class History:
    """The load per step up to `end`, and how old its newest sample is."""

    series: LoadSeries
    end: float
    newest_age_seconds: float  # inf when there is no sample at all


class PrometheusReader:
    """One Prometheus: range queries in chunks Prometheus accepts, bounded timeouts, retries with backoff on
    connection errors and 5xx answers."""

    def __init__(self, url: str, timeout_seconds: float = 10.0, retries: int = 3, backoff_seconds: float = 0.5):
        retry = Retry(
            total=retries,
            backoff_factor=backoff_seconds,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=("GET", "POST"),
        )
        self.url = url
        self.timeout = timeout_seconds
        self.client = PrometheusConnect(url=url, disable_ssl=True, retry=retry, timeout=math.ceil(timeout_seconds))

    def history(self, promql: str, seconds: float, step_seconds: float = 60.0, now: float | None = None) -> History:
        """The query's value every `step_seconds` over the last `seconds` (NaN where Prometheus has none)."""
        end = math.floor((now if now is not None else time.time()) / step_seconds) * step_seconds
        steps = int(seconds // step_seconds)
        start = end - (steps - 1) * step_seconds
        values = np.full(steps, np.nan)
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + (MAX_POINTS - 1) * step_seconds)
            for stamp, value in self._range(promql, chunk_start, chunk_end, step_seconds):
                index = round((stamp - start) / step_seconds)
                if 0 <= index < steps and math.isfinite(value):
                    values[index] = value
            chunk_start = chunk_end + step_seconds
        known = np.flatnonzero(~np.isnan(values))
        age = end - (start + known[-1] * step_seconds) if len(known) else math.inf
        return History(LoadSeries(values, step_seconds, start), end, age)

    def _range(self, promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        try:
            result = self.client.custom_query_range(
                promql,
                start_time=datetime.fromtimestamp(start, UTC),
                end_time=datetime.fromtimestamp(end, UTC),
                step=f"{step:g}s",
            )
        except Exception as exc:  # the client raises requests' and its own errors alike: all mean "unavailable"
            raise PrometheusUnavailable(f"Prometheus at {self.url}: {type(exc).__name__}: {exc}") from exc
        if len(result) > 1:
            raise PrometheusUnavailable(
                f"the load query returns {len(result)} series, expected one (wrap it in sum(...)): {promql}"
            )
        if not result:
            return []
        return [(float(stamp), float(value)) for stamp, value in result[0].get("values", [])]
