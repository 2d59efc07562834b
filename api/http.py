"""The JSON API's HTTP layer: bearer-token auth, JSON bodies, and errors as JSON.

The API runs on django-ninja (api/app.py). Every operation is exempt from the login
middleware and from CSRF (a token in a header is not sent by a browser on its own, unlike a
cookie); ``BearerToken`` refuses a request without a valid token with 401 (unknown, revoked,
expired), a token past API_RATE_LIMIT with 429 and Retry-After; and every refusal becomes
``{"error": {"code", "message", "fields"?}}`` with the right status, so a client never gets
an HTML page.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django_ratelimit.core import get_usage
from ninja.security import HttpBearer

from api.models import ApiToken, hash_secret
from orchestration.untrusted import Rejected, parse_json

logger = logging.getLogger(__name__)

# last_used_at is written at most this often per token, so polling clients do not turn
# every read into a write.
LAST_USED_RESOLUTION_SECONDS = 60


class ApiError(Exception):
    """A refusal the client can act on: ``message`` says what was wrong and what to do."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or {}
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    response = JsonResponse({"error": body}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def authenticate(request: HttpRequest) -> ApiToken:
    """The active token in ``Authorization: Bearer <token>``; ApiError(401) otherwise."""
    challenge = {"WWW-Authenticate": 'Bearer realm="countersign"'}
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(
            401,
            "unauthenticated",
            "Send an API token as 'Authorization: Bearer <token>'. Create one on the API tokens page.",
            headers=challenge,
        )
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_secret(secret.strip()))
        .first()
    )
    if token is None:
        raise ApiError(401, "invalid_token", "This API token is not valid.", headers=challenge)
    if token.revoked_at is not None:
        why = (
            "because the account's password changed"
            if token.revoked_reason == ApiToken.RevokedBecause.PASSWORD_CHANGED
            else ""
        )
        raise ApiError(
            401,
            "token_revoked",
            f"This API token was revoked{' ' + why if why else ''}. Create a new one on the API "
            "tokens page.",
            headers=challenge,
        )
    if token.is_expired:
        when = timezone.localtime(token.expires_at)
        raise ApiError(
            401,
            "token_expired",
            f"This API token expired on {when:%Y-%m-%d %H:%M} {when.tzname()}. Create a new one "
            "on the API tokens page.",
            headers=challenge,
        )
    if not token.user.is_active:
        raise ApiError(
            401,
            "user_inactive",
            "The account this token belongs to is disabled.",
            headers=challenge,
        )
    now = timezone.now()
    if (
        token.last_used_at is None
        or (now - token.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_SECONDS
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


def describe_rate(rate: str) -> str:
    """ "120/m" -> "120 requests per minute", "10/5m" -> "10 requests per 5 minutes"."""
    count, _, period = rate.partition("/")
    number, unit = period[:-1], _UNITS[period[-1]]
    noun = "request" if count == "1" else "requests"
    return f"{count} {noun} per {f'{number} {unit}s' if number else unit}"


def _rate_key(group: str, request: HttpRequest) -> str:
    # The token's hash: never reused, unlike a row id after a database reset.
    return request.api_token.token_hash  # type: ignore[attr-defined]


def check_rate(request: HttpRequest) -> None:
    """ApiError(429) with Retry-After once this token passed API_RATE_LIMIT in the current
    window (django-ratelimit: a fixed window per token, counted in the default cache)."""
    rate = settings.API_RATE_LIMIT
    try:
        usage = get_usage(request, group="api", key=_rate_key, rate=rate, increment=True)
    except Exception:  # the cache (Redis) is down: RATELIMIT_FAIL_OPEN decides
        logger.warning("API rate limit not checked: the cache is unreachable", exc_info=True)
        if settings.RATELIMIT_FAIL_OPEN:
            return
        usage = {"should_limit": True, "time_left": -1}
    if usage is None or not usage["should_limit"]:
        return
    retry_after = max(1, int(usage["time_left"]))
    raise ApiError(
        429,
        "too_many_requests",
        f"This token made more than {describe_rate(rate)} (API_RATE_LIMIT). "
        f"Retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object; ApiError(400) when it is not one."""
    content_type = request.content_type or ""
    if request.body and content_type not in ("application/json", ""):
        raise ApiError(
            415, "unsupported_media_type", f"Send the body as application/json, not {content_type}."
        )
    if not request.body:
        raise ApiError(400, "malformed_json", "The request body is empty; send a JSON object.")
    # The limits every entry point shares (orchestration.untrusted): depth, NaN/Infinity,
    # 1e400, 64-bit integers, NUL and lone surrogates, each named by its path in the body.
    try:
        value = parse_json(request.body, field="body")
    except Rejected as exc:
        syntax = list(exc.fields) == ["body"]
        raise ApiError(
            400 if syntax else 422,
            "malformed_json" if syntax else "invalid_input",
            f"The request body {exc.fields['body']}."
            if syntax
            else "The request body holds values that cannot be accepted; see fields.",
            fields=None if syntax else {k.removeprefix("body/"): v for k, v in exc.fields.items()},
        ) from None
    if not isinstance(value, dict):
        raise ApiError(
            400,
            "malformed_json",
            f"The request body must be a JSON object, not {type(value).__name__}.",
        )
    return value


class BearerToken(HttpBearer):
    """Ninja's bearer scheme (documented as such in the OpenAPI document), checked our way:
    ``authenticate`` names why a token is refused, then the token's rate limit is counted.
    The user and token are set on the request for the view and the rate-limit key.

    ``may`` (one of reviews.access's ``may_*``) is the operation's role check: refused with
    403 and ``refusal`` here, before the body is read, as the pages check the role first.
    ``row`` (one of reviews.access's ``get_*_for_user``, called with the user and the path's
    id) then answers 404 for a row the user may not see, also before the body is read: a
    hidden ticket is 404 whatever is sent."""

    openapi_description = "A personal API token (cs_...), created on the API tokens page."

    def __init__(
        self,
        may: Callable[[Any], bool] | None = None,
        refusal: str = "",
        row: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        super().__init__()
        self.may, self.refusal, self.row = may, refusal, row

    def __call__(self, request: HttpRequest) -> ApiToken:
        token = authenticate(request)
        request.user = token.user
        request.api_token = token  # type: ignore[attr-defined]
        check_rate(request)
        if self.may is not None and not self.may(token.user):
            raise ApiError(403, "forbidden", self.refusal)
        if self.row is not None:
            match = request.resolver_match
            (row_id,) = match.kwargs.values() if match else (None,)
            self.row(token.user, row_id)  # Http404 for a row the user may not see
        return token

    def authenticate(self, request: HttpRequest, token: str) -> Any:  # pragma: no cover
        raise NotImplementedError  # __call__ does the whole check


def handle_exception(request: HttpRequest, exc: Exception) -> HttpResponse:
    """Every refusal as ``{"error": {...}}``; anything unexpected is logged and a JSON 500."""
    if isinstance(exc, ApiError):
        return error_response(
            exc.status, exc.code, exc.message, fields=exc.fields, headers=exc.headers
        )
    if isinstance(exc, Http404):
        return error_response(404, "not_found", str(exc) or "Not found.")
    if isinstance(exc, PermissionDenied):
        return error_response(403, "forbidden", str(exc) or "You may not do this.")
    if isinstance(exc, RequestDataTooBig | TooManyFieldsSent):
        raise exc  # config.request_limits answers it (413, with the limit)
    logger.exception(
        "API request failed",
        extra={"path": request.path, "method": request.method},
        exc_info=exc,
    )
    return error_response(
        500,
        "server_error",
        "The server failed on this request; it was logged. Try again later.",
    )


def plain_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A view outside ninja's operations (the catch-all 404, the document): no sign-in, no
    CSRF, every error as JSON."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except Exception as exc:
            return handle_exception(request, exc)

    return csrf_exempt(login_not_required(wrapper))
