"""Hostile data, one class at a time, at each kind of entry point (issue 17): the API, the HTML
forms, the query strings, ``manage.py start_run``, and what a model or a tool sends back.
Each test asserts the answer (status, the field named, nothing written) or the run's outcome
(status, ticket reason, what was recorded, read back exactly)."""

from __future__ import annotations

import io
import json
import math
import re
import uuid

import pytest
from django.core.management import CommandError, call_command

from orchestration import storable
from orchestration.audit import verify_chain
from orchestration.models import ModelCall, Run, ToolCall
from simulator.policy import Hostile
from tests.api_helpers import call, token_for
from tests.hostile.harness import body_of, client_for
from tests.hostile.workflow import NAME, PLANS, Plan

# Each class as JSON text, in a run input's "mode" (probe's input schema: a string).
BAD_VALUES = {
    "nul": ('"a\\u0000b"', "NUL"),
    "nul key": ('{"a\\u0000": 1}', "NUL"),
    "lone surrogate": ('"a\\ud800b"', "surrogate"),
    "deep nesting": ("[" * 5000 + "]" * 5000, "deeper than 32"),
    "NaN": ("NaN", "NaN"),
    "Infinity": ("-Infinity", "Infinity"),
    "1e400": ("1e400", "1e400"),
    "1e20 (jsonb would hand back an integer)": ("1e20", "2^53"),
    "integer beyond 64 bits": (str(2**64), "64 bits"),
    "5000-digit integer": ("9" * 5000, "64 bits"),
    "very long string": (json.dumps("x" * 100_001), "at most 100,000"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", BAD_VALUES)
def test_api_refuses_each_class_naming_the_field(operator, client, case):
    value, words = BAD_VALUES[case]
    response = call(
        client,
        "POST",
        "/api/runs",
        token_for(operator),
        raw='{"workflow": "probe", "input": {"mode": ' + value + "}}",
    )
    assert response.status_code in (400, 422), response.content[:300]
    error = response.json()["error"]
    assert words in json.dumps(error, ensure_ascii=False)
    named = error.get("fields") or {"body": error["message"]}
    assert any(k.startswith(("input/mode", "body")) for k in named), error
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["nul", "NaN", "1e400", "deep nesting"])
def test_api_corrected_output_and_comment_refused(reviewer, paused, client, case):
    value, words = BAD_VALUES[case]
    token = token_for(reviewer)
    response = call(
        client,
        "POST",
        f"/api/tickets/{paused.pk}/resolve",
        token,
        raw='{"action": "correct", "corrected": {"value": ' + value + ', "receipt": "r"}}',
    )
    assert response.status_code in (400, 422) and words in response.content.decode(), (
        response.content[:300]
    )
    response = call(
        client,
        "POST",
        f"/api/tickets/{paused.pk}/resolve",
        token,
        raw='{"action": "fail", "comment": "stop\\u0000"}',
    )
    assert response.status_code == 422
    assert "NUL" in response.json()["error"]["fields"]["comment"]
    paused.refresh_from_db()
    assert paused.status == "open" and paused.run.status == Run.Status.AWAITING_REVIEW


@pytest.mark.django_db
def test_oversized_bodies_answer_413_with_the_limit(operator, client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5_000
    body = json.dumps({"workflow": "probe", "input": {"mode": "x" * 6_000}})
    response = call(client, "POST", "/api/runs", token_for(operator), raw=body)
    assert response.status_code == 413
    assert "5,000 bytes" in response.json()["error"]["message"]
    client.force_login(operator)
    response = client.post("/runs/new/probe/", {"mode": "x" * 6_000})
    assert response.status_code == 413 and b"5,000 bytes" in response.content
    assert response["Content-Type"].startswith("text/html")
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/runs/",
        "/runs/export.csv",
        "/runs/export.jsonl",
        "/admin/orchestration/run/",
        "/reviews/tickets/",
        "/api/runs",
    ],
)
def test_query_strings_with_nul_or_too_long_answer_400_naming_the_parameter(manager, path):
    manager.is_staff = manager.is_superuser = True
    manager.save()
    client = client_for(manager)
    headers = (
        {"HTTP_AUTHORIZATION": f"Bearer {token_for(manager)}"} if path.startswith("/api/") else {}
    )
    for params, words in (
        ({"q": "a\x00b"}, "NUL"),
        ({"workflow": "w" * 501}, "at most 500"),
        ({"status": "\x00"}, "NUL"),
    ):
        response = client.get(path, params, **headers)
        assert response.status_code == 400, (path, params, response.status_code)
        text = body_of(response).decode()
        assert words in text and next(iter(params)) in text


