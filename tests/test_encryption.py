"""Encryption at rest covers every copy of a payload, look-alike envelopes are stored safely,
an undecryptable payload never stops a page or loops a run, and keys rotate.

Markers are long (20+ characters), so base64 ciphertext can never contain one by chance.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.http import QueryDict
from django.urls import reverse

import tests.workflows_for_tests  # noqa: F401 - registers fanout_probe
from demo.playbook import answer, call, result
from orchestration import engine
from orchestration.fanout import artifacts
from orchestration.fanout.models import Fanout, FanoutJob
from orchestration.launch import start_run
from orchestration.models import ModelCall, Run, ToolCall
from orchestration.run_search import filtered_runs, parse_filters
from orchestration.workflows.declaration import Constraints, Tool, Workflow
from orchestration.workflows.registry import register
from reviews import resolutions
from reviews.models import EscalationTicket
from simulator.policy import Conversation, Turn
from tests.audit_factories import make_run
from tests.test_fanout import _fanout_settings, drive_fanout  # noqa: F401 - its fixtures

# The stored forms (docs/architecture.md, "Privacy and retention"), spelled out: they are a
# storage format, and rows already written depend on them.
ENVELOPE = "$countersign_encrypted"
PLAIN = "$countersign_plain"
TEXT_ENVELOPE = ENVELOPE + ":"
TEXT_PLAIN = PLAIN + ":"
UNDECRYPTABLE = "_undecryptable"

KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()
KEY_OTHER = Fernet.generate_key().decode()

MARKER_IN = "planted-tool-input-marker-5e0c2b7d91"
MARKER_OUT = "planted-tool-output-marker-8a41f3c6d2"
MARKER_JOB = "planted-fanout-job-marker-3b9e7d1c04"
# What a model can emit as a tool input: it looks exactly like a sealed value.
LOOKALIKE = {ENVELOPE: "gAAAAABforged-by-the-model-not-a-real-fernet-token"}
S = Run.Status


def _sealed_policy(conv: Conversation) -> Turn:
    mode = conv.input.get("mode", "ok")
    if not conv.results("peek"):
        return call("peek", LOOKALIKE if mode == "lookalike" else {"ref": MARKER_IN})
    if mode == "unsure":
        return Turn(content=[{"type": "text", "text": "I am not sure which ledger applies here."}])
    got = result(conv, "peek")
    return answer({"done": got is not None})


register(
    Workflow(
        name="sealed_probe",
        title="Sealed probe (tests only)",
        version="1",
        domain="testing",
        role="Call peek, then answer.",
        input_schema={"type": "object", "properties": {"mode": {"type": "string"}}},
        output_schema={
            "type": "object",
            "properties": {"done": {"type": "boolean"}},
            "required": ["done"],
            "additionalProperties": False,
        },
        tools=(
            Tool(
                "peek",
                "Look something up.",
                {"type": "object"},
                {
                    "type": "object",
                    "properties": {"echo": {"type": "object"}, "secret": {"type": "string"}},
                    "required": ["echo", "secret"],
                },
                lambda args, ctx: {"echo": args, "secret": MARKER_OUT},
            ),
        ),
        rules=("Call peek first.",),
        constraints=Constraints(max_steps=6),
        policy=_sealed_policy,
    )
)


def _raw_rows(table: str, column: str, value: Any) -> str:
    """Every row of ``table`` where column = value, as the database holds them (JSON text)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT coalesce(json_agg(t)::text, '') FROM {table} t WHERE {column} = %s",  # noqa: S608
            [value],
        )
        return cursor.fetchone()[0]


def _raw(table: str, column: str, pk: Any) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


# --- every copy -----------------------------------------------------------------------


