"""Audit appends without a global lock (issue 13, part 4): per-run chains, the sequencer that
anchors them into the global chain, and what is verified before an event is anchored."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from orchestration import audit
from orchestration.models import AuditCheckpoint, AuditEvent, Run, RunAuditHead
from tests.audit_factories import make_run, workflow_version


def sql(query: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(query, params or [])


# --- appends -------------------------------------------------------------------------------


def test_an_event_of_a_run_is_appended_unanchored_and_its_head_is_signed(operator):
    run = make_run(operator, tool_output={"txn_id": "TX-1"})
    events = list(AuditEvent.objects.filter(run=run).order_by("run_seq"))
    assert [e.run_seq for e in events] == [1, 2, 3]
    assert all(e.seq is None and e.prev_hash == "" and e.chain_hash == "" for e in events)
    assert all(e.format == audit.FORMAT for e in events)
    head = RunAuditHead.objects.get(run=run)
    assert (head.run_seq, head.hash) == (3, events[-1].hash)
    assert head.key_id == audit.key_id(audit.settings.AUDIT_SIGNING_KEY[0])
    assert head.mac == audit.sign(audit.head_message(run.pk, 3, events[-1].hash))[1]


def test_a_run_less_event_is_anchored_as_it_is_appended(operator):
    run = make_run(operator)  # pending events of a run come first in id order
    event = audit.record("runs.exported", actor=operator, payload={"format": "csv"})
    assert event.seq == 1 and event.prev_hash == audit.GENESIS_HASH
    assert event.chain_hash == audit.chain_link(audit.GENESIS_HASH, 1, event.hash)
    assert audit.anchor() == 2  # the run's events follow it
    seqs = list(
        AuditEvent.objects.filter(run=run).order_by("run_seq").values_list("seq", flat=True)
    )
    assert seqs == [2, 3]
    assert audit.verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_appends_of_different_runs_do_not_wait_for_each_other(operator, manager):
    """A transaction that appended to run A and has not committed (the step in progress, as
    the engine holds it), and the sequencer's lock held too: an append to run B goes through
    at once. Before this change every append took one advisory lock and waited here."""
    a, b = make_run(operator), make_run(manager)
    held, release = threading.Event(), threading.Event()

    def append_to_a_and_hold() -> None:
        try:
            with transaction.atomic():
                audit.record("step.in_progress", run=Run.objects.get(pk=a.pk), payload={"i": 1})
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [audit._SEQUENCER_LOCK_ID])
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=append_to_a_and_hold)
    holder.start()
    try:
        assert held.wait(10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")  # a blocked append fails here
            event = audit.record("step.done", run=b, payload={"while": "A's step is open"})
        assert event.run_seq == 3 and event.seq is None
        # The sequencer skips its pass while another holds its lock, and waits for nothing.
        assert audit.anchor() == 0
    finally:
        release.set()
        holder.join()
    assert audit.anchor() == AuditEvent.objects.count() == 6
    report = audit.verify_chain()
    assert report.ok and report.pending == 0, report.problem


@pytest.mark.django_db(transaction=True)
def test_two_appends_of_one_run_take_turns_on_its_head(operator):
    """Two transactions appending to the same run: the second waits for the first's head row
    and continues the chain after it, so the run's chain has one order."""
    run = make_run(operator)
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                audit.record("first.append", run=Run.objects.get(pk=run.pk))
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=first)
    holder.start()
    assert held.wait(10)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '300ms'")
            with pytest.raises(Exception, match="lock timeout"):
                audit.record("second.append", run=run)
    finally:
        release.set()
        holder.join()
    second = audit.record("second.append", run=run)
    first_event = AuditEvent.objects.get(run=run, kind="first.append")
    assert (first_event.run_seq, second.run_seq) == (3, 4)
    assert second.run_prev_hash == first_event.hash
    assert audit.verify_run(run.pk).ok


