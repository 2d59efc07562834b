"""Hostile data at the newer entry points (issue 17 audit): the JSON API's endpoints beyond
/api/runs (approvals, cancel, re-run, fork, schedules, evaluations, the ceiling), the
schedules form, the evaluation JSONL import and case form, the fork and cancel pages, and the
query strings of the trail, the costs and the operations pages. Each test asserts the answer
(a 4xx naming the field, or a page that says what was dropped) and that nothing was stored."""

from __future__ import annotations

import json

import pytest

from evaluation.models import Evaluation
from orchestration.models import Run
from schedules.models import Schedule
from tests.api_helpers import call, token_for
from tests.hostile.harness import answer_ok, body_of, client_for
from tests.hostile.test_regressions import BAD_VALUES

pytestmark = pytest.mark.django_db

JSON_CASES = ["nul", "lone surrogate", "deep nesting", "NaN", "1e400", "integer beyond 64 bits"]


@pytest.fixture
def world(operator, manager, paused, no_enqueue):
    """A pending approval, a schedule, a dataset with a case, and the paused probe run."""
    from evaluation import datasets
    from orchestration.launch import start_run
    from schedules import service

    waiting = start_run("quarter_probe", {"quarter": "2026-Q4"}, operator)
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
    dataset = datasets.create_dataset("probe", "hostile", "", manager)
    datasets.save_case(
        dataset,
        {"name": "one", "input": {"mode": "ok"}, "expected": {"status": "succeeded"}},
        manager,
    )
    return {
        "approval": waiting.approvals.get(),
        "schedule": schedule,
        "dataset": dataset,
        "run": paused.run,
        "ticket": paused,
    }


def _api_endpoints(w):
    run, s = w["run"].pk, w["schedule"].pk
    schedule = '{"name": %s, "workflow": "probe", "cron": "0 6 * * *", "owner": "operator"}'
    template = (
        '{"name": "n", "workflow": "probe", "cron": "0 6 * * *", "owner": "operator", '
        '"input_template": {"mode": %s}}'
    )
    return [
        (
            f"/api/approvals/{w['approval'].pk}/decide",
            '{"decision": "reject", "comment": %s}',
            "comment",
        ),
        (f"/api/runs/{run}/cancel", '{"reason": %s}', "reason"),
        (f"/api/runs/{run}/rerun", '{"note": %s}', "note"),
        (f"/api/runs/{run}/fork", '{"turn": 0, "tool_use_id": "t", "corrected": %s}', "corrected"),
        ("/api/schedules", schedule, "name"),
        ("/api/schedules", template, "input_template"),
        (f"/api/schedules/{s}", schedule, "name"),
        ("/api/evaluations", '{"dataset": %s}', "dataset"),
        (f"/api/runs/{run}/ceiling", '{"add_usd": "1.00", "comment": %s}', "comment"),
    ]


def _unchanged(w, runs_before):
    w["approval"].refresh_from_db()
    w["ticket"].refresh_from_db()
    w["schedule"].refresh_from_db()
    assert w["approval"].status == "pending"
    assert w["ticket"].status == "open" and w["ticket"].run.status == Run.Status.AWAITING_REVIEW
    assert w["schedule"].name == "Nightly" and Schedule.objects.count() == 1
    assert Run.objects.count() == runs_before and not Evaluation.objects.exists()


@pytest.mark.parametrize("case", JSON_CASES)
def test_newer_api_endpoints_refuse_each_class_naming_the_field(world, manager, client, case):
    value, words = BAD_VALUES[case]
    token = token_for(manager)
    before = Run.objects.count()
    for path, body, field in _api_endpoints(world):
        response = call(client, "POST", path, token, raw=body % value)
        assert response.status_code in (400, 422), (path, case, response.status_code)
        error = response.json()["error"]
        assert words in json.dumps(error, ensure_ascii=False), (path, error)
        named = error.get("fields") or {"body": error["message"]}
        assert any(field in k or k == "body" for k in named), (path, error)
    _unchanged(world, before)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/runs/{run}/fork", '{"turn": %s}', "turn"),
        ("/api/evaluations", '{"dataset": %s}', "dataset"),
        ("/api/runs/{run}/ceiling", '{"add_tokens": %s}', "add_tokens"),
    ],
)
def test_newer_api_integer_fields_refuse_unicode_digits(world, manager, client, path, body, field):
    token = token_for(manager)
    before = Run.objects.count()
    for value in ('"²"', '"٣"', '"--1"', "-1", str(2**64)):
        response = call(client, "POST", path.format(run=world["run"].pk), token, raw=body % value)
        if value == "-1" and field == "dataset":  # a well-formed id of no dataset
            assert response.status_code == 404, response.content
            continue
        assert response.status_code in (400, 422), (path, value, response.status_code)
        error = response.json()["error"]
        assert any(field in k for k in error.get("fields", {})) or "64 bits" in error["message"]
    _unchanged(world, before)


