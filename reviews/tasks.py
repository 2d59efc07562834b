"""Periodic work on the escalation queue, and the people's notifications (after commit)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from reviews import approvals, notifications, sla

logger = logging.getLogger(__name__)


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


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def notify_run_status(run_id: str, previous: str, target: str) -> int:
    return notifications.run_status_changed(run_id, previous, target)


def on_run_status_changed(
    sender: Any, run_id: str, previous: str, target: str, **kwargs: Any
) -> None:
    """orchestration.signals receiver (connected in reviews.apps; runs after the run's
    transition committed): queue the notification, never send it here."""
    if target not in notifications.RELEVANT:
        return
    try:
        # retry=False: with the broker down this fails at once instead of holding the web
        # request or the engine's step through Celery's publish retries.
        notify_run_status.apply_async((run_id, previous, target), retry=False)
    except Exception:  # noqa: BLE001 - the run moved whatever happens to its notification
        logger.exception(
            "could not queue the notification for run %s (%s -> %s)", run_id, previous, target
        )