def _statements(action) -> list[str]:
    seen: list[str] = []

    def spy(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        action()
    return seen


def test_an_append_after_this_processs_own_is_one_statement(operator):
    run = make_run(operator)
    audit._heads.pop(run.pk, None)
    first = _statements(lambda: audit.record("first.append", run=run))
    assert any("FOR UPDATE" in s for s in first)  # head unknown: locked and read
    second = _statements(lambda: audit.record("second.append", run=run))
    assert len(second) == 1 and "WITH head AS" in second[0]
    events = list(AuditEvent.objects.filter(run=run).order_by("run_seq"))
    assert events[-1].kind == "second.append" and events[-1].run_prev_hash == events[-2].hash
    head = RunAuditHead.objects.get(run=run)
    assert (head.run_seq, head.hash) == (events[-1].run_seq, events[-1].hash)
    assert head.mac == audit.sign(audit.head_message(run.pk, head.run_seq, head.hash))[1]
    assert audit.verify_run(run.pk).ok


def test_an_append_after_another_processs_finds_the_head_moved_and_continues_after_it(operator):
    """This process remembers the head it last wrote; another process (here: the remembered
    state put back after a later append) appended since. The guess must not be trusted: the
    event goes after the real head, not into the slot the other process took."""
    run = make_run(operator)
    audit.record("ours", run=run)
    stale = audit._heads[run.pk]
    audit._heads.pop(run.pk)
    theirs = audit.record("theirs", run=run)  # as another process: from the head row
    audit._heads[run.pk] = stale
    after = audit.record("ours.again", run=run)
    assert (after.run_seq, after.run_prev_hash) == (theirs.run_seq + 1, theirs.hash)
    assert audit.verify_run(run.pk).ok


def test_an_append_rolled_back_leaves_no_gap_in_the_chain(operator):
    run = make_run(operator)
    audit.record("kept", run=run)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record("rolled.back", run=run)
        raise RuntimeError("the step failed after its event")
    assert not AuditEvent.objects.filter(run=run, kind="rolled.back").exists()
    after = audit.record("after", run=run)
    kept = AuditEvent.objects.get(run=run, kind="kept")
    assert (after.run_seq, after.run_prev_hash) == (kept.run_seq + 1, kept.hash)
    assert audit.verify_run(run.pk).ok


# --- the sequencer ---------------------------------------------------------------------------


def test_anchor_links_committed_events_in_append_order_and_keeps_each_runs_order(operator, manager):
    a = make_run(operator, tool_output={"txn_id": "TX-1"})
    b = make_run(manager)
    audit.record("ticket.opened", run=a, payload={"message": "?"})
    assert audit.pending_count() == 6
    assert audit.anchor(batch=4) == 6  # two batches
    assert audit.pending_count() == 0 and audit.anchor() == 0
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.pk for e in events] == sorted(e.pk for e in events)
    prev = audit.GENESIS_HASH
    for e in events:
        assert e.prev_hash == prev and e.chain_hash == audit.chain_link(prev, e.seq, e.hash)
        prev = e.chain_hash
    for run in (a, b):
        run_seqs = list(
            AuditEvent.objects.filter(run=run).order_by("seq").values_list("run_seq", flat=True)
        )
        assert run_seqs == sorted(run_seqs)
    checkpoint = audit.sign_checkpoint()
    assert (checkpoint.seq, checkpoint.hash) == (6, events[-1].chain_hash)
    assert audit.verify_chain().ok and audit.verify_run(a.pk).ok


def test_the_beat_task_anchors_then_signs(operator):
    from django.conf import settings

    from orchestration.tasks import sign_audit_head

    entry = settings.CELERY_BEAT_SCHEDULE["sign-audit-head"]
    assert entry["schedule"] == settings.AUDIT_ANCHOR_SECONDS == 2.0
    make_run(operator)
    assert sign_audit_head() == f"checkpoint #{AuditCheckpoint.objects.get().pk} at event #2"
    assert audit.pending_count() == 0


# --- verification before anchoring -----------------------------------------------------------


@pytest.fixture
def unanchored(operator):
    """One anchored run, then a second run whose events are not anchored yet."""
    settled = make_run(operator, tool_output={"txn_id": "TX-1"}, result={"ok": True})
    audit.anchor()
    audit.sign_checkpoint()
    live = make_run(operator, status=Run.Status.RUNNING, tool_output={"txn_id": "TX-2"})
    audit.record("note.added", run=settled, payload={"late": True})  # after the checkpoint
    return settled, live


