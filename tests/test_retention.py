"""The retention purge drops old payload bodies and the hash chain still verifies."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from orchestration import audit
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from orchestration.retention import purge_payloads
from reviews.models import EscalationTicket
from tests.audit_factories import make_run


@pytest.fixture
def aged(operator):
    now = timezone.now()
    old = make_run(
        operator, created_at=now - dt.timedelta(days=120), tool_output={"txn_id": "TX-20261120-001"}
    )
    EscalationTicket.objects.create(
        run=old,
        reason="ambiguity",
        message="?",
        context={"input": {"secret": 1}},
        due_at=now,
        status="resolved",
    )
    paused = make_run(
        operator,
        status=Run.Status.AWAITING_REVIEW,
        created_at=now - dt.timedelta(days=120),
        tool_output={"txn_id": "TX-20261120-002"},
    )
    recent = make_run(
        operator, created_at=now - dt.timedelta(days=10), tool_output={"txn_id": "TX-20261120-003"}
    )
    runless = audit.record("runs.exported", actor=operator, payload={"format": "csv"})
    AuditEvent.objects.filter(pk=runless.pk).update(created_at=now - dt.timedelta(days=100))
    # Rehash the back-dated event the way record() would have, so the chain is valid to begin with.
    _rehash_from(runless.seq)
    return old, paused, recent


def _rehash_from(seq: int) -> None:
    """Re-seal and re-link the anchored events from ``seq`` on (docs/architecture.md, "Chain
    format": a run-less event is anchored as it is appended)."""
    for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
        event.prev_hash = (
            AuditEvent.objects.get(seq=event.seq - 1).chain_hash
            if event.seq > 1
            else audit.GENESIS_HASH
        )
        audit.seal(event)
        event.chain_hash = audit.expected_chain_hash(event)
        AuditEvent.objects.filter(pk=event.pk).update(
            prev_hash=event.prev_hash,
            hash=event.hash,
            key_id=event.key_id,
            mac=event.mac,
            chain_hash=event.chain_hash,
        )


def test_purge_drops_old_bodies_keeps_facts_and_the_chain(aged):
    old, paused, recent = aged
    assert audit.verify_chain().ok
    report = purge_payloads(90)
    assert (report.runs, report.model_calls, report.tool_calls, report.tickets) == (1, 1, 1, 1)
    assert report.events == 3 + 1  # the old run's three events and the old run-less one

    tc = ToolCall.objects.get(run=old)
    assert tc.input is None and tc.output is None and tc.raw_output is None and tc.payload_purged_at
    assert tc.status == "ok" and tc.name == "fetch_transactions"
    mc = ModelCall.objects.get(run=old)
    assert (
        mc.request_content is None and mc.response_content is None and mc.model == "claude-opus-4-6"
    )
    # Bodies are gone; each event keeps only its evidence digests, and the purge is an event.
    purged = AuditEvent.objects.filter(run=old).exclude(kind=audit.PURGE_KIND)
    assert all(set(e.payload) <= {"evidence"} and e.payload_purged_at for e in purged)
    assert AuditEvent.objects.get(run=old, kind=audit.PURGE_KIND).payload == {
        "purged_at": tc.payload_purged_at.isoformat()
    }
    assert EscalationTicket.objects.get(run=old).context.keys() == {"purged_at"}
    old.refresh_from_db()
    assert old.input == {"date": "2026-11-20"}  # the run row keeps its input and result

    # A paused run and a recent one are untouched.
    for run in (paused, recent):
        assert ToolCall.objects.get(run=run).output is not None
        assert all(e.payload_purged_at is None for e in AuditEvent.objects.filter(run=run))

    assert audit.verify_chain().ok and audit.verify_run(old.pk).ok
    # Searching no longer finds what was purged.
    assert not ToolCall.objects.filter(run=old, output__isnull=False).exists()

    # Purged rows are still protected: changing a purged event's kind is detected.
    first = AuditEvent.objects.filter(run=old).order_by("seq").first()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET kind = 'run.cancelled' WHERE seq = %s", [first.seq]
        )
    assert audit.verify_run(old.pk).broken_at == first.seq


def test_purge_is_idempotent_and_dry_run_changes_nothing(aged):
    dry = purge_payloads(90, dry_run=True)
    assert (
        dry.tool_calls == 1
        and ToolCall.objects.filter(payload_purged_at__isnull=False).count() == 0
    )
    assert "Would purge" in str(dry)
    purge_payloads(90)
    again = purge_payloads(90)
    assert (again.runs, again.tool_calls, again.events) == (0, 0, 0)


def test_purge_command_and_setting(aged, settings):
    settings.PAYLOAD_RETENTION_DAYS = 5
    out = io.StringIO()
    call_command("purge_payloads", stdout=out)
    assert "Purged payloads older than" in out.getvalue() and "2 runs" in out.getvalue()
    with pytest.raises(CommandError, match="at least 1"):
        call_command("purge_payloads", "--days", "0")


def test_beat_runs_the_purge(aged):
    from django.conf import settings

    from orchestration.tasks import purge_old_payloads

    assert (
        settings.CELERY_BEAT_SCHEDULE["purge-old-payloads"]["task"]
        == "orchestration.tasks.purge_old_payloads"
    )
    assert "1 runs" in purge_old_payloads()