@pytest.mark.django_db
def test_filters_out_of_range_are_messages_not_errors(manager, paused):
    client = client_for(manager)
    response = client.get("/runs/", {"cost_min": "1e999999999", "date_from": "2026-02-30"})
    assert response.status_code == 200
    assert (
        b"Minimum cost must be less than" in response.content
        and b"is not a date" in response.content
    )
    response = client.get("/runs/export.csv", {"cost_max": "1e400"})
    assert response.status_code == 400 and b"Maximum cost must be less than" in response.content
    response = client.get("/reviews/tickets/", {"older_than_hours": "9" * 30})
    assert response.status_code == 200


@pytest.mark.django_db
def test_forms_refuse_each_class_naming_the_field(operator, reviewer, manager, paused):
    as_operator, as_reviewer, as_manager = (
        client_for(operator),
        client_for(reviewer),
        client_for(manager),
    )
    # The start form: a number field with 1e400 passes as a decimal but is infinite as JSON.
    response = as_operator.post("/runs/new/probe/", {"mode": "ok", "sleep": "1e400"})
    assert response.status_code == 200 and b"not a finite number" in response.content
    response = as_operator.post("/runs/new/probe/", {"mode": "ok", "sleep": "1" + "0" * 64})
    assert response.status_code == 200 and b"too large to be stored exactly" in response.content
    response = as_operator.post("/runs/new/probe/estimate/", {"sleep": "1e400"})
    assert (
        response.status_code == 200
        and b"sleep" in response.content
        and b"finite" in response.content
    )
    assert not Run.objects.exclude(pk=paused.run_id).exists()
    # Ticket resolution: a corrected output with NaN, a comment with NUL, a comment too long.
    response = as_reviewer.post(
        f"/reviews/tickets/{paused.pk}/resolve/",
        {"action": "correct", "corrected": '{"value": NaN, "receipt": "r"}'},
    )
    assert (
        response.status_code == 422
        and b"corrected" in response.content
        and b"NaN" in response.content
    )
    response = as_reviewer.post(
        f"/reviews/tickets/{paused.pk}/resolve/", {"action": "fail", "comment": "x\x00"}
    )
    assert (
        response.status_code == 422
        and b"comment" in response.content
        and b"NUL" in response.content
    )
    response = as_reviewer.post(
        f"/reviews/tickets/{paused.pk}/resolve/", {"action": "fail", "comment": "x" * 10_001}
    )
    assert response.status_code == 422 and b"at most 10,000" in response.content
    paused.refresh_from_db()
    assert paused.status == "open"
    # The ceiling form: 1e400 dollars, a comment with NUL.
    response = as_manager.post(f"/reviews/tickets/{paused.pk}/raise-ceiling/", {"add_usd": "1e400"})
    assert response.status_code == 422 and b"At most" in response.content
    response = as_manager.post(
        f"/reviews/tickets/{paused.pk}/raise-ceiling/", {"add_usd": "1.00", "comment": "\x00"}
    )
    assert response.status_code == 422 and b"comment" in response.content


@pytest.mark.django_db
def test_approval_comment_with_nul_is_refused(operator, manager, no_enqueue):
    from orchestration.launch import start_run

    waiting = start_run("quarter_probe", {"quarter": "2026-Q4"}, operator)
    approval = waiting.approvals.get()
    client = client_for(manager)
    response = client.post(
        f"/reviews/approvals/{approval.pk}/decide/",
        {"decision": "reject", "comment": "no\x00"},
        HTTP_HX_REQUEST="true",
    )
    assert (
        response.status_code == 200
        and b"comment" in response.content
        and b"NUL" in response.content
    )
    approval.refresh_from_db()
    assert approval.status == "pending"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case", ["nul", "lone surrogate", "deep nesting", "NaN", "1e400", "5000-digit integer"]
)
def test_start_run_command_refuses_each_class(operator, case):
    value, words = BAD_VALUES[case]
    with pytest.raises(CommandError) as refused:
        call_command(
            "start_run", "probe", "--input", '{"mode": ' + value + "}", stdout=io.StringIO()
        )
    assert words in str(refused.value)
    assert not Run.objects.exists()


