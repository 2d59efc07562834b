"""The append-only audit trail, its hash chains, the evidence it covers and its signatures.

The chain format is specified in docs/architecture.md, "Chain format"; in short (format 2)::

    hash = sha256(run_prev_hash + canonical JSON of {format, run, run_seq, kind, actor,
                  actor_label, payload_digest, created_at[, evidence_digest]})
    chain_hash = sha256(prev_hash + canonical JSON of {seq, hash})   (set when anchored)
    payload_digest = sha256(canonical JSON of the payload)
    evidence_digest = sha256(canonical JSON of payload["evidence"])   (when there is one)
    mac = HMAC-SHA256(AUDIT_SIGNING_KEY, "event:" + hash)             (key named by key_id)

**Two chains, two writers.** ``record`` appends an event to its run's chain (``run_seq``,
``run_prev_hash``) inside the caller's transaction, under a lock on the run's own head row
(``RunAuditHead``): appends of different runs never wait for each other. The global chain
(``seq``, ``prev_hash``, ``chain_hash``) is written afterwards by the sequencer, ``anchor``
(beat, every AUDIT_ANCHOR_SECONDS), which links committed events in ``id`` order (a run's
next event is inserted only after its previous one committed, so ``id`` order keeps each
run's order) and then a checkpoint signs the new head. A run-less event (exports, price and
budget changes, the run-less purge: never on the step path) has no run chain, so it is
anchored at once, under the sequencer's lock. Format-1 events (before per-run chains) hash
the global link too, and their ``chain_hash`` is their ``hash``.

**Evidence.** The event that records a piece of evidence (a model call's request and
response, a tool call's input and output, the run's input and result, a ticket's context
snapshot and decision, an approval decision, a fan-out job's prompt and output) carries in
its payload, under ``evidence``, the row's model and id and the sha256 of the canonical JSON
of each of the model's ``EVIDENCE_FIELDS`` as the application reads it (decrypted). The
latest event recording a field is what the row must hold now: verification re-reads the rows
and names the row and field that differ. The evidence is not redacted (it holds only
digests) and is hashed on its own, so it outlives the retention purge.

**Run head.** ``RunAuditHead`` (one row per run: ``run_seq``, ``hash``, signed) is the
position and hash of the run's last event, written with each event under its own row lock;
verification reads it together with the run's last event in one statement, so events cut
from the end of a run's chain (or a moved, forged or deleted head) are found.

**Signatures.** Every event and every run head is signed (``mac``) with the first key of
AUDIT_SIGNING_KEY, which the database never holds: rewriting events and re-computing every
hash in SQL still leaves signatures that do not match. ``AuditCheckpoint`` rows sign the
global head (seq, chain_hash) after each anchoring pass that moved it and after every
successful ``verify_audit``; an event cut from the end of the global chain leaves a
checkpoint pointing past the end.

**Not yet anchored.** Between its commit and the next anchoring pass an event is verified
for everything but its place in the global chain: content, hash, signature, run chain, the
run's signed head, evidence (docs/architecture.md says precisely what that leaves open).

**Purge.** The hash covers the payload's digest, not the payload, so the retention purge can
drop a payload and the chain still verifies; a purged payload keeps only its evidence
digests, its ``payload_purged_at`` must equal the ``purged_at`` of a later ``payload.purged``
event of the same run (or of the run-less trail), and decision events are never purged.

Payloads are redacted (``orchestration.privacy.redact``) before they are hashed and stored:
the trail never holds what the redaction policy matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from orchestration import storable
from orchestration.models import AuditCheckpoint, AuditEvent, Run
from orchestration.privacy import redact

logger = logging.getLogger(__name__)
GENESIS_HASH = "0" * 64
# Arbitrary constant naming the sequencer's advisory lock: held by the anchoring pass and by
# run-less appends (which are anchored as they are written); never by an event of a run.
_SEQUENCER_LOCK_ID = 0x636F756E  # "coun"
FORMAT_LEGACY = 1  # hash covers the global link; chain_hash == hash
FORMAT = 2  # hash covers the run link; the sequencer adds the global link
EVIDENCE_KEY = "evidence"
PURGE_KIND = "payload.purged"
# Events that record what a person decided (or what the purge did): the retention purge
# never drops their payloads, and verification refuses one that was.
DECISION_KINDS = frozenset(
    {
        "approval.decided",
        "approval.expired",
        "ticket.resolved",
        "ticket.claimed",
        "ticket.unclaimed",
        "ticket.assigned",
        "ceiling.raised",
        "price.added",
        "price.withdrawn",
        "budget.added",
        "budget.withdrawn",
        "model_lifecycle.changed",
        "model_lifecycle.deleted",
        "version.proposed",
        "version.approved",
        "version.rejected",
        "version.rolled_back",
        "schedule.created",
        "schedule.changed",
        "schedule.paused",
        "schedule.resumed",
        "schedule.deleted",
        PURGE_KIND,
    }
)
# Payload keys that make any event (e.g. the run transition a resolution causes) a decision.
DECISION_PAYLOAD_KEYS = ("resolution", "decision")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)


def _normalise(payload: dict[str, Any]) -> dict[str, Any]:
    """Round-trip through JSON so what is hashed is exactly what JSONB stores and returns."""
    return json.loads(_canonical(payload))


def payload_digest(payload: Any) -> str:
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def is_decision(kind: str, payload: dict[str, Any]) -> bool:
    return kind in DECISION_KINDS or any(key in payload for key in DECISION_PAYLOAD_KEYS)


def kept_by_retention() -> Q:
    """The events whose payloads the retention purge keeps (``is_decision`` in SQL)."""
    q = Q(kind__in=DECISION_KINDS)
    for key in DECISION_PAYLOAD_KEYS:
        q |= Q(payload__has_key=key)
    return q


# --- signing ---------------------------------------------------------------------------


def key_id(key: str) -> str:
    """A key's public name: a fingerprint, so a signature says which key made it."""
    return hashlib.sha256(b"countersign-audit-key-id:" + key.encode()).hexdigest()[:12]


def _signing_keys() -> dict[str, bytes]:
    """Every configured key by id, the signing one (the first) first."""
    return {key_id(k): k.encode() for k in settings.AUDIT_SIGNING_KEY}


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(message: str) -> tuple[str, str]:
    """(key id, MAC) of ``message`` with the signing key."""
    kid, key = next(iter(_signing_keys().items()))
    return kid, _mac(key, message)


