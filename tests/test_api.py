"""The JSON API with a token: start runs, follow them, list them, resolve their tickets.

Every answer is checked against the OpenAPI document (tests/api_helpers.assert_documented),
so the document cannot drift from what the API does.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import anthropic
import httpx2
import pytest
from django.test import Client
from django.urls import reverse

from api.models import ApiToken
from orchestration.launch import RunRefused, start_run
from orchestration.models import AuditEvent, Run
from orchestration.serialize import usd_string
from reviews import resolutions
from reviews.models import EscalationTicket
from tests.api_helpers import assert_documented, call, token_for
from warehouse.models import Payment

S = Run.Status
RUNS = "/api/runs"


def run_url(run_id) -> str:
    return f"/api/runs/{run_id}"


def resolve_url(ticket_id) -> str:
    return f"/api/tickets/{ticket_id}/resolve"


# --- the journey: start, follow, resolve, follow -------------------------------------------


def test_start_follow_and_resolve_a_run_with_tokens(client, operator, reviewer, drive):
    op_token, rev_token = token_for(operator), token_for(reviewer)

    started = call(
        client,
        "POST",
        RUNS,
        op_token,
        {"workflow": "payment_approval", "input": {"payment_id": "PAY-1005"}},
        headers={"Idempotency-Key": "pay-1005-first"},
    )
    assert started.status_code == 201
    body = assert_documented(started, "/api/runs", "post")
    run = Run.objects.get(pk=body["id"])
    assert body["status"] == "queued" == run.status
    assert body["estimate"]["upper_usd"] == usd_string(run.estimate_usd)
    assert body["estimate"]["lines"][-1]["item"] == "Upper bound"
    assert started["Location"] == run_url(run.pk)
    assert body["links"]["self"].endswith(run_url(run.pk))
    event = AuditEvent.objects.get(run=run, kind="run.requested")
    assert event.actor == operator and event.payload["source"] == "api"
    assert run.idempotency_key == "pay-1005-first"

    following = call(client, "GET", run_url(run.pk), op_token)
    assert assert_documented(following, "/api/runs/{run_id}", "get")["status"] == "queued"

    drive(run)  # the worker's part: steps until the run stops
    paused = assert_documented(
        call(client, "GET", run_url(run.pk), op_token), "/api/runs/{run_id}", "get"
    )
    ticket = EscalationTicket.objects.get(run=run)
    assert paused["status"] == "awaiting_review" and paused["final"] is False
    assert (
        paused["open_ticket"]["id"] == ticket.pk
        and paused["open_ticket"]["reason"] == "regulatory_trigger"
    )
    assert paused["open_ticket"]["links"]["resolve"].endswith(resolve_url(ticket.pk))
    assert paused["cost_usd"] != "0.000000" and paused["tokens"]["output"] > 0

    waiting = call(client, "GET", f"{RUNS}?status=awaiting_review", rev_token)
    assert [r["id"] for r in assert_documented(waiting, "/api/runs", "get")["results"]] == [
        str(run.pk)
    ]

    resolved = call(
        client,
        "POST",
        resolve_url(ticket.pk),
        rev_token,
        {"action": "approve", "comment": "Board approved the payment"},
    )
    answer = assert_documented(resolved, "/api/tickets/{ticket_id}/resolve", "post")
    assert resolved.status_code == 200
    assert (
        answer["ticket"]["resolution"] == "approve"
        and answer["ticket"]["resolved_by"] == "reviewer"
    )
    # The sign-off was for the decision itself: the run goes on and records it.
    assert answer["run"]["status"] == "queued"
    assert not Payment.objects.filter(payment_id="PAY-1005", decision="approve").exists()
    drive(run)

    done = assert_documented(
        call(client, "GET", run_url(run.pk), op_token), "/api/runs/{run_id}", "get"
    )
    assert done["status"] == "succeeded" and done["final"] is True and done["open_ticket"] is None
    assert done["result"]["amount"] == 300000.0 and done["finished_at"] is not None
    run.refresh_from_db()
    assert (
        done["cost_usd"] == usd_string(run.cost_usd) and done["tokens"]["input"] == run.input_tokens
    )
    # Exact, and written with at least six places, like the downloads (a cache write at
    # $2.50 or $1.25 per million tokens can cost half a micro-dollar).
    assert Decimal(done["cost_usd"]) == run.cost_usd and len(done["cost_usd"].split(".")[1]) >= 6
    assert AuditEvent.objects.filter(run=run, kind="ticket.resolved", actor=reviewer).exists()


def test_resume_with_a_note_then_the_run_finishes(client, operator, reviewer, drive):
    run = drive(start_run("payment_approval", {"payment_id": "PAY-1003"}, operator))
    ticket = run.tickets.get()
    response = call(
        client,
        "POST",
        resolve_url(ticket.pk),
        token_for(reviewer),
        {"action": "resume", "note": "Payee cleared by sanctions team: approve"},
    )
    assert (
        assert_documented(response, "/api/tickets/{ticket_id}/resolve", "post")["run"]["status"]
        == "queued"
    )
    run = drive(run)
    # Approving a payment the validator sent to manual review waits for a sign-off of the call.
    sign_off = run.tickets.get(status="open")
    assert run.status == S.AWAITING_REVIEW and sign_off.reason == "regulatory_trigger"
    assert sign_off.context["details"]["proposed_call"]["input"]["decision"] == "approve"
    response = call(
        client,
        "POST",
        resolve_url(sign_off.pk),
        token_for(reviewer),
        {"action": "approve", "comment": "Signed off"},
    )
    assert response.status_code == 200
    run = drive(run)
    assert run.status == S.SUCCEEDED and run.result["decision"] == "approve"


def test_correcting_a_tool_output_through_the_api(client, operator, reviewer, drive):
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, operator))
    ticket = run.tickets.get()
    token = token_for(reviewer)

    bad = call(
        client,
        "POST",
        resolve_url(ticket.pk),
        token,
        {"action": "correct", "corrected": {"compliant": "yes"}},
    )
    assert bad.status_code == 422
    error = assert_documented(bad, "/api/tickets/{ticket_id}/resolve", "post")["error"]
    assert (
        error["code"] == "invalid_correction"
        and "'yes' is not of type 'boolean'" in error["fields"]["corrected"]
    )
    ticket.refresh_from_db()
    assert ticket.status == "open" and not run.tool_calls.filter(status="corrected").exists()

    good = call(
        client,
        "POST",
        resolve_url(ticket.pk),
        token,
        {
            "action": "correct",
            "corrected": {"compliant": True, "violations": [], "rules_version": "1"},
            "comment": "KYC verified",
        },
    )
    assert good.status_code == 200 and good.json()["run"]["status"] == "queued"
    assert drive(run).status == S.SUCCEEDED
    assert run.tool_calls.get(status="corrected").output == {
        "compliant": True,
        "violations": [],
        "rules_version": "1",
    }


# --- resolving: refusals -----------------------------------------------------------------


@pytest.fixture
def paused(operator, drive):
    run = drive(start_run("financial_reporting", {"date": "2026-11-19"}, operator))
    return run, run.tickets.get()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "shrug"}, "action"),
        ({}, "action"),
        ({"action": "resume"}, "note"),
        ({"action": "correct"}, "corrected"),
        ({"action": "fail", "corrected": {}}, "corrected"),
        ({"action": "fail", "comment": 3}, "comment"),
        ({"action": "fail", "why": "typo"}, "why"),
    ],
)
def test_invalid_resolutions_are_422_and_change_nothing(client, reviewer, paused, body, field):
    response = call(client, "POST", resolve_url(paused[1].pk), token_for(reviewer), body)
    assert response.status_code == 422
    assert (
        field
        in assert_documented(response, "/api/tickets/{ticket_id}/resolve", "post")["error"][
            "fields"
        ]
    )
    paused[1].refresh_from_db()
    assert paused[1].status == "open"


def test_resolve_permissions_match_the_ticket_page(
    client, operator, auditor, reviewer, manager, paused
):
    run, ticket = paused
    for persona in (operator, auditor):
        response = call(
            client, "POST", resolve_url(ticket.pk), token_for(persona), {"action": "fail"}
        )
        assert response.status_code == 403
        assert (
            assert_documented(response, "/api/tickets/{ticket_id}/resolve", "post")["error"]["code"]
            == "forbidden"
        )
    missing = call(
        client, "POST", resolve_url(ticket.pk + 999), token_for(reviewer), {"action": "fail"}
    )
    assert missing.status_code == 404

    resolutions.claim(ticket.pk, manager)
    claimed = call(
        client, "POST", resolve_url(ticket.pk), token_for(reviewer, "r2"), {"action": "fail"}
    )
    # Another's claimed ticket is not the reviewer's to see: 404, as for its run.
    assert claimed.status_code == 404 and claimed.json()["error"]["code"] == "not_found"

    call(
        client,
        "POST",
        resolve_url(ticket.pk),
        token_for(manager),
        {"action": "fail", "comment": "withheld"},
    )
    again = call(
        client, "POST", resolve_url(ticket.pk), token_for(manager, "m2"), {"action": "retry"}
    )
    assert again.status_code == 409
    assert (
        "already resolved"
        in assert_documented(again, "/api/tickets/{ticket_id}/resolve", "post")["error"]["message"]
    )
    run.refresh_from_db()
    assert run.status == S.FAILED and "withheld" in run.error


# --- starting: refusals and idempotency ----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ("{not json", 400, "malformed_json"),
        ("[1, 2]", 400, "malformed_json"),
        ("", 400, "malformed_json"),
        ('{"input": {"payment_id": "PAY-1"}}', 422, "invalid_input"),
        ('{"workflow": "payment_approval"}', 422, "invalid_input"),
        ('{"workflow": "nope", "input": {}}', 422, "invalid_input"),
        ('{"workflow": "payment_approval", "input": {"payment_id": "X"}}', 422, "invalid_input"),
        (
            '{"workflow": "payment_approval", "input": {"payment_id": "PAY-1"}, "inputs": {}}',
            422,
            "invalid_input",
        ),
    ],
)
def test_bad_start_requests_are_refused_with_a_clear_error(client, operator, raw, status, code):
    response = call(client, "POST", RUNS, token_for(operator), raw=raw)
    assert response.status_code == status
    error = assert_documented(response, "/api/runs", "post")["error"]
    assert error["code"] == code and error["message"]
    assert not Run.objects.exists()


def test_input_errors_name_the_field(client, operator):
    response = call(client, "POST", RUNS, token_for(operator), {"workflow": "nope", "input": {}})
    assert "Unknown workflow 'nope'" in response.json()["error"]["fields"]["workflow"]
    response = call(
        client,
        "POST",
        RUNS,
        token_for(operator),
        {"workflow": "payment_approval", "input": {"payment_id": "X"}},
    )
    assert "does not match" in response.json()["error"]["fields"]["payment_id"]


def test_form_encoded_body_is_415(client, operator):
    response = call(
        client,
        "POST",
        RUNS,
        token_for(operator),
        raw="workflow=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (
        response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    )


def test_starting_needs_the_start_run_permission(client, auditor, reviewer):
    for persona in (auditor, reviewer):
        response = call(
            client,
            "POST",
            RUNS,
            token_for(persona),
            {"workflow": "payment_approval", "input": {"payment_id": "PAY-1001"}},
        )
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (RunRefused.BUDGET_EXCEEDED, 403),
        (RunRefused.RATE_LIMITED, 429),
        (RunRefused.INVALID_INPUT, 422),
    ],
)
def test_refusals_from_start_run_map_to_statuses(client, operator, monkeypatch, code, status):
    def refuse(*args, **kwargs):
        exc = RunRefused({"budget": "the daily budget ($5.00) would be exceeded"}, code=code)
        exc.retry_after = 120
        raise exc

    monkeypatch.setattr("api.views.runs.start_run", refuse)
    response = call(
        client,
        "POST",
        RUNS,
        token_for(operator),
        {"workflow": "payment_approval", "input": {"payment_id": "PAY-1"}},
    )
    assert response.status_code == status
    error = assert_documented(response, "/api/runs", "post")["error"]
    assert error["code"] == code and error["fields"]["budget"].startswith("the daily budget")
    assert (response.get("Retry-After") == "120") == (status == 429)


def test_estimate_failure_is_503_and_creates_nothing(client, operator, monkeypatch):
    def down(*args, **kwargs):
        raise anthropic.APIConnectionError(
            request=httpx2.Request("POST", "https://api.example/v1/messages/count_tokens")
        )

    monkeypatch.setattr("orchestration.launch.measure_prompt", down)
    response = call(
        client,
        "POST",
        RUNS,
        token_for(operator),
        {"workflow": "payment_approval", "input": {"payment_id": "PAY-1"}},
    )
    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert (
        assert_documented(response, "/api/runs", "post")["error"]["code"] == "estimate_unavailable"
    )
    assert not Run.objects.exists()


def test_run_over_the_threshold_waits_for_approval(client, operator, settings):
    settings.APPROVAL_THRESHOLD_USD = 0
    response = call(
        client,
        "POST",
        RUNS,
        token_for(operator),
        {"workflow": "payment_approval", "input": {"payment_id": "PAY-1001"}},
    )
    assert response.status_code == 201
    body = assert_documented(response, "/api/runs", "post")
    assert (
        body["status"] == "awaiting_approval"
        and Run.objects.get(pk=body["id"]).approvals.count() == 1
    )


def test_idempotency_key_makes_a_retry_safe(client, operator, manager):
    token = token_for(operator)
    request = {"workflow": "payment_approval", "input": {"payment_id": "PAY-1001"}}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = call(client, "POST", RUNS, token, request, headers=key)
    retry = call(client, "POST", RUNS, token, request, headers=key)
    assert first.status_code == 201 and retry.status_code == 200
    assert retry["Idempotent-Replayed"] == "true"
    assert assert_documented(retry, "/api/runs", "post")["id"] == first.json()["id"]
    assert Run.objects.count() == 1

    changed = call(
        client, "POST", RUNS, token, {**request, "input": {"payment_id": "PAY-1002"}}, headers=key
    )
    assert changed.status_code == 422
    assert (
        assert_documented(changed, "/api/runs", "post")["error"]["code"] == "idempotency_key_reused"
    )

    # Keys are per user: another user's identical key is another run.
    theirs = call(client, "POST", RUNS, token_for(manager), request, headers=key)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    # Without a key, every request is a new run.
    assert call(client, "POST", RUNS, token, request).json()["id"] != first.json()["id"]
    assert Run.objects.count() == 3


@pytest.mark.parametrize("key", ["x" * 201, "   ", "tab\there"])
def test_malformed_idempotency_key_is_400(client, operator, key):
    response = call(
        client,
        "POST",
        RUNS,
        token_for(operator),
        {"workflow": "payment_approval", "input": {"payment_id": "PAY-1"}},
        headers={"Idempotency-Key": key},
    )
    assert (
        response.status_code == 400
        and response.json()["error"]["code"] == "invalid_idempotency_key"
    )
    assert not Run.objects.exists()


# --- authentication ---------------------------------------------------------------------------


def test_requests_without_a_valid_token_are_401(client, operator):
    run = start_run("payment_approval", {"payment_id": "PAY-1001"}, operator)
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic b3A6ZGVtbw=="},
        {"Authorization": "Bearer cs_not-a-real-token"},
    ):
        response = client.get(run_url(run.pk), headers=headers)
        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert assert_documented(response, "/api/runs/{run_id}", "get")["error"]["code"] in (
            "unauthenticated",
            "invalid_token",
        )


def test_a_session_cookie_is_not_enough(client, operator):
    """The API is exempt from CSRF, so it must not accept the browser's session."""
    client.force_login(operator)
    response = call(
        client,
        "POST",
        RUNS,
        body={"workflow": "payment_approval", "input": {"payment_id": "PAY-1001"}},
    )
    assert response.status_code == 401 and not Run.objects.exists()