# --- what a model or a tool sends back ------------------------------------------------------


def _run(operator, drive, plan: Plan) -> Run:
    from orchestration.launch import start_run

    token = uuid.uuid4().hex
    PLANS[token] = plan
    return drive(start_run(NAME, {"token": token}, operator))


def _pages_render(user, run: Run) -> str:
    client = client_for(user)
    page = client.get(f"/runs/{run.pk}/")
    assert page.status_code == 200
    for path in (f"/runs/{run.pk}/download.json", "/runs/export.csv", "/runs/export.jsonl"):
        assert client.get(path).status_code == 200, path
        json.loads(body_of(client.get(f"/runs/{run.pk}/download.json")))
    for ticket in run.tickets.all():
        assert client.get(f"/reviews/tickets/{ticket.pk}/").status_code == 200
    assert verify_chain().ok
    return page.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "value",
    [
        "a\x00b",
        float("nan"),
        2**70,
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    ],
)
def test_hostile_tool_input_is_recorded_exactly_refused_and_escalated(
    operator, reviewer, drive, value
):
    run = _run(operator, drive, Plan(model=Hostile(tool="echo", tool_input={"text": value})))
    assert run.status == Run.Status.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert (
        ticket.reason == "retries_exhausted"
        and "echo was called with invalid input" in ticket.message
    )
    refused = ToolCall.objects.filter(run=run, status="rejected").order_by("attempt")
    assert refused.count() == 2
    first = refused.first()
    assert "input/text" in first.error
    stored = first.input["text"]  # read back exactly as the model sent it
    assert math.isnan(stored) if isinstance(value, float) else stored == value
    assert _pages_render(reviewer, run)


@pytest.mark.django_db(transaction=True)
def test_a_lone_surrogate_in_a_streamed_tool_input_is_recorded_retried_and_escalated(
    operator, reviewer, drive
):
    """Streamed, a tool input holding a lone surrogate cannot even be parsed by the SDK: each
    call is recorded as failed with the SDK's reason and charged as the API reported; the
    retry limit ends it in a ticket that says why; nothing is left running, pages render."""
    run = _run(operator, drive, Plan(model=Hostile(tool="echo", tool_input={"text": "a\ud800b"})))
    assert run.status == Run.Status.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == "retries_exhausted" and "ValueError" in ticket.message
    failed = run.model_calls.filter(status="error")
    assert failed.count() >= 2 and all("ValueError" in mc.error for mc in failed)
    assert not ToolCall.objects.filter(run=run).exists()  # no tool ran on an unreadable input
    assert _pages_render(reviewer, run)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ('{"answer": NaN}', "NaN"),
        ('{"answer": 1e400}', "1e400"),
        ('{"answer": "a\\u0000b"}', "NUL"),
        ('{"answer": "a\\udc00"}', "surrogate"),
        ('{"answer": ' + "[" * 150 + "]" * 150 + "}", "deeper than 32"),
        ('{"answer": ' + "9" * 5000 + "}", "64 bits"),
    ],
)
def test_hostile_final_answer_escalates_with_the_reason(operator, reviewer, drive, answer, words):
    run = _run(operator, drive, Plan(model=Hostile(answer_text=answer)))
    assert run.status == Run.Status.AWAITING_REVIEW and run.result is None
    ticket = run.tickets.get()
    assert (
        ticket.reason == "validation_failed"
        and words in ticket.message
        and "answer" in ticket.message
    )
    last = ModelCall.objects.filter(run=run).order_by("-turn").first()
    assert last.text == answer  # the answer is recorded exactly as it came
    assert _pages_render(reviewer, run)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("tool_use_id", ["t" * 500, "toolu_\x00", "toolu_\u202e"])
