"""Policies: deterministic functions that play the model's part.

A policy takes a read-only `Conversation` (the parsed /v1/messages request) and
returns a `Turn` (the assistant's content blocks). The simulator picks the policy by
the request header ``x-countersign-workflow`` through an injected resolver
(``(workflow_name) -> Policy | None``); unknown or absent names get `generic_policy`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .schemas import schema_instance

OUTPUT_SCHEMA_RE = re.compile(r"<output_schema>(.*?)</output_schema>", re.DOTALL)


@dataclass
class Turn:
    """One assistant answer.

    content: Anthropic content blocks, ``{"type": "text", "text": ...}`` or
    ``{"type": "tool_use", "name": ..., "input": {...}}`` (the simulator assigns an id
    when absent). stop_reason becomes "tool_use" automatically when content has a
    tool_use block.
    """

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _text_of(blocks: Iterable[dict[str, Any]]) -> str:
    return "\n".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")


def extract_output_schema(system_text: str) -> dict[str, Any] | None:
    """The JSON schema between <output_schema> and </output_schema>, if any."""
    match = OUTPUT_SCHEMA_RE.search(system_text or "")
    if not match:
        return None
    try:
        schema = json.loads(match.group(1).strip())
    except ValueError:
        return None
    return schema if isinstance(schema, dict) else None


class Conversation:
    """Read-only view of a /v1/messages request body, shaped for policies."""

    def __init__(self, body: dict[str, Any], workflow: str | None = None) -> None:
        self.body = body
        self.workflow = workflow
        self.model: str = body.get("model", "")
        system = body.get("system") or ""
        self.system_text: str = system if isinstance(system, str) else _text_of(system)
        self.tools: list[dict[str, Any]] = list(body.get("tools") or [])
        messages = body.get("messages") or []
        self.messages: list[dict[str, Any]] = messages

        first_user = next((m for m in messages if m.get("role") == "user"), None)
        first_text = _text_of(_blocks(first_user.get("content"))) if first_user else ""
        self.input: Any = _maybe_json(first_text)

        asked: dict[str, dict[str, Any]] = {}  # tool_use id -> tool_use block
        self.tool_calls: list[dict[str, Any]] = []
        self.tool_results: list[dict[str, Any]] = []
        self.notes: list[str] = []
        seen_first_user = False
        for message in messages:
            blocks = _blocks(message.get("content"))
            if message.get("role") == "assistant":
                for block in blocks:
                    if block.get("type") == "tool_use":
                        asked[str(block.get("id"))] = block
                        self.tool_calls.append(block)
                continue
            for block in blocks:
                if block.get("type") == "tool_result":
                    use = asked.get(str(block.get("tool_use_id")), {})
                    self.tool_results.append(
                        {
                            "tool_use_id": block.get("tool_use_id"),
                            "name": use.get("name"),
                            "input": use.get("input"),
                            "content": self._result_content(block.get("content")),
                            "is_error": bool(block.get("is_error", False)),
                        }
                    )
                elif block.get("type") == "text" and seen_first_user:
                    self.notes.append(str(block.get("text", "")))
            seen_first_user = True

    @staticmethod
    def _result_content(content: Any) -> Any:
        if isinstance(content, list):
            return _maybe_json(_text_of(_blocks(content)))
        if isinstance(content, str):
            return _maybe_json(content)
        return content

    @property
    def output_schema(self) -> dict[str, Any] | None:
        return extract_output_schema(self.system_text)

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("name")) for t in self.tools if "name" in t]

    def tool(self, name: str) -> dict[str, Any] | None:
        return next((t for t in self.tools if t.get("name") == name), None)

    def last_result(self, name: str) -> dict[str, Any] | None:
        """The latest tool_result of a call to tool `name`, or None."""
        for result in reversed(self.tool_results):
            if result["name"] == name:
                return result
        return None

    def results(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.tool_results if r["name"] == name]

    def called(self, name: str) -> bool:
        """Whether an earlier assistant turn asked for tool `name`."""
        return any(call.get("name") == name for call in self.tool_calls)

    def turn_index(self) -> int:
        """Number of assistant turns so far (0 for the first model call)."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")


Policy = Callable[[Conversation], Turn]
PolicyResolver = Callable[[str | None], Policy | None]


