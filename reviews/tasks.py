"""Periodic work on the escalation queue."""

from __future__ import annotations

from celery import shared_task

from reviews import approvals, notifications, sla


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def escalate_overdue_tickets() -> int:
    """Overdue notices for every priority (P1 first, saying how late), and late P1 tickets
    escalated to the managers (reviews.sla). Returns the number of tickets reminded."""
    reminded, _escalated = sla.send_reminders()
    return reminded


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def notify_ticket_opened(ticket_id: int) -> None:
    notifications.ticket_opened(ticket_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def expire_approval_requests() -> int:
    """Expire approval requests nobody decided in time; their runs are cancelled."""
    return approvals.expire_overdue()