def _signature_problem(kid: str, mac: str, message: str) -> str:
    """'' when ``mac`` is the MAC of ``message`` under key ``kid``; otherwise what is wrong."""
    if not mac:
        return "is not signed"
    key = _signing_keys().get(kid)
    if key is None:
        return (
            f"is signed with key {kid or '(none)'}, which AUDIT_SIGNING_KEY does not hold "
            "(keep retired keys in the list to verify what they signed)"
        )
    if not hmac.compare_digest(_mac(key, message), mac):
        return "has a signature that does not match: it was rewritten without the signing key"
    return ""


def _event_message(event: AuditEvent) -> str:
    return f"event:{event.hash}"


def _checkpoint_message(cp: AuditCheckpoint) -> str:
    return f"checkpoint:{cp.seq}:{cp.hash}:{cp.created_at.isoformat()}"


def head_message(run_id: Any, run_seq: int, hash_: str) -> str:
    """What a run head's ``mac`` signs."""
    return f"head:{run_id}:{run_seq}:{hash_}"


def event_name(event: AuditEvent) -> str:
    """How reports name an event: "event #S" once anchored, its run position before."""
    if event.seq is not None:
        return f"event #{event.seq}"
    if event.run_id is not None:
        return f"event {event.run_seq} of run {event.run_id} (not yet anchored)"
    return f"run-less event {event.pk} (not yet anchored)"


# --- evidence --------------------------------------------------------------------------


def _label(model: type[models.Model]) -> str:
    return model._meta.label_lower


def evidence(objs: Iterable[models.Model]) -> list[dict[str, Any]]:
    """The evidence entries for ``objs``: each row's model, id and the digest of each of its
    ``EVIDENCE_FIELDS``, read back from the database (decrypted, as the application reads
    them), so the digest is of what is stored, not of an object that may differ from it."""
    by_model: dict[type[models.Model], list[Any]] = defaultdict(list)
    for obj in objs:
        if obj.pk not in by_model[type(obj)]:
            by_model[type(obj)].append(obj.pk)
    entries = []
    for model, pks in by_model.items():
        fields = model.EVIDENCE_FIELDS  # type: ignore[attr-defined]
        rows = {
            r["pk"]: r
            # No ordering: the model's default one may join another table for nothing.
            for r in model._base_manager.filter(pk__in=pks).order_by().values("pk", *fields)
        }
        for pk in pks:
            row = rows.get(pk)
            if row is None:
                raise ValueError(
                    f"{model._meta.verbose_name} {pk} is not saved: no evidence to record"
                )
            entries.append(
                {
                    "model": _label(model),
                    "id": str(pk),
                    "digests": {f: payload_digest(row[f]) for f in fields},
                }
            )
    return entries


def _body(event: AuditEvent) -> dict[str, Any]:
    body: dict[str, Any] = {
        "run": str(event.run_id) if event.run_id else None,
        "run_seq": event.run_seq,
        "kind": event.kind,
        "actor": event.actor_id,
        "actor_label": event.actor_label,
        "payload_digest": event.payload_digest,
        "created_at": event.created_at.isoformat(),
    }
    # The evidence is hashed on its own too: the purge keeps it, and it must stay covered.
    if isinstance(event.payload, dict) and EVIDENCE_KEY in event.payload:
        body["evidence_digest"] = payload_digest(event.payload[EVIDENCE_KEY])
    return body


def event_hash(event: AuditEvent) -> str:
    """The event's ``hash`` from its other fields (docs/architecture.md, "Chain format")."""
    body = _body(event)
    if event.format == FORMAT_LEGACY:
        body["seq"] = event.seq
        body["run_prev_hash"] = event.run_prev_hash
        return hashlib.sha256((event.prev_hash + _canonical(body)).encode()).hexdigest()
    body["format"] = event.format
    return hashlib.sha256((event.run_prev_hash + _canonical(body)).encode()).hexdigest()


def chain_link(prev_hash: str, seq: int, hash_: str) -> str:
    """A format-2 event's ``chain_hash``: its place in the global chain."""
    return hashlib.sha256(
        (prev_hash + _canonical({"seq": seq, "hash": hash_})).encode()
    ).hexdigest()


def expected_chain_hash(event: AuditEvent) -> str:
    if event.format == FORMAT_LEGACY:
        return event.hash
    return chain_link(event.prev_hash, event.seq, event.hash)


def seal(event: AuditEvent) -> None:
    """Set the event's hash and its signature (with the signing key) from its other fields."""
    event.hash = event_hash(event)
    event.key_id, event.mac = sign(_event_message(event))


_HEAD_LOCK = "SELECT run_seq, hash FROM orchestration_runaudithead WHERE run_id = %s FOR UPDATE"
_HEAD_CREATE = """
    INSERT INTO orchestration_runaudithead (run_id, run_seq, hash, key_id, mac)
    VALUES (%s, 0, %s, '', '') ON CONFLICT (run_id) DO NOTHING
"""
_HEAD_WRITE = """
    UPDATE orchestration_runaudithead SET run_seq = %s, hash = %s, key_id = %s, mac = %s
    WHERE run_id = %s
"""
# The common case of a run event, one statement: move the run's head from the state this
# process left it in (``_heads``) and insert the event. When another process appended to the
# run meanwhile, or a rollback undid this process's last append, the head is not where it was
# left: the UPDATE matches no row (it waited for the row lock, then re-read the row), nothing
# is inserted, and the append takes the lock and reads the head (``_lock_head``).
_APPEND = """
    WITH head AS (
        UPDATE orchestration_runaudithead SET run_seq = %s, hash = %s, key_id = %s, mac = %s
        WHERE run_id = %s AND run_seq = %s AND hash = %s
        RETURNING run_id
    )
    INSERT INTO orchestration_auditevent (
        run_id, kind, actor_id, actor_label, payload, created_at, prev_hash, hash, chain_hash,
        format, run_seq, run_prev_hash, payload_digest, key_id, mac
    )
    SELECT run_id, %s, %s, %s, %s, %s, '', %s, '', %s, %s, %s, %s, %s, %s FROM head
    RETURNING id
"""
# (run_seq, hash) of each run head as this process last wrote it; a guess, checked by _APPEND.
_heads: dict[Any, tuple[int, str]] = {}
_HEADS_KEPT = 4096

_GLOBAL_HEAD = """
    SELECT seq, chain_hash FROM orchestration_auditevent
    WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1
"""


def _lock_head(cursor: Any, run_id: Any) -> tuple[int, str]:
    """Lock the run's head row (creating it at the run's first event) and return it."""
    cursor.execute(_HEAD_LOCK, [run_id])
    row = cursor.fetchone()
    if row is None:
        cursor.execute(_HEAD_CREATE, [run_id, GENESIS_HASH])
        cursor.execute(_HEAD_LOCK, [run_id])
        row = cursor.fetchone()
    return row[0], row[1]