def test_unrecordable_tool_use_id_marks_the_call_failed_and_escalates(
    operator, reviewer, drive, tool_use_id
):
    run = _run(
        operator,
        drive,
        Plan(model=Hostile(tool="echo", tool_input={"text": "hi"}, tool_use_id=tool_use_id)),
    )
    assert run.status == Run.Status.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == "validation_failed" and "cannot be recorded" in ticket.message
    mc = ticket.failing_model_call
    assert mc.status == "error" and mc.tool_uses[0]["id"] == tool_use_id  # kept as sent
    assert not ToolCall.objects.filter(run=run).exists()
    _pages_render(reviewer, run)
    # The reviewer retries: the model is asked again (it sends the same id), nothing crashes.
    from reviews import resolutions

    resolutions.resolve(ticket.pk, reviewer, "retry")
    run = drive(run)
    assert (
        run.status == Run.Status.AWAITING_REVIEW and run.tickets.filter(status="open").count() == 1
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("output", "words"),
    [
        ({"text": "a\x00b"}, "NUL"),
        ({"text": "a\udfff"}, "surrogate"),
        ({"text": float("inf")}, "finite"),
        ({"text": 10**5000}, "64 bits"),
        ({"text": "replaced by a value nested 5,000 deep"}, None),
    ],
)
def test_hostile_tool_output_is_recorded_and_escalated(operator, reviewer, drive, output, words):
    if words is None:  # a tool that returns a value nested 5,000 levels deep
        deep: object = "bottom"
        for _ in range(5000):
            deep = [deep]
        output, words = {"text": deep}, "deeper than 32"
    run = _run(
        operator,
        drive,
        Plan(model=Hostile(tool="echo", tool_input={"text": "hi"}), tool_output=output),
    )
    assert run.status == Run.Status.AWAITING_REVIEW
    ticket = run.tickets.get()
    assert ticket.reason == "validation_failed" and words in ticket.message
    bad = ToolCall.objects.filter(run=run, status="invalid_output").first()
    stored = bad.raw_output["text"]
    if words == "deeper than 32":
        text = stored
        for _ in range(storable.STORED_DEPTH - 2):
            text = text[0]
        assert storable.DEEP_KEY in json.dumps(text)  # kept as its JSON text, not lost
    elif isinstance(output["text"], float):
        assert math.isinf(stored)
    elif isinstance(output["text"], int):
        assert stored == {storable.INT_KEY: hex(10**5000)}  # Python cannot print it; kept as hex
    else:
        assert stored == output["text"]
    _pages_render(reviewer, run)


@pytest.mark.django_db(transaction=True)
def test_control_and_bidi_characters_are_shown_as_markers(operator, reviewer, drive):
    words = "Calling echo \u202eevil\u202c with\x1b[31m colour and a NUL \x00 here."
    run = _run(
        operator, drive, Plan(model=Hostile(tool="echo", tool_input={"text": "hi"}, text=words))
    )
    assert run.status == Run.Status.SUCCEEDED, [t.message for t in run.tickets.all()]
    first = ModelCall.objects.filter(run=run).order_by("turn").first()
    assert first.text.startswith(words)  # recorded exactly
    page = _pages_render(operator, run)
    assert "\\u202eevil\\u202c" in page and "\\u001b[31m" in page and "NUL \\u0000 here" in page
    assert "\u202e" not in page and "\x1b" not in page


# --- far dates, Unicode digits (audit of issue 17) -----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "key", "status", "words"),
    [
        ("/runs/", "date_to", 200, "To date"),
        ("/runs/", "date_from", 200, "From date"),
        ("/runs/export.csv", "date_to", 400, "To date"),
        ("/runs/export.jsonl", "date_to", 400, "To date"),
        ("/audit/", "until", 200, "To"),
        ("/audit/", "since", 200, "From"),
        ("/audit/export.jsonl", "until", 400, "To"),
        ("/audit/people/manager/", "to", 200, "to"),
        ("/operations/", "until", 400, "until"),
    ],
)
def test_far_dates_are_refused_with_a_message_naming_the_field(
    manager, paused, path, key, status, words
):
    """9999-12-31 plus a day is beyond Python's calendar (an OverflowError, a 500 before)."""
    client = client_for(manager)
    for value in ("9999-12-31", "9999-12-31T23:59", "0001-01-01"):
        if "T" in value and path not in ("/audit/", "/audit/export.jsonl"):
            continue
        response = client.get(path, {key: value})
        assert response.status_code == status, (path, key, value, response.status_code)
        text = body_of(response).decode()
        assert "out of range" in text and words in text, (path, key, value, text[:400])