def test_with_a_key_no_copy_of_a_tool_payload_is_stored_in_clear(settings, operator, drive):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    run = drive(start_run("sealed_probe", {"mode": "unsure"}, operator))
    assert run.status == S.AWAITING_REVIEW
    ticket = EscalationTicket.objects.get(run=run)
    # The model saw both markers (so every copy was made), and every copy reads back.
    calls = list(ModelCall.objects.filter(run=run).order_by("turn"))
    assert MARKER_IN in json.dumps(calls[0].response_content)
    assert MARKER_OUT in json.dumps(calls[1].request_content)
    assert MARKER_OUT in json.dumps(ticket.context["tool_calls"])
    assert ToolCall.objects.get(run=run).output["secret"] == MARKER_OUT
    # The database holds none of them: model calls, tool calls, the ticket, the audit trail.
    for table in (
        "orchestration_modelcall",
        "orchestration_toolcall",
        "reviews_escalationticket",
        "orchestration_auditevent",
    ):
        stored = _raw_rows(table, "run_id", run.pk)
        assert stored, table
        assert MARKER_IN not in stored and MARKER_OUT not in stored, table
    for mc in calls:
        assert set(json.loads(_raw("orchestration_modelcall", "request_content", mc.pk))) == {
            ENVELOPE
        }
    assert set(json.loads(_raw("reviews_escalationticket", "context", ticket.pk))) == {ENVELOPE}


def test_with_a_key_fanout_prompts_outputs_and_artifacts_are_encrypted(
    settings,
    operator,
    drive_fanout,  # noqa: F811 - the fixture imported above
):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    # The marker rides in every job's prompt (fanout_probe appends its input to the task).
    run = drive_fanout(drive_fanout.start({"n": 3, "fail_once": [MARKER_JOB]}))
    assert run.status == S.SUCCEEDED
    jobs = list(FanoutJob.objects.filter(run=run).order_by("seq"))
    assert len(jobs) == 3 and all(MARKER_JOB in j.prompt for j in jobs)
    assert jobs[0].output == {"value": "j000"} and "j000" in jobs[0].output_text
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT prompt, output::text, output_text FROM orchestration_fanoutjob WHERE run_id = %s",
            [run.pk],
        )
        rows = cursor.fetchall()
    for prompt, output, output_text in rows:
        assert prompt.startswith(TEXT_ENVELOPE) and MARKER_JOB not in prompt
        assert set(json.loads(output)) == {ENVELOPE} and '"value"' not in output
        assert output_text.startswith(TEXT_ENVELOPE) and '"value"' not in output_text
    # Every specialist, validator and orchestrator call carried the marker; none is in clear.
    assert ModelCall.objects.filter(run=run).count() >= 8
    assert MARKER_JOB not in _raw_rows("orchestration_modelcall", "run_id", run.pk)
    # The JSONL artifact: ids in clear, payload sealed, read back whole.
    text = artifacts.path_for(run.pk).read_text()
    assert text.count("\n") == 3 and '"value"' not in text and "j000" in text
    lines = sorted(artifacts.read_lines(run.pk), key=lambda line: line["job_id"])
    assert [(line["job_id"], line["output"]) for line in lines] == [
        (f"j00{i}", {"value": f"j00{i}"}) for i in range(3)
    ]


# --- look-alikes ------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [[KEY_NEW], []], ids=["key", "no-key"])
def test_a_model_emitted_envelope_lookalike_round_trips_and_the_run_completes(
    settings, operator, drive, client, keys
):
    settings.PAYLOAD_ENCRYPTION_KEYS = keys
    run = drive(start_run("sealed_probe", {"mode": "lookalike"}, operator))
    assert run.status == S.SUCCEEDED and run.result == {"done": True}
    tc = ToolCall.objects.get(run=run)
    assert tc.input == LOOKALIKE
    assert tc.output == {"echo": LOOKALIKE, "secret": MARKER_OUT}
    first = ModelCall.objects.get(run=run, turn=0)
    assert first.tool_uses[0]["input"] == LOOKALIKE
    stored = json.loads(_raw("orchestration_toolcall", "input::text", tc.pk))
    if keys:
        assert set(stored) == {ENVELOPE} and stored != LOOKALIKE
    else:
        assert stored == {PLAIN: LOOKALIKE}  # escaped, not taken for ciphertext
    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[run.pk]))
    assert page.status_code == 200 and "gAAAAABforged-by-the-model" in page.content.decode()


