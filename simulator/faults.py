"""Fault injection: which faults hit a request, and how content faults bend a Turn.

A fault spec is a dict (see the package docstring for the header format)::

    {"fault": "rate_limit", "turn": 0, "times": 2}
    {"fault": "overloaded", "rate": 0.3}
    {"fault": "slow", "seconds": 12}

HTTP faults (rate_limit, overloaded, server_error) answer with an error instead of
a message; slow adds delay before the answer; slow_stream sends the status and headers at
once, then the body paced over ``seconds`` (streaming.schedule) (a read timeout applies to
each gap, not to the whole body, so a client waits out a slow stream); stream_cut drops the
connection half-way through a streamed answer (after some tokens, before message_delta), for
the first ``times`` streams of that run and turn (the SDK never retries a broken stream, so
the retry counter does not apply; default: every stream); malformed_tool_input,
hallucinated_tool and ambiguity change what the policy answered.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

HTTP_FAULTS = ("rate_limit", "overloaded", "server_error")
CONTENT_FAULTS = ("malformed_tool_input", "hallucinated_tool", "ambiguity")
FAULTS = (*HTTP_FAULTS, "slow", "slow_stream", "stream_cut", *CONTENT_FAULTS)
# How the API tells the server (and the in-process transport) to pace a response over some
# seconds, and where to cut it; never sent to the client.
TRICKLE_HEADER = "x-simulator-trickle-seconds"
CUT_HEADER = "x-simulator-cut-at"


@dataclass(frozen=True)
class FaultSpec:
    fault: str
    turn: int | None = None  # assistant-turn index of the request; None: any turn
    times: int | None = None  # apply while x-stainless-retry-count < times
    rate: float | None = None  # probability per matching request; None: always
    seconds: float | None = None  # "slow": extra delay; "rate_limit": retry-after override

    def matches(self, *, turn_index: int, retry_count: int) -> bool:
        if self.turn is not None and self.turn != turn_index:
            return False
        return not (self.times is not None and retry_count >= self.times)


def parse_faults(value: Any) -> list[FaultSpec]:
    """Parse a JSON string, a dict or a list of dicts into specs. ValueError if invalid."""
    if value is None or value == "":
        return []
    if isinstance(value, bytes | str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"faults are not valid JSON: {exc}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("faults must be a JSON list of objects")
    specs = []
    for item in value:
        if not isinstance(item, dict) or item.get("fault") not in FAULTS:
            raise ValueError(f"unknown fault {item!r}; known: {', '.join(FAULTS)}")
        unknown = set(item) - {"fault", "turn", "times", "rate", "seconds"}
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)} in {item!r}")
        try:
            specs.append(
                FaultSpec(
                    fault=item["fault"],
                    turn=None if item.get("turn") is None else int(item["turn"]),
                    times=None if item.get("times") is None else int(item["times"]),
                    rate=None if item.get("rate") is None else float(item["rate"]),
                    seconds=None if item.get("seconds") is None else float(item["seconds"]),
                )
            )
        except (TypeError, ValueError):
            raise ValueError(f"invalid fault {item!r}") from None
    return specs


def select_faults(
    specs: list[FaultSpec], *, turn_index: int, retry_count: int, rng: random.Random
) -> list[FaultSpec]:
    """The specs that apply to this request; `rate` draws from `rng` (caller locks it)."""
    chosen = []
    for spec in specs:
        if not spec.matches(turn_index=turn_index, retry_count=retry_count):
            continue
        if spec.rate is not None and rng.random() >= spec.rate:
            continue
        chosen.append(spec)
    return chosen


def http_fault_error(spec: FaultSpec, retry_after_seconds: float) -> ApiError:
    """The error answer for an HTTP fault."""
    if spec.fault == "rate_limit":
        seconds = spec.seconds if spec.seconds is not None else retry_after_seconds
        return ApiError(
            429,
            "This request would exceed your organization's rate limit. "
            "Please reduce the prompt length or the maximum tokens requested, "
            "or try again later. (simulated fault)",
            headers={
                # retry-after is whole seconds like the real API; retry-after-ms (which
                # the SDK prefers) carries the exact, possibly fractional, value.
                "retry-after": str(max(0, int(-(-seconds // 1)))),
                "retry-after-ms": str(round(seconds * 1000, 3)),
            },
        )
    if spec.fault == "overloaded":
        return ApiError(529, "Overloaded")
    return ApiError(500, "Internal server error")


def _wrong_type_value(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if kind in ("string", None):
        return 12345
    if kind in ("integer", "number"):
        return "not a number"
    if kind == "boolean":
        return "not a boolean"
    if kind == "array":
        return "not an array"
    return "not an object"


def corrupt_tool_input(content: list[dict[str, Any]], tools: list[dict[str, Any]]) -> None:
    """Make the first tool_use's input violate its tool's input_schema (in place).

    Drops the first required key if it is present, else gives the first declared
    property a value of the wrong type, else adds a key the schema does not declare.
    """
    block = next((b for b in content if b.get("type") == "tool_use"), None)
    if block is None:
        return
    tool = next((t for t in tools if t.get("name") == block.get("name")), {})
    schema = tool.get("input_schema") or {}
    data = dict(block.get("input") or {})
    required = [r for r in schema.get("required") or [] if r in data]
    properties = schema.get("properties") or {}
    if required:
        del data[required[0]]
    elif properties:
        key = next(iter(properties))
        data[key] = _wrong_type_value(properties[key] if isinstance(properties[key], dict) else {})
    else:
        data["__unexpected__"] = True
    block["input"] = data


def hallucinate_tool(content: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    """Rename the first tool_use to a tool the request did not declare (in place).

    With no tool_use in the answer, a call to an invented tool replaces the answer.
    Returns the invented name.
    """
    declared = {t.get("name") for t in tools}
    block = next((b for b in content if b.get("type") == "tool_use"), None)
    base = str(block.get("name")) if block else str(tools[0].get("name")) if tools else "lookup"
    name = base + "_v2"
    while name in declared:
        name += "_v2"
    if block is not None:
        block["name"] = name
    else:
        content[:] = [
            {"type": "text", "text": f"I will use {name} to finish this."},
            {"type": "tool_use", "name": name, "input": {}},
        ]
    return name


def ambiguity_content(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An end_turn answer in which the model states it cannot decide."""
    names = [str(t.get("name")) for t in tools if t.get("name")]
    options = " or ".join(names[:2]) if names else "any agent"
    return [
        {
            "type": "text",
            "text": (
                "I'm not sure which agent to call: the request is ambiguous because it "
                f"could be handled by {options}, and the input does not say which outcome "
                "is wanted. Please clarify before I continue."
            ),
        }
    ]