@pytest.mark.parametrize("case", JSON_CASES)
def test_schedules_form_parses_the_template_with_the_shared_limits(world, manager, operator, case):
    """input_template went through json.loads: NaN and 1e400 were accepted, then refused by
    Postgres (a 500)."""
    value, words = BAD_VALUES[case]
    client = client_for(manager)
    form = {
        "name": "Hostile",
        "workflow_name": "probe",
        "cron": "0 6 * * *",
        "timezone": "UTC",
        "input_template": '{"mode": ' + value + "}",
        "owner": operator.pk,
        "enabled": "on",
    }
    for path in ("/schedules/new/", f"/schedules/{world['schedule'].pk}/"):
        response = client.post(path, {**form, "name": "Nightly" if "/new/" not in path else "H"})
        assert response.status_code == 422, (path, response.status_code)
        errors = response.context["form"].errors
        assert "input_template" in errors and words in str(errors["input_template"]), errors
    _unchanged(world, Run.objects.count())


def test_evaluation_import_and_case_form_refuse_each_class(world, manager):
    dataset = world["dataset"]
    client = client_for(manager)
    for case in JSON_CASES:
        value, words = BAD_VALUES[case]
        line = (
            '{"name": "bad", "input": {"mode": ' + value + '}, "expected": {"status": "succeeded"}}'
        )
        response = client.post(
            f"/evaluations/datasets/{dataset.pk}/import/",
            {
                "jsonl": '{"name": "good", "input": {"mode": "ok"}, "expected": {"status": "succeeded"}}\n'
                + line
            },
        )
        assert response.status_code == 422, (case, response.status_code)
        text = response.content.decode()
        assert "line 2" in text and words in text, (case, text[:300])
        response = client.post(
            f"/evaluations/datasets/{dataset.pk}/cases/new/",
            {"name": "bad", "input": '{"mode": ' + value + "}", "expected_status": "succeeded"},
        )
        assert response.status_code == 422 and words in response.context["errors"].get(
            "input", json.dumps(response.context["errors"], ensure_ascii=False)
        ), (case, response.context["errors"])
    assert list(dataset.cases.values_list("name", flat=True)) == ["one"]  # all or nothing


def test_fork_and_cancel_pages_refuse_hostile_fields(world, reviewer, manager):
    run = world["run"]
    as_reviewer = client_for(reviewer)
    before = Run.objects.count()
    for turn in ("²", "--1", "-1", "9" * 30, "\u202e1"):
        response = as_reviewer.post(f"/runs/{run.pk}/fork/", {"turn": turn})
        answer_ok("page: fork", "turn", response, ("turn",))
        assert response.status_code == 422 and "turn" in response.context["fields"]
    for case in ("nul", "NaN", "1e400", "deep nesting"):
        value, words = BAD_VALUES[case]
        response = as_reviewer.post(
            f"/runs/{run.pk}/fork/", {"turn": "0", "tool_use_id": "t", "corrected": value}
        )
        answer_ok("page: fork", case, response, ("corrected", "turn"))
        assert response.status_code in (409, 422)
    as_manager = client_for(manager)
    for reason, words in (("stop\x00", "NUL"), ("x" * 10_001, "at most 10,000")):
        response = as_manager.post(f"/runs/{run.pk}/cancel/", {"reason": reason})
        assert response.status_code == 422 and words in response.content.decode()
        assert "reason" in response.context["fields"]
    # A re-run page's one-time key that cannot be stored is no key (a DataError before).
    response = as_manager.post(f"/runs/{run.pk}/rerun/", {"idempotency_key": "k\x00"})
    assert response.status_code in (302, 403, 409, 422), response.status_code
    new = Run.objects.exclude(pk__in=[run.pk, world["approval"].run_id]).first()
    assert new is None or new.idempotency_key is None
    _unchanged(world, before + (1 if new else 0))


QUERY_CASES = {
    "/audit/": ["q", "actor", "kind", "run", "ticket", "approval", "since", "until", "after"],
    "/audit/export.jsonl": ["q", "ticket", "since", "until"],
    "/audit/people/manager/": ["from", "to"],
    "/costs/": ["days"],
    "/costs/export.csv": ["days"],
    "/operations/": ["days", "until", "workflow"],
    "/operations/digest/": ["day", "workflow"],
}
LABELS = {"since": "From ", "until": "To "}  # the trail form's labels, which its messages use
QUERY_VALUES = [
    "a\x00b",
    "q" * 501,
    "²",
    "٣",
    "--1",
    "9999-12-31",
    "0001-01-01",
    "\u202e",
    "9" * 40,
]


def test_trail_costs_and_operations_query_strings(world, manager):
    client = client_for(manager)
    for path, keys in QUERY_CASES.items():
        for key in keys:
            for value in QUERY_VALUES:
                response = client.get(path, {key: value})
                names = (key, LABELS.get(key, key), "query", "period")
                answer_ok(f"query string {path}", key, response, names)
                if value in ("a\x00b", "q" * 501):  # the shared query-string limits
                    assert response.status_code == 400 and key in body_of(response).decode()