def _global_head(cursor: Any) -> tuple[int, str]:
    cursor.execute(_GLOBAL_HEAD)
    row = cursor.fetchone()
    return (row[0], row[1]) if row else (0, GENESIS_HASH)


def record(
    kind: str,
    *,
    run: Run | None = None,
    actor: Any = None,
    payload: dict[str, Any] | None = None,
    evidence_of: Iterable[models.Model] = (),
) -> AuditEvent:
    """Append one event to its run's chain (a run-less one to the global chain), inside the
    caller's transaction.

    ``evidence_of``: rows this event records (model calls, tool calls, the run, a ticket...);
    the digests of their evidence fields go into the hashed payload (``evidence``).

    An event of a run locks only that run's head row (held until the caller's transaction
    ends: two appends of one run take turns, other runs never wait); the sequencer
    (``anchor``) links it into the global chain after it commits."""
    actor_label = "engine"
    if actor is not None and getattr(actor, "pk", None):
        actor_label = actor.get_username()
    elif isinstance(actor, str):
        actor_label, actor = actor, None
    # What Postgres cannot hold (NUL, lone surrogates, NaN...) in its reversible stored form
    # (orchestration.storable), before hashing: the chain covers exactly what is stored.
    body = _normalise(storable.encode(redact(payload or {})))
    if EVIDENCE_KEY in body:
        raise ValueError(f"an audit payload may not use the reserved key {EVIDENCE_KEY!r}")
    # No savepoint inside the caller's transaction (two round trips per event): a failure
    # here fails the caller's whole transaction, which is what an event that cannot be
    # recorded must do.
    with transaction.atomic(savepoint=False):
        entries = evidence(evidence_of)
        if entries:
            # After redaction: digests are not personal data, and a digest must not be rewritten.
            body[EVIDENCE_KEY] = entries
        event = AuditEvent(
            run=run,
            kind=kind,
            actor=actor,
            actor_label=actor_label,
            payload=body,
            payload_digest=payload_digest(body),
            # Microseconds survive Postgres, so the hash recomputes from the stored row.
            created_at=timezone.now(),
            format=FORMAT,
        )
        with connection.cursor() as cursor:
            if run is not None:
                if not _append_after_known_head(cursor, event, run.pk):
                    event.run_seq, event.run_prev_hash = _lock_head(cursor, run.pk)
                    event.run_seq += 1
                    seal(event)
                    event.save(force_insert=True)
                    head_kid, head_mac = sign(head_message(run.pk, event.run_seq, event.hash))
                    cursor.execute(
                        _HEAD_WRITE, [event.run_seq, event.hash, head_kid, head_mac, run.pk]
                    )
                _remember_head(run.pk, event.run_seq, event.hash)
            else:
                # No run chain to hold its place: anchored now, under the sequencer's lock.
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEQUENCER_LOCK_ID])
                last_seq, last_chain = _global_head(cursor)
                seal(event)
                event.seq, event.prev_hash = last_seq + 1, last_chain
                event.chain_hash = chain_link(event.prev_hash, event.seq, event.hash)
                event.save(force_insert=True)
        return event


def _remember_head(run_id: Any, run_seq: int, hash_: str) -> None:
    if len(_heads) >= _HEADS_KEPT:
        _heads.clear()
    _heads[run_id] = (run_seq, hash_)


def _append_after_known_head(cursor: Any, event: AuditEvent, run_id: Any) -> bool:
    """Append ``event`` after the head this process last wrote for the run, in one statement
    (``_APPEND``); False, with nothing written, when the head is not (or no longer) known."""
    known = _heads.get(run_id)
    if known is None:
        return False
    event.run_seq, event.run_prev_hash = known[0] + 1, known[1]
    seal(event)
    head_kid, head_mac = sign(head_message(run_id, event.run_seq, event.hash))
    payload = AuditEvent._meta.get_field("payload").get_db_prep_save(event.payload, connection)
    cursor.execute(
        _APPEND,
        [
            event.run_seq,
            event.hash,
            head_kid,
            head_mac,
            run_id,
            known[0],
            known[1],
            event.kind,
            event.actor_id,
            event.actor_label,
            payload,
            event.created_at,
            event.hash,
            event.format,
            event.run_seq,
            event.run_prev_hash,
            event.payload_digest,
            event.key_id,
            event.mac,
        ],
    )
    row = cursor.fetchone()
    if row is None:
        _heads.pop(run_id, None)
        return False
    event.pk = row[0]
    event._state.adding, event._state.db = False, connection.alias
    return True


_ANCHOR = """
    UPDATE orchestration_auditevent AS e
    SET seq = v.seq, prev_hash = v.prev_hash, chain_hash = v.chain_hash
    FROM (VALUES {rows}) AS v(id, seq, prev_hash, chain_hash)
    WHERE e.id = v.id AND e.seq IS NULL
"""


def anchor(batch: int | None = None, max_seconds: float = 30.0) -> int:
    """The sequencer: link the committed events not yet in the global chain, in ``id`` order,
    ``batch`` at a time (each batch its own transaction), until none is left or
    ``max_seconds`` passed. Returns how many were anchored; 0 at once when another sequencer
    holds the lock (it will anchor them)."""
    batch = batch or settings.AUDIT_ANCHOR_BATCH
    deadline = time.monotonic() + max_seconds
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_SEQUENCER_LOCK_ID])
            if not cursor.fetchone()[0]:
                return total
            cursor.execute(
                "SELECT id, hash FROM orchestration_auditevent WHERE seq IS NULL ORDER BY id LIMIT %s",
                [batch],
            )
            pending = cursor.fetchall()
            if not pending:
                return total
            seq, prev = _global_head(cursor)
            params: list[Any] = []
            for pk, hash_ in pending:
                seq += 1
                link = chain_link(prev, seq, hash_)
                params += [pk, seq, prev, link]
                prev = link
            rows = ", ".join(["(%s::bigint, %s::bigint, %s, %s)"] * len(pending))
            cursor.execute(_ANCHOR.format(rows=rows), params)
            if cursor.rowcount != len(pending):  # only this lock's holder anchors
                raise RuntimeError("audit events were anchored under the sequencer's lock")
        total += len(pending)
        if len(pending) < batch or time.monotonic() > deadline:
            return total


def pending_count() -> int:
    """Events committed but not yet anchored in the global chain."""
    return AuditEvent.objects.filter(seq__isnull=True).count()


