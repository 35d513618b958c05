"""Generate CustomResourceDefinitions from the pydantic models, so kubectl and Python validate alike."""

from __future__ import annotations

from typing import Any

from autoglm import API_GROUP, API_VERSION
from autoglm.api.common import Resource

JsonSchema = dict[str, Any]

# Keywords a structural schema cannot carry, or that pydantic adds only for its own use.
_DROPPED = {"title", "additionalProperties", "$defs", "discriminator"}


def _resolve(node: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**_resolve(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return merged
    return node


def _nullable_variant(options: list[JsonSchema]) -> JsonSchema | None:
    """anyOf [X, null] is how pydantic writes Optional[X]; OpenAPI v3 says `nullable: true` instead."""
    non_null = [o for o in options if o.get("type") != "null"]
    if len(non_null) == 1 and len(options) == 2:
        return non_null[0]
    return None


def structural(node: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    """Turn one pydantic JSON-schema node into a Kubernetes structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    out: JsonSchema = {}
    if "anyOf" in node:
        inner = _nullable_variant(node["anyOf"])
        if inner is None:
            raise ValueError(f"cannot express anyOf {node['anyOf']!r} in a structural schema")
        out = structural(inner, defs)
        out["nullable"] = True
        for key in ("description", "default"):
            if key in node and node[key] is not None:
                out[key] = node[key]
        return out
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out["properties"] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum":
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum":
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        elif key == "format" and value == "date-time":
            out["format"] = "date-time"
        else:
            out[key] = value
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" not in node:
        out["additionalProperties"] = structural(extra, defs)
    if "type" not in out and "enum" in out:
        out["type"] = "string"
    return out


def openapi_schema(resource: type[Resource]) -> JsonSchema:
    """The openAPIV3Schema of one resource kind."""
    raw = resource.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = structural(raw, defs)
    props = schema["properties"]
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {"type": "string", "description": "autoglm.io/v1alpha1"}
    props["kind"] = {"type": "string", "description": resource.crd.kind}
    schema["required"] = [r for r in schema.get("required", []) if r not in {"metadata", "kind", "apiVersion"}]
    if not schema["required"]:
        del schema["required"]
    schema.pop("description", None)
    schema["description"] = (resource.__doc__ or resource.crd.kind).strip().splitlines()[0]
    return schema


def crd_manifest(resource: type[Resource]) -> dict[str, Any]:
    """A complete apiextensions.k8s.io/v1 CustomResourceDefinition for one resource kind."""
    info = resource.crd
    version: dict[str, Any] = {
        "name": API_VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(resource)},
        "additionalPrinterColumns": info.printer_columns,
    }
    if "status" in resource.model_fields:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": info.short_names,
                "categories": info.categories,
            },
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [version],
        },
    }
