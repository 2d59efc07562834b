"""Rows for the alert and notification tests, written directly with the timestamps a rule
needs (no engine): runs, model calls, tool calls, tickets, users in a role."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from orchestration.models import ModelCall, Run, ToolCall, WorkflowVersion
from reviews import roles
from reviews.models import EscalationTicket

_turns = itertools.count(1)


def person(username: str, role: str | None = None, *, email: str | None = None) -> Any:
    user = get_user_model().objects.create_user(
        username,
        email=f"{username}@example.com" if email is None else email,
        password="pw-" + username,
    )
    if role:
        roles.assign(username, role)
    return user


def version(name: str) -> WorkflowVersion:
    wv, _ = WorkflowVersion.objects.get_or_create(
        content_hash=f"alerts-test-{name}",
        defaults={
            "name": name,
            "version": "1",
            "title": name,
            "system_prompt": "p",
            "tools": [],
            "input_schema": {},
            "output_schema": {},
            "model_roles": {},
            "constraints": {},
        },
    )
    return wv


def run(
    user: Any,
    workflow: str,
    status: str = Run.Status.RUNNING,
    *,
    finished_at: dt.datetime | None = None,
    estimate: str | None = None,
    cost: str = "0",
) -> Run:
    r = Run.objects.create(
        workflow_version=version(workflow),
        workflow_name=workflow,
        requested_by=user,
        input={},
        status=status,
        estimate_usd=Decimal(estimate) if estimate else None,
        cost_usd=Decimal(cost),
    )
    if finished_at is not None:
        Run.objects.filter(pk=r.pk).update(finished_at=finished_at)
    return r


def runs_ended(user: Any, workflow: str, *, ok: int, failed: int, when: dt.datetime) -> None:
    wv = version(workflow)
    Run.objects.bulk_create(
        [
            Run(
                workflow_version=wv,
                workflow_name=workflow,
                requested_by=user,
                input={},
                status=status,
                finished_at=when,
            )
            for status in [Run.Status.SUCCEEDED] * ok + [Run.Status.FAILED] * failed
        ]
    )


def call(
    r: Run,
    when: dt.datetime,
    *,
    cost: str = "0",
    latency_ms: int | None = None,
    attempt: int = 1,
    status: str = "ok",
) -> ModelCall:
    mc = ModelCall.objects.create(
        run=r,
        turn=next(_turns),
        attempt=attempt,
        model="claude-opus-4-6",
        status=status,
        request_content=[],
        cost_usd=Decimal(cost),
        latency_ms=latency_ms,
    )
    ModelCall.objects.filter(pk=mc.pk).update(created_at=when)
    return mc


def retries(r: Run, times: list[dt.datetime], *, tools: int = 0) -> None:
    """Retries at ``times``: the first ``tools`` as tool-call re-attempts, the rest model-call ones."""
    for i, when in enumerate(times):
        if i < tools:
            mc = call(r, when)
            tc = ToolCall.objects.create(
                run=r,
                model_call=mc,
                tool_use_id=f"tu_{mc.pk}",
                name="probe",
                attempt=2,
                status="error",
                input={},
            )
            ToolCall.objects.filter(pk=tc.pk).update(created_at=when)
        else:
            call(r, when, attempt=2, status="error")


def ticket(
    r: Run, when: dt.datetime, reason: str = "ambiguity", message: str = "unsure"
) -> EscalationTicket:
    t = EscalationTicket.objects.create(
        run=r, reason=reason, message=message, context={}, due_at=when
    )
    EscalationTicket.objects.filter(pk=t.pk).update(created_at=when)
    return t


def now() -> dt.datetime:
    return timezone.now().replace(microsecond=0)
