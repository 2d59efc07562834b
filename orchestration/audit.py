"""The append-only audit trail and its hash chains.

Every AuditEvent is a link in the global chain (``seq``, ``prev_hash``); an event of a run is
also a link in that run's own chain (``run_seq``, ``run_prev_hash`` = the hash of the run's
previous event). One hash covers both links::

    hash = sha256(prev_hash + canonical JSON of {seq, run, run_seq, run_prev_hash, kind,
                  actor, actor_label, payload_digest, created_at})
    payload_digest = sha256(canonical JSON of the payload)

So a run's chain is anchored in the global one: a run's events can be verified on their own
(each against the run's previous event and against its global predecessor) and the whole
trail can be verified end to end. The hash covers the payload's digest, not the payload, so
the retention purge can drop a payload (``payload_purged_at``) and the chain still verifies;
while the payload is there, it must match its digest.

Payloads are redacted (``orchestration.privacy.redact``) before they are hashed and stored:
the trail never holds what the redaction policy matches.

Appends take a transaction-level advisory lock: the chain needs exactly one order. The lock
is taken inside the caller's transaction (the event commits or rolls back with the change it
describes), so it is held until that transaction ends: callers record their event as late in
the transaction as they can.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from orchestration.models import AuditEvent, Run
from orchestration.privacy import redact

logger = logging.getLogger(__name__)
GENESIS_HASH = "0" * 64
# Arbitrary constant naming the lock that serialises appends to the chain.
_CHAIN_LOCK_ID = 0x636F756E  # "coun"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so what is hashed is exactly what JSONB stores and returns."""
    return json.loads(_canonical(payload))


def payload_digest(payload: Any) -> str:
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def event_hash(event: AuditEvent) -> str:
    body = {
        "seq": event.seq,
        "run": str(event.run_id) if event.run_id else None,
        "run_seq": event.run_seq,
        "run_prev_hash": event.run_prev_hash,
        "kind": event.kind,
        "actor": event.actor_id,
        "actor_label": event.actor_label,
        "payload_digest": event.payload_digest,
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
    """Append one event to the chain (and to its run's chain), inside the caller's transaction."""
    # Everything that needs no other row is computed before taking the chain lock: every append
    # in the system waits on that lock, and under load (bench/load) its holders were mostly
    # mid-way through this function, so the less work inside it, the shorter the queue.
    actor_label = "engine"
    if actor is not None and getattr(actor, "pk", None):
        actor_label = actor.get_username()
    elif isinstance(actor, str):
        actor_label, actor = actor, None
    body = _normalise(redact(payload or {}))
    digest = payload_digest(body)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])
        last = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
        run_last = None
        if run is not None:
            # Index auditevent_run_seq: the run's latest event.
            run_last = (
                AuditEvent.objects.filter(run=run)
                .order_by("-seq")
                .values("run_seq", "hash")
                .first()
            )
        event = AuditEvent(
            seq=(last["seq"] + 1) if last else 1,
            run=run,
            run_seq=((run_last["run_seq"] or 0) + 1 if run_last else 1)
            if run is not None
            else None,
            run_prev_hash=(run_last["hash"] if run_last else GENESIS_HASH)
            if run is not None
            else "",
            kind=kind,
            actor=actor,
            actor_label=actor_label,
            payload=body,
            payload_digest=digest,
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
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "broken_at": self.broken_at,
            "problem": self.problem,
            "run": self.run_id,
        }


def _content_problem(event: AuditEvent) -> str:
    """What is wrong with the row itself (its payload or its hash), or ''."""
    if event.payload_purged_at is None and payload_digest(event.payload) != event.payload_digest:
        return f"event #{event.seq}: its payload was altered"
    if event_hash(event) != event.hash:
        return f"event #{event.seq} was altered"
    return ""


def _verify_run_links(
    events: Iterable[AuditEvent],
    predecessors: dict[int, str],
    run_id: str,
    head: RunHead | None = None,
) -> ChainReport:
    """Check `events` (the run's, in order) as the continuation of `head` (the start if None)."""
    head = head or RunHead()
    checked = head.checked
    expected_run_prev, expected_run_seq = head.hash, head.run_seq + 1
    for event in events:
        if event.run_seq != expected_run_seq:
            return ChainReport(
                checked,
                event.seq,
                f"run event(s) missing before #{event.seq} "
                f"(position {event.run_seq}, expected {expected_run_seq})",
                run_id,
            )
        if event.run_prev_hash != expected_run_prev:
            return ChainReport(
                checked,
                event.seq,
                f"event #{event.seq} does not follow the run's previous event",
                run_id,
            )
        if event.prev_hash != predecessors.get(event.seq - 1, GENESIS_HASH):
            return ChainReport(
                checked, event.seq, f"event #{event.seq} does not follow its predecessor", run_id
            )
        if problem := _content_problem(event):
            return ChainReport(checked, event.seq, problem, run_id)
        expected_run_prev, expected_run_seq = event.hash, expected_run_seq + 1
        checked += 1
    return ChainReport(checked, run_id=run_id)


