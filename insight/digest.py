"""The daily digest (the seed's "Daily report"): yesterday next to the day before, per
workflow, emailed to the workflow's recipients.

``send_daily_digests`` (beat, every DAILY_DIGEST_CHECK_SECONDS) sends yesterday's digest of
every workflow that had activity, once the local hour reaches DAILY_DIGEST_HOUR; a
``DigestDelivery`` row per workflow and day makes each one go out once, however often beat
asks. Before building a day's digest the day is refolded from the source rows, so a digest
is exact even for rows committed after the last fold.

Recipients: ``recipients(workflow)``. Until workflows name their own (issue 15 §3), the
managers with an email address. ``deliver`` is the one place that sends.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from insight import figures, rollups
from insight.models import DigestDelivery, Rollup
from notifications.recipients import for_workflow
from reviews import access

logger = logging.getLogger(__name__)


def recipients(workflow: str) -> list[str]:
    """Who gets this workflow's digest: the recipients the workflow names for ``digest`` (in
    code or in the admin), else the managers."""
    named = for_workflow(workflow, "digest")
    return named or list(access.users_who_get_digests().values_list("email", flat=True))


def page_link(workflow: str, day: dt.date) -> str:
    path = reverse("operations")
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{path}?days=1&until={day.isoformat()}&workflow={workflow}"


def build(workflow: str, day: dt.date) -> tuple[str, str]:
    """(subject, text) of one workflow's digest for one local day."""
    report = figures.report(figures.Period.ending(1, day), workflow)
    context = {
        "r": report,
        "day": day,
        "workflow": workflow,
        "link": page_link(workflow, day),
        "retry_rows": [(n, rollups.retry_reason_label(n), c) for n, c in report.retries.items()],
    }
    text = render_to_string("insight/digest.txt", context)
    rate = report.success_rate.current
    rate_text = "no run ended" if rate is None else f"{rate:.1%} succeeded"
    subject = f"[Countersign] Daily report {day:%Y-%m-%d}, {workflow}: {report.runs.current} runs ended, {rate_text}"
    return subject, text


def deliver(workflow: str, subject: str, text: str, to: list[str]) -> None:
    """Send one digest (the one function that does; point it elsewhere to change channels)."""
    send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, to)


def active_workflows(day: dt.date) -> list[str]:
    """Workflows with a run, model call, tool call or ticket that day."""
    return sorted(
        set(
            Rollup.objects.filter(
                grain=Rollup.Grain.DAY, start=rollups.local_day_start(day)
            ).values_list("workflow", flat=True)
        )
    )


def send_for_day(day: dt.date) -> list[str]:
    """Send the digest of ``day`` for every active workflow not sent yet; the workflows sent."""
    rollups.refold(day)
    sent = []
    for workflow in active_workflows(day):
        to = recipients(workflow)
        if not to:
            logger.warning(
                "daily digest of %s for %s: nobody to send it to (no manager has an email)",
                workflow,
                day,
            )
            continue
        try:
            # Claimed first (the unique row), sent after: no transaction is held open across
            # the mail server. A send that fails gives the claim back for the next check.
            with transaction.atomic():
                claim = DigestDelivery.objects.create(workflow=workflow, day=day, recipients=to)
        except IntegrityError:
            continue  # already sent
        subject, text = build(workflow, day)
        try:
            deliver(workflow, subject, text, to)
        except OSError as exc:
            claim.delete()
            logger.warning("daily digest of %s for %s not sent: %s", workflow, day, exc)
            continue
        sent.append(workflow)
    return sent


def send_daily_digests(now: dt.datetime | None = None) -> list[str]:
    """Yesterday's digests, once the local hour reaches DAILY_DIGEST_HOUR."""
    if not settings.DAILY_DIGEST_ENABLED:
        return []
    local = timezone.localtime(now or timezone.now())
    if local.hour < settings.DAILY_DIGEST_HOUR:
        return []
    return send_for_day(local.date() - dt.timedelta(days=1))