def test_revoked_token_and_disabled_user_are_refused(client, operator):
    token = token_for(operator)
    assert call(client, "GET", RUNS, token).status_code == 200
    ApiToken.objects.get(user=operator).revoke()
    response = call(client, "GET", RUNS, token)
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_revoked"

    other = token_for(operator, "second")
    operator.is_active = False
    operator.save()
    response = call(client, "GET", RUNS, other)
    assert response.status_code == 401 and response.json()["error"]["code"] == "user_inactive"


def test_token_use_is_recorded(client, operator):
    token = token_for(operator)
    row = ApiToken.objects.get(user=operator)
    assert row.last_used_at is None
    call(client, "GET", RUNS, token)
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_post_works_without_a_csrf_token(operator):
    csrf_client = Client(enforce_csrf_checks=True)
    response = call(
        csrf_client,
        "POST",
        RUNS,
        token_for(operator),
        {"workflow": "payment_approval", "input": {"payment_id": "PAY-1001"}},
    )
    assert response.status_code == 201


# --- who sees what -------------------------------------------------------------------------


@pytest.fixture
def two_runs(operator, manager):
    return (
        start_run("financial_reporting", {"date": "2026-11-20"}, operator),
        start_run("payment_approval", {"payment_id": "PAY-1001"}, manager),
    )


