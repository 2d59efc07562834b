from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def pct(value: Any) -> str:
    """0.875 -> 87.5%; None -> '-'."""
    if value is None or value == "":
        return "-"
    return f"{float(value):.1%}"


@register.filter
def ms(value: Any) -> str:
    """Milliseconds as a person reads them: 850 ms, 2.4 s."""
    if value is None or value == "":
        return "-"
    value = int(value)
    return f"{value} ms" if value < 1000 else f"{value / 1000:.1f} s"
