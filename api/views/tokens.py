"""The API tokens page: a signed-in user creates and revokes their own tokens.

The secret is rendered once, in the response to the POST that created it, and never
stored: a reload shows only its first characters.
"""

from __future__ import annotations

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from api.models import ApiToken

NAME_MAX = ApiToken._meta.get_field("name").max_length


def _page(
    request: HttpRequest,
    *,
    secret: str = "",
    created: ApiToken | None = None,
    error: str = "",
    name: str = "",
    status: int = 200,
) -> HttpResponse:
    # Active tokens first (revoked_at is NULL), newest first within each group.
    tokens = ApiToken.objects.filter(user=request.user).order_by(
        F("revoked_at").desc(nulls_first=True), "-created_at"
    )
    return render(
        request,
        "api/tokens.html",
        {
            "tokens": tokens,
            "secret": secret,
            "created": created,
            "error": error,
            "name": name,
        },
        status=status,
    )


@require_GET
def tokens(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
def create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    if not name:
        return _page(request, error="Give the token a name that says what uses it.", status=422)
    if len(name) > NAME_MAX:
        return _page(
            request, error=f"Keep the name under {NAME_MAX} characters.", name=name, status=422
        )
    try:
        with transaction.atomic():
            token, secret = ApiToken.issue(request.user, name)
    except IntegrityError:
        return _page(
            request,
            error=f"You already have an active token named “{name}”. Pick another name.",
            name=name,
            status=422,
        )
    return _page(request, secret=secret, created=token)


@require_POST
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    # Another user's token answers 404, like any object that is not yours.
    token = ApiToken.objects.filter(pk=token_id, user=request.user).first()
    if token is None:
        raise Http404("No such token.")
    if token.revoke():
        messages.success(request, f"Token “{token.name}” revoked: requests using it now get 401.")
    else:
        messages.info(request, f"Token “{token.name}” was already revoked.")
    return redirect("api_tokens")
