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
    """With METRICS_TOKEN set, only a scraper sending it; without one, only loopback clients."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            sent.strip().encode(), token.encode()
        )
    return _loopback(request)


@login_not_required
@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not may_read_metrics(request):
        hint = (
            "Send 'Authorization: Bearer <METRICS_TOKEN>'."
            if settings.METRICS_TOKEN
            else "Without METRICS_TOKEN set, /metrics answers only loopback clients."
        )
        return HttpResponse(
            f"Forbidden. {hint}\n", status=403, content_type="text/plain; charset=utf-8"
        )
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
