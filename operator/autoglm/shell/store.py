"""The operator's view of its ModelDeployments: the newest version of each, from the watch (kopf's events) and from
the answers to the operator's own writes (client-go's informer store, in small).

A reconcile reads its object here, never a list it made earlier: the store only moves forward. A version older
than the one held is ignored (a write's answer can arrive before the watch event of an earlier write), so a
reconcile never acts on an object older than one already acted on. resourceVersions are compared as the
integers every etcd-backed API server makes them; one that is not an integer replaces whatever is held.

A removed object leaves a tombstone (its last resourceVersion) for `TOMBSTONE_SECONDS`: the answer of a write
that was in flight when the DELETED event came, or a late event, is older than the tombstone and is ignored. It
would otherwise bring the deleted object back, and every resync would reconcile a ghost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

Manifest = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

# What the operator never reads of a ModelDeployment: kept out of memory (a thousand objects' managedFields).
DROPPED = ("managedFields",)
# How long a removed object's last version is remembered: far longer than any write or event is in flight.
TOMBSTONE_SECONDS = 600.0


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
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._objects: dict[Key, Manifest] = {}
        self._tombstones: dict[Key, tuple[int, float]] = {}  # key -> (last resourceVersion, when removed)
        self._clock = clock
        self._lock = threading.Lock()

    def put(self, body: Mapping[str, Any]) -> tuple[Manifest | None, bool]:
        """Keep `body` unless a newer version is held, or it is no newer than the version it was removed at;
        returns (what was held before, whether body was kept)."""
        key = key_of(body)
        new = _version(body)
        with self._lock:
            held = self._objects.get(key)
            if held is not None and new is not None and (old := _version(held)) is not None and old > new:
                return held, False
            tombstone = self._tombstones.get(key)
            if held is None and tombstone is not None and new is not None and new <= tombstone[0]:
                return None, False
            self._objects[key] = _slim(body)
            return held, True

    def remove(self, key: Key, last: Mapping[str, Any] | None = None) -> None:
        """The object is gone: forget it, and remember the newest version known of it (`last`, the DELETED event's
        object, or what was held) so that nothing at or below it is taken for the object again."""
        with self._lock:
            held = self._objects.pop(key, None)
            now = self._clock()
            self._tombstones = {k: t for k, t in self._tombstones.items() if now - t[1] < TOMBSTONE_SECONDS}
            versions = [v for b in (held, last) if b is not None and (v := _version(b)) is not None]
            if versions:
                self._tombstones[key] = (max(versions), now)

    def get(self, key: Key) -> Manifest | None:
        with self._lock:
            return self._objects.get(key)

    def known(self) -> list[Key]:
        with self._lock:
            return list(self._objects)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)
