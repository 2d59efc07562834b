"""Template filters for payloads and money."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django import template

from orchestration.fallbacks import MARKER, is_fallback
from orchestration.privacy import undecryptable_reason
from orchestration.untrusted import json_text, printable

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON; autoescaping still applies where it is rendered."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return printable(value)
    # Control characters, bidirectional overrides and lone surrogates as \uXXXX escapes:
    # what the model or a tool sent is shown as it is, never reordered or hidden.
    return json_text(value, indent=2)


@register.filter
def visible(value: Any) -> str:
    """Text a model, a tool or a person wrote, shown safely: NUL and other control characters
    (but tab and newline), bidirectional overrides and isolates, and lone surrogates become
    visible ``\\uXXXX`` markers (orchestration.untrusted.printable). Autoescaping still applies."""
    return "" if value is None else printable(value)


@register.filter
def undecryptable(value: Any) -> str:
    """Why a stored payload could not be decrypted ("" when it was read fine)."""
    return undecryptable_reason(value)


@register.filter
def spaced(value: Any) -> str:
    """awaiting_review -> awaiting review"""
    return str(value).replace("_", " ")


@register.filter
def usd(value: Any, places: int = 4) -> str:
    if value in (None, ""):
        return "-"
    q = Decimal(1).scaleb(-int(places))
    return f"${Decimal(value).quantize(q, rounding=ROUND_HALF_UP):,}"


@register.filter
def json_size(value: Any) -> int:
    return len(json.dumps(value)) if value is not None else 0


@register.filter
def grouped(value: Any) -> str:
    """1234567 -> 1,234,567"""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "-"


@register.filter
def duration(ms: Any) -> str:
    """Milliseconds in the unit a person reads: 850 ms, 12.3 s, 6 min 8 s, 2 h 5 min."""
    try:
        ms = int(ms)
    except (TypeError, ValueError):
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    seconds = round(ms / 1000)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@register.filter
def fallback_of(value: Any) -> dict[str, Any] | None:
    """The ``fallback`` marker of a tool output the engine answered from its cache, or None."""
    return value[MARKER] if is_fallback(value) else None