def test_someone_elses_run_is_404(client, operator, outsider, two_runs):
    mine, theirs = two_runs
    token = token_for(operator)
    assert call(client, "GET", run_url(mine.pk), token).status_code == 200
    response = call(client, "GET", run_url(theirs.pk), token)
    assert response.status_code == 404
    assert assert_documented(response, "/api/runs/{run_id}", "get")["error"]["code"] == "not_found"
    assert [r["id"] for r in call(client, "GET", RUNS, token).json()["results"]] == [str(mine.pk)]
    assert call(client, "GET", RUNS, token_for(outsider)).json()["results"] == []
    assert call(client, "GET", run_url(uuid.uuid4()), token).status_code == 404


@pytest.mark.parametrize("persona", ["manager", "auditor"])
def test_managers_and_auditors_see_every_run(client, request, two_runs, persona):
    token = token_for(request.getfixturevalue(persona))
    listed = {r["id"] for r in call(client, "GET", RUNS, token).json()["results"]}
    assert listed == {str(r.pk) for r in two_runs}
    for run in two_runs:
        assert call(client, "GET", run_url(run.pk), token).status_code == 200


def test_reviewer_sees_only_runs_behind_tickets(client, reviewer, two_runs):
    from orchestration import lifecycle
    from reviews.escalation import escalate

    mine, theirs = two_runs
    token = token_for(reviewer)
    assert call(client, "GET", run_url(mine.pk), token).status_code == 404
    lifecycle.transition(mine.pk, S.RUNNING)
    escalate(mine.pk, "ambiguity", "unsure")
    assert call(client, "GET", run_url(mine.pk), token).status_code == 200
    assert call(client, "GET", run_url(theirs.pk), token).status_code == 404
    assert [r["id"] for r in call(client, "GET", RUNS, token).json()["results"]] == [str(mine.pk)]


