"""Preconditions of tools with side effects: refused in code before the handler runs, the
reason sent back to the model (which may then do what is missing), bounded, recorded; sign-off
rules read the recorded tool outputs, not the model's words. The hostile-model corpus is in
tests/attack/test_side_effect_guards.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.test import override_settings

from demo import payment_approval
from demo.playbook import call
from orchestration.launch import start_run
from orchestration.models import Run
from orchestration.workflows import registry
from orchestration.workflows.declaration import Precondition, Record, RecordedCall, Tool
from orchestration.workflows.versions import snapshot
from simulator.policy import Conversation, Turn
from warehouse.models import PaymentDecision

S = Run.Status


def impatient(conv: Conversation) -> Turn:
    """Records the decision before validating, once; after the refusal it does it properly."""
    if conv.tool_results and not conv.called("record_decision"):
        return call(
            "record_decision", {"payment_id": conv.input["payment_id"], "decision": "approve"}
        )
    return payment_approval.policy(conv)


def test_a_refused_call_is_answered_with_the_reason_and_the_model_recovers(
    operator, drive, monkeypatch
):
    workflow = registry.get("payment_approval")
    monkeypatch.setitem(
        registry._REGISTRY, "payment_approval", dataclasses.replace(workflow, policy=impatient)
    )
    run = drive(start_run("payment_approval", {"payment_id": "PAY-1001"}, operator))

    assert run.status == S.SUCCEEDED and run.result["decision"] == "approve"
    refused = run.tool_calls.get(name="record_decision", status="rejected")
    assert refused.settled and refused.output is None
    assert refused.error.startswith(
        "Refused by the engine (validator_passed_for_this_payment): no accepted "
        "standard_validator verdict for PAY-1001"
    )
    event = run.events.get(kind="tool.refused")
    assert (
        event.payload["precondition"] == "validator_passed_for_this_payment"
        and event.payload["sign_off"] is False
    )
    answer = run.model_calls.get(turn=2).request_content[0]
    assert answer == {
        "type": "tool_result",
        "tool_use_id": refused.tool_use_id,
        "is_error": True,
        "content": refused.error,
    }
    # The decision was written once, after the validator.
    assert list(PaymentDecision.objects.order_by("pk").values_list("validator", "decision")) == [
        ("standard", "approve"),
        ("final", "approve"),
    ]


def test_a_sign_off_is_computed_from_the_recorded_amount_not_the_answer():
    approved = RecordedCall(
        "record_decision",
        "toolu_1",
        {"payment_id": "PAY-1005", "decision": "approve"},
        {"recorded": True, "decision": "approve", "payment_id": "PAY-1005", "amount": 300000.0},
    )
    says_one = {"payment_id": "PAY-1005", "decision": "approve", "amount": 1}
    with override_settings(PAYMENT_SIGNOFF_AMOUNT=250000):
        assert "sign-off" in payment_approval._sign_off({}, says_one, Record(calls=(approved,)))
        assert (
            payment_approval._sign_off(
                {}, says_one, Record(calls=(approved,), signed_off=frozenset({"toolu_1"}))
            )
            is None
        )


def test_the_sign_off_precondition_reads_the_fetched_amount(operator):
    fetched = RecordedCall(
        "fetch_payment",
        "t1",
        {"payment_id": "PAY-9"},
        {"payment_id": "PAY-9", "amount": 260000.0, "payee": "X"},
    )
    ctx: Any = dataclasses.make_dataclass("Ctx", ["record"])(Record(calls=(fetched,)))
    with override_settings(PAYMENT_SIGNOFF_AMOUNT=250000):
        assert "over $250,000" in payment_approval._signed_off_if_needed(
            {"payment_id": "PAY-9", "decision": "approve"}, ctx
        )
        assert (
            payment_approval._signed_off_if_needed(
                {"payment_id": "PAY-9", "decision": "reject"}, ctx
            )
            is None
        )


def test_a_tool_with_a_side_effect_must_declare_its_preconditions():
    schema = {"type": "object"}
    with pytest.raises(ValueError, match="has a side effect: declare its preconditions"):
        Tool("pay", "Pay.", schema, schema, lambda a, c: {}, side_effect=True)
    tool = Tool(
        "pay",
        "Pay.",
        {"type": "object", "properties": {"id": {"type": "string", "x-from-tool": "f.id"}}},
        schema,
        lambda a, c: {},
        side_effect=True,
        preconditions=(Precondition("never", lambda a, c: "no"),),
    )
    assert tool.definition()["input_schema"] == {
        "type": "object",
        "properties": {"id": {"type": "string"}},
    }


def test_provenance_annotations_never_reach_the_api(operator):
    version = snapshot(registry.get("payment_approval"))
    assert "x-from-tool" not in str(version.tools)
    assert "x-from-tool" in str(
        registry.get("payment_approval").tool("record_decision").input_schema
    )
