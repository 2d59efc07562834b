"""Checks applied to what tools and models produce: schema, provenance, ambiguity.

Tool outputs are treated as untrusted input: cut to the fields their schema declares (so
an injected ``"validation_passed": true`` never reaches the model or a rule), validated
with jsonschema, then by the tool's semantic validators (in the engine).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from orchestration.untrusted import Rejected, parse_json
from orchestration.workflows.declaration import Record


def cut_to_schema(value: Any, schema: Mapping[str, Any]) -> Any:
    """Drop object keys the schema does not declare, recursively.

    Objects whose schema allows additional properties explicitly keep them.
    """
    if isinstance(value, dict) and "properties" in schema:
        if schema.get("additionalProperties") is True:
            return value
        props = schema["properties"]
        return {k: cut_to_schema(v, props[k]) for k, v in value.items() if k in props}
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [cut_to_schema(v, schema["items"]) for v in value]
    return value


def stripped_paths(value: Any, schema: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The paths cut_to_schema would remove, for the record."""
    out: list[str] = []
    if (
        isinstance(value, dict)
        and "properties" in schema
        and schema.get("additionalProperties") is not True
    ):
        for k, v in value.items():
            if k not in schema["properties"]:
                out.append(f"{prefix}/{k}")
            else:
                out += stripped_paths(v, schema["properties"][k], f"{prefix}/{k}")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, v in enumerate(value):
            out += stripped_paths(v, schema["items"], f"{prefix}/{i}")
    return out


def schema_errors(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every violation, each naming the field and the rule broken."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        errors.append(f"{where}: {error.message} (rule: {error.validator})")
    return errors


def first_schema_error(value: Any, schema: Mapping[str, Any]) -> str | None:
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message} (rule: {error.validator})"


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json_answer(text: str) -> tuple[Any, str | None]:
    """Parse the model's final answer: one JSON object, optionally in a ```json fence."""
    candidate = text.strip()
    fenced = _FENCE.search(candidate)
    if fenced:
        candidate = fenced.group(1).strip()
    # The limits every entry point shares (orchestration.untrusted): an answer nested too
    # deep, with NaN/1e400, integers beyond 64 bits, NUL or lone surrogates is refused with
    # the path and the reason, never a crash or a value Postgres cannot store.
    try:
        return parse_json(candidate, field="answer"), None
    except Rejected as exc:
        return None, "the final answer is not acceptable JSON: " + "; ".join(
            f"{k} {v}" if k == "answer" else f"{k}: {v}" for k, v in exc.fields.items()
        )


# Phrases with which a model states it does not know how to go on.
AMBIGUITY = re.compile(
    r"\b(i['’]?m not sure|i am not sure|i['’]?m uncertain|i am uncertain|unclear (which|whether|how)|"
    r"is ambiguous|are ambiguous|ambiguity|cannot determine|can['’]?t determine|"
    r"need(s)? clarification)\b",
    re.IGNORECASE,
)


def states_ambiguity(text: str) -> bool:
    return bool(text and AMBIGUITY.search(text))


def provenance_fields(
    schema: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterable[tuple[tuple[str, ...], str]]:
    """Yield (path, "tool.field") for output fields marked ``x-from-tool``."""
    if "x-from-tool" in schema:
        yield path, schema["x-from-tool"]
    for key, sub in (schema.get("properties") or {}).items():
        yield from provenance_fields(sub, (*path, key))


def value_at(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False, None
        data = data[key]
    return True, data


@dataclass(frozen=True)
class Unsourced:
    """A value marked ``x-from-tool`` that no accepted call of that tool returned."""

    path: str
    value: Any
    tool: str
    recorded: list[Any]

    def __str__(self) -> str:
        field = self.path.rsplit("/", 1)[-1]
        return f"{self.path} = {self.value!r} does not come from any accepted {self.tool} call ({self.tool}.{field})"


def unsourced_values(data: Any, schema: Mapping[str, Any], record: Record) -> list[Unsourced]:
    """Provenance: every field of ``data`` whose schema says ``"x-from-tool": "tool.field"``
    must, when present and not null, equal ``field`` of an accepted call of ``tool`` in
    ``record``. Used on final answers and on tool inputs (what a side effect acts on)."""
    found = []
    for path, source in provenance_fields(schema):
        present, value = value_at(data, path)
        if not present or value is None:
            continue
        tool_name, _, field_name = source.partition(".")
        recorded = record.values(tool_name, field_name)
        if value not in recorded:
            found.append(Unsourced("/".join(path), value, tool_name, recorded))
    return found
