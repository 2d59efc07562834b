"""A workflow written for the evaluation tests: "balance_check", registered in tests only.

One tool, ``lookup_balance``; the policy looks the account up, then answers with its balance.
How it answers depends on the version's system prompt, so two versions of the same code
behave differently on the same dataset, as two prompts do with a real model:

- version "1" (``V1_RULES``) rounds the balance to the nearest hundred: 250 becomes 300, a
  value no tool returned (a provenance failure, escalated as ``hallucination``);
- version "2" (the registered declaration) has the rule "Quote the balance exactly" and does.

Balances over 1,000 need a sign-off (``regulatory_trigger``); an unknown account makes the
tool fail every attempt (``retries_exhausted``). It declares evaluation thresholds on the
dataset "regression" (evaluation.gate).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from orchestration.workflows.declaration import (
    Constraints,
    EvaluationThresholds,
    Expectation,
    Tool,
    ToolContext,
    Workflow,
)
from orchestration.workflows.registry import register, register_previous
from simulator.policy import Conversation, Turn, final, tool_use

ACCOUNTS = {"ACC-1": 100, "ACC-2": 250, "ACC-3": 5000}
EXACT_RULE = "Quote the balance exactly as lookup_balance returned it."


def lookup_balance(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    account = args["account"]
    if account not in ACCOUNTS:
        raise LookupError(f"no account {account}")
    return {"account": account, "balance": ACCOUNTS[account]}


def balance_policy(conv: Conversation) -> Turn:
    found = conv.last_result("lookup_balance")
    if found is None or found["is_error"]:
        return Turn(content=[tool_use("lookup_balance", {"account": conv.input["account"]})])
    balance = found["content"]["balance"]
    if EXACT_RULE not in conv.system_text:
        balance = round(balance, -2)  # version 1 rounds: 250 -> 300 (invented), 100 stays 100
    return final({"account": found["content"]["account"], "balance": balance})


def needs_sign_off(run_input: Any, output: Any, record: Any) -> str | None:
    looked_up = record.latest("lookup_balance")
    if looked_up and looked_up["balance"] > 1000:
        return f"balance {looked_up['balance']} is over 1,000"
    return None


ACCOUNT = {"type": "string", "pattern": "^ACC-[0-9]+$"}
V1_RULES = ("Look the account up with lookup_balance, then answer with its balance.",)

BALANCE_CHECK = register(
    Workflow(
        name="balance_check",
        title="Balance check (tests only)",
        version="2",
        domain="testing",
        role="Look an account's balance up and report it.",
        input_schema={
            "type": "object",
            "properties": {"account": ACCOUNT},
            "required": ["account"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "account": {"type": "string", "x-from-tool": "lookup_balance.account"},
                "balance": {"type": "integer", "x-from-tool": "lookup_balance.balance"},
            },
            "required": ["account", "balance"],
            "additionalProperties": False,
        },
        tools=(
            Tool(
                "lookup_balance",
                "Look up an account's balance.",
                {"type": "object", "properties": {"account": ACCOUNT}, "required": ["account"]},
                {
                    "type": "object",
                    "properties": {"account": {"type": "string"}, "balance": {"type": "integer"}},
                    "required": ["account", "balance"],
                },
                lookup_balance,
            ),
        ),
        rules=(*V1_RULES, EXACT_RULE),
        constraints=Constraints(
            max_attempts_per_tool=3,
            max_steps=6,
            max_cost_usd=Decimal("1.00"),
            max_output_tokens=512,
        ),
        expectation=Expectation(
            turns=2, output_tokens_per_turn=100, tool_result_tokens=100, final_output_tokens=60
        ),
        regulatory_trigger=needs_sign_off,
        policy=balance_policy,
        input_example={"account": "ACC-1"},
        evaluation_thresholds=EvaluationThresholds(
            dataset="regression", min_accuracy=0.8, max_hallucinations=0
        ),
    )
)

# The version before the exact-quote rule: the same code, another prompt.
# Deployed beside version 2 (registry.register_previous): a version is evaluated, like any
# run, with the code whose snapshot it is.
BALANCE_CHECK_V1 = register_previous(
    dataclasses.replace(BALANCE_CHECK, version="1", rules=V1_RULES)
)

REGRESSION_JSONL = (
    "\n".join(
        [
            '{"name": "acc1", "input": {"account": "ACC-1"}, "expected": {"status": "succeeded", "output": {"balance": 100}}}',
            '{"name": "acc2", "input": {"account": "ACC-2"}, "expected": {"status": "succeeded", "output": {"balance": 250}}}',
            '{"name": "big", "input": {"account": "ACC-3"}, "expected": {"status": "escalated", "reason": "regulatory_trigger"}}',
            '{"name": "missing", "input": {"account": "ACC-404"}, "expected": {"status": "escalated", "reason": "retries_exhausted"}}',
            # Designed to fail on every version: the expectation is wrong, not the workflow.
            '{"name": "wrong", "input": {"account": "ACC-1"}, "expected": {"status": "succeeded", "output": {"balance": 999}}}',
        ]
    )
    + "\n"
)