# "²" and "٣" pass str.isdigit(); int("²") raises (a 500 before). "--1" passed lstrip("-").
UNICODE_DIGITS = ("²", "٣", "1²", "--1")


@pytest.mark.django_db
def test_unicode_digits_in_query_strings_are_messages_not_errors(manager, reviewer, paused):
    client = client_for(manager)
    for value in UNICODE_DIGITS:
        for path, key, words in (
            ("/runs/new/financial_reporting/", "scenario", "Scenario: "),
            ("/reviews/tickets/", "older_than_hours", "Older than (hours): "),
            ("/costs/", "days", "Period: "),
            ("/audit/", "ticket", "Ticket "),
            ("/audit/", "approval", "Approval "),
        ):
            response = client.get(path, {key: value})
            assert response.status_code == 200, (path, key, value, response.status_code)
            text = response.content.decode()
            assert f"{words}&#x27;{value}&#x27; is not a" in text and "digits 0-9" in text, (
                path,
                key,
                text[:300],
            )
        response = client.get("/operations/", {"days": value})
        assert response.status_code == 400 and b"Unknown period" in response.content
        for key in ("after", "before"):  # a page link that is not one: the first page
            response = client.get("/audit/", {key: value})
            assert response.status_code == 200 and not response.context["errors"]
        response = client.get("/audit/", {"q": "#" + value})  # "#<seq>": searched as words
        assert response.status_code == 200
    # An ASCII scenario still picks it; one beyond the list says so.
    response = client.get("/runs/new/financial_reporting/", {"scenario": "99"})
    assert b"there is no scenario 99" in response.content
    # And an over-long number of hours is a century, as before.
    assert client.get("/reviews/tickets/", {"older_than_hours": "9" * 30}).status_code == 200


@pytest.mark.django_db
def test_unicode_digits_in_forms_are_refused_naming_the_field(
    operator, reviewer, manager, paused, settings
):
    from api.models import ApiToken
    from orchestration.launch import start_run
    from reviews.models import ApprovalRequest

    as_manager = client_for(manager)
    ceiling = (paused.run.ceiling_usd, paused.run.ceiling_tokens)
    for value in UNICODE_DIGITS:
        # The ceiling form, in tokens.
        response = as_manager.post(
            f"/reviews/tickets/{paused.pk}/raise-ceiling/", {"add_tokens": value}
        )
        assert response.status_code == 422 and b"tokens to add" in response.content, (
            value,
            response.content[:300],
        )
        # A new API token's lifetime.
        response = as_manager.post(
            "/account/api-tokens/new/",
            {"name": f"t{value}", "days": value, "password": settings.DEMO_PASSWORD},
        )
        assert response.status_code == 422
        assert "A token lasts from 1 to" in response.content.decode()
    assert not ApiToken.objects.exists()
    paused.run.refresh_from_db()
    assert (paused.run.ceiling_usd, paused.run.ceiling_tokens) == ceiling
    # Bulk approval of request "²": refused with a message, nothing approved.
    waiting = start_run("quarter_probe", {"quarter": "2026-Q4"}, operator)
    response = as_manager.post("/reviews/approvals/bulk/", {"request": ["²"]}, follow=True)
    assert response.status_code == 200
    assert "Request &#x27;²&#x27; is not a whole number" in response.content.decode()
    assert waiting.approvals.get().status == ApprovalRequest.Status.PENDING
    # The fork page's turn.
    as_reviewer = client_for(reviewer)
    before = Run.objects.count()
    for value in UNICODE_DIGITS:
        response = as_reviewer.post(f"/runs/{paused.run_id}/fork/", {"turn": value})
        assert response.status_code in (400, 422), (value, response.status_code)
        assert "is not a turn number" in response.content.decode()
    assert Run.objects.count() == before


