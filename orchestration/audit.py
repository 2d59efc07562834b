"""The append-only audit trail and its hash chain.

Each AuditEvent stores the hash of the previous one, so changing, inserting or deleting a
row breaks every hash after it. Appends take a transaction-level advisory lock: the chain
needs exactly one order, and the lock is held only for the insert, inside the caller's
transaction (the event commits or rolls back with the change it describes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from orchestration.models import AuditEvent, Run

GENESIS_HASH = "0" * 64
# Arbitrary constant naming the lock that serialises appends to the chain.
_CHAIN_LOCK_ID = 0x636F756E  # "coun"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so what is hashed is exactly what JSONB stores and returns."""
    return json.loads(_canonical(payload))


def event_hash(event: AuditEvent) -> str:
    body = {
        "seq": event.seq,
        "run": str(event.run_id) if event.run_id else None,
        "kind": event.kind,
        "actor": event.actor_id,
        "actor_label": event.actor_label,
        "payload": event.payload,
        "created_at": event.created_at.isoformat(),
    }
    return hashlib.sha256((event.prev_hash + _canonical(body)).encode()).hexdigest()


def record(
    kind: str,
    *,
    run: Run | None = None,
    actor: Any = None,
    payload: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])
        last = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
        actor_label = "engine"
        if actor is not None and getattr(actor, "pk", None):
            actor_label = actor.get_username()
        elif isinstance(actor, str):
            actor_label, actor = actor, None
        event = AuditEvent(
            seq=(last["seq"] + 1) if last else 1,
            run=run,
            kind=kind,
            actor=actor,
            actor_label=actor_label,
            payload=_normalise(payload or {}),
            # Microseconds survive Postgres, so the hash recomputes from the stored row.
            created_at=timezone.now(),
            prev_hash=last["hash"] if last else GENESIS_HASH,
        )
        event.hash = event_hash(event)
        event.save(force_insert=True)
        return event


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(run_id: Any = None) -> ChainReport:
    """Recompute the chain and report the first broken link.

    For one run, every event of the run is checked against its stored hash and against the
    hash of the event just before it in the global chain.
    """
    qs = AuditEvent.objects.order_by("seq")
    predecessors: dict[int, str] = {}
    if run_id is not None:
        qs = qs.filter(run_id=run_id)
        seqs = list(qs.values_list("seq", flat=True))
        predecessors = dict(
            AuditEvent.objects.filter(seq__in=[s - 1 for s in seqs]).values_list("seq", "hash")
        )
    checked = 0
    expected_prev = GENESIS_HASH
    expected_seq = 1
    for event in qs.iterator(chunk_size=2000):
        if run_id is None:
            if event.seq != expected_seq:
                return ChainReport(checked, event.seq, f"missing event(s) before #{event.seq}")
            expected_seq += 1
        else:
            expected_prev = predecessors.get(event.seq - 1, GENESIS_HASH)
        if event.prev_hash != expected_prev:
            return ChainReport(checked, event.seq, f"event #{event.seq} does not follow its predecessor")
        if event_hash(event) != event.hash:
            return ChainReport(checked, event.seq, f"event #{event.seq} was altered")
        expected_prev = event.hash
        checked += 1
    return ChainReport(checked)


def latest_seq() -> int:
    return AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0
