"""The approval gate: threshold edges, four-eyes, one decision per request, expiry, the queue."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from orchestration.launch import preview, start_run
from orchestration.models import AuditEvent, Run
from reviews import approvals
from reviews.models import ApprovalRequest

INPUT = '{"date": "2026-11-12"}'


@pytest.fixture
def no_enqueue(monkeypatch):
    enqueued = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: enqueued.append(str(run_id)),
    )
    return enqueued


@pytest.fixture
def upper(operator) -> Decimal:
    """The deterministic upper estimate of the financial_reporting run these tests start."""
    return preview("financial_reporting", INPUT, operator).estimate.upper_usd


@pytest.fixture
def waiting(operator, settings, no_enqueue) -> Run:
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    return start_run("financial_reporting", INPUT, operator)


def test_an_estimate_equal_to_the_threshold_starts_and_one_micro_dollar_over_waits(
    operator, settings, upper, no_enqueue, django_capture_on_commit_callbacks
):
    settings.APPROVAL_THRESHOLD_USD = upper
    with django_capture_on_commit_callbacks(execute=True):
        at = start_run("financial_reporting", INPUT, operator)
    assert at.status == Run.Status.QUEUED and not at.approvals.exists()

    settings.APPROVAL_THRESHOLD_USD = upper - Decimal("0.000001")
    with django_capture_on_commit_callbacks(execute=True):
        over = start_run("financial_reporting", INPUT, operator)
    assert over.status == Run.Status.AWAITING_APPROVAL
    req = over.approvals.get()
    assert req.status == ApprovalRequest.Status.PENDING
    assert (
        req.estimate_usd == upper
        and req.threshold_usd == settings.APPROVAL_THRESHOLD_USD.quantize(Decimal("0.01"))
    )
    assert [line["item"] for line in req.calculation["lines"]][-1] == "Upper bound"
    assert no_enqueue == [str(at.pk)]  # nothing of the waiting run was enqueued: no token spent


def test_approval_queues_the_run_on_commit(
    waiting, manager, django_capture_on_commit_callbacks, no_enqueue
):
    with django_capture_on_commit_callbacks(execute=True):
        req = approvals.decide(waiting.approvals.get().pk, manager, approve=True, comment="fine")
    waiting.refresh_from_db()
    assert req.status == "approved" and req.decided_by == manager and req.comment == "fine"
    assert waiting.status == Run.Status.QUEUED
    assert no_enqueue == [str(waiting.pk)]
    kinds = list(AuditEvent.objects.filter(run=waiting).values_list("kind", flat=True))
    assert "approval.decided" in kinds


def test_rejection_is_final_and_tells_the_requester_why(waiting, manager, client, operator):
    with pytest.raises(approvals.ApprovalError, match="Say why"):
        approvals.decide(waiting.approvals.get().pk, manager, approve=False, comment="  ")
    approvals.decide(
        waiting.approvals.get().pk, manager, approve=False, comment="Use the weekly report instead"
    )
    waiting.refresh_from_db()
    assert waiting.status == Run.Status.REJECTED and waiting.is_final
    assert "Use the weekly report instead" in waiting.error
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[waiting.pk])).content.decode()
    assert "Use the weekly report instead" in page and "Approval rejected by manager" in page


def test_four_eyes_the_requester_cannot_approve_even_as_a_manager(manager, settings, no_enqueue):
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    own = start_run("financial_reporting", INPUT, manager)
    req = own.approvals.get()
    with pytest.raises(approvals.ApprovalError, match="four-eyes"):
        approvals.decide(req.pk, manager, approve=True)
    outcome = approvals.approve_many([req.pk], manager)
    assert outcome.approved == [] and "four-eyes" in outcome.refused[req.pk]
    req.refresh_from_db()
    own.refresh_from_db()
    assert req.status == "pending" and own.status == Run.Status.AWAITING_APPROVAL


def test_operators_and_reviewers_cannot_decide(waiting, operator, reviewer, auditor):
    for user in (operator, reviewer, auditor):
        with pytest.raises(approvals.ApprovalError, match="Only managers"):
            approvals.decide(waiting.approvals.get().pk, user, approve=True)
    assert waiting.approvals.get().status == "pending"


@pytest.mark.django_db(transaction=True)
def test_two_managers_clicking_at_once_make_one_decision(seeded, settings, monkeypatch):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    enqueued = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: enqueued.append(run_id),
    )
    User = get_user_model()
    operator = User.objects.get(username="operator")
    managers = [
        User.objects.get(username="manager"),
        User.objects.create_user("manager2", password="x-m2-123456"),
    ]
    managers[1].groups.add(Group.objects.get(name="managers"))
    run = start_run("financial_reporting", INPUT, operator)
    req_id = run.approvals.get().pk
    barrier = threading.Barrier(2)
    results: list[str] = []

    def click(user, approve):
        try:
            barrier.wait()
            approvals.decide(req_id, user, approve=approve, comment="both clicked")
            results.append("decided")
        except approvals.ApprovalError as exc:
            results.append(str(exc))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=click, args=(managers[0], True)),
        threading.Thread(target=click, args=(managers[1], False)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("decided") == 1
    assert any("already" in r for r in results)
    run.refresh_from_db()
    assert run.status in (Run.Status.QUEUED, Run.Status.REJECTED)
    assert len(enqueued) == (1 if run.status == Run.Status.QUEUED else 0)
    assert AuditEvent.objects.filter(run=run, kind="approval.decided").count() == 1


def test_requests_expire_and_their_runs_are_cancelled(waiting, manager, settings):
    req = waiting.approvals.get()
    lifetime = req.expires_at - req.created_at
    assert abs(lifetime - dt.timedelta(hours=settings.APPROVAL_EXPIRY_HOURS)) < dt.timedelta(
        seconds=1
    )
    assert approvals.expire_overdue() == 0
    ApprovalRequest.objects.filter(pk=req.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert approvals.expire_overdue() == 1
    req.refresh_from_db()
    waiting.refresh_from_db()
    assert req.status == "expired" and waiting.status == Run.Status.CANCELLED
    assert "expired" in waiting.error
    with pytest.raises(approvals.ApprovalError, match="already expired"):
        approvals.decide(req.pk, manager, approve=True)
    assert approvals.expire_overdue() == 0


def test_deciding_a_request_past_its_deadline_expires_it_instead(waiting, manager):
    req = waiting.approvals.get()
    ApprovalRequest.objects.filter(pk=req.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    with pytest.raises(approvals.ApprovalError, match="expired"):
        approvals.decide(req.pk, manager, approve=True)
    req.refresh_from_db()
    waiting.refresh_from_db()
    assert req.status == "expired" and waiting.status == Run.Status.CANCELLED


# --- the queue -----------------------------------------------------------------------


def test_queue_shows_the_calculation_and_the_requesters_recent_spend(client, waiting, manager):
    Run.objects.filter(pk=waiting.pk).update(cost_usd=Decimal("0"))
    earlier = Run.objects.create(
        workflow_version=waiting.workflow_version,
        workflow_name="financial_reporting",
        requested_by=waiting.requested_by,
        input={},
        cost_usd=Decimal("3.25"),
    )
    assert earlier.pk
    client.force_login(manager)
    page = client.get(reverse("approval_queue")).content.decode()
    assert "The calculation" in page and "count_tokens on the rendered prompt" in page
    assert "2 runs, $3.25 in 30 days" in page
    assert f'id="approval-{waiting.approvals.get().pk}"' in page


def test_queue_is_for_managers_and_read_only_for_auditors(
    client, waiting, operator, reviewer, auditor
):
    for user, status in ((operator, 403), (reviewer, 403), (auditor, 200)):
        client.force_login(user)
        response = client.get(reverse("approval_queue"))
        assert response.status_code == status
    assert "Approve</button>" not in response.content.decode()  # the auditor sees no buttons
    response = client.post(
        reverse("approval_decide", args=[waiting.approvals.get().pk]), {"decision": "approve"}
    )
    assert response.status_code == 403


def test_htmx_approve_swaps_the_row_and_the_count(client, waiting, manager, no_enqueue):
    req = waiting.approvals.get()
    client.force_login(manager)
    response = client.post(
        reverse("approval_decide", args=[req.pk]),
        {"decision": "approve", "comment": "ok"},
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="approval-{req.pk}"' in body and "status-approved" in body
    assert (
        'id="approval-count"' in body
        and 'hx-swap-oob="true"' in body
        and "<strong>0</strong> waiting" in body
    )
    waiting.refresh_from_db()
    assert waiting.status == Run.Status.QUEUED


def test_htmx_reject_without_a_reason_keeps_the_row_and_says_why(client, waiting, manager):
    req = waiting.approvals.get()
    client.force_login(manager)
    body = client.post(
        reverse("approval_decide", args=[req.pk]),
        {"decision": "reject", "comment": ""},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "Say why you reject" in body and "Approve</button>" in body
    assert ApprovalRequest.objects.get(pk=req.pk).status == "pending"


def test_bulk_approve_approves_each_and_reports_the_refused(
    client, operator, manager, settings, no_enqueue
):
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    theirs = [start_run("financial_reporting", INPUT, operator) for _ in range(2)]
    own = start_run("financial_reporting", INPUT, manager)
    ids = [r.approvals.get().pk for r in [*theirs, own]]
    client.force_login(manager)
    response = client.post(
        reverse("approval_bulk"), {"request": [str(i) for i in ids]}, follow=True
    )
    page = response.content.decode()
    assert "Approved 2 run(s)" in page and "four-eyes" in page
    assert [Run.objects.get(pk=r.pk).status for r in theirs] == [Run.Status.QUEUED] * 2
    assert Run.objects.get(pk=own.pk).status == Run.Status.AWAITING_APPROVAL
