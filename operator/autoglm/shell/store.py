"""The operator's view of its ModelDeployments: the newest version of each, from the watch (kopf's events) and from
the answers to the operator's own writes (client-go's informer store, in small).

A reconcile reads its object here, never a list it made earlier: the store only moves forward. A version older
than the one held is ignored (a write's answer can arrive before the watch event of an earlier write), so a
reconcile never acts on an object older than one already acted on. resourceVersions are compared as the
integers every etcd-backed API server makes them; one that is not an integer replaces whatever is held.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

Manifest = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

# What the operator never reads of a ModelDeployment: kept out of memory (a thousand objects' managedFields).
DROPPED = ("managedFields",)


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _version(body: Mapping[str, Any]) -> int | None:
    text = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def _slim(body: Mapping[str, Any]) -> Manifest:
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in DROPPED}
    return {**body, "metadata": meta}


class ObjectStore:
    def __init__(self) -> None:
        self._objects: dict[Key, Manifest] = {}
        self._lock = threading.Lock()

    def put(self, body: Mapping[str, Any]) -> tuple[Manifest | None, bool]:
        """Keep `body` unless a newer version is held; returns (what was held before, whether body was kept)."""
        key = key_of(body)
        new = _version(body)
        with self._lock:
            held = self._objects.get(key)
            if held is not None and new is not None and (old := _version(held)) is not None and old > new:
                return held, False
            self._objects[key] = _slim(body)
            return held, True

    def remove(self, key: Key) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def get(self, key: Key) -> Manifest | None:
        with self._lock:
            return self._objects.get(key)

    def known(self) -> list[Key]:
        with self._lock:
            return list(self._objects)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)
