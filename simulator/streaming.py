"""Server-sent events for ``"stream": true``, in the real API's event order.

message_start, then per block content_block_start / content_block_delta... /
content_block_stop, then message_delta (stop_reason, final usage) and message_stop.
Text is sent in chunks of `CHUNK_CHARS`; tool input as input_json_delta chunks of
its JSON. The whole stream is produced at once (after the modelled latency).
"""

from __future__ import annotations

import json
from typing import Any

CHUNK_CHARS = 48


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chunks(text: str) -> list[str]:
    return [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]


def message_events(message: dict[str, Any]) -> bytes:
    """The SSE body that streams `message` (a complete Messages API response)."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    parts = [_event("message_start", {"type": "message_start", "message": start})]
    parts.append(_event("ping", {"type": "ping"}))
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": chunk}
                for chunk in _chunks(json.dumps(block["input"], separators=(",", ":")))
            ]
        elif block["type"] == "text":
            opening = {**block, "text": ""}
            deltas = [{"type": "text_delta", "text": chunk} for chunk in _chunks(block["text"])]
        else:
            opening, deltas = block, []
        parts.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
        )
        for delta in deltas:
            parts.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        parts.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    parts.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                },
                "usage": {
                    "input_tokens": usage["input_tokens"],
                    "output_tokens": usage["output_tokens"],
                    "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                    "cache_read_input_tokens": usage["cache_read_input_tokens"],
                },
            },
        )
    )
    parts.append(_event("message_stop", {"type": "message_stop"}))
    return b"".join(parts)
