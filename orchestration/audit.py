"""The append-only audit trail, its hash chains, the evidence it covers and its signatures.

Every AuditEvent is a link in the global chain (``seq``, ``prev_hash``); an event of a run is
also a link in that run's own chain (``run_seq``, ``run_prev_hash`` = the hash of the run's
previous event). One hash covers both links::

    hash = sha256(prev_hash + canonical JSON of {seq, run, run_seq, run_prev_hash, kind,
                  actor, actor_label, payload_digest, created_at[, evidence_digest]})
    payload_digest = sha256(canonical JSON of the payload)
    evidence_digest = sha256(canonical JSON of payload["evidence"])   (when there is one)
    mac = HMAC-SHA256(AUDIT_SIGNING_KEY, "event:" + hash)             (key named by key_id)

**Evidence.** The event that records a piece of evidence (a model call's request and
response, a tool call's input and output, the run's input and result, a ticket's context
snapshot and decision, an approval decision, a fan-out job's prompt and output) carries in
its payload, under ``evidence``, the row's model and id and the sha256 of the canonical JSON
of each of the model's ``EVIDENCE_FIELDS`` as the application reads it (decrypted). The
latest event recording a field is what the row must hold now: verification re-reads the rows
and names the row and field that differ. The evidence is not redacted (it holds only
digests) and is hashed on its own, so it outlives the retention purge.

**Run head.** ``RunAuditHead`` (one row per run: ``run_seq``, ``hash``) is the position and
hash of the run's last event, written with each event under the chain lock; verification
reads it together with the run's last event in one statement, so events cut from the end of
a run's chain (or a moved or deleted head) are found.

**Signatures.** Every event is signed (``mac``) with the first key of AUDIT_SIGNING_KEY, which
the database never holds: rewriting events and re-computing every hash in SQL still leaves
signatures that do not match. ``AuditCheckpoint`` rows sign the global head (seq, hash) now
and then (beat, and every successful ``verify_audit``); an event cut from the end of the
global chain leaves a checkpoint pointing past the end.

**Purge.** The hash covers the payload's digest, not the payload, so the retention purge can
drop a payload and the chain still verifies; a purged payload keeps only its evidence
digests, its ``payload_purged_at`` must equal the ``purged_at`` of a later ``payload.purged``
event of the same run (or of the run-less trail), and decision events are never purged.

Payloads are redacted (``orchestration.privacy.redact``) before they are hashed and stored:
the trail never holds what the redaction policy matches.

Appends take a transaction-level advisory lock: the chain needs exactly one order. The lock
is taken inside the caller's transaction (the event commits or rolls back with the change it
describes), so it is held until that transaction ends: callers record their event as late
in the transaction as they can. The run's head row is written only under that lock, so no
other row lock is taken (a lock on the run's own row here could deadlock with callers that
lock the run before they record).
"""

from __future__ import annotations

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
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from orchestration.models import AuditCheckpoint, AuditEvent, Run, RunAuditHead
from orchestration.privacy import redact

logger = logging.getLogger(__name__)
GENESIS_HASH = "0" * 64
# Arbitrary constant naming the lock that serialises appends to the chain.
_CHAIN_LOCK_ID = 0x636F756E  # "coun"
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
        rows = {r["pk"]: r for r in model._base_manager.filter(pk__in=pks).values("pk", *fields)}
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
    # The evidence is hashed on its own too: the purge keeps it, and it must stay covered.
    if isinstance(event.payload, dict) and EVIDENCE_KEY in event.payload:
        body["evidence_digest"] = payload_digest(event.payload[EVIDENCE_KEY])
    return hashlib.sha256((event.prev_hash + _canonical(body)).encode()).hexdigest()


_HEAD_UPSERT = """
    INSERT INTO orchestration_runaudithead (run_id, run_seq, hash) VALUES (%s, %s, %s)
    ON CONFLICT (run_id) DO UPDATE SET run_seq = EXCLUDED.run_seq, hash = EXCLUDED.hash
"""


def seal(event: AuditEvent) -> None:
    """Set the event's hash and its signature (with the signing key) from its other fields."""
    event.hash = event_hash(event)
    event.key_id, event.mac = sign(_event_message(event))


