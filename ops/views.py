"""/healthz and /metrics: no login, no CSRF, no session (a probe sends no cookie)."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from ops import health, metrics


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every check passes, 503 otherwise; ``?check=database`` runs only the named checks."""
    names = request.GET.getlist("check")
    unknown = [n for n in names if n not in health.CHECKS]
    if unknown:
        return JsonResponse(
            {
                "error": {
                    "code": "invalid_query",
                    "message": f"Unknown check {', '.join(unknown)}; "
                    f"use {', '.join(health.CHECKS)}.",
                }
            },
            status=400,
        )
    report = health.run_checks(names or None)
    return JsonResponse(
        {"status": "ok" if report["ok"] else "fail", **report}, status=200 if report["ok"] else 503
    )


def _loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def may_read_metrics(request: HttpRequest) -> bool:
    """With METRICS_TOKEN set, only a scraper sending it; without one, loopback clients while
    debug is on, and nobody in production (see metrics_view)."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            sent.strip().encode(), token.encode()
        )
    return settings.DEBUG and _loopback(request)


def _text(body: str, status: int) -> HttpResponse:
    return HttpResponse(body + "\n", status=status, content_type="text/plain; charset=utf-8")


@login_not_required
@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN and not settings.DEBUG:
        # Production without a token: not served at all, not even to loopback (a proxy or a
        # sidecar on the same host would otherwise expose it).
        return _text("Not found. /metrics is off: set METRICS_TOKEN to serve it to scrapers.", 404)
    if not may_read_metrics(request):
        hint = (
            "Send 'Authorization: Bearer <METRICS_TOKEN>'."
            if settings.METRICS_TOKEN
            else "Without METRICS_TOKEN set, /metrics answers only loopback clients (debug only)."
        )
        return _text(f"Forbidden. {hint}", 403)
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
