"""Refusals that apply to every request before any view runs: oversized bodies, too many
fields, and query strings no view can use.

One rule each, answered the same way everywhere: JSON (``{"error": {"code", "message",
"fields"}}``, as the API's own errors) for paths under /api/, a small HTML page otherwise.

- A body longer than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is 413, with the limit stated. Django
  would raise ``RequestDataTooBig`` wherever the body is first read (the CSRF check, a view)
  and answer 400 or, inside an API view, 500. The Content-Length is checked here first; a
  body without one (chunked) still raises when read, and ``process_exception`` answers it.
- More than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` parameters is 413 too (``TooManyFieldsSent``).
- A query parameter (name or value) containing NUL, or longer than
  ``orchestration.untrusted.MAX_QUERY_LENGTH``, is 400 naming the parameter: a NUL reaches
  Postgres as a ``DataError`` in the search, the filters, the exports and the admin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from orchestration.untrusted import Rejected, query_text


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB ({n:,} bytes)" if n >= 1024 * 1024 else f"{n:,} bytes"


def refusal(
    request: HttpRequest, status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> HttpResponse:
    """The refusal as JSON under /api/, as an HTML page elsewhere."""
    if request.path.startswith("/api/"):
        body: dict[str, Any] = {"code": code, "message": message}
        if fields:
            body["fields"] = fields
        return JsonResponse({"error": body}, status=status)
    title = {413: "Request too large", 400: "Bad request"}.get(status, "Request refused")
    html = render_to_string(
        "errors/refused.html", {"title": title, "message": message, "fields": fields or {}}
    )
    return HttpResponse(html, status=status, content_type="text/html; charset=utf-8")


def too_big(request: HttpRequest) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return refusal(
        request,
        413,
        "request_too_large",
        f"The request body is larger than the limit of {_size(limit)} "
        "(DATA_UPLOAD_MAX_MEMORY_SIZE). Send less at once.",
        {"body": f"at most {limit:,} bytes"},
    )


def too_many_fields(request: HttpRequest) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    return refusal(
        request,
        413,
        "too_many_fields",
        f"The request has more than {limit:,} parameters (DATA_UPLOAD_MAX_NUMBER_FIELDS).",
        {"parameters": f"at most {limit:,}"},
    )


class RequestLimitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return too_big(request)
        try:
            params = request.GET
        except TooManyFieldsSent:
            return too_many_fields(request)
        fields: dict[str, str] = {}
        for name, values in params.lists():
            try:
                query_text(name, "parameter name")
                for value in values:
                    query_text(value, name)
            except Rejected as exc:
                fields.update(
                    {
                        k if k != "parameter name" else repr(name)[:60]: v
                        for k, v in exc.fields.items()
                    }
                )
        if fields:
            return refusal(
                request, 400, "invalid_query", "The query string was not valid; see fields.", fields
            )
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return too_big(request)
        if isinstance(exception, TooManyFieldsSent):
            return too_many_fields(request)
        return None