def record(
    kind: str,
    *,
    run: Run | None = None,
    actor: Any = None,
    payload: dict[str, Any] | None = None,
    evidence_of: Iterable[models.Model] = (),
) -> AuditEvent:
    """Append one event to the chain (and to its run's chain), inside the caller's transaction.

    ``evidence_of``: rows this event records (model calls, tool calls, the run, a ticket...);
    the digests of their evidence fields go into the hashed payload (``evidence``)."""
    # Everything that needs no other row is computed before taking the chain lock: every append
    # in the system waits on that lock, and under load (bench/load) its holders were mostly
    # mid-way through this function, so the less work inside it, the shorter the queue.
    actor_label = "engine"
    if actor is not None and getattr(actor, "pk", None):
        actor_label = actor.get_username()
    elif isinstance(actor, str):
        actor_label, actor = actor, None
    body = _normalise(redact(payload or {}))
    with transaction.atomic():
        entries = evidence(evidence_of)
        if entries:
            if EVIDENCE_KEY in body:
                raise ValueError(f"an audit payload may not use the reserved key {EVIDENCE_KEY!r}")
            # After redaction: digests are not personal data, and a digest must not be rewritten.
            body[EVIDENCE_KEY] = entries
        digest = payload_digest(body)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])
        last = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
        head = None
        if run is not None:
            # Only the lock holder writes a run's head, so reading it here needs no row lock.
            head = RunAuditHead.objects.filter(run_id=run.pk).values_list(
                "run_seq", "hash"
            ).first() or (
                0,
                GENESIS_HASH,
            )
        event = AuditEvent(
            seq=(last["seq"] + 1) if last else 1,
            run=run,
            run_seq=head[0] + 1 if head is not None else None,
            run_prev_hash=head[1] if head is not None else "",
            kind=kind,
            actor=actor,
            actor_label=actor_label,
            payload=body,
            payload_digest=digest,
            # Microseconds survive Postgres, so the hash recomputes from the stored row.
            created_at=timezone.now(),
            prev_hash=last["hash"] if last else GENESIS_HASH,
        )
        seal(event)
        event.save(force_insert=True)
        if run is not None:
            with connection.cursor() as cursor:
                cursor.execute(_HEAD_UPSERT, [run.pk, event.run_seq, event.hash])
        return event


def sign_checkpoint() -> AuditCheckpoint | None:
    """Sign the chain's current head, unless the latest checkpoint already covers it."""
    last = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
    if last is None:
        return None
    latest = AuditCheckpoint.objects.order_by("-seq", "-id").first()
    if latest is not None and latest.seq == last["seq"]:
        return None
    cp = AuditCheckpoint(seq=last["seq"], hash=last["hash"], created_at=timezone.now())
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
    # Events newer than that checkpoint (each still signed on its own).
    after_checkpoint: int = 0

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
        }


def _content_problem(event: AuditEvent) -> str:
    """What is wrong with the row itself (its payload, its hash, its signature), or ''."""
    if event.payload_purged_at is None:
        if payload_digest(event.payload) != event.payload_digest:
            return f"event #{event.seq}: its payload was altered"
    else:
        if not isinstance(event.payload, dict) or set(event.payload) - {EVIDENCE_KEY}:
            return f"event #{event.seq} is marked purged but still holds its payload"
        if event.kind in DECISION_KINDS:
            return f"event #{event.seq} ({event.kind}) records a decision and must never be purged"
    if event_hash(event) != event.hash:
        return f"event #{event.seq} was altered"
    if why := _signature_problem(event.key_id, event.mac, _event_message(event)):
        return f"event #{event.seq} {why}"
    return ""


def event_problem(event: AuditEvent) -> str:
    """What is wrong with one event row on its own (payload digest, hash, signature), or ''.
    For readers of the chain outside this module (orchestration.audit_export)."""
    return _content_problem(event)


def _purge_stamp(event: AuditEvent) -> Any:
    if event.kind != PURGE_KIND or not isinstance(event.payload, dict):
        return None
    return parse_datetime(str(event.payload.get("purged_at", "")))


