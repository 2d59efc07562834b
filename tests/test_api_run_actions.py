"""Cancel, re-run and fork through the JSON API (issue 16 §5): each endpoint calls the service
function the run page calls, with the same role checks, four-eyes rule and refusals, and every
answer matches the generated OpenAPI document."""

from __future__ import annotations

import json

import pytest

import tests.workflows_for_tests  # noqa: F401  (registers the "probe" workflow)
from orchestration.launch import start_run
from orchestration.models import AuditEvent, Run
from reviews.models import EscalationTicket
from tests.api_helpers import assert_documented, call, token_for

S = Run.Status
COMPLIANT = {"compliant": True, "violations": [], "rules_version": "1"}


def url(run: Run, action: str) -> str:
    return f"/api/runs/{run.pk}/{action}"


@pytest.fixture
def paused(operator, drive):
    """A financial report paused on APRA violations (failing step: validate_apra)."""
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, operator))
    assert run.status == S.AWAITING_REVIEW
    return run, run.tickets.get()


@pytest.fixture
def other_operator(operator, django_user_model):
    """An operator who may start, re-run, fork and cancel runs, but sees only their own."""
    user = django_user_model.objects.create_user("operator2", password="x-operator2-1")
    user.groups.add(*operator.groups.all())
    return user


def _failing(ticket: EscalationTicket) -> tuple[int, str]:
    tc = ticket.failing_tool_call
    return tc.model_call.turn, tc.tool_use_id


# --- cancel ------------------------------------------------------------------------------


def test_cancel_a_paused_run_closes_its_ticket(client, reviewer, paused):
    run, ticket = paused
    response = call(client, "POST", url(run, "cancel"), token_for(reviewer), {"reason": "dup"})
    body = assert_documented(response, "/api/runs/{run_id}/cancel", "post")
    assert response.status_code == 200
    assert body["run"]["status"] == "cancelled" and body["closed_tickets"] == 1
    run.refresh_from_db()
    ticket.refresh_from_db()
    assert run.status == S.CANCELLED and "dup" in run.error
    assert ticket.status == EscalationTicket.Status.RESOLVED


def test_cancel_of_a_finished_run_is_409_and_changes_nothing(client, operator, drive):
    run = drive(start_run("probe", {"mode": "ok"}, operator))
    events = AuditEvent.objects.filter(run=run).count()
    response = call(client, "POST", url(run, "cancel"), token_for(operator), {})
    error = assert_documented(response, "/api/runs/{run_id}/cancel", "post")["error"]
    assert response.status_code == 409 and error["code"] == "conflict"
    assert "already ended" in error["message"]
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED and AuditEvent.objects.filter(run=run).count() == events


def test_cancel_refusals_match_the_page(client, auditor, outsider, other_operator, paused):
    run, _ = paused
    hidden = call(client, "POST", url(run, "cancel"), token_for(other_operator), {})
    assert hidden.status_code == 404
    assert assert_documented(hidden, "/api/runs/{run_id}/cancel", "post")["error"]["code"] == (
        "not_found"
    )
    for who in (auditor, outsider):  # no role that may cancel: 403, as on the page
        role = call(client, "POST", url(run, "cancel"), token_for(who), {})
        assert role.status_code == 403
        assert_documented(role, "/api/runs/{run_id}/cancel", "post")
    run.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW


def test_cancel_with_an_unknown_field_is_422(client, reviewer, paused):
    run, _ = paused
    response = call(client, "POST", url(run, "cancel"), token_for(reviewer), {"reasn": "x"})
    assert response.status_code == 422
    body = assert_documented(response, "/api/runs/{run_id}/cancel", "post")
    assert body["error"]["fields"] == {"reasn": "unknown field"}
    run.refresh_from_db()
    assert run.status == S.AWAITING_REVIEW


# --- re-run ------------------------------------------------------------------------------


