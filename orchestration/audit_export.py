"""Exports of the audit trail that carry their own proof, and the key that signs them.

The JSONL export is read by ``orchestration/export_verifier.py`` (standard library only; its
docstring is the format's reference). This module writes it:

- a header line, one line per event in chain order (seq ascending) with every field its hash
  covers, its hash, its links (``prev_hash``, ``run_prev_hash``) and ``export_prev`` (the
  previous event *in this file*), then a proof line;
- the proof signs, with Ed25519, the chain's head when the export began (seq, hash), the
  filters, the number of events, the first and last seq and the sha256 of the exact sequence
  of "seq:chain_hash" lines: a line deleted, added, moved or altered, or a file cut short, no longer
  matches it;
- every event exported is checked on the way out as ``verify_audit`` checks it (its payload
  against its digest, its hash, its HMAC signature, and its link to the previous exported
  event when that is its chain predecessor); the first problem, or "ok", is signed into the
  proof (``server_check``), so the installation never signs a tampered row as good.

**Why Ed25519 and not the chain's HMAC.** An HMAC can only be checked by someone holding the
secret that also makes it: an auditor given the key to verify offline could forge any export.
The export's signing key is an Ed25519 key derived from the first ``AUDIT_SIGNING_KEY``
(sha256 of a fixed label and the key): no new secret to configure or lose, rotated with the
HMAC key, and its public half (``public_key_hex``) can be handed to anyone — the trail page
shows it and ``manage.py audit_public_key`` prints it. The standard-library verifier checks the
signature with a pure-Python Ed25519.

Events come from a server-side cursor (``iterator(chunk_size)``) and lines are yielded one by
one, so memory stays flat whatever the size of the export; only the events up to the head read
at the start are exported, so events appended while it streams do not slip in unsigned (under
chain format 2, events a sequencer has not placed in the global chain yet have no seq and wait
for the next export).
Payloads are already redacted when recorded; the export redacts them again with today's
policy and marks an event whose payload that changed (``payload_redacted_on_export``): its hash
still verifies, its payload can no longer be checked against its digest.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.utils import timezone

from orchestration import audit
from orchestration.export_verifier import FORMAT, key_id, signed_message
from orchestration.models import AuditEvent
from orchestration.privacy import redact

CHUNK_SIZE = 2000
# The label the export key is derived under: changing it changes every public key.
_KEY_LABEL = b"countersign-audit-export-ed25519:"
CSV_COLUMNS = [
    "seq",
    "created_at",
    "kind",
    "actor",
    "run",
    "workflow",
    "ticket",
    "approval",
    "payload",
    "hash",
    "prev_hash",
]


def _private_key() -> Ed25519PrivateKey:
    secret = settings.AUDIT_SIGNING_KEY[0].encode()
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(_KEY_LABEL + secret).digest())


def public_key_hex() -> str:
    """The installation's export-signing public key (32 bytes, hex): give it to auditors."""
    raw = _private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return raw.hex()


def public_key_id() -> str:
    return key_id(public_key_hex())


def _chain_hash(event: AuditEvent) -> str:
    """The event's link in the global chain: ``chain_hash`` under chain format 2, its ``hash``
    under format 1 (where the hash covers the global link)."""
    return getattr(event, "chain_hash", "") or event.hash


def chain_head() -> dict[str, Any]:
    """The global chain's last event now: {"seq", "hash"} (its chain hash; seq 0 and the
    genesis hash when empty)."""
    last = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").first()
    if last is None:
        return {"seq": 0, "hash": audit.GENESIS_HASH}
    return {"seq": last.seq, "hash": _chain_hash(last)}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), cls=DjangoJSONEncoder)


def event_line(event: AuditEvent, export_prev: int | None) -> dict[str, Any]:
    """One event as exported: what its hash covers, as the hash saw it."""
    payload = event.payload
    line: dict[str, Any] = {
        "type": "event",
        "format": getattr(event, "format", 1),
        "seq": event.seq,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "chain_hash": _chain_hash(event),
        "run": str(event.run_id) if event.run_id else None,
        "run_seq": event.run_seq,
        "run_prev_hash": event.run_prev_hash,
        "kind": event.kind,
        "actor": event.actor_id,
        "actor_label": event.actor_label,
        "created_at": event.created_at.isoformat(),
        "payload_digest": event.payload_digest,
        "payload_purged_at": event.payload_purged_at.isoformat()
        if event.payload_purged_at
        else None,
        "export_prev": export_prev,
    }
    shown = redact(payload)
    if shown != payload:
        line["payload_redacted_on_export"] = True
    line["payload"] = shown
    return line


def jsonl_lines(
    events: QuerySet[AuditEvent], *, filters: dict[str, str], exported_by: str
) -> Iterator[str]:
    """The export, line by line: header, events (seq ascending, up to the head read now), proof.

    ``events``: the filtered trail (any order; it is re-ordered here). The sequencer runs
    first, so the events appended up to now are in the global chain and in the export."""
    audit.anchor()
    head = chain_head()
    exported_at = timezone.now().isoformat()
    public = public_key_hex()
    header = {
        "type": "header",
        "format": FORMAT,
        "exported_at": exported_at,
        "exported_by": exported_by,
        "filters": filters,
        "head": head,
        "public_key": public,
        "key_id": key_id(public),
        "order": "seq ascending (chain order)",
    }
    yield _dumps(header) + "\n"
    running = hashlib.sha256()
    count, first, previous = 0, None, None
    problem = ""
    rows = events.filter(seq__lte=head["seq"]).order_by("seq")
    for event in rows.iterator(chunk_size=CHUNK_SIZE):
        if not problem:
            problem = audit.event_problem(event)
            if (
                not problem
                and previous is not None
                and event.seq == previous[0] + 1
                and event.prev_hash != previous[1]
            ):
                problem = f"event #{event.seq} does not follow its predecessor"
        yield _dumps(event_line(event, previous[0] if previous else None)) + "\n"
        link = _chain_hash(event)
        running.update(f"{event.seq}:{link}\n".encode())
        count += 1
        first = event.seq if first is None else first
        previous = (event.seq, link)
    proof = {
        "type": "proof",
        "format": FORMAT,
        "exported_at": exported_at,
        "filters": filters,
        "head": head,
        "events": count,
        "first_seq": first,
        "last_seq": previous[0] if previous else None,
        "digest": running.hexdigest(),
        "server_check": problem or "ok",
        "public_key": public,
    }
    proof["signature"] = _private_key().sign(signed_message(proof)).hex()
    yield _dumps(proof) + "\n"


class _Echo:
    """csv.writer target that hands back each line instead of buffering it."""

    def write(self, value: str) -> str:
        return value


def csv_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    """The filtered trail as CSV, newest first like the page: for reading, not for proof (the
    JSONL export carries the proof)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    rows = events.select_related("run").order_by("-id")
    for event in rows.iterator(chunk_size=CHUNK_SIZE):
        payload = redact(event.payload) if isinstance(event.payload, dict) else {}
        yield writer.writerow(
            [
                event.seq,
                event.created_at.isoformat(),
                event.kind,
                event.actor_label,
                str(event.run_id) if event.run_id else "",
                event.run.workflow_name if event.run_id else "",
                payload.get("ticket", ""),
                payload.get("request", "") if "request" in payload else "",
                _dumps(payload),
                event.hash,
                event.prev_hash,
            ]
        )
