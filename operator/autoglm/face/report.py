"""Human-readable views of inventories and plans (rich renderables); no I/O here."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from autoglm.core.hardware import GIB, Inventory
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
