"""What Countersign accepts from people, API clients, models and tools: the one set of rules.

Every entry point parses and checks untrusted data here, so a hostile shape gets the same
clear answer wherever it arrives (docs/security.md, "Hostile data"):

- ``parse_json(text, field=...)``: JSON text with limits. Nesting deeper than ``MAX_DEPTH``
  is refused before the parser sees it (Python's parser would raise RecursionError), and
  ``NaN``, ``Infinity``, numbers that overflow a double (``1e400``) and integers longer than
  ``MAX_INT_DIGITS`` digits are refused while parsing; then ``check_json`` runs on the value.
- ``findings(value)``: everything in an already-parsed value that Postgres cannot store or
  a page cannot show as it is: NUL characters (``\\u0000``, refused by ``jsonb`` and
  ``text``), lone UTF-16 surrogates (``\\ud800``: not encodable as UTF-8), non-finite
  numbers, integers beyond 64 bits, nesting deeper than the limit, strings longer than the
  limit. Iterative, so a value nested 100,000 levels deep is described, not a crash.
- ``check_json(value, field=...)``: ``Rejected`` naming the first problems by path.
- ``query_text(value, name)``: a query parameter: no NUL, at most ``MAX_QUERY_LENGTH``.
- ``check_text(value, name)``: a free-text form field (a comment, a note).
- ``check_day(day, name)``: a date typed into a filter, within ``FIRST_DAY``..``LAST_DAY``
  (so "the day after" and a time zone's offset stay representable: ``9999-12-31`` plus a
  day is an OverflowError).
- ``whole_number(text, name)``: a count or an id typed by a person: ASCII digits only (``"²"``
  passes ``str.isdigit`` but ``int`` refuses it), at most ``MAX_INT_DIGITS`` of them, within
  the bounds given.
- ``printable(text)``: a message safe to store and to show: NUL, lone surrogates, other
  control characters and bidirectional overrides become visible ``\\uXXXX`` markers.

What the engine does with what a model or a tool sent back (record it, escalate it) is in
``orchestration.hostile_output``; how a value Postgres cannot hold is stored without loss is
in ``orchestration.storable``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

# Nesting accepted in JSON from people and clients (run inputs, corrected outputs, API
# bodies), and in what a model or a tool sends back. Workflow schemas nest a few levels.
MAX_DEPTH = 32
# Integers must fit a signed 64-bit column wherever they are stored or compared.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# Beyond 2**53 a double is not exact, and jsonb hands 1e+16 back as the integer
# 10000000000000000: the value read would differ from the value written (and its digest).
FLOAT_MAX = 2.0**53
MAX_INT_DIGITS = 19
# One string inside a JSON body (the body itself is capped by DATA_UPLOAD_MAX_MEMORY_SIZE).
MAX_STRING_LENGTH = 100_000
# One query parameter (search text, a filter, a cursor).
MAX_QUERY_LENGTH = 500
# A comment or note typed into a form.
MAX_TEXT_LENGTH = 10_000
# Dates a filter or a period accepts: a period of up to a year before, or a day after, must
# still be a date Python and Postgres can hold, in any time zone.
FIRST_DAY, LAST_DAY = dt.date(1900, 1, 1), dt.date(9998, 12, 31)

NUL, SURROGATE, NUMBER, DEPTH, LENGTH = "nul", "surrogate", "number", "depth", "length"
CLASSES = (NUL, SURROGATE, NUMBER, DEPTH, LENGTH)

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# Shown as markers: C0 controls but tab and newline, DEL, C1 controls, bidirectional
# embeddings/overrides/isolates and marks, and the lone surrogates.
_INVISIBLE_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


@dataclass(frozen=True)
class Finding:
    """One problem in a value: where (a JSON pointer such as ``/input/items/3``), which
    class (``CLASSES``) and what, in words a person can act on."""

    path: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"


class Rejected(ValueError):
    """Untrusted data refused; ``fields`` maps each field (with its path) to what was wrong."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def printable(text: Any) -> str:
    """``text`` with every invisible or unstorable character as a visible ``\\uXXXX`` marker."""
    text = str(text)
    if not _INVISIBLE_RE.search(text):
        return text
    return _INVISIBLE_RE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def json_text(
    value: Any,
    *,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    encoder: type[json.JSONEncoder] | None = None,
) -> str:
    """JSON for a page, a download or an export: non-ASCII letters as they are, but NUL, lone
    surrogates, control characters and bidirectional overrides as ``\\uXXXX`` escapes (they
    only occur inside strings, where the escape is the same JSON value: nothing is lost)."""
    options: dict[str, Any] = {"cls": encoder} if encoder is not None else {"default": str}
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=False, **options)
    if not _INVISIBLE_RE.search(text):
        return text
    return _INVISIBLE_RE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def _pointer(parts: tuple[Any, ...]) -> str:
    return "".join("/" + printable(str(p).replace("~", "~0").replace("/", "~1")) for p in parts)


