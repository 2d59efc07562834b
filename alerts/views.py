"""The alerts page: unresolved alerts with what triggered them, paused users, and the
acknowledge / resolve / lift actions (each checked in reviews.access and audited)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from alerts import pauses, raising
from alerts.models import Alert, UserPause
from reviews import access

RECENTLY_RESOLVED = 20
UNRESOLVED_SHOWN = 200


@require_GET
@access.required(access.may_view_alerts)
def alert_list(request: HttpRequest) -> HttpResponse:
    unresolved = Alert.objects.filter(status__in=Alert.UNRESOLVED).select_related(
        "user", "acknowledged_by"
    )
    return render(
        request,
        "alerts/alerts.html",
        {
            "unresolved": unresolved.order_by("-opened_at")[
                :UNRESOLVED_SHOWN
            ],  # index alert_unresolved_recent
            "unresolved_count": unresolved.count(),
            "resolved": Alert.objects.filter(status=Alert.Status.RESOLVED)
            .select_related("resolved_by", "user")
            .order_by("-resolved_at")[:RECENTLY_RESOLVED],
            "pauses": UserPause.objects.filter(lifted_at__isnull=True).select_related(
                "user", "alert"
            ),
            "can_handle": access.may_handle_alerts(request.user),
            "can_lift": access.may_lift_pause(request.user),
        },
    )


def _act(request: HttpRequest, alert_id: int, move, done: str) -> HttpResponse:  # noqa: ANN001
    try:
        move(alert_id, request.user, request.POST.get("note", ""))
    except raising.AlertError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return redirect(f"{reverse('alert_list')}#alert-{alert_id}")


@require_POST
@access.required(access.may_handle_alerts)
def acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act(
        request,
        alert_id,
        raising.acknowledge,
        "Acknowledged: it stays on the page until it is resolved.",
    )


@require_POST
@access.required(access.may_handle_alerts)
def resolve(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _act(
        request,
        alert_id,
        raising.resolve,
        "Resolved. If the rule crosses again, a new alert opens.",
    )


@require_POST
@access.required(access.may_lift_pause)
def lift_pause(request: HttpRequest, pause_id: int) -> HttpResponse:
    try:
        paused = pauses.lift(pause_id, request.user, request.POST.get("note", ""))
    except pauses.PauseError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{paused.user.get_username()} may start runs again.")
    return redirect(reverse("alert_list"))
