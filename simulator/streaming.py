"""Server-sent events for ``"stream": true``, in the real API's event order.

message_start, then per block content_block_start / content_block_delta... /
content_block_stop, then message_delta (stop_reason, final usage) and message_stop.
Text is sent in chunks of `CHUNK_CHARS`; tool input as input_json_delta chunks of
its JSON. The stream is produced at once, then paced (``schedule``): the first piece after
the modelled time to first token, the rest spread over the modelled generation time, so a
client's read timeout applies to silence, not to the answer's length.
"""

from __future__ import annotations

import json
import math
from typing import Any

CHUNK_CHARS = 48
# A paced body is sent in pieces at most this far apart (whole SSE events each), so a reader
# sees the answer grow; a body that is not SSE goes in TRICKLE_PIECES slices.
PACE_SECONDS = 0.25
TRICKLE_PIECES = 8


def _events(payload: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in payload.split(b"\n\n") if event]


def schedule(payload: bytes, seconds: float, *, sse: bool) -> list[tuple[float, bytes]]:
    """``payload`` as (wait before it, piece) pairs that take ``seconds`` in all."""
    if seconds <= 0:
        return [(0.0, payload)]
    if sse:
        events = _events(payload)
        count = max(1, min(len(events), math.ceil(seconds / PACE_SECONDS) + 1))
        per = len(events) / count
        pieces = [b"".join(events[round(i * per) : round((i + 1) * per)]) for i in range(count)]
    else:
        size = -(-len(payload) // TRICKLE_PIECES) or 1
        pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    pieces = [p for p in pieces if p] or [payload]
    if len(pieces) == 1:
        return [(seconds, pieces[0])]
    gap = seconds / (len(pieces) - 1)
    return [(0.0 if i == 0 else gap, piece) for i, piece in enumerate(pieces)]


def cut_point(payload: bytes) -> int:
    """Where a "stream_cut" fault drops the connection: after message_start and half of the
    content events, so the client has received some tokens but not the end of the answer
    (no message_delta: the only usage it holds is message_start's)."""
    events = _events(payload)
    deltas = [i for i, e in enumerate(events) if e.startswith(b"event: content_block_delta")]
    keep = deltas[(len(deltas) - 1) // 2] + 1 if deltas else 1  # at least one delta
    return sum(len(e) for e in events[:keep])


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
