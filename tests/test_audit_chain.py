"""Per-run chains anchored in the global chain, verify_audit, and redaction before hashing."""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction

from orchestration import audit
from orchestration.models import AuditEvent, Run
from tests.audit_factories import make_run


@pytest.fixture
def two_runs(operator, manager):
    a = make_run(operator, tool_output={"transactions": [{"txn_id": "TX-20261120-001"}]})
    b = make_run(manager)
    audit.record("ticket.opened", run=a, actor="system", payload={"message": "check"})
    # The sequencer's pass (beat, in production) links them into the global chain.
    assert audit.anchor() == 6
    return a, b


def test_each_run_has_its_own_chain_linked_into_the_global_one(two_runs):
    a, b = two_runs
    events = list(AuditEvent.objects.filter(run=a).order_by("seq"))
    assert [e.run_seq for e in events] == [1, 2, 3, 4]
    assert events[0].run_prev_hash == audit.GENESIS_HASH
    assert all(
        later.run_prev_hash == earlier.hash
        for earlier, later in zip(events, events[1:], strict=False)
    )
    # b's events sit between a's in the global chain, so a's links skip over them.
    assert any(e.prev_hash != events[i].hash for i, e in enumerate(events[1:]))
    assert audit.verify_run(a.pk).ok and audit.verify_run(a.pk).checked == 4
    assert audit.verify_run(b.pk).checked == 2
    report = audit.verify_chain()
    assert report.ok and report.checked == AuditEvent.objects.count() == 6


def test_raw_sql_edit_of_a_run_event_is_found_by_run_and_global_verification(two_runs):
    a, _ = two_runs
    target = AuditEvent.objects.filter(run=a, kind="tool.called").get()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET payload = %s WHERE seq = %s",
            ['{"tool": "publish_report"}', target.seq],
        )
    run_report = audit.verify_run(a.pk)
    assert (
        not run_report.ok
        and run_report.broken_at == target.seq
        and "payload was altered" in run_report.problem
    )
    assert run_report.checked == 1  # run.requested, before it
    global_report = audit.verify_chain()
    assert global_report.broken_at == target.seq and global_report.run_id == str(a.pk)


def test_changed_actor_is_found_even_with_the_payload_untouched(two_runs):
    a, _ = two_runs
    first = AuditEvent.objects.filter(run=a).order_by("seq").first()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET actor_label = 'someone_else' WHERE seq = %s",
            [first.seq],
        )
    report = audit.verify_run(a.pk)
    assert report.broken_at == first.seq and "was altered" in report.problem


def test_deleted_run_event_is_found_by_its_position(two_runs):
    a, _ = two_runs
    events = list(AuditEvent.objects.filter(run=a).order_by("seq"))
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM orchestration_auditevent WHERE seq = %s", [events[1].seq])
    report = audit.verify_run(a.pk)
    assert report.broken_at == events[2].seq and "missing" in report.problem


def test_event_moved_to_another_run_breaks_both_chains(two_runs):
    a, b = two_runs
    moved = AuditEvent.objects.filter(run=a).order_by("seq").last()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET run_id = %s, run_seq = 3 WHERE seq = %s",
            [b.pk, moved.seq],
        )
    assert not audit.verify_run(b.pk).ok
    assert not audit.verify_chain().ok


def test_verify_audit_command_reports_ok(two_runs):
    a, _ = two_runs
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert "OK: the whole audit trail: 6 events verified." in out.getvalue()
    out = io.StringIO()
    call_command("verify_audit", "--run", str(a.pk), stdout=out)
    assert f"OK: run {a.pk}: 4 events verified." in out.getvalue()


def test_verify_audit_command_fails_at_the_first_broken_link(two_runs):
    a, _ = two_runs
    target = AuditEvent.objects.filter(run=a).order_by("seq")[1]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET kind = 'run.cancelled' WHERE seq = %s",
            [target.seq],
        )
    with pytest.raises(CommandError, match=rf"first broken link at event #{target.seq}"):
        call_command("verify_audit")
    with pytest.raises(
        CommandError,
        match=rf"first broken link at event #{target.seq}: event #{target.seq} was altered",
    ):
        call_command("verify_audit", "--run", str(a.pk))


def test_verify_audit_command_exits_non_zero(two_runs):
    """The process exit status, as a cron job or CI sees it."""
    from django.core.management import ManagementUtility

    target = AuditEvent.objects.order_by("seq")[2]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET payload = '{}' WHERE seq = %s", [target.seq]
        )
    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(["manage.py", "verify_audit"]).execute()
    assert exit_info.value.code == 1


@pytest.mark.parametrize("bad", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_verify_audit_rejects_a_bad_run_id(db, bad):
    with pytest.raises(CommandError, match="run"):
        call_command("verify_audit", "--run", bad)


def test_payloads_are_redacted_before_they_are_hashed(operator):
    run = make_run(operator)
    event = audit.record(
        "ticket.resolved",
        run=run,
        actor=operator,
        payload={
            "comment": "called jane.doe@example.com on +61 2 9876 5432",
            "card": "4111 1111 1111 1111",
            "txn": "TX-20261120-001",
        },
    )
    stored = AuditEvent.objects.get(pk=event.pk).payload
    assert stored == {
        "comment": "called [REDACTED:email] on [REDACTED:phone]",
        "card": "[REDACTED:card]",
        "txn": "TX-20261120-001",
    }
    assert audit.verify_run(run.pk).ok


@pytest.mark.django_db(transaction=True)
def test_a_locked_run_does_not_block_an_event_of_that_run(operator):
    """The run row lock every state change takes (``Run.objects.locked()``) must not block the
    insert of an audit event that references the run: the inserter holds the chain's lock,
    and the lock holder's own event waits for that lock, so Postgres would abort one."""
    run = make_run(operator)
    held, release = threading.Event(), threading.Event()

    def hold_the_run() -> None:
        try:
            with transaction.atomic():
                Run.objects.locked().get(pk=run.pk)  # as lifecycle.transition holds it
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_run)
    holder.start()
    try:
        assert held.wait(10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")  # a blocked insert fails here
            audit.record("probe.appended", run=run, payload={"while": "the run is locked"})
    finally:
        release.set()
        holder.join()
    assert AuditEvent.objects.filter(run=run, kind="probe.appended").exists()
    assert audit.verify_run(run.pk).ok
