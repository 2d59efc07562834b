"""The audit trail's hash chain detects an altered, removed or inserted row."""

from __future__ import annotations

from django.db import connection

from orchestration import audit
from orchestration.models import AuditEvent


def _events(n: int) -> list[AuditEvent]:
    return [
        audit.record("test.event", actor="system", payload={"i": i, "amount": "12.50"})
        for i in range(n)
    ]


def test_a_clean_chain_verifies(db):
    _events(5)
    report = audit.verify_chain()
    assert report.ok and report.checked == 5


def test_raw_sql_edit_is_found_at_the_altered_row(db):
    events = _events(5)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_auditevent SET payload = %s WHERE seq = %s",
            ['{"i": 2, "amount": "99.00"}', events[2].seq],
        )
    report = audit.verify_chain()
    assert not report.ok and report.broken_at == events[2].seq and "altered" in report.problem
    assert report.checked == 2


def test_deleted_row_is_found(db):
    events = _events(4)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM orchestration_auditevent WHERE seq = %s", [events[1].seq])
    report = audit.verify_chain()
    assert not report.ok and report.broken_at == events[2].seq


def test_rehashed_row_is_caught_by_its_signature(db):
    """Re-computing the row's hash in SQL is not enough: its signature needs the key."""
    events = _events(3)
    forged = AuditEvent.objects.get(seq=events[1].seq)
    forged.payload = {"i": 1, "amount": "0"}
    forged.payload_digest = audit.payload_digest(forged.payload)
    forged.hash = audit.event_hash(forged)
    AuditEvent.objects.filter(pk=forged.pk).update(
        payload=forged.payload, payload_digest=forged.payload_digest, hash=forged.hash
    )
    report = audit.verify_chain()
    assert report.broken_at == events[1].seq and "signature that does not match" in report.problem