@pytest.mark.parametrize("keys", [[KEY_NEW], []], ids=["key", "no-key"])
def test_lookalikes_of_every_stored_form_round_trip_exactly(settings, operator, keys):
    settings.PAYLOAD_ENCRYPTION_KEYS = keys
    values = [
        LOOKALIKE,
        {PLAIN: {"x": 1}},
        {PLAIN: LOOKALIKE},
        {UNDECRYPTABLE: "a model can write this too"},
    ]
    texts = [
        TEXT_ENVELOPE + "gAAAAABnot-a-token",
        TEXT_PLAIN + "x",
        TEXT_PLAIN + TEXT_ENVELOPE + "y",
    ]
    run = make_run(operator)
    for i, (value, text) in enumerate(zip(values, texts + texts[:1], strict=True)):
        job = FanoutJob.objects.create(
            run=run, job_id=f"j{i}", seq=i, prompt=text, schema={}, output=value, output_text=text
        )
        job = FanoutJob.objects.get(pk=job.pk)
        assert (job.prompt, job.output, job.output_text) == (text, value, text)
        tc = ToolCall.objects.get(run=make_run(operator, tool_output=value))
        assert tc.output == value


# --- undecryptable payloads ----------------------------------------------------------------


def test_an_undecryptable_payload_escalates_the_run_and_every_page_says_so(
    settings, operator, manager, drive, client
):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_OLD]
    settings.ENGINE_TASK_SLICE_SECONDS = 0  # one step per task: the key changes between steps
    run = start_run("sealed_probe", {}, operator)
    engine.run_step(run.pk)  # turn 0: the model asks for peek, the tool answers
    run.refresh_from_db()
    assert run.status == S.RUNNING and ToolCall.objects.filter(run=run, status="ok").count() == 1
    # The key is rotated out without re-encrypting: turn 0 can no longer be read.
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    run = drive(run, max_steps=3)
    assert run.status == S.AWAITING_REVIEW
    ticket = EscalationTicket.objects.get(run=run)
    assert ticket.reason == "undecryptable"
    assert "cannot be decrypted" in ticket.message and "PAYLOAD_ENCRYPTION_KEYS" in ticket.message
    assert ModelCall.objects.filter(run=run).count() == 1  # nothing was sent with a placeholder
    # Nothing re-queues it: the reaper finds no running run.
    assert engine.reap_stalled_runs() == 0

    client.force_login(operator)
    page = client.get(reverse("run_detail", args=[run.pk]))
    assert page.status_code == 200
    assert "This payload cannot be decrypted" in page.content.decode()
    download = client.get(reverse("run_download", args=[run.pk]))
    assert download.status_code == 200
    assert "This payload cannot be decrypted" in download.content.decode()

    client.force_login(manager)
    page = client.get(reverse("ticket_detail", args=[ticket.pk]))
    assert page.status_code == 200 and "This payload cannot be decrypted" in page.content.decode()
    # With no key at all, even the ticket's own snapshot cannot be read: the page says so.
    settings.PAYLOAD_ENCRYPTION_KEYS = []
    page = client.get(reverse("ticket_detail", args=[ticket.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert "context snapshot:</strong> This payload cannot be decrypted" in body
    assert "PAYLOAD_ENCRYPTION_KEYS is not set" in body
    assert client.get(reverse("run_detail", args=[run.pk])).status_code == 200

    # The key comes back: a reviewer retries and the run finishes from where it stopped.
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW, KEY_OLD]
    resolutions.resolve(ticket.pk, manager, "retry", comment="key restored")
    assert drive(run).status == S.SUCCEEDED


def test_a_corrupted_artifact_line_reads_as_a_placeholder(settings, operator):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_OLD]
    run = make_run(operator)
    artifacts.append(run.pk, {"job_id": "j1", "attempt": 1, "output": {"v": MARKER_OUT}})
    assert MARKER_OUT not in artifacts.path_for(run.pk).read_text()
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    (line,) = artifacts.read_lines(run.pk)
    assert line["job_id"] == "j1" and "cannot be decrypted" in line[UNDECRYPTABLE]


# --- rotation and re-encryption ----------------------------------------------------------


def test_reencrypt_payloads_seals_legacy_plaintext_and_old_keys_with_the_first_key(
    settings, operator, tmp_path
):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.PAYLOAD_ENCRYPTION_KEYS = []
    legacy = make_run(operator, tool_output={"v": MARKER_OUT})
    legacy_job = FanoutJob.objects.create(
        run=legacy, job_id="a", seq=0, prompt=MARKER_JOB, schema={}, output={"v": MARKER_JOB}
    )
    lookalike_job = FanoutJob.objects.create(
        run=legacy, job_id="b", seq=1, prompt="p", schema={}, output=LOOKALIKE
    )
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_OLD]
    old = make_run(operator, tool_output={"v": "sealed-with-the-old-key"})
    Fanout.objects.create(run=old, failure_threshold="0.1", per_run_concurrency=1)
    artifacts.append(old.pk, {"job_id": "x", "attempt": 1, "output": {"v": "old-artifact"}})

    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW, KEY_OLD]
    call_command("reencrypt_payloads", "--batch-size", "2")
    assert MARKER_OUT not in _raw_rows("orchestration_toolcall", "run_id", legacy.pk)
    assert MARKER_OUT not in _raw_rows("orchestration_modelcall", "run_id", legacy.pk)
    assert MARKER_JOB not in _raw_rows("orchestration_fanoutjob", "run_id", legacy.pk)
    # Everything now reads with the new key alone, exactly as written.
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    assert ToolCall.objects.get(run=legacy).output == {"v": MARKER_OUT}
    assert ToolCall.objects.get(run=old).output == {"v": "sealed-with-the-old-key"}
    assert FanoutJob.objects.get(pk=legacy_job.pk).prompt == MARKER_JOB
    assert FanoutJob.objects.get(pk=lookalike_job.pk).output == LOOKALIKE
    assert artifacts.read_lines(old.pk)[0]["output"] == {"v": "old-artifact"}
    # A second run has nothing left to do.
    call_command("reencrypt_payloads")


