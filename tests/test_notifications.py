"""Notifications: who is told what, after the commit; signed webhooks with retries and a
delivery log; redaction of every text."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from notifications import channels, recipients
from notifications.models import WebhookDelivery, WebhookEndpoint, WorkflowRecipient
from notifications.tasks import deliver_webhook, send_due_webhooks
from orchestration import lifecycle
from orchestration.models import Run
from reviews import notifications
from reviews.models import ApprovalRequest
from tests import alert_factories as f

pytestmark = pytest.mark.django_db
S = Run.Status


class Receiver:
    """A local HTTP server answering with the scripted statuses, recording what it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.got = list(statuses), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((dict(self.headers), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(*statuses: int) -> Receiver:
        made.append(Receiver(list(statuses)))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _endpoint(url: str, **kwargs) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name="ops", url=url, secret="s3cret-for-tests", **kwargs)


def _due(delivery_id: int) -> None:
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())


# --- webhooks ------------------------------------------------------------------------------------


def test_webhook_is_signed_over_timestamp_and_body(
    receiver, django_capture_on_commit_callbacks, monkeypatch
):
    hook = receiver(200)
    _endpoint(hook.url)
    sent: list[int] = []
    monkeypatch.setattr(channels, "enqueue_delivery", lambda d, countdown=None: sent.append(d))
    with django_capture_on_commit_callbacks(execute=True):
        ids = channels.queue_webhooks(
            "alert.opened", channels.slack_payload("alert.opened", "Alert", "Cost 3x")
        )
    assert sent == ids and len(ids) == 1  # sent after the commit
    assert channels.attempt(ids[0]).status == "delivered"
    headers, body = hook.got[0]
    payload = json.loads(body)
    assert payload["text"].startswith("*Alert*") and payload["blocks"][0]["type"] == "section"
    assert payload["countersign"]["event"] == "alert.opened"
    ts, signature = headers["X-Countersign-Timestamp"], headers["X-Countersign-Signature"]
    assert channels.verify("s3cret-for-tests", ts, body, signature)
    assert not channels.verify("another-secret", ts, body, signature)
    assert not channels.verify("s3cret-for-tests", ts, body + b" ", signature)
    assert not channels.verify(
        "s3cret-for-tests", ts, body, signature, now=int(ts) + 301
    )  # a replay, later
    delivery = WebhookDelivery.objects.get(pk=ids[0])
    assert (
        delivery.body.encode() == body
        and delivery.attempts == 1
        and delivery.last_status_code == 200
    )


