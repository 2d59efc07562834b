"""Periodic work on the escalation queue."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from reviews import approvals, notifications
from reviews.models import EscalationTicket


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def escalate_overdue_tickets() -> int:
    """Raise the priority of overdue tickets (once per overdue period) and notify."""
    now = timezone.now()
    with transaction.atomic():
        overdue = list(
            EscalationTicket.objects.select_for_update(skip_locked=True)
            .exclude(status=EscalationTicket.Status.RESOLVED)
            .filter(due_at__lt=now, priority__gt=1)
            .values_list("pk", flat=True)
        )
        # Claimed with a conditional update: a ticket is bumped once per due period, then its
        # due time moves on, so the task can run every minute without spamming.
        EscalationTicket.objects.filter(pk__in=overdue).update(
            priority=F("priority") - 1, due_at=now + timezone.timedelta(hours=1))
        if overdue:
            transaction.on_commit(lambda: notifications.tickets_overdue(overdue))
    return len(overdue)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def notify_ticket_opened(ticket_id: int) -> None:
    notifications.ticket_opened(ticket_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def expire_approval_requests() -> int:
    """Expire approval requests nobody decided in time; their runs are cancelled."""
    return approvals.expire_overdue()