def sign_checkpoint() -> AuditCheckpoint | None:
    """Anchor what is pending (``anchor``), then sign the global chain's head, unless the
    latest checkpoint already covers it."""
    anchor()
    with connection.cursor() as cursor:
        seq, chain_hash = _global_head(cursor)
    if seq == 0:
        return None
    latest = AuditCheckpoint.objects.order_by("-seq", "-id").first()
    if latest is not None and latest.seq == seq:
        return None
    cp = AuditCheckpoint(seq=seq, hash=chain_hash, created_at=timezone.now())
    cp.key_id, cp.mac = sign(_checkpoint_message(cp))
    cp.save()
    # A copy outside the database: whoever keeps the logs can check the head against it.
    logger.info(
        "audit checkpoint #%s signed: event #%s hash %s key %s mac %s",
        cp.pk,
        cp.seq,
        cp.hash,
        cp.key_id,
        cp.mac,
    )
    return cp


# --- verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    problem: str = ""
    run_id: str | None = None
    # Rows whose evidence was checked against the chain, by kind ("tool calls": 31, ...).
    evidence: dict[str, int] = field(default_factory=dict)
    # The latest signed checkpoint that verified: {"id", "seq", "created_at"} or None.
    checkpoint: dict[str, Any] | None = None
    # Anchored events newer than that checkpoint (each still signed on its own).
    after_checkpoint: int = 0
    # Events not yet anchored in the global chain (verified in their run's chain).
    pending: int = 0

    @property
    def ok(self) -> bool:
        return self.broken_at is None and not self.problem

    @property
    def summary(self) -> str:
        return describe(self)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "broken_at": self.broken_at,
            "problem": self.problem,
            "run": self.run_id,
            "evidence": self.evidence,
            "checkpoint": {
                **self.checkpoint,
                "created_at": self.checkpoint["created_at"].isoformat(),
            }
            if self.checkpoint
            else None,
            "after_checkpoint": self.after_checkpoint,
            "pending": self.pending,
        }


def _content_problem(event: AuditEvent) -> str:
    """What is wrong with the row itself (its payload, its hash, its signature), or ''."""
    who = event_name(event)
    if event.payload_purged_at is None:
        if payload_digest(event.payload) != event.payload_digest:
            return f"{who}: its payload was altered"
    else:
        if not isinstance(event.payload, dict) or set(event.payload) - {EVIDENCE_KEY}:
            return f"{who} is marked purged but still holds its payload"
        if event.kind in DECISION_KINDS:
            return f"{who} ({event.kind}) records a decision and must never be purged"
    if event.format not in (FORMAT_LEGACY, FORMAT):
        return f"{who} has an unknown chain format ({event.format})"
    if event_hash(event) != event.hash:
        return f"{who} was altered"
    if why := _signature_problem(event.key_id, event.mac, _event_message(event)):
        return f"{who} {why}"
    return ""


def _link_problem(event: AuditEvent) -> str:
    """An anchored event's ``chain_hash`` against its global link (after _content_problem)."""
    if event.seq is not None and event.chain_hash != expected_chain_hash(event):
        return f"{event_name(event)}: its link in the global chain was altered"
    return ""


def _order(event: AuditEvent) -> int:
    """An event's place among the events of its run (run_seq), or of the run-less trail (seq,
    always set: run-less events are anchored as they are appended)."""
    return event.run_seq if event.run_id is not None else (event.seq or 0)


def event_problem(event: AuditEvent) -> str:
    """What is wrong with one event row on its own (payload digest, hash, signature, its
    global link once anchored), or ''. For readers of the chain outside this module
    (orchestration.audit_export)."""
    return _content_problem(event) or _link_problem(event)


def _purge_stamp(event: AuditEvent) -> Any:
    if event.kind != PURGE_KIND or not isinstance(event.payload, dict):
        return None
    return parse_datetime(str(event.payload.get("purged_at", "")))


@dataclass(frozen=True)
class _Recorded:
    digest: str
    order: int  # the recording event's place in its run (see _order)
    seq: int | None
    who: str  # event_name of the recording event


