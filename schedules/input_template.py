"""The input template of a schedule: a JSON object whose strings may name dates relative to
the occurrence a tick is for, resolved in the schedule's time zone.

    {"date": "{{yesterday}}", "note": "daily run of {{today}}"}

Placeholders (dates are ISO, YYYY-MM-DD, in the schedule's time zone, relative to the
occurrence the tick is for, not to when a late tick happens to run):

    {{today}} {{yesterday}} {{tomorrow}}
    {{today-N}} {{today+N}}         N days before or after (1..366)
    {{first_of_month}}              the first day of the occurrence's month
    {{first_of_last_month}}         the first day of the month before
    {{last_of_last_month}}          the last day of the month before
    {{due}}                         the occurrence itself, an ISO date-time with its offset

Anything else between ``{{`` and ``}}``, or a lone ``{{`` / ``}}``, is refused with the path
of the string. Keys are never templated. ``check`` returns the problems; ``resolve`` the input.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_OFFSET = re.compile(r"^today([+-])(\d{1,3})$")
NAMES = (
    "today",
    "yesterday",
    "tomorrow",
    "today-N",
    "today+N",
    "first_of_month",
    "first_of_last_month",
    "last_of_last_month",
    "due",
)
MAX_OFFSET_DAYS = 366


class TemplateError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _value(name: str, due: dt.datetime) -> str | None:
    """The text of one placeholder for an occurrence ``due`` (aware, in the schedule's zone);
    None if the name is not one of NAMES."""
    today = due.date()
    first = today.replace(day=1)
    match name:
        case "today":
            return today.isoformat()
        case "yesterday":
            return (today - dt.timedelta(days=1)).isoformat()
        case "tomorrow":
            return (today + dt.timedelta(days=1)).isoformat()
        case "first_of_month":
            return first.isoformat()
        case "first_of_last_month":
            return (first - dt.timedelta(days=1)).replace(day=1).isoformat()
        case "last_of_last_month":
            return (first - dt.timedelta(days=1)).isoformat()
        case "due":
            return due.isoformat()
    offset = _OFFSET.match(name)
    if offset and 1 <= int(offset.group(2)) <= MAX_OFFSET_DAYS:
        days = int(offset.group(2)) * (1 if offset.group(1) == "+" else -1)
        return (today + dt.timedelta(days=days)).isoformat()
    return None


def _string_problem(text: str) -> str | None:
    for match in PLACEHOLDER.finditer(text):
        if _value(match.group(1), dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) is None:
            return (
                f"unknown placeholder {{{{{match.group(1)}}}}}; the placeholders are "
                + ", ".join(f"{{{{{n}}}}}" for n in NAMES)
                + f" (N from 1 to {MAX_OFFSET_DAYS})"
            )
    rest = PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        return "an unclosed {{ or a stray }}: write placeholders as {{yesterday}}"
    return None


def _walk(value: Any, path: str, visit: Any) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, f"{path}/{k}", visit) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, f"{path}/{i}", visit) for i, v in enumerate(value)]
    if isinstance(value, str):
        return visit(value, path)
    return value


def check(template: Any) -> dict[str, str]:
    """The problems of a template, keyed "input_template" or "input_template/<path>"."""
    if not isinstance(template, dict):
        return {"input_template": 'must be a JSON object, e.g. {"date": "{{yesterday}}"}'}
    errors: dict[str, str] = {}

    def visit(text: str, path: str) -> str:
        if problem := _string_problem(text):
            errors[f"input_template{path}"] = problem
        return text

    _walk(template, "", visit)
    return errors


def resolve(template: dict[str, Any], due: dt.datetime, tz: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """The input for the occurrence ``due`` (aware), dates taken in ``tz``."""
    if errors := check(template):
        raise TemplateError(errors)
    local = due.astimezone(tz)
    return _walk(
        template, "", lambda text, _path: PLACEHOLDER.sub(lambda m: _value(m.group(1), local), text)
    )
