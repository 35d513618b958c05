"""Reading user files (ModelDeployments, node lists, BackendRuntimes) with errors that name file and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from autoglm.core.hardware import nodes_from_document

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class InputProblem:
    """One thing wrong with a user's file: where, which field, what."""

    file: str
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.problem}"


class InputError(Exception):
    """A user file cannot be used; carries every problem found."""

    def __init__(self, problems: list[InputProblem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def read_documents(path: Path) -> list[Any]:
    """Every YAML document of a file (`---`-separated), empty ones skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError([InputProblem(str(path), "", f"cannot read file: {exc.strerror or exc}")]) from exc
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError([InputProblem(str(path), where, f"invalid YAML: {problem}")]) from exc


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _kind_of(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list"}
    return names.get(type(value), type(value).__name__) + (f" ({value!r})" if isinstance(value, str) else "")


def validation_problems(file: str, exc: ValidationError, prefix: str = "") -> list[InputProblem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        field = _field_path(loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected an object with fields, got {_kind_of(err.get('input'))}"
        problems.append(InputProblem(file, f"{prefix}{field}" if field else prefix.rstrip("."), message))
    return problems


def parse_objects(path: Path, model: type[ModelT], kind: str) -> list[ModelT]:
    """Every document of `kind` in the file, validated; other kinds are an error."""
    objects: list[ModelT] = []
    problems: list[InputProblem] = []
    for index, doc in enumerate(read_documents(path)):
        label = f"{path} (document {index + 1})" if index else str(path)
        if not isinstance(doc, dict):
            problems.append(InputProblem(label, "", f"expected a {kind} object, got {type(doc).__name__}"))
            continue
        if doc.get("kind") != kind:
            problems.append(InputProblem(label, "kind", f"expected {kind}, got {doc.get('kind')!r}"))
            continue
        try:
            objects.append(model.model_validate(doc))
        except ValidationError as exc:
            problems += validation_problems(label, exc)
    if problems:
        raise InputError(problems)
    if not objects:
        raise InputError([InputProblem(str(path), "", f"no {kind} in file")])
    return objects


def read_nodes(path: Path) -> list[dict[str, Any]]:
    """Nodes from a `kubectl get nodes -o yaml` file (or Node documents)."""
    nodes: list[dict[str, Any]] = []
    for doc in read_documents(path):
        try:
            nodes += nodes_from_document(doc)
        except ValueError as exc:
            raise InputError([InputProblem(str(path), "kind", str(exc))]) from exc
    for i, node in enumerate(nodes):
        if not isinstance(node.get("metadata"), dict) or not node["metadata"].get("name"):
            raise InputError([InputProblem(str(path), f"items[{i}].metadata.name", "every Node needs a name")])
    return nodes