def test_unanchored_events_verify_and_the_report_says_so(unanchored):
    settled, live = unanchored
    report = audit.verify_run(live.pk)
    assert report.ok, report.problem
    assert report.checked == 3 and report.pending == 3
    assert report.evidence == {"model calls": 1, "tool calls": 1}
    assert "3 events not yet anchored in the global chain" in report.summary
    settled_report = audit.verify_run(settled.pk)
    assert settled_report.ok and settled_report.pending == 1 and settled_report.checked == 4
    whole = audit.verify_chain()
    assert whole.ok and whole.checked == 7 and whole.pending == 4
    # verify_audit anchors first, so its report has nothing pending.
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert "OK: the whole audit trail: 7 events verified." in out.getvalue()
    assert "not yet anchored" not in out.getvalue() and audit.pending_count() == 0


def _live_event(live: Run, position: int) -> AuditEvent:
    return AuditEvent.objects.get(run=live, run_seq=position)


def test_an_edited_unanchored_event_is_caught(unanchored):
    _, live = unanchored
    event = _live_event(live, 2)
    sql("UPDATE orchestration_auditevent SET actor_label = 'someone' WHERE id = %s", [event.pk])
    who = f"event 2 of run {live.pk} (not yet anchored)"
    for report in (audit.verify_run(live.pk), audit.verify_chain()):
        assert not report.ok and report.problem == f"{who} was altered", report.problem
        assert report.broken_at is None


def test_an_unanchored_event_removed_from_the_middle_of_its_run_is_caught(unanchored):
    _, live = unanchored
    sql("DELETE FROM orchestration_auditevent WHERE id = %s", [_live_event(live, 2).pk])
    for report in (audit.verify_run(live.pk), audit.verify_chain()):
        assert not report.ok and "run event(s) missing before event 3 of run" in report.problem


def test_an_unanchored_tail_removed_with_the_head_moved_back_is_caught_by_the_heads_signature(
    unanchored,
):
    _, live = unanchored
    keep, cut = _live_event(live, 2), _live_event(live, 3)
    sql("DELETE FROM orchestration_auditevent WHERE id = %s", [cut.pk])
    sql(
        "UPDATE orchestration_runaudithead SET run_seq = 2, hash = %s WHERE run_id = %s",
        [keep.hash, live.pk],
    )
    for report in (audit.verify_run(live.pk), audit.verify_chain()):
        assert not report.ok
        assert "the run's head has a signature that does not match" in report.problem


def test_a_forged_unanchored_event_is_caught_by_its_signature(unanchored):
    _, live = unanchored
    event = _live_event(live, 3)
    event.payload = {"message": "now succeeded", "evidence": event.payload["evidence"]}
    event.payload_digest = audit.payload_digest(event.payload)
    event.hash = audit.event_hash(event)
    AuditEvent.objects.filter(pk=event.pk).update(
        payload=event.payload, payload_digest=event.payload_digest, hash=event.hash
    )
    RunAuditHead.objects.filter(run=live).update(hash=event.hash)
    report = audit.verify_run(live.pk)
    assert not report.ok and "has a signature that does not match" in report.problem


def test_a_rewritten_global_link_is_caught(unanchored):
    settled, _ = unanchored
    first = AuditEvent.objects.get(seq=2)
    sql("UPDATE orchestration_auditevent SET chain_hash = %s WHERE id = %s", ["e" * 64, first.pk])
    report = audit.verify_chain()
    assert not report.ok and report.problem == "event #2: its link in the global chain was altered"
    assert not audit.verify_run(settled.pk).ok


def test_an_anchored_event_after_an_unanchored_one_of_its_run_is_caught(unanchored):
    """The sequencer anchors a run's events in order; one anchored out of order (a forger
    placing an event elsewhere in the global chain) is named."""
    _, live = unanchored
    last = _live_event(live, 3)
    sql("UPDATE orchestration_auditevent SET seq = 999 WHERE id = %s", [last.pk])
    report = audit.verify_run(live.pk)
    assert (
        not report.ok
        and report.problem == "event #999 is out of its run's order in the global chain"
    )


# --- format 1 (before per-run chains) ------------------------------------------------------------


