"""Beat evaluates the alert rules; new alerts are notified right after their commit."""

from __future__ import annotations

from celery import shared_task

from alerts import raising


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def evaluate_alerts() -> int:
    """Every ALERTS_EVALUATE_SECONDS: open or update alerts, then notify the new ones (and any
    a crash left un-notified). Each alert is opened in its own transaction, so notifying
    happens after it committed."""
    opened = raising.evaluate_and_raise()
    raising.notify_pending()
    return len(opened)