# --- listing -------------------------------------------------------------------------------------


def test_list_is_paginated_by_cursor_newest_first(client, operator):
    created = [
        start_run("payment_approval", {"payment_id": f"PAY-{1000 + i}"}, operator) for i in range(5)
    ]
    token = token_for(operator)
    seen, url, pages = [], f"{RUNS}?limit=2", 0
    while url:
        page = assert_documented(call(client, "GET", url, token), "/api/runs", "get")
        seen += [r["id"] for r in page["results"]]
        url, pages = page["next"], pages + 1
        assert len(page["results"]) <= 2
    expected = [
        str(r.pk) for r in sorted(created, key=lambda r: (r.created_at, r.pk), reverse=True)
    ]
    assert seen == expected and pages == 3

    # A run started while paging does not shift the pages already handed out.
    first = call(client, "GET", f"{RUNS}?limit=2", token).json()
    start_run("payment_approval", {"payment_id": "PAY-2000"}, operator)
    second = call(client, "GET", first["next"], token).json()
    assert [r["id"] for r in second["results"]] == expected[2:4]


def test_list_filters_by_status_and_workflow(client, operator):
    from orchestration import lifecycle

    a = start_run("payment_approval", {"payment_id": "PAY-1001"}, operator)
    b = start_run("financial_reporting", {"date": "2026-11-20"}, operator)
    lifecycle.transition(b.pk, S.CANCELLED)
    token = token_for(operator)

    def ids(query):
        return [r["id"] for r in call(client, "GET", f"{RUNS}?{query}", token).json()["results"]]

    assert ids("status=cancelled") == [str(b.pk)]
    assert ids("status=queued") == [str(a.pk)]
    assert set(ids("status=queued,cancelled")) == {str(a.pk), str(b.pk)}
    assert ids("workflow=payment_approval") == [str(a.pk)]
    assert ids("workflow=payment_approval&status=cancelled") == []


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("status=finished", 422, "status"),
        ("limit=0", 422, "limit"),
        ("limit=101", 422, "limit"),
        ("limit=ten", 422, "limit"),
        ("cursor=bm90LWEtY3Vyc29y", 400, None),
        ("cursor=%%%", 400, None),
    ],
)
def test_bad_list_queries_are_refused(client, operator, query, status, field):
    response = call(client, "GET", f"{RUNS}?{query}", token_for(operator))
    assert response.status_code == status
    error = assert_documented(response, "/api/runs", "get")["error"]
    if field:
        assert field in error["fields"]


