"""Exports of the audit trail with their proof, and the offline verifier (the module, the
stand-alone script run by a bare Python, and the manage.py command): an untouched export
verifies; an edited, deleted, reordered or appended line and a truncated file are each caught
and named."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.urls import reverse

from orchestration import audit, audit_export, export_verifier
from orchestration.models import AuditEvent
from tests.audit_factories import make_run

VERIFIER = Path(export_verifier.__file__)


@pytest.fixture
def runs(operator, manager):
    first = make_run(operator, tool_output={"transactions": [{"txn_id": "TX-20261120-007"}]})
    second = make_run(manager, workflow="payment_approval")
    audit.record("price.added", actor=manager, payload={"model": "m", "input_per_mtok": "1"})
    third = make_run(operator)
    audit.anchor()  # as beat's sequencer would
    return [first, second, third]


def _export(client, query: str = "") -> list[str]:
    response = client.get(reverse("audit_trail_export", args=["jsonl"]) + query)
    assert response.status_code == 200
    assert response.streaming  # streamed, not built in memory
    assert response["Content-Type"].startswith("application/x-ndjson")
    return b"".join(response.streaming_content).decode().splitlines(keepends=True)


def _verify(lines: list[str], key: str | None = None) -> export_verifier.Result:
    return export_verifier.verify_lines(lines, key or audit_export.public_key_hex())


def _events(lines: list[str]) -> list[int]:
    """Line numbers (0-based) of the event lines."""
    return [i for i, line in enumerate(lines) if '"type":"event"' in line]


def test_untouched_export_verifies(client, auditor, runs):
    client.force_login(auditor)
    lines = _export(client)
    result = _verify(lines)
    assert result.ok, result.summary()
    header, proof = json.loads(lines[0]), json.loads(lines[-1])
    # Every event of the chain up to the head read at the start, the export's own event
    # included (it is recorded first, so it is in the chain it proves).
    events = AuditEvent.objects.filter(seq__lte=header["head"]["seq"])
    assert result.events == events.count() == proof["events"]
    assert json.loads(lines[_events(lines)[-1]])["kind"] == "trail.exported"
    assert result.chain_links == result.events - 1  # the whole chain: every link checked
    assert result.key_pinned and proof["server_check"] == "ok"
    assert "OK:" in result.summary() and f"key {audit_export.public_key_id()}" in result.summary()


def test_a_filtered_export_is_a_verified_subset(client, auditor, runs):
    client.force_login(auditor)
    run = runs[1]
    lines = _export(client, f"?run={run.pk}")
    result = _verify(lines)
    assert result.ok, result.summary()
    seqs = [json.loads(lines[i])["seq"] for i in _events(lines)]
    assert seqs == list(
        AuditEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True)
    )
    # One run's export holds the run's whole chain: every run link is checked.
    assert result.run_links == len(seqs) - 1
    assert json.loads(lines[0])["filters"] == {"run": str(run.pk)}
    # The export is itself in the trail, with who asked and the filters.
    event = AuditEvent.objects.filter(kind="trail.exported").latest("seq")
    assert event.actor_label == "auditor" and event.payload == {
        "format": "jsonl",
        "filters": {"run": str(run.pk)},
    }


def _edit(lines: list[str], index: int, **changes) -> list[str]:
    value = json.loads(lines[index])
    value.update(changes)
    return [*lines[:index], json.dumps(value) + "\n", *lines[index + 1 :]]


def test_an_edited_line_is_caught(client, auditor, runs):
    client.force_login(auditor)
    lines = _export(client)
    i = _events(lines)[3]
    seq = json.loads(lines[i])["seq"]
    result = _verify(_edit(lines, i, actor_label="mallory"))
    assert not result.ok and result.line == i + 1
    assert f"event #{seq}: its hash does not match its content" in result.problem
    # The payload edited: named as such.
    payload = json.loads(lines[i])["payload"]
    result = _verify(_edit(lines, i, payload={**payload, "extra": 1}))
    assert not result.ok and "its payload does not match its digest" in result.problem
    # Edited and re-hashed by someone without the key: the next event's link breaks.
    forged = json.loads(lines[i])
    forged["actor_label"] = "mallory"
    forged["hash"] = export_verifier.event_hash(forged)
    forged["chain_hash"] = export_verifier.chain_hash(forged)
    result = _verify([*lines[:i], json.dumps(forged) + "\n", *lines[i + 1 :]])
    assert not result.ok and result.line == i + 2
    assert f"does not link to event #{seq}" in result.problem


def test_a_deleted_line_is_caught_and_named(client, auditor, runs):
    client.force_login(auditor)
    lines = _export(client)
    events = _events(lines)
    for position in (0, 4, len(events) - 1):  # the first, one in the middle, the last
        i = events[position]
        seq = json.loads(lines[i])["seq"]
        result = _verify([*lines[:i], *lines[i + 1 :]])
        assert not result.ok, position
        assert f"event #{seq}" in result.problem and "missing" in result.problem, result.problem


def test_reordered_lines_are_caught(client, auditor, runs):
    client.force_login(auditor)
    lines = _export(client)
    a, b = _events(lines)[2], _events(lines)[3]
    swapped = list(lines)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    result = _verify(swapped)
    assert not result.ok and result.line == a + 1 and "reordered" in result.problem


def test_a_truncated_file_is_caught(client, auditor, runs):
    client.force_login(auditor)
    lines = _export(client)
    last_event = json.loads(lines[-2])["seq"]
    # Cut after a whole line: no proof.
    result = _verify(lines[:-1])
    assert not result.ok and f"ends after event #{last_event} with no proof line" in result.problem
    # Cut in the middle of a line.
    text = "".join(lines)
    cut = text[: len(text) // 2]
    result = _verify(cut.splitlines(keepends=True))
    assert not result.ok and ("not valid JSON" in result.problem or "truncated" in result.problem)
    # Nothing but the header.
    assert "truncated" in _verify(lines[:1]).problem
    assert "empty" in _verify([]).problem


def test_appended_lines_and_a_forged_proof_are_caught(client, auditor, runs):
    client.force_login(auditor)
    lines = _export(client)
    assert "after the proof" in _verify([*lines, lines[1]]).problem
    proof = json.loads(lines[-1])
    forged = _edit(lines, len(lines) - 1, events=proof["events"] - 1)
    assert not _verify(forged).ok
    # A proof re-signed with another key: refused against the installation's key...
    other = Ed25519PrivateKey.generate()
    public = other.public_key().public_bytes_raw().hex()
    body = {**proof, "public_key": public}
    body["signature"] = other.sign(export_verifier.signed_message(body)).hex()
    header = {**json.loads(lines[0]), "public_key": public}
    resigned = [json.dumps(header) + "\n", *lines[1:-1], json.dumps(body) + "\n"]
    result = _verify(resigned)
    assert not result.ok and "not by the key you passed" in result.problem
    # ...and accepted without a pinned key only with a warning saying so.
    unpinned = export_verifier.verify_lines(resigned, None)
    assert unpinned.ok and "WARNING" in unpinned.summary()


def test_a_tampered_row_is_never_signed_as_good(client, auditor, runs):
    """The installation checks each event as it exports it: a row rewritten in SQL (without
    the HMAC key) makes the proof say so, and the verifier fails."""
    victim = AuditEvent.objects.filter(kind="price.added").get()
    AuditEvent.objects.filter(pk=victim.pk).update(actor_label="mallory")
    client.force_login(auditor)
    lines = _export(client)
    proof = json.loads(lines[-1])
    assert proof["server_check"] == f"event #{victim.seq} was altered"
    # The line as exported carries the altered field under the original hash: caught there.
    result = _verify(lines)
    victim_line = next(i for i in _events(lines) if json.loads(lines[i])["seq"] == victim.seq)
    assert not result.ok and result.line == victim_line + 1
    # Put the original value back in the file: every line verifies, but the signed proof says
    # the installation found the row altered when it exported it.
    repaired = _edit(lines, victim_line, actor_label=victim.actor_label)
    result = _verify(repaired)
    assert not result.ok and "check of these events failed at export" in result.problem
    assert f"event #{victim.seq} was altered" in result.problem


def test_the_pure_python_signature_check_agrees_with_cryptography():
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    for message in (b"", b"countersign", bytes(range(256)) * 3):
        signature = key.sign(message)
        assert export_verifier.ed25519_verify(public, message, signature)
        assert not export_verifier.ed25519_verify(public, message + b"!", signature)
        bad = bytes([signature[0] ^ 1]) + signature[1:]
        assert not export_verifier.ed25519_verify(public, message, bad)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert not export_verifier.ed25519_verify(other, b"countersign", key.sign(b"countersign"))


def test_stand_alone_script_with_a_bare_python(client, auditor, runs, tmp_path):
    """The served script, run by a Python that has only its standard library (-I -S: no
    site-packages, no project on the path)."""
    client.force_login(auditor)
    script = tmp_path / "verify_audit_export.py"
    script.write_bytes(client.get(reverse("audit_verifier")).content)
    key = client.get(reverse("audit_public_key")).content.decode().strip()
    assert key == audit_export.public_key_hex()
    good = tmp_path / "trail.jsonl"
    lines = _export(client, "?kind=run.*")
    good.write_text("".join(lines))
    ok = subprocess.run(
        [sys.executable, "-I", "-S", str(script), str(good), "--public-key", key],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK:")
    bad = tmp_path / "edited.jsonl"
    bad.write_text("".join(_edit(lines, 2, kind="run.succeeded_forged")))
    broken = subprocess.run(
        [sys.executable, "-I", "-S", str(script), str(bad), "--public-key", key],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert broken.returncode == 1 and broken.stdout.startswith("BROKEN: line 3:")
    missing = subprocess.run(
        [sys.executable, "-I", "-S", str(script), str(tmp_path / "nope.jsonl")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_manage_py_command(client, auditor, runs, tmp_path, capsys):
    client.force_login(auditor)
    path = tmp_path / "trail.jsonl"
    lines = _export(client)
    path.write_text("".join(lines))
    call_command("verify_audit_export", str(path))
    assert capsys.readouterr().out.startswith("OK:")
    i = _events(lines)[1]
    path.write_text("".join([*lines[:i], *lines[i + 1 :]]))
    with pytest.raises(SystemExit) as exit_:
        call_command("verify_audit_export", str(path))
    assert exit_.value.code == 1 and "missing" in capsys.readouterr().err
    call_command("audit_public_key")
    assert capsys.readouterr().out.strip() == audit_export.public_key_hex()


def test_csv_export(client, manager, runs):
    client.force_login(manager)
    response = client.get(reverse("audit_trail_export", args=["csv"]) + "?kind=t*")
    assert response.status_code == 200 and response.streaming
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    # Newest first: the export's own event, then the tool call.
    assert [r["kind"] for r in rows] == ["trail.exported", "tool.called"]
    assert json.loads(rows[0]["payload"]) == {"format": "csv", "filters": {"kind": "t*"}}
    rows = rows[1:]
    assert rows[0]["run"] == str(runs[0].pk) and rows[0]["workflow"] == "financial_reporting"
    assert rows[0]["hash"] == AuditEvent.objects.get(kind="tool.called", run=runs[0]).hash


def test_export_streams_with_flat_memory(client, auditor, operator, monkeypatch):
    """Rows come from a server-side cursor a chunk at a time and lines are yielded one by one:
    the memory peak while streaming 5x the events stays about the same."""
    import tracemalloc

    monkeypatch.setattr(audit_export, "CHUNK_SIZE", 100)
    run = make_run(operator)
    for i in range(1500):
        audit.record(
            "bulk.note" if i < 300 else "bulk.more", run=run, payload={"i": i, "pad": "x" * 200}
        )
    client.force_login(auditor)

    def peak(kind: str) -> tuple[int, int]:
        response = client.get(reverse("audit_trail_export", args=["jsonl"]) + f"?kind={kind}")
        tracemalloc.start()
        lines = 0
        for _ in response.streaming_content:
            lines += 1
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return lines, top

    small_lines, small = peak("bulk.note")
    large_lines, large = peak("bulk.*")
    assert (small_lines, large_lines) == (302, 1502)  # header, events, proof
    assert large < small * 2, (small, large)


def _format2_export(key: Ed25519PrivateKey, events: int = 6) -> list[str]:
    """An export of a chain in format 2 (per-run chains anchored by a sequencer), written from
    the specification in docs/architecture.md ("Chain format"), not from the exporter: the
    verifier must follow the spec."""
    genesis = export_verifier.GENESIS_HASH
    public = key.public_key().public_bytes_raw().hex()
    head = {}
    lines, run_heads, prev_chain = [], {}, genesis
    running = hashlib.sha256()
    for seq in range(1, events + 1):
        run = [
            "11111111-1111-1111-1111-111111111111",
            "22222222-2222-2222-2222-222222222222",
            None,
        ][seq % 3]
        run_seq, run_prev = run_heads.get(run, (0, genesis)) if run else (None, "")
        payload = {"n": seq, "note": "café"}
        e = {
            "type": "event", "format": 2, "seq": seq, "prev_hash": prev_chain, "run": run,
            "run_seq": run_seq + 1 if run else None, "run_prev_hash": run_prev, "kind": "step.done",
            "actor": None, "actor_label": "engine", "created_at": f"2026-12-03T22:0{seq}:00.123456+00:00",
            "payload": payload, "payload_digest": export_verifier.digest(payload), "payload_purged_at": None,
            "export_prev": seq - 1 if seq > 1 else None,
        }  # fmt: skip
        e["hash"] = export_verifier.event_hash(e)
        e["chain_hash"] = export_verifier.chain_hash(e)
        if run:
            run_heads[run] = (e["run_seq"], e["hash"])
        prev_chain = e["chain_hash"]
        running.update(f"{seq}:{e['chain_hash']}\n".encode())
        lines.append(json.dumps(e, ensure_ascii=False) + "\n")
        head = {"seq": seq, "hash": e["chain_hash"]}
    common = {"format": export_verifier.FORMAT, "exported_at": "2026-12-03T22:10:00+00:00",
              "filters": {}, "head": head, "public_key": public}  # fmt: skip
    proof = {"type": "proof", **common, "events": events, "first_seq": 1, "last_seq": events,
             "digest": running.hexdigest(), "server_check": "ok"}  # fmt: skip
    proof["signature"] = key.sign(export_verifier.signed_message(proof)).hex()
    header = {"type": "header", **common}
    return [json.dumps(header) + "\n", *lines, json.dumps(proof) + "\n"]


def test_the_verifier_follows_chain_format_2():
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw().hex()
    lines = _format2_export(key)
    result = export_verifier.verify_lines(lines, public)
    assert result.ok, result.summary()
    assert result.chain_links == 5 and result.run_links == 2
    # The run link edited (and everything after it re-hashed by someone without the key).
    edited = _edit(lines, 4, run_prev_hash="0" * 64)
    assert "hash does not match" in export_verifier.verify_lines(edited, public).problem
    # A chain_hash that is not the global link.
    edited = _edit(lines, 3, chain_hash="f" * 64)
    assert "link in the global chain" in export_verifier.verify_lines(edited, public).problem
    assert (
        "unknown chain format"
        in export_verifier.verify_lines(_edit(lines, 2, format=3), public).problem
    )