class _Evidence:
    """Collects what events recorded (the latest digest of each row's field wins) and the
    purges they announce, then checks the rows."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str, str], tuple[str, int]] = {}
        self.purges: dict[tuple[Any, Any], int] = {}  # (run id, stamp) -> seq of payload.purged

    def add(self, event: AuditEvent) -> None:
        if (stamp := _purge_stamp(event)) is not None:
            self.purges[(event.run_id, stamp)] = event.seq
        entries = event.payload.get(EVIDENCE_KEY) if isinstance(event.payload, dict) else None
        for entry in entries or ():
            for name, digest in entry["digests"].items():
                self.latest[(entry["model"], str(entry["id"]), name)] = (digest, event.seq)

    def purged_ok(self, run_id: Any, stamp: Any, recorded_seq: int) -> bool:
        """A payload.purged event of ``run_id`` with ``stamp`` comes after event ``recorded_seq``."""
        purge_seq = self.purges.get((run_id, stamp))
        return purge_seq is not None and purge_seq > recorded_seq

    def check(self, run_id: Any) -> tuple[int | None, str, dict[str, int]]:
        """(event seq, problem) of the first row that differs from its latest evidence, and the
        number of rows checked by kind."""
        by_model: dict[str, dict[str, dict[str, tuple[str, int]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for (label, pk, name), recorded in self.latest.items():
            by_model[label][pk][name] = recorded
        counts: dict[str, int] = {}
        failures: list[tuple[int, str]] = []
        for label, rows_recorded in sorted(by_model.items()):
            try:
                model = apps.get_model(label)
            except (LookupError, ValueError):
                seq = min(r[1] for fields in rows_recorded.values() for r in fields.values())
                failures.append(
                    (seq, f"event #{seq} records evidence of an unknown kind of row ({label})")
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
                seq = min(r[1] for fields in rows_recorded.values() for r in fields.values())
                failures.append(
                    (seq, f"the {noun} rows recorded by the chain could not be read: {exc}")
                )
                continue
            for pk, fields in rows_recorded.items():
                row = rows.get(pk)
                if row is None:
                    seq = max(r[1] for r in fields.values())
                    failures.append((seq, f"{noun} {pk}, recorded by event #{seq}, was deleted"))
                    continue
                for name, (digest, seq) in sorted(fields.items()):
                    value = row[name]
                    if payload_digest(value) == digest:
                        continue
                    if name in purgeable and self._purged(run_id, row, value, seq):
                        continue
                    failures.append(
                        (seq, f"{noun} {pk}: its {name} differs from what event #{seq} recorded")
                    )
                    break
            counts[label] = len(rows_recorded)
        if failures:
            seq, problem = min(failures)
            return seq, problem, counts
        return None, "", counts

    def _purged(self, run_id: Any, row: dict[str, Any], value: Any, recorded_seq: int) -> bool:
        """The retention purge emptied this field: the value is empty, and the row's stamp is
        that of a payload.purged event of the run that came after the evidence."""
        if value is None:
            stamp = row.get("payload_purged_at")
        elif isinstance(value, dict) and set(value) == {"purged_at"}:
            stamp = parse_datetime(str(value["purged_at"]))
        else:
            return False
        return stamp is not None and self.purged_ok(run_id, stamp, recorded_seq)


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
    return text


def _counts(raw: dict[str, int]) -> dict[str, int]:
    return {EVIDENCE_NOUNS.get(label, label): n for label, n in raw.items()}


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
    """The last verified event of a run's chain: its position, its hash, events checked, and
    the rows whose evidence was checked (kind -> ids)."""

    run_seq: int = 0
    hash: str = GENESIS_HASH
    checked: int = 0
    rows: dict[str, list[str]] = field(default_factory=dict)


# Each run beside its stored head and its last event (one statement reads both, so an event
# appended meanwhile, which commits with its head, cannot make them differ).
_HEAD_JOIN = """
    FROM orchestration_run r
    LEFT JOIN orchestration_runaudithead h ON h.run_id = r.id
    LEFT JOIN LATERAL (
        SELECT run_seq, hash FROM orchestration_auditevent
        WHERE run_id = r.id ORDER BY seq DESC LIMIT 1
    ) e ON true