# --- the rest of the surface ---------------------------------------------------------------------


def test_workflows_lists_input_schemas(client, operator):
    response = call(client, "GET", "/api/workflows", token_for(operator))
    body = assert_documented(response, "/api/workflows", "get")
    by_name = {w["name"]: w for w in body["results"]}
    assert by_name["payment_approval"]["input_schema"]["required"] == ["payment_id"]
    assert by_name["payment_approval"]["input_example"] == {"payment_id": "PAY-1001"}


def test_wrong_method_and_unknown_path_answer_json(client, operator):
    token = token_for(operator)
    response = call(client, "DELETE", RUNS, token)
    assert response.status_code == 405 and response["Allow"] == "GET, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert call(client, "GET", resolve_url(1), token).status_code == 405
    for path in ("/api/nothing", "/api/runs/", "/api/runs/not-a-uuid"):
        response = call(client, "GET", path, token)
        assert response.status_code == 404 and response["Content-Type"] == "application/json", path
        assert "no trailing slash" in response.json()["error"]["message"]


def test_openapi_document_is_public_and_linked(client, operator):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.json()["openapi"] == "3.1.0"
    client.force_login(operator)
    assert reverse("api:openapi") in client.get(reverse("api_tokens")).content.decode()


def test_list_query_count_does_not_grow_with_the_page(client, manager, operator):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    token = token_for(manager)
    call(
        client, "GET", RUNS, token
    )  # first use writes last_used_at; later calls within a minute do not

    def queries_for(n_runs: int) -> int:
        while Run.objects.count() < n_runs:
            start_run(
                "payment_approval", {"payment_id": f"PAY-{Run.objects.count() + 1}"}, operator
            )
        with CaptureQueriesContext(connection) as ctx:
            response = call(client, "GET", RUNS, token)
        assert len(response.json()["results"]) == n_runs
        return len(ctx.captured_queries)

    assert queries_for(2) == queries_for(6)
