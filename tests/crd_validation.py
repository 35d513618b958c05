"""Validate documents against a generated CRD the way the API server does: OpenAPI schema plus CEL rules."""

from __future__ import annotations

from typing import Any

import celpy
import jsonschema


def _to_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 (nullable, boolean exclusive bounds) -> JSON Schema draft 2020-12."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True:
            out[exclusive] = out.pop(bound)
        elif exclusive in out:
            del out[exclusive]
    if node.get("type") == "object" and "properties" in node:
        out["additionalProperties"] = False  # the API server prunes and, with strict validation, rejects them
    return out


def _cel_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    errors = []
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if not bool(program.evaluate({"self": celpy.json_to_cel(value)})):
            errors.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value and value[name] is not None:
                errors += _cel_errors(sub, value[name], f"{path}.{name}" if path else name)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _cel_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def schema_errors(crd: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """Every violation of the CRD's openAPIV3Schema and CEL rules, each starting with the field path."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    # The API server always accepts these at the root, whether the schema names them or not.
    implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    schema = {**schema, "properties": {**implicit, **schema.get("properties", {})}}
    validator = jsonschema.Draft202012Validator(_to_json_schema(schema))
    errors = [".".join(str(p) for p in err.absolute_path) + f": {err.message}" for err in validator.iter_errors(doc)]
    return errors + _cel_errors(schema, doc, "")
