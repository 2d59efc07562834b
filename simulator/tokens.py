"""Deterministic token-count approximation used for usage, caching and count_tokens.

The real tokenizer is not public, so the simulator uses a documented rule of thumb
that lands in the same order of magnitude as the real API for English text and JSON:

* a string costs ``ceil(len(s) / 4)`` tokens (0 for the empty string);
* structured values (tool inputs, input schemas, unknown blocks) cost the tokens of
  their compact JSON (``separators=(",", ":")``, keys in the given order);
* fixed overheads model the role markers and hidden prompts the real API adds:

  ===========================  ======================================================
  ``REQUEST_OVERHEAD``   = 3   once per request (on the first prompt segment)
  ``TOOLS_PREAMBLE``   = 300   once when the request declares tools (the real API
                               injects a tool-use system prompt of a few hundred)
  ``TOOL_OVERHEAD``     = 12   per tool definition, plus name, description, schema
  ``MESSAGE_OVERHEAD``   = 4   per message (on its first content block)
  ``TOOL_USE_OVERHEAD``  = 8   per tool_use block, plus name and JSON input
  ``TOOL_RESULT_OVERHEAD`` = 8 per tool_result block, plus its content
  ``IMAGE_TOKENS``    = 1600   per image (a ~1.2 megapixel image)
  ===========================  ======================================================

The prompt is cut into *segments* in the order the API caches it: tools, then
system blocks, then message content blocks. Every overhead belongs to a segment,
so the sum of the segments is exactly the uncached input count, and any prefix of
segments is a cacheable prefix (see caching.py). Output tokens are counted with the
same rules over the answer's content blocks, at least 1 (the real API never
reports 0 output tokens).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
REQUEST_OVERHEAD = 3
TOOLS_PREAMBLE = 300
TOOL_OVERHEAD = 12
MESSAGE_OVERHEAD = 4
TOOL_USE_OVERHEAD = 8
TOOL_RESULT_OVERHEAD = 8
IMAGE_TOKENS = 1600


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def text_tokens(text: str) -> int:
    """Tokens of a string: one per started group of four characters."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def json_tokens(value: Any) -> int:
    return text_tokens(compact_json(value))


def _without_cache_control(block: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


def block_tokens(block: Any) -> int:
    """Tokens of one content block (request or response side)."""
    if isinstance(block, str):
        return text_tokens(block)
    if not isinstance(block, dict):
        return json_tokens(block)
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind == "tool_use":
        return (
            TOOL_USE_OVERHEAD
            + text_tokens(str(block.get("name", "")))
            + json_tokens(block.get("input", {}))
        )
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            inner = sum(block_tokens(b) for b in content)
        else:
            inner = text_tokens(str(content))
        return TOOL_RESULT_OVERHEAD + inner
    if kind == "image":
        return IMAGE_TOKENS
    if kind in ("thinking", "redacted_thinking"):
        return text_tokens(str(block.get("thinking", block.get("data", ""))))
    return json_tokens(_without_cache_control(block))


def tool_tokens(tool: dict[str, Any]) -> int:
    """Tokens of one tool definition (custom or server tool)."""
    if "input_schema" not in tool:
        return TOOL_OVERHEAD + json_tokens(_without_cache_control(tool))
    return (
        TOOL_OVERHEAD
        + text_tokens(str(tool.get("name", "")))
        + text_tokens(str(tool.get("description", "")))
        + json_tokens(tool.get("input_schema", {}))
    )


@dataclass(frozen=True)
class Segment:
    """One cacheable unit of the prompt: a tool, a system block or a message block."""

    tokens: int
    key: str  # canonical text of the block (without cache_control) that the cache hashes
    cache_control: dict[str, Any] | None
    where: str  # "tools.0", "system.1", "messages.2.content.0": for error messages


def _message_blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return content
    return [content]


def prompt_segments(body: dict[str, Any]) -> list[Segment]:
    """Cut a (validated) request body into segments in cache-prefix order."""
    segments: list[Segment] = []
    tools = body.get("tools") or []
    for i, tool in enumerate(tools):
        extra = TOOLS_PREAMBLE if i == 0 else 0
        segments.append(
            Segment(
                tokens=tool_tokens(tool) + extra,
                key="tool:" + compact_json(_without_cache_control(tool)),
                cache_control=tool.get("cache_control"),
                where=f"tools.{i}",
            )
        )
    system = body.get("system")
    if isinstance(system, str) and system:
        system = [{"type": "text", "text": system}]
    for i, block in enumerate(system or []):
        segments.append(
            Segment(
                tokens=block_tokens(block),
                key="system:" + compact_json(_without_cache_control(block)),
                cache_control=block.get("cache_control") if isinstance(block, dict) else None,
                where=f"system.{i}",
            )
        )
    for m, message in enumerate(body.get("messages") or []):
        role = message.get("role", "user")
        for b, block in enumerate(_message_blocks(message.get("content"))):
            tokens = block_tokens(block) + (MESSAGE_OVERHEAD if b == 0 else 0)
            key_block = _without_cache_control(block) if isinstance(block, dict) else block
            segments.append(
                Segment(
                    tokens=tokens,
                    # The message index is in the key so two one-block messages do not hash
                    # like one two-block message.
                    key=f"{role}:{m}.{b}:" + compact_json(key_block),
                    cache_control=block.get("cache_control") if isinstance(block, dict) else None,
                    where=f"messages.{m}.content.{b}",
                )
            )
    if segments:
        first = segments[0]
        segments[0] = Segment(
            first.tokens + REQUEST_OVERHEAD, first.key, first.cache_control, first.where
        )
    return segments


def input_tokens(body: dict[str, Any]) -> int:
    """Uncached input tokens of a request: what count_tokens answers."""
    segments = prompt_segments(body)
    return sum(s.tokens for s in segments) if segments else REQUEST_OVERHEAD


def output_tokens(content: list[dict[str, Any]]) -> int:
    """Output tokens of an answer's content blocks (at least 1)."""
    return max(1, sum(block_tokens(b) for b in content))
