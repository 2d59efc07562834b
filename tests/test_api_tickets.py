"""The escalation queue through the JSON API (issue 16 §5): list and claim, with the queue
page's role check and reviews.resolutions.claim's rules; every answer matches the generated
OpenAPI document. (Resolving is in tests/test_api.py.)"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from orchestration.launch import start_run
from orchestration.models import Run
from reviews.models import EscalationTicket
from tests.api_helpers import assert_documented, call, token_for

T = EscalationTicket.Status
CLAIM = "/api/tickets/{ticket_id}/claim"


@pytest.fixture
def paused(operator, drive):
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, operator))
    assert run.status == Run.Status.AWAITING_REVIEW
    return run, run.tickets.get()


@pytest.fixture
def reviewer2(reviewer, django_user_model):
    user = django_user_model.objects.create_user("reviewer2", password="x-reviewer2-1")
    user.groups.add(Group.objects.get(name="reviewers"))
    return user


def claim_url(ticket_id: int) -> str:
    return f"/api/tickets/{ticket_id}/claim"


def test_a_reviewer_lists_and_claims_a_ticket(client, reviewer, reviewer2, manager, paused):
    _, ticket = paused
    token = token_for(reviewer)
    listed = call(client, "GET", "/api/tickets", token)
    assert [t["id"] for t in assert_documented(listed, "/api/tickets", "get")["results"]] == [
        ticket.pk
    ]
    response = call(client, "POST", claim_url(ticket.pk), token)
    body = assert_documented(response, CLAIM, "post")
    assert response.status_code == 200 and body["assignee"] == "reviewer"
    ticket.refresh_from_db()
    assert ticket.status == T.CLAIMED and ticket.assignee == reviewer
    mine = call(client, "GET", "/api/tickets?assignee=me&status=claimed", token)
    assert [t["id"] for t in mine.json()["results"]] == [ticket.pk]
    # Another reviewer no longer sees it (404, as on its page); a manager sees it held (409).
    other = call(client, "POST", claim_url(ticket.pk), token_for(reviewer2))
    assert other.status_code == 404
    assert call(client, "GET", "/api/tickets", token_for(reviewer2, "l")).json()["results"] == []
    held = call(client, "POST", claim_url(ticket.pk), token_for(manager))
    assert held.status_code == 409
    assert "claimed this ticket first" in assert_documented(held, CLAIM, "post")["error"]["message"]
    ticket.refresh_from_db()
    assert ticket.assignee == reviewer


def test_the_requester_may_not_claim_a_four_eyes_ticket(client, manager, drive):
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, manager))
    ticket = run.tickets.get()
    assert ticket.reason == EscalationTicket.Reason.REGULATORY_TRIGGER
    response = call(client, "POST", claim_url(ticket.pk), token_for(manager))
    assert response.status_code == 403
    assert "four-eyes" in assert_documented(response, CLAIM, "post")["error"]["message"]
    ticket.refresh_from_db()
    assert ticket.status == T.OPEN and ticket.assignee is None


def test_who_may_list_and_claim(client, operator, auditor, paused):
    _, ticket = paused
    for who in (operator, auditor):
        listed = call(client, "GET", "/api/tickets", token_for(who))
        assert listed.status_code == 403
        assert_documented(listed, "/api/tickets", "get")
        claimed = call(client, "POST", claim_url(ticket.pk), token_for(who, "c"))
        assert claimed.status_code == 403
    bad = call(client, "GET", "/api/tickets?status=done", token_for(operator, "q"))
    assert bad.status_code == 403  # the role first
    ticket.refresh_from_db()
    assert ticket.status == T.OPEN


def test_a_bad_list_query_is_422(client, reviewer):
    response = call(client, "GET", "/api/tickets?status=done&limit=0", token_for(reviewer))
    assert response.status_code == 422
    error = assert_documented(response, "/api/tickets", "get")["error"]
    assert error["code"] == "invalid_query" and {"status", "limit"} <= set(error["fields"])
