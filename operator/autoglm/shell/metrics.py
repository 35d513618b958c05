"""The operator's own Prometheus metrics (served on /metrics by `autoglm run`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


@dataclass
class OperatorMetrics:
    """Counters and histograms of one operator process; a registry per instance keeps tests independent."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.reconciles = Counter(
            "autoglm_reconciles_total", "Reconciles by result.", ["result"], registry=self.registry
        )
        self.errors = Counter("autoglm_reconcile_errors_total", "Reconciles that raised.", registry=self.registry)
        self.duration = Histogram(
            "autoglm_reconcile_duration_seconds",
            "Time per reconcile.",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
        )
        self.plans = Counter(
            "autoglm_plans_total",
            "Feasible plans by backend and precision.",
            ["backend", "precision"],
            registry=self.registry,
        )
        self.plan_failures = Counter(
            "autoglm_plan_failures_total", "Plans with no placement or an invalid spec.", registry=self.registry
        )
        self.inventory_changes = Counter(
            "autoglm_inventory_changes_total", "Node and runtime changes seen.", ["kind"], registry=self.registry
        )
        self.leader = Gauge(
            "autoglm_leader", "1 while this process holds the Lease (or runs without election).", registry=self.registry
        )
        self.queue_depth = Gauge(
            "autoglm_workqueue_depth",
            "Keys waiting for a worker (not those held back by a backoff).",
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "autoglm_workqueue_queue_duration_seconds",
            "How long a key waited on the queue, from asked for to handed to a worker.",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.orphans = Counter(
            "autoglm_orphans_removed_total",
            "Objects removed from a member because their ModelDeployment no longer exists.",
            ["member"],
            registry=self.registry,
        )
        self.retries = Counter(
            "autoglm_workqueue_retries_total", "Keys put back on the queue after a failure.", registry=self.registry
        )

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)
