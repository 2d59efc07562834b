"""The seed's branching payment-approval workflow.

Over $10,000 the payment goes through high_value_validator, otherwise standard_validator.
A validator answering "escalate" pauses the run for manual review (a reviewer's note tells
the model the decision, or the reviewer corrects the verdict); record_decision and
audit_log always run.

Enforced in code, from the recorded tool outputs and never from the model's words
(preconditions, see docs/workflows.md): every payment id a tool acts on was returned by
fetch_payment; the validator is the one the *fetched* amount requires; record_decision
needs that validator's verdict for the same payment, may not approve what it rejected, and
approving a payment over the sign-off limit (or one the validator sent to manual review)
waits for a reviewer's sign-off of that very call before the decision is written.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings

from demo.playbook import answer, call, result
from orchestration.workflows.declaration import (
    Constraints,
    EscalationRule,
    Example,
    Expectation,
    Precondition,
    Record,
    Tool,
    ToolContext,
    TurnRoles,
    Workflow,
)
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Turn
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
# A payment id a tool acts on must be one fetch_payment returned (checked by the engine).
FETCHED_ID = {"type": "string", "x-from-tool": "fetch_payment.payment_id"}
VALIDATOR_INPUT = {
    "type": "object",
    "properties": {"payment_id": FETCHED_ID, "amount": {"type": "number"}, "payee": {"type": "string"}},
    "required": ["payment_id", "amount", "payee"],
}


def fetch_payment(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    p = Payment.objects.get(payment_id=args["payment_id"])
    return {"payment_id": p.payment_id, "amount": float(p.amount), "payee": p.payee,
            "payer_account": p.payer_account, "payee_on_watchlist": p.payee_on_watchlist}


# --- preconditions: read the recorded state (ctx.record), never the model's claims ------


def fetched(record: Record, payment_id: str) -> dict[str, Any] | None:
    """The payment as fetch_payment last returned it (None if it never did)."""
    found = [c.output for c in record.of("fetch_payment") if c.output.get("payment_id") == payment_id]
    return found[-1] if found else None


def required_validator(payment: dict[str, Any]) -> str:
    return "high_value_validator" if Decimal(str(payment["amount"])) > HIGH_VALUE else "standard_validator"


def verdict(record: Record, payment_id: str) -> dict[str, Any] | None:
    """The latest accepted verdict on this payment from the validator its fetched amount requires."""
    payment = fetched(record, payment_id)
    if payment is None:
        return None
    found = [c.output for c in record.of(required_validator(payment)) if c.input.get("payment_id") == payment_id]
    return found[-1] if found else None


def _validator_matches_fetched(name: str) -> Any:
    def check(args: dict[str, Any], ctx: ToolContext) -> str | None:
        payment = fetched(ctx.record, args["payment_id"])
        if payment is None:
            return f"fetch_payment has not returned {args['payment_id']}: fetch it first"
        if (needed := required_validator(payment)) != name:
            return f"{payment['payment_id']} is for {payment['amount']:,.2f} (fetched): use {needed}"
        if args["amount"] != payment["amount"] or args["payee"] != payment["payee"]:
            return (f"amount {args['amount']!r} / payee {args['payee']!r} are not the fetched "
                    f"{payment['amount']!r} / {payment['payee']!r}")
        return None

    return check


def _validated(args: dict[str, Any], ctx: ToolContext) -> str | None:
    payment = fetched(ctx.record, args["payment_id"])
    if payment is None:
        return f"fetch_payment has not returned {args['payment_id']}"
    if verdict(ctx.record, args["payment_id"]) is None:
        needed = required_validator(payment)
        return f"no accepted {needed} verdict for {args['payment_id']}: call {needed} for this payment first"
    return None


def _follows_verdict(args: dict[str, Any], ctx: ToolContext) -> str | None:
    found = verdict(ctx.record, args["payment_id"]) or {}
    if found.get("decision") == "reject" and args["decision"] != "reject":
        return f"the validator rejected {args['payment_id']}: it may only be recorded as rejected"
    return None


def _signed_off_if_needed(args: dict[str, Any], ctx: ToolContext) -> str | None:
    """Approvals over the sign-off limit, or of a payment the validator sent to manual review,
    wait for a reviewer; the amount is the fetched one, whatever the model says."""
    if args["decision"] != "approve":
        return None
    payment = fetched(ctx.record, args["payment_id"]) or {}
    limit = settings.PAYMENT_SIGNOFF_AMOUNT
    if Decimal(str(payment.get("amount", 0))) > limit:
        return (f"approving {args['payment_id']} for {payment['amount']:,.2f} to {payment['payee']} "
                f"needs a reviewer's sign-off (over ${limit:,})")
    if (verdict(ctx.record, args["payment_id"]) or {}).get("decision") == "escalate":
        return f"the validator sent {args['payment_id']} to manual review: approving it needs a reviewer's sign-off"
    return None


def _logs_the_recorded_decision(args: dict[str, Any], ctx: ToolContext) -> str | None:
    recorded = ctx.record.latest("record_decision")
    if recorded is None:
        return "record_decision has not run: log the decision once it is recorded"
    if args["status"] != recorded["decision"]:
        return f"the recorded decision is {recorded['decision']!r}, not {args['status']!r}"
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
    p = Payment.objects.get(payment_id=args["payment_id"])
    Payment.objects.filter(pk=p.pk).update(decision=args["decision"])
    PaymentDecision.objects.get_or_create(
        idempotency_key=ctx.idempotency_key,
        defaults={"payment_id": p.payment_id, "validator": "final", "decision": args["decision"],
                  "reasons": [args.get("note", "")]},
    )
    # What was decided, from the payment row: the answer's amount must come from here.
    return {"recorded": True, "decision": args["decision"], "payment_id": p.payment_id, "amount": float(p.amount)}


def audit_log(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    entry, _ = AuditLogEntry.objects.get_or_create(
        idempotency_key=ctx.idempotency_key, defaults={"step_name": args["step_name"], "payload": args})
    return {"logged": True, "entry_id": f"AL-{entry.pk}"}


def _verdict_has_reasons(out: dict[str, Any], ctx: ToolContext) -> list[str]:
    return [] if out["reasons"] else ["a verdict must give its reasons"]


TOOLS = (
    Tool("fetch_payment", "Load the payment to decide.",
         {"type": "object", "properties": {"payment_id": {"type": "string", "pattern": "^PAY-[0-9]+$"}},
          "required": ["payment_id"]},
         PAYMENT, fetch_payment, invoke_when="first"),
    Tool("high_value_validator", "Enhanced checks for payments over $10,000.", VALIDATOR_INPUT, VERDICT,
         lambda a, c: _validate(a, c, True), invoke_when="amount > 10,000",
         validators=(_verdict_has_reasons,), side_effect=True,
         preconditions=(Precondition("validator_for_fetched_amount", _validator_matches_fetched("high_value_validator")),)),
    Tool("standard_validator", "Standard checks for payments up to $10,000.", VALIDATOR_INPUT, VERDICT,
         lambda a, c: _validate(a, c, False), invoke_when="amount <= 10,000",
         validators=(_verdict_has_reasons,), side_effect=True,
         preconditions=(Precondition("validator_for_fetched_amount", _validator_matches_fetched("standard_validator")),)),
    Tool("record_decision", "Record the final decision on the payment.",
         {"type": "object", "properties": {"payment_id": FETCHED_ID,
                                           "decision": {"enum": ["approve", "reject"]}, "note": {"type": "string"}},
          "required": ["payment_id", "decision"]},
         {"type": "object", "properties": {"recorded": {"type": "boolean"}, "decision": {"enum": ["approve", "reject"]},
                                           "payment_id": {"type": "string"}, "amount": {"type": "number"}},
          "required": ["recorded", "decision", "payment_id", "amount"]},
         record_decision, invoke_when="after the validator (or a reviewer's decision)", side_effect=True,
         preconditions=(
             Precondition("validator_passed_for_this_payment", _validated),
             Precondition("decision_follows_verdict", _follows_verdict),
             Precondition("sign_off_before_approving", _signed_off_if_needed, sign_off=True),
         )),
    Tool("audit_log", "Record the decision in the audit system.",
         {"type": "object", "properties": {"step_name": {"type": "string"},
                                           "status": {"type": "string"},
                                           "details": {"type": "object"}}, "required": ["step_name", "status"]},
         {"type": "object", "properties": {"logged": {"type": "boolean", "const": True}, "entry_id": {"type": "string"}},
          "required": ["logged", "entry_id"]},
         audit_log, invoke_when="always, last", side_effect=True,
         preconditions=(Precondition("logs_the_recorded_decision", _logs_the_recorded_decision),)),
)


def policy(conv: Conversation) -> Turn:
    pid = conv.input["payment_id"]
    payment = result(conv, "fetch_payment")
    if payment is None:
        return call("fetch_payment", {"payment_id": pid}, f"Loading payment {pid}.")
    high = payment["amount"] > float(HIGH_VALUE)
    validator = "high_value_validator" if high else "standard_validator"
    verdict_ = result(conv, validator)
    if verdict_ is None:
        return call(validator, {"payment_id": pid, "amount": payment["amount"], "payee": payment["payee"]},
                    f"Amount {payment['amount']:,.2f}: routing to {validator}.")
    decision = verdict_["decision"]
    note = " ".join(conv.notes).lower()
    if decision == "escalate":  # the engine paused for manual review; the reviewer's note decides
        decision = "reject" if "reject" in note else "approve"
    elif "reject" in note:  # a reviewer declined to sign off the approval
        decision = "reject"
    recorded = result(conv, "record_decision")
    if recorded is None:
        return call("record_decision", {"payment_id": pid, "decision": decision, "note": note[:200]},
                    f"Recording the decision: {decision}.")
    logged = result(conv, "audit_log")
    if logged is None:
        return call("audit_log", {"step_name": "payment_approval", "status": recorded["decision"],
                                  "details": {"payment_id": pid, "validator": validator, "reasons": verdict_["reasons"]}})
    return answer({"payment_id": recorded["payment_id"], "decision": recorded["decision"], "validator": validator,
                   "amount": recorded["amount"], "audit_entry_id": logged["entry_id"]})


def _sign_off(run_input: dict[str, Any], output: dict[str, Any], record: Record) -> str | None:
    """A second line behind the sign-off precondition: an approval over the limit that no
    reviewer signed off (amounts from record_decision's recorded output, not the answer)."""
    limit = settings.PAYMENT_SIGNOFF_AMOUNT
    for decided in record.of("record_decision"):
        out = decided.output
        if out.get("decision") == "approve" and Decimal(str(out.get("amount", 0))) > limit \
                and decided.tool_use_id not in record.signed_off:
            return f"approving a payment over ${limit:,} needs a reviewer's sign-off"
    return None


WORKFLOW = register(Workflow(
    name="payment_approval",
    title="Payment approval",
    version="4",
    domain="payment approvals at a bank",
    role="Decide whether a payment may be released, through the validator its amount requires.",
    description="Branching: high-value or standard validator; 'escalate' goes to manual review.",
    input_schema={"type": "object", "properties": {
        "payment_id": {"type": "string", "pattern": "^PAY-[0-9]+$", "description": "e.g. PAY-1001"}},
        "required": ["payment_id"], "additionalProperties": False},
    output_schema={"type": "object", "properties": {
        "payment_id": {"type": "string", "x-from-tool": "record_decision.payment_id"},
        "decision": {"enum": ["approve", "reject"], "x-from-tool": "record_decision.decision"},
        "validator": {"enum": ["high_value_validator", "standard_validator"]},
        "amount": {"type": "number", "x-from-tool": "record_decision.amount"},
        "audit_entry_id": {"type": "string", "x-from-tool": "audit_log.entry_id"}},
        "required": ["payment_id", "decision", "validator", "amount", "audit_entry_id"], "additionalProperties": False},
    tools=TOOLS,
    rules=(
        "Call fetch_payment first.",
        "If amount > 10,000 call high_value_validator; otherwise call standard_validator.",
        "If the validator returns 'escalate', stop for manual review; a reviewer's note gives the decision.",
        "Call record_decision, then always audit_log.",
        "Approving a payment over the sign-off limit, or one sent to manual review, waits for a reviewer's sign-off.",
    ),
    constraints=Constraints(max_steps=8, max_cost_usd=Decimal("1.00"), run_timeout_seconds=600, max_output_tokens=1024),
    examples=(
        Example("Routine", {"payment_id": "PAY-1001"}, (
            "fetch_payment -> 2,500", "standard_validator -> approve", "record_decision(approve)", "audit_log")),
        Example("High value to a watchlisted payee", {"payment_id": "PAY-1003"}, (
            "fetch_payment -> 15,000", "high_value_validator -> escalate", "(manual review)",
            "record_decision(reviewer's decision; an approval waits for sign-off)", "audit_log")),
    ),
    escalation_rules=tuple(
        EscalationRule(name, "regulatory_trigger", "The validator asked for manual review.",
                       lambda out, ctx: out["decision"] == "escalate")
        for name in ("high_value_validator", "standard_validator")
    ),
    required_tools=("record_decision", "audit_log"),
    regulatory_trigger=_sign_off,
    expectation=Expectation(turns=5, output_tokens_per_turn=100, tool_result_tokens=150, final_output_tokens=100,
                            roles=("classifier", "classifier", "orchestrator", "orchestrator", "formatter")),
    input_example={"payment_id": "PAY-1001"},
    policy=policy,
    # The seed's routing: Haiku loads the payment and classifies it (routine or high value: which
    # validator), Opus decides and recovers after an error or a reviewer's resume, Sonnet
    # formats the answer once the decision is logged.
    turn_roles=TurnRoles(first="classifier", after={"fetch_payment": "classifier", "audit_log": "formatter"}),
))
