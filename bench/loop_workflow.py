"""The benchmarks' tool-use loop: N turns that each call one trivial tool, then a final answer.

Imported by bench/engine_overhead.py and bench/throughput.py and, through
COUNTERSIGN_EXTRA_WORKFLOWS, by their workers. The tool does almost nothing (adds one), so a
run's wall time is the engine plus the scripted model; both are timed and subtracted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orchestration.workflows.declaration import (
    Constraints,
    Expectation,
    Tool,
    ToolContext,
    Workflow,
)
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Turn, final, text, tool_use

NAME = "bench_loop"
TOOL = "increment"
COUNT_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}


def increment(data: dict[str, Any], ctx: ToolContext | None = None) -> dict[str, Any]:
    return {"n": int(data["n"]) + 1}


def policy(conv: Conversation) -> Turn:
    """Call `increment` once per turn, feeding back its last result, `steps` times; then answer.

    The same function plays the model for Countersign (through the simulator) and for
    LangGraph (bench/engine_overhead.py sends it the same Messages API requests).
    """
    steps = int(conv.input["steps"]) if isinstance(conv.input, dict) else 1
    done = len(conv.results(TOOL))
    if done < steps:
        last = conv.last_result(TOOL)
        n = int(last["content"]["n"]) if last and isinstance(last["content"], dict) else 0
        return Turn([text(f"Step {done + 1}."), tool_use(TOOL, {"n": n})])
    return final({"count": done})


def workflow(max_steps: int = 500) -> Workflow:
    return Workflow(
        name=NAME,
        title="Benchmark tool loop",
        version="1",
        domain="benchmarks",
        role="Count by calling the increment tool.",
        input_schema={
            "type": "object",
            "properties": {"steps": {"type": "integer", "minimum": 1, "maximum": max_steps}},
            "required": ["steps"],
        },
        output_schema={
            "type": "object",
            "properties": {"count": {"type": "integer"}},
            "required": ["count"],
        },
        tools=(
            Tool(
                name=TOOL,
                description="Add one to n.",
                input_schema=COUNT_SCHEMA,
                output_schema=COUNT_SCHEMA,
                handler=increment,
            ),
        ),
        rules=("Call increment once per turn until you have called it `steps` times.",),
        approval_threshold_usd=Decimal("100000"),
        expectation=Expectation(turns=2),
        constraints=Constraints(
            max_steps=max_steps + 2,
            run_timeout_seconds=3600,
            max_cost_usd=Decimal("100000"),
            max_tokens_per_run=1_000_000_000,
        ),
        policy=policy,
    )


WORKFLOW = register(workflow())