def _text_findings(
    text: str, parts: tuple[Any, ...], what: str, max_length: int | None
) -> list[Finding]:
    out = []
    if "\x00" in text:
        out.append(
            Finding(
                _pointer(parts),
                NUL,
                f"{what} contains a NUL character (\\u0000), which cannot be stored",
            )
        )
    if _SURROGATE_RE.search(text):
        char = _SURROGATE_RE.search(text).group(0)  # type: ignore[union-attr]
        out.append(
            Finding(
                _pointer(parts),
                SURROGATE,
                f"{what} contains a lone UTF-16 surrogate (\\u{ord(char):04x}), which is not valid text",
            )
        )
    if max_length is not None and len(text) > max_length:
        out.append(
            Finding(
                _pointer(parts),
                LENGTH,
                f"{what} is {len(text):,} characters long; at most {max_length:,}",
            )
        )
    return out


def findings(
    value: Any,
    *,
    max_depth: int = MAX_DEPTH,
    max_string: int | None = MAX_STRING_LENGTH,
    limit: int = 10,
) -> list[Finding]:
    """The first ``limit`` problems in ``value`` (parsed JSON, or what a tool returned)."""
    out: list[Finding] = []
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 0)]
    while stack and len(out) < limit:
        item, parts, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                out.append(
                    Finding(_pointer(parts), DEPTH, f"nested deeper than {max_depth} levels")
                )
                continue
            if isinstance(item, dict):
                children = []
                for key, child in item.items():
                    if isinstance(key, str):
                        out += _text_findings(key, (*parts, key), "a key", max_string)
                    children.append((child, (*parts, key), depth + 1))
                stack.extend(reversed(children))
            else:
                stack.extend(
                    reversed([(child, (*parts, i), depth + 1) for i, child in enumerate(item)])
                )
        elif isinstance(item, str):
            out += _text_findings(item, parts, "the text", max_string)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float) and not math.isfinite(item):
            out.append(
                Finding(
                    _pointer(parts),
                    NUMBER,
                    f"{item!r} is not a finite number (NaN, Infinity and numbers beyond ±1.8e308 are refused)",
                )
            )
        elif isinstance(item, float) and abs(item) >= FLOAT_MAX:
            out.append(
                Finding(
                    _pointer(parts),
                    NUMBER,
                    f"{item!r} is too large to be stored exactly as a decimal number (at most ±2^53, "
                    "9007199254740992); send an integer or a string",
                )
            )
        elif isinstance(item, int) and not INT_MIN <= item <= INT_MAX:
            out.append(
                Finding(
                    _pointer(parts),
                    NUMBER,
                    "the integer does not fit in 64 bits (from -9223372036854775808 to 9223372036854775807)",
                )
            )
    return out[:limit]


def check_json(value: Any, *, field: str, **limits: Any) -> Any:
    """``value``, or ``Rejected`` naming each problem as ``field/path``."""
    found = findings(value, **limits)
    if found:
        raise Rejected({f"{field}{f.path}": f.message for f in found})
    return value


