"""A list+watch cache of one kind of object (client-go's reflector and store, in small): the operator reads
nodes and pods from memory instead of listing a thousand of them per reconcile.

Each object is kept as its *facts* (what the operator reads of it; managedFields, images and heartbeat times
are dropped), and the snapshot only changes when some object's facts did. So a node's status heartbeat
costs one small JSON parse and no new inventory, and a burst of reconciles shares one snapshot list.

Failure semantics match a plain list's: while the last list failed (a member whose API server is down), a
snapshot raises that error, so failover sees it as before. The watch runs while the cache is used and stops
after `idle_seconds` without a read; the next read lists again (bounded by the request timeout).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes.watch.watch import iter_resp_lines

Manifest = dict[str, Any]
# Lists and watches one kind: called with the query (limit and _continue for a page of a list; watch,
# resource_version and timeout_seconds for a watch); answers the raw urllib3 response (_preload_content=False).
Request = Callable[[dict[str, Any]], Any]
Facts = Callable[[Manifest], Manifest | None]  # None: not kept (a pod not bound to a node)
WATCH_SECONDS = 60  # the server ends each watch after this long; then it resumes from the last version
# Lists come in pages: five thousand nodes parsed at once would hold ~100 MB of objects at the peak (and a
# Python process rarely gives that back), where only their facts are kept.
LIST_PAGE = 500
logger = logging.getLogger(__name__)


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name')}"


class Gone(Exception):
    """The watch's resource version is too old (410): list again."""


class WatchCache:
    def __init__(
        self, name: str, request: Request, facts: Facts, idle_seconds: float = 120.0, settle_seconds: float = 0.0
    ):
        self.name = name
        self._request = request
        self._facts = facts
        self.idle_seconds = idle_seconds
        # A new snapshot at most this often: while objects keep changing (a thousand nodes being relabelled
        # one by one), readers share one that is at most this old instead of each getting a new one to
        # build an inventory from.
        self.settle_seconds = settle_seconds
        self._published = 0.0
        self._dirty = False
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()  # one list at a time: a burst of readers shares it
        self._store: dict[str, Manifest] = {}
        self._snapshot: list[Manifest] | None = None
        self._version = ""  # the resource version the store is at
        self._error: Exception | None = None
        self._must_list = True
        self._last_read = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.changes = 0  # how many times the snapshot changed (for tests and metrics)

    # --- read ------------------------------------------------------------------------------------------

    def snapshot(self) -> list[Manifest]:
        """Every object's facts: the same list object until one of them changes. Shared: do not modify."""
        with self._lock:
            self._last_read = time.monotonic()
            must_list = self._must_list or self._thread is None
        if must_list:
            with self._sync_lock:
                with self._lock:
                    must_list = self._must_list or self._thread is None
                if must_list:
                    self._list()  # raises when the API server does not answer: the caller sees it
                    self._start()
        with self._lock:
            if self._error is not None:
                raise self._error
            now = time.monotonic()
            if self._snapshot is None or (self._dirty and now - self._published >= self.settle_seconds):
                self._snapshot, self._published, self._dirty = list(self._store.values()), now, False
            return self._snapshot

    def invalidate(self) -> None:
        """The next snapshot lists again (for a caller that must see a change it just made)."""
        with self._lock:
            self._must_list = True

    def stop(self) -> None:
        self._stop.set()

    # --- list and watch --------------------------------------------------------------------------------

    def _list(self) -> None:
        store: dict[str, Manifest] = {}
        query: dict[str, Any] = {"limit": LIST_PAGE}
        try:
            while True:
                doc = json.loads(self._request(query).data)
                for item in doc.get("items") or []:
                    facts = self._facts(item)
                    if facts is not None:
                        store[_key(item)] = facts
                meta = doc.get("metadata") or {}
                del doc
                if not meta.get("continue"):
                    break
                query = {"limit": LIST_PAGE, "_continue": meta["continue"]}
        except Exception as exc:
            with self._lock:
                self._error = exc
            raise
        with self._lock:
            if store != self._store:
                self._store, self._dirty = store, True
                self.changes += 1
            if self._dirty:  # what was listed is published at once: an invalidating caller sees its change
                self._snapshot, self._dirty = None, False
            self._version = str(meta.get("resourceVersion") or "")  # every page is of the same version
            self._error, self._must_list = None, False

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
            self._thread.start()

    def _idle(self) -> bool:
        return time.monotonic() - self._last_read > self.idle_seconds

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set() and not self._idle():
            try:
                if self._must_list:
                    self._list()
                for event in self._events():
                    self._apply(event)
                    if self._stop.is_set():
                        break
                backoff = 0.5
            except Gone:
                with self._lock:
                    self._must_list = True
            except Exception as exc:
                # Dropped connection, API server down: list again; while that fails, snapshots raise.
                logger.debug("watch %s: %s: %s", self.name, type(exc).__name__, exc)
                with self._lock:
                    self._must_list = True
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, 10.0)
        with self._lock:
            self._thread = None
            self._must_list = True  # idle or stopped: the next reader lists afresh

    def _events(self) -> Iterator[Manifest]:
        response = self._request({"watch": True, "resource_version": self._version, "timeout_seconds": WATCH_SECONDS})
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise Gone(status.get("message"))
                    raise RuntimeError(f"watch error: {status.get('message')}")
                yield event
        finally:
            response.release_conn()

    def _apply(self, event: Manifest) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        key = _key(obj)
        facts = None if kind == "DELETED" else self._facts(obj) if kind in ("ADDED", "MODIFIED") else None
        with self._lock:
            if version:
                self._version = version
            if kind == "BOOKMARK":
                return
            if facts is None:
                changed = self._store.pop(key, None) is not None
            else:
                changed = self._store.get(key) != facts
                if changed:
                    self._store[key] = facts
            if changed:
                self._dirty = True
                self.changes += 1
