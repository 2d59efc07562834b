"""Pausing a user's new runs after an attack-like anomaly, and lifting the pause.

A pause refuses every new run of the user at its start (``orchestration.launch.start_run``,
the one path the page, the API and the command take, under the start lock); runs already
started go on. Only a manager may lift it (reviews.access), never the paused user themselves,
and both moves are audit events.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.models import Alert, UserPause
from orchestration import audit
from reviews import access


class PauseError(Exception):
    """The pause could not be lifted; nothing was changed."""


def active_pause(user: Any) -> UserPause | None:
    if user is None or user.pk is None:
        return None
    return (
        UserPause.objects.filter(user_id=user.pk, lifted_at__isnull=True)
        .select_related("alert")
        .first()
    )


def start_refusal(user: Any) -> str | None:
    """Why ``user`` may not start a run now (a pause in force), or None."""
    pause = active_pause(user)
    if pause is None:
        return None
    return (
        f"Your new runs are paused since {timezone.localtime(pause.created_at):%Y-%m-%d %H:%M}: "
        f"{pause.reason} A manager must lift the pause before you can start runs again."
    )


def pause(user_id: int, *, reason: str, alert: Alert | None = None) -> UserPause | None:
    """Pause the user (inside the caller's transaction); None when a pause is already in force."""
    try:
        with transaction.atomic():
            paused = UserPause.objects.create(user_id=user_id, alert=alert, reason=reason)
    except IntegrityError:  # userpause_one_active: already paused
        return None
    audit.record(
        "user.paused",
        actor="alerts",
        payload={
            "user": user_id,
            "pause": paused.pk,
            "alert": alert.pk if alert else None,
            "reason": reason,
        },
    )
    return paused


def lift(pause_id: int, manager: Any, note: str = "") -> UserPause:
    note = note.strip()
    with transaction.atomic():
        paused = (
            UserPause.objects.select_for_update().select_related("user").filter(pk=pause_id).first()
        )
        if paused is None:
            raise PauseError("No such pause.")
        if why := access.lift_pause_refusal(manager, paused.user):
            raise PauseError(why)
        if paused.lifted_at is not None:
            raise PauseError(
                f"This pause was already lifted at {timezone.localtime(paused.lifted_at):%H:%M:%S}. "
                "Nothing was changed."
            )
        paused.lifted_by, paused.lifted_at, paused.lift_note = manager, timezone.now(), note
        paused.save(update_fields=["lifted_by", "lifted_at", "lift_note"])
        audit.record(
            "user.pause_lifted",
            actor=manager,
            payload={"user": paused.user_id, "pause": paused.pk, "note": note},
        )
    return paused