def text(value: Any) -> dict[str, Any]:
    """A text block; non-strings are dumped as JSON."""
    return {"type": "text", "text": value if isinstance(value, str) else json.dumps(value)}


def tool_use(
    name: str, input: dict[str, Any] | None = None, id: str | None = None
) -> dict[str, Any]:
    """A tool_use block (id assigned by the simulator when None)."""
    block: dict[str, Any] = {"type": "tool_use", "name": name, "input": dict(input or {})}
    if id is not None:
        block["id"] = id
    return block


def final(value: Any) -> Turn:
    """An end_turn answer whose text is `value` (JSON-dumped unless a string)."""
    return Turn([text(value)])


def scripted(*turns: Turn | Policy) -> Policy:
    """A policy that plays turns[turn_index] (the last one once exhausted).

    Items may be Turns or policies (called with the conversation).
    """
    if not turns:
        raise ValueError("scripted() needs at least one turn")

    def policy(conv: Conversation) -> Turn:
        item = turns[min(conv.turn_index(), len(turns) - 1)]
        return item(conv) if callable(item) else item

    return policy


def generic_policy(conv: Conversation) -> Turn:
    """Call the request's tools in declared order, one per turn, then answer.

    Tool inputs are built from each tool's input_schema (schemas.schema_instance);
    the final answer is an instance of the schema between <output_schema> markers
    in the system prompt, or {"status": "success"} when there is none.
    """
    for tool in conv.tools:
        name = tool.get("name")
        if not name or "input_schema" not in tool or conv.called(name):
            continue
        arguments = schema_instance(tool.get("input_schema") or {})
        if not isinstance(arguments, dict):
            arguments = {}
        return Turn([text(f"Next I will call {name}."), tool_use(name, arguments)])
    schema = conv.output_schema
    answer = schema_instance(schema) if schema is not None else {"status": "success"}
    return final(answer)


@dataclass
class PolicyRegistry:
    """Named policies; usable directly as the simulator's policy resolver."""

    policies: dict[str, Policy] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def register(self, name: str, policy: Policy | None = None) -> Any:
        """register(name, policy), or as a decorator: @registry.register(name)."""
        if policy is not None:
            with self._lock:
                self.policies[name] = policy
            return policy

        def decorator(func: Policy) -> Policy:
            self.register(name, func)
            return func

        return decorator

    def resolve(self, name: str | None) -> Policy | None:
        if name is None:
            return None
        with self._lock:
            return self.policies.get(name)

    __call__ = resolve


@dataclass
class Hostile:
    """What a hostile (or broken) model sends back, for the hostile-data fuzz harness.

    ``tool_input``: the input of a tool_use of ``tool`` (sent again after each refusal, as a
    stubborn model would); ``tool_use_id``/``tool_name`` override the block's id and name;
    ``text``: words before the tool_use; ``answer_text``: the final answer's raw text (any
    string, e.g. JSON with NaN, 1e400, deep nesting, NUL or lone-surrogate escapes).
    """

    tool: str | None = None
    tool_input: Any = None
    tool_use_id: str | None = None
    tool_name: str | None = None
    text: str | None = None
    answer_text: str = '{"answer": "ok"}'
    max_tool_turns: int = 3


def hostile(
    lookup: Callable[[Conversation], Hostile | None], fallback: Policy = generic_policy
) -> Policy:
    """A policy that plays ``lookup(conv)``: the hostile tool_use until the tool answers without
    an error or ``max_tool_turns`` tries are made, then the hostile answer. ``fallback`` plays
    conversations ``lookup`` knows nothing about."""

    def policy(conv: Conversation) -> Turn:
        plan = lookup(conv)
        if plan is None:
            return fallback(conv)
        tried = len(conv.tool_calls)
        last = conv.tool_results[-1] if conv.tool_results else None
        wants_tool = plan.tool is not None or plan.tool_name is not None
        if wants_tool and tried < plan.max_tool_turns and (last is None or last["is_error"]):
            block: dict[str, Any] = {
                "type": "tool_use",
                "name": plan.tool_name if plan.tool_name is not None else plan.tool,
                "input": plan.tool_input if plan.tool_input is not None else {},
            }
            if plan.tool_use_id is not None:
                block["id"] = plan.tool_use_id
            content = [text(plan.text)] if plan.text else []
            return Turn([*content, block])
        return Turn([text(plan.answer_text)])

    return policy