class _Evidence:
    """Collects what events recorded (the latest digest of each row's field wins) and the
    purges they announce, then checks the rows. One instance per run (or the run-less trail)."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str, str], _Recorded] = {}
        self.purges: dict[tuple[Any, Any], int] = {}  # (run id, stamp) -> order of payload.purged

    def add(self, event: AuditEvent) -> None:
        order = _order(event)
        if (stamp := _purge_stamp(event)) is not None:
            self.purges[(event.run_id, stamp)] = max(
                order, self.purges.get((event.run_id, stamp), 0)
            )
        entries = event.payload.get(EVIDENCE_KEY) if isinstance(event.payload, dict) else None
        for entry in entries or ():
            for fname, digest in entry["digests"].items():
                key = (entry["model"], str(entry["id"]), fname)
                known = self.latest.get(key)
                if known is None or known.order <= order:
                    self.latest[key] = _Recorded(digest, order, event.seq, event_name(event))

    def purged_ok(self, run_id: Any, stamp: Any, recorded_order: int) -> bool:
        """A payload.purged event of ``run_id`` with ``stamp`` comes after ``recorded_order``."""
        purge_order = self.purges.get((run_id, stamp))
        return purge_order is not None and purge_order > recorded_order

    def check(self, run_id: Any) -> tuple[int | None, str, dict[str, int]]:
        """(event seq, problem) of the first row that differs from its latest evidence, and the
        number of rows checked by kind."""
        by_model: dict[str, dict[str, dict[str, _Recorded]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for (label, pk, fname), recorded in self.latest.items():
            by_model[label][pk][fname] = recorded
        counts: dict[str, int] = {}
        failures: list[tuple[int, int | None, str]] = []
        for label, rows_recorded in sorted(by_model.items()):
            first = min(
                (r for fields in rows_recorded.values() for r in fields.values()),
                key=lambda r: r.order,
            )
            try:
                model = apps.get_model(label)
            except (LookupError, ValueError):
                failures.append(
                    (
                        first.order,
                        first.seq,
                        f"{first.who} records evidence of an unknown kind of row ({label})",
                    )
                )
                continue
            noun = str(model._meta.verbose_name)
            names = sorted({n for fields in rows_recorded.values() for n in fields})
            purgeable = getattr(model, "PURGEABLE_FIELDS", ())
            extra = (
                ["payload_purged_at"]
                if any(f.name == "payload_purged_at" for f in model._meta.fields)
                else []
            )
            try:
                rows = {
                    str(r["pk"]): r
                    for r in model._base_manager.filter(pk__in=list(rows_recorded)).values(
                        "pk", *names, *extra
                    )
                }
            except Exception as exc:  # noqa: BLE001 - an unreadable row is a finding, not a crash
                failures.append(
                    (
                        first.order,
                        first.seq,
                        f"the {noun} rows recorded by the chain could not be read: {exc}",
                    )
                )
                continue
            for pk, fields in rows_recorded.items():
                row = rows.get(pk)
                if row is None:
                    last = max(fields.values(), key=lambda r: r.order)
                    failures.append(
                        (last.order, last.seq, f"{noun} {pk}, recorded by {last.who}, was deleted")
                    )
                    continue
                for fname, rec in sorted(fields.items()):
                    value = row[fname]
                    if payload_digest(value) == rec.digest:
                        continue
                    if fname in purgeable and self._purged(run_id, row, value, rec.order):
                        continue
                    failures.append(
                        (
                            rec.order,
                            rec.seq,
                            f"{noun} {pk}: its {fname} differs from what {rec.who} recorded",
                        )
                    )
                    break
            counts[label] = len(rows_recorded)
        if failures:
            _order_, seq, problem = min(failures, key=lambda f: f[0])
            return seq, problem, counts
        return None, "", counts

    def _purged(self, run_id: Any, row: dict[str, Any], value: Any, recorded_order: int) -> bool:
        """The retention purge emptied this field: the value is empty, and the row's stamp is
        that of a payload.purged event of the run that came after the evidence."""
        if value is None:
            stamp = row.get("payload_purged_at")
        elif isinstance(value, dict) and set(value) == {"purged_at"}:
            stamp = parse_datetime(str(value["purged_at"]))
        else:
            return False
        return stamp is not None and self.purged_ok(run_id, stamp, recorded_order)


# Names of the evidence counts, for reports and the run page.
EVIDENCE_NOUNS = {
    "orchestration.modelcall": "model calls",
    "orchestration.toolcall": "tool calls",
    "orchestration.fanoutjob": "fan-out jobs",
    "reviews.escalationticket": "tickets",
    "reviews.approvalrequest": "approvals",
    "orchestration.run": "runs",
}
# How a report's counts read (verify_audit, the run page), in this order.
EVIDENCE_ORDER = ("model calls", "tool calls", "fan-out jobs", "tickets", "approvals", "runs")


def describe(report: ChainReport) -> str:
    """What a passing report verified, in words: "42 events, 17 model calls, 31 tool calls
    and the result, up to signed checkpoint #12 (2026-12-03 17:00 UTC)"."""
    parts = [f"{report.checked} event{'s' if report.checked != 1 else ''}"]
    for noun in EVIDENCE_ORDER:
        n = report.evidence.get(noun)
        if n:
            parts.append(f"{n} {noun[:-1] if n == 1 else noun}")
    text = ", ".join(parts)
    if report.evidence.get("result"):
        text += " and the result"
    cp = report.checkpoint
    if cp is None:
        text += "; no signed checkpoint yet (each event is signed on its own)"
    else:
        when = timezone.localtime(cp["created_at"]).strftime("%Y-%m-%d %H:%M %Z")
        text += f", up to signed checkpoint #{cp['id']} ({when})"
        if report.after_checkpoint:
            text += f"; {report.after_checkpoint} later event{'s' if report.after_checkpoint != 1 else ''} signed on their own"
    if report.pending:
        text += (
            f"; {report.pending} event{'s' if report.pending != 1 else ''} not yet anchored in "
            "the global chain (verified in the run's chain and signed)"
        )
    return text


def _counts(raw: dict[str, int]) -> dict[str, int]:
    return {EVIDENCE_NOUNS.get(label, label): n for label, n in raw.items()}


@dataclass(frozen=True)
class RunHead:
    """The last verified event of a run's chain: its position, its hash, the last anchored
    event's seq, events checked, and the rows whose evidence was checked (kind -> ids)."""

    run_seq: int = 0
    hash: str = GENESIS_HASH
    checked: int = 0
    rows: dict[str, list[str]] = field(default_factory=dict)
    seq: int = 0
    pending: bool = False  # an event up to run_seq was not yet anchored


def _verify_run_links(
    events: Iterable[AuditEvent],
    predecessors: dict[int, str],
    run_id: str,
    head: RunHead | None = None,
) -> ChainReport:
    """Check ``events`` (the run's, in run order) as the continuation of ``head`` (the start
    if None): run positions and links, the anchored ones first and in ``seq`` order, each
    anchored one's global link (``predecessors``: seq -> chain_hash), content and signature."""
    head = head or RunHead()
    checked = head.checked
    expected_run_prev, expected_run_seq = head.hash, head.run_seq + 1
    last_seq, unanchored_seen = head.seq, head.pending
    for event in events:
        who = event_name(event)
        if event.run_seq != expected_run_seq:
            return ChainReport(
                checked,
                event.seq,
                f"run event(s) missing before {who} "
                f"(position {event.run_seq}, expected {expected_run_seq})",
                run_id,
            )
        if event.run_prev_hash != expected_run_prev:
            return ChainReport(
                checked, event.seq, f"{who} does not follow the run's previous event", run_id
            )
        if event.seq is not None:
            if unanchored_seen or event.seq <= last_seq:
                return ChainReport(
                    checked,
                    event.seq,
                    f"{who} is out of its run's order in the global chain",
                    run_id,
                )
            expected_prev = GENESIS_HASH if event.seq == 1 else predecessors.get(event.seq - 1)
            if event.prev_hash != expected_prev:
                return ChainReport(
                    checked, event.seq, f"{who} does not follow its predecessor", run_id
                )
            last_seq = event.seq
        else:
            unanchored_seen = True
        if problem := _content_problem(event) or _link_problem(event):
            return ChainReport(checked, event.seq, problem, run_id)
        expected_run_prev, expected_run_seq = event.hash, expected_run_seq + 1
        checked += 1
    return ChainReport(checked, run_id=run_id)


# Each run beside its stored head and its last event (one statement reads both, so an event
# appended meanwhile, which commits with its head, cannot make them differ).
_HEAD_JOIN = """
    FROM orchestration_run r
    LEFT JOIN orchestration_runaudithead h ON h.run_id = r.id
    LEFT JOIN LATERAL (
        SELECT run_seq, hash FROM orchestration_auditevent
        WHERE run_id = r.id ORDER BY run_seq DESC LIMIT 1
    ) e ON true
"""
_HEAD_SQL = (
    "SELECT h.run_seq, h.hash, e.run_seq, e.hash, h.key_id, h.mac" + _HEAD_JOIN + "WHERE r.id = %s"
)
# The first run whose stored head is not its last event (verify_chain).
_HEADS_SQL = (
    "SELECT r.id"
    + _HEAD_JOIN
    + "WHERE COALESCE(h.run_seq, 0) <> COALESCE(e.run_seq, 0) OR COALESCE(h.hash, '') <> COALESCE(e.hash, '')"
    + " LIMIT 1"
)


