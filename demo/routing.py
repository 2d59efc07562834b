"""The seed's hierarchical pattern: a top-level router handing requests to domain sub-agents.

The router (on Haiku: it only classifies) decides which domain agent serves the request and
hands it over with the engine's handoff tool. Each domain agent (lending, payments,
compliance) is a workflow of its own, run as a child run of the router's: its own prompt,
tools, limits and model, its own tickets. The router waits for the child (parked, not
polling), gets its result as the handoff's tool result, and relays it.

Global constraints enforced in code, at both levels: no payments action for a customer
whose compliance review is open (a guard on the handoff and on the payments agent's tool),
and every agent acts only on the customer of the request (a precondition), whatever a
question or a tool output tells a model. A request the router cannot place is an ambiguity
and goes to a human. A lending request for a customer with no income on file pauses the
lending agent for a lending officer (its escalation rule): the router waits meanwhile. The
agents only read: no tool here has a side effect.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from demo.playbook import answer, call, result
from orchestration.workflows.declaration import (
    DEFAULT_MODELS,
    Constraints,
    EscalationRule,
    Example,
    Expectation,
    Precondition,
    SubAgent,
    Tool,
    ToolContext,
    TurnRoles,
    Workflow,
    handoff,
)
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Turn
from warehouse.models import Payment, Transaction

ACCOUNT = {"type": "string", "pattern": "^ACC-[0-9]+$"}
REQUEST_INPUT = {
    "type": "object",
    "properties": {
        "customer_account": ACCOUNT,
        "question": {"type": "string", "minLength": 3, "maxLength": 2000},
    },
    "required": ["customer_account", "question"],
    "additionalProperties": False,
}
ACCOUNT_INPUT = {
    "type": "object",
    "properties": {"customer_account": ACCOUNT},
    "required": ["customer_account"],
    "additionalProperties": False,
}
DOMAIN_OUTPUT = {
    "type": "object",
    "properties": {
        "domain": {"type": "string"},
        "answer": {"type": "string"},
        "facts": {"type": "object", "additionalProperties": True},
    },
    "required": ["domain", "answer", "facts"],
    "additionalProperties": False,
}
OPEN_REVIEW_ACCOUNTS = frozenset({"ACC-900"})
SONNET = {**DEFAULT_MODELS, "orchestrator": DEFAULT_MODELS["formatter"]}


# --- the domain agents' tools ----------------------------------------------------------------


def repayment_capacity(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    inflow = sum(
        (
            t.amount
            for t in Transaction.objects.filter(
                account=args["customer_account"], status="completed"
            )
        ),
        Decimal(0),
    )
    capacity = (inflow * Decimal("0.3")).quantize(Decimal("0.01"))
    return {
        "customer_account": args["customer_account"],
        "completed_inflow": float(inflow),
        "capacity": float(capacity),
    }


def payments_on_file(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    payments = Payment.objects.filter(payer_account=args["customer_account"])
    return {
        "customer_account": args["customer_account"],
        "payments": {p.payment_id: p.decision or "pending" for p in payments},
    }


def compliance_status(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    unverified = Transaction.objects.filter(
        account=args["customer_account"], customer_verified=False
    ).count()
    return {
        "customer_account": args["customer_account"],
        "open_review": args["customer_account"] in OPEN_REVIEW_ACCOUNTS,
        "unverified_transactions": unverified,
    }


def _the_requests_customer(args: dict[str, Any], ctx: ToolContext) -> str | None:
    # The handoff carries the customer inside the sub-agent's input; a domain tool, at the top.
    asked = (
        (args.get("input") or {}).get("customer_account")
        if "input" in args
        else args.get("customer_account")
    )
    if asked != ctx.run_input["customer_account"]:
        return (
            f"this request is for {ctx.run_input['customer_account']}; "
            f"{str(asked)[:40]} may not be looked up in it"
        )
    return None


def _no_open_review(ctx: ToolContext) -> str | None:
    account = ctx.run_input.get("customer_account")
    handed_to = ctx.tool_input.get("agent")
    if account in OPEN_REVIEW_ACCOUNTS and handed_to in (None, "payments"):
        return "a compliance review is open for this customer: payments actions are blocked"
    return None


OWN_CUSTOMER = (Precondition("the_requests_customer", _the_requests_customer),)


def _tool(name: str, description: str, handler: Any, output: dict[str, Any], **more: Any) -> Tool:
    return Tool(
        name,
        description,
        ACCOUNT_INPUT,
        {
            "type": "object",
            "properties": output,
            "required": list(output),
            "additionalProperties": False,
        },
        handler,
        preconditions=OWN_CUSTOMER,
        **more,
    )


def _domain_policy(tool: str, domain: str, say: Any) -> Any:
    def policy(conv: Conversation) -> Turn:
        found = result(conv, tool)
        if found is None:
            return call(tool, {"customer_account": conv.input["customer_account"]})
        return answer({"domain": domain, "answer": say(found), "facts": found})

    return policy


def _domain(name: str, title: str, role: str, tool: Tool, policy: Any, **more: Any) -> Workflow:
    return register(
        Workflow(
            name=name,
            title=title,
            version="1",
            domain="a fintech's customer service",
            role=role,
            description="Sub-agent of customer_router: one domain, one customer, read-only.",
            input_schema=REQUEST_INPUT,
            output_schema=DOMAIN_OUTPUT,
            tools=(tool,),
            rules=(
                "Answer only within your domain, only about the request's customer.",
                "Answer from the tool's output; never invent a figure.",
            ),
            constraints=Constraints(
                max_steps=3,
                max_cost_usd=Decimal("0.20"),
                run_timeout_seconds=300,
                max_output_tokens=1024,
            ),
            models=SONNET,
            required_tools=(tool.name,),
            expectation=Expectation(
                turns=2, output_tokens_per_turn=60, tool_result_tokens=80, final_output_tokens=120
            ),
            input_example={"customer_account": "ACC-100", "question": "How much could I borrow?"},
            policy=policy,
            **more,
        )
    )


LENDING = _domain(
    "customer_lending",
    "Lending agent",
    "Answer loan enquiries: repayment capacity from completed inflows.",
    _tool(
        "repayment_capacity",
        "The customer's completed inflows and indicative monthly repayment capacity (30%).",
        repayment_capacity,
        {
            "customer_account": {"type": "string"},
            "completed_inflow": {"type": "number"},
            "capacity": {"type": "number"},
        },
    ),
    _domain_policy(
        "repayment_capacity",
        "lending",
        lambda f: f"Indicative monthly repayment capacity: {f['capacity']:.2f} AUD.",
    ),
    escalation_rules=(
        EscalationRule(
            "repayment_capacity",
            "ambiguity",
            "No completed income is on file for this customer: a lending officer must answer this enquiry.",
            lambda out, ctx: out.get("completed_inflow", 0) == 0,
        ),
    ),
)
PAYMENTS = _domain(
    "customer_payments",
    "Payments agent",
    "Answer payment enquiries: payment status and history.",
    _tool(
        "payments_on_file",
        "The customer's payments and their decisions.",
        payments_on_file,
        {
            "customer_account": {"type": "string"},
            "payments": {"type": "object", "additionalProperties": True},
        },
        guards=(_no_open_review,),
    ),
    _domain_policy(
        "payments_on_file", "payments", lambda f: f"{len(f['payments'])} payment(s) on file."
    ),
)
COMPLIANCE = _domain(
    "customer_compliance",
    "Compliance agent",
    "Answer compliance enquiries: open reviews, KYC status.",
    _tool(
        "compliance_status",
        "The customer's open compliance review and unverified transactions.",
        compliance_status,
        {
            "customer_account": {"type": "string"},
            "open_review": {"type": "boolean"},
            "unverified_transactions": {"type": "integer"},
        },
    ),
    _domain_policy(
        "compliance_status",
        "compliance",
        lambda f: (
            "A compliance review is open." if f["open_review"] else "No open compliance review."
        ),
    ),
)


# --- the router ------------------------------------------------------------------------------

HANDOFF = handoff(
    SubAgent(
        "lending",
        LENDING.name,
        "loan enquiries, borrowing, repayment capacity",
        invoke_when="the request is about loans or borrowing",
    ),
    SubAgent(
        "payments",
        PAYMENTS.name,
        "payment status and history",
        invoke_when="the request is about payments",
    ),
    SubAgent(
        "compliance",
        COMPLIANCE.name,
        "compliance reviews, KYC status",
        invoke_when="the request is about compliance or KYC",
    ),
    max_children=2,
    preconditions=OWN_CUSTOMER,
    guards=(_no_open_review,),
)

KEYWORDS = {
    "lending": ("loan", "borrow", "mortgage", "credit", "repayment"),
    "payments": ("payment", "transfer", "paid", "pay "),
    "compliance": ("compliance", "kyc", "aml", "verification", "review"),
}


def policy(conv: Conversation) -> Turn:
    question = conv.input["question"].lower()
    account = conv.input["customer_account"]
    matches = [name for name, words in KEYWORDS.items() if any(w in question for w in words)]
    if conv.notes:  # a reviewer told us where it belongs
        note = " ".join(conv.notes).lower()
        matches = [name for name in KEYWORDS if name in note] or matches[:1]
    if len(matches) != 1:
        return Turn(
            content=[
                {
                    "type": "text",
                    "text": (
                        "I'm not sure which domain agent should handle this request: it matches "
                        f"{', '.join(matches) or 'none of lending, payments or compliance'}."
                    ),
                }
            ]
        )
    agent = matches[0]
    found = result(conv, "handoff")
    if found is None:
        return call(
            "handoff",
            {
                "agent": agent,
                "input": {"customer_account": account, "question": conv.input["question"]},
            },
            f"Handing this to the {agent} agent.",
        )
    return answer(
        {
            "routed_to": found["agent"],
            "answer": found["result"]["answer"],
            "facts": found["result"]["facts"],
        }
    )


WORKFLOW = register(
    Workflow(
        name="customer_router",
        title="Customer request router",
        version="2",
        domain="a fintech with lending, payments and compliance domains",
        role="Route each customer request to exactly one domain sub-agent and relay its answer.",
        description="Hierarchical: a router on Haiku hands each request to a lending, payments or compliance sub-agent "
        "(a child run with its own prompt, tools, limits and model) and relays its answer.",
        input_schema=REQUEST_INPUT,
        output_schema={
            "type": "object",
            "properties": {
                "routed_to": {
                    "enum": ["lending", "payments", "compliance"],
                    "x-from-tool": "handoff.agent",
                },
                "answer": {"type": "string"},
                "facts": {"type": "object", "additionalProperties": True},
            },
            "required": ["routed_to", "answer", "facts"],
            "additionalProperties": False,
        },
        tools=(HANDOFF,),
        rules=(
            "Hand each request to exactly one domain sub-agent; do not answer domain questions yourself.",
            "If the request fits no domain or several, say you are not sure; a human will route it.",
            "Never act on payments for a customer with an open compliance review.",
        ),
        # The router only classifies: its turns run on the classifier model (Haiku); a turn
        # after a refused handoff is a recovery, on the orchestrator model (Opus).
        turn_roles=TurnRoles(first="classifier", default="classifier"),
        required_tools=("handoff",),
        constraints=Constraints(
            max_steps=4,
            max_cost_usd=Decimal("0.50"),
            run_timeout_seconds=600,
            max_output_tokens=1024,
        ),
        examples=(
            Example(
                "Loan enquiry",
                {"customer_account": "ACC-100", "question": "How much could I borrow?"},
                ("handoff to lending", "answer with its result"),
            ),
        ),
        expectation=Expectation(
            turns=2, output_tokens_per_turn=80, tool_result_tokens=150, final_output_tokens=120
        ),
        input_example={
            "customer_account": "ACC-100",
            "question": "How much could I borrow for a car loan?",
        },
        policy=policy,
    )
)
