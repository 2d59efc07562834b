"""Telling people about escalations: email through Django's mail backend, an optional
Slack-compatible webhook, and a spike alert when escalations come in bursts.

Sending happens after the ticket is committed (on_commit) and never breaks the engine:
a failed delivery is logged and the ticket stays in the queue either way.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx2
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from reviews import access
from reviews.models import EscalationTicket

logger = logging.getLogger(__name__)


def _recipients() -> list[str]:
    configured = list(getattr(settings, "ESCALATION_EMAILS", []))
    if configured:
        return configured
    return list(
        access.users_who_may_resolve().exclude(email="").order_by().values_list("email", flat=True)
    )


def _post_webhook(text: str) -> None:
    url = getattr(settings, "ESCALATION_WEBHOOK_URL", "")
    if not url:
        return
    try:
        httpx2.post(url, json={"text": text}, timeout=5).raise_for_status()
    except httpx2.HTTPError as exc:
        logger.warning("escalation webhook failed: %s", exc)


def ticket_link(ticket: EscalationTicket) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{reverse('ticket_detail', args=[ticket.pk])}"


def _deliver(subject: str, text: str, recipients: list[str] | None = None) -> None:
    recipients = _recipients() if recipients is None else recipients
    if recipients:
        try:
            send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, recipients)
        except OSError as exc:
            logger.warning("escalation email failed: %s", exc)
    _post_webhook(f"*{subject}*\n{text}")


def ticket_opened(ticket_id: int) -> None:
    ticket = EscalationTicket.objects.select_related("run").filter(pk=ticket_id).first()
    if ticket is None:
        return
    subject = f"[Countersign] P{ticket.priority} {ticket.get_reason_display()}: {ticket.run.workflow_name}"
    _deliver(subject, f"{ticket.message}\n\nRun {ticket.run_id}, due {ticket.due_at:%Y-%m-%d %H:%M %Z}.\n{ticket_link(ticket)}")
    check_spike()


def check_spike(now: Any = None) -> bool:
    """Alert once per window when more than ESCALATION_SPIKE_COUNT tickets open within it."""
    now = now or timezone.now()
    window = settings.ESCALATION_SPIKE_WINDOW_SECONDS
    recent = EscalationTicket.objects.filter(created_at__gte=now - timezone.timedelta(seconds=window)).count()
    if recent < settings.ESCALATION_SPIKE_COUNT:
        return False
    # One alert per window, across processes.
    if not cache.add("escalation-spike-alerted", True, timeout=window):
        return False
    logger.warning("escalation spike: %s tickets in %ss", recent, window)
    _deliver(f"[Countersign] Escalation spike: {recent} in {window}s",
             "Escalations are spiking: investigate the workflows or the upstream systems now.")
    return True


def tickets_overdue(lines: list[str]) -> None:
    """One overdue notice: ``lines`` in order (reviews.sla puts P1 first and says how late)."""
    _deliver(f"[Countersign] {len(lines)} escalation(s) overdue", "\n".join(lines))


def tickets_escalated(lines: list[str], why: str) -> None:
    """Late P1 tickets, to the managers (reviews.sla, after the grace period)."""
    recipients = list(
        access.users_who_manage().exclude(email="").order_by().values_list("email", flat=True)
    )
    _deliver(
        f"[Countersign] {len(lines)} P1 escalation(s) overdue: escalated to managers",
        why + "\n\n" + "\n".join(lines),
        recipients=recipients,
    )
