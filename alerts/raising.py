"""An alert's life: opened once per rule and subject (deduplicated while unresolved),
notified once, acknowledged and resolved by a person. The only writer of ``Alert.status``.

open -> acknowledged | resolved; acknowledged -> resolved. Every move is an audit event
(``alert.opened``, ``alert.acknowledged``, ``alert.resolved``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from alerts import pauses
from alerts.models import Alert
from alerts.rules import Finding, evaluate
from notifications import channels, recipients
from orchestration import audit
from reviews import access

A = Alert.Status
logger = logging.getLogger(__name__)


class AlertError(Exception):
    """The move was refused; nothing was changed."""


def open_or_update(finding: Finding, now: dt.datetime | None = None) -> tuple[Alert, bool]:
    """Open an alert for the finding, or update the unresolved one with the same key.
    Returns (alert, opened). Only an opened alert is notified, and may pause a user."""
    now = now or timezone.now()
    with transaction.atomic():
        existing = (
            Alert.objects.select_for_update()
            .filter(key=finding.key, status__in=Alert.UNRESOLVED)
            .first()
        )
        if existing is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        rule=finding.rule,
                        key=finding.key,
                        workflow_name=finding.workflow_name,
                        user_id=finding.user_id,
                        title=finding.title[:300],
                        detail=finding.detail,
                        numbers=finding.numbers,
                        opened_at=now,
                        last_seen_at=now,
                    )
            except (
                IntegrityError
            ):  # alert_one_unresolved_per_key: a concurrent evaluation opened it
                existing = Alert.objects.select_for_update().get(
                    key=finding.key, status__in=Alert.UNRESOLVED
                )
            else:
                audit.record(
                    "alert.opened",
                    actor="alerts",
                    payload={
                        "alert": alert.pk,
                        "rule": alert.rule,
                        "key": alert.key,
                        "numbers": alert.numbers,
                    },
                )
                if finding.pause_user and finding.user_id:
                    pauses.pause(finding.user_id, alert=alert, reason=f"{finding.detail}")
                return alert, True
        existing.occurrences += 1
        existing.last_seen_at, existing.numbers, existing.detail = (
            now,
            finding.numbers,
            finding.detail,
        )
        existing.save(update_fields=["occurrences", "last_seen_at", "numbers", "detail"])
        return existing, False


def acknowledge(alert_id: int, user: Any, note: str = "") -> Alert:
    """Someone is on it: the alert stays unresolved (and keeps deduplicating)."""
    return _move(alert_id, user, A.ACKNOWLEDGED, (A.OPEN,), note)


def resolve(alert_id: int, user: Any, note: str = "") -> Alert:
    return _move(alert_id, user, A.RESOLVED, Alert.UNRESOLVED, note)


def _move(alert_id: int, user: Any, target: str, allowed_from: tuple[str, ...], note: str) -> Alert:
    if why := access.alert_refusal(user):
        raise AlertError(why)
    note = note.strip()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise AlertError("No such alert.")
        if alert.status not in allowed_from:
            raise AlertError(
                f"This alert is {alert.status} and cannot become {target}. Nothing was changed."
            )
        now = timezone.now()
        alert.status = target
        if target == A.ACKNOWLEDGED:
            alert.acknowledged_by, alert.acknowledged_at = user, now
        else:
            alert.resolved_by, alert.resolved_at = user, now
        if note:
            alert.note = f"{alert.note}\n{note}".strip()
        alert.save()
        audit.record(
            f"alert.{target}",
            actor=user,
            payload={"alert": alert.pk, "rule": alert.rule, "key": alert.key, "note": note},
        )
    return alert


def _link(alert: Alert) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{reverse('alert_list')}#alert-{alert.pk}"


def notify(alert_id: int) -> bool:
    """Tell managers, the workflow's recipients and the webhooks about a new alert, once:
    ``notified_at`` is claimed with a conditional update, so a second call (a redelivered
    task, the next evaluation) sends nothing."""
    if not Alert.objects.filter(pk=alert_id, notified_at__isnull=True).update(
        notified_at=timezone.now()
    ):
        return False
    alert = Alert.objects.get(pk=alert_id)
    subject = f"[Countersign] Alert: {alert.title}"
    text = (
        f"{alert.detail}\n\n"
        + "\n".join(f"{k}: {v}" for k, v in alert.numbers.items())
        + f"\n\n{_link(alert)}"
    )
    people = list(
        access.users_who_may_handle_alerts().exclude(email="").values_list("email", flat=True)
    )
    if alert.workflow_name:
        people += recipients.for_workflow(alert.workflow_name, "alert.opened")
    channels.send_email(people, subject, text)
    channels.queue_webhooks(
        "alert.opened",
        channels.slack_payload(
            "alert.opened",
            f"Alert: {alert.title}",
            alert.detail,
            link=_link(alert),
            fields={"rule": alert.rule, "workflow": alert.workflow_name, **alert.numbers},
        ),
        workflow_name=alert.workflow_name,
    )
    return True


def notify_pending() -> int:
    """Notify every alert not notified yet (new ones, and any a crash left behind)."""
    ids = list(Alert.objects.filter(notified_at__isnull=True).values_list("pk", flat=True)[:200])
    return sum(notify(pk) for pk in ids)


def evaluate_and_raise(now: dt.datetime | None = None) -> list[Alert]:
    """Evaluate every rule and open or update the alerts; returns the alerts opened."""
    opened = []
    for finding in evaluate(now):
        alert, is_new = open_or_update(finding, now)
        if is_new:
            opened.append(alert)
    return opened
