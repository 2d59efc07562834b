"""The operations page, the daily digest and the dashboard's true counts."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from insight import digest, histogram, rollups
from insight.models import DigestDelivery
from notifications import channels
from notifications.models import WebhookDelivery, WebhookEndpoint
from reviews.models import ApprovalRequest, EscalationTicket
from tests.insight_factories import activity, model_call, nearest_rank, run_at, ticket, tool_call
from tests.test_notifications import receiver as receiver_fixture

receiver = receiver_fixture  # the local webhook receiver (a fixture of test_notifications)

pytestmark = pytest.mark.django_db


def _text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, element_id
    return match.group(1).strip()


def _row(html: str, attr: str, value: str) -> list[str]:
    match = re.search(rf'<tr {attr}="{re.escape(value)}">(.*?)</tr>', html, re.S)
    assert match, (attr, value)
    return [
        re.sub(r"<[^>]+>", "", c).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)
    ]


@pytest.fixture
def made(operator):
    made = activity(operator, [0, 2, 5, 9, 12])  # this week (7 days), and the week before
    rollups.fold()
    return made


def _in_days(when, first: int, last: int) -> bool:
    day = (timezone.localdate() - timezone.localtime(when).date()).days
    return first <= day <= last


def test_the_page_shows_the_sums_of_the_rows(client, manager, made):
    client.force_login(manager)
    page = client.get(reverse("operations"), {"days": 7}).content.decode()
    now_runs = [r for r in made.runs if _in_days(r.finished_at, 0, 6)]
    before_runs = [r for r in made.runs if _in_days(r.finished_at, 7, 13)]
    assert _text(page, "runs-ended") == str(len(now_runs))
    ended = [r for r in now_runs if r.status in ("succeeded", "failed", "halted", "cancelled")]
    rate = sum(r.status == "succeeded" for r in ended) / len(ended)
    assert _text(page, "success-rate") == f"{rate * 100:.1f}%"
    for status, n in Counter(r.status for r in now_runs).items():
        assert _row(page, "data-status", status)[1:] == [
            str(n),
            str(Counter(r.status for r in before_runs)[status]),
        ]
    cost = sum(
        (mc.cost_usd for mc in made.model_calls if _in_days(mc.created_at, 0, 6)), Decimal(0)
    )
    assert _text(page, "cost-total") == f"${cost:,.2f}"
    assert _text(page, "model-calls") == str(
        sum(_in_days(mc.created_at, 0, 6) for mc in made.model_calls)
    )
    assert _text(page, "tool-calls") == str(
        sum(_in_days(tc.created_at, 0, 6) for tc in made.tool_calls)
    )
    # Escalations by reason, this week and the week before.
    for reason in {t.reason for t in made.tickets}:
        now_n = sum(t.reason == reason and _in_days(t.created_at, 0, 6) for t in made.tickets)
        before_n = sum(t.reason == reason and _in_days(t.created_at, 7, 13) for t in made.tickets)
        assert _row(page, "data-reason", reason)[1:] == [str(now_n), str(before_n)]
    # Tool retries after a timeout, both weeks.
    retried = [tc for tc in made.tool_calls if tc.attempt > 1]
    assert _row(page, "data-reason", "tool_timeout")[1:] == [
        str(sum(_in_days(tc.created_at, 0, 6) for tc in retried)),
        str(sum(_in_days(tc.created_at, 7, 13) for tc in retried)),
    ]
    # p95 of a tool: in the bucket of the exact nearest rank.
    lat = [
        tc.latency_ms
        for tc in made.tool_calls
        if tc.name == "post_ledger" and _in_days(tc.created_at, 0, 6)
    ]
    shown = _row(page, "data-name", "post_ledger")
    assert shown[1] == str(len(lat))
    p95 = shown[3]
    lower, upper = histogram.bucket_range(nearest_rank(lat, 0.95))
    value = float(p95.split()[0]) * (1000 if p95.endswith(" s") else 1)
    assert lower - 1 < value <= upper + 1  # shown rounded to the ms (or 0.1 s)
    # The charts' data is on the page, for the vendored Chart.js.
    assert 'id="operations-data"' in page and "vendor/chartjs/chart.umd.min.js" in page


def test_a_workflow_filter_shows_only_its_figures(client, auditor, made):
    client.force_login(auditor)
    page = client.get(
        reverse("operations"), {"days": 30, "workflow": "payment_approval"}
    ).content.decode()
    runs = [
        r
        for r in made.runs
        if r.workflow_name == "payment_approval" and _in_days(r.finished_at, 0, 29)
    ]
    assert _text(page, "runs-ended") == str(len(runs))


def test_the_page_reads_the_same_number_of_queries_whatever_the_data(client, manager, operator):
    client.force_login(manager)
    activity(operator, [1], per_day=2)
    rollups.fold()
    with CaptureQueriesContext(connection) as small:
        assert client.get(reverse("operations")).status_code == 200
    activity(operator, [0, 2, 3], per_day=14, seed=3)
    rollups.fold()
    with CaptureQueriesContext(connection) as big:
        assert client.get(reverse("operations")).status_code == 200
    assert len(big.captured_queries) == len(small.captured_queries)
    tables = " ".join(q["sql"] for q in big.captured_queries)
    assert "orchestration_toolcall" not in tables and "orchestration_modelcall" not in tables


@pytest.mark.parametrize(
    "query, message",
    [
        ({"days": "5"}, "Unknown period"),
        ({"until": "yesterday"}, "is not a date"),
        ({"workflow": "nope"}, "No figures for a workflow named"),
    ],
)
def test_bad_queries_say_what_was_wrong(client, manager, made, query, message):
    client.force_login(manager)
    response = client.get(reverse("operations"), query)
    assert response.status_code == 400 and message in response.content.decode()


def test_operators_and_reviewers_may_not_see_it(client, operator, reviewer):
    for user in (operator, reviewer):
        client.force_login(user)
        assert client.get(reverse("operations")).status_code == 403
        assert b'href="/operations/"' not in client.get("/").content


def test_the_daily_digest_goes_to_the_managers_once(operator, manager, settings, made):
    settings.DAILY_DIGEST_HOUR = 7
    manager.email = "boss@example.com"
    manager.save()
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    morning = timezone.make_aware(dt.datetime.combine(timezone.localdate(), dt.time(8)))
    # Yesterday's activity, committed after the last fold: the digest refolds the day.
    # payment_approval names no recipients (financial_reporting names its finance team).
    late = run_at(
        operator,
        timezone.make_aware(dt.datetime.combine(yesterday, dt.time(12))),
        status="failed",
        workflow="payment_approval",
    )
    ticket(late, late.finished_at, "ambiguity")
    assert digest.send_daily_digests(now=morning - dt.timedelta(hours=2)) == []  # before 7:00
    sent = digest.send_daily_digests(now=morning)
    assert sent == ["payment_approval"]  # the only workflow active yesterday
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["boss@example.com"]
    body = mail.outbox[0].body
    assert "Runs ended: 1 (before: " in body and "failed: 1" in body and "ambiguity: 1" in body
    assert mail.outbox[0].subject.startswith(
        f"[Countersign] Daily report {yesterday:%Y-%m-%d}, payment_approval"
    )
    assert DigestDelivery.objects.get(workflow="payment_approval", day=yesterday).recipients == [
        "boss@example.com"
    ]
    assert digest.send_daily_digests(now=morning + dt.timedelta(hours=1)) == []  # once
    assert len(mail.outbox) == 1


def test_a_refused_digest_is_tried_again(operator, manager, settings, monkeypatch):
    manager.email = "boss@example.com"
    manager.save()
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    run_at(operator, timezone.make_aware(dt.datetime.combine(yesterday, dt.time(12))))

    def refuse(*args, **kwargs):
        raise OSError("mail server down")

    monkeypatch.setattr(digest, "deliver", refuse)
    assert digest.send_for_day(yesterday) == []
    assert not DigestDelivery.objects.exists()
    monkeypatch.undo()
    assert digest.send_for_day(yesterday) == ["financial_reporting"]


def test_the_digest_is_redacted_and_sent_to_subscribed_webhooks_signed(
    operator, manager, receiver, django_capture_on_commit_callbacks, monkeypatch
):
    # A workflow name carrying an address (the redaction rules' email pattern) and a tool
    # name carrying a card number: neither reaches the inbox or the webhook.
    manager.email = "boss@example.com"
    manager.save()
    workflow = "ledger_jane.doe@example.org"
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    when = timezone.make_aware(dt.datetime.combine(yesterday, dt.time(12)))
    run = run_at(operator, when, status="failed", workflow=workflow)
    mc = model_call(run, when, model="claude-opus-4-6", ms=100, cost="0.10")
    tool_call(run, mc, when, name="lookup 4111 1111 1111 1111", ms=5)
    hook = receiver(200)
    subscribed = WebhookEndpoint.objects.create(
        name="ops", url=hook.url, secret="digest-secret", events=["digest"]
    )
    WebhookEndpoint.objects.create(
        name="alerts only", url=hook.url, secret="x", events=["alert.opened"]
    )
    queued: list[int] = []
    monkeypatch.setattr(channels, "enqueue_delivery", lambda d, countdown=None: queued.append(d))
    with django_capture_on_commit_callbacks(execute=True):
        assert digest.send_for_day(yesterday) == [workflow]
    (email,) = mail.outbox
    sent = email.subject + email.body
    assert "jane.doe@example.org" not in sent and "4111 1111" not in sent
    assert "[REDACTED:email]" in email.subject and "[REDACTED:card]" in email.body
    assert "Runs ended: 1" in email.body and "failed: 1" in email.body
    (delivery,) = WebhookDelivery.objects.all()  # the subscribed endpoint only
    assert delivery.endpoint == subscribed and delivery.event == "digest"
    assert queued == [delivery.pk]
    assert channels.attempt(delivery.pk).status == "delivered"
    headers, body = hook.got[0]
    assert channels.verify(
        "digest-secret",
        headers["X-Countersign-Timestamp"],
        body,
        headers["X-Countersign-Signature"],
    )
    assert headers["X-Countersign-Event"] == "digest"
    payload = json.loads(body)
    assert payload["countersign"]["event"] == "digest" and payload["blocks"]
    assert "Runs ended: 1" in payload["text"]
    assert b"jane.doe@example.org" not in body and b"4111 1111" not in body
    # Once: a second check sends neither again.
    assert digest.send_for_day(yesterday) == []
    assert len(mail.outbox) == 1 and WebhookDelivery.objects.count() == 1


def test_a_digest_goes_to_a_webhook_even_without_email_recipients(operator, monkeypatch):
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    # payment_approval names no recipients, and no manager has an email address.
    get_user_model().objects.update(email="")
    when = timezone.make_aware(dt.datetime.combine(yesterday, dt.time(12)))
    run_at(operator, when, workflow="payment_approval")
    monkeypatch.setattr(channels, "enqueue_delivery", lambda d, countdown=None: None)
    assert digest.send_for_day(yesterday) == []  # nobody to send it to
    assert not DigestDelivery.objects.exists()
    WebhookEndpoint.objects.create(
        name="ops", url="http://127.0.0.1:9/", secret="s", events=["digest"]
    )
    assert digest.send_for_day(yesterday) == ["payment_approval"]
    assert not mail.outbox
    assert WebhookDelivery.objects.filter(event="digest").count() == 1


def test_the_digest_preview_shows_what_is_emailed(client, manager, made):
    client.force_login(manager)
    yesterday = timezone.localdate() - dt.timedelta(days=2)
    page = client.get(
        reverse("operations_digest"), {"workflow": "payment_approval", "day": yesterday.isoformat()}
    ).content.decode()
    subject, text = digest.build("payment_approval", yesterday)
    assert subject in page and "Daily report for payment_approval" in page


# --- the dashboard's tiles count everything (issue 15 §5) ------------------------------------


def test_dashboard_tiles_show_true_counts_above_ten(client, manager, reviewer, operator):
    now = timezone.now()
    for _ in range(13):
        run = run_at(operator, now, status="awaiting_review")
        EscalationTicket.objects.create(
            run=run, reason="ambiguity", message="m", context={}, due_at=now
        )
    for _ in range(11):
        run = run_at(operator, now, status="awaiting_approval")
        ApprovalRequest.objects.create(
            run=run,
            estimate_usd=Decimal("5"),
            threshold_usd=Decimal("1"),
            calculation={},
            requested_by=operator,
            expires_at=now + dt.timedelta(hours=1),
        )
    client.force_login(manager)
    page = client.get("/").content.decode()
    assert _text(page, "open-ticket-count") == "13"
    assert _text(page, "pending-approval-count") == "11"
    assert "(first 10 below)" in page
    client.force_login(reviewer)  # open tickets in the shared queue are the reviewer's too
    assert _text(client.get("/").content.decode(), "open-ticket-count") == "13"


def test_the_day_rows_of_both_periods_are_read_in_one_query(client, manager, operator):
    """Every kind's day rows of the period and the one before: one query, not one per kind
    and period (bench/dashboard.py, the 90-day page)."""
    client.force_login(manager)
    activity(operator, [0, 1, 8], per_day=3)
    rollups.fold()
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("operations"), {"days": 7}).status_code == 200
    day_reads = [
        q["sql"]
        for q in captured.captured_queries
        if 'FROM "insight_rollup"' in q["sql"] and "\"grain\" = 'day'" in q["sql"]
    ]
    assert len(day_reads) == 1
