"""A workflow written for the engine's tests: a small ledger close, registered in tests only.

The engine's tests (tests/test_engine.py) drive the tool-use loop with it, not with the demo
workflows (those have their own tests in tests/demo/): it exercises what the loop does
whatever the domain, with nothing but the workflow declaration and the simulator.

"ledger_close": fetch_entries -> check_balance -> post_summary (a side effect, applied once
per idempotency key) -> answer. Four model turns, so faults can be aimed at any of them. The
policy plays a careful model: it calls the first tool that has no accepted result yet (so
after an error result it calls that tool again), and answers with the posted figures.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from orchestration.workflows.declaration import (
    Constraints,
    Expectation,
    Precondition,
    Tool,
    ToolContext,
    Workflow,
)
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Turn, final, tool_use

# The entries of each day the tool can fetch (amounts in cents; a balanced day sums to 0).
DAYS: dict[str, list[dict[str, Any]]] = {
    "2026-11-20": [
        {"id": "E-1", "account": "cash", "amount": 125_000},
        {"id": "E-2", "account": "revenue", "amount": -125_000},
        {"id": "E-3", "account": "fees", "amount": 350},
        {"id": "E-4", "account": "cash", "amount": -350},
    ],
}

# Summaries posted, by idempotency key: what the side effect did (the tests read it).
POSTED: dict[str, dict[str, Any]] = {}
CALLS: dict[str, int] = {}  # handler runs of post_summary per run id, repeats included
_LOCK = threading.Lock()


def fetch_entries(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    entries = DAYS.get(args["day"], [])
    return {"day": args["day"], "entries": entries, "total": sum(e["amount"] for e in entries)}


def check_balance(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"balanced": args["total"] == 0, "difference": args["total"]}


def post_summary(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    with _LOCK:
        CALLS[ctx.run_id] = CALLS.get(ctx.run_id, 0) + 1
        posted = POSTED.setdefault(
            ctx.idempotency_key,
            {"run": ctx.run_id, "summary_id": f"SUM-{args['day']}-{len(POSTED) + 1}", **args},
        )
    return {"summary_id": posted["summary_id"], "day": args["day"], "entries": args["entries"]}


def posted_for(run_id: Any) -> list[dict[str, Any]]:
    return [p for p in POSTED.values() if p["run"] == str(run_id)]


def _balanced_check_of_the_fetched_day(args: dict[str, Any], ctx: ToolContext) -> str | None:
    fetched = ctx.record.latest("fetch_entries")
    checked = ctx.record.latest("check_balance")
    if fetched is None or checked is None or not checked["balanced"]:
        return "post_summary needs a balanced check_balance of the fetched entries first"
    if args["day"] != fetched["day"] or args["entries"] != len(fetched["entries"]):
        return "post_summary must post the fetched day and its number of entries"
    return None


DAY = {"type": "string", "format": "date"}
TOOLS = (
    Tool(
        "fetch_entries",
        "Fetch the ledger entries of one day.",
        {"type": "object", "properties": {"day": DAY}, "required": ["day"]},
        {
            "type": "object",
            "properties": {"day": DAY, "entries": {"type": "array"}, "total": {"type": "integer"}},
            "required": ["day", "entries", "total"],
        },
        fetch_entries,
    ),
    Tool(
        "check_balance",
        "Check that the day's entries balance.",
        {"type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]},
        {
            "type": "object",
            "properties": {"balanced": {"type": "boolean"}, "difference": {"type": "integer"}},
            "required": ["balanced", "difference"],
        },
        check_balance,
    ),
    Tool(
        "post_summary",
        "Post the day's summary (once).",
        {
            "type": "object",
            "properties": {"day": DAY, "entries": {"type": "integer", "minimum": 0}},
            "required": ["day", "entries"],
        },
        {
            "type": "object",
            "properties": {
                "summary_id": {"type": "string"},
                "day": DAY,
                "entries": {"type": "integer"},
            },
            "required": ["summary_id", "day", "entries"],
        },
        post_summary,
        side_effect=True,
        preconditions=(
            Precondition("balanced_check_of_the_fetched_day", _balanced_check_of_the_fetched_day),
        ),
    ),
)


def _latest_ok(conv: Conversation, name: str) -> Any:
    found = conv.last_result(name)
    return None if found is None or found["is_error"] else found["content"]


def _call(name: str, tool_input: dict[str, Any]) -> Turn:
    return Turn(content=[tool_use(name, tool_input)])


def ledger_policy(conv: Conversation) -> Turn:
    day = conv.input["day"]
    fetched = _latest_ok(conv, "fetch_entries")
    if fetched is None:
        return _call("fetch_entries", {"day": day})
    checked = _latest_ok(conv, "check_balance")
    if checked is None:
        return _call("check_balance", {"total": fetched["total"]})
    posted = _latest_ok(conv, "post_summary")
    if posted is None:
        return _call("post_summary", {"day": day, "entries": len(fetched["entries"])})
    return final({"summary_id": posted["summary_id"], "day": day, "entries": posted["entries"]})


LEDGER = register(
    Workflow(
        name="ledger_close",
        title="Ledger close (tests only)",
        version="1",
        domain="testing",
        role="Fetch the day's entries, check they balance, post the summary, then answer.",
        input_schema={
            "type": "object",
            "properties": {"day": DAY},
            "required": ["day"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "summary_id": {"type": "string", "x-from-tool": "post_summary.summary_id"},
                "day": {"type": "string", "x-from-tool": "post_summary.day"},
                "entries": {"type": "integer", "x-from-tool": "post_summary.entries"},
            },
            "required": ["summary_id", "day", "entries"],
            "additionalProperties": False,
        },
        tools=TOOLS,
        rules=(
            "Call fetch_entries first, for the day in the request.",
            "Then check_balance with the fetched total; post_summary only when it balances.",
            "Answer with the posted summary.",
        ),
        constraints=Constraints(
            max_attempts_per_tool=3,
            max_steps=8,
            max_cost_usd=Decimal("2.00"),
            tool_timeout_seconds=10,
        ),
        expectation=Expectation(
            turns=4, output_tokens_per_turn=200, tool_result_tokens=300, final_output_tokens=100
        ),
        required_tools=("post_summary",),
        policy=ledger_policy,
    )
)
