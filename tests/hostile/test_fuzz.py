"""The hostile-data fuzz harness (issue 17): Hypothesis draws every class of hostile data
(tests/hostile/strategies.py) and aims it at every kind of entry point: the JSON API's
bodies and query strings, the HTML forms, the query strings of the pages, the exports and the
admin, ``manage.py start_run --input``, and what a model or a tool sends back (a simulator
policy that plays a hostile model, ``simulator.policy.hostile`` in simulator/policy.py).

Invariants (tests/hostile/harness.py): no 5xx; every 4xx names the field; no run left
running with no step in flight; the audit chain verifies; every page, download and export
renders every stored run. ``make test`` runs a small fixed budget; ``make fuzz`` sets
HOSTILE_FUZZ_EXAMPLES and writes the tally (HOSTILE_FUZZ_RESULTS).
"""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orchestration.models import Run
from orchestration.untrusted import MAX_TEXT_LENGTH
from simulator.policy import Hostile
from tests.api_helpers import token_for
from tests.hostile import strategies as gen
from tests.hostile.harness import answer_ok, budget, client_for, runs_sound
from tests.hostile.workflow import NAME, PLANS, Plan

FUZZ = settings(
    max_examples=budget(3),
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure names the case
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
pytestmark = pytest.mark.django_db


def _api(client, method, path, token, body_text):
    return getattr(client, method)(
        path, data=body_text, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def test_api_bodies(operator, reviewer, manager, paused, no_enqueue):
    """POST bodies of every JSON API endpoint that takes one."""
    client = client_for()
    tokens = {u.username: token_for(u) for u in (operator, reviewer, manager)}
    run = paused.run

    @FUZZ
    @given(case=gen.json_case())
    def probe(case):
        cls, token = case
        answer_ok(
            "API POST /api/runs",
            cls,
            _api(
                client,
                "post",
                "/api/runs",
                tokens["operator"],
                '{"workflow": "probe", "input": {"mode": ' + token + "}}",
            ),
            ("input", "body", "mode"),
        )
        answer_ok(
            "API POST /api/tickets/{id}/resolve",
            cls,
            _api(
                client,
                "post",
                f"/api/tickets/{paused.pk}/resolve",
                tokens["reviewer"],
                '{"action": "correct", "corrected": {"value": ' + token + ', "receipt": "r"}}',
            ),
            ("corrected", "body"),
        )
        if cls != gen.DISPLAY:  # an acceptable comment would resolve the ticket for good
            answer_ok(
                "API POST /api/tickets/{id}/resolve",
                cls,
                _api(
                    client,
                    "post",
                    f"/api/tickets/{paused.pk}/resolve",
                    tokens["reviewer"],
                    '{"action": "fail", "comment": ' + token + "}",
                ),
                ("comment", "body"),
            )
        answer_ok(
            "API POST /api/runs/{id}/ceiling",
            cls,
            _api(
                client,
                "post",
                f"/api/runs/{run.pk}/ceiling",
                tokens["manager"],
                '{"add_usd": "1.00", "comment": ' + token + "}",
            ),
            ("comment", "body", "add_usd"),
        )

    probe()
    runs_sound(operator)


def test_api_query_strings(operator, no_enqueue):
    client = client_for()
    token = token_for(operator)

    @FUZZ
    @given(case=gen.text_case(), param=st.sampled_from(["status", "workflow", "cursor", "limit"]))
    def probe(case, param):
        cls, value = case
        response = client.get("/api/runs", {param: value}, HTTP_AUTHORIZATION=f"Bearer {token}")
        answer_ok("API GET /api/runs?query", cls, response, (param,))

    probe()


def test_forms(operator, reviewer, manager, paused, no_enqueue):
    """The start form, ticket resolution (with a corrected output), approval comments, the
    ceiling form."""
    from orchestration.launch import start_run

    waiting = start_run("quarter_probe", {"quarter": "2026-Q4"}, operator)
    approval = waiting.approvals.get()
    as_operator, as_reviewer, as_manager = (
        client_for(operator),
        client_for(reviewer),
        client_for(manager),
    )

    @FUZZ
    @given(
        case=gen.text_case((gen.NUL, gen.LONG, gen.DISPLAY)),
        number=gen.number_token(),
        json_case=gen.json_case(60),
    )
    def probe(case, number, json_case):
        cls, text = case
        if cls == gen.LONG:  # longer than a comment may be (a query parameter is shorter)
            text = "q" * (MAX_TEXT_LENGTH + 1)
        answer_ok(
            "form: start run", cls, as_operator.post("/runs/new/probe/", {"mode": text}), ("mode",)
        )
        answer_ok(
            "form: start run",
            gen.NUMBER,
            as_operator.post("/runs/new/probe/", {"mode": "ok", "sleep": number}),
            ("sleep",),
        )
        answer_ok(
            "form: start estimate",
            gen.NUMBER,
            as_operator.post("/runs/new/probe/estimate/", {"sleep": number}),
            ("sleep",),
        )
        answer_ok(
            "form: ticket resolution",
            json_case[0],
            as_reviewer.post(
                f"/reviews/tickets/{paused.pk}/resolve/",
                {"action": "correct", "corrected": json_case[1]},
            ),
            ("corrected",),
        )
        if cls != gen.DISPLAY:  # an acceptable comment would resolve the ticket for good
            answer_ok(
                "form: ticket resolution",
                cls,
                as_reviewer.post(
                    f"/reviews/tickets/{paused.pk}/resolve/", {"action": "fail", "comment": text}
                ),
                ("comment",),
            )
        answer_ok(
            "form: approval comment",
            cls,
            as_manager.post(
                f"/reviews/approvals/{approval.pk}/decide/", {"decision": "reject", "comment": text}
            ),
            ("comment",),
        )
        answer_ok(
            "form: raise ceiling",
            cls,
            as_manager.post(
                f"/reviews/tickets/{paused.pk}/raise-ceiling/", {"add_usd": "1.00", "comment": text}
            ),
            ("comment",),
        )
        answer_ok(
            "form: raise ceiling",
            gen.NUMBER,
            as_manager.post(
                f"/reviews/tickets/{paused.pk}/raise-ceiling/", {"add_usd": number, "comment": "x"}
            ),
            ("add", "amount"),
        )

    probe()
    runs_sound(operator)


QUERY_PAGES = [
    "/runs/",
    "/runs/export.csv",
    "/runs/export.jsonl",
    "/reviews/tickets/",
    "/reviews/approvals/",
    "/admin/orchestration/run/",
    "/costs/",
    "/costs/export.csv",
    "/audit/",
    "/audit/export.jsonl",
    "/audit/people/manager/",
    "/operations/",
    "/operations/digest/",
    "/runs/new/probe/",
    "/schedules/",
    "/evaluations/",
]
QUERY_KEYS = [
    "q",
    "status",
    "workflow",
    "requester",
    "date_from",
    "date_to",
    "cost_min",
    "cost_max",
    "escalated",
    "model",
    "sort",
    "after",
    "before",
    "page",
    "reason",
    "assignee",
    "older_than_hours",
    "since",
    "until",
    "ticket",
    "approval",
    "run",
    "actor",
    "kind",
    "days",
    "from",
    "to",
    "day",
    "scenario",
]
# The trail form's labels, which its messages use for since/until.
QUERY_LABELS = {"since": "From ", "until": "To "}


def test_page_query_strings(manager, paused, no_enqueue):
    """The run search and filters, the exports, the queues, the costs page and the admin."""
    manager.is_staff = manager.is_superuser = True
    manager.save()
    client = client_for(manager)

    @FUZZ
    @given(case=gen.text_case(), page=st.sampled_from(QUERY_PAGES), key=st.sampled_from(QUERY_KEYS))
    def probe(case, page, key):
        cls, value = case
        names = (key, QUERY_LABELS.get(key, key), "query", "period")
        answer_ok(f"query string {page}", cls, client.get(page, {key: value}), names)

    probe()
    runs_sound(manager)


def test_newer_entry_points(operator, reviewer, manager, paused, no_enqueue):
    """The API's approvals, cancel, re-run, fork, schedules and evaluations; the schedules
    form, the evaluation JSONL import and case form, the fork and cancel pages."""
    from evaluation import datasets
    from orchestration.launch import start_run
    from schedules import service

    waiting = start_run("quarter_probe", {"quarter": "2026-Q4"}, operator)
    approval = waiting.approvals.get()
    schedule = service.create(
        manager,
        {
            "name": "Nightly",
            "workflow_name": "probe",
            "cron": "0 6 * * *",
            "timezone": "UTC",
            "input_template": {"mode": "ok"},
            "owner": operator,
            "enabled": False,
        },
    )
    dataset = datasets.create_dataset("probe", "fuzz", "", manager)
    run = paused.run
    api, token = client_for(), token_for(manager)
    as_manager, as_reviewer = client_for(manager), client_for(reviewer)
    schedule_body = '{"name": %s, "workflow": "probe", "cron": "0 6 * * *", "owner": "operator"}'
    template_body = (
        '{"name": "t", "workflow": "probe", "cron": "0 6 * * *", "owner": "operator", '
        '"input_template": {"mode": %s}}'
    )
    # (entry, path, body, names); a value that is acceptable would act for good (reject the
    # approval, cancel the run): those two skip the display class, as the comment above does.
    api_entries = [
        (
            "API POST /api/approvals/{id}/decide",
            f"/api/approvals/{approval.pk}/decide",
            '{"decision": "reject", "comment": %s}',
            ("comment", "body"),
        ),
        (
            "API POST /api/runs/{id}/cancel",
            f"/api/runs/{run.pk}/cancel",
            '{"reason": %s}',
            ("reason", "body"),
        ),
        (
            "API POST /api/runs/{id}/rerun",
            f"/api/runs/{run.pk}/rerun",
            '{"note": %s}',
            ("note", "body"),
        ),
        (
            "API POST /api/runs/{id}/fork",
            f"/api/runs/{run.pk}/fork",
            '{"turn": 0, "tool_use_id": "t", "corrected": %s}',
            ("corrected", "body", "turn"),
        ),
        ("API POST /api/schedules", "/api/schedules", schedule_body, ("name", "body")),
        (
            "API POST /api/schedules",
            "/api/schedules",
            template_body,
            ("input_template", "body", "already exists"),
        ),
        (
            "API POST /api/schedules/{id}",
            f"/api/schedules/{schedule.pk}",
            schedule_body,
            ("name", "body"),
        ),
        ("API POST /api/evaluations", "/api/evaluations", '{"dataset": %s}', ("dataset", "body")),
    ]

    @FUZZ
    @given(
        case=gen.json_case(60),
        digits=gen.query_text_of(gen.DIGITS),
        text=gen.text_case((gen.NUL, gen.LONG, gen.DISPLAY)),
    )
    def probe(case, digits, text):
        cls, value = case
        for entry, path, body, names in api_entries:
            if cls == gen.DISPLAY and ("decide" in path or "cancel" in path):
                continue
            answer_ok(entry, cls, _api(api, "post", path, token, body % value), names)
        for path, body, names in (
            (f"/api/runs/{run.pk}/fork", '{"turn": %s}', ("turn",)),
            ("/api/evaluations", '{"dataset": %s}', ("dataset",)),
            (f"/api/runs/{run.pk}/ceiling", '{"add_tokens": %s}', ("add_tokens",)),
        ):
            answer_ok(
                f"API POST {path.replace(str(run.pk), '{id}')} ({names[0]})",
                gen.DIGITS,
                _api(api, "post", path, token, body % json.dumps(digits)),
                names,
            )
        answer_ok(
            "form: schedule input_template",
            cls,
            as_manager.post(
                "/schedules/new/",
                {
                    "name": "Fuzzed",
                    "workflow_name": "probe",
                    "cron": "0 6 * * *",
                    "timezone": "UTC",
                    "input_template": '{"mode": ' + value + "}",
                    "owner": operator.pk,
                },
            ),
            ("input_template", "template"),
        )
        line = (
            '{"name": "f", "input": {"mode": ' + value + '}, "expected": {"status": "succeeded"}}'
        )
        answer_ok(
            "form: evaluation JSONL import",
            cls,
            as_manager.post(f"/evaluations/datasets/{dataset.pk}/import/", {"jsonl": line}),
            ("line 1",),
        )
        answer_ok(
            "form: evaluation case",
            cls,
            as_manager.post(
                f"/evaluations/datasets/{dataset.pk}/cases/new/",
                {"name": "f", "input": '{"mode": ' + value + "}", "expected_status": "succeeded"},
            ),
            ("input",),
        )
        answer_ok(
            "page: fork",
            cls,
            as_reviewer.post(
                f"/runs/{run.pk}/fork/", {"turn": "0", "tool_use_id": "t", "corrected": value}
            ),
            ("corrected", "turn", "tool"),
        )
        answer_ok(
            "page: fork",
            gen.DIGITS,
            as_reviewer.post(f"/runs/{run.pk}/fork/", {"turn": digits}),
            ("turn",),
        )
        text_cls, words = text
        if text_cls != gen.DISPLAY:
            if text_cls == gen.LONG:
                words = "q" * (MAX_TEXT_LENGTH + 1)
            answer_ok(
                "page: cancel reason",
                text_cls,
                as_manager.post(f"/runs/{run.pk}/cancel/", {"reason": words}),
                ("reason",),
            )

    probe()
    runs_sound(operator)


def test_start_run_command(operator, no_enqueue):
    @FUZZ
    @given(case=gen.json_case())
    def probe(case):
        cls, token = case
        gen_entry = "command: start_run --input"
        from tests.hostile.harness import TRIED

        TRIED[(gen_entry, cls)] += 1
        try:
            call_command(
                "start_run",
                "probe",
                "--input",
                '{"mode": ' + token + "}",
                stdout=io.StringIO(),
                stderr=io.StringIO(),
            )
        except CommandError as exc:
            from tests.hostile.harness import REFUSED

            REFUSED[(gen_entry, cls)] += 1
            assert "mode" in str(exc) or "input" in str(exc), str(exc)

    probe()
    runs_sound(operator)


MODEL_KINDS = ("tool input", "final answer", "tool_use id", "tool name", "words", "tool output")


def _plan(kind: str, cls: str, value, token_text: str) -> Plan:
    if kind == "tool input":
        return Plan(model=Hostile(tool="echo", tool_input={"text": value}))
    if kind == "final answer":
        return Plan(model=Hostile(answer_text='{"answer": ' + token_text + "}"))
    if kind == "tool_use id":
        return Plan(model=Hostile(tool="echo", tool_input={"text": "hi"}, tool_use_id=str(value)))
    if kind == "tool name":
        return Plan(model=Hostile(tool_name=str(value), tool_input={"text": "hi"}))
    if kind == "words":
        return Plan(model=Hostile(tool="echo", tool_input={"text": "hi"}, text=str(value)))
    return Plan(model=Hostile(tool="echo", tool_input={"text": "hi"}), tool_output={"text": value})


@pytest.mark.django_db(transaction=True)
def test_model_and_tool_outputs(operator, drive):
    """A hostile model (tool inputs, answers, ids, names, words) and a hostile tool, end to end."""
    from orchestration.launch import start_run

    @settings(FUZZ, max_examples=budget(6))
    @given(kind=st.sampled_from(MODEL_KINDS), case=gen.json_case(150), data=st.data())
    def probe(kind, case, data):
        cls, token_text = case
        if kind == "tool output":
            cls, value = data.draw(gen.python_case())
        elif cls in (gen.NUMBER, gen.DEEP):
            value = json.loads(token_text)
        else:
            value = json.loads(token_text)
            value = value if isinstance(value, str) else next(iter(value))  # a key: use it as text
        token = uuid.uuid4().hex
        PLANS[token] = _plan(kind, cls, value, token_text)
        entry = f"model output: {kind}"
        from tests.hostile.harness import REFUSED, TRIED

        TRIED[(entry, cls)] += 1
        run = drive(start_run(NAME, {"token": token}, operator))
        assert run.status in (Run.Status.SUCCEEDED, Run.Status.AWAITING_REVIEW), (
            entry,
            cls,
            run.status,
            run.error,
        )
        if run.status == Run.Status.AWAITING_REVIEW:
            REFUSED[(entry, cls)] += 1
            ticket = run.tickets.get()
            assert (
                ticket.message
                and ticket.reason
                in (
                    "validation_failed",
                    "retries_exhausted",
                    "unknown_tool",
                )
                or (
                    # 100,000+ characters of words or input, replayed in the next request, make
                    # its worst case pass the run's $1 ceiling: stopped before it is sent.
                    ticket.reason == "budget_exceeded" and cls == gen.LONG
                )
            ), (cls, ticket.reason, ticket.message)
        elif kind != "words" and cls not in (gen.DISPLAY, gen.LONG):  # words are only recorded
            raise AssertionError(f"{entry} [{cls}] was accepted: {run.result!r}"[:300])

    probe()
    runs_sound(operator)
