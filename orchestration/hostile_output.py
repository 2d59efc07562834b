"""What the engine does with hostile data a model or a tool sends back: record it, refuse it.

A model's answer or a tool's output can hold anything ``orchestration.untrusted`` describes:
NUL characters, lone surrogates, nesting thousands of levels deep, NaN, ``1e400``, integers
beyond 64 bits, megabytes of text, and tool_use ids or names no column can hold. The engine
calls this module at its recording and validation points, and the rule is the same at each:

1. **Record it without loss.** ``response_content`` builds the assistant turn from the SDK's
   message keeping what the model sent (pydantic's JSON mode would turn NaN into null), and
   ``bounded`` keeps any part nested deeper than ``storable.STORED_DEPTH`` as its exact JSON
   text; the payload columns then store what Postgres refuses in the reversible form of
   ``orchestration.storable``.
2. **Validate it.** ``tool_input_problems`` (a tool_use's input: refused like a schema
   violation, answered to the model so it can fix it, escalated once the tool's attempts are
   used), ``tool_output_problems`` (a tool's output: an invalid output, retried once, then
   escalated), ``response_problems`` (a tool_use whose id or name cannot be recorded: the
   model call is marked failed and the run escalates). The final answer is parsed with the
   same limits (``orchestration.validation.parse_json_answer``).
3. **Escalate with a clear reason**: every message names the path and the class, and shows
   the characters as ``\\uXXXX`` markers (``untrusted.printable``), so it can be stored in a
   text column and shown on a page.
"""

from __future__ import annotations

from typing import Any

from orchestration import audit
from orchestration.models import ModelCall, Run
from orchestration.storable import bounded
from orchestration.untrusted import MAX_DEPTH, findings, printable
from reviews.escalation import escalate
from reviews.models import EscalationTicket

R = EscalationTicket.Reason

# ToolCall.tool_use_id and ToolCall.name are varchar(100).
MAX_IDENTIFIER = 100
# A tool's output may be larger than a request body, but not unbounded text.
MAX_OUTPUT_STRING = 1_000_000


def response_content(message: Any) -> list[dict[str, Any]]:
    """The assistant turn as the model sent it, ready to record (see the module docstring)."""
    blocks = []
    for block in message.content:
        try:
            data = block.model_dump(mode="json", exclude_none=True)
        except (ValueError, RecursionError):  # pydantic refuses very deep values
            data = {"type": getattr(block, "type", "unknown")}
            for name in ("id", "name", "text"):
                if getattr(block, name, None) is not None:
                    data[name] = getattr(block, name)
        if getattr(block, "type", None) == "tool_use":
            data["input"] = block.input  # as parsed: JSON mode would turn NaN into null
        blocks.append(data)
    return bounded(blocks)


def _listed(found: list[Any], where: str) -> list[str]:
    return [f"{where}{f.path}: {f.message}" for f in found]


def tool_input_problems(tool_input: Any) -> list[str]:
    """Why a tool_use's input cannot be acted upon ([] when it can)."""
    if not isinstance(tool_input, dict):
        return [f"input: must be a JSON object, not {type(tool_input).__name__}"]
    return _listed(findings(tool_input, max_depth=MAX_DEPTH), "input")


def tool_output_problems(raw: Any) -> list[str]:
    """Why a tool's output cannot be accepted ([] when it can)."""
    return _listed(findings(raw, max_depth=MAX_DEPTH, max_string=MAX_OUTPUT_STRING), "output")


def _identifier_problem(value: Any, what: str) -> str | None:
    if not isinstance(value, str) or not value:
        return f"its {what} is not a non-empty string"
    if len(value) > MAX_IDENTIFIER:
        return f"its {what} is {len(value):,} characters long; at most {MAX_IDENTIFIER}"
    if printable(value) != value:
        return f"its {what} {printable(value)[:120]!r} holds control or unstorable characters"
    return None


def response_problems(tool_uses: list[dict[str, Any]]) -> list[str]:
    """Why a model turn's tool_use blocks cannot be recorded as tool calls ([] when they can)."""
    problems = []
    for i, tool_use in enumerate(tool_uses):
        for key, what in (("id", "id"), ("name", "tool name")):
            if why := _identifier_problem(tool_use.get(key), what):
                problems.append(f"tool_use #{i + 1}: {why}")
    return problems


def refuse_response(run: Run, mc: ModelCall, problems: list[str]) -> None:
    """A model turn whose tool_use blocks cannot be recorded: the call stays recorded (content,
    usage, cost) but is marked failed, so the conversation is rebuilt without it and a
    reviewer's retry asks the model again; the run escalates with the reason."""
    message = "The model's answer cannot be recorded as tool calls: " + "; ".join(problems)
    ModelCall.objects.filter(pk=mc.pk).update(status=ModelCall.Status.ERROR, error=message)
    mc.status, mc.error = ModelCall.Status.ERROR, message
    audit.record(
        "model.refused",
        run=run,
        evidence_of=[mc],
        payload={"turn": mc.turn, "attempt": mc.attempt, "problems": problems},
    )
    escalate(run.pk, R.VALIDATION_FAILED, message, model_call=mc)
