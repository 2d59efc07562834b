"""The API tokens page: a signed-in user creates and revokes their own tokens.

The secret is rendered once, in the response to the POST that created it, and never
stored: a reload shows only its first characters. Creating one asks for the password again
(a session left open on a shared screen is not enough to mint a long-lived credential; wrong
passwords count towards the sign-in lockout, django-axes), and the owner picks how many days it
lasts (API_TOKEN_DEFAULT_DAYS by default, API_TOKEN_MAX_DAYS at most).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from api.models import ApiToken
from orchestration import untrusted

NAME_MAX = ApiToken._meta.get_field("name").max_length


def _page(
    request: HttpRequest,
    *,
    secret: str = "",
    created: ApiToken | None = None,
    error: str = "",
    name: str = "",
    days: str = "",
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
            "days": days or settings.API_TOKEN_DEFAULT_DAYS,
            "max_days": settings.API_TOKEN_MAX_DAYS,
        },
        status=status,
    )


@require_GET
def tokens(request: HttpRequest) -> HttpResponse:
    return _page(request)


def _password_confirmed(request: HttpRequest, password: str) -> bool:
    # authenticate() goes through django-axes: a wrong password here is a failed sign-in.
    user = authenticate(request, username=request.user.get_username(), password=password)
    return user is not None and user.pk == request.user.pk


@require_POST
def create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    days_text = request.POST.get("days", "").strip() or str(settings.API_TOKEN_DEFAULT_DAYS)
    password = request.POST.get("password", "")

    def refuse(error: str) -> HttpResponse:
        return _page(request, error=error, name=name, days=days_text, status=422)

    if not name:
        return refuse("Give the token a name that says what uses it.")
    if len(name) > NAME_MAX:
        return refuse(f"Keep the name under {NAME_MAX} characters.")
    try:  # a NUL would reach Postgres (a DataError, a 500)
        untrusted.check_text(name, "name", max_length=NAME_MAX)
    except untrusted.Rejected as exc:
        return refuse(f"The name: {exc.fields['name']}.")
    max_days = settings.API_TOKEN_MAX_DAYS
    try:
        days = untrusted.whole_number(days_text, "days", minimum=1, maximum=max_days)
    except untrusted.Rejected:
        shown = untrusted.printable(days_text[:40])
        return refuse(f"A token lasts from 1 to {max_days} days; “{shown}” is not that.")
    if not password:
        return refuse("Type your password to create a token.")
    if not _password_confirmed(request, password):
        # Locked out (too many wrong passwords, here or at sign-in): django-axes' middleware
        # answers with its lockout page instead of this one.
        return refuse("That is not your password. No token was created.")
    live = ApiToken.objects.filter(user=request.user, name=name, revoked_at__isnull=True).first()
    if live is not None and live.is_expired:
        return refuse(
            f"Your token “{name}” has expired but still holds the name: revoke it below, or pick "
            "another name."
        )
    try:
        with transaction.atomic():
            token, secret = ApiToken.issue(request.user, name, days=days)
    except IntegrityError:
        return refuse(f"You already have an active token named “{name}”. Pick another name.")
    return _page(request, secret=secret, created=token)


@require_POST
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    # Another user's token answers 404, like any object that is not yours.
    token = ApiToken.objects.filter(pk=token_id, user=request.user).first()
    if token is None:
        raise Http404("No such token.")
    if token.revoke():
        messages.success(
            request,
            f"Token “{untrusted.printable(token.name)}” revoked: requests using it now get 401.",
        )
    else:
        messages.info(request, f"Token “{untrusted.printable(token.name)}” was already revoked.")
    return redirect("api_tokens")
