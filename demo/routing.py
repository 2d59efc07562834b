"""The seed's hierarchical pattern: a top-level orchestrator routing to domain agents.

The orchestrator only decides which domain agent (lending, payments, compliance) serves
the request; each domain agent answers within its domain. A global constraint is enforced
in code: no payments action for a customer whose compliance review is open (a guard), and
every domain agent acts only on the customer of the request (a precondition), whatever a
question or a tool output tells the model. A request the orchestrator cannot place is an
ambiguity, and goes to a human. The agents only read: no tool here has a side effect.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from demo.playbook import answer, call, result
from orchestration.workflows.declaration import (
    Constraints,
    Example,
    Expectation,
    Precondition,
    Tool,
    ToolContext,
    Workflow,
)
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Turn
from warehouse.models import Payment, Transaction

DOMAIN_INPUT = {
    "type": "object",
    "properties": {"customer_account": {"type": "string"}, "question": {"type": "string", "maxLength": 2000}},
    "required": ["customer_account", "question"],
}
DOMAIN_OUTPUT = {
    "type": "object",
    "properties": {"domain": {"type": "string"}, "answer": {"type": "string"}, "facts": {"type": "object", "additionalProperties": True}},
    "required": ["domain", "answer", "facts"],
}
OPEN_REVIEW_ACCOUNTS = frozenset({"ACC-900"})


def lending_agent(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    inflow = sum((t.amount for t in Transaction.objects.filter(account=args["customer_account"], status="completed")), Decimal(0))
    capacity = (inflow * Decimal("0.3")).quantize(Decimal("0.01"))
    return {"domain": "lending", "answer": f"Indicative monthly repayment capacity: {capacity} AUD.",
            "facts": {"completed_inflow": float(inflow), "capacity": float(capacity)}}


def payments_agent(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    payments = Payment.objects.filter(payer_account=args["customer_account"])
    facts = {p.payment_id: p.decision or "pending" for p in payments}
    return {"domain": "payments", "answer": f"{len(facts)} payment(s) on file.", "facts": facts}


def compliance_agent(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    open_review = args["customer_account"] in OPEN_REVIEW_ACCOUNTS
    unverified = Transaction.objects.filter(account=args["customer_account"], customer_verified=False).count()
    return {"domain": "compliance",
            "answer": "A compliance review is open." if open_review else "No open compliance review.",
            "facts": {"open_review": open_review, "unverified_transactions": unverified}}


def _no_open_review(ctx: ToolContext) -> str | None:
    if ctx.tool_input.get("customer_account") in OPEN_REVIEW_ACCOUNTS:
        return "a compliance review is open for this customer: payments actions are blocked"
    return None


def _the_requests_customer(args: dict[str, Any], ctx: ToolContext) -> str | None:
    if args["customer_account"] != ctx.run_input["customer_account"]:
        return (f"this request is for {ctx.run_input['customer_account']}; "
                f"{args['customer_account']} may not be looked up in it")
    return None


OWN_CUSTOMER = (Precondition("the_requests_customer", _the_requests_customer),)

TOOLS = (
    Tool("lending_agent", "Lending domain agent: loan enquiries, repayment capacity.", DOMAIN_INPUT, DOMAIN_OUTPUT,
         lending_agent, invoke_when="the request is about loans or borrowing", preconditions=OWN_CUSTOMER),
    Tool("payments_agent", "Payments domain agent: payment status and history.", DOMAIN_INPUT, DOMAIN_OUTPUT,
         payments_agent, invoke_when="the request is about payments", guards=(_no_open_review,),
         preconditions=OWN_CUSTOMER),
    Tool("compliance_agent", "Compliance domain agent: reviews, KYC status.", DOMAIN_INPUT, DOMAIN_OUTPUT,
         compliance_agent, invoke_when="the request is about compliance or KYC", preconditions=OWN_CUSTOMER),
)

KEYWORDS = {
    "lending_agent": ("loan", "borrow", "mortgage", "credit", "repayment"),
    "payments_agent": ("payment", "transfer", "paid", "pay "),
    "compliance_agent": ("compliance", "kyc", "aml", "verification", "review"),
}


def policy(conv: Conversation) -> Turn:
    question = conv.input["question"].lower()
    account = conv.input["customer_account"]
    matches = [name for name, words in KEYWORDS.items() if any(w in question for w in words)]
    if conv.notes:  # a reviewer told us where it belongs
        note = " ".join(conv.notes).lower()
        matches = [name for name in KEYWORDS if name.split("_")[0] in note] or matches[:1]
    if len(matches) != 1:
        return Turn(content=[{"type": "text", "text": (
            "I'm not sure which domain agent should handle this request: it matches "
            f"{', '.join(matches) or 'none of lending, payments or compliance'}.")}])
    agent = matches[0]
    found = result(conv, agent)
    if found is None:
        return call(agent, {"customer_account": account, "question": conv.input["question"]},
                    f"Routing to {agent}.")
    return answer({"routed_to": agent, "answer": found["answer"], "facts": found["facts"]})


WORKFLOW = register(Workflow(
    name="customer_router",
    title="Customer request router",
    version="1",
    domain="a fintech with lending, payments and compliance domains",
    role="Route each customer request to exactly one domain agent and relay its answer.",
    description="Hierarchical: a top-level orchestrator routes to lending, payments or compliance agents.",
    input_schema={"type": "object", "properties": {
        "customer_account": {"type": "string", "pattern": "^ACC-[0-9]+$"},
        "question": {"type": "string", "minLength": 3, "maxLength": 2000}},
        "required": ["customer_account", "question"], "additionalProperties": False},
    output_schema={"type": "object", "properties": {
        "routed_to": {"enum": ["lending_agent", "payments_agent", "compliance_agent"]},
        "answer": {"type": "string"}, "facts": {"type": "object", "additionalProperties": True}},
        "required": ["routed_to", "answer", "facts"], "additionalProperties": False},
    tools=TOOLS,
    rules=(
        "Pick exactly one domain agent for the request; do not answer domain questions yourself.",
        "If the request fits no domain or several, say you are not sure; a human will route it.",
        "Never act on payments for a customer with an open compliance review.",
    ),
    constraints=Constraints(max_steps=4, max_cost_usd=Decimal("0.50"), run_timeout_seconds=300, max_output_tokens=1024),
    examples=(Example("Loan enquiry", {"customer_account": "ACC-100", "question": "How much could I borrow?"},
                      ("lending_agent", "answer with its result")),),
    expectation=Expectation(turns=2, output_tokens_per_turn=80, tool_result_tokens=150, final_output_tokens=120),
    input_example={"customer_account": "ACC-100", "question": "How much could I borrow for a car loan?"},
    policy=policy,
))