def test_webhook_retries_with_backoff_until_delivered(receiver, settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 30
    hook = receiver(500, 503)
    _endpoint(hook.url)
    (delivery_id,) = channels.queue_webhooks("run.ended", {"text": "done"})
    first = channels.attempt(delivery_id)
    d = WebhookDelivery.objects.get(pk=delivery_id)
    assert first.status == "retrying" and 30 <= first.retry_in <= 33
    assert (
        d.attempts == 1
        and d.last_status_code == 500
        and d.next_attempt_at > timezone.now() + dt.timedelta(seconds=29)
    )
    assert channels.attempt(delivery_id).status == ""  # not due yet: nothing sent
    assert len(hook.got) == 1
    _due(delivery_id)
    second = channels.attempt(delivery_id)
    assert second.status == "retrying" and 60 <= second.retry_in <= 66  # doubled
    _due(delivery_id)
    assert channels.attempt(delivery_id).status == "delivered"
    d.refresh_from_db()
    assert d.attempts == 3 and d.status == "delivered" and d.delivered_at and len(hook.got) == 3
    # Every attempt signed afresh, over the same body.
    assert len({h["X-Countersign-Signature"] for h, _ in hook.got}) >= 1 and {
        b for _, b in hook.got
    } == {d.body.encode()}


def test_the_celery_task_retries_until_delivered(receiver, settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 0  # eager retries run at once
    hook = receiver(502, 500)
    _endpoint(hook.url)
    (delivery_id,) = channels.queue_webhooks("run.ended", {"text": "done"})
    deliver_webhook.apply((delivery_id,))
    d = WebhookDelivery.objects.get(pk=delivery_id)
    assert d.status == "delivered" and d.attempts == 3 and len(hook.got) == 3


def test_webhook_gives_up_after_max_attempts_and_on_a_refusal(receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    hook = receiver(500, 500)
    _endpoint(hook.url)
    (delivery_id,) = channels.queue_webhooks("run.ended", {"text": "done"})
    channels.attempt(delivery_id)
    _due(delivery_id)
    assert channels.attempt(delivery_id).status == "failed"
    assert WebhookDelivery.objects.get(pk=delivery_id).attempts == 2
    refusing = receiver(400)
    WebhookEndpoint.objects.update(url=refusing.url)
    (other,) = channels.queue_webhooks("run.ended", {"text": "done"})
    outcome = channels.attempt(other)
    assert outcome.status == "failed" and outcome.retry_in is None  # a 4xx is final
    assert "HTTP 400" in WebhookDelivery.objects.get(pk=other).last_error


def test_a_dead_receiver_is_retried_and_the_sweeper_finds_lost_deliveries(receiver, monkeypatch):
    _endpoint("http://127.0.0.1:9/nothing-listens")
    (delivery_id,) = channels.queue_webhooks("run.ended", {"text": "done"})
    outcome = channels.attempt(delivery_id)
    d = WebhookDelivery.objects.get(pk=delivery_id)
    assert outcome.status == "retrying" and d.last_status_code is None and "Connect" in d.last_error
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        next_attempt_at=timezone.now() - dt.timedelta(minutes=5)
    )
    swept: list[int] = []
    monkeypatch.setattr(channels, "enqueue_delivery", lambda d, countdown=None: swept.append(d))
    assert send_due_webhooks() == 1 and swept == [delivery_id]


def test_endpoints_filter_by_event_workflow_and_ticket_priority():
    _endpoint("http://127.0.0.1:9/a", events=["ticket.opened"], max_ticket_priority=1)
    _endpoint("http://127.0.0.1:9/b", workflow_name="wf_b")
    assert len(channels.queue_webhooks("ticket.opened", {}, workflow_name="wf_a", priority=1)) == 1
    assert len(channels.queue_webhooks("ticket.opened", {}, workflow_name="wf_a", priority=2)) == 0
    assert len(channels.queue_webhooks("ticket.opened", {}, workflow_name="wf_b", priority=2)) == 1
    assert len(channels.queue_webhooks("run.ended", {}, workflow_name="wf_a")) == 0


def test_webhook_and_email_texts_are_redacted(receiver):
    hook = receiver(200)
    _endpoint(hook.url)
    secret = "card 4111 1111 1111 1111 of jane@example.org"
    (delivery_id,) = channels.queue_webhooks(
        "run.ended", channels.slack_payload("run.ended", "Run", secret)
    )
    channels.attempt(delivery_id)
    body = hook.got[0][1].decode()
    assert "4111" not in body and "jane@example.org" not in body and "[REDACTED:card]" in body
    mail.outbox.clear()
    channels.send_email(["ops@example.com"], f"About {secret}", secret)
    assert "4111" not in mail.outbox[0].subject + mail.outbox[0].body
    assert "jane@example.org" not in mail.outbox[0].body


# --- who is told what ---------------------------------------------------------------------------------


def _approval(requester, workflow="wf_pay") -> ApprovalRequest:
    run = f.run(requester, workflow, S.REQUESTED, estimate="42.50")
    req = ApprovalRequest.objects.create(
        run=run,
        estimate_usd=Decimal("42.50"),
        threshold_usd=Decimal("20.00"),
        requested_by=requester,
        expires_at=timezone.now() + dt.timedelta(hours=24),
        calculation={
            "model": "claude-opus-4-6",
            "expected_usd": "30.00",
            "upper_usd": "42.50",
            "lines": [
                {"item": "Prompt", "calc": "1,200 tokens x $5/MTok", "usd": "$0.006000"},
                {"item": "Upper bound", "calc": "expected x 1.4", "usd": "$42.500000"},
            ],
        },
    )
    lifecycle.transition(run.pk, S.AWAITING_APPROVAL, actor=requester)
    return req


def test_a_transition_queues_the_notification_after_commit(
    django_capture_on_commit_callbacks, monkeypatch
):
    requester = f.person("req1", "operators")
    queued: list[tuple] = []
    monkeypatch.setattr(
        "reviews.tasks.notify_run_status.apply_async", lambda args, **kw: queued.append(args)
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        req = _approval(requester)
        assert queued == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert queued == [(str(req.run_id), S.REQUESTED, S.AWAITING_APPROVAL)]


def test_a_failing_notification_never_breaks_the_transition(
    django_capture_on_commit_callbacks, monkeypatch
):
    requester = f.person("req1", "operators")

    def broker_down(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr("reviews.tasks.notify_run_status.apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        req = _approval(requester)
    assert Run.objects.get(pk=req.run_id).status == S.AWAITING_APPROVAL


def test_managers_get_the_approval_request_with_the_calculation_and_a_link():
    requester = f.person("mgr_req", "managers")  # a manager requesting: four-eyes, not told
    f.person("mgr_other", "managers")
    f.person("rev", "reviewers")
    req = _approval(requester)
    mail.outbox.clear()
    assert notifications.run_status_changed(req.run_id, S.REQUESTED, S.AWAITING_APPROVAL) == 1
    (message,) = mail.outbox
    assert message.to == ["mgr_other@example.com"]
    assert "$42.50" in message.subject and "mgr_req" in message.subject
    assert "Prompt: 1,200 tokens x $5/MTok = $0.006000" in message.body
    assert "Upper bound $42.50 (approval threshold $20.00" in message.body
    assert f"http://127.0.0.1:8000/reviews/approvals/{req.pk}/" in message.body


def test_requesters_get_the_decision_and_the_end(monkeypatch):
    requester = f.person("req1", "operators")
    boss = f.person("boss", "managers")
    req = _approval(requester)
    monkeypatch.setattr("reviews.tasks.notify_run_status.apply_async", lambda *a, **kw: None)
    from reviews import approvals

    approvals.decide(req.pk, boss, approve=False, comment="Too expensive for a test")
    mail.outbox.clear()
    assert notifications.run_status_changed(req.run_id, S.AWAITING_APPROVAL, S.REJECTED) == 1
    (message,) = mail.outbox
    assert message.to == ["req1@example.com"] and "rejected by boss" in message.subject
    assert "Too expensive for a test" in message.body

    run = f.run(requester, "wf_end", S.FAILED, cost="1.25")
    Run.objects.filter(pk=run.pk).update(error="The tool timed out three times.")
    WorkflowRecipient.objects.create(
        workflow_name="wf_end", email="team@example.com", events=["run.ended"]
    )
    mail.outbox.clear()
    assert notifications.run_status_changed(run.pk, S.RUNNING, S.FAILED) == 2
    assert [m.to for m in mail.outbox] == [["req1@example.com"], ["team@example.com"]]
    assert "failed" in mail.outbox[0].subject and "$1.25" in mail.outbox[0].body
    assert "The tool timed out three times." in mail.outbox[0].body


def test_workflow_recipients_declared_in_code_and_in_the_admin():
    import tests.workflows_for_tests as wf

    WorkflowRecipient.objects.create(workflow_name="probe", email="all@example.com")
    WorkflowRecipient.objects.create(
        workflow_name="probe", email="runs@example.com", events=["run.ended"]
    )
    assert "oncall@example.com" in wf.PROBE_RECIPIENTS
    assert recipients.for_workflow("probe", "digest") == sorted(
        ["all@example.com", *wf.PROBE_RECIPIENTS]
    )
    assert recipients.for_workflow("probe", "run.ended") == ["runs@example.com"]
    with pytest.raises(ValueError, match="Unknown event"):
        recipients.for_workflow("probe", "everything")


def test_a_slow_receiver_times_out_and_is_retried(settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            time.sleep(1.5)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.handle_request, daemon=True).start()
    _endpoint(f"http://127.0.0.1:{server.server_address[1]}/slow")
    start = time.monotonic()
    (delivery_id,) = channels.queue_webhooks("run.ended", {"text": "x"})
    outcome = channels.attempt(delivery_id)
    elapsed = time.monotonic() - start
    server.server_close()
    assert outcome.status == "retrying" and elapsed < 1.4
    assert "Timeout" in WebhookDelivery.objects.get(pk=delivery_id).last_error


def test_ticket_notifications_reach_webhooks_by_priority():
    from reviews.models import EscalationTicket

    _endpoint("http://127.0.0.1:9/urgent-only", events=["ticket.opened"], max_ticket_priority=1)
    f.person("rev", "reviewers")
    requester = f.person("req1", "operators")
    urgent = f.ticket(
        f.run(requester, "wf_t"), timezone.now(), reason="regulatory_trigger", message="APRA"
    )
    routine = f.ticket(
        f.run(requester, "wf_t"), timezone.now(), reason="ambiguity", message="unsure"
    )
    EscalationTicket.objects.filter(pk=urgent.pk).update(priority=1)
    EscalationTicket.objects.filter(pk=routine.pk).update(priority=3)
    mail.outbox.clear()
    notifications.ticket_opened(routine.pk)
    notifications.ticket_opened(urgent.pk)
    assert [m.subject.split(" ")[1] for m in mail.outbox] == ["P3", "P1"]  # reviewers get both
    assert all(m.to == ["rev@example.com"] for m in mail.outbox)
    (delivery,) = WebhookDelivery.objects.all()  # the endpoint asked for P1 only
    assert json.loads(delivery.body)["countersign"]["priority"] == 1


def test_the_approval_page_of_the_email_link(client):
    requester = f.person("mgr_req", "managers")
    other = f.person("mgr_other", "managers")
    operator = f.person("op", "operators")
    req = _approval(requester)
    url = f"/reviews/approvals/{req.pk}/"
    assert client.get(url).status_code == 302  # signing in first
    client.force_login(operator)
    assert client.get(url).status_code == 403
    client.force_login(requester)
    page = client.get(url).content.decode()
    assert "another manager must decide it" in page and 'id="approval-decide"' not in page
    client.force_login(other)
    page = client.get(url).content.decode()
    assert 'id="approval-decide"' in page and "1,200 tokens x $5/MTok" in page
    answer = client.post(f"{url}decide/", {"decision": "approve", "next": "detail"})
    assert answer.status_code == 302 and answer["Location"] == url
    req.refresh_from_db()
    assert req.status == "approved" and req.decided_by == other


# --- the delivery log's "send again" in the admin ---------------------------------------------------


def test_send_again_in_the_admin_requeues_failed_deliveries_only(
    client, receiver, monkeypatch, settings
):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    settings.WEBHOOK_MAX_ATTEMPTS = 1
    hook = receiver(500, 200)
    _endpoint(hook.url)
    queued: list[int] = []
    monkeypatch.setattr(channels, "enqueue_delivery", lambda d, countdown=None: queued.append(d))
    failed, delivered = channels.queue_webhooks("run.ended", {"text": "done"}) + (
        channels.queue_webhooks("run.ended", {"text": "other"})
    )
    assert channels.attempt(failed).status == "failed"  # 500, and one attempt allowed
    assert channels.attempt(delivered).status == "delivered"
    queued.clear()
    changelist = reverse("admin:notifications_webhookdelivery_changelist")
    action = {"action": "send_again", "_selected_action": [failed, delivered]}

    # A manager sees the log but may not send again.
    manager = f.person("boss", "managers")
    client.force_login(manager)
    client.post(changelist, action)
    assert queued == [] and WebhookDelivery.objects.get(pk=failed).status == "failed"

    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root")
    client.force_login(root)
    response = client.post(changelist, action, follow=True)
    assert response.status_code == 200
    assert "1 failed deliverie(s) queued again." in response.content.decode()
    assert queued == [failed]  # the delivered one is left alone
    again = WebhookDelivery.objects.get(pk=failed)
    assert again.status == "retrying" and again.next_attempt_at <= timezone.now()
    assert WebhookDelivery.objects.get(pk=delivered).status == "delivered"
    settings.WEBHOOK_MAX_ATTEMPTS = 5
    assert channels.attempt(failed).status == "delivered"
    again.refresh_from_db()
    assert again.attempts == 2 and again.last_status_code == 200
