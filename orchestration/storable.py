"""How a value Postgres cannot hold as it is gets stored without loss (the one owner).

Postgres refuses NUL characters in ``jsonb`` and ``text``, lone UTF-16 surrogates cannot be
encoded as UTF-8 at all, ``jsonb`` has no NaN or Infinity, and Python cannot even print an
integer of more than 4,300 digits. A model or a tool can send any of these back, and the
engine must record what it got (``orchestration.hostile_output`` then refuses to act on it).
Stored forms, in every payload column (``orchestration.fields``: model call contents, tool
call input/output/raw output, ticket context, fan-out job output and text) and in audit
payloads::

    value                                      stored as
    a string with NUL or a lone surrogate      {"$countersign_escaped": "\\"a\\\\u0000b\\""}
    NaN, Infinity, -Infinity                   {"$countersign_escaped": "NaN"} (JSON text)
    an integer of more than 4,000 digits       {"$countersign_escaped": "0x1f..."} (hex)
    an object with such a key, or an object
    that looks like one of these wrappers      {"$countersign_escaped": "<its JSON text>"}
    a subtree nested deeper than STORED_DEPTH  {"$countersign_deep": "<its JSON text>"}
    (the same, before it is recorded)          {"$countersign_int": "0x1f..."} (bounded)
    a text column with NUL or a surrogate      "$countersign_escaped:" + JSON string literal

``$countersign_escaped`` is reversible: ``decode`` (run when a payload column is read)
gives back exactly the original value, so the evidence digests of the audit chain, which
cover the value as the application reads it, are those of the original bytes. The escaped
text is ASCII JSON (``json.dumps`` escapes), so the original is also recoverable by hand.

``$countersign_deep`` and ``$countersign_int`` are applied by ``bounded`` *before* a value
is recorded (the engine calls it on what a model or tool returned), and are never expanded
on read: Python's JSON parser, serializer and pydantic all fail on nesting of about a
thousand levels, and Python cannot print an integer of more than 4,300 digits, so the deep
part is kept as its exact JSON text (an iterative encoder) and the integer as its hex.

Audit payloads are encoded by ``orchestration.audit.record`` before they are hashed: the
trail holds (and its hash covers) the escaped form. Messages stored in plain text columns
(errors, ticket messages, validation errors) are descriptions, not evidence: they go
through ``orchestration.untrusted.printable``, which shows those characters as ``\\uXXXX``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

ESCAPED_KEY = "$countersign_escaped"
DEEP_KEY = "$countersign_deep"
INT_KEY = "$countersign_int"
TEXT_PREFIX = ESCAPED_KEY + ":"
# Deeper subtrees are kept as their JSON text (see bounded): well under Python's recursion
# limit, wherever in a request or a step the value is read.
STORED_DEPTH = 64
_HUGE_INT = 10**4000
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def unstorable_text(text: str) -> bool:
    return bool(_UNSTORABLE_TEXT.search(text))


def _is_wrapper(value: dict) -> bool:
    return len(value) == 1 and (ESCAPED_KEY in value or DEEP_KEY in value)


def dumps(value: Any) -> str:
    """``json.dumps(value)`` (ASCII, NaN allowed) for a value of any depth, without recursion;
    an integer too long for ``str`` is written as its escaped form."""
    out: list[str] = []
    stack: list[Any] = [value]
    closer = object()
    while stack:
        item = stack.pop()
        if item is closer:
            out.append(stack.pop())
            continue
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, dict):
            out.append("{")
            parts: list[Any] = []
            for i, (k, v) in enumerate(item.items()):
                key = k if isinstance(k, str) else json.dumps(k)
                parts.append(_Raw(("," if i else "") + json.dumps(str(key)) + ":"))
                parts.append(v)
            stack.extend(["}", closer])
            stack.extend(reversed(parts))
        elif isinstance(item, list | tuple):
            out.append("[")
            parts = []
            for i, v in enumerate(item):
                if i:
                    parts.append(_Raw(","))
                parts.append(v)
            stack.extend(["]", closer])
            stack.extend(reversed(parts))
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= _HUGE_INT:
            out.append(json.dumps({ESCAPED_KEY: hex(item)}))
        else:
            out.append(json.dumps(item))
    return "".join(out)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def bounded(value: Any, max_depth: int = STORED_DEPTH) -> Any:
    """``value`` as Python itself can serialize it: every subtree below ``max_depth`` replaced
    by ``{"$countersign_deep": its JSON text}`` and every integer of more than 4,000 digits by
    ``{"$countersign_int": its hex}``; the same object when there is none (iterative)."""
    if not _needs_bounding(value, max_depth):
        return value
    return _bound(value, 0, max_depth)


def _huge(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _HUGE_INT


def _needs_bounding(value: Any, max_depth: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if _huge(item):
            return True
        if isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
    return False


def _bound(value: Any, depth: int, max_depth: int) -> Any:
    if _huge(value):
        return {INT_KEY: hex(value)}
    if isinstance(value, dict | list | tuple):
        if depth >= max_depth:
            return {DEEP_KEY: dumps(value)}
        if isinstance(value, dict):
            return {k: _bound(v, depth + 1, max_depth) for k, v in value.items()}
        return [_bound(v, depth + 1, max_depth) for v in value]
    return value


def encode(value: Any) -> Any:
    """The stored form of ``value`` (see the table above); the same object when it needs
    nothing. ``value`` must already be ``bounded``."""
    return _encode(value, 0)


def _encode(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return {ESCAPED_KEY: json.dumps(value)} if unstorable_text(value) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else {ESCAPED_KEY: json.dumps(value)}
    if isinstance(value, int) and not isinstance(value, bool):
        return {ESCAPED_KEY: hex(value)} if abs(value) >= _HUGE_INT else value
    if isinstance(value, dict):
        if depth > STORED_DEPTH * 2:  # not bounded by the caller: keep it as text
            return {DEEP_KEY: dumps(value)}
        changed = False
        out = {}
        for k, v in value.items():
            new = _encode(v, depth + 1)
            changed = changed or new is not v
            out[k] = new
        if (_is_wrapper(value) and ESCAPED_KEY in value) or any(
            isinstance(k, str) and unstorable_text(k) for k in value
        ):
            # The object itself as JSON text (its keys escaped by json.dumps), its values in
            # their stored forms; decoding parses it and decodes only the values.
            return {ESCAPED_KEY: dumps(out)}
        return out if changed else value
    if isinstance(value, list | tuple):
        if depth > STORED_DEPTH * 2:
            return {DEEP_KEY: dumps(value)}
        items = [_encode(v, depth + 1) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def _unescape(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError("not an escaped form")
    if text.startswith(("0x", "-0x")):
        return int(text, 16)
    parsed = json.loads(text)
    # The escaped value itself is never a wrapper again; its children may be.
    if isinstance(parsed, dict):
        return {k: decode(v) for k, v in parsed.items()}
    if isinstance(parsed, list):
        return [decode(v) for v in parsed]
    return parsed


def decode(stored: Any) -> Any:
    """The original value of a stored form (``encode``'s inverse); ``$countersign_deep``
    subtrees stay as they are. A malformed wrapper is returned unchanged."""
    if isinstance(stored, dict):
        if len(stored) == 1 and ESCAPED_KEY in stored:
            try:
                return _unescape(stored[ESCAPED_KEY])
            except (ValueError, RecursionError):
                return stored
        if len(stored) == 1 and (DEEP_KEY in stored or INT_KEY in stored):
            return stored
        changed = False
        out = {}
        for k, v in stored.items():
            new = decode(v)
            changed = changed or new is not v
            out[k] = new
        return out if changed else stored
    if isinstance(stored, list):
        items = [decode(v) for v in stored]
        return items if any(a is not b for a, b in zip(items, stored, strict=True)) else stored
    return stored


def may_hold_escapes(raw_json_text: Any) -> bool:
    """Cheap test on a column's raw JSON text: does ``decode`` have anything to do?"""
    return isinstance(raw_json_text, str) and ESCAPED_KEY in raw_json_text


def encode_text(value: str) -> str:
    """The stored form of a text column's value (reversible; "" and clean text unchanged)."""
    if unstorable_text(value) or value.startswith(TEXT_PREFIX):
        return TEXT_PREFIX + json.dumps(value)
    return value


def decode_text(stored: Any) -> Any:
    if isinstance(stored, str) and stored.startswith(TEXT_PREFIX):
        try:
            return json.loads(stored[len(TEXT_PREFIX) :])
        except ValueError:
            return stored
    return stored


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def sendable(value: Any) -> Any:
    """A recorded value as it is sent back to a model (a replayed assistant turn): the same
    structure and types, but what no JSON request can carry made visible: NaN and Infinity
    as their escaped form, a lone surrogate as the text ``\\udXXX``. NUL stays (JSON
    escapes it); the record itself is unchanged."""
    if isinstance(value, str):
        return (
            _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", value)
            if _LONE_SURROGATE.search(value)
            else value
        )
    if isinstance(value, float) and not math.isfinite(value):
        return {ESCAPED_KEY: json.dumps(value)}
    if isinstance(value, dict):
        return {sendable(k) if isinstance(k, str) else k: sendable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sendable(v) for v in value]
    return value
