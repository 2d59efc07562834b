"""The run page's timeline rows (built in Python by orchestration.timeline.entry_html), what the
live poll reads, and the window's reads: the page shows the same entries for fewer queries."""

from __future__ import annotations

import re
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orchestration import audit
from orchestration.models import ModelCall, ToolCall
from orchestration.timeline import timeline_window
from reviews.models import EscalationTicket
from tests.audit_factories import make_run
from tests.test_page_scaling import _long_run

HOSTILE = '<script>alert(1)</script> & "quoted" \u202egnp.exe'


def _entries(html: str) -> list[str]:
    """The ids of the timeline's model and tool entries, in page order."""
    return re.findall(r'<li class="entry (?:model|tool)[^"]*" id="((?:model|tool)-\d+)"', html)


def test_rows_show_each_kind_escaped(client, operator):
    run = make_run(operator)
    child = make_run(operator)
    mc = ModelCall.objects.create(
        run=run,
        turn=7,
        attempt=2,
        model="claude-opus-4-6",
        status="ok",
        stop_reason="tool_use",
        request_content=[{"type": "text", "text": "go"}],
        response_content=[
            {"type": "text", "text": f"line one\n{HOSTILE}"},
            {"type": "tool_use", "id": "tu_9", "name": "lookup", "input": {"q": HOSTILE}},
        ],
        input_tokens=12,
        output_tokens=34,
        cost_usd=Decimal("0.0123"),
        latency_ms=800,
        first_token_ms=90,
        sdk_attempts=2,
    )
    ModelCall.objects.create(
        run=run,
        turn=8,
        model="claude-opus-4-6",
        status="pending",
        request_content=[],
        response_content=[{"type": "text", "text": "so far"}],
    )
    ToolCall.objects.create(
        run=run,
        model_call=mc,
        tool_use_id="tu_9",
        name="lookup",
        status="failed",
        input={"q": 1},
        output={
            "fallback": {"kind": "last_cached_result", "cached_at": "2026-12-01T10:11:12.999999Z"}
        },
        validation_errors=[HOSTILE],
        error="bad <input>",
    )
    audit.record(
        "subagent.handoff",
        run=run,
        actor="system",
        payload={"agent": "researcher", "child": str(child.pk), "status": "awaiting_review"},
    )
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page and "\u202e" not in page
    assert "line one<br>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;" in page
    assert "\\u202egnp.exe" in page  # the bidi override shown as a marker, not applied
    assert "turn 7 · attempt 2" in page and '<span class="pill">tool_use</span>' in page
    assert "12 in · 34 out · $0.0123 · first token 90 ms · 800 ms · 2 HTTP attempts" in page
    assert "asks for <code>lookup</code>" in page
    assert '<span class="pill live-pill">streaming</span>' in page
    assert '<span class="status status-failed">failed</span>' in page
    assert "fallback: last cached result, cached 2026-12-01T10:11:12" in page
    assert "<li>&lt;script&gt;" in page and '<p class="error">bad &lt;input&gt;</p>' in page
    child_url = reverse("run_detail", args=[child.pk])
    assert f'Sub-agent researcher: <a href="{child_url}">run <code>{str(child.pk)[:8]}' in page
    assert "ended awaiting review" in page


def test_ticket_page_marks_its_failing_step_with_the_same_rows(client, operator, reviewer):
    run = make_run(operator, status="awaiting_review")
    mc = ModelCall.objects.create(
        run=run, turn=1, model="claude-opus-4-6", status="ok", request_content=[]
    )
    tool = ToolCall.objects.create(
        run=run, model_call=mc, tool_use_id="t1", name="validate", status="failed", input={}
    )
    ticket = EscalationTicket.objects.create(
        run=run,
        reason="validation_failed",
        message="check",
        context={},
        failing_tool_call=tool,
        due_at=run.created_at,
    )
    client.force_login(reviewer)
    body = client.get(reverse("ticket_detail", args=[ticket.pk])).content.decode()
    assert f'<li class="entry tool tool-failed failing" id="tool-{tool.pk}">' in body
    assert body.count("failing step") == 1
    run_page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert f'id="tool-{tool.pk}"' in run_page and "failing step" not in run_page


def test_window_reads_only_the_rows_it_shows(operator):
    run = _long_run(operator, 60)
    with CaptureQueriesContext(connection) as captured:
        window = timeline_window(run, last=10)
    # The latest keys, the counts, and the rows shown of each source: 5, whatever the length.
    assert len(captured.captured_queries) == 5
    full_reads = [q["sql"] for q in captured.captured_queries if '"request_content"' in q["sql"]]
    assert len(full_reads) == 1 and " IN (" in full_reads[0]
    whole = timeline_window(run, last=None)
    assert len(window) == 10 and window.total == len(whole.entries) > 120
    assert [(e.kind, e.obj.pk) for e in window] == [(e.kind, e.obj.pk) for e in whole.entries[-10:]]


def test_page_and_poll_show_the_same_latest_entries_in_order(client, operator):
    run = _long_run(operator, 70)
    run.status = "running"
    run.save(update_fields=["status"])
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    poll = client.get(reverse("run_live", args=[run.pk])).content.decode()
    whole = timeline_window(run, last=None)
    expected = [f"{e.kind}-{e.obj.pk}" for e in whole.entries if e.kind != "event"][-100:]
    shown = _entries(page)
    assert shown == _entries(poll)
    assert shown == expected[-len(shown) :] and len(set(shown)) == len(shown)
    assert 'hx-trigger="every 1500ms"' in poll


def test_live_poll_reads_no_navigation(client, manager, operator):
    """The polled part shows no navigation: its counts are not queried on every poll."""
    run = make_run(operator, status="running")
    client.force_login(manager)
    with CaptureQueriesContext(connection) as captured:
        poll = client.get(reverse("run_live", args=[run.pk]))
    assert poll.status_code == 200 and 'id="live"' in poll.content.decode()
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert '"alerts_alert"' not in sql and 'SELECT "auth_group"."name"' not in sql
    with CaptureQueriesContext(connection) as captured:
        client.get(reverse("run_detail", args=[run.pk]))
    sql = " ".join(q["sql"] for q in captured.captured_queries)
    assert '"alerts_alert"' in sql and 'SELECT "auth_group"."name"' in sql
