"""Routes from ModelDeployments: the gateway lists them on the host cluster every few seconds and routes each
deployment's name to its members' Services (status.clusters[].endpoint), weighted by each member's ready
replicas, beside any static --backend routes. A member with no ready replica or no endpoint gets no traffic;
one that fails requests is still ejected by the router, whose health state outlives a refresh.

A list every few seconds rather than a watch: a handful of objects, and nothing to resume after an API server
restart; the router is never left without routes because a list failed (the last ones stay)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client

from autoglm.gateway.routing import Backend, Router, deployment_backends

logger = logging.getLogger("autoglm.gateway")
GROUP, VERSION, PLURAL = "autoglm.io", "v1alpha1", "modeldeployments"


def routes(
    deployments: Sequence[dict[str, Any]], static: Sequence[Backend], runtimes: Mapping[str, str | None]
) -> list[Backend]:
    """The static routes and every deployment's ready members with an endpoint; a member whose plan runs a
    runtime with a translator (runtime name -> translator) is reached through it. Pure."""
    found = list(static)
    for md in deployments:
        status = md.get("status") or {}
        clusters = status.get("clusters") or []
        endpoints = {c["name"]: c["endpoint"] for c in clusters if c.get("name") and c.get("endpoint")}
        used: dict[str, set[str | None]] = {}
        for entry in status.get("plan") or []:
            used.setdefault(entry.get("cluster", "local"), set()).add(runtimes.get(entry.get("backend", "")))
        # One translator per member: its Service fronts every pool of the member.
        translators = {member: next(iter(kinds)) for member, kinds in used.items() if len(kinds) == 1}
        found += deployment_backends(md, endpoints, translators)
    return found


class DeploymentRoutes:
    def __init__(
        self,
        router: Router,
        api: client.ApiClient,
        namespace: str | None = None,
        interval: float = 5.0,
        on_refresh: Callable[[], None] = lambda: None,
    ) -> None:
        self.router = router
        self.on_refresh = on_refresh  # after every successful list (the gateway is ready from the first)
        self.static = list(router.backends)
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.interval = interval

    def translators(self) -> dict[str, str | None]:
        """BackendRuntime name -> its translator (None: OpenAI-shaped)."""
        answer: Any = self.objects.list_cluster_custom_object(GROUP, VERSION, "backendruntimes")
        return {r["metadata"]["name"]: (r.get("spec") or {}).get("translator") for r in answer.get("items") or []}

    def list(self) -> list[dict[str, Any]]:
        answer: Any
        if self.namespace:
            answer = self.objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        else:
            answer = self.objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return list(answer.get("items") or [])

    async def refresh(self) -> None:
        deployments = await asyncio.to_thread(self.list)
        runtimes = await asyncio.to_thread(self.translators)
        self.router.backends = routes(deployments, self.static, runtimes)
        self.on_refresh()

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the last routes stay; the next pass tries again
                logger.warning("listing ModelDeployments failed (routes unchanged): %s", exc)
            await asyncio.sleep(self.interval)
