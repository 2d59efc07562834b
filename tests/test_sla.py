"""SLA targets per reason (admin, with the old values as defaults), overdue notices for every
priority (P1 first, saying how late) at each priority's edge, escalation of late P1 tickets to
the managers after the grace period, and the queue's breaches per priority."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from notifications import channels
from notifications.checks import legacy_escalation_webhook
from notifications.models import WebhookDelivery, WebhookEndpoint
from orchestration.models import AuditEvent
from reviews import sla
from reviews.escalation import escalate
from reviews.models import EscalationTicket, SlaTarget
from reviews.tasks import escalate_overdue_tickets
from tests.audit_factories import make_run
from tests.test_notifications import receiver as receiver_fixture

receiver = receiver_fixture  # the local webhook receiver (a fixture of test_notifications)

NOW = timezone.make_aware(dt.datetime(2026, 12, 3, 12, 0, 0))
SECOND = dt.timedelta(seconds=1)
REASON_OF = {1: "regulatory_trigger", 2: "tool_error", 3: "ambiguity"}


@pytest.fixture
def emails(operator, reviewer, manager, settings):
    settings.ESCALATION_EMAILS = []
    settings.SLA_REMINDER_MINUTES = 60
    settings.SLA_P1_GRACE_MINUTES = 30
    for user in (reviewer, manager):
        user.email = f"{user.username}@example.com"
        user.save()
    mail.outbox.clear()


def _ticket(user, priority: int, due_at: dt.datetime) -> EscalationTicket:
    run = make_run(user, status="awaiting_review")
    return EscalationTicket.objects.create(
        run=run,
        reason=REASON_OF[priority],
        message="m",
        context={},
        priority=priority,
        due_at=due_at,
    )


def _reminded(outbox) -> str:
    return "\n".join(m.body for m in outbox if "overdue" in m.subject)


@pytest.mark.parametrize("priority", [1, 2, 3])
def test_overdue_notice_at_each_priority_edge(
    operator, emails, priority, django_capture_on_commit_callbacks
):
    before = _ticket(operator, priority, NOW + SECOND)  # due in a second: not late
    at = _ticket(operator, priority, NOW)  # due now: due, not late
    after = _ticket(operator, priority, NOW - SECOND)  # a second late
    with django_capture_on_commit_callbacks(execute=True):
        reminded, escalated = sla.send_reminders(NOW)
    assert (reminded, escalated) == (1, 0)
    for ticket, stamped in ((before, False), (at, False), (after, True)):
        ticket.refresh_from_db()
        assert (ticket.reminded_at == NOW) is stamped
        assert ticket.priority == priority and ticket.due_at in (NOW - SECOND, NOW, NOW + SECOND)
    [message] = mail.outbox
    assert message.subject == "[Countersign] 1 escalation(s) overdue"
    assert f"P{priority} " in message.body and "1 s late" in message.body
    assert reverse("ticket_detail", args=[after.pk]) in message.body
    assert sorted(message.to) == ["manager@example.com", "reviewer@example.com"]


def test_notice_lists_p1_first_and_says_how_late(
    operator, emails, django_capture_on_commit_callbacks
):
    p3 = _ticket(operator, 3, NOW - dt.timedelta(hours=5))
    p1 = _ticket(operator, 1, NOW - dt.timedelta(minutes=5))
    p2 = _ticket(operator, 2, NOW - dt.timedelta(hours=1, minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert sla.send_reminders(NOW)[0] == 3
    body = _reminded(mail.outbox)
    lines = [line for line in body.splitlines() if line.startswith("P")]
    assert [line[:2] for line in lines] == ["P1", "P2", "P3"]
    assert (
        "5 min late" in lines[0] and "1 h 05 min late" in lines[1] and "5 h 00 min late" in lines[2]
    )
    assert str(p1.pk) in lines[0] and str(p2.pk) in lines[1] and str(p3.pk) in lines[2]


def test_reminders_repeat_once_per_interval_not_every_minute(
    operator, emails, django_capture_on_commit_callbacks
):
    ticket = _ticket(operator, 2, NOW - dt.timedelta(minutes=10))
    with django_capture_on_commit_callbacks(execute=True):
        assert sla.send_reminders(NOW)[0] == 1
        assert sla.send_reminders(NOW + dt.timedelta(minutes=1))[0] == 0
        assert sla.send_reminders(NOW + dt.timedelta(minutes=59, seconds=59))[0] == 0
        assert sla.send_reminders(NOW + dt.timedelta(minutes=60))[0] == 1
    assert len([m for m in mail.outbox if "overdue" in m.subject]) == 2
    assert "1 h 10 min late" in mail.outbox[-1].body
    # Resolved: no more notices.
    EscalationTicket.objects.filter(pk=ticket.pk).update(status="resolved")
    assert sla.send_reminders(NOW + dt.timedelta(hours=5))[0] == 0


def test_late_p1_escalates_to_managers_after_the_grace(
    operator, manager, emails, django_capture_on_commit_callbacks
):
    grace = dt.timedelta(minutes=30)
    just_within = _ticket(operator, 1, NOW - grace)  # exactly the grace late: not yet
    past = _ticket(operator, 1, NOW - grace - SECOND)
    p2 = _ticket(operator, 2, NOW - dt.timedelta(hours=9))  # late, but only P1 escalates
    with django_capture_on_commit_callbacks(execute=True):
        reminded, escalated = sla.send_reminders(NOW)
    assert (reminded, escalated) == (3, 1)
    past.refresh_from_db()
    just_within.refresh_from_db()
    assert past.escalated_at == NOW and just_within.escalated_at is None
    assert EscalationTicket.objects.get(pk=p2.pk).escalated_at is None
    [to_managers] = [m for m in mail.outbox if "escalated to managers" in m.subject]
    assert to_managers.to == ["manager@example.com"]
    assert "30 min after their due time" in to_managers.body and "30 min late" in to_managers.body
    event = AuditEvent.objects.get(kind="ticket.sla_escalated")
    assert event.run_id == past.run_id and event.actor_label == "system"
    assert event.payload["ticket"] == past.pk and event.payload["late_seconds"] == 30 * 60 + 1
    # Once: the next run does not escalate it again.
    with django_capture_on_commit_callbacks(execute=True):
        assert sla.send_reminders(NOW + dt.timedelta(hours=2))[1] == 1  # the other one, now late
    assert (
        AuditEvent.objects.filter(kind="ticket.sla_escalated", payload__ticket=past.pk).count() == 1
    )


def test_overdue_and_escalated_notices_go_to_the_signed_webhooks(
    operator, manager, emails, receiver, django_capture_on_commit_callbacks, monkeypatch
):
    hook = receiver(200)
    every = WebhookEndpoint.objects.create(
        name="ops", url=hook.url, secret="sla-secret", events=["ticket.overdue", "ticket.escalated"]
    )
    urgent = WebhookEndpoint.objects.create(
        name="pager", url=hook.url, secret="x", events=["ticket.overdue"], max_ticket_priority=1
    )
    WebhookEndpoint.objects.create(  # another workflow's tickets only: gets nothing
        name="payments", url=hook.url, secret="x", workflow_name="payment_approval"
    )
    WebhookEndpoint.objects.create(  # subscribed to new tickets only: gets nothing
        name="new", url=hook.url, secret="x", events=["ticket.opened"]
    )
    queued: list[int] = []
    monkeypatch.setattr(channels, "enqueue_delivery", lambda d, countdown=None: queued.append(d))
    p3 = _ticket(operator, 3, NOW - dt.timedelta(hours=5))
    p1 = _ticket(operator, 1, NOW - dt.timedelta(minutes=30) - SECOND)  # past the P1 grace
    with django_capture_on_commit_callbacks(execute=True):
        assert sla.send_reminders(NOW) == (2, 1)
    deliveries = {(d.endpoint.name, d.event): d for d in WebhookDelivery.objects.all()}
    assert set(deliveries) == {
        ("ops", "ticket.overdue"),
        ("ops", "ticket.escalated"),
        ("pager", "ticket.overdue"),
    }
    assert sorted(queued) == sorted(d.pk for d in deliveries.values())  # after the commit

    def tickets(key: tuple[str, str]) -> list[int]:
        body = json.loads(deliveries[key].body)
        return [t["ticket"] for t in body["countersign"]["tickets"]]

    assert tickets(("ops", "ticket.overdue")) == [p1.pk, p3.pk]  # P1 first
    assert tickets(("pager", "ticket.overdue")) == [p1.pk]  # as urgent as it asked
    assert tickets(("ops", "ticket.escalated")) == [p1.pk]
    overdue = json.loads(deliveries[("ops", "ticket.overdue")].body)
    assert (
        overdue["text"].startswith("*2 escalation(s) overdue*")
        and "5 h 00 min late" in overdue["text"]
    )
    assert overdue["countersign"]["most_urgent"] == "P1" and overdue["blocks"]
    # Sent through the signed channel: HMAC over timestamp and body, a delivery log row.
    delivery = deliveries[("ops", "ticket.escalated")]
    assert channels.attempt(delivery.pk).status == "delivered"
    headers, body = hook.got[0]
    assert headers["X-Countersign-Event"] == "ticket.escalated"
    assert channels.verify(
        "sla-secret", headers["X-Countersign-Timestamp"], body, headers["X-Countersign-Signature"]
    )
    assert b"need a manager" in body
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.last_status_code == 200
    assert urgent.deliveries.count() == 1 and every.deliveries.count() == 2


def test_the_old_unsigned_webhook_setting_is_flagged_not_used(monkeypatch):
    monkeypatch.delenv("ESCALATION_WEBHOOK_URL", raising=False)
    assert legacy_escalation_webhook() == []
    monkeypatch.setenv("ESCALATION_WEBHOOK_URL", "https://hooks.example.com/old")
    (warning,) = legacy_escalation_webhook()
    assert warning.id == "notifications.W001" and "no longer read" in warning.msg


def test_the_beat_task_runs_the_reminders(operator, emails, django_capture_on_commit_callbacks):
    _ticket(operator, 1, timezone.now() - dt.timedelta(minutes=3))
    with django_capture_on_commit_callbacks(execute=True):
        assert escalate_overdue_tickets() == 1
        assert escalate_overdue_tickets() == 0
    assert any("3 min late" in m.body for m in mail.outbox)


def test_targets_seeded_with_the_old_defaults_and_used_for_new_tickets(operator):
    # The migration seeded one row per reason with the values the code held.
    seeded = {t.reason: (t.priority, t.due_minutes) for t in SlaTarget.objects.all()}
    assert seeded == {str(k): v for k, v in sla.DEFAULT_SLA.items()}
    SlaTarget.objects.filter(reason="ambiguity").update(priority=1, due_minutes=15)
    assert sla.sla_for("ambiguity") == (1, dt.timedelta(minutes=15))
    run = make_run(operator, status="running")
    before = timezone.now()
    ticket = escalate(run.pk, "ambiguity", "Which ledger?")
    assert ticket.priority == 1
    assert (
        before + dt.timedelta(minutes=15)
        <= ticket.due_at
        <= timezone.now() + dt.timedelta(minutes=15)
    )
    # A reason without a row falls back to the built-in default.
    SlaTarget.objects.filter(reason="step_limit").delete()
    assert sla.sla_for("step_limit") == (3, dt.timedelta(minutes=480))


def test_admin_edits_are_superuser_only_and_audited(client, manager, auditor, seeded):
    from django.contrib.auth import get_user_model

    target = SlaTarget.objects.get(reason="tool_error")
    url = reverse("admin:reviews_slatarget_change", args=[target.pk])
    client.force_login(manager)
    assert client.get(reverse("admin:reviews_slatarget_changelist")).status_code == 200  # sees them
    assert client.post(url, {"priority": 1, "due_minutes": 30}).status_code == 403
    root = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    client.force_login(root)
    response = client.post(url, {"priority": 1, "due_minutes": 30})
    assert response.status_code == 302
    target.refresh_from_db()
    assert (target.priority, target.due_minutes) == (1, 30)
    event = AuditEvent.objects.get(kind="sla.changed")
    assert event.actor_label == "root"
    assert event.payload == {"reason": "tool_error", "priority": 1, "due_minutes": 30,
                             "before": {"priority": 2, "due_minutes": 240}}  # fmt: skip
    # Out of range: refused with a message, nothing changed.
    response = client.post(url, {"priority": 4, "due_minutes": 0})
    assert response.status_code == 200 and b"less than or equal to 3" in response.content
    target.refresh_from_db()
    assert target.priority == 1 and AuditEvent.objects.filter(kind="sla.changed").count() == 1
    assert (
        client.post(reverse("admin:reviews_slatarget_delete", args=[target.pk])).status_code == 403
    )


def test_queue_shows_breaches_per_priority(client, manager, operator, settings):
    now = timezone.now()
    _ticket(operator, 1, now - dt.timedelta(minutes=1))
    _ticket(operator, 1, now - dt.timedelta(minutes=2))
    _ticket(operator, 3, now - dt.timedelta(minutes=2))
    _ticket(operator, 2, now + dt.timedelta(minutes=20))  # not overdue
    client.force_login(manager)
    response = client.get(reverse("ticket_queue"))
    assert response.context["counts"]["breaches"] == [(1, 2), (2, 0), (3, 1)]
    body = response.content.decode()
    assert "SLA breaches:" in body and 'href="?overdue=1&priority=1"' in body
    only = client.get(reverse("ticket_queue") + "?overdue=1&priority=1")
    assert [t.priority for t in only.context["page"]] == [1, 1]


def test_lateness_in_words():
    assert sla.lateness(NOW, NOW) == "not late"
    assert sla.lateness(NOW, NOW + SECOND) == "1 s late"
    assert sla.lateness(NOW, NOW + dt.timedelta(minutes=61)) == "1 h 01 min late"
    assert sla.lateness(NOW, NOW + dt.timedelta(days=2, hours=3)) == "2 d 3 h late"
