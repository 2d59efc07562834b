"""The seed's branching payment-approval workflow.

Over $10,000 the payment goes through high_value_validator, otherwise standard_validator:
the branch is enforced by guards, not only asked for. A validator answering "escalate"
pauses the run for manual review (a reviewer's note tells the model the decision);
record_decision and audit_log always run; payments over the sign-off limit need a
reviewer's approval of the result before the run succeeds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings

from orchestration.demo.playbook import answer, call, result
from orchestration.simulator.policy import Conversation, Turn
from orchestration.workflows.declaration import (
    Constraints,
    EscalationRule,
    Example,
    Expectation,
    Tool,
    ToolContext,
    Workflow,
)
from orchestration.workflows.registry import register
from warehouse.models import AuditLogEntry, Payment, PaymentDecision

HIGH_VALUE = Decimal("10000")

PAYMENT = {
    "type": "object",
    "properties": {
        "payment_id": {"type": "string"}, "amount": {"type": "number", "exclusiveMinimum": 0},
        "payee": {"type": "string"}, "payer_account": {"type": "string"},
        "payee_on_watchlist": {"type": "boolean"},
    },
    "required": ["payment_id", "amount", "payee", "payer_account", "payee_on_watchlist"],
}
VERDICT = {
    "type": "object",
    "properties": {
        "decision": {"enum": ["approve", "reject", "escalate"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["decision", "reasons"],
}
VALIDATOR_INPUT = {
    "type": "object",
    "properties": {"payment_id": {"type": "string"}, "amount": {"type": "number"}, "payee": {"type": "string"}},
    "required": ["payment_id", "amount", "payee"],
}


def fetch_payment(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    p = Payment.objects.get(payment_id=args["payment_id"])
    return {"payment_id": p.payment_id, "amount": float(p.amount), "payee": p.payee,
            "payer_account": p.payer_account, "payee_on_watchlist": p.payee_on_watchlist}


def _fetched(ctx: ToolContext) -> dict[str, Any] | None:
    return ctx.outputs.get("fetch_payment")


def _needs_high_value(ctx: ToolContext) -> str | None:
    p = _fetched(ctx)
    if p is None:
        return "fetch_payment must run first"
    if Decimal(str(p["amount"])) <= HIGH_VALUE:
        return f"amount {p['amount']} is not over {HIGH_VALUE}: use standard_validator"
    return None


def _needs_standard(ctx: ToolContext) -> str | None:
    p = _fetched(ctx)
    if p is None:
        return "fetch_payment must run first"
    if Decimal(str(p["amount"])) > HIGH_VALUE:
        return f"amount {p['amount']} is over {HIGH_VALUE}: use high_value_validator"
    return None


def _validate(args: dict[str, Any], ctx: ToolContext, high_value: bool) -> dict[str, Any]:
    p = Payment.objects.get(payment_id=args["payment_id"])
    reasons = []
    decision = "approve"
    if p.payee_on_watchlist:
        decision, reasons = "escalate", [f"payee {p.payee} is on the watchlist"]
    elif high_value and p.amount > Decimal("1000000"):
        decision, reasons = "reject", ["amount exceeds the single-payment limit"]
    else:
        reasons = ["within limits", "payee screened"]
    PaymentDecision.objects.get_or_create(
        idempotency_key=ctx.idempotency_key,
        defaults={"payment_id": p.payment_id, "validator": "high_value" if high_value else "standard",
                  "decision": decision, "reasons": reasons},
    )
    return {"decision": decision, "reasons": reasons}


def record_decision(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    Payment.objects.filter(payment_id=args["payment_id"]).update(decision=args["decision"])
    PaymentDecision.objects.get_or_create(
        idempotency_key=ctx.idempotency_key,
        defaults={"payment_id": args["payment_id"], "validator": "final", "decision": args["decision"],
                  "reasons": [args.get("note", "")]},
    )
    return {"recorded": True, "decision": args["decision"]}


def audit_log(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    entry, _ = AuditLogEntry.objects.get_or_create(
        idempotency_key=ctx.idempotency_key, defaults={"step_name": args["step_name"], "payload": args})
    return {"logged": True, "entry_id": f"AL-{entry.pk}"}


def _verdict_matches_branch(out: dict[str, Any], ctx: ToolContext) -> list[str]:
    return [] if out["reasons"] else ["a verdict must give its reasons"]


TOOLS = (
    Tool("fetch_payment", "Load the payment to decide.",
         {"type": "object", "properties": {"payment_id": {"type": "string", "pattern": "^PAY-[0-9]+$"}},
          "required": ["payment_id"]},
         PAYMENT, fetch_payment, invoke_when="first"),
    Tool("high_value_validator", "Enhanced checks for payments over $10,000.", VALIDATOR_INPUT, VERDICT,
         lambda a, c: _validate(a, c, True), invoke_when="amount > 10,000", guards=(_needs_high_value,),
         validators=(_verdict_matches_branch,)),
    Tool("standard_validator", "Standard checks for payments up to $10,000.", VALIDATOR_INPUT, VERDICT,
         lambda a, c: _validate(a, c, False), invoke_when="amount <= 10,000", guards=(_needs_standard,),
         validators=(_verdict_matches_branch,)),
    Tool("record_decision", "Record the final decision on the payment.",
         {"type": "object", "properties": {"payment_id": {"type": "string"},
                                           "decision": {"enum": ["approve", "reject"]}, "note": {"type": "string"}},
          "required": ["payment_id", "decision"]},
         {"type": "object", "properties": {"recorded": {"type": "boolean"}, "decision": {"enum": ["approve", "reject"]}},
          "required": ["recorded", "decision"]},
         record_decision, invoke_when="after the validator (or a reviewer's decision)"),
    Tool("audit_log", "Record the decision in the audit system.",
         {"type": "object", "properties": {"step_name": {"type": "string"}, "status": {"type": "string"},
                                           "details": {"type": "object"}}, "required": ["step_name", "status"]},
         {"type": "object", "properties": {"logged": {"type": "boolean", "const": True}, "entry_id": {"type": "string"}},
          "required": ["logged", "entry_id"]},
         audit_log, invoke_when="always, last"),
)


def policy(conv: Conversation) -> Turn:
    pid = conv.input["payment_id"]
    payment = result(conv, "fetch_payment")
    if payment is None:
        return call("fetch_payment", {"payment_id": pid}, f"Loading payment {pid}.")
    high = payment["amount"] > float(HIGH_VALUE)
    validator = "high_value_validator" if high else "standard_validator"
    verdict = result(conv, validator)
    if verdict is None:
        return call(validator, {"payment_id": pid, "amount": payment["amount"], "payee": payment["payee"]},
                    f"Amount {payment['amount']:,.2f}: routing to {validator}.")
    decision = verdict["decision"]
    note = " ".join(conv.notes).lower()
    if decision == "escalate":  # the engine paused for manual review; the reviewer's note decides
        decision = "reject" if "reject" in note else "approve"
    recorded = result(conv, "record_decision")
    if recorded is None:
        return call("record_decision", {"payment_id": pid, "decision": decision, "note": note[:200]},
                    f"Recording the decision: {decision}.")
    logged = result(conv, "audit_log")
    if logged is None:
        return call("audit_log", {"step_name": "payment_approval", "status": recorded["decision"],
                                  "details": {"payment_id": pid, "validator": validator, "reasons": verdict["reasons"]}})
    return answer({"payment_id": pid, "decision": recorded["decision"], "validator": validator,
                   "amount": payment["amount"], "audit_entry_id": logged["entry_id"]})


def _sign_off(run_input: dict[str, Any], output: dict[str, Any]) -> str | None:
    limit = settings.PAYMENT_SIGNOFF_AMOUNT
    if output.get("decision") == "approve" and Decimal(str(output.get("amount", 0))) > limit:
        return f"approving a payment over ${limit:,} needs a reviewer's sign-off"
    return None


WORKFLOW = register(Workflow(
    name="payment_approval",
    title="Payment approval",
    version="2",
    domain="payment approvals at a bank",
    role="Decide whether a payment may be released, through the validator its amount requires.",
    description="Branching: high-value or standard validator; 'escalate' goes to manual review.",
    input_schema={"type": "object", "properties": {
        "payment_id": {"type": "string", "pattern": "^PAY-[0-9]+$", "description": "e.g. PAY-1001"}},
        "required": ["payment_id"], "additionalProperties": False},
    output_schema={"type": "object", "properties": {
        "payment_id": {"type": "string"},
        "decision": {"enum": ["approve", "reject"], "x-from-tool": "record_decision.decision"},
        "validator": {"enum": ["high_value_validator", "standard_validator"]},
        "amount": {"type": "number"},
        "audit_entry_id": {"type": "string", "x-from-tool": "audit_log.entry_id"}},
        "required": ["payment_id", "decision", "validator", "amount", "audit_entry_id"], "additionalProperties": False},
    tools=TOOLS,
    rules=(
        "Call fetch_payment first.",
        "If amount > 10,000 call high_value_validator; otherwise call standard_validator.",
        "If the validator returns 'escalate', stop for manual review; a reviewer's note gives the decision.",
        "Call record_decision, then always audit_log.",
    ),
    constraints=Constraints(max_steps=8, max_cost_usd=Decimal("1.00"), run_timeout_seconds=600, max_output_tokens=1024),
    examples=(
        Example("Routine", {"payment_id": "PAY-1001"}, (
            "fetch_payment -> 2,500", "standard_validator -> approve", "record_decision(approve)", "audit_log")),
        Example("High value to a watchlisted payee", {"payment_id": "PAY-1003"}, (
            "fetch_payment -> 15,000", "high_value_validator -> escalate", "(manual review)",
            "record_decision(reviewer's decision)", "audit_log")),
    ),
    escalation_rules=tuple(
        EscalationRule(name, "regulatory_trigger", "The validator asked for manual review.",
                       lambda out, ctx: out["decision"] == "escalate")
        for name in ("high_value_validator", "standard_validator")
    ),
    required_tools=("record_decision", "audit_log"),
    regulatory_trigger=_sign_off,
    expectation=Expectation(turns=5, output_tokens_per_turn=100, tool_result_tokens=150, final_output_tokens=100),
    input_example={"payment_id": "PAY-1001"},
    policy=policy,
))