@pytest.mark.django_db
def test_names_that_postgres_cannot_store_are_form_errors(manager, settings):
    """A case's name on the evaluation case form, an API token's name: raw POST text that
    reached Postgres (a DataError, a 500 before)."""
    from api.models import ApiToken
    from evaluation import datasets

    dataset = datasets.create_dataset("probe", "hostile", "", manager)
    client = client_for(manager)
    response = client.post(
        f"/evaluations/datasets/{dataset.pk}/cases/new/",
        {"name": "a\x00b", "input": '{"mode": "ok"}', "expected_status": "succeeded"},
    )
    assert response.status_code == 422, response.status_code
    assert "NUL" in response.context["errors"]["name"]
    assert b"NUL character" in response.content
    assert not dataset.cases.exists()
    # The same rule on a JSONL import line, where a lone surrogate can arrive as an escape.
    for name, words in (("a\x00b", "NUL"), ("a\ud800", "surrogate")):
        with pytest.raises(datasets.CaseInvalid) as refused:
            datasets.clean_case(
                "probe",
                {"name": name, "input": {"mode": "ok"}, "expected": {"status": "succeeded"}},
            )
        assert words in refused.value.errors["name"]
    tokens = ApiToken.objects.count()
    response = client.post(
        "/account/api-tokens/new/",
        {"name": "nightly\x00", "days": "7", "password": settings.DEMO_PASSWORD},
    )
    assert response.status_code == 422
    assert "The name: the text contains a NUL character" in response.content.decode()
    assert ApiToken.objects.count() == tokens


@pytest.mark.django_db
def test_bidi_and_control_characters_in_comments_and_names_are_shown_as_markers(
    operator, manager, no_enqueue
):
    """Approval comments (queue, detail, the person's activity, the trail's preview), schedule
    and evaluation case names: a right-to-left override or an escape is shown as its marker."""
    from evaluation import datasets
    from orchestration.launch import start_run
    from reviews import approvals
    from schedules import service

    hostile = "ok \u202eevil\u202c \x1b[31m"
    marker = "ok \\u202eevil\\u202c \\u001b[31m"
    waiting = start_run("quarter_probe", {"quarter": "2026-Q4"}, operator)
    request = approvals.decide(waiting.approvals.get().pk, manager, approve=False, comment=hostile)
    assert request.comment == hostile  # stored exactly
    schedule = service.create(
        manager,
        {
            "name": f"Nightly {hostile}",
            "workflow_name": "probe",
            "cron": "0 6 * * *",
            "timezone": "UTC",
            "input_template": {"mode": "ok"},
            "owner": operator,
            "enabled": False,
        },
    )
    dataset = datasets.create_dataset("probe", "hostile", "", manager)
    case = datasets.save_case(
        dataset,
        {"name": f"case {hostile}", "input": {"mode": "ok"}, "expected": {"status": "succeeded"}},
        manager,
    )
    client = client_for(manager)
    for path in (
        "/reviews/approvals/?status=rejected",
        f"/reviews/approvals/{request.pk}/",
        "/audit/people/manager/",
        f"/audit/?approval={request.pk}",
        "/schedules/",
        f"/schedules/{schedule.pk}/",
        f"/evaluations/datasets/{dataset.pk}/",
        f"/evaluations/datasets/{dataset.pk}/cases/{case.pk}/",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        # An edit form's input keeps the name as it is (saving it again must not change it).
        page = re.sub(r'value="[^"]*"', "", response.content.decode())
        assert "\u202e" not in page and "\x1b" not in page, path
        assert marker in page or marker.replace("\\", "\\\\") in page, path


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sort", "value"),
    [
        ("cost", "1e999999"),
        ("cost", "-1e999999"),
        ("cost", "NaN"),
        ("created", "9999-12-31T23:59:59+14:00"),
        ("created", "0001-01-01T00:00:00-14:00"),
    ],
)
def test_a_tampered_page_link_is_the_first_page_with_a_message(manager, paused, sort, value):
    """The runs list's keyset cursor is base64 JSON from the URL: an amount numeric cannot
    hold or a moment beyond the calendar went to Postgres (a DataError or OverflowError)."""
    import base64

    cursor = base64.urlsafe_b64encode(
        json.dumps([sort, value, str(uuid.uuid4())]).encode()
    ).decode()
    response = client_for(manager).get("/runs/", {"sort": sort, "after": cursor})
    assert response.status_code == 200, response.status_code
    assert b"That page link is not valid" in response.content