@dataclass(frozen=True)
class RunHead:
    """The last verified event of a run's chain: its position, its hash, events checked."""

    run_seq: int = 0
    hash: str = GENESIS_HASH
    checked: int = 0


def _verify_from(run_id: Any, head: RunHead | None) -> tuple[ChainReport, RunHead | None]:
    events = AuditEvent.objects.filter(run_id=run_id)
    if head is not None:
        events = events.filter(run_seq__gt=head.run_seq)
    events = list(events.order_by("seq"))
    predecessors = dict(
        AuditEvent.objects.filter(seq__in=[e.seq - 1 for e in events]).values_list("seq", "hash")
    )
    report = _verify_run_links(events, predecessors, str(run_id), head)
    if not report.ok:
        return report, None
    if events:
        head = RunHead(events[-1].run_seq, events[-1].hash, report.checked)
    return report, head or RunHead()


def verify_run(run_id: Any) -> ChainReport:
    """Verify one run's chain: positions, links to the run's previous event and to the
    global predecessor, payload digests and hashes. Reads only the run's events and their
    global predecessors."""
    return _verify_from(run_id, None)[0]


def verify_run_live(run_id: Any, *, full: bool) -> ChainReport:
    """verify_run for the run page (``full=True``) and its live poll (``full=False``).

    The page verifies the whole chain, every time, and leaves the verified head in the
    cache. The poll, every 1.5 s while a run is live, verifies only the events appended since
    that head, as its continuation, and re-hashes the whole chain only when the head is older
    than ``AUDIT_LIVE_FULL_CHECK_SECONDS``. A 500-step run has ~1,000 events: re-hashing them
    on every poll cost more than the rest of the partial (bench/RESULTS.md, "Dashboard
    pages"). So an edit to an already verified event shows at the next page load, or in the
    live view within that many seconds; ``verify_audit`` and the JSON download always verify
    in full. A broken chain is never cached. Without the cache (Redis down), it verifies in
    full.
    """
    seconds = settings.AUDIT_LIVE_FULL_CHECK_SECONDS
    key = f"audit:run-head:{run_id}"
    cached = None
    if not full and seconds > 0:
        try:
            cached = cache.get(key)
        except Exception:  # the cache is an optimisation; the full check is always correct
            logger.warning("audit head cache unavailable; verifying the whole run", exc_info=True)
            return verify_run(run_id)
    now = time.time()
    fresh = bool(cached) and cached["full_by"] > now
    head = RunHead(**cached["head"]) if fresh else None
    report, new_head = _verify_from(run_id, head)
    if seconds <= 0:
        return report
    try:
        if new_head is None:
            cache.delete(key)
        elif new_head != head:
            # A new head keeps the deadline of the last full check (a full check sets one).
            full_by = cached["full_by"] if fresh else now + seconds
            cache.set(
                key,
                {"head": asdict(new_head), "full_by": full_by},
                timeout=max(1, int(full_by - now) + 1),
            )
    except Exception:
        logger.warning("could not cache the audit head", exc_info=True)
    return report


def verify_chain(run_id: Any = None) -> ChainReport:
    """Recompute the chain and report the first broken link.

    With ``run_id``: that run's chain (``verify_run``). Without: the whole global chain in
    ``seq`` order, and every run's chain along the way, streaming (constant memory except
    one hash per run).
    """
    if run_id is not None:
        return verify_run(run_id)
    checked = 0
    expected_prev, expected_seq = GENESIS_HASH, 1
    run_heads: dict[Any, tuple[int, str]] = {}  # run -> (last run_seq, last hash)
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return ChainReport(checked, event.seq, f"missing event(s) before #{event.seq}")
        if event.prev_hash != expected_prev:
            return ChainReport(
                checked, event.seq, f"event #{event.seq} does not follow its predecessor"
            )
        if event.run_id is not None:
            last_seq, last_hash = run_heads.get(event.run_id, (0, GENESIS_HASH))
            if event.run_seq != last_seq + 1:
                return ChainReport(
                    checked,
                    event.seq,
                    f"run event(s) missing before #{event.seq} "
                    f"(position {event.run_seq}, expected {last_seq + 1})",
                    str(event.run_id),
                )
            if event.run_prev_hash != last_hash:
                return ChainReport(
                    checked,
                    event.seq,
                    f"event #{event.seq} does not follow the run's previous event",
                    str(event.run_id),
                )
            run_heads[event.run_id] = (event.run_seq, event.hash)
        elif event.run_seq is not None or event.run_prev_hash:
            return ChainReport(checked, event.seq, f"event #{event.seq} has run links but no run")
        if problem := _content_problem(event):
            return ChainReport(
                checked, event.seq, problem, str(event.run_id) if event.run_id else None
            )
        expected_prev, expected_seq = event.hash, expected_seq + 1
        checked += 1
    return ChainReport(checked)


def latest_seq() -> int:
    return AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0
