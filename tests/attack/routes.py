"""Every URL pattern the resolver knows, as a route template and a concrete URL.

Enumerated from ``get_resolver()`` (config/urls.py and every include, the admin included),
so a URL added later shows up here without anyone listing it, and the matrix test fails
until it has an expectation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern

_ROUTE_PARAM = re.compile(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^)]*\)")


@dataclass(frozen=True)
class Route:
    template: (
        str  # e.g. "runs/<uuid:run_id>/live/" or "admin/orchestration/run/<path:object_id>/change/"
    )
    params: tuple[str, ...]
    callback: Any

    def url(self, values: dict[str, str]) -> str:
        """The concrete path, with each parameter filled from ``values`` (checked to resolve back)."""
        text = _REGEX_GROUP.sub(lambda m: values[m["name"]], self.template)
        text = _ROUTE_PARAM.sub(lambda m: values[m["name"]], text)
        for anything in ("[\\s\\S]*", ".*"):
            text = text.replace(anything, values.get("*", "no-such-page"))
        text = text.replace("^", "").replace("$", "").replace("\\", "")
        path = "/" + text
        match = resolve(path)
        assert match.func == self.callback, (
            f"{path} resolves to {match.func}, not the route {self.template}"
        )
        return path


def _text(pattern: Any) -> tuple[str, list[str]]:
    if isinstance(pattern, RoutePattern):
        return str(pattern), [m["name"] for m in _ROUTE_PARAM.finditer(str(pattern))]
    if isinstance(pattern, RegexPattern):
        return pattern._regex, list(pattern.regex.groupindex)
    raise TypeError(f"unknown pattern type {type(pattern)}")


def all_routes() -> list[Route]:
    found: list[Route] = []

    def walk(patterns: list[Any], prefix: str, params: list[str]) -> None:
        for p in patterns:
            text, names = _text(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + text, params + names)
            elif isinstance(p, URLPattern):
                found.append(Route(prefix + text, tuple(params + names), p.callback))

    walk(get_resolver().url_patterns, "", [])
    return found
