"""Webhook deliveries: one attempt per task run, retried with backoff, swept if lost."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from notifications import channels
from notifications.models import WebhookDelivery

D = WebhookDelivery.Status


@shared_task(bind=True, ignore_result=True, max_retries=None, soft_time_limit=60, time_limit=90)
def deliver_webhook(self, delivery_id: int) -> str:  # noqa: ANN001 - Celery's bound task
    """Try the delivery once; schedule the next try with backoff while attempts remain
    (``WEBHOOK_MAX_ATTEMPTS``; the delivery row counts them, not Celery)."""
    outcome = channels.attempt(delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def send_due_webhooks() -> int:
    """Beat: re-send deliveries whose attempt is overdue by a minute (the broker lost the
    message, or was down when the event happened). The claim in ``attempt`` keeps this from
    sending twice what a task is sending now."""
    overdue = timezone.now() - timezone.timedelta(seconds=60)
    ids = list(
        WebhookDelivery.objects.filter(
            status__in=(D.PENDING, D.RETRYING), next_attempt_at__lte=overdue
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )
    for delivery_id in ids:
        channels.enqueue_delivery(delivery_id)
    return len(ids)
