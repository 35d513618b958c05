"""Members that may hold a deployment's objects although its status does not name them.

A reconcile withdraws a deployment from the members its status names and it no longer serves. A member it applied
to whose status write then failed (a conflict, the host not answering, the process killed) is named nowhere: if the
next placement leaves that member out, its objects would stay there unseen, running and counted by nobody. So the
members a reconcile applies to are kept here until a status naming them has landed, and the next reconcile of the
deployment withdraws from those it no longer serves. The orphan collector adds what it finds on members after a
restart (core.orphans.strays). In memory only: after a restart, the collector is what finds them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

Key = tuple[str, str]  # (namespace, name)


class StrayMembers:
    def __init__(self) -> None:
        self._members: dict[Key, set[str]] = {}
        self._lock = threading.Lock()

    def add(self, key: Key, members: Iterable[str]) -> None:
        with self._lock:
            self._members.setdefault(key, set()).update(members)

    def get(self, key: Key) -> set[str]:
        with self._lock:
            return set(self._members.get(key, ()))

    def discard(self, key: Key, members: Iterable[str]) -> None:
        """These were named in a status that landed, or withdrawn: nothing to look for there any more."""
        with self._lock:
            held = self._members.get(key)
            if held is None:
                return
            held.difference_update(members)
            if not held:
                del self._members[key]

    def forget(self, key: Key) -> None:
        with self._lock:
            self._members.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._members)
