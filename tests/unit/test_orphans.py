"""The orphan collector's rule: an object this host made on a member, whose owner is gone."""

from __future__ import annotations

from typing import Any

from autoglm.core.orphans import orphans, strays
from autoglm.core.render import LABEL_HOST, LABEL_OWNER_NAMESPACE, LABEL_OWNER_UID

HOST = "0b2c5a1e-host"


def _obj(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels}}


def _made(name: str, uid: str, namespace: str = "team-a", host: str = HOST) -> dict[str, Any]:
    return _obj(name, **{LABEL_HOST: host, LABEL_OWNER_UID: uid, LABEL_OWNER_NAMESPACE: namespace})


def test_only_objects_whose_owner_is_gone_are_orphans() -> None:
    objects = [_made("kept", "uid-live"), _made("gone", "uid-deleted")]
    assert [o["metadata"]["name"] for o in orphans(objects, HOST, {"uid-live"})] == ["gone"]


def test_another_hosts_objects_and_unlabelled_ones_are_never_orphans() -> None:
    objects = [
        _made("theirs", "uid-x", host="another-host"),
        _obj("by-hand"),
        _obj("older-operator", **{LABEL_OWNER_UID: "uid-y", LABEL_OWNER_NAMESPACE: "team-a"}),  # no host label
    ]
    assert orphans(objects, HOST, set()) == []
    assert orphans([_made("any", "uid-z")], "", set()) == []  # no identity known: nothing is ours


def test_a_namespaced_operator_judges_only_owners_in_its_namespaces() -> None:
    objects = [_made("mine", "uid-1", "team-a"), _made("elsewhere", "uid-2", "team-b")]
    assert [o["metadata"]["name"] for o in orphans(objects, HOST, set(), namespaces=("team-a",))] == ["mine"]
    assert len(orphans(objects, HOST, set())) == 2


def test_a_live_owner_whose_status_does_not_name_the_member_is_a_stray_owner() -> None:
    objects = [
        _made("said", "uid-a"),
        _made("unsaid", "uid-b"),
        _made("gone", "uid-c"),
        _made("theirs", "uid-b", host="x"),
    ]
    named = {"uid-a": {"gpu", "ascend"}, "uid-b": {"gpu"}}
    assert strays(objects, HOST, named, "ascend") == {"uid-b"}
    assert strays(objects, HOST, named, "gpu") == set()
    assert strays(objects, "", named, "ascend") == set()  # no identity known: nothing is ours
