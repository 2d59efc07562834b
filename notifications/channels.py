"""The two channels: email through Django's mail backend, and signed webhooks.

Every text and payload goes through ``orchestration.privacy.redact`` first, the redaction
exports use, so a card number in a run's input never reaches an inbox or a chat channel.

Webhooks: the body is JSON, Slack-compatible (``text`` plus ``blocks``; the event's fields
under ``countersign``), and signed::

    X-Countersign-Timestamp: <unix seconds>
    X-Countersign-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The timestamp is inside the MAC, so a receiver that rejects old timestamps (``verify``, five
minutes by default) also rejects replays. Deliveries are rows (``WebhookDelivery``) created in
the caller's transaction and sent after commit by ``notifications.tasks.deliver_webhook``,
which retries with exponential backoff; nothing here blocks or fails the caller's step.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import smtplib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from notifications.models import WebhookDelivery, WebhookEndpoint
from orchestration.privacy import redact, redact_text

logger = logging.getLogger(__name__)
D = WebhookDelivery.Status

SIGNATURE_HEADER = "X-Countersign-Signature"
TIMESTAMP_HEADER = "X-Countersign-Timestamp"
EVENT_HEADER = "X-Countersign-Event"
# A claimed attempt holds the delivery this long (a worker killed mid-POST frees it after).
CLAIM_SECONDS = 120
# Answers worth another attempt; any other 4xx is final.
TRANSIENT_STATUSES = frozenset({408, 425, 429})
DELIVER_TASK = "notifications.tasks.deliver_webhook"


# --- email ----------------------------------------------------------------------------------


def send_email(recipients: Iterable[str], subject: str, body: str) -> int:
    """Email ``recipients`` (deduplicated, blanks dropped); returns how many were addressed.
    A mail server error is logged, never raised: the thing notified about has happened."""
    to = sorted({r.strip() for r in recipients if r and r.strip()})
    if not to:
        return 0
    try:
        send_mail(redact_text(subject), redact_text(body), settings.DEFAULT_FROM_EMAIL, to)
    except (OSError, smtplib.SMTPException) as exc:
        logger.warning("notification email %r failed: %s", subject, exc)
        return 0
    return len(to)


# --- webhook payloads and signatures ---------------------------------------------------------


def slack_payload(
    event: str, title: str, text: str, *, link: str = "", fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` and ``blocks``) that also carries the event's
    fields for machines (``countersign``). Redacted."""
    summary = f"*{title}*\n{text}" + (f"\n<{link}|Open in Countersign>" if link else "")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": summary}}
    ]
    if fields:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(fields.items())[:10]
                ],
            }
        )
    return redact(
        {
            "text": summary,
            "blocks": blocks,
            "countersign": {"event": event, "title": title, "link": link, **(fields or {})},
        }
    )


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does: the MAC matches (constant-time) and the timestamp is recent."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def queue_webhooks(
    event: str, payload: dict[str, Any], *, workflow_name: str = "", priority: int | None = None
) -> list[int]:
    """Create a delivery for every active endpoint that wants this event and send each after
    the caller's transaction commits. Returns the delivery ids."""
    return queue_each(
        event,
        lambda e: (
            payload if e.wants(event, workflow_name=workflow_name, priority=priority) else None
        ),
    )


def queue_each(
    event: str, payload_for: Callable[[WebhookEndpoint], dict[str, Any] | None]
) -> list[int]:
    """Like ``queue_webhooks``, for an event whose payload depends on the endpoint (a notice
    listing several tickets gives each endpoint the tickets it wants): ``payload_for(endpoint)``
    returns its payload, or None to send it nothing. Returns the delivery ids."""
    now = timezone.now()
    ids = []
    for endpoint in WebhookEndpoint.objects.filter(active=True):
        payload = payload_for(endpoint)
        if payload is None:
            continue
        body = json.dumps(redact(payload), sort_keys=True, separators=(",", ":"), default=str)
        ids.append(
            WebhookDelivery.objects.create(
                endpoint=endpoint, event=event, body=body, next_attempt_at=now
            ).pk
        )
    for delivery_id in ids:
        transaction.on_commit(lambda d=delivery_id: enqueue_delivery(d))
    return ids


def enqueue_delivery(delivery_id: int, countdown: float | None = None) -> None:
    """Hand the delivery to Celery (by task name: the tasks module imports this one); if the
    broker is down the sweeper (``send_due_webhooks``) sends it later."""
    try:
        current_app.send_task(DELIVER_TASK, args=(delivery_id,), countdown=countdown, retry=False)
    except Exception:  # noqa: BLE001 - the row stays due; notifications.tasks.send_due_webhooks picks it up
        logger.exception("could not queue webhook delivery %s", delivery_id)


# --- one attempt ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    status: str  # the delivery's status after this attempt ("" when it was not ours to try)
    retry_in: float | None = None  # seconds until the next attempt, when there is one


def backoff_seconds(attempts: int) -> float:
    """Exponential, capped, with up to 10% jitter so a failing receiver is not hit in step."""
    base = settings.WEBHOOK_BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)
    delay = min(base, settings.WEBHOOK_BACKOFF_MAX_SECONDS)
    return delay + random.uniform(0, delay / 10)  # noqa: S311 - jitter, not a secret


def attempt(delivery_id: int) -> Attempt:
    """Claim the delivery if an attempt is due, POST it, record the outcome.

    Claimed with a conditional update (status still open and due), so a redelivered task
    message or the sweeper racing the task sends it once; the HTTP request is made outside
    any transaction."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status__in=(D.PENDING, D.RETRYING), next_attempt_at__lte=now
    ).update(next_attempt_at=now + timezone.timedelta(seconds=CLAIM_SECONDS))
    if not claimed:
        return Attempt("")
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    body = delivery.body.encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(delivery.endpoint.secret, timestamp, body),
        EVENT_HEADER: delivery.event,
        "User-Agent": "Countersign-Webhooks/1",
    }
    code, error = None, ""
    try:
        response = httpx2.post(
            delivery.endpoint.url,
            content=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
        )
        code = response.status_code
        if code >= 300:
            error = f"HTTP {code}: {response.text[:200]}"
    except httpx2.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    attempts = delivery.attempts + 1
    fields: dict[str, Any] = {"attempts": attempts, "last_status_code": code, "last_error": error}
    retry_in = None
    if not error:
        fields |= {"status": D.DELIVERED, "delivered_at": timezone.now(), "next_attempt_at": None}
    elif (
        code is None or code >= 500 or code in TRANSIENT_STATUSES
    ) and attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        retry_in = backoff_seconds(attempts)
        fields |= {
            "status": D.RETRYING,
            "next_attempt_at": timezone.now() + timezone.timedelta(seconds=retry_in),
        }
    else:
        fields |= {"status": D.FAILED, "next_attempt_at": None}
        logger.warning(
            "webhook delivery %s to %s failed for good after %s attempt(s): %s",
            delivery_id,
            delivery.endpoint.name,
            attempts,
            error,
        )
    WebhookDelivery.objects.filter(pk=delivery_id).update(**fields)
    return Attempt(fields["status"], retry_in)