def _head_row_problem(run_id: Any, row: tuple | None) -> str:
    if row is None:
        return ""
    head_seq, head_hash, last_seq, last_hash, kid, mac = row
    if head_seq is None and last_seq is not None:
        return "the run's head record is missing: it was deleted"
    if head_seq is None:
        return ""
    if head_seq > (last_seq or 0):
        return (
            f"the run's head is its event {head_seq} but its chain ends at event {last_seq or 0}: "
            "its last event(s) were deleted"
        )
    if head_seq != last_seq or head_hash != last_hash:
        return (
            f"the run's head (event {head_seq}) is not its last event ({last_seq}): "
            "the head was altered"
        )
    if why := _signature_problem(kid, mac, head_message(run_id, head_seq, head_hash)):
        return f"the run's head {why}"
    return ""


def _head_problem(run_id: Any) -> str:
    """Whether the head stored on the run is the run's last event, and signed. One statement
    reads both, so an event appended meanwhile (head and event commit together) cannot make
    them differ."""
    with connection.cursor() as cursor:
        cursor.execute(_HEAD_SQL, [run_id])
        row = cursor.fetchone()
    return _head_row_problem(run_id, row)


def _checkpoint_info(cp: AuditCheckpoint) -> dict[str, Any]:
    return {"id": cp.pk, "seq": cp.seq, "created_at": cp.created_at}


def _latest_checkpoint() -> tuple[dict[str, Any] | None, str]:
    """The latest checkpoint if it verifies (its MAC, and the event it signed), and a problem."""
    cp = AuditCheckpoint.objects.order_by("-seq", "-id").first()
    if cp is None:
        return None, ""
    if why := _signature_problem(cp.key_id, cp.mac, _checkpoint_message(cp)):
        return None, f"signed checkpoint #{cp.pk} (event #{cp.seq}) {why}"
    event = AuditEvent.objects.filter(seq=cp.seq).first()
    if event is None:
        return None, (
            f"signed checkpoint #{cp.pk} covers event #{cp.seq}, which is missing: "
            "events were cut from the chain"
        )
    if event.chain_hash != cp.hash or _content_problem(event) or _link_problem(event):
        return (
            None,
            f"event #{cp.seq} does not match signed checkpoint #{cp.pk}: the chain was rewritten",
        )
    return _checkpoint_info(cp), ""


def _verify_from(run_id: Any, head: RunHead | None) -> tuple[ChainReport, RunHead | None]:
    events = AuditEvent.objects.filter(run_id=run_id)
    if head is not None:
        events = events.filter(run_seq__gt=head.run_seq)
    events = list(events.order_by("run_seq", "id"))
    if head is not None and head.run_seq and not events:
        # Nothing new: the verified head must still be the run's event at that position.
        still = AuditEvent.objects.filter(run_id=run_id, run_seq=head.run_seq).values_list(
            "hash", flat=True
        )
        if list(still) != [head.hash]:
            return ChainReport(
                head.checked,
                None,
                f"event {head.run_seq} of the run is no longer the one verified: it was altered "
                "or deleted",
                str(run_id),
            ), None
    predecessors = dict(
        AuditEvent.objects.filter(
            seq__in=[e.seq - 1 for e in events if e.seq is not None and e.seq > 1]
        ).values_list("seq", "chain_hash")
    )
    report = _verify_run_links(events, predecessors, str(run_id), head)
    if not report.ok:
        return report, None
    # Purged events: their stamp must be that of a later payload.purged event of the run.
    found = _Evidence()
    purge_events = (
        events if head is None else AuditEvent.objects.filter(run_id=run_id, kind=PURGE_KIND)
    )
    for event in purge_events:
        if event.kind == PURGE_KIND:
            found.add(event)
    for event in events:
        if event.payload_purged_at is not None and not found.purged_ok(
            event.run_id, event.payload_purged_at, _order(event)
        ):
            return ChainReport(
                report.checked,
                event.seq,
                f"{event_name(event)} is marked purged at {event.payload_purged_at.isoformat()}, "
                "but no later payload.purged event of the run says so",
                str(run_id),
            ), None
    for event in events:
        found.add(event)
    seq, problem, _counted = found.check(run_id)
    if problem:
        return ChainReport(report.checked, seq, problem, str(run_id)), None
    if problem := _head_problem(run_id):
        last = events[-1].seq if events else None
        return ChainReport(report.checked, last, problem, str(run_id)), None
    rows = {label: list(ids) for label, ids in (head.rows if head else {}).items()}
    for label, pk, _name in found.latest:
        ids = rows.setdefault(label, [])
        if pk not in ids:
            ids.append(pk)
    base = head or RunHead()
    anchored = [e.seq for e in events if e.seq is not None]
    new_head = RunHead(
        events[-1].run_seq if events else base.run_seq,
        events[-1].hash if events else base.hash,
        report.checked,
        rows,
        max(anchored) if anchored else base.seq,
        base.pending or any(e.seq is None for e in events),
    )
    return _with_checkpoint(report, new_head, run_id), new_head


def _with_checkpoint(report: ChainReport, head: RunHead, run_id: Any) -> ChainReport:
    """The run's report with what was verified: evidence rows by kind (the run's own row as
    "result" when it has one), the latest signed checkpoint, and the events not yet anchored."""
    counts = _counts(
        {label: len(ids) for label, ids in head.rows.items() if label != "orchestration.run"}
    )
    if (
        head.rows.get("orchestration.run")
        and Run.objects.filter(pk=run_id, result__isnull=False).exists()
    ):
        counts["result"] = 1
    cp, problem = _latest_checkpoint()
    if problem:
        return ChainReport(report.checked, cp["seq"] if cp else 0, problem, str(run_id))
    tally = AuditEvent.objects.filter(run_id=run_id).aggregate(
        after=Count("pk", filter=Q(seq__gt=cp["seq"] if cp else 0)),
        pending=Count("pk", filter=Q(seq__isnull=True)),
    )
    return ChainReport(
        report.checked,
        run_id=str(run_id),
        evidence=counts,
        checkpoint=cp,
        after_checkpoint=tally["after"] if cp is not None else 0,
        pending=tally["pending"],
    )


