"""The same metrics for every backend, whatever it runs (vLLM, MindIE, LLM-TPU, llama.cpp): requests and their
outcome codes, input and output tokens, time to first token, inter-token latency and requests in flight, per
model, version, member and backend. The forecasting scaler can read these instead of backend-specific ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUTE = ("model", "version", "member", "backend")
# Time to first token: milliseconds on a small model to tens of seconds on a long prompt; inter-token: ms.
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A whole answer: as long as generating every token of it.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "autoglm_gateway_requests", "Requests by route, protocol and outcome (ok or the error table's code).",
            [*ROUTE, "protocol", "code"], registry=r,
        )  # fmt: skip
        self.input_tokens = Counter(
            "autoglm_gateway_input_tokens", "Prompt tokens the backends reported.", ROUTE, registry=r
        )
        self.output_tokens = Counter(
            "autoglm_gateway_output_tokens",
            "Generated tokens: counted_by=usage as the backend reported them (whole answers, and streams that end "
            "with a usage event), counted_by=events as the streamed events with text of a stream that reports none "
            "(one per event: fewer than the tokens when a backend sends several in one).",
            [*ROUTE, "counted_by"],
            registry=r,
        )
        self.ttft = Histogram(
            "autoglm_gateway_time_to_first_token_seconds",
            "From the request to the first streamed token (streamed requests only).", ROUTE,
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "autoglm_gateway_request_duration_seconds",
            "From the request to the whole answer (requests not streamed).", ROUTE,
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "autoglm_gateway_inter_token_latency_seconds", "Between two streamed tokens.", ROUTE,
            buckets=ITL_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge("autoglm_gateway_in_flight_requests", "Requests being served.", ["model"], registry=r)
