"""Formatting the operations figures: percentages, durations, changes."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def pct(value: Any, places: int = 1) -> str:
    """0.953 -> "95.3%"; None -> "–"."""
    if value is None:
        return "–"
    return f"{float(value) * 100:.{places}f}%"


@register.filter
def duration(ms: Any) -> str:
    """Milliseconds in the unit a person reads: 840 ms, 2.4 s, 3.1 min, 2.0 h."""
    if ms is None:
        return "–"
    ms = float(ms)
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


@register.filter
def change(comparison: Any) -> str:
    """A Comparison's relative change: "+12%", "−5%", or "" when it has none."""
    delta = getattr(comparison, "change", None)
    if delta is None:
        return ""
    sign = "+" if delta >= 0 else "−"
    return f"{sign}{abs(delta) * 100:.0f}%"
