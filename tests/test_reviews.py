"""The reviewers' journey: queue, claim, the ticket page, and each resolution driving the run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.db import connection
from django.urls import reverse

import tests.workflows_for_tests as test_workflows
from orchestration.launch import start_run
from orchestration.models import AuditEvent, Run
from reviews import notifications, resolutions
from reviews.models import EscalationTicket
from reviews.tasks import escalate_overdue_tickets
from warehouse.models import Payment, PublishedReport

S = Run.Status


@pytest.fixture
def paused(operator, drive):
    """A financial report paused on APRA violations (failing step: validate_apra)."""
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, operator))
    return run, run.tickets.get()


# --- who may see and do what ------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "status"),
    [("reviewer", 200), ("manager", 200), ("operator", 403), ("auditor", 403)],
)
def test_queue_access_by_role(client, request, paused, persona, status):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(reverse("ticket_queue")).status_code == status
    assert client.get(reverse("ticket_detail", args=[paused[1].pk])).status_code == status


def test_anonymous_is_sent_to_login(client, paused):
    assert client.get(reverse("ticket_queue")).status_code == 302
    assert client.post(reverse("ticket_claim", args=[paused[1].pk])).status_code == 302
    assert paused[1].status == "open"


def test_queue_lists_counts_and_filters(client, reviewer, paused):
    client.force_login(reviewer)
    body = client.get(reverse("ticket_queue")).content.decode()
    assert (
        "APRA validation found violations" in body
        and "regulatory trigger <strong>1</strong>" in body
    )
    assert "APRA" not in client.get(reverse("ticket_queue") + "?reason=ambiguity").content.decode()
    assert (
        "APRA"
        in client.get(
            reverse("ticket_queue") + "?assignee=nobody&workflow=financial_reporting"
        ).content.decode()
    )


def test_claim_in_place_with_htmx_updates_row_and_counters(client, reviewer, paused):
    ticket = paused[1]
    client.force_login(reviewer)
    response = client.post(
        reverse("ticket_claim", args=[ticket.pk]), headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert f'id="ticket-{ticket.pk}"' in body and "Unclaim" in body
    assert 'id="ticket-counts"' in body and 'hx-swap-oob="true"' in body
    ticket.refresh_from_db()
    assert ticket.status == "claimed" and ticket.assignee == reviewer
    assert AuditEvent.objects.filter(kind="ticket.claimed", actor=reviewer).exists()


def test_claim_without_htmx_redirects(client, reviewer, paused):
    client.force_login(reviewer)
    response = client.post(reverse("ticket_claim", args=[paused[1].pk]))
    assert response.status_code == 302


def test_get_on_an_action_is_refused(client, reviewer, paused):
    client.force_login(reviewer)
    assert client.get(reverse("ticket_claim", args=[paused[1].pk])).status_code == 405


def test_claimed_ticket_belongs_to_its_assignee_unless_a_manager_overrides(
    reviewer, manager, paused, django_user_model
):
    from django.contrib.auth.models import Group

    other = django_user_model.objects.create_user("reviewer2", password="x-reviewer-2")
    other.groups.add(Group.objects.get(name="reviewers"))
    ticket = resolutions.claim(paused[1].pk, reviewer)
    with pytest.raises(resolutions.ReviewError, match="claimed by reviewer"):
        resolutions.resolve(ticket.pk, other, "fail", comment="not mine")
    resolutions.resolve(ticket.pk, manager, "fail", comment="manager override")
    ticket.refresh_from_db()
    assert ticket.resolved_by == manager and ticket.assignee == reviewer


def test_claim_never_takes_a_ticket_someone_else_holds(client, reviewer, manager, paused):
    # A manager's Claim button on a queue page loaded before the reviewer claimed the ticket:
    # the reviewer keeps it (found by the load test: managers took tickets mid-resolution).
    ticket = resolutions.claim(paused[1].pk, reviewer)
    client.force_login(manager)
    response = client.post(
        reverse("ticket_claim", args=[ticket.pk]), headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "reviewer claimed this ticket first" in body and "assign it to yourself" in body
    assert "<td>reviewer</td>" in body
    ticket.refresh_from_db()
    assert ticket.assignee == reviewer and ticket.status == "claimed"
    assert AuditEvent.objects.filter(kind="ticket.claimed").count() == 1
    # Taking it over stays possible, explicitly.
    resolutions.assign(ticket.pk, manager, manager)
    ticket.refresh_from_db()
    assert ticket.assignee == manager


def test_claiming_your_own_ticket_again_changes_nothing(reviewer, paused):
    first = resolutions.claim(paused[1].pk, reviewer)
    again = resolutions.claim(paused[1].pk, reviewer)
    assert again.assignee == reviewer and again.claimed_at == first.claimed_at
    assert AuditEvent.objects.filter(kind="ticket.claimed").count() == 1


def test_assign_to_another_reviewer_in_place(client, manager, reviewer, paused):
    client.force_login(manager)
    response = client.post(
        reverse("ticket_assign", args=[paused[1].pk]),
        {"assignee": reviewer.pk},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    paused[1].refresh_from_db()
    assert paused[1].assignee == reviewer and paused[1].status == "claimed"


def test_operator_cannot_resolve(client, operator, paused):
    client.force_login(operator)
    response = client.post(reverse("ticket_resolve", args=[paused[1].pk]), {"action": "fail"})
    assert response.status_code == 403
    paused[0].refresh_from_db()
    assert paused[0].status == S.AWAITING_REVIEW


# --- the ticket page ---------------------------------------------------------------------


def test_ticket_page_shows_the_full_context(client, reviewer, paused):
    run, ticket = paused
    client.force_login(reviewer)
    body = client.get(reverse("ticket_detail", args=[ticket.pk])).content.decode()
    assert "2026-11-19" in body  # the run input
    assert f'id="tool-{ticket.failing_tool_call_id}"' in body and "failing step" in body
    for tool in ("fetch_transactions", "reconcile_ledger", "validate_apra"):
        assert tool in body
    assert "CPS234-KYC-01" in body  # the failing tool's output
    assert "Cost so far" in body and "Earlier resolutions" in body


# --- resolutions -------------------------------------------------------------------------


def test_correcting_a_tool_output_resumes_and_publishes(client, reviewer, paused, drive):
    run, ticket = paused
    client.force_login(reviewer)
    # The rules version it applies is part of validate_apra's output (issue 14 §5: re-run when it changes).
    corrected = json.dumps({"compliant": True, "violations": [], "rules_version": "1"})
    response = client.post(
        reverse("ticket_resolve", args=[ticket.pk]),
        {"action": "correct", "corrected": corrected, "comment": "KYC was verified offline"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200 and response["HX-Redirect"] == reverse(
        "run_detail", args=[run.pk]
    )
    run = drive(run)
    assert run.status == S.SUCCEEDED
    assert PublishedReport.objects.count() == 1
    correction = run.tool_calls.get(status="corrected")
    assert (
        correction.output == {"compliant": True, "violations": [], "rules_version": "1"}
        and correction.settled
    )
    event = AuditEvent.objects.get(kind="ticket.resolved")
    assert event.actor == reviewer and event.payload["comment"] == "KYC was verified offline"


@pytest.mark.parametrize(
    ("corrected", "message"),
    [
        ("{not json", "not valid JSON"),
        (
            '{"compliant": "yes", "violations": [], "rules_version": "1"}',
            "compliant: &#x27;yes&#x27; is not of type &#x27;boolean&#x27;",
        ),
        (
            '{"compliant": true, "violations": [{"rule_id": "R", "transaction_id": "T", "reason": "x"}], "rules_version": "1"}',
            "compliant is true but violations are listed",
        ),
        (
            '{"compliant": true, "violations": []}',
            "&#x27;rules_version&#x27; is a required property",
        ),
    ],
)
def test_invalid_correction_is_shown_inline_and_changes_nothing(
    client, reviewer, paused, corrected, message
):
    run, ticket = paused
    client.force_login(reviewer)
    response = client.post(
        reverse("ticket_resolve", args=[ticket.pk]),
        {"action": "correct", "corrected": corrected},
        headers={"HX-Request": "true"},
    )
    body = response.content.decode()
    assert response.status_code == 200 and "nothing was changed" in body and message in body
    assert "<html" not in body and corrected.replace('"', "&quot;") in body  # the edit is kept
    ticket.refresh_from_db()
    run.refresh_from_db()
    assert ticket.status == "open" and run.status == S.AWAITING_REVIEW
    assert not run.tool_calls.filter(status="corrected").exists()


def test_resume_gives_the_note_to_the_model(operator, reviewer, drive):
    run = drive(start_run("payment_approval", {"payment_id": "PAY-1003"}, operator))
    ticket = run.tickets.get()
    resolutions.resolve(ticket.pk, reviewer, "resume", note="Payee on the watchlist: reject")
    run = drive(run)
    assert run.status == S.SUCCEEDED and run.result["decision"] == "reject"
    assert Payment.objects.get(payment_id="PAY-1003").decision == "reject"
    next_turn = run.model_calls.get(turn=2).request_content
    assert next_turn[-1] == {
        "type": "text",
        "text": "Reviewer note: Payee on the watchlist: reject",
    }


def test_approving_after_manual_review_needs_a_sign_off_of_the_decision(operator, reviewer, drive):
    """The note is free text the model may ignore; an approval of a payment the validator sent
    to manual review is refused until a reviewer signs off that very record_decision call."""
    run = drive(start_run("payment_approval", {"payment_id": "PAY-1003"}, operator))
    resolutions.resolve(
        run.tickets.get().pk, reviewer, "resume", note="Payee cleared by sanctions team: approve"
    )
    run = drive(run)
    sign_off = run.tickets.get(status="open")
    assert run.status == S.AWAITING_REVIEW and sign_off.reason == "regulatory_trigger"
    assert "manual review" in sign_off.message
    assert Payment.objects.get(payment_id="PAY-1003").decision == ""
    resolutions.resolve(
        sign_off.pk, reviewer, "approve", comment="Sanctions team cleared the payee"
    )
    run = drive(run)
    assert run.status == S.SUCCEEDED and run.result["decision"] == "approve"
    assert Payment.objects.get(payment_id="PAY-1003").decision == "approve"
    assert list(run.tool_calls.filter(name="record_decision").values_list("status", "settled")) == [
        ("rejected", False),
        ("ok", True),
    ]


def test_resume_without_a_note_is_refused(reviewer, paused):
    with pytest.raises(resolutions.ReviewError, match="needs a note"):
        resolutions.resolve(paused[1].pk, reviewer, "resume")


def test_retry_runs_the_failed_step_again(operator, reviewer, drive, monkeypatch):
    run = drive(start_run("probe", {"mode": "broken"}, operator))
    assert run.tickets.get().reason == "retries_exhausted"
    monkeypatch.setitem(test_workflows.REPAIRED, "value", True)
    resolutions.resolve(run.tickets.get().pk, reviewer, "retry", comment="upstream is back")
    run = drive(run)
    assert run.status == S.SUCCEEDED
    assert list(run.tool_calls.filter(name="probe").values_list("status", flat=True)) == [
        "error"
    ] * 3 + ["ok"]


def test_approve_signs_off_the_side_effect_before_it_happens(operator, reviewer, drive, client):
    run = drive(start_run("payment_approval", {"payment_id": "PAY-1005"}, operator))
    ticket = run.tickets.get()
    assert ticket.reason == "regulatory_trigger" and "over $250,000" in ticket.message
    client.force_login(reviewer)  # the page offers no correction of a side effect's output
    page = client.get(reverse("ticket_detail", args=[ticket.pk])).content.decode()
    assert 'value="correct"' not in page and 'name="corrected"' not in page
    assert "record_decision has a side effect" in page and 'value="approve"' in page
    assert ticket.context["details"]["proposed_call"] == {
        "tool": "record_decision",
        "input": ticket.failing_tool_call.input,
    }
    assert (
        Payment.objects.get(payment_id="PAY-1005").decision == ""
    )  # nothing written before the sign-off
    resolutions.resolve(ticket.pk, reviewer, "approve", comment="Board approved the payment")
    event = AuditEvent.objects.get(run=run, kind="ticket.resolved")
    assert event.payload["signed_off"]["tool"] == "record_decision"
    run = drive(run)
    assert run.status == S.SUCCEEDED and run.result["amount"] == 300000.0
    assert Payment.objects.get(payment_id="PAY-1005").decision == "approve"
    assert run.tool_calls.filter(name="record_decision", status="ok").count() == 1


def test_approve_signs_off_a_proposed_result(operator, reviewer, drive, monkeypatch):
    """A final-answer regulatory trigger (computed from the recorded tool outputs) keeps the
    proposed result; approving it makes the run succeed with it."""
    import dataclasses

    from orchestration.workflows import registry

    workflow = registry.get("payment_approval")
    strict = dataclasses.replace(
        workflow,
        regulatory_trigger=lambda run_input, output, record: (
            "every recorded approval needs a second look"
            if "approve" in record.values("record_decision", "decision")
            else None
        ),
    )
    monkeypatch.setitem(registry._REGISTRY, "payment_approval", strict)
    run = drive(start_run("payment_approval", {"payment_id": "PAY-1001"}, operator))
    ticket = run.tickets.get()
    assert ticket.reason == "regulatory_trigger" and "second look" in ticket.message
    resolutions.resolve(ticket.pk, reviewer, "approve", comment="Looked twice")
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED and run.result["amount"] == 2500.0
    assert AuditEvent.objects.filter(run=run, kind="run.succeeded", actor=reviewer).exists()


def test_a_side_effects_output_cannot_be_supplied_by_a_correction(operator, reviewer, drive):
    run = drive(start_run("payment_approval", {"payment_id": "PAY-1005"}, operator))
    ticket = run.tickets.get()
    forged = json.dumps(
        {"recorded": True, "decision": "approve", "payment_id": "PAY-1005", "amount": 300000.0}
    )
    with pytest.raises(resolutions.InvalidCorrection, match="side effect"):
        resolutions.resolve(ticket.pk, reviewer, "correct", corrected=forged)
    ticket.refresh_from_db()
    run.refresh_from_db()
    assert ticket.status == "open" and run.status == S.AWAITING_REVIEW
    assert not run.tool_calls.filter(status="corrected").exists()


def test_fail_ends_the_run_with_the_reason(reviewer, paused):
    run, ticket = paused
    resolutions.resolve(ticket.pk, reviewer, "fail", comment="Report withheld")
    run.refresh_from_db()
    assert run.status == S.FAILED and "Report withheld" in run.error
    with pytest.raises(resolutions.ReviewError, match="already resolved"):
        resolutions.resolve(ticket.pk, reviewer, "retry")


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_resolutions_produce_exactly_one(reviewer, manager, paused):
    ticket = paused[1]
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def act(user, action):
        barrier.wait()
        try:
            resolutions.resolve(ticket.pk, user, action, comment=f"by {user}")
            outcomes.append(f"ok:{action}")
        except resolutions.ReviewError as exc:
            outcomes.append(f"refused:{exc}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=act, args=(reviewer, "fail")),
        threading.Thread(target=act, args=(manager, "approve")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(o.startswith("ok:") for o in outcomes) == 1
    assert any("already resolved" in o for o in outcomes)
    assert AuditEvent.objects.filter(kind="ticket.resolved").count() == 1


# --- deadlines and notifications ------------------------------------------------------------


def test_overdue_tickets_are_notified(paused, settings):
    # Overdue tickets keep their priority and their due time (the deadline lateness is measured
    # from) and get a notice once per SLA_REMINDER_MINUTES (tests/test_sla.py: every priority).
    from django.utils import timezone

    ticket = paused[1]
    due = timezone.now() - timezone.timedelta(minutes=5)
    EscalationTicket.objects.filter(pk=ticket.pk).update(priority=3, due_at=due)
    mail.outbox.clear()
    assert escalate_overdue_tickets() == 1
    ticket.refresh_from_db()
    assert ticket.priority == 3 and ticket.due_at == due and ticket.reminded_at is not None
    assert escalate_overdue_tickets() == 0  # once per reminder interval
    assert any("overdue" in m.subject and "5 min late" in m.body for m in mail.outbox)


def test_new_ticket_emails_reviewers_and_posts_the_webhook(paused, settings):
    # The webhook is a signed endpoint (the unsigned ESCALATION_WEBHOOK_URL is gone).
    from notifications import channels
    from notifications.models import WebhookEndpoint

    received: list[tuple[dict, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(
                (dict(self.headers), self.rfile.read(int(self.headers["Content-Length"])))
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    WebhookEndpoint.objects.create(
        name="tickets",
        url=f"http://127.0.0.1:{server.server_address[1]}/hook",
        secret="tickets-secret",
        events=["ticket.opened"],
    )
    mail.outbox.clear()
    notifications.ticket_opened(paused[1].pk)
    (delivery_id,) = WebhookEndpoint.objects.get().deliveries.values_list("pk", flat=True)
    assert channels.attempt(delivery_id).status == "delivered"
    server.server_close()
    assert mail.outbox and "regulatory trigger" in mail.outbox[0].subject
    assert "reviewer@example.com" in mail.outbox[0].to
    headers, body = received[0]
    assert "APRA validation found violations" in json.loads(body)["text"]
    assert channels.verify(
        "tickets-secret",
        headers["X-Countersign-Timestamp"],
        body,
        headers["X-Countersign-Signature"],
    )


def test_escalation_spike_is_an_alert_opened_once(operator, settings):
    # The spike email of reviews.notifications is now the escalation_burst alert rule (alerts):
    # one alert row per workflow and per user, notified once, deduplicated while unresolved.
    from alerts import raising
    from alerts.models import Alert
    from orchestration import lifecycle
    from reviews.escalation import escalate

    for i in range(3):
        run = start_run(
            "customer_router", {"customer_account": "ACC-100", "question": f"loan {i}"}, operator
        )
        lifecycle.transition(run.pk, S.RUNNING)
        escalate(run.pk, "ambiguity", "unsure")
    mail.outbox.clear()
    opened = raising.evaluate_and_raise()
    assert {a.key for a in opened} == {
        "escalation_burst:workflow:customer_router",
        f"escalation_burst:user:{operator.pk}",
    }
    assert raising.notify_pending() == 2
    assert raising.evaluate_and_raise() == [] and raising.notify_pending() == 0
    assert Alert.objects.get(key="escalation_burst:workflow:customer_router").occurrences == 2
    assert sum("escalations" in m.subject for m in mail.outbox) == 2


def test_correcting_the_final_output_validates_it_against_the_workflow_schema(
    operator, reviewer, drive
):
    run = drive(start_run("probe", {"mode": "fake_id"}, operator))
    ticket = run.tickets.get()
    assert ticket.reason == "hallucination"
    assert resolutions.correction_target(ticket)["kind"] == "final"
    with pytest.raises(resolutions.InvalidCorrection, match="'receipt' is a required property"):
        resolutions.resolve(ticket.pk, reviewer, "correct", corrected='{"value": 7}')
    resolutions.resolve(
        ticket.pk,
        reviewer,
        "correct",
        corrected='{"value": 7, "receipt": "RCPT-MANUAL-1"}',
        comment="Receipt issued by hand",
    )
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED and run.result == {"value": 7, "receipt": "RCPT-MANUAL-1"}
