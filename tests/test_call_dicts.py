"""One function each writes a model call and a tool call as a dict (orchestration.serialize):
the ticket snapshot, the run download and the JSON API all show the same fields and values."""

from __future__ import annotations

import json

from django.urls import reverse

import tests.engine_workflows  # noqa: F401 - registers ledger_close
from orchestration.launch import start_run
from orchestration.models import ModelCall, Run, ToolCall
from orchestration.serialize import model_call_dict, tool_call_dict, usd_string
from tests.api_helpers import assert_documented, call, token_for


def _escalated_run(operator, drive) -> Run:
    # Every tool runs, then the last turn is ambiguous: a ticket with a snapshot of it all.
    run = start_run(
        "ledger_close",
        {"day": "2026-11-20"},
        operator,
        options={"simulator_faults": [{"fault": "ambiguity", "turn": 3}]},
    )
    run = drive(run)
    assert run.status == Run.Status.AWAITING_REVIEW
    return run


def test_snapshot_download_and_api_write_calls_alike(client, operator, drive):
    run = _escalated_run(operator, drive)
    model_calls = [
        model_call_dict(mc) for mc in ModelCall.objects.filter(run=run).order_by("turn", "attempt")
    ]
    tool_calls = [
        tool_call_dict(tc)
        for tc in ToolCall.objects.filter(run=run).order_by("created_at", "attempt")
    ]
    assert [m["turn"] for m in model_calls] == [0, 1, 2, 3]
    assert [t["name"] for t in tool_calls] == ["fetch_entries", "check_balance", "post_summary"]
    assert model_calls[0]["cost_usd"] == usd_string(ModelCall.objects.get(run=run, turn=0).cost_usd)
    assert tool_calls[2]["output"]["day"] == "2026-11-20" and tool_calls[2]["settled"] is True

    # The ticket's snapshot, taken when the run escalated (stored as JSON, read back).
    snapshot = run.tickets.get().context
    assert snapshot["model_calls"] == model_calls
    assert snapshot["tool_calls"] == tool_calls

    # The run download.
    client.force_login(operator)
    response = client.get(reverse("run_download", args=[run.pk]))
    assert response.status_code == 200
    document = json.loads(
        b"".join(response.streaming_content) if response.streaming else response.content
    )
    assert document["model_calls"] == model_calls
    assert document["tool_calls"] == tool_calls

    # The JSON API, checked against its OpenAPI schema.
    client.logout()
    answer = call(client, "GET", f"/api/runs/{run.pk}/calls", token_for(operator))
    body = assert_documented(answer, "/api/runs/{run_id}/calls", "get")
    assert body["model_calls"] == model_calls
    assert body["tool_calls"] == tool_calls
    assert body["id"] == str(run.pk) and body["links"]["self"].endswith(f"/api/runs/{run.pk}")


def test_api_calls_follow_the_run_access_rule(client, operator, outsider, drive):
    run = _escalated_run(operator, drive)
    assert call(client, "GET", f"/api/runs/{run.pk}/calls", token_for(outsider)).status_code == 404
    assert call(client, "GET", f"/api/runs/{run.pk}/calls").status_code == 401
