"""How a model call and a tool call are written out as JSON: one function each.

The ticket snapshot (reviews.escalation.context_snapshot), the run download
(orchestration.run_document) and the JSON API (api.representation, GET /api/runs/{id}/calls)
all use them, so the three agree field for field. Money is an exact decimal string
(``usd_string``: "0.089288", never a float); times are ISO 8601 in UTC ("...Z"), null when the
moment has not come. A payload that cannot be decrypted is written as {"_undecryptable": why}
(orchestration.fields); what leaves the system is redacted by the caller
(orchestration.privacy.redact), the snapshot stays inside it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from orchestration.models import ModelCall, ToolCall


def usd_string(value: Decimal | None) -> str | None:
    """A cost for machines (API, downloads): exact, written to the micro-dollar when that loses
    nothing ("0.089288"); a batch call that costs less keeps its digits. Never a float."""
    if value is None:
        return None
    micro = value.quantize(Decimal("0.000001"))
    return str(micro if micro == value else value.normalize())


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def model_call_dict(mc: ModelCall) -> dict[str, Any]:
    return {
        "id": mc.pk,
        "job": mc.job_id,
        "turn": mc.turn,
        "attempt": mc.attempt,
        "role": mc.role,
        "model": mc.model,
        "status": mc.status,
        "stop_reason": mc.stop_reason,
        "request_id": mc.request_id,
        "request_content": mc.request_content,
        "response_content": mc.response_content,
        "usage": mc.usage,
        "input_tokens": mc.input_tokens,
        "output_tokens": mc.output_tokens,
        "cache_write_5m_tokens": mc.cache_write_5m_tokens,
        "cache_write_1h_tokens": mc.cache_write_1h_tokens,
        "cache_read_tokens": mc.cache_read_tokens,
        "cost_usd": usd_string(mc.cost_usd),
        "is_batch": mc.is_batch,
        "sdk_attempts": mc.sdk_attempts,
        "latency_ms": mc.latency_ms,
        "error": mc.error,
        "created_at": iso(mc.created_at),
        "finished_at": iso(mc.finished_at),
        "payload_purged_at": iso(mc.payload_purged_at),
    }


def tool_call_dict(tc: ToolCall) -> dict[str, Any]:
    return {
        "id": tc.pk,
        "model_call": tc.model_call_id,
        "tool_use_id": tc.tool_use_id,
        "name": tc.name,
        "tool_version": tc.tool_version,
        "attempt": tc.attempt,
        "status": tc.status,
        "settled": tc.settled,
        "input": tc.input,
        "output": tc.output,
        "raw_output": tc.raw_output,
        "validation_errors": tc.validation_errors,
        "error": tc.error,
        "latency_ms": tc.latency_ms,
        "created_at": iso(tc.created_at),
        "finished_at": iso(tc.finished_at),
        "payload_purged_at": iso(tc.payload_purged_at),
    }
