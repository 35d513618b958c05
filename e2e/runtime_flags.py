"""Reads the flags of `vllm serve` from a vLLM release's own source into a fixture the tests check rendered
commands against (issue: the vLLM contract). The wheel is fetched with `pip download --no-deps` and read as a
zip, never installed: the engine and front-end argument definitions (vllm/engine/arg_utils.py,
vllm/entrypoints/openai/cli_args.py) and the config dataclasses their types come from are parsed with `ast`.

    python e2e/runtime_flags.py vllm==0.11.0
    python e2e/runtime_flags.py vllm==0.10.0 --plugin vllm-ascend==0.10.0rc1

writes tests/fixtures/runtime-flags/<name>-<version>[+<plugin>].json: for each flag its kind (bool: takes no
value; int, float, str; choice: one of `choices`). A plugin adds the quantization methods it registers.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "runtime-flags"
ARG_FILES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py")
TYPE_FILES = ("vllm/config", "vllm/config.py", "vllm/model_executor/layers/quantization/__init__.py")
BOOL_ACTIONS = {"store_true", "store_false", "BooleanOptionalAction", "StoreBoolean"}


def download(requirement: str, into: Path) -> Path:
    subprocess.run(["pip", "download", "--no-deps", "-q", "-d", str(into), requirement], check=True)
    name = requirement.split("==")[0].replace("-", "_")
    (wheel,) = [w for w in into.glob("*.whl") if w.name.lower().startswith(name.lower())]
    return wheel


def modules(wheel: Path, prefixes: tuple[str, ...]) -> dict[str, ast.Module]:
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: ast.parse(archive.read(name).decode(), name)
            for name in archive.namelist()
            if name.endswith(".py") and name.startswith(prefixes)
        }


class Types:
    """Module-level aliases and dataclass field annotations across the parsed modules."""

    def __init__(self, trees: dict[str, ast.Module]):
        self.aliases: dict[str, list[ast.expr]] = {}
        self.fields: dict[str, dict[str, ast.expr]] = {}
        for tree in trees.values():
            for node in _walk_defs(tree):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    self.aliases.setdefault(node.targets[0].id, []).append(node.value)
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                    if _name(node.annotation) == "TypeAlias":
                        self.aliases.setdefault(node.target.id, []).append(node.value)
                elif isinstance(node, ast.ClassDef):
                    self.fields[node.name] = {
                        n.target.id: n.annotation
                        for n in node.body
                        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                    }

    def literals(self, expr: ast.expr, seen: frozenset[str] = frozenset()) -> list[str]:
        if isinstance(expr, ast.Subscript) and _name(expr.value) == "Literal":
            parts = expr.slice.elts if isinstance(expr.slice, ast.Tuple) else [expr.slice]
            return [str(p.value) for p in parts if isinstance(p, ast.Constant)]
        if isinstance(expr, ast.Subscript):
            parts = expr.slice.elts if isinstance(expr.slice, ast.Tuple) else [expr.slice]
            return [v for p in parts for v in self.literals(p, seen)]
        if isinstance(expr, ast.BinOp):  # X | Y
            return self.literals(expr.left, seen) + self.literals(expr.right, seen)
        name = _name(expr)
        if name and name not in seen:
            found = [self.literals(a, seen | {name}) for a in self.aliases.get(name, [])]
            return max(found, key=len, default=[])
        return []

    def kind(self, annotation: ast.expr) -> dict[str, Any]:
        choices = self.literals(annotation)
        if choices:
            return {"kind": "choice", "choices": sorted(set(choices))}
        names = {_name(n) for n in ast.walk(annotation)}
        for kind in ("bool", "int", "float"):
            if kind in names:
                return {"kind": kind}
        return {"kind": "str"}


def _walk_defs(tree: ast.Module) -> Iterator[ast.stmt]:
    """Top-level statements, those under `if TYPE_CHECKING`/`else`, and class definitions."""
    for node in tree.body:
        if isinstance(node, ast.If):
            yield from node.body
            yield from node.orelse
        else:
            yield node


def _name(expr: ast.expr | None) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


def flags(trees: dict[str, ast.Module], types: Types) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in ARG_FILES:
        tree = trees.get(path)
        if tree is None:
            continue
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            bound = {  # X = get_kwargs(SomeConfig)
                n.targets[0].id: _name(n.value.args[0])
                for n in ast.walk(function)
                if isinstance(n, ast.Assign)
                and isinstance(n.targets[0], ast.Name)
                and isinstance(n.value, ast.Call)
                and _name(n.value.func) == "get_kwargs"
                and n.value.args
            }
            for call in (n for n in ast.walk(function) if isinstance(n, ast.Call)):
                if _name(call.func) != "add_argument":
                    continue
                names = [a.value for a in call.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")]
                if names:
                    kind = _explicit_kind(call, bound, types)
                    found.update({n: kind for n in names})
                elif call.args and isinstance(call.args[0], ast.JoinedStr):
                    # for key, value in X.items(): add_argument(f"--{key.replace('_', '-')}", **value)
                    for loop in (n for n in ast.walk(function) if isinstance(n, ast.For)):
                        source = loop.iter.func.value if isinstance(loop.iter, ast.Call) else None
                        cls = bound.get(_name(source) or "")
                        for field, annotation in types.fields.get(cls or "", {}).items():
                            found["--" + field.replace("_", "-")] = types.kind(annotation)
    return dict(sorted(found.items()))


def _explicit_kind(call: ast.Call, bound: dict[str, str | None], types: Types) -> dict[str, Any]:
    keywords = {k.arg: k.value for k in call.keywords}
    for spread in (k.value for k in call.keywords if k.arg is None):  # **X["field"]
        if isinstance(spread, ast.Subscript) and isinstance(spread.slice, ast.Constant):
            cls = bound.get(_name(spread.value) or "")
            annotation = types.fields.get(cls or "", {}).get(str(spread.slice.value))
            if annotation is not None and "action" not in keywords and "type" not in keywords:
                return types.kind(annotation)
    action = keywords.get("action")
    if action is not None and (_name(action) in BOOL_ACTIONS or getattr(action, "value", None) in BOOL_ACTIONS):
        return {"kind": "bool"}
    choices = keywords.get("choices")
    if isinstance(choices, ast.List | ast.Tuple) and all(isinstance(e, ast.Constant) for e in choices.elts):
        return {"kind": "choice", "choices": sorted(str(e.value) for e in choices.elts)}  # type: ignore[attr-defined]
    kind = keywords.get("type")
    inner = kind.args[0] if isinstance(kind, ast.Call) and kind.args else kind  # optional_type(int)
    name = _name(inner)
    return {"kind": name if name in ("int", "float") else "str"}


def plugin_quantizations(wheel: Path) -> list[str]:
    """Quantization methods a plugin registers (@register_quantization_config("name"))."""
    trees = modules(wheel, ("",))
    constants = {  # NAME = "text" at module level, which the decorator may be given
        n.targets[0].id: n.value.value
        for tree in trees.values()
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.targets[0], ast.Name)
        and isinstance(n.value, ast.Constant)
        and isinstance(n.value.value, str)
    }
    names = []
    for tree in trees.values():
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            if _name(call.func) == "register_quantization_config" and call.args:
                first = call.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names.append(first.value)
                elif isinstance(first, ast.Name) and first.id in constants:
                    names.append(constants[first.id])
    return sorted(set(names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("requirement", help="vllm==VERSION")
    parser.add_argument("--plugin", help="a platform plugin's wheel, e.g. vllm-ascend==0.10.0rc1")
    parser.add_argument("--wheels", type=Path, help="a folder that already holds the wheels (else pip download)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        into = args.wheels or Path(tmp)
        wheel = download(args.requirement, into) if args.wheels is None else _find(into, args.requirement)
        trees = modules(wheel, (*ARG_FILES, *TYPE_FILES))
        found = flags(trees, Types(trees))
        name = args.requirement.replace("==", "-")
        sources = {wheel.name: hashlib.sha256(wheel.read_bytes()).hexdigest()}
        if args.plugin:
            plugin = download(args.plugin, into) if args.wheels is None else _find(into, args.plugin)
            quantization = found.get("--quantization", {"kind": "str"})
            extra = plugin_quantizations(plugin)
            if quantization["kind"] == "choice":
                quantization["choices"] = sorted(set(quantization["choices"]) | set(extra))
            sources[plugin.name] = hashlib.sha256(plugin.read_bytes()).hexdigest()
            name += "+" + args.plugin.replace("==", "-")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    out = FIXTURES / f"{name}.json"
    out.write_text(json.dumps({"requirement": args.requirement, "plugin": args.plugin, "sources": sources,
                               "flags": found}, indent=1) + "\n")  # fmt: skip
    print(f"{out.relative_to(ROOT)}: {len(found)} flags")


def _find(folder: Path, requirement: str) -> Path:
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"
    (wheel,) = [w for w in folder.glob("*.whl") if w.name.startswith(prefix)]
    return wheel


if __name__ == "__main__":
    main()
