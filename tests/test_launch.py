"""Starting runs, and refusing bad input from every entry point without writing a row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from orchestration.launch import RunRefused, start_run
from orchestration.models import AuditEvent, Run, WorkflowVersion

ROOT = Path(__file__).resolve().parent.parent

BAD_INPUTS = [
    ("nope", '{"date": "2026-11-20"}', "workflow", "Unknown workflow 'nope'"),
    ("financial_reporting", "{date: 2026}", "input", "not valid JSON"),
    ("financial_reporting", "[1, 2]", "input", "must be a JSON object"),
    # (financial_reporting fills a missing date with yesterday: issue 14 §6)
    ("payment_approval", "{}", "(root)", "'payment_id' is a required property"),
    ("financial_reporting", '{"date": "20-11-2026"}', "date", "is not a 'date'"),
    (
        "financial_reporting",
        '{"date": "2026-11-20", "extra": 1}',
        "(root)",
        "Additional properties are not allowed",
    ),
    ("payment_approval", '{"payment_id": "1001"}', "payment_id", "does not match"),
]


@pytest.mark.parametrize(("workflow", "raw", "field", "message"), BAD_INPUTS)
def test_bad_input_is_refused_with_the_field_and_rule_and_writes_nothing(
    operator, workflow, raw, field, message
):
    with pytest.raises(RunRefused) as refused:
        start_run(workflow, raw, operator)
    assert field in refused.value.errors
    assert message in refused.value.errors[field]
    assert Run.objects.count() == 0
    assert WorkflowVersion.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_good_input_snapshots_estimates_and_queues(
    operator, django_capture_on_commit_callbacks, monkeypatch
):
    enqueued = []
    monkeypatch.setattr(
        "orchestration.dispatch.enqueue_step",
        lambda run_id, countdown=None: enqueued.append(run_id),
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run("financial_reporting", '{"date": "2026-11-12"}', operator)
    assert run.status == Run.Status.QUEUED
    assert enqueued == [run.pk]
    assert (
        run.workflow_version.content_hash
        and "# Workflow rules" in run.workflow_version.system_prompt
    )
    assert (
        "2026-11-12" not in run.workflow_version.system_prompt
    )  # input never goes into instructions
    assert run.estimate_usd > 0 and run.estimate["lines"][0]["calc"].startswith("count_tokens")
    kinds = list(AuditEvent.objects.filter(run=run).values_list("kind", flat=True))
    assert kinds == ["run.requested", "estimate.made", "run.queued"]
    # A second run of the same workflow reuses the snapshot.
    again = start_run("financial_reporting", {"date": "2026-11-19"}, operator)
    assert again.workflow_version_id == run.workflow_version_id


def test_idempotency_key_returns_the_first_run(operator):
    first = start_run(
        "financial_reporting", {"date": "2026-11-20"}, operator, idempotency_key="k-1"
    )
    second = start_run(
        "financial_reporting", {"date": "2026-11-20"}, operator, idempotency_key="k-1"
    )
    assert first.pk == second.pk and Run.objects.count() == 1


def test_command_prints_the_run_id(operator, capsys):
    call_command(
        "start_run",
        "financial_reporting",
        "--input",
        '{"date": "2026-11-20"}',
        "--user",
        "operator",
    )
    out = capsys.readouterr().out.strip()
    assert Run.objects.get().pk.hex == out.replace("-", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--input", "{}"], "Unknown workflow 'nope'"),
        (["financial_reporting", "--input", "not json"], "not valid JSON"),
        (["financial_reporting", "--input", '{"date": "x"}'], "date: 'x' is not a 'date'"),
        (["financial_reporting", "--input", "{}", "--user", "ghost"], "No user named 'ghost'"),
        (["financial_reporting", "--input", "{}", "--user", "auditor"], "may not start runs"),
    ],
)
def test_command_refuses_bad_input(seeded, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("start_run", *args)
    assert Run.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_command_exits_non_zero_with_message_on_stderr(seeded):
    from django.db import connection

    env = {**os.environ, "DATABASE_URL": _db_url(connection.settings_dict)}
    proc = subprocess.run(
        [sys.executable, "manage.py", "start_run", "financial_reporting", "--input", '{"date": 5}'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "date: 5 is not of type 'string'" in proc.stderr
    assert proc.stdout == ""
    assert Run.objects.count() == 0


def _db_url(s: dict) -> str:
    return f"postgres://{s['USER']}:{s.get('PASSWORD') or ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def test_form_shows_errors_inline_and_keeps_the_input(client, operator):
    client.force_login(operator)
    url = reverse("start_form", args=["financial_reporting"])
    response = client.post(url, {"date": "not-a-date"})
    assert response.status_code == 200
    assert b"is not a &#x27;date&#x27;" in response.content
    assert b'value="not-a-date"' in response.content
    assert Run.objects.count() == 0


def test_form_starts_a_run_and_redirects_to_it(client, operator):
    client.force_login(operator)
    response = client.post(
        reverse("start_form", args=["financial_reporting"]), {"date": "2026-11-20"}
    )
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "run_detail", args=[run.pk]
    )
    assert run.requested_by == operator and run.input == {"date": "2026-11-20"}


def test_only_starters_may_open_the_form(client, auditor, reviewer):
    for user in (auditor, reviewer):
        client.force_login(user)
        assert client.get(reverse("start_choose")).status_code == 403
        assert (
            client.post(
                reverse("start_form", args=["financial_reporting"]), {"date": "2026-11-20"}
            ).status_code
            == 403
        )
    assert Run.objects.count() == 0
