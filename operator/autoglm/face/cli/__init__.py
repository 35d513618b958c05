"""The `autoglm` command line: one module per command group (planning, serving, members, showcase, forecasting,
sandboxes), sharing common.py's app, consoles, error printing, JSON/YAML output and cluster access.

The sandbox (Go builds, a PKI) and the operator's own modules are imported inside the commands that use them:
`autoglm run` loads none of the sandbox (tests/unit/test_layers.py)."""

from __future__ import annotations

import typer

from autoglm.face.cli import forecasting, members, planning, sandboxes, serving, showcase  # noqa: F401 (commands)
from autoglm.face.cli.common import app
from autoglm.face.cli.planning import render_catalog, render_crds

__all__ = ["app", "main", "render_catalog", "render_crds"]

# `autoglm --help` lists the commands in this order (the planning verbs first), not in the modules' import order.
HELP_ORDER = ("plan", "render", "inventory", "crds", "catalog", "run", "gateway", "demo", "probe", "join", "unjoin")


def _listed(command: typer.models.CommandInfo) -> int:
    name = command.name or getattr(command.callback, "__name__", "")
    return HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER)


app.registered_commands.sort(key=_listed)


def main() -> None:
    app()
