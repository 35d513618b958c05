"""Human-readable views of inventories and plans (rich renderables); no I/O here."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from autoglm.core.hardware import GIB, Inventory
from autoglm.core.placement import FleetPlan
from autoglm.core.planner import Plan


def inventory_table(inventory: Inventory) -> Table:
    table = Table(title=f"Accelerator inventory ({inventory.nodes_seen} nodes)", title_justify="left")
    for col in (
        "pool",
        "vendor",
        "product",
        "memory/device",
        "per node",
        "nodes",
        "free/total",
        "precisions",
    ):
        table.add_column(col)
    for p in inventory.pools:
        table.add_row(
            p.name,
            p.vendor,
            p.product if p.known else Text(f"{p.product} (unknown)", style="yellow"),
            f"{p.memory_bytes / GIB:.1f} GiB" if p.memory_bytes else "?",
            str(p.devices_per_node),
            str(len(p.node_names)),
            f"{p.free_devices}/{p.total_devices}",
            ",".join(x.value for x in p.precisions) or "?",
        )
    return table


def plan_view(plan: Plan, title: str) -> RenderableType:
    style = "green" if plan.feasible else "red"
    parts: list[RenderableType] = [Text(f"{title}: {plan.summary}", style=f"bold {style}")]
    if plan.assignments:
        chosen = Table(title="Placement", title_justify="left")
        for col in (
            "replicas",
            "pool",
            "backend",
            "precision",
            "TP",
            "PP",
            "memory per device",
            "conversion",
        ):
            chosen.add_column(col)
        for a in plan.assignments:
            o = a.option
            chosen.add_row(
                str(a.replicas),
                o.pool,
                o.backend,
                o.precision.value,
                str(o.tensor_parallel),
                str(o.pipeline_parallel),
                f"{o.memory.total / GIB:.1f} / {o.memory.usable / GIB:.1f} GiB",
                o.conversion.produces if o.conversion else "-",
            )
        parts.append(chosen)
        first = plan.assignments[0].option
        parts.append(Text("why: " + "; ".join(first.reasons)))
        parts.append(Text(f"image: {first.image}\ncommand: {' '.join(first.command + first.args)}", style="dim"))
    if plan.rejections:
        rejected = Table(title="Rejected options", title_justify="left")
        for col in ("pool", "backend", "precision", "reason"):
            rejected.add_column(col)
        for r in plan.rejections:
            rejected.add_row(r.pool, r.backend or "-", r.precision.value if r.precision else "-", r.reason)
        parts.append(rejected)
    for w in plan.warnings:
        parts.append(Text(f"warning: {w}", style="yellow"))
    return Group(*parts)


def fleet_view(fleet: FleetPlan, title: str) -> RenderableType:
    """One deployment placed across member clusters: a row per member and pool with its own plan."""
    style = "green" if fleet.serving and fleet.unschedulable == 0 else "yellow" if fleet.serving else "red"
    parts: list[RenderableType] = [Text(f"{title}: {fleet.summary}", style=f"bold {style}")]
    table = Table(title="Members", title_justify="left")
    for col in ("member", "replicas", "max", "holds", "pool", "backend", "precision", "TP", "PP", "why"):
        table.add_column(col)
    for share in fleet.shares:
        plan = share.plan
        rows = [a for a in plan.assignments] if plan is not None and share.replicas > 0 else []
        if not rows:
            why = plan.summary if plan is not None and not plan.feasible else "; ".join(share.reasons)
            table.add_row(share.name, "0", "0", str(share.capacity), "-", "-", "-", "-", "-", why)
            continue
        for i, a in enumerate(rows):
            o = a.option
            table.add_row(
                share.name if i == 0 else "",
                str(a.replicas),
                str(share.max_replicas) if i == 0 else "",
                str(share.capacity) if i == 0 else "",
                o.pool,
                o.backend,
                o.precision.value,
                str(o.tensor_parallel),
                str(o.pipeline_parallel),
                "; ".join(share.reasons) if i == 0 else "",
            )
    parts.append(table)
    for name, why in fleet.excluded.items():
        parts.append(Text(f"not used: {name}: {why}", style="dim"))
    if fleet.unschedulable:
        parts.append(
            Text(f"warning: {fleet.unschedulable} of {fleet.wanted} replicas fit on no member", style="yellow")
        )
    return Group(*parts)