def _verify_run_once(run_id: Any, head: RunHead | None) -> tuple[ChainReport, RunHead | None]:
    report, new_head = _verify_from(run_id, head)
    if not report.ok and "differs from what" in report.problem:
        # A row and the event recording it commit together, but this check reads them in two
        # statements: one event committed in between is not a forgery. Look once more.
        report, new_head = _verify_from(run_id, head)
    return report, new_head


def verify_run(run_id: Any) -> ChainReport:
    """Verify one run's chain: positions, links to the run's previous event, the anchored
    events' links to their global predecessors, payload digests, hashes and signatures, the
    purge stamps, the evidence rows (model calls, tool calls, result, tickets, approvals,
    fan-out jobs) against what the events recorded, the run's signed head, and the latest
    signed checkpoint. Reads the run's events, their global predecessors and the run's
    evidence rows."""
    return _verify_run_once(run_id, None)[0]


def _run_checkpoint_message(run_id: Any, entry: dict[str, Any]) -> str:
    return "run-head:" + _canonical(
        {
            "run": str(run_id),
            "head": entry["head"],
            "full_by": entry["full_by"],
            "versions": entry.get("versions"),
        }
    )


def _run_versions(run_id: Any) -> str:
    """A digest of the row version (``xmin``, ``ctid``) of every row of the run the chain
    covers: the run, its events, and its rows of each evidence model. Any UPDATE, DELETE or
    INSERT of one of them changes it (an UPDATE writes a new row version), so an unchanged
    digest means nothing was written to them since it was taken. One query, no hashing of the
    rows themselves."""
    parts = [
        "SELECT 'run:' || xmin::text || ctid::text AS v FROM orchestration_run WHERE id = %s",
        "SELECT 'event:' || id || ':' || xmin::text || ctid::text FROM orchestration_auditevent "
        "WHERE run_id = %s",
    ]
    for label in EVIDENCE_NOUNS:
        model = apps.get_model(label)
        if model is Run:
            continue
        table, pk = model._meta.db_table, model._meta.pk.column
        parts.append(
            f"SELECT '{table}:' || {pk} || ':' || xmin::text || ctid::text FROM {table} "  # noqa: S608 - model metadata
            "WHERE run_id = %s"
        )
    # Table and column names come from model metadata; the run id is a parameter.
    union = " UNION ALL ".join(parts)
    query = f"SELECT md5(string_agg(v, ',' ORDER BY v)) FROM ({union}) AS versions"  # noqa: S608
    with transaction.atomic(), connection.cursor() as cursor:
        # One run's rows, by index: Postgres sometimes plans the union with parallel workers,
        # whose start-up cost more than the query (35-65 ms against 3-11 ms on a loaded 2-core
        # machine, bench/RESULTS.md "Dashboard pages"). For this transaction only.
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(query, [run_id] * len(parts))
        return cursor.fetchone()[0] or ""


