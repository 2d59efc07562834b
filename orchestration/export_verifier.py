#!/usr/bin/env python3
"""Verify a Countersign audit trail export (JSONL) offline, with the Python standard library only.

    python3 verify_audit_export.py trail-20261203-221500.jsonl --public-key 3b6a27bc...

This file is the whole verifier: copy it anywhere (the trail page serves it as a download,
and ``manage.py verify_audit_export`` runs the same code). It imports nothing outside the
standard library; the Ed25519 signature check is a pure-Python implementation of RFC 8032's
verification (slow, but one signature per file).

What an export holds (written by ``orchestration.audit_export``):

- line 1, the header: format, when, by whom, the filters, the chain's head at export time
  (seq and hash), the signing public key;
- one line per event, in chain order (seq ascending): the fields its hash covers, its payload,
  its hash, its chain format (1, or 2 with per-run chains and a ``chain_hash``), its link to
  the previous event of the whole chain (``prev_hash``) and of its run's chain
  (``run_prev_hash``), and ``export_prev``: the seq of the previous event *in this file*;
- the last line, the proof: the head again, the number of events, the first and last seq, the
  sha256 of every event's "seq:chain_hash" line in order, the server's own check of the events, and
  an Ed25519 signature over all of that.

What it checks, naming the first line that fails:

1. each event's hash, recomputed from its fields (an edited line);
2. its payload against the digest the hash covers (unless purged by retention, or redacted
   again on export because the redaction policy grew since; both are counted and reported);
3. the order (seq strictly ascending) and ``export_prev`` (a deleted or moved line names the
   missing event);
4. the links where both ends are in the file: an event that directly follows another in the
   chain (seq + 1) must carry its hash as ``prev_hash``; the same for consecutive events of one
   run (``run_seq`` + 1, ``run_prev_hash``); the first event of the chain or of a run links to
   the genesis hash;
5. the proof: present (else the file was truncated), its count, first and last seq and digest
   equal to what the file holds, the head consistent with the last event, the server's check
   "ok", and the signature, with the public key you pass (``--public-key``); without one, the
   key in the file is used and the output says it was not pinned.

A filtered export is a subset of the chain: the events between two exported ones are not in
the file. The links between consecutive events are checked where both are present (an export
of one run holds the run's whole chain, so every run link is checked); the gaps are covered by
the signed digest of the exact sequence of (seq, hash) pairs, so an event cannot be dropped,
added, reordered or altered without breaking the signature, and by the signed head, which
ties the export to the chain as it stood.

Exit status: 0 verified, 1 broken, 2 unreadable or wrong usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FORMAT = "countersign-audit-export/1"
GENESIS_HASH = "0" * 64
SIGNATURE_CONTEXT = b"countersign-audit-export:"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def event_hash(e: dict[str, Any]) -> str:
    """The chain's hash of an event (orchestration.audit.event_hash, on the exported fields).

    Format 1 (the hash covers the global link): sha256(prev_hash + canonical {seq, run,
    run_seq, run_prev_hash, kind, actor, actor_label, payload_digest, created_at
    [, evidence_digest]}). Format 2 (per-run chains; a sequencer adds the global link):
    sha256(run_prev_hash + canonical {format, run, run_seq, kind, actor, actor_label,
    payload_digest, created_at[, evidence_digest]}). docs/architecture.md, "Chain format"."""
    body = {
        "run": e["run"],
        "run_seq": e["run_seq"],
        "kind": e["kind"],
        "actor": e["actor"],
        "actor_label": e["actor_label"],
        "payload_digest": e["payload_digest"],
        "created_at": e["created_at"],
    }
    payload = e.get("payload")
    if isinstance(payload, dict) and "evidence" in payload:
        body["evidence_digest"] = digest(payload["evidence"])
    if e.get("format", 1) == 1:
        body["seq"] = e["seq"]
        body["run_prev_hash"] = e["run_prev_hash"]
        return hashlib.sha256((e["prev_hash"] + canonical(body)).encode()).hexdigest()
    body["format"] = e["format"]
    return hashlib.sha256((e["run_prev_hash"] + canonical(body)).encode()).hexdigest()


def chain_hash(e: dict[str, Any]) -> str:
    """The event's link in the global chain: its hash (format 1), or sha256(prev_hash +
    canonical {seq, hash}) (format 2)."""
    if e.get("format", 1) == 1:
        return e["hash"]
    return hashlib.sha256(
        (e["prev_hash"] + canonical({"seq": e["seq"], "hash": e["hash"]})).encode()
    ).hexdigest()


def signed_message(proof: dict[str, Any]) -> bytes:
    return (
        SIGNATURE_CONTEXT + canonical({k: v for k, v in proof.items() if k != "signature"}).encode()
    )


def key_id(public_key_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


# --- Ed25519 verification (RFC 8032, section 5.1.7), pure Python --------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y: int, sign: int) -> int | None:
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if xx == 0:
        return None if sign else 0
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - xx) % _P:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0) or 0
_G = (_GX, _GY, 1, _GX * _GY % _P)


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int, int]:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * t1 * t2 * _D % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, point: tuple[int, ...]) -> tuple[int, ...]:
    q: tuple[int, ...] = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, point)
        point = _add(point, point)
        s >>= 1
    return q


def _decompress(raw: bytes) -> tuple[int, int, int, int] | None:
    if len(raw) != 32:
        return None
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decompress(public_key)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = (
        int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
        % _L
    )
    left = _mul(s, _G)
    right = _add(r, _mul(k, a))
    return (left[0] * right[2] - right[0] * left[2]) % _P == 0 and (
        left[1] * right[2] - right[1] * left[2]
    ) % _P == 0


# --- the verification -------------------------------------------------------------------


@dataclass
class Result:
    ok: bool = False
    problem: str = ""
    line: int | None = None
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    chain_links: int = 0
    run_links: int = 0
    purged: int = 0
    redacted_on_export: int = 0
    head: dict[str, Any] = field(default_factory=dict)
    key_id: str = ""
    key_pinned: bool = False
    exported_at: str = ""

    def summary(self) -> str:
        if not self.ok:
            where = f"line {self.line}: " if self.line else ""
            return f"BROKEN: {where}{self.problem}"
        span = f"#{self.first_seq}..#{self.last_seq}" if self.events else "none"
        text = (
            f"OK: {self.events} event(s) ({span}), {self.chain_links} chain link(s) and "
            f"{self.run_links} run link(s) checked between consecutive events; signed head: "
            f"event #{self.head.get('seq')} at {self.exported_at}, key {self.key_id}"
        )
        if self.purged:
            text += f"; {self.purged} payload(s) purged by retention (hash and evidence checked)"
        if self.redacted_on_export:
            text += (
                f"; {self.redacted_on_export} payload(s) redacted again on export "
                "(their hash checked, not their payload)"
            )
        if not self.key_pinned:
            text += (
                ". WARNING: the signature was checked with the key inside the file; pass "
                "--public-key (the installation's, from `manage.py audit_public_key` or the "
                "trail page) to know who signed it"
            )
        return text


class _Broken(Exception):
    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line, self.problem = line, problem


def _parse(number: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _Broken(number, f"is not valid JSON ({exc}): the line was edited or cut") from exc
    if not isinstance(value, dict):
        raise _Broken(number, "is not a JSON object")
    return value


_EVENT_FIELDS = (
    "seq", "prev_hash", "hash", "run", "run_seq", "run_prev_hash", "kind", "actor",
    "actor_label", "created_at", "payload", "payload_digest", "export_prev",
)  # fmt: skip


def _check_event(number: int, e: dict[str, Any], result: Result) -> None:
    missing = [f for f in _EVENT_FIELDS if f not in e]
    if missing:
        raise _Broken(number, f"event line lacks {', '.join(missing)}: the line was edited")
    seq = e["seq"]
    if e.get("payload_purged_at"):
        result.purged += 1
        payload = e["payload"]
        if not isinstance(payload, dict) or set(payload) - {"evidence"}:
            raise _Broken(number, f"event #{seq} is marked purged but holds a payload: edited")
    elif e.get("payload_redacted_on_export"):
        result.redacted_on_export += 1
    elif digest(e["payload"]) != e["payload_digest"]:
        raise _Broken(
            number, f"event #{seq}: its payload does not match its digest: the line was edited"
        )
    if e.get("format", 1) not in (1, 2):
        raise _Broken(number, f"event #{seq} has an unknown chain format {e.get('format')!r}")
    if event_hash(e) != e["hash"]:
        raise _Broken(
            number, f"event #{seq}: its hash does not match its content: the line was edited"
        )
    if e.get("chain_hash", e["hash"]) != chain_hash(e):
        raise _Broken(number, f"event #{seq}: its link in the global chain does not match: edited")


def verify_lines(lines: Iterable[str], public_key: str | None = None) -> Result:
    """Verify an export given as its lines; the first problem found stops the check."""
    result = Result()
    try:
        _verify(lines, public_key, result)
    except _Broken as broken:
        result.ok, result.line, result.problem = False, broken.line, broken.problem
        return result
    result.ok = True
    return result


def _verify(lines: Iterable[str], public_key: str | None, result: Result) -> None:
    header: dict[str, Any] | None = None
    proof: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    run_heads: dict[str, tuple[int, str]] = {}
    running = hashlib.sha256()
    number = 0
    for number, raw in enumerate(lines, start=1):  # noqa: B007 - number is read after the loop
        text = raw.rstrip("\r\n")
        if not text.strip():
            raise _Broken(number, "is empty: the file was edited")
        if proof is not None:
            raise _Broken(number, "comes after the proof line: lines were appended")
        value = _parse(number, text)
        kind = value.get("type")
        if header is None:
            if kind != "header" or value.get("format") != FORMAT:
                raise _Broken(number, f"is not the header of a {FORMAT} file")
            header = value
            continue
        if kind == "proof":
            proof = value
            continue
        if kind != "event":
            raise _Broken(number, f"has an unknown type {kind!r}")
        _check_event(number, value, result)
        seq = value["seq"]
        if not isinstance(seq, int):
            raise _Broken(number, "has a seq that is not a number: edited")
        if previous is not None and seq <= previous["seq"]:
            raise _Broken(
                number,
                f"event #{seq} comes after event #{previous['seq']}: the lines were reordered",
            )
        expected_prev = previous["seq"] if previous else None
        if value["export_prev"] != expected_prev:
            missing = value["export_prev"]
            if previous is None or (isinstance(missing, int) and missing > previous["seq"]):
                raise _Broken(
                    number,
                    f"event #{missing}, which the export holds just before event #{seq}, is "
                    "missing here: a line was deleted, or the lines were reordered",
                )
            raise _Broken(
                number,
                f"event #{seq} should follow event #{missing} in this export, not "
                f"#{expected_prev}: the lines were reordered or edited",
            )
        if seq == 1 and value["prev_hash"] != GENESIS_HASH:
            raise _Broken(number, "event #1 does not start from the genesis hash")
        if previous is not None and seq == previous["seq"] + 1:
            if value["prev_hash"] != chain_hash(previous):
                raise _Broken(
                    number,
                    f"event #{seq} does not link to event #{previous['seq']} "
                    "(prev_hash differs): broken link",
                )
            result.chain_links += 1
        run = value["run"]
        if run is not None:
            last = run_heads.get(run)
            if value["run_seq"] == 1:
                if value["run_prev_hash"] != GENESIS_HASH:
                    raise _Broken(
                        number,
                        f"event #{seq} is its run's first but does not start from the genesis hash",
                    )
            elif last is not None and value["run_seq"] == last[0] + 1:
                if value["run_prev_hash"] != last[1]:
                    raise _Broken(
                        number,
                        f"event #{seq} does not link to its run's previous event "
                        "(run_prev_hash differs): broken link",
                    )
                result.run_links += 1
            elif last is not None and value["run_seq"] <= last[0]:
                raise _Broken(number, f"event #{seq} repeats a position in its run's chain")
            run_heads[run] = (value["run_seq"], value["hash"])
        running.update(f"{seq}:{chain_hash(value)}\n".encode())
        result.events += 1
        result.first_seq = result.first_seq if result.first_seq is not None else seq
        result.last_seq = seq
        previous = value
    if header is None:
        raise _Broken(None, "the file is empty")
    if proof is None:
        after = f"event #{previous['seq']}" if previous else "the header"
        raise _Broken(
            number,
            f"the file ends after {after} with no proof line: it was truncated",
        )
    _check_proof(number, header, proof, result, running.hexdigest(), previous, public_key)


def _check_proof(
    number: int,
    header: dict[str, Any],
    proof: dict[str, Any],
    result: Result,
    running: str,
    last: dict[str, Any] | None,
    public_key: str | None,
) -> None:
    for name in ("format", "exported_at", "filters", "head", "public_key"):
        if proof.get(name) != header.get(name):
            raise _Broken(number, f"the proof's {name} differs from the header's: edited")
    if proof.get("events") != result.events or proof.get("last_seq") != result.last_seq:
        said = f"{proof.get('events')} event(s) ending at #{proof.get('last_seq')}"
        held = f"{result.events} ending at #{result.last_seq}"
        missing = proof.get("last_seq")
        if isinstance(missing, int) and (result.last_seq is None or missing > result.last_seq):
            raise _Broken(
                number,
                f"event #{missing}, the export's last according to its proof, is missing "
                f"(the proof covers {said}; the file holds {held}): lines were deleted",
            )
        raise _Broken(number, f"the proof covers {said}, the file holds {held}: edited")
    if proof.get("first_seq") != result.first_seq:
        raise _Broken(number, f"the proof says the first event is #{proof.get('first_seq')}")
    if proof.get("digest") != running:
        raise _Broken(
            number,
            "the events' (seq, hash) digest differs from the signed one: an event was "
            "replaced, edited and re-hashed, or the proof was edited",
        )
    head = proof.get("head") or {}
    if last is not None and isinstance(head.get("seq"), int):
        if last["seq"] > head["seq"]:
            raise _Broken(number, f"event #{last['seq']} is past the signed head #{head['seq']}")
        if last["seq"] == head["seq"] and chain_hash(last) != head.get("hash"):
            raise _Broken(
                number, f"event #{last['seq']} is the head but its hash is not the signed one"
            )
    if proof.get("server_check") != "ok":
        raise _Broken(
            number,
            f"the installation's own check of these events failed at export: {proof.get('server_check')}",
        )
    embedded = str(proof.get("public_key") or "")
    if public_key:
        if public_key.strip().lower() != embedded.lower():
            raise _Broken(
                number,
                f"the export is signed by key {key_id(embedded) if embedded else '(none)'}, "
                f"not by the key you passed ({key_id(public_key.strip())})",
            )
        result.key_pinned = True
    try:
        key = bytes.fromhex(embedded)
        signature = bytes.fromhex(str(proof.get("signature") or ""))
    except ValueError as exc:
        raise _Broken(number, "the proof's key or signature is not hex: edited") from exc
    if not ed25519_verify(key, signed_message(proof), signature):
        raise _Broken(number, "the proof's signature does not verify: the proof was edited")
    result.head = head
    result.key_id = key_id(embedded)
    result.exported_at = str(proof.get("exported_at"))


def verify_file(path: str, public_key: str | None = None) -> Result:
    with open(path, encoding="utf-8") as handle:
        return verify_lines(handle, public_key)


def read_public_key(value: str | None) -> str | None:
    """A key given as hex, or a file holding it."""
    if not value:
        return None
    text = value.strip()
    try:
        bytes.fromhex(text)
        return text
    except ValueError:
        with open(text, encoding="utf-8") as handle:
            return handle.read().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Countersign audit trail export (JSONL).")
    parser.add_argument("export", help="the .jsonl file downloaded from the audit trail page")
    parser.add_argument(
        "--public-key", help="the installation's Ed25519 public key (hex), or a file holding it"
    )
    args = parser.parse_args(argv)
    try:
        result = verify_file(args.export, read_public_key(args.public_key))
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {args.export}: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
