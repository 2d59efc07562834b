"""Side effects guarded in code: every corpus entry with a ``workflow`` plants a hostile payload
in a demo workflow's data (a payee, a transaction's account, the question) and plays a model
that obeys it (side_effect_attacks.py), aimed at one precondition.

Each must end the same way: the guarded call is refused before its handler runs, the reason
is recorded (a rejected ToolCall, a ``tool.refused`` event naming the precondition) and sent
back to the model, the run escalates (after the tool's attempts, or at once for a sign-off),
and the side effect did not happen.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestration.workflows import registry
from tests.attack.side_effect_attacks import attack_policy

CORPUS = [
    e
    for e in json.loads((Path(__file__).parent / "injection_corpus.json").read_text())
    if "workflow" in e
]
DEMO = ("payment_approval", "financial_reporting", "customer_router")


def _plant(entry: dict[str, Any]) -> None:
    from warehouse.models import Payment, Transaction

    if entry["workflow"] == "payment_approval":
        if setup := (entry.get("setup") or {}).get("payment"):
            Payment.objects.create(
                payee=entry["payload"], **{**setup, "amount": Decimal(setup["amount"])}
            )
        else:
            Payment.objects.filter(payment_id=entry["input"]["payment_id"]).update(
                payee=entry["payload"]
            )
    elif entry["workflow"] == "financial_reporting":
        first = (
            Transaction.objects.filter(booked_on=entry["input"]["date"]).order_by("txn_id").first()
        )
        Transaction.objects.filter(pk=first.pk).update(account=entry["payload"])


def _effects_of(entry: dict[str, Any], run: Any) -> list[str]:
    """What the refused side effect would have left behind (empty when nothing happened)."""
    from warehouse.models import AuditLogEntry, Payment, PaymentDecision, PublishedReport

    found = []
    if approved := list(
        Payment.objects.filter(decision="approve").values_list("payment_id", flat=True)
    ):
        found.append(f"payments approved: {approved}")
    if PaymentDecision.objects.filter(validator="final", decision="approve").exists():
        found.append("a final approve decision row")
    if PublishedReport.objects.exists():
        found.append(f"{PublishedReport.objects.count()} report(s) published")
    tool = entry["refused_tool"]
    if (
        tool == "standard_validator"
        and PaymentDecision.objects.filter(validator="standard").exists()
    ):
        found.append("the standard validator wrote its verdict")
    if tool == "audit_log" and AuditLogEntry.objects.exists():
        found.append("an audit-log entry was written")
    refused_inputs = [tc.input for tc in run.tool_calls.filter(name=tool, status="rejected")]
    if run.tool_calls.filter(name=tool, status="ok", input__in=refused_inputs).exists():
        found.append(f"{tool} ran with an input it was refused for")
    return found


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(entry: dict[str, Any]) -> None:
        workflow = registry.get(entry["workflow"])
        policy = attack_policy(entry["workflow"], entry["input"], entry["attack"])
        monkeypatch.setitem(
            registry._REGISTRY, entry["workflow"], dataclasses.replace(workflow, policy=policy)
        )

    return install


@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_a_hostile_payload_cannot_get_a_side_effect_past_its_precondition(
    operator, drive, hostile, entry
):
    from orchestration.audit import verify_run
    from orchestration.launch import start_run

    _plant(entry)
    hostile(entry)
    run = drive(start_run(entry["workflow"], entry["input"], operator))

    assert _effects_of(entry, run) == []
    assert run.status == "awaiting_review" and run.result is None
    ticket = run.tickets.get()
    assert ticket.reason == entry["ticket_reason"], ticket.message

    refused = list(
        run.tool_calls.filter(name=entry["refused_tool"], status="rejected").order_by("created_at")
    )
    assert refused and all(f"({entry['precondition']})" in tc.error for tc in refused), [
        tc.error for tc in refused
    ]
    events = [e.payload for e in run.events.filter(kind="tool.refused")]
    assert [e["precondition"] for e in events if e["name"] == entry["refused_tool"]] == [
        entry["precondition"]
    ] * len(refused)
    assert ticket.failing_tool_call_id == refused[-1].pk
    if (
        entry["ticket_reason"] == "regulatory_trigger"
    ):  # a sign-off: at once, with the proposed call
        assert len(refused) == 1
        assert ticket.context["details"]["proposed_call"] == {
            "tool": entry["refused_tool"],
            "input": refused[0].input,
        }
    else:  # bounded: the tool's attempts, each answered with the reason
        assert len(refused) == registry.get(entry["workflow"]).constraints.max_attempts_per_tool
        assert entry["precondition"] in ticket.message
        answered = [
            b
            for mc in run.model_calls.all()
            for b in mc.request_content
            if b.get("type") == "tool_result" and b.get("tool_use_id") == refused[0].tool_use_id
        ]
        assert (
            answered
            and answered[0]["is_error"] is True
            and answered[0]["content"] == refused[0].error
        )
    assert verify_run(run.pk).ok


def test_every_precondition_of_the_demo_workflows_is_attacked_in_the_corpus():
    declared = {
        (w.name, p.name)
        for w in registry.all_workflows()
        if w.name in DEMO
        for t in w.tools
        for p in t.preconditions
    }
    declared |= {
        (w.name, "x-from-tool")
        for w in registry.all_workflows()
        if w.name in DEMO
        for t in w.tools
        if "x-from-tool" in json.dumps(t.input_schema)
    }
    aimed = {(e["workflow"], e["precondition"]) for e in CORPUS}
    assert declared - aimed == set()
    assert {e["workflow"] for e in CORPUS} == set(DEMO)


def test_every_side_effect_tool_of_the_demo_workflows_is_declared_and_guarded():
    side_effects = {
        (w.name, t.name)
        for w in registry.all_workflows()
        if w.name in DEMO
        for t in w.tools
        if t.side_effect
    }
    assert side_effects == {
        ("payment_approval", "high_value_validator"),
        ("payment_approval", "standard_validator"),
        ("payment_approval", "record_decision"),
        ("payment_approval", "audit_log"),
        ("financial_reporting", "publish_report"),
        ("financial_reporting", "audit_log"),
    }
    assert all(registry.get(w).tool(t).preconditions for w, t in side_effects)
