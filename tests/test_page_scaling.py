"""Pages whose cost must not grow with the data (bench/dashboard.py measures them at scale):
the run page's timeline window, the live poll's incremental chain check, the approval
queue's pages. Query counts are pinned at two sizes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from orchestration import audit
from orchestration.models import AuditEvent, ModelCall, ToolCall
from orchestration.timeline import TIMELINE_WINDOW, timeline_window
from reviews.models import ApprovalRequest, EscalationTicket
from tests.audit_factories import make_run


def _long_run(user, steps: int):
    """A finished run with `steps` model calls and tool calls, a minute apart, oldest first."""
    run = make_run(user)
    start = timezone.now() - dt.timedelta(days=1)
    calls = ModelCall.objects.bulk_create(
        ModelCall(
            run=run,
            turn=i + 1,
            model="claude-opus-4-6",
            status="ok",
            request_content=[{"type": "text", "text": f"turn {i + 1}"}],
            response_content=[{"type": "text", "text": f"answer-{i + 1:04d}"}],
            stop_reason="tool_use",
        )
        for i in range(steps)
    )
    tools = ToolCall.objects.bulk_create(
        ToolCall(
            run=run,
            model_call=mc,
            tool_use_id=f"tu-{i + 1:04d}",
            name="increment",
            status="ok",
            settled=True,
            input={"n": i},
            output={"n": i + 1},
        )
        for i, mc in enumerate(calls)
    )
    for i, (mc, tc) in enumerate(zip(calls, tools, strict=True)):
        at = start + dt.timedelta(minutes=i)
        ModelCall.objects.filter(pk=mc.pk).update(created_at=at)
        ToolCall.objects.filter(pk=tc.pk).update(created_at=at + dt.timedelta(seconds=1))
    return run


def _queries(client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code in (200, 286)
    return len(captured.captured_queries), response.content.decode()


def test_run_page_shows_the_latest_entries_and_the_whole_story_on_request(
    client, auditor, operator
):
    run = _long_run(operator, 80)  # 160 calls + 3 events (make_run)
    client.force_login(auditor)
    url = reverse("run_detail", args=[run.pk])
    page = client.get(url).content.decode()
    total = 80 * 2 + AuditEvent.objects.filter(run=run).count() + 1  # + make_run's own call
    assert f"Showing the latest {TIMELINE_WINDOW} of {total} entries" in page
    assert "answer-0080" in page and "answer-0001" not in page
    whole = client.get(url, {"timeline": "all"}).content.decode()
    assert "answer-0001" in whole and "answer-0080" in whole
    assert f"Showing all {total} entries" in whole
    assert 'hx-get="' not in whole.split('id="live"')[1].split(">")[0]  # final: no polling


def test_timeline_window_keeps_the_latest_entries_in_order(operator):
    run = _long_run(operator, 70)
    window = timeline_window(run, last=50)
    whole = timeline_window(run, last=None)
    assert len(whole) == whole.total == window.total
    assert [e.obj.pk for e in window] == [e.obj.pk for e in whole.entries[-50:]]
    assert window.hidden == whole.total - 50


def test_run_page_and_live_poll_queries_do_not_grow_with_the_run(client, auditor, operator):
    client.force_login(auditor)
    short, long = _long_run(operator, 5), _long_run(operator, 150)
    for name in ("run_detail", "run_live"):
        small, _ = _queries(client, reverse(name, args=[short.pk]))
        big, _ = _queries(client, reverse(name, args=[long.pk]))
        assert small == big, name


def test_live_poll_checks_new_events_and_rehashes_everything_when_the_head_is_old(
    client, auditor, operator, settings
):
    settings.AUDIT_LIVE_FULL_CHECK_SECONDS = 60
    run = make_run(operator)
    audit.anchor()  # as beat does; the events appended below are not anchored yet
    client.force_login(auditor)
    assert audit.verify_run_live(run.pk, full=True).checked == 2
    first = AuditEvent.objects.filter(run=run).order_by("seq").first()
    # New events are checked as the continuation of the cached head...
    audit.record("ticket.opened", run=run, actor="system", payload={"message": "x"})
    assert audit.verify_run_live(run.pk, full=False).checked == 3
    new = audit.record("ticket.claimed", run=run, actor="system", payload={"message": "x"})
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE orchestration_auditevent SET payload = \'{"message": "y"}\' WHERE id = %s',
            [new.pk],
        )
    report = audit.verify_run_live(run.pk, full=False)
    assert not report.ok and report.broken_at == new.seq and report.checked == 3
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE orchestration_auditevent SET payload = \'{"message": "x"}\' WHERE id = %s',
            [new.pk],
        )
    assert audit.verify_run_live(run.pk, full=False).ok  # nothing broken was cached
    # ...an edit before the head is found by the page at once, and by the poll when the
    # head is older than the setting (0: every poll re-hashes everything).
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET payload = '{\"input\": {}}' WHERE seq = %s",
            [first.seq],
        )
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert f"Audit chain broken at event #{first.seq}" in page
    settings.AUDIT_LIVE_FULL_CHECK_SECONDS = 0
    live = client.get(reverse("run_live", args=[run.pk])).content.decode()
    assert f"Audit chain broken at event #{first.seq}" in live


def _pending(operator, n: int) -> None:
    for i in range(n):
        run = make_run(operator, status="awaiting_approval")
        ApprovalRequest.objects.create(
            run=run,
            estimate_usd=Decimal("25"),
            threshold_usd=Decimal("20"),
            calculation={"lines": []},
            requested_by=operator,
            expires_at=timezone.now() + dt.timedelta(hours=1, minutes=i),
        )


def test_approval_queue_is_paged_soonest_to_expire_first(client, manager, operator):
    _pending(operator, 30)
    client.force_login(manager)
    url = reverse("approval_queue")
    first = client.get(url).content.decode()
    assert first.count('class="approval-row"') == 25
    assert "<strong>30</strong> waiting" in first and "Page 1 of 2" in first
    ids = list(
        ApprovalRequest.objects.filter(status="pending")
        .order_by("expires_at", "pk")
        .values_list("pk", flat=True)
    )
    assert f'id="approval-{ids[0]}"' in first and f'id="approval-{ids[25]}"' not in first
    second = client.get(url, {"page": 2}).content.decode()
    assert second.count('class="approval-row"') == 5 and f'id="approval-{ids[29]}"' in second


def _tickets(operator, n: int) -> None:
    for i in range(n):
        run = make_run(operator, status="awaiting_review", workflow=f"wf_{i % 3}")
        EscalationTicket.objects.create(
            run=run,
            reason="validation_failed",
            message="check",
            context={},
            priority=1 + i % 3,
            due_at=timezone.now() + dt.timedelta(minutes=i),
        )


@pytest.mark.parametrize(
    ("url_name", "fill"), [("approval_queue", _pending), ("ticket_queue", _tickets)]
)
def test_queue_queries_do_not_grow_with_the_queue(client, manager, operator, url_name, fill):
    client.force_login(manager)
    fill(operator, 3)
    small, _ = _queries(client, reverse(url_name))
    fill(operator, 40)
    big, page = _queries(client, reverse(url_name))
    assert small == big
    assert "43" in page  # the count covers the whole queue, not the page
