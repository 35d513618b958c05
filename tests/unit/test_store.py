"""The operator's store of ModelDeployments: it only moves forward, and a deleted object stays deleted."""

from __future__ import annotations

from typing import Any

from autoglm.shell.store import TOMBSTONE_SECONDS, ObjectStore


def _md(version: int, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "md", "resourceVersion": str(version), **meta}, "spec": {}}


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = ObjectStore()
    assert store.put(_md(5)) == (None, True)
    held, kept = store.put(_md(4))
    assert not kept and held is not None and held["metadata"]["resourceVersion"] == "5"
    assert store.put(_md(6))[1]


def test_a_write_answered_after_the_deleted_event_does_not_bring_the_object_back() -> None:
    """A deletion's last write (the finalizer removed) answers after the DELETED event was seen: the answer is the
    object as it was deleted, and keeping it would leave a ghost that every resync reconciles."""
    store = ObjectStore()
    store.put(_md(7, finalizers=["autoglm.io/propagation"]))
    store.remove(("ns", "md"), _md(9, deletionTimestamp="2026-12-04T00:00:00Z"))
    assert store.put(_md(9, deletionTimestamp="2026-12-04T00:00:00Z")) == (None, False)
    assert store.put(_md(8)) == (None, False)  # a late event of an earlier version
    assert store.get(("ns", "md")) is None and store.known() == []


def test_an_object_made_again_under_the_same_name_is_kept() -> None:
    store = ObjectStore()
    store.put(_md(3))
    store.remove(("ns", "md"))  # no DELETED object at hand: the held version is the tombstone
    assert not store.put(_md(3))[1]
    assert store.put(_md(12)) == (None, True)


def test_tombstones_are_forgotten_after_a_while() -> None:
    now = [0.0]
    store = ObjectStore(clock=lambda: now[0])
    for i in range(100):
        store.put({"metadata": {"namespace": "ns", "name": f"md-{i}", "resourceVersion": str(i + 1)}})
        store.remove(("ns", f"md-{i}"))
    assert not store.put({"metadata": {"namespace": "ns", "name": "md-0", "resourceVersion": "1"}})[1]
    now[0] = TOMBSTONE_SECONDS + 1
    store.remove(("ns", "other"))  # every removal sweeps out the expired
    assert store.put({"metadata": {"namespace": "ns", "name": "md-0", "resourceVersion": "1"}})[1]