"""
_HEAD_SQL = "SELECT h.run_seq, h.hash, e.run_seq, e.hash" + _HEAD_JOIN + "WHERE r.id = %s"
# The first run whose stored head is not its last event (verify_chain).
_HEADS_SQL = (
    "SELECT r.id"
    + _HEAD_JOIN
    + "WHERE COALESCE(h.run_seq, 0) <> COALESCE(e.run_seq, 0) OR COALESCE(h.hash, '') <> COALESCE(e.hash, '')"
    + " LIMIT 1"
)


def _head_problem(run_id: Any) -> str:
    """Whether the head stored on the run is the run's last event. One statement reads both, so
    an event appended meanwhile (head and event commit together) cannot make them differ."""
    with connection.cursor() as cursor:
        cursor.execute(_HEAD_SQL, [run_id])
        row = cursor.fetchone()
    if row is None:
        return ""
    head_seq, head_hash, last_seq, last_hash = row
    if head_seq is None and last_seq is not None:
        return "the run's head record is missing: it was deleted"
    head_seq, head_hash = head_seq or 0, head_hash or ""
    last_seq, last_hash = last_seq or 0, last_hash or ""
    if head_seq > last_seq:
        return (
            f"the run's head is its event {head_seq} but its chain ends at event {last_seq}: "
            "its last event(s) were deleted"
        )
    if head_seq != last_seq or head_hash != last_hash:
        return (
            f"the run's head (event {head_seq}) is not its last event ({last_seq}): "
            "the head was altered"
        )
    return ""


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
    if event.hash != cp.hash or _content_problem(event):
        return (
            None,
            f"event #{cp.seq} does not match signed checkpoint #{cp.pk}: the chain was rewritten",
        )
    return _checkpoint_info(cp), ""


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
            event.run_id, event.payload_purged_at, event.seq
        ):
            return ChainReport(
                report.checked,
                event.seq,
                f"event #{event.seq} is marked purged at {event.payload_purged_at.isoformat()}, "
                "but no later payload.purged event of the run says so",
                str(run_id),
            ), None
    for event in events:
        found.add(event)
    seq, problem, counts = found.check(run_id)
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
    new_head = RunHead(
        events[-1].run_seq if events else (head.run_seq if head else 0),
        events[-1].hash if events else (head.hash if head else GENESIS_HASH),
        report.checked,
        rows,
    )
    return _with_checkpoint(report, new_head, run_id), new_head


def _with_checkpoint(report: ChainReport, head: RunHead, run_id: Any) -> ChainReport:
    """The run's report with what was verified: evidence rows by kind (the run's own row as
    "result" when it has one) and the latest signed checkpoint."""
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
    after = 0
    if cp is not None:
        after = AuditEvent.objects.filter(run_id=run_id, seq__gt=cp["seq"]).count()
    return ChainReport(
        report.checked,
        run_id=str(run_id),
        evidence=counts,
        checkpoint=cp,
        after_checkpoint=after,
    )


def _verify_run_once(run_id: Any, head: RunHead | None) -> tuple[ChainReport, RunHead | None]:
    report, new_head = _verify_from(run_id, head)
    if not report.ok and "differs from what event" in report.problem:
        # A row and the event recording it commit together, but this check reads them in two
        # statements: one event committed in between is not a forgery. Look once more.
        report, new_head = _verify_from(run_id, head)
    return report, new_head


def verify_run(run_id: Any) -> ChainReport:
    """Verify one run's chain: positions, links to the run's previous event and to the
    global predecessor, payload digests, hashes and signatures, the purge stamps, the
    evidence rows (model calls, tool calls, result, tickets, approvals, fan-out jobs) against
    what the events recorded, the run's head, and the latest signed checkpoint. Reads the
    run's events, their global predecessors and the run's evidence rows."""
    return _verify_run_once(run_id, None)[0]


def verify_run_live(run_id: Any, *, full: bool) -> ChainReport:
    """verify_run for the run page (``full=True``) and its live poll (``full=False``).

    The page verifies the whole chain, every time, and leaves the verified head in the
    cache. The poll, every 1.5 s while a run is live, verifies only the events appended since
    that head (and the rows they record), as its continuation, and re-checks the whole chain
    only when the head is older than ``AUDIT_LIVE_FULL_CHECK_SECONDS``. A 500-step run has
    ~1,000 events: re-hashing them on every poll cost more than the rest of the partial
    (bench/RESULTS.md, "Dashboard pages"). So an edit to an already verified event or row
    shows at the next page load, or in the live view within that many seconds;
    ``verify_audit`` and the JSON download always verify in full. A broken chain is never
    cached. Without the cache (Redis down), it verifies in full.
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
    try:
        head = RunHead(**cached["head"]) if fresh else None
    except TypeError:  # cached by an older version of this code
        head = None
    report, new_head = _verify_run_once(run_id, head)
    if seconds <= 0:
        return report
    try:
        if new_head is None:
            cache.delete(key)
        elif new_head != head:
            # A new head keeps the deadline of the last full check (a full check sets one).
            full_by = cached["full_by"] if fresh and head is not None else now + seconds
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
    one hash per run); every signed checkpoint against the event it signed; every run's head;
    then the evidence rows, a batch of runs at a time.
    """
    if run_id is not None:
        return verify_run(run_id)
    checked = 0
    expected_prev, expected_seq = GENESIS_HASH, 1
    run_heads: dict[Any, tuple[int, str]] = {}  # run -> (last run_seq, last hash)
    purged: dict[tuple[Any, Any], int] = {}  # (run, stamp) -> last purged event's seq
    announced = _Evidence()
    checkpoints = AuditCheckpoint.objects.order_by("seq", "id").iterator(chunk_size=2000)
    cp = next(checkpoints, None)
    latest_cp: AuditCheckpoint | None = None

    def broken(seq: int | None, problem: str, run: Any = None) -> ChainReport:
        return ChainReport(checked, seq, problem, str(run) if run else None)

    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return broken(event.seq, f"missing event(s) before #{event.seq}")
        if event.prev_hash != expected_prev:
            return broken(event.seq, f"event #{event.seq} does not follow its predecessor")
        if event.run_id is not None:
            last_seq, last_hash = run_heads.get(event.run_id, (0, GENESIS_HASH))
            if event.run_seq != last_seq + 1:
                return broken(
                    event.seq,
                    f"run event(s) missing before #{event.seq} "
                    f"(position {event.run_seq}, expected {last_seq + 1})",
                    event.run_id,
                )
            if event.run_prev_hash != last_hash:
                return broken(
                    event.seq,
                    f"event #{event.seq} does not follow the run's previous event",
                    event.run_id,
                )
            run_heads[event.run_id] = (event.run_seq, event.hash)
        elif event.run_seq is not None or event.run_prev_hash:
            return broken(event.seq, f"event #{event.seq} has run links but no run")
        if problem := _content_problem(event):
            return broken(event.seq, problem, event.run_id)
        if event.payload_purged_at is not None:
            purged[(event.run_id, event.payload_purged_at)] = event.seq
        if event.kind == PURGE_KIND:
            announced.add(event)
        while cp is not None and cp.seq <= event.seq:
            if why := _signature_problem(cp.key_id, cp.mac, _checkpoint_message(cp)):
                return broken(cp.seq, f"signed checkpoint #{cp.pk} (event #{cp.seq}) {why}")
            if cp.seq == event.seq and cp.hash != event.hash:
                return broken(
                    cp.seq,
                    f"event #{cp.seq} does not match signed checkpoint #{cp.pk}: the chain was rewritten",
                )
            latest_cp, cp = cp, next(checkpoints, None)
        expected_prev, expected_seq = event.hash, expected_seq + 1
        checked += 1
    if cp is not None:
        return broken(
            cp.seq,
            f"signed checkpoint #{cp.pk} covers event #{cp.seq}, but the chain ends at event "
            f"#{expected_seq - 1}: events were cut from its end",
        )
    for (run, stamp), seq in purged.items():
        if not announced.purged_ok(run, stamp, seq):
            return broken(
                seq,
                f"event #{seq} is marked purged at {stamp.isoformat()}, but no later "
                "payload.purged event of its run says so",
                run,
            )
    with connection.cursor() as cursor:
        cursor.execute(_HEADS_SQL)
        row = cursor.fetchone()
    if row is not None and (problem := _head_problem(row[0])):
        last = AuditEvent.objects.filter(run_id=row[0]).aggregate(m=Max("seq"))["m"]
        return broken(last, problem, row[0])
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
                .only("seq", "run_id", "kind", "payload")
                .order_by("seq")
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