def _legacy_event(seq: int, prev: str, run: Run | None, run_seq, run_prev: str) -> AuditEvent:
    """An event as the previous version appended it: its hash covers the global link."""
    event = AuditEvent(
        seq=seq,
        run=run,
        run_seq=run_seq,
        run_prev_hash=run_prev,
        kind="legacy.event",
        actor_label="engine",
        payload={"n": seq},
        payload_digest=audit.payload_digest({"n": seq}),
        created_at=timezone.now(),
        prev_hash=prev,
        format=audit.FORMAT_LEGACY,
    )
    body = {
        "seq": seq,
        "run": str(run.pk) if run else None,
        "run_seq": run_seq,
        "run_prev_hash": run_prev,
        "kind": event.kind,
        "actor": None,
        "actor_label": "engine",
        "payload_digest": event.payload_digest,
        "created_at": event.created_at.isoformat(),
    }
    event.hash = hashlib.sha256((prev + audit._canonical(body)).encode()).hexdigest()
    assert audit.event_hash(event) == event.hash
    event.chain_hash = event.hash
    event.key_id, event.mac = audit.sign(f"event:{event.hash}")
    event.save(force_insert=True)
    return event


def test_a_legacy_chain_verifies_and_new_events_continue_it(operator):
    run = Run.objects.create(
        workflow_version=workflow_version(),
        workflow_name="financial_reporting",
        requested_by=operator,
        input={},
    )
    e1 = _legacy_event(1, audit.GENESIS_HASH, run, 1, audit.GENESIS_HASH)
    e2 = _legacy_event(2, e1.hash, None, None, "")
    kid, mac = audit.sign(audit.head_message(run.pk, 1, e1.hash))
    RunAuditHead.objects.create(run=run, run_seq=1, hash=e1.hash, key_id=kid, mac=mac)
    new = audit.record("new.event", run=run, payload={"after": "the upgrade"})
    assert new.run_seq == 2 and new.run_prev_hash == e1.hash
    assert audit.anchor() == 1
    new.refresh_from_db()
    assert new.seq == 3 and new.prev_hash == e2.hash
    report = audit.verify_chain()
    assert report.ok and report.checked == 3, report.problem
    assert audit.verify_run(run.pk).ok
    # A format-1 event's hash still covers its global link.
    sql("UPDATE orchestration_auditevent SET prev_hash = %s WHERE id = %s", ["f" * 64, e2.pk])
    assert not audit.verify_chain().ok


# --- the run page verifies from a signed run checkpoint ------------------------------------------


def test_the_run_page_verifies_from_its_signed_checkpoint(client, auditor, operator, monkeypatch):
    from django.core.cache import cache
    from django.urls import reverse

    run = make_run(operator, tool_output={"txn_id": "TX-1"}, result={"ok": True})
    audit.sign_checkpoint()
    client.force_login(auditor)
    url = reverse("run_detail", args=[run.pk])
    badge = "Audit chain verified: 3 events, 1 model call, 1 tool call and the result"
    assert badge in client.get(url).content.decode()
    heads: list = []
    real = audit._verify_from
    monkeypatch.setattr(
        audit, "_verify_from", lambda run_id, head: heads.append(head) or real(run_id, head)
    )
    # Nothing written since: the page continues from the signed head, re-hashing nothing.
    assert badge in client.get(url).content.decode()
    assert heads[-1] is not None and heads[-1].run_seq == 3 and heads[-1].checked == 3
    # A cache entry rewritten without the key is ignored: the whole run is checked.
    key = f"audit:run-head:{run.pk}"
    entry = cache.get(key)
    entry["head"]["checked"] = 999
    cache.set(key, entry)
    heads.clear()
    page = client.get(url).content.decode()
    assert heads[0] is None and badge in page and "999" not in page
    # Any write to a row of the run (here an edit in SQL) changes its row versions: full check.
    heads.clear()
    assert badge in client.get(url).content.decode() and heads[-1] is not None
    sql("UPDATE orchestration_run SET result = '{\"ok\": false}' WHERE id = %s", [run.pk])
    heads.clear()
    page = client.get(url).content.decode()
    assert heads[0] is None and f"run {run.pk}: its result differs" in page
