"""How runs, tickets and workflows look in the JSON API (one place, so every view agrees).

Money is a decimal string ("0.089288"), never a float, so no client rounds it twice.
Timestamps are ISO 8601 in UTC, null when the moment has not come.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from orchestration.models import ModelCall, Run, ToolCall
from orchestration.privacy import redact
from orchestration.serialize import iso, model_call_dict, tool_call_dict, usd_string
from orchestration.workflows.declaration import Workflow
from reviews.models import EscalationTicket


def money(value: Decimal | None) -> str | None:
    return usd_string(value)


def estimate(run: Run) -> dict[str, Any] | None:
    if run.estimate_usd is None:
        return None
    calc = run.estimate or {}
    return {
        "upper_usd": money(run.estimate_usd),
        "expected_usd": calc.get("expected_usd"),
        "model": calc.get("model"),
        "lines": calc.get("lines", []),
    }


def ticket(request: HttpRequest, t: EscalationTicket) -> dict[str, Any]:
    return {
        "id": t.pk,
        "status": t.status,
        "reason": t.reason,
        "message": t.message,
        "priority": t.priority,
        "due_at": iso(t.due_at),
        "assignee": t.assignee.get_username() if t.assignee_id else None,
        "created_at": iso(t.created_at),
        "links": {
            "resolve": request.build_absolute_uri(reverse("api:ticket_resolve", args=[t.pk])),
            "web": request.build_absolute_uri(reverse("ticket_detail", args=[t.pk])),
        },
    }


def run_summary(request: HttpRequest, run: Run) -> dict[str, Any]:
    """What a list shows: enough to decide whether to fetch the run."""
    return {
        "id": str(run.pk),
        "workflow": run.workflow_name,
        "status": run.status,
        "requested_by": run.requested_by.get_username(),
        "estimate_usd": money(run.estimate_usd),
        "cost_usd": money(run.cost_usd),
        "created_at": iso(run.created_at),
        "finished_at": iso(run.finished_at),
        "links": links(request, run),
    }


def run_detail(
    request: HttpRequest, run: Run, open_ticket: EscalationTicket | None
) -> dict[str, Any]:
    return {
        "id": str(run.pk),
        "workflow": run.workflow_name,
        "workflow_version": {
            "version": run.workflow_version.version,
            "content_hash": run.workflow_version.content_hash,
        },
        "status": run.status,
        "final": run.is_final,
        "requested_by": run.requested_by.get_username(),
        "input": run.input,
        "result": run.result,
        "error": run.error or None,
        "estimate": estimate(run),
        "cost_usd": money(run.cost_usd),
        "tokens": {
            "input": run.input_tokens,
            "output": run.output_tokens,
            "cache_write": run.cache_write_tokens,
            "cache_read": run.cache_read_tokens,
            "total_input": run.total_input_tokens,
        },
        "steps_taken": run.steps_taken,
        "latency_ms": run.latency_ms,
        "idempotency_key": run.idempotency_key,
        "open_ticket": ticket(request, open_ticket) if open_ticket is not None else None,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "queued_at": iso(run.queued_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "links": links(request, run),
    }


def run_calls(request: HttpRequest, run: Run) -> dict[str, Any]:
    """Every attempt at every call of the run, written as the ticket snapshot and the download
    write them (orchestration.serialize), redacted on the way out like the download."""
    model_calls = ModelCall.objects.filter(run=run).order_by("turn", "attempt", "pk")
    tool_calls = ToolCall.objects.filter(run=run).order_by("created_at", "attempt")
    return {
        "id": str(run.pk),
        "model_calls": redact([model_call_dict(mc) for mc in model_calls]),
        "tool_calls": redact([tool_call_dict(tc) for tc in tool_calls]),
        "links": links(request, run),
    }


def links(request: HttpRequest, run: Run) -> dict[str, str]:
    return {
        "self": request.build_absolute_uri(reverse("api:run_detail", args=[run.pk])),
        "web": request.build_absolute_uri(reverse("run_detail", args=[run.pk])),
    }


def workflow(wf: Workflow) -> dict[str, Any]:
    return {
        "name": wf.name,
        "title": wf.title,
        "description": wf.description,
        "version": wf.version,
        "orchestrator_model": wf.orchestrator_model,
        "input_schema": wf.input_schema,
        "input_example": wf.input_example,
    }
