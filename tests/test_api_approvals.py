"""The approval queue through the JSON API (issue 16 §5): list and decide, with the queue
page's role checks and reviews.approvals.decide's four-eyes rule; every answer matches the
generated OpenAPI document."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestration.launch import start_run
from orchestration.models import AuditEvent, Run
from tests.api_helpers import assert_documented, call, token_for

INPUT = '{"date": "2026-11-12"}'
DECIDE = "/api/approvals/{request_id}/decide"


@pytest.fixture
def no_enqueue(monkeypatch):
    enqueued = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: enqueued.append(str(run_id)),
    )
    return enqueued


@pytest.fixture
def waiting(operator, settings, no_enqueue) -> Run:
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    run = start_run("financial_reporting", INPUT, operator)
    assert run.status == Run.Status.AWAITING_APPROVAL
    return run


def decide_url(req_id: int) -> str:
    return f"/api/approvals/{req_id}/decide"


def test_a_manager_lists_and_approves_a_request(client, manager, waiting, no_enqueue):
    token = token_for(manager)
    listed = call(client, "GET", "/api/approvals", token)
    body = assert_documented(listed, "/api/approvals", "get")
    req = waiting.approvals.get()
    assert [r["id"] for r in body["results"]] == [req.pk]
    assert body["results"][0]["run"]["id"] == str(waiting.pk)
    response = call(client, "POST", decide_url(req.pk), token, {"decision": "approve"})
    body = assert_documented(response, DECIDE, "post")
    assert response.status_code == 200
    assert body["status"] == "approved" and body["decided_by"] == "manager"
    waiting.refresh_from_db()
    assert waiting.status == Run.Status.QUEUED
    assert AuditEvent.objects.filter(run=waiting, kind__startswith="approval.").exists()
    decided = call(client, "GET", "/api/approvals?status=approved", token)
    assert [r["id"] for r in assert_documented(decided, "/api/approvals", "get")["results"]] == [
        req.pk
    ]
    again = call(client, "POST", decide_url(req.pk), token, {"decision": "reject", "comment": "x"})
    assert again.status_code == 409
    assert "already approved" in assert_documented(again, DECIDE, "post")["error"]["message"]


def test_an_approval_by_its_own_requester_is_403_and_changes_nothing(
    client, manager, settings, no_enqueue
):
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    own = start_run("financial_reporting", INPUT, manager)
    req = own.approvals.get()
    response = call(client, "POST", decide_url(req.pk), token_for(manager), {"decision": "approve"})
    assert response.status_code == 403
    error = assert_documented(response, DECIDE, "post")["error"]
    assert error["code"] == "forbidden" and "four-eyes" in error["message"]
    req.refresh_from_db()
    own.refresh_from_db()
    assert req.status == "pending" and own.status == Run.Status.AWAITING_APPROVAL
    assert no_enqueue == []


def test_who_may_list_and_decide(client, operator, reviewer, auditor, outsider, waiting):
    req = waiting.approvals.get()
    for who in (operator, reviewer, auditor, outsider):
        response = call(client, "POST", decide_url(req.pk), token_for(who), {"decision": "approve"})
        assert response.status_code == 403, who
        assert_documented(response, DECIDE, "post")
    for who, status in ((outsider, 403), (auditor, 200)):
        response = call(client, "GET", "/api/approvals", token_for(who, "list"))
        assert response.status_code == status
        assert_documented(response, "/api/approvals", "get")
    waiting.refresh_from_db()
    assert waiting.approvals.get().status == "pending"


def test_a_rejection_needs_a_reason_and_an_unknown_request_is_404(client, manager, waiting):
    req = waiting.approvals.get()
    token = token_for(manager)
    response = call(client, "POST", decide_url(req.pk), token, {"decision": "reject"})
    assert response.status_code == 422
    assert "comment" in assert_documented(response, DECIDE, "post")["error"]["fields"]
    bad = call(client, "POST", decide_url(req.pk), token, {"decision": "maybe"})
    assert bad.status_code == 422 and "decision" in bad.json()["error"]["fields"]
    missing = call(client, "POST", decide_url(req.pk + 999), token, {"decision": "approve"})
    assert missing.status_code == 404
    assert_documented(missing, DECIDE, "post")
    assert waiting.approvals.get().status == "pending"
    query = call(client, "GET", "/api/approvals?status=done", token)
    assert query.status_code == 422
    assert "status" in assert_documented(query, "/api/approvals", "get")["error"]["fields"]
