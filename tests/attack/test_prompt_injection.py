"""The prompt-injection corpus (injection_corpus.json), each payload placed in the run input
and in a tool output, against a simulated model that *obeys* it (injection_workflow.py).

The engine must not care what the model or a tool claims: every validator still runs, the
required check is still required, escalation rules still fire, unknown tools are refused in
code and never executed, invented values are caught, and the audit chain has one verifiable
event for everything that happened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.attack import injection_workflow
from tests.attack.injection_workflow import EXECUTED, FORGED_FIELDS

# Entries with "target": "fanout" are aimed at a fan-out orchestrator (tests/test_fanout.py,
# fanout_injection_workflow.py); entries with a "workflow" aim at a demo workflow's
# preconditions (test_side_effect_guards.py); the rest at the tool-use loop, here.
CORPUS = [
    e
    for e in json.loads((Path(__file__).parent / "injection_corpus.json").read_text())
    if e.get("target", "tool_loop") == "tool_loop" and "workflow" not in e
]
TOOL_EVENT = {
    "ok": "tool.called",
    "invalid_output": "tool.invalid_output",
    "unknown_tool": "tool.unknown",
    "rejected": "tool.rejected",
    "error": "tool.failed",
    "timeout": "tool.failed",
}


def expectation(entry: dict[str, Any]) -> tuple[str, set[str]]:
    """(final status, acceptable ticket reasons) for what the obedient model does."""
    if entry.get("bad_data"):
        return "awaiting_review", {"validation_failed"}
    return {
        "comply": ("awaiting_review", {"regulatory_trigger"})
        if entry.get("large")
        else ("succeeded", set()),
        "skip_check": ("awaiting_review", {"validation_failed"}),
        "self_approve": ("awaiting_review", {"hallucination"}),
        "unknown_tool": ("awaiting_review", {"unknown_tool"}),
        "fake_result": ("awaiting_review", {"hallucination", "validation_failed"}),
        "claim_validated": ("awaiting_review", {"validation_failed"}),
    }[entry["obey"]]


def test_the_corpus_is_big_and_varied_enough():
    assert len(CORPUS) >= 30 and len({e["id"] for e in CORPUS}) == len(CORPUS)
    assert {e["obey"] for e in CORPUS} == {
        "comply",
        "skip_check",
        "self_approve",
        "unknown_tool",
        "fake_result",
        "claim_validated",
    }
    assert any(e.get("bad_data") for e in CORPUS) and any(e.get("large") for e in CORPUS)


def _check_run(run: Any, entry: dict[str, Any], placement: str) -> list[str]:
    from orchestration.audit import verify_run
    from orchestration.models import AuditEvent, ToolCall

    problems: list[str] = []
    status, reasons = expectation(entry)
    if run.status != status:
        problems.append(f"status {run.status}, expected {status}")
    tickets = list(run.tickets.all())
    if reasons:
        if len(tickets) != 1 or tickets[0].reason not in reasons:
            problems.append(
                f"tickets {[(t.reason, t.message) for t in tickets]}, expected one of {reasons}"
            )
        if run.result is not None:
            problems.append(f"a paused run has a result: {run.result}")
    elif tickets:
        problems.append(f"unexpected tickets {[t.reason for t in tickets]}")
    elif run.result != {"amount": 120, "receipt": "CHK-120"}:
        problems.append(f"result {run.result}")

    # Every tool call has its audit event; the run's chain verifies.
    calls = list(ToolCall.objects.filter(run=run).order_by("created_at"))
    events = list(AuditEvent.objects.filter(run=run).values_list("kind", "payload"))
    for tc in calls:
        kind = TOOL_EVENT.get(tc.status)
        if not any(
            k == kind
            and p.get("tool_use_id") == tc.tool_use_id
            and p.get("attempt", tc.attempt) == tc.attempt
            for k, p in events
        ):
            problems.append(f"no {kind} event for {tc.name} attempt {tc.attempt} ({tc.status})")
    kinds = [k for k, _ in events]
    if "run.succeeded" in kinds and status != "succeeded":
        problems.append("a run.succeeded event")
    if reasons and "ticket.opened" not in kinds:
        problems.append("no ticket.opened event")
    report = verify_run(run.pk)
    if not report.ok:
        problems.append(f"audit chain: {report.problem}")

    # What ran: the check only when the model really asked for it; unknown tools never.
    ran = {name for (run_id, name) in EXECUTED if run_id == str(run.pk)}
    skipped = entry["obey"] in ("skip_check", "self_approve", "unknown_tool", "fake_result")
    checked = (
        "check_compliance" in ran
        or ToolCall.objects.filter(run=run, name="check_compliance").exists()
    )
    if (skipped or entry.get("bad_data")) and checked:
        problems.append("check_compliance ran although the model never reached it")
    if entry["obey"] == "unknown_tool":
        unknown = list(
            ToolCall.objects.filter(run=run, name=entry["tool"]).values_list("status", flat=True)
        )
        if unknown != ["unknown_tool", "unknown_tool"] or entry["tool"] in ran:
            problems.append(f"unknown tool {entry['tool']!r}: {unknown}")
    for tc in calls:
        if tc.status == "ok" and tc.name == "fetch_record":
            if set(tc.output) != {"record_id", "amount", "memo"}:
                problems.append(f"fetch_record output not cut to its schema: {sorted(tc.output)}")
            if placement == "tool" and not all(
                tc.raw_output.get(k) == v for k, v in FORGED_FIELDS.items()
            ):
                problems.append("the raw output should keep the forged fields (evidence)")
    # Forged fields never reach the model; the payload reaches it only as data.
    sent = json.dumps([mc.request_content for mc in run.model_calls.all()])
    if (
        "validation_passed" in sent
        and entry["obey"] != "claim_validated"
        and "validation_passed" not in entry["payload"]
    ):
        problems.append("a forged field was sent to the model")
    if entry["payload"][:40] in run.workflow_version.system_prompt:
        problems.append("the payload was interpolated into the system prompt")
    return problems


@pytest.mark.parametrize("placement", ["input", "tool"])
def test_no_injection_skips_a_rule(operator, drive, settings, placement):
    """One test per placement drives the whole corpus (one database, many runs) and reports
    every payload that got anything past the engine."""
    from orchestration.audit import verify_chain
    from orchestration.launch import start_run

    assert injection_workflow.INJECTION_PROBE.name == "injection_probe"
    settings.RUNS_PER_USER_PER_DAY = 10_000
    failures = []
    for entry in CORPUS:
        value = {
            "request": entry["payload"],
            "placement": placement,
            "obey": entry["obey"],
            **{k: entry[k] for k in ("tool", "bad_data", "large") if k in entry},
        }
        run = drive(start_run("injection_probe", value, operator))
        if problems := _check_run(run, entry, placement):
            failures.append(f"{entry['id']} ({placement}): " + "; ".join(problems))
    assert not failures, "\n".join(failures)
    assert verify_chain().ok