def test_reencrypt_payloads_leaves_what_it_cannot_decrypt_and_says_so(settings, operator):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_OTHER]
    lost = ToolCall.objects.get(run=make_run(operator, tool_output={"v": 1}))
    before = _raw("orchestration_toolcall", "output::text", lost.pk)
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("reencrypt_payloads")
    assert _raw("orchestration_toolcall", "output::text", lost.pk) == before
    settings.PAYLOAD_ENCRYPTION_KEYS = []
    with pytest.raises(CommandError, match="not set"):
        call_command("reencrypt_payloads")


# --- search --------------------------------------------------------------------------------


def test_with_a_key_search_covers_run_inputs_and_never_sealed_payloads(settings, operator):
    settings.PAYLOAD_ENCRYPTION_KEYS = [KEY_NEW]
    run = make_run(
        operator,
        input={"date": "2026-11-20", "ref": "searchable-input-token"},
        tool_output={"secret": MARKER_OUT},
    )

    def found(q: str) -> list[Run]:
        return list(filtered_runs(operator, parse_filters(QueryDict(f"q={q}"))))

    assert found("searchable-input-token") == [run]
    assert found(MARKER_OUT) == []  # the index holds only the envelope
    settings.PAYLOAD_ENCRYPTION_KEYS = []
    plain = make_run(operator, tool_output={"secret": MARKER_OUT})
    assert found(MARKER_OUT) == [plain]
