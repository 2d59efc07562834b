"""Tamper evidence that covers the evidence (issue 12, part 6).

Each test edits the database the way someone with write access would (raw SQL) and checks that
``verify_audit`` (``verify_chain``) and, where it applies, ``verify_run`` name what changed.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from costs import accounting
from orchestration import audit
from orchestration.launch import start_run
from orchestration.models import AuditCheckpoint, AuditEvent, FanoutJob, ModelCall, Run, ToolCall
from orchestration.retention import purge_payloads
from orchestration.workflows import registry
from orchestration.workflows.versions import snapshot
from reviews import access, approvals, resolutions
from reviews.escalation import escalate
from reviews.models import ApprovalRequest, EscalationTicket
from tests.audit_factories import make_run

KEY_A = "a" * 40
KEY_B = "b" * 40


def sql(query: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(query, params or [])


@pytest.fixture
def history(operator, reviewer, manager, settings, monkeypatch):
    """A small installation: a run with a model call, a tool call and a result; a ticket opened
    and resolved by a reviewer; a run rejected by a manager; a run-less event."""
    monkeypatch.setattr("orchestration.dispatch.enqueue_step", lambda run_id, countdown=None: None)
    # The declared workflow's first version (bootstrapped), before make_run's stand-in version
    # of the same name: start_run below starts on it.
    snapshot(registry.get("financial_reporting"))
    done = make_run(
        operator,
        tool_output={"transactions": [{"txn_id": "TX-20261120-001", "amount": "12.50"}]},
        result={"total": "12.50", "published": True},
    )
    audit.record("final.rejected", run=done, payload={"problems": ["a nudge, no evidence"]})
    audit.record(f"run.{done.status}", run=done, payload={"again": True}, evidence_of=[done])
    paused = make_run(operator, status=Run.Status.RUNNING, tool_output={"txn_id": "TX-2"})
    ticket = escalate(
        paused.pk, EscalationTicket.Reason.AMBIGUITY, "Which day?", details={"why": "?"}
    )
    resolutions.resolve(ticket.pk, reviewer, "fail", comment="wrong input")
    settings.APPROVAL_THRESHOLD_USD = Decimal("0.0001")
    waiting = start_run("financial_reporting", '{"date": "2026-11-12"}', operator)
    request = waiting.approvals.get()
    approvals.decide(request.pk, manager, approve=False, comment="too costly for a test")
    audit.record("runs.exported", actor=operator, payload={"format": "csv"})
    audit.anchor()  # the sequencer's pass (beat, in production): every event in the global chain
    return {
        "done": done,
        "paused": paused,
        "ticket": EscalationTicket.objects.get(pk=ticket.pk),
        "waiting": waiting,
        "request": ApprovalRequest.objects.get(pk=request.pk),
    }


def assert_caught(run: Run | None, *phrases: str) -> None:
    """verify_chain, verify_audit and (for a run) verify_run all fail, naming the change."""
    report = audit.verify_chain()
    assert not report.ok, "verify_chain missed the change"
    for phrase in phrases:
        assert phrase in report.problem, report.problem
    with pytest.raises(CommandError, match="BROKEN"):
        call_command("verify_audit", stdout=io.StringIO())
    if run is not None:
        run_report = audit.verify_run(run.pk)
        assert not run_report.ok, "verify_run missed the change"
        for phrase in phrases:
            assert phrase in run_report.problem, run_report.problem


# --- an untouched installation -----------------------------------------------------------


def test_an_untouched_installation_verifies_and_says_what_it_verified(history):
    report = audit.verify_chain()
    assert report.ok, report.problem
    assert report.checked == AuditEvent.objects.count()
    assert report.evidence["model calls"] == ModelCall.objects.count() == 2
    assert report.evidence["tool calls"] == 2 and report.evidence["tickets"] == 1
    assert report.evidence["approvals"] == 1
    done = audit.verify_run(history["done"].pk)
    assert done.ok and done.checked == 5
    assert done.evidence == {"model calls": 1, "tool calls": 1, "result": 1}
    for run in Run.objects.all():
        assert audit.verify_run(run.pk).ok
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    text = out.getvalue()
    assert text.startswith(f"OK: the whole audit trail: {report.checked} events verified.")
    assert "2 model calls, 2 tool calls" in text and "1 ticket, 1 approval" in text
    checkpoint = AuditCheckpoint.objects.get()
    assert f"Signed checkpoint #{checkpoint.pk} at event #{AuditEvent.objects.count()}" in text
    # The next verification checks that checkpoint, and says so.
    again = audit.verify_chain()
    assert again.ok and again.checkpoint["id"] == checkpoint.pk and again.after_checkpoint == 0
    assert (
        f"up to signed checkpoint #{checkpoint.pk}" in audit.verify_run(history["done"].pk).summary
    )


def test_every_event_is_signed_and_every_run_knows_its_head(history):
    events = AuditEvent.objects.all()
    assert all(
        e.mac and e.key_id == audit.key_id(audit.settings.AUDIT_SIGNING_KEY[0]) for e in events
    )
    for run in Run.objects.all():
        last = AuditEvent.objects.filter(run=run).order_by("-seq").first()
        assert (run.audit_head.run_seq, run.audit_head.hash) == (last.run_seq, last.hash)


# --- edits of the evidence ---------------------------------------------------------------


def test_an_edited_tool_call_output_is_caught(history):
    run = history["done"]
    tc = ToolCall.objects.get(run=run)
    sql(
        "UPDATE orchestration_toolcall SET output = %s WHERE id = %s",
        ['{"transactions": [{"txn_id": "TX-20261120-001", "amount": "1.00"}]}', tc.pk],
    )
    assert_caught(run, f"tool call {tc.pk}: its output differs from what event #")


def test_an_edited_tool_call_input_is_caught(history):
    run = history["done"]
    tc = ToolCall.objects.get(run=run)
    sql(
        "UPDATE orchestration_toolcall SET input = %s WHERE id = %s",
        ['{"date": "2026-01-01"}', tc.pk],
    )
    assert_caught(run, f"tool call {tc.pk}: its input differs")


def test_an_edited_model_response_is_caught(history):
    run = history["done"]
    mc = ModelCall.objects.get(run=run)
    sql(
        "UPDATE orchestration_modelcall SET response_content = %s WHERE id = %s",
        [json.dumps([{"type": "text", "text": "I approve everything."}]), mc.pk],
    )
    assert_caught(run, f"model call {mc.pk}: its response_content differs")


def test_an_edited_model_request_is_caught(history):
    run = history["done"]
    mc = ModelCall.objects.get(run=run)
    sql(
        "UPDATE orchestration_modelcall SET request_content = %s WHERE id = %s",
        [json.dumps([{"type": "text", "text": "approve PAY-1"}]), mc.pk],
    )
    assert_caught(run, f"model call {mc.pk}: its request_content differs")


def test_an_edited_run_result_is_caught(history):
    run = history["done"]
    sql(
        "UPDATE orchestration_run SET result = %s WHERE id = %s",
        ['{"total": "999999.00", "published": true}', run.pk],
    )
    assert_caught(run, f"run {run.pk}: its result differs")


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("ceiling_usd", "100000", "ceiling_usd"),  # a ceiling raised with no audited decision
        ("ceiling_tokens", "999999999", "ceiling_tokens"),
        ("requested_by_id", None, "requested_by"),  # someone else's run, to dodge four eyes
    ],
)
def test_an_edited_run_ceiling_or_requester_is_caught(history, manager, column, value, field):
    run = history["done"]
    if value is None:
        value = manager.pk
    sql(f"UPDATE orchestration_run SET {column} = %s WHERE id = %s", [value, run.pk])  # noqa: S608
    assert_caught(run, f"run {run.pk}: its {field} differs")


def test_a_raised_ceiling_is_covered_by_its_decision(history, operator, manager):
    """A ceiling raised the audited way verifies; the raise is a decision kept by retention."""
    run = make_run(operator, status=Run.Status.RUNNING, tool_output={"txn_id": "TX-3"})
    raised = accounting.raise_ceiling(
        run.pk, manager, refusal=access.ceiling_refusal, usd="5", comment="due today"
    )
    event = AuditEvent.objects.get(run=run, kind="ceiling.raised")
    assert audit.is_decision(event.kind, event.payload)
    assert audit.verify_run(run.pk).ok
    sql(
        "UPDATE orchestration_run SET ceiling_usd = %s WHERE id = %s",
        [raised.ceiling_usd + 1, run.pk],
    )
    assert_caught(run, f"run {run.pk}: its ceiling_usd differs")


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("context", '{"input": {"date": "2026-11-20"}, "details": {}}', "context"),
        ("resolution", "approve", "resolution"),
        ("comment", "looked fine to me", "comment"),
        ("resolved_by_id", None, "resolved_by"),
    ],
)
def test_an_edited_ticket_snapshot_or_decision_is_caught(history, manager, column, value, field):
    ticket = history["ticket"]
    if value is None:
        value = manager.pk  # someone else resolved it
    sql(f"UPDATE reviews_escalationticket SET {column} = %s WHERE id = %s", [value, ticket.pk])  # noqa: S608
    assert_caught(history["paused"], f"escalation ticket {ticket.pk}: its {field} differs")


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("status", "approved", "status"),
        ("comment", "fine", "comment"),
        ("decided_by_id", None, "decided_by"),
    ],
)
def test_an_edited_approval_decision_is_caught(history, auditor, column, value, field):
    request = history["request"]
    sql(
        f"UPDATE reviews_approvalrequest SET {column} = %s WHERE id = %s",  # noqa: S608
        [auditor.pk if value is None else value, request.pk],
    )
    assert_caught(history["waiting"], f"approval request {request.pk}: its {field} differs")


def test_an_edited_fanout_job_output_is_caught(history):
    run = history["done"]
    job = FanoutJob.objects.create(
        run=run,
        job_id="j1",
        seq=1,
        prompt="scan a.py",
        schema={},
        status="succeeded",
        output={"findings": [{"rule": "secret"}]},
    )
    audit.record("fanout.job.passed", run=run, payload={"job_id": "j1"}, evidence_of=[job])
    assert audit.verify_run(run.pk).ok
    sql(
        "UPDATE orchestration_fanoutjob SET output = %s WHERE id = %s", ['{"findings": []}', job.pk]
    )
    assert_caught(run, f"fanout job {job.pk}: its output differs")


def test_a_deleted_evidence_row_is_caught(history):
    run = history["done"]
    tc = ToolCall.objects.get(run=run)
    sql("DELETE FROM orchestration_toolcall WHERE id = %s", [tc.pk])
    assert_caught(run, f"tool call {tc.pk}, recorded by event #", "was deleted")


# --- the purge stamp -----------------------------------------------------------------------


def test_a_purge_stamp_on_a_payload_still_there_is_caught(history):
    run = history["done"]
    event = AuditEvent.objects.get(run=run, kind="final.rejected")
    sql("UPDATE orchestration_auditevent SET payload_purged_at = now() WHERE seq = %s", [event.seq])
    assert_caught(run, f"event #{event.seq} is marked purged but still holds its payload")


def test_an_emptied_payload_needs_the_stamp_of_a_later_purge_event(history):
    run = history["done"]
    event = AuditEvent.objects.get(run=run, kind="final.rejected")
    # Emptied without the stamp: the payload no longer matches its digest.
    sql("UPDATE orchestration_auditevent SET payload = '{}' WHERE seq = %s", [event.seq])
    assert_caught(run, f"event #{event.seq}: its payload was altered")
    # Emptied with a stamp no purge event announced.
    sql("UPDATE orchestration_auditevent SET payload_purged_at = now() WHERE seq = %s", [event.seq])
    assert_caught(run, f"event #{event.seq} is marked purged at", "no later payload.purged event")


def test_an_emptied_run_less_payload_needs_a_purge_event_too(history):
    event = AuditEvent.objects.get(kind="runs.exported")
    sql(
        "UPDATE orchestration_auditevent SET payload = '{}', payload_purged_at = now() WHERE seq = %s",
        [event.seq],
    )
    assert_caught(None, f"event #{event.seq} is marked purged at")


def test_an_emptied_tool_output_needs_the_purge_too(history):
    run = history["done"]
    tc = ToolCall.objects.get(run=run)
    sql(
        "UPDATE orchestration_toolcall SET output = NULL, payload_purged_at = now() WHERE id = %s",
        [tc.pk],
    )
    assert_caught(run, f"tool call {tc.pk}: its output differs")


# --- the run's head ------------------------------------------------------------------------


def test_deleted_trailing_events_of_a_run_are_caught(history):
    run = history["done"]
    last_two = list(AuditEvent.objects.filter(run=run).order_by("-seq")[:2])
    # Later events of other runs follow them, so the run's own chain still looks whole.
    assert AuditEvent.objects.filter(seq__gt=last_two[0].seq).exists()
    sql("DELETE FROM orchestration_auditevent WHERE seq IN (%s, %s)", [e.seq for e in last_two])
    report = audit.verify_run(run.pk)
    assert not report.ok and "its last event(s) were deleted" in report.problem, report.problem
    assert not audit.verify_chain().ok


def test_a_moved_run_head_is_caught(history):
    run = history["done"]
    first = AuditEvent.objects.filter(run=run).order_by("seq").first()
    sql(
        "UPDATE orchestration_runaudithead SET run_seq = %s, hash = %s WHERE run_id = %s",
        [first.run_seq, first.hash, run.pk],
    )
    assert_caught(run, "is not its last event", "the head was altered")


def test_a_deleted_run_head_is_caught(history):
    run = history["done"]
    sql("DELETE FROM orchestration_runaudithead WHERE run_id = %s", [run.pk])
    assert_caught(run, "the run's head record is missing")


def test_deleted_trailing_events_with_the_head_moved_back_break_the_global_chain(history):
    run = history["done"]
    events = list(AuditEvent.objects.filter(run=run).order_by("seq"))
    keep = events[-2]
    sql("DELETE FROM orchestration_auditevent WHERE seq = %s", [events[-1].seq])
    sql(
        "UPDATE orchestration_runaudithead SET run_seq = %s, hash = %s WHERE run_id = %s",
        [keep.run_seq, keep.hash, run.pk],
    )
    report = audit.verify_chain()
    assert not report.ok and f"missing event(s) before #{events[-1].seq + 1}" in report.problem


# --- a forger without the key ----------------------------------------------------------------


def _rehash_in_sql(from_seq: int) -> None:
    """Recompute every hash from ``from_seq`` on, every link of both chains and every run
    head's position, as a forger with only database access would, following the chain format
    (docs/architecture.md): everything in the chain but the signatures."""
    prev = (
        AuditEvent.objects.get(seq=from_seq - 1).chain_hash if from_seq > 1 else audit.GENESIS_HASH
    )
    run_last: dict = {}
    for event in AuditEvent.objects.filter(seq__lt=from_seq, run__isnull=False).order_by("seq"):
        run_last[event.run_id] = event.hash
    for event in AuditEvent.objects.filter(seq__gte=from_seq).order_by("seq"):
        event.prev_hash = prev
        if event.run_id:
            event.run_prev_hash = run_last.get(event.run_id, audit.GENESIS_HASH)
        event.payload_digest = audit.payload_digest(event.payload)
        event.hash = audit.event_hash(event)
        event.chain_hash = audit.expected_chain_hash(event)
        sql(
            "UPDATE orchestration_auditevent SET prev_hash = %s, run_prev_hash = %s, payload_digest = %s, "
            "hash = %s, chain_hash = %s WHERE seq = %s",
            [
                event.prev_hash,
                event.run_prev_hash,
                event.payload_digest,
                event.hash,
                event.chain_hash,
                event.seq,
            ],
        )
        if event.run_id:
            run_last[event.run_id] = event.hash
            sql(
                "UPDATE orchestration_runaudithead SET hash = %s WHERE run_id = %s",
                [event.hash, event.run_id],
            )
        prev = event.chain_hash


def test_a_forged_output_with_every_hash_recomputed_is_caught_by_the_signatures(history):
    run = history["done"]
    tc = ToolCall.objects.get(run=run)
    forged = {"transactions": [{"txn_id": "TX-20261120-001", "amount": "1.00"}]}
    sql("UPDATE orchestration_toolcall SET output = %s WHERE id = %s", [json.dumps(forged), tc.pk])
    event = AuditEvent.objects.get(run=run, kind="tool.called")
    payload = event.payload
    entry = next(e for e in payload["evidence"] if e["model"] == "orchestration.toolcall")
    entry["digests"]["output"] = audit.payload_digest(forged)
    sql(
        "UPDATE orchestration_auditevent SET payload = %s WHERE seq = %s",
        [json.dumps(payload), event.seq],
    )
    _rehash_in_sql(event.seq)
    # Every hash, link, digest and head is consistent again: only the signatures are left.
    assert_caught(run, f"event #{event.seq} has a signature that does not match")


def test_events_cut_from_the_end_of_the_chain_are_caught_by_the_signed_checkpoint(history):
    checkpoint = audit.sign_checkpoint()
    last = AuditEvent.objects.order_by("-seq").first()
    assert checkpoint.seq == last.seq
    sql("DELETE FROM orchestration_auditevent WHERE seq = %s", [last.seq])
    report = audit.verify_chain()
    assert not report.ok
    assert (
        f"signed checkpoint #{checkpoint.pk} covers event #{last.seq}, but the chain ends"
        in report.problem
    )
    run_report = audit.verify_run(history["done"].pk)
    assert not run_report.ok and f"covers event #{last.seq}, which is missing" in run_report.problem


def test_a_forged_checkpoint_is_caught(history):
    checkpoint = audit.sign_checkpoint()
    sql(
        "UPDATE orchestration_auditcheckpoint SET hash = %s WHERE id = %s",
        ["f" * 64, checkpoint.pk],
    )
    assert_caught(
        history["done"], f"signed checkpoint #{checkpoint.pk}", "signature that does not match"
    )


def test_key_rotation_verifies_what_old_keys_signed(operator, settings):
    settings.AUDIT_SIGNING_KEY = [KEY_A]
    old = make_run(operator, tool_output={"txn_id": "TX-1"}, result={"ok": True})
    first_cp = audit.sign_checkpoint()
    settings.AUDIT_SIGNING_KEY = [KEY_B, KEY_A]  # rotated: B signs, A still verifies
    new = make_run(operator, tool_output={"txn_id": "TX-2"})
    second_cp = audit.sign_checkpoint()
    kinds = dict(AuditEvent.objects.values_list("run_id", "key_id").order_by("seq"))
    assert kinds[old.pk] == audit.key_id(KEY_A) and kinds[new.pk] == audit.key_id(KEY_B)
    assert first_cp.key_id == audit.key_id(KEY_A) and second_cp.key_id == audit.key_id(KEY_B)
    report = audit.verify_chain()
    assert report.ok and report.checkpoint["id"] == second_cp.pk
    assert audit.verify_run(old.pk).ok and audit.verify_run(new.pk).ok
    # Retiring A too early: what A signed can no longer be verified, and the report says why.
    settings.AUDIT_SIGNING_KEY = [KEY_B]
    report = audit.verify_chain()
    assert (
        not report.ok
        and f"signed with key {audit.key_id(KEY_A)}, which AUDIT_SIGNING_KEY does not hold"
        in report.problem
    )


def test_a_dev_key_only_when_debug(monkeypatch):
    """Production refuses to start without AUDIT_SIGNING_KEY, or with a short one."""
    import subprocess
    import sys

    env = {"DJANGO_DEBUG": "false", "SECRET_KEY": "x" * 50, "PATH": "/usr/bin:/bin"}
    cmd = [
        sys.executable,
        "-c",
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
        "'config.settings'); django.setup()",
    ]
    missing = subprocess.run(
        cmd, env=env, capture_output=True, text=True, cwd=audit.settings.BASE_DIR
    )
    assert missing.returncode != 0 and "AUDIT_SIGNING_KEY must be set" in missing.stderr
    short = subprocess.run(
        cmd,
        env={**env, "AUDIT_SIGNING_KEY": "short"},
        capture_output=True,
        text=True,
        cwd=audit.settings.BASE_DIR,
    )
    assert short.returncode != 0 and "at least 32 characters" in short.stderr


# --- retention keeps the decisions -----------------------------------------------------------


def test_retention_keeps_decisions_and_the_chain_still_covers_the_evidence(history):
    later = timezone.now() + dt.timedelta(days=200)
    report = purge_payloads(90, now=later)
    assert report.runs == 3
    decided = AuditEvent.objects.get(kind="approval.decided")
    assert (
        decided.payload_purged_at is None and decided.payload["comment"] == "too costly for a test"
    )
    resolved = AuditEvent.objects.get(kind="ticket.resolved")
    assert resolved.payload_purged_at is None and resolved.payload["resolution"] == "fail"
    # The run transition the resolution caused carries the decision too.
    failed = AuditEvent.objects.get(run=history["paused"], kind="run.failed")
    assert failed.payload_purged_at is None and failed.payload["comment"] == "wrong input"
    called = AuditEvent.objects.get(run=history["done"], kind="tool.called")
    assert called.payload_purged_at and set(called.payload) == {"evidence"}
    assert AuditEvent.objects.filter(kind=audit.PURGE_KIND).count() == 3 + 1  # 3 runs, run-less
    assert audit.verify_chain().ok
    done = audit.verify_run(history["done"].pk)
    assert done.ok and done.evidence["result"] == 1  # the result is still covered after the purge
    # A second purge has nothing left: decision and purge events are not candidates.
    assert purge_payloads(90, now=later).runs == 0
    # A purged evidence row still cannot be rewritten, nor a decision emptied.
    tc = ToolCall.objects.get(run=history["done"])
    sql("UPDATE orchestration_toolcall SET output = %s WHERE id = %s", ['{"forged": 1}', tc.pk])
    assert_caught(history["done"], f"tool call {tc.pk}: its output differs")
    sql("UPDATE orchestration_toolcall SET output = NULL WHERE id = %s", [tc.pk])
    assert audit.verify_chain().ok
    sql(
        "UPDATE orchestration_auditevent SET payload = '{}', payload_purged_at = now() WHERE seq = %s",
        [decided.seq],
    )
    assert_caught(history["waiting"], "records a decision and must never be purged")


# --- the run page ----------------------------------------------------------------------------


def test_the_run_page_says_what_was_verified_and_what_failed(client, auditor, history):
    run = history["done"]
    client.force_login(auditor)
    checkpoint = audit.sign_checkpoint()
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert (
        "Audit chain verified: 5 events, 1 model call, 1 tool call and the result, "
        f"up to signed checkpoint #{checkpoint.pk} (" in page
    )
    tc = ToolCall.objects.get(run=run)
    sql("UPDATE orchestration_toolcall SET output = '{}' WHERE id = %s", [tc.pk])
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert (
        "Audit chain broken at event #" in page and f"tool call {tc.pk}: its output differs" in page
    )


# --- the engine records the evidence it writes -------------------------------------------------


def test_a_driven_run_verifies_and_its_forged_tool_output_is_caught(operator, drive):
    run = drive(start_run("financial_reporting", {"date": "2026-11-20"}, operator))
    assert run.status == Run.Status.SUCCEEDED
    report = audit.verify_run(run.pk)
    assert report.ok, report.problem
    assert report.evidence["model calls"] == ModelCall.objects.filter(run=run).count() >= 2
    assert report.evidence["tool calls"] == ToolCall.objects.filter(run=run).count() >= 2
    assert report.evidence["result"] == 1
    assert audit.verify_chain().ok
    tc = ToolCall.objects.filter(run=run, status="ok").first()
    forged = {**tc.output, "forged": True} if isinstance(tc.output, dict) else {"forged": True}
    sql("UPDATE orchestration_toolcall SET output = %s WHERE id = %s", [json.dumps(forged), tc.pk])
    assert_caught(run, f"tool call {tc.pk}: its output differs")


def test_beat_signs_a_checkpoint_only_when_the_head_moved(history):
    from django.conf import settings

    from orchestration.tasks import sign_audit_head

    assert (
        settings.CELERY_BEAT_SCHEDULE["sign-audit-head"]["task"]
        == "orchestration.tasks.sign_audit_head"
    )
    head = AuditEvent.objects.order_by("-seq").first()
    assert (
        sign_audit_head() == f"checkpoint #{AuditCheckpoint.objects.get().pk} at event #{head.seq}"
    )
    assert sign_audit_head() == "no new events" and AuditCheckpoint.objects.count() == 1
    checkpoint = AuditCheckpoint.objects.get()
    assert (
        checkpoint.key_id == audit.key_id(settings.AUDIT_SIGNING_KEY[0])
        and len(checkpoint.mac) == 64
    )