def _depth_of(text: str, max_depth: int) -> tuple[int, int] | None:
    """(depth, offset) where ``text`` first nests deeper than ``max_depth``, else None.
    Brackets inside strings do not count."""
    depth, in_string, escaped = 0, False, False
    for offset, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return depth, offset
        elif ch in "]}":
            depth -= 1
    return None


class _Refused(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number JSON allows; send a finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text[:40]} is beyond the range of a double (±1.8e308)")
    return value


def _int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS or not INT_MIN <= int(text) <= INT_MAX:
        raise _Refused(
            f"{text[:25]}{'…' if len(text) > 25 else ''} does not fit in 64 bits "
            "(from -9223372036854775808 to 9223372036854775807)"
        )
    return int(text)


def parse_json(text: str | bytes, *, field: str, max_depth: int = MAX_DEPTH, **limits: Any) -> Any:
    """Parse untrusted JSON text; ``Rejected`` ({field: why}) when it is not acceptable."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected({field: f"is not UTF-8 text (byte {exc.start})"}) from None
    too_deep = _depth_of(text, max_depth)
    if too_deep is not None:
        raise Rejected(
            {field: f"is nested deeper than {max_depth} levels (at character {too_deep[1] + 1})"}
        )
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _Refused as exc:
        raise Rejected({field: str(exc)}) from None
    except json.JSONDecodeError as exc:
        raise Rejected(
            {field: f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"}
        ) from None
    except (ValueError, RecursionError) as exc:  # anything else the parser refuses
        raise Rejected({field: f"is not valid JSON: {printable(exc)}"}) from None
    return check_json(value, field=field, max_depth=max_depth, **limits)


def query_text(value: str, name: str, *, max_length: int = MAX_QUERY_LENGTH) -> str:
    """A query parameter's value, or ``Rejected`` ({name: why})."""
    if "\x00" in value:
        raise Rejected({name: "contains a NUL character (%00); remove it"})
    if len(value) > max_length:
        raise Rejected({name: f"is {len(value):,} characters long; at most {max_length:,}"})
    return value


def check_text(value: Any, name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """A free-text form or API field (a comment, a note), or ``Rejected`` ({name: why})."""
    if not isinstance(value, str):
        raise Rejected({name: "must be a string"})
    found = _text_findings(value, (), "the text", max_length)
    if found:
        raise Rejected({name: found[0].message})
    return value


def check_day(day: dt.date | dt.datetime, name: str) -> dt.date | dt.datetime:
    """``day`` (a parsed date or datetime), or ``Rejected`` ({name: why}) when it is outside
    ``FIRST_DAY``..``LAST_DAY``."""
    as_date = day.date() if isinstance(day, dt.datetime) else day
    if not FIRST_DAY <= as_date <= LAST_DAY:
        raise Rejected(
            {
                name: f"{as_date.isoformat()} is out of range; use a date from {FIRST_DAY} to {LAST_DAY}"
            }
        )
    return day


_ASCII_DIGITS_RE = re.compile("[0-9]+")


def whole_number(
    text: str,
    name: str,
    *,
    minimum: int = 0,
    maximum: int = INT_MAX,
    clamp: bool = False,
    what: str = "a whole number",
) -> int:
    """``text`` as an int, or ``Rejected`` ({name: why}): ASCII digits only (no sign, no
    space, no "²" or "٣"), at most ``MAX_INT_DIGITS`` of them, from ``minimum`` to
    ``maximum``; with ``clamp``, a larger number (of any length) is ``maximum``."""
    text = str(text)
    if not _ASCII_DIGITS_RE.fullmatch(text) or (len(text) > MAX_INT_DIGITS and not clamp):
        shown = printable(text[:25]) + ("…" if len(text) > 25 else "")
        raise Rejected({name: f"'{shown}' is not {what}; use the digits 0-9"})
    value = int(text) if len(text) <= MAX_INT_DIGITS else maximum
    if clamp and value > maximum:
        return maximum
    if not minimum <= value <= maximum:
        raise Rejected({name: f"{value:,} is out of range; from {minimum:,} to {maximum:,}"})
    return value
