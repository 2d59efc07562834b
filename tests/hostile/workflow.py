"""A workflow for the hostile-data harness: a stubborn model and a tool that send back
whatever the test planted (simulator.policy.hostile).

Each run's input is ``{"token": "..."}``; the test plants the hostile model turn and the
hostile tool output under that token in ``PLANS`` before starting the run (the simulator
runs in-process in tests, so the policy and the tool read it directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestration.workflows.declaration import Constraints, Tool, ToolContext, Workflow
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Hostile, hostile

NAME = "hostile_echo"


@dataclass
class Plan:
    model: Hostile = field(default_factory=Hostile)
    tool_output: Any = None  # None: echo the input
    tool_raises: str | None = None


PLANS: dict[str, Plan] = {}


def _plan(token: Any) -> Plan | None:
    return PLANS.get(token) if isinstance(token, str) else None


def _lookup(conv: Conversation) -> Hostile | None:
    plan = _plan(conv.input.get("token") if isinstance(conv.input, dict) else None)
    return plan.model if plan else None


def echo(args: dict[str, Any], ctx: ToolContext) -> Any:
    plan = _plan(ctx.run_input.get("token"))
    if plan is not None and plan.tool_raises is not None:
        raise RuntimeError(plan.tool_raises)
    if plan is not None and plan.tool_output is not None:
        return plan.tool_output
    return {"text": str(args.get("text", ""))}


WORKFLOW = register(
    Workflow(
        name=NAME,
        title="Hostile echo (tests only)",
        version="1",
        domain="testing",
        role="Call echo, then answer with one JSON object.",
        input_schema={
            "type": "object",
            "properties": {"token": {"type": "string", "maxLength": 100}},
            "required": ["token"],
        },
        output_schema={
            "type": "object",
            "properties": {"answer": {}},
            "required": ["answer"],
        },
        tools=(
            Tool(
                "echo",
                "Echo the text back.",
                {"type": "object", "properties": {"text": {}}},
                {"type": "object", "properties": {"text": {}}, "additionalProperties": True},
                echo,
                timeout_seconds=5,
            ),
        ),
        rules=("Call echo once.",),
        constraints=Constraints(
            max_attempts_per_tool=2,
            max_steps=6,
            max_cost_usd=Decimal("1.00"),
            tool_timeout_seconds=5,
        ),
        policy=hostile(_lookup),
    )
)
