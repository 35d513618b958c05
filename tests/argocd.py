"""Run the Argo CD health check (manifests/argocd/health-modeldeployment.lua) in Lua 5.1, as Argo CD does."""

from __future__ import annotations

from typing import Any

from lupa import lua51

from tests.conftest import ROOT

HEALTH_CHECK = ROOT / "manifests" / "argocd" / "health-modeldeployment.lua"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the check gives for this object; Argo CD sets the object as the global `obj`."""
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_CHECK.read_text())
    return str(result["status"]), str(result["message"])
