"""Small helpers the demo policies share to say things the way a model would."""

from __future__ import annotations

import json
from typing import Any

from orchestration.fanout.prompts import REVIEWER_MARK, SPECIALIST_MARK, VALIDATOR_MARK
from simulator.policy import Conversation, Turn


def call(name: str, tool_input: dict[str, Any], say: str = "") -> Turn:
    content: list[dict[str, Any]] = []
    if say:
        content.append({"type": "text", "text": say})
    content.append({"type": "tool_use", "name": name, "input": tool_input})
    return Turn(content=content)


def answer(output: dict[str, Any]) -> Turn:
    return Turn(content=[{"type": "text", "text": json.dumps(output)}])


def result(conv: Conversation, name: str) -> Any:
    """The content of the latest successful result of ``name``, or None."""
    found = conv.last_result(name)
    if found is None or found["is_error"]:
        return None
    return found["content"]


def failed_last(conv: Conversation, name: str) -> bool:
    found = conv.last_result(name)
    return found is not None and found["is_error"]


def fanout_roles(
    *,
    decompose: Any,
    specialist: Any,
    validator: Any,
    aggregate: Any,
    reviewer: Any = None,
) -> Any:
    """A fan-out workflow's policy: one function per role, picked the way a model reads its
    role, from its system prompt (specialist, validator, escalation reviewer) or the
    orchestrator's user turn (``phase``: decompose or aggregate). Each gets the user turn's
    JSON and returns a Turn."""
    def policy(conv: Conversation) -> Turn:
        data = conv.input if isinstance(conv.input, dict) else {}
        if reviewer is not None and conv.system_text.startswith(REVIEWER_MARK):
            return answer(reviewer(data))
        if conv.system_text.startswith(SPECIALIST_MARK):
            return answer(specialist(data))
        if conv.system_text.startswith(VALIDATOR_MARK):
            return answer(validator(data))
        if data.get("phase") == "aggregate":
            return answer(aggregate(data))
        return Turn(content=[{"type": "text", "text": json.dumps(decompose(data))}])

    return policy
