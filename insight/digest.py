"""The daily digest (the seed's "Daily report"): yesterday next to the day before, per
workflow, emailed to the workflow's recipients.

``send_daily_digests`` (beat, every DAILY_DIGEST_CHECK_SECONDS) sends yesterday's digest of
every workflow that had activity, once the local hour reaches DAILY_DIGEST_HOUR; a
``DigestDelivery`` row per workflow and day makes each one go out once, however often beat
asks. Before building a day's digest the day is refolded from the source rows, so a digest
is exact even for rows committed after the last fold.

Recipients: ``recipients(workflow)``: the addresses the workflow names for ``digest`` (in its
code, ``Workflow.recipients``, or as *Workflow recipient* rows of the admin), else the managers
with an email address. ``deliver`` is the one place that sends: by email through
``notifications.channels.send_email`` and to the webhook endpoints subscribed to ``digest``
(signed, Slack-compatible, with a delivery row each), both redacted like exports.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from insight import figures, rollups
from insight.models import DigestDelivery, Rollup
from notifications import channels
from notifications.models import WebhookEndpoint
from notifications.recipients import for_workflow
from reviews import access

logger = logging.getLogger(__name__)
SLACK_TEXT_LIMIT = 2500


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


def has_webhooks(workflow: str) -> bool:
    """Whether an active webhook endpoint wants this workflow's digest."""
    return any(
        e.wants("digest", workflow_name=workflow)
        for e in WebhookEndpoint.objects.filter(active=True)
    )


def deliver(workflow: str, day: dt.date, subject: str, text: str, to: list[str]) -> None:
    """Send one digest (the one function that does): email to ``to``, then a signed delivery
    to every webhook endpoint subscribed to ``digest``. Both channels redact the text. Raises
    OSError when the mail is not sent (the caller gives its claim back; no webhook is queued,
    so the next try sends both once)."""
    if to and not channels.send_email(to, subject, text):
        raise OSError(f"the daily digest email of {workflow} for {day} was not sent")
    channels.queue_webhooks(
        "digest",
        channels.slack_payload(
            "digest",
            subject.removeprefix("[Countersign] "),
            # Slack refuses a section over 3,000 characters; the link has the whole report.
            text if len(text) <= SLACK_TEXT_LIMIT else text[:SLACK_TEXT_LIMIT] + "\n...",
            link=page_link(workflow, day),
            fields={"workflow": workflow, "day": day.isoformat()},
        ),
        workflow_name=workflow,
    )


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
        if not to and not has_webhooks(workflow):
            logger.warning(
                "daily digest of %s for %s: nobody to send it to (no manager has an email, "
                "no webhook endpoint is subscribed to digest)",
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
            deliver(workflow, day, subject, text, to)
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