def test_rerun_starts_a_linked_run_and_a_retry_with_the_key_starts_nothing_more(
    client, operator, drive
):
    original = drive(start_run("probe", {"mode": "ok"}, operator))
    token = token_for(operator)
    headers = {"Idempotency-Key": "rerun-1"}
    response = call(client, "POST", url(original, "rerun"), token, {}, headers=headers)
    body = assert_documented(response, "/api/runs/{run_id}/rerun", "post")
    assert response.status_code == 201
    new = Run.objects.get(pk=body["id"])
    assert (new.origin, new.origin_kind, new.input) == (original, "rerun", original.input)
    assert body["origin"] == str(original.pk) and response["Location"] == f"/api/runs/{new.pk}"
    again = call(client, "POST", url(original, "rerun"), token, {}, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == str(new.pk)
    assert Run.objects.filter(origin=original).count() == 1


def test_rerun_refusals(client, operator, auditor, other_operator, drive):
    original = drive(start_run("probe", {"mode": "ok"}, operator))
    before = Run.objects.count()
    for who, status in ((other_operator, 404), (auditor, 403)):
        response = call(client, "POST", url(original, "rerun"), token_for(who), {})
        assert response.status_code == status
        assert_documented(response, "/api/runs/{run_id}/rerun", "post")
    bad_key = call(
        client, "POST", url(original, "rerun"), token_for(operator), {}, {"Idempotency-Key": " "}
    )
    assert bad_key.status_code == 400
    assert bad_key.json()["error"]["code"] == "invalid_idempotency_key"
    assert Run.objects.count() == before


# --- fork --------------------------------------------------------------------------------


def test_a_reviewer_forks_a_paused_run_from_the_failing_step_with_a_correction(
    client, reviewer, paused
):
    run, ticket = paused
    turn, tool_use_id = _failing(ticket)
    response = call(
        client,
        "POST",
        url(run, "fork"),
        token_for(reviewer),
        {"turn": turn, "tool_use_id": tool_use_id, "corrected": COMPLIANT},
    )
    body = assert_documented(response, "/api/runs/{run_id}/fork", "post")
    assert response.status_code == 201
    fork = Run.objects.get(pk=body["id"])
    assert (fork.origin, fork.origin_kind, fork.fork_turn) == (run, "fork", turn)
    assert body["fork_turn"] == turn and fork.requested_by == reviewer
    corrected = fork.tool_calls.get(tool_use_id=tool_use_id)
    assert corrected.status == "corrected" and corrected.output == COMPLIANT


def test_a_fork_of_a_run_the_user_cannot_see_is_404(client, other_operator, paused):
    run, ticket = paused
    turn, tool_use_id = _failing(ticket)
    response = call(
        client,
        "POST",
        url(run, "fork"),
        token_for(other_operator),
        {"turn": turn, "tool_use_id": tool_use_id, "corrected": COMPLIANT},
    )
    assert response.status_code == 404
    assert assert_documented(response, "/api/runs/{run_id}/fork", "post")["error"]["code"] == (
        "not_found"
    )
    assert not Run.objects.filter(origin=run).exists()


def test_the_requester_may_not_correct_a_four_eyes_step_in_a_fork(client, manager, drive):
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, manager))
    ticket = run.tickets.get()
    assert ticket.reason == EscalationTicket.Reason.REGULATORY_TRIGGER
    turn, tool_use_id = _failing(ticket)
    response = call(
        client,
        "POST",
        url(run, "fork"),
        token_for(manager),
        {"turn": turn, "tool_use_id": tool_use_id, "corrected": COMPLIANT},
    )
    assert response.status_code == 403
    error = assert_documented(response, "/api/runs/{run_id}/fork", "post")["error"]
    assert error["code"] == "forbidden" and "four-eyes" in error["message"]
    assert not Run.objects.filter(origin=run).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "turn"),
        ({"turn": "two"}, "turn"),
        ({"turn": 1, "extra": 1}, "extra"),
    ],
)
def test_malformed_fork_requests_are_422(client, reviewer, paused, body, field):
    run, _ = paused
    response = call(client, "POST", url(run, "fork"), token_for(reviewer), body)
    assert response.status_code == 422
    assert (
        field in assert_documented(response, "/api/runs/{run_id}/fork", "post")["error"]["fields"]
    )
    assert not Run.objects.filter(origin=run).exists()


def test_a_fork_turn_out_of_range_is_422_from_the_service(client, reviewer, paused):
    run, ticket = paused
    turn, _ = _failing(ticket)
    response = call(client, "POST", url(run, "fork"), token_for(reviewer), {"turn": turn + 7})
    error = assert_documented(response, "/api/runs/{run_id}/fork", "post")["error"]
    assert response.status_code == 422 and "out of range" in error["message"]
    assert json.dumps(error["fields"])  # names the field
    assert not Run.objects.filter(origin=run).exists()
