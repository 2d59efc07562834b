"""Build a deterministic, valid instance of a JSON schema (for the generic policy).

Order of preference for each subschema: ``const``, ``default``, first of
``examples``, first of ``enum``, then a value built from the type. Objects get every
declared property (required ones first); arrays get ``max(1, minItems)`` items;
numbers honour minimum/maximum/exclusive bounds/multipleOf; strings honour
``format`` (date, date-time, time, email, uri, uuid, hostname, ipv4) and
min/maxLength. ``$ref`` to local definitions, ``allOf`` (merged), ``anyOf`` and
``oneOf`` (first branch) are followed. ``pattern`` is not solved.
"""

from __future__ import annotations

import copy
import math
from typing import Any

MAX_DEPTH = 12

_FORMATS = {
    "date": "2025-01-15",
    "date-time": "2025-01-15T09:30:00Z",
    "time": "09:30:00",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "uri": "https://example.com/resource",
    "url": "https://example.com/resource",
    "iri": "https://example.com/resource",
    "uri-reference": "/resource",
    "uuid": "00000000-0000-4000-8000-000000000001",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "duration": "P1D",
}


def schema_instance(schema: Any, *, name: str = "value") -> Any:
    """A value that validates against `schema` in the common cases (see module doc)."""
    return _instance(schema, root=schema if isinstance(schema, dict) else {}, name=name, depth=0)


def _resolve_ref(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node


def _merge_all_of(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if isinstance(part, dict) and "$ref" in part:
            part = _resolve_ref(part["$ref"], root)
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _instance(schema: Any, *, root: dict[str, Any], name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None if depth > MAX_DEPTH else f"example {name}"
    if "$ref" in schema:
        target = _resolve_ref(schema["$ref"], root)
        return _instance(target, root=root, name=name, depth=depth + 1)
    if "allOf" in schema:
        return _instance(_merge_all_of(schema, root), root=root, name=name, depth=depth + 1)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return copy.deepcopy(examples[0])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return copy.deepcopy(schema["enum"][0])
    for key in ("oneOf", "anyOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            branches = [
                b for b in schema[key] if not (isinstance(b, dict) and b.get("type") == "null")
            ]
            branch = (branches or schema[key])[0]
            base = {k: v for k, v in schema.items() if k != key}
            if isinstance(branch, dict) and "$ref" in branch:
                branch = _resolve_ref(branch["$ref"], root)
            return _instance({**base, **branch}, root=root, name=name, depth=depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
        else:
            kind = "string"

    if kind == "object":
        return _object(schema, root=root, depth=depth)
    if kind == "array":
        return _array(schema, root=root, name=name, depth=depth)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name=name)


def _object(schema: dict[str, Any], *, root: dict[str, Any], depth: int) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    names = list(dict.fromkeys([*required, *properties]))
    result: dict[str, Any] = {}
    for key in names:
        result[key] = _instance(properties.get(key, {}), root=root, name=key, depth=depth + 1)
    return result


def _array(schema: dict[str, Any], *, root: dict[str, Any], name: str, depth: int) -> list[Any]:
    min_items = int(schema.get("minItems", 0) or 0)
    max_items = schema.get("maxItems")
    count = max(1, min_items)
    if max_items is not None:
        count = min(count, int(max_items))
    prefix = schema.get("prefixItems") or []
    items = schema.get("items", {})
    values: list[Any] = []
    for i in range(count):
        item_schema = prefix[i] if i < len(prefix) else items
        value = _instance(item_schema, root=root, name=name, depth=depth + 1)
        # uniqueItems: make later items differ from the first where the type allows it.
        if i and isinstance(value, str):
            value = f"{value} {i + 1}"
        elif i and isinstance(value, int | float) and not isinstance(value, bool):
            value = value + i
        values.append(value)
    return values


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None and not isinstance(
        schema["exclusiveMinimum"], bool
    ):
        low = schema["exclusiveMinimum"] + (1 if integer else 0.01)
    if schema.get("exclusiveMaximum") is not None and not isinstance(
        schema["exclusiveMaximum"], bool
    ):
        high = schema["exclusiveMaximum"] - (1 if integer else 0.01)
    value: float = 1
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    step = schema.get("multipleOf")
    if step:
        value = math.ceil(value / step) * step
        if high is not None and value > high:
            value -= step
    if integer:
        return int(math.ceil(value))
    return float(value) if not float(value).is_integer() else int(value)


def _string(schema: dict[str, Any], *, name: str) -> str:
    value = _FORMATS.get(str(schema.get("format", "")), f"example {name}".replace("_", " "))
    min_length = int(schema.get("minLength", 0) or 0)
    if len(value) < min_length:
        value = value + "x" * (min_length - len(value))
    max_length = schema.get("maxLength")
    if max_length is not None:
        value = value[: int(max_length)]
    return value