def verify_run_live(
    run_id: Any, *, full: bool = False, check_versions: bool = False
) -> ChainReport:
    """verify_run for the run page (``check_versions=True``) and its live poll, from a signed
    run checkpoint.

    A check of the run leaves its verified head (``RunHead``: position, hash, events checked,
    the evidence rows verified) in the cache with the row versions it saw, signed with the
    audit key. The page and the poll check that signature, then verify only the events
    appended since that head (and the rows they record) as its continuation. The page first
    compares the run's row versions (``_run_versions``) with the signed ones: if any row of
    the run was written since (an edit, a deletion, an event anchored, a new step), the whole
    run is checked again, so an edit shows at the next page load. The poll, every 1.5 s while
    a run is live, skips that comparison (a live run's rows change with every step). The
    whole run is also checked when the checkpoint is older than
    ``AUDIT_LIVE_FULL_CHECK_SECONDS``, when it is missing or its signature does not verify (a
    forged cache entry costs a full check, never a pass), or with ``full=True``. A 500-step
    run has ~1,000 events: re-hashing them on every view cost most of the page
    (bench/RESULTS.md, "Dashboard pages"). ``verify_audit`` and the JSON download always
    verify in full. A broken chain is never cached. Without the cache (Redis down), it
    verifies in full.
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
    versions = _run_versions(run_id) if check_versions and seconds > 0 else None
    head = None
    if cached:
        try:
            signed = not _signature_problem(
                cached.get("key_id", ""),
                cached.get("mac", ""),
                _run_checkpoint_message(run_id, cached),
            )
            if not signed:
                logger.warning(
                    "audit head cache entry for run %s is not signed by us: ignored", run_id
                )
            elif cached["full_by"] > now and (
                versions is None or cached.get("versions") == versions
            ):
                head = RunHead(**cached["head"])
        except (TypeError, KeyError, AttributeError):  # cached by an older version of this code
            head = None
    if head is not None and head.pending:
        # Events the head counted as not yet anchored may have been anchored since; a
        # continuation would take their successors for events anchored out of order.
        head = None
    report, new_head = _verify_run_once(run_id, head)
    if seconds <= 0:
        return report
    try:
        if new_head is None:
            cache.delete(key)
        elif new_head != head or (versions is not None and cached.get("versions") != versions):
            # A new head keeps the deadline of the last full check (a full check sets one).
            full_by = cached["full_by"] if head is not None else now + seconds
            entry: dict[str, Any] = {
                "head": asdict(new_head),
                "full_by": full_by,
                # The versions seen before this check (a write during it shows next time); a
                # poll's continuation saw none, so the page will check in full after it.
                "versions": versions,
            }
            entry["key_id"], entry["mac"] = sign(_run_checkpoint_message(run_id, entry))
            cache.set(key, entry, timeout=max(1, int(full_by - now) + 1))
    except Exception:
        logger.warning("could not cache the audit head", exc_info=True)
    return report


def _snapshot():
    """One snapshot for a multi-statement check (REPEATABLE READ, read only), unless the
    caller already runs in a transaction."""
    if connection.in_atomic_block:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(transaction.atomic())
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    return stack


def verify_chain(run_id: Any = None) -> ChainReport:
    """Recompute the chain and report the first broken link.

    With ``run_id``: that run's chain (``verify_run``). Without: the whole trail in one
    snapshot: the anchored events in ``seq`` order and every run's chain along the way,
    streaming (constant memory except one hash per run); every signed checkpoint against the
    event it signed; then the events not yet anchored, in ``id`` order, as the continuation of
    their runs' chains; every run's signed head; then the evidence rows, a batch of runs at a
    time.
    """
    if run_id is not None:
        return verify_run(run_id)
    with _snapshot():
        return _verify_whole()


def _verify_whole() -> ChainReport:
    checked = pending = 0
    expected_prev, expected_seq = GENESIS_HASH, 1
    run_heads: dict[Any, tuple[int, str]] = {}  # run -> (last run_seq, last hash)
    purged: dict[tuple[Any, Any], tuple[int, int | None, str]] = {}  # (run, stamp) -> event
    announced = _Evidence()
    checkpoints = AuditCheckpoint.objects.order_by("seq", "id").iterator(chunk_size=2000)
    cp = next(checkpoints, None)
    latest_cp: AuditCheckpoint | None = None

    def broken(seq: int | None, problem: str, run: Any = None) -> ChainReport:
        return ChainReport(checked, seq, problem, str(run) if run else None)

    def run_link_problem(event: AuditEvent) -> str:
        last_seq, last_hash = run_heads.get(event.run_id, (0, GENESIS_HASH))
        if event.run_seq != last_seq + 1:
            return (
                f"run event(s) missing before {event_name(event)} "
                f"(position {event.run_seq}, expected {last_seq + 1})"
            )
        if event.run_prev_hash != last_hash:
            return f"{event_name(event)} does not follow the run's previous event"
        return ""

    # Anchored first (seq order), then the rest (id order): one statement, one snapshot.
    events = AuditEvent.objects.order_by(F("seq").asc(nulls_last=True), "id")
    for event in events.iterator(chunk_size=2000):
        if event.seq is not None:
            if event.seq != expected_seq:
                return broken(event.seq, f"missing event(s) before #{event.seq}")
            if event.prev_hash != expected_prev:
                return broken(event.seq, f"event #{event.seq} does not follow its predecessor")
        elif event.run_id is None:
            return broken(
                None, f"{event_name(event)}: a run-less event is anchored as it is appended"
            )
        if event.run_id is not None:
            if problem := run_link_problem(event):
                return broken(event.seq, problem, event.run_id)
            run_heads[event.run_id] = (event.run_seq, event.hash)
        elif event.run_seq is not None or event.run_prev_hash:
            return broken(event.seq, f"event #{event.seq} has run links but no run")
        if problem := _content_problem(event) or _link_problem(event):
            return broken(event.seq, problem, event.run_id)
        if event.payload_purged_at is not None:
            purged[(event.run_id, event.payload_purged_at)] = (
                _order(event),
                event.seq,
                event_name(event),
            )
        if event.kind == PURGE_KIND:
            announced.add(event)
        if event.seq is None:
            pending += 1
            checked += 1
            continue
        while cp is not None and cp.seq <= event.seq:
            if why := _signature_problem(cp.key_id, cp.mac, _checkpoint_message(cp)):
                return broken(cp.seq, f"signed checkpoint #{cp.pk} (event #{cp.seq}) {why}")
            if cp.seq == event.seq and cp.hash != event.chain_hash:
                return broken(
                    cp.seq,
                    f"event #{cp.seq} does not match signed checkpoint #{cp.pk}: the chain was rewritten",
                )
            latest_cp, cp = cp, next(checkpoints, None)
        expected_prev, expected_seq = event.chain_hash, expected_seq + 1
        checked += 1
    if cp is not None:
        return broken(
            cp.seq,
            f"signed checkpoint #{cp.pk} covers event #{cp.seq}, but the chain ends at event "
            f"#{expected_seq - 1}: events were cut from its end",
        )
    for (run, stamp), (order, seq, who) in purged.items():
        if not announced.purged_ok(run, stamp, order):
            return broken(
                seq,
                f"{who} is marked purged at {stamp.isoformat()}, but no later "
                "payload.purged event of its run says so",
                run,
            )
    with connection.cursor() as cursor:
        cursor.execute(_HEADS_SQL)
        row = cursor.fetchone()
        if row is not None and (problem := _head_problem(row[0])):
            last = AuditEvent.objects.filter(run_id=row[0]).aggregate(m=Max("seq"))["m"]
            return broken(last, problem, row[0])
        # Every head's signature (the positions were compared above).
        cursor.execute(
            "SELECT run_id, run_seq, hash, key_id, mac FROM orchestration_runaudithead ORDER BY run_id"
        )
        for head_run, head_seq, head_hash, kid, mac in cursor:
            if why := _signature_problem(kid, mac, head_message(head_run, head_seq, head_hash)):
                last = AuditEvent.objects.filter(run_id=head_run).aggregate(m=Max("seq"))["m"]
                return broken(last, f"the run's head {why}", head_run)
    counts: dict[str, int] = defaultdict(int)
    report = _verify_all_evidence(counts)
    if report is not None:
        return ChainReport(checked, report[0], report[1], report[2])
    after = 0
    if latest_cp is not None:
        after = max(0, expected_seq - 1 - latest_cp.seq)
    return ChainReport(
        checked,
        evidence=_counts(dict(counts)),
        checkpoint=_checkpoint_info(latest_cp) if latest_cp else None,
        after_checkpoint=after,
        pending=pending,
    )


def _verify_all_evidence(
    counts: dict[str, int], batch: int = 500
) -> tuple[int | None, str, str | None] | None:
    """Check every evidence row against the latest event recording it, a batch of runs at a
    time (memory bounded by the batch); run-less events last."""
    run_ids = (
        AuditEvent.objects.filter(run__isnull=False).values_list("run_id", flat=True).distinct()
    )
    pending = list(run_ids.order_by("run_id"))
    scopes: list[Q] = [Q(run_id__in=pending[i : i + batch]) for i in range(0, len(pending), batch)]
    scopes.append(Q(run__isnull=True))
    for scope in scopes:
        for attempt in range(2):
            per_run: dict[Any, _Evidence] = defaultdict(_Evidence)
            events = (
                AuditEvent.objects.filter(scope)
                .filter(Q(payload__has_key=EVIDENCE_KEY) | Q(kind=PURGE_KIND))
                .only("seq", "run_id", "run_seq", "kind", "payload")
                .order_by(F("seq").asc(nulls_last=True), "id")
            )
            for event in events.iterator(chunk_size=2000):
                per_run[event.run_id].add(event)
            failure = None
            batch_counts: dict[str, int] = defaultdict(int)
            for run, found in per_run.items():
                seq, problem, found_counts = found.check(run)
                if problem:
                    failure = (seq, problem, str(run) if run else None)
                    break
                for label, n in found_counts.items():
                    batch_counts[label] += n
            if failure is None:
                for label, n in batch_counts.items():
                    counts[label] += n
                break
            if attempt == 1:  # the second look (see _verify_run_once) found it too
                return failure
    return None


def latest_seq() -> int:
    return AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0
