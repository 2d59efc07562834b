"""Rows for audit-trail tests, written directly (no engine): runs with calls, tools and events."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from django.utils import timezone

from orchestration import audit
from orchestration.models import ModelCall, Run, ToolCall, WorkflowVersion


def workflow_version(name: str = "financial_reporting") -> WorkflowVersion:
    wv, _ = WorkflowVersion.objects.get_or_create(
        content_hash=f"test-{name}",
        defaults={
            "name": name,
            "version": "1",
            "title": name.replace("_", " ").title(),
            "system_prompt": "p",
            "tools": [],
            "input_schema": {},
            "output_schema": {},
            "model_roles": {},
            "constraints": {},
        },
    )
    return wv


def make_run(
    user: Any,
    *,
    workflow: str = "financial_reporting",
    status: str = Run.Status.SUCCEEDED,
    input: dict | None = None,
    result: Any = None,
    cost: str = "0.10",
    created_at: dt.datetime | None = None,
    tool_output: dict | None = None,
    model: str = "claude-opus-4-6",
    finished_at: dt.datetime | None = None,
) -> Run:
    run = Run.objects.create(
        workflow_version=workflow_version(workflow),
        workflow_name=workflow,
        requested_by=user,
        input=input or {"date": "2026-11-20"},
        status=status,
        result=result,
        cost_usd=Decimal(cost),
    )
    when = created_at or timezone.now()
    finished = finished_at or (when if status in Run.FINAL else None)
    Run.objects.filter(pk=run.pk).update(created_at=when, finished_at=finished)
    run.refresh_from_db()
    audit.record(
        "run.requested", run=run, actor=user, payload={"input": run.input}, evidence_of=[run]
    )
    mc = ModelCall.objects.create(
        run=run,
        turn=0,
        model=model,
        status="ok",
        request_content=[{"type": "text", "text": "go"}],
        response_content=[
            {
                "type": "tool_use",
                "id": f"tu_{uuid.uuid4().hex[:8]}",
                "name": "fetch_transactions",
                "input": {},
            }
        ],
    )
    recorded: list = [mc]  # as the engine does: each row's digests in the event that records it
    if tool_output is not None:
        tc = ToolCall.objects.create(
            run=run,
            model_call=mc,
            tool_use_id=f"tu_{uuid.uuid4().hex[:8]}",
            name="fetch_transactions",
            status="ok",
            settled=True,
            input={"date": run.input.get("date")},
            output=tool_output,
            raw_output=tool_output,
        )
        audit.record(
            "tool.called", run=run, payload={"tool": "fetch_transactions"}, evidence_of=[mc, tc]
        )
        recorded = []
    audit.record(
        f"run.{status}", run=run, payload={"message": f"now {status}"}, evidence_of=[run, *recorded]
    )
    return run
