"""Every field of every CRD is read by code: a field no code reads is a promise the operator does not keep.

A field counts as read where the package (outside its own definition) accesses it as an attribute, passes it
by keyword (a status the operator writes), or names its JSON key in a string outside `api/` (a raw object
read as a dict). Descriptions and comments do not count: the source is parsed, not searched.
"""

from __future__ import annotations

import ast
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from autoglm.api import BackendRuntime, ModelDeployment
from autoglm.api.membercluster import MemberCluster

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "autoglm"
# Fields another open issue implements; each must leave this list when it is read.
# Kubernetes structures of spec.template that core/customize.py dumps whole into the pods: every field of them
# reaches the API server as the user wrote it (the render tests check the pods against Kubernetes' schemas).
PASSED_THROUGH = {"EnvVarSource", "KeyRef", "FieldRef", "EnvFromSource", "NamedRef", "Toleration", "VolumeMount"}
NOT_YET = {
    "ModelDeployment.spec.rollout.canaryPercent": "the canary rollout issue",
    "ModelDeployment.spec.rollout.regressionThreshold": "the canary rollout issue",
}


def _uses() -> tuple[set[str], set[str]]:
    """(attribute and keyword names used anywhere, string constants used outside api/)."""
    names: set[str] = set()
    strings: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        in_api = "api" in path.relative_to(PACKAGE).parts[:1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not in_api:
                strings.add(node.value)
    return names, strings


def _models(annotation: object) -> Iterator[type[BaseModel]]:
    if typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            yield from _models(arg)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation


def _fields(model: type[BaseModel], path: str, seen: set[type[BaseModel]]) -> Iterator[tuple[str, str, str]]:
    """(JSON path, Python name, JSON key) of every field under `model`, each model once (not those of a model
    passed through whole)."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        if model.__name__ not in PASSED_THROUGH:
            yield f"{path}.{key}", name, key
        for sub in _models(field.annotation):
            if sub not in seen:
                seen.add(sub)
                yield from _fields(sub, f"{path}.{key}", seen)


def _unread() -> set[str]:
    names, strings = _uses()
    unread = set()
    for resource in (ModelDeployment, BackendRuntime, MemberCluster):
        for path, name, key in _fields(resource, resource.__name__, {resource}):
            if path.split(".")[1] in ("apiVersion", "kind", "metadata"):
                continue
            if name not in names and key not in strings:
                unread.add(path)
    return unread


def test_every_crd_field_is_read_by_the_operator() -> None:
    unread = _unread()
    assert unread - NOT_YET.keys() == set(), "fields no code reads: implement them or remove them"
    assert NOT_YET.keys() - unread == set(), "read now: take them off NOT_YET"


def test_the_walk_finds_a_field_nothing_reads() -> None:
    """The check can fail: a field added to a model and read nowhere is found."""

    class Probe(BaseModel):
        never_read_anywhere_xyz: int = 0

    (path, name, key), *_ = _fields(Probe, "Probe", {Probe})
    names, strings = _uses()
    assert path == "Probe.never_read_anywhere_xyz" and name not in names and key not in strings
