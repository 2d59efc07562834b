"""Runs, model calls, tool calls and tickets written directly (no engine), at chosen times,
with latencies and costs the roll-up tests then add up themselves."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils import timezone

from orchestration.models import ModelCall, Run, ToolCall
from reviews.models import EscalationTicket
from tests.audit_factories import workflow_version

TOOLS = ("fetch_transactions", "post_ledger", "publish_report")
MODELS = ("claude-opus-4-6", "claude-haiku-4-5")


@dataclass
class Made:
    runs: list[Run] = field(default_factory=list)
    model_calls: list[ModelCall] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tickets: list[EscalationTicket] = field(default_factory=list)


def run_at(
    user: Any,
    when: dt.datetime,
    *,
    workflow: str = "financial_reporting",
    status: str = "succeeded",
    run_ms: int = 5000,
) -> Run:
    run = Run.objects.create(
        workflow_version=workflow_version(workflow),
        workflow_name=workflow,
        requested_by=user,
        input={},
        status=status,
    )
    started = when - dt.timedelta(milliseconds=run_ms) if status != "rejected" else None
    Run.objects.filter(pk=run.pk).update(
        created_at=when - dt.timedelta(milliseconds=run_ms + 10),
        started_at=started,
        finished_at=when if status in Run.FINAL else None,
    )
    run.refresh_from_db()
    return run


def model_call(
    run: Run,
    when: dt.datetime,
    *,
    model: str,
    ms: int,
    cost: str,
    status: str = "ok",
    turn: int = 0,
    attempt: int = 1,
    sdk_attempts: int = 1,
    role: str = "orchestrator",
    **extra: Any,
) -> ModelCall:
    mc = ModelCall.objects.create(
        run=run,
        turn=turn,
        attempt=attempt,
        model=model,
        status=status,
        role=role,
        request_content=[],
        cost_usd=Decimal(cost),
        latency_ms=ms,
        sdk_attempts=sdk_attempts,
        **extra,
    )
    ModelCall.objects.filter(pk=mc.pk).update(
        created_at=when, finished_at=when + dt.timedelta(milliseconds=ms)
    )
    mc.refresh_from_db()
    return mc


def tool_call(
    run: Run,
    mc: ModelCall,
    when: dt.datetime,
    *,
    name: str,
    ms: int,
    status: str = "ok",
    tool_use_id: str | None = None,
    attempt: int = 1,
) -> ToolCall:
    tc = ToolCall.objects.create(
        run=run,
        model_call=mc,
        tool_use_id=tool_use_id or f"tu_{uuid.uuid4().hex[:10]}",
        name=name,
        attempt=attempt,
        status=status,
        input={},
        latency_ms=ms,
    )
    ToolCall.objects.filter(pk=tc.pk).update(
        created_at=when, finished_at=when + dt.timedelta(milliseconds=ms)
    )
    tc.refresh_from_db()
    return tc


def ticket(run: Run, when: dt.datetime, reason: str) -> EscalationTicket:
    t = EscalationTicket.objects.create(
        run=run,
        reason=reason,
        message="m",
        context={},
        due_at=when,
        status=EscalationTicket.Status.RESOLVED,
    )
    EscalationTicket.objects.filter(pk=t.pk).update(created_at=when)
    t.refresh_from_db()
    return t


def day_at(days_ago: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    day = timezone.localdate() - dt.timedelta(days=days_ago)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour, minute)))


def activity(
    user: Any,
    days_ago: list[int],
    *,
    per_day: int = 12,
    seed: int = 7,
    workflows: tuple[str, ...] = ("financial_reporting", "payment_approval"),
) -> Made:
    """Per day: runs of each outcome, model calls with costs and retries, tool calls with
    retried attempts, tickets; latencies spread over three orders of magnitude."""
    rnd = random.Random(seed)
    made = Made()
    outcomes = ("succeeded", "succeeded", "succeeded", "failed", "halted", "rejected", "cancelled")
    reasons = ("tool_error", "ambiguity", "validation_failed")
    for d in days_ago:
        for i in range(per_day):
            when = day_at(d, hour=1 + (i * 2) % 22, minute=rnd.randrange(60))
            wf = workflows[i % len(workflows)]
            run = run_at(
                user,
                when,
                workflow=wf,
                status=outcomes[i % len(outcomes)],
                run_ms=rnd.randrange(2_000, 900_000),
            )
            made.runs.append(run)
            for turn in range(2):
                mc = model_call(
                    run,
                    when,
                    model=MODELS[(i + turn) % 2],
                    ms=rnd.randrange(80, 40_000),
                    cost=f"0.{rnd.randrange(1, 999_999):06d}",
                    turn=turn,
                    sdk_attempts=1 + (i % 5 == 0),
                )
                made.model_calls.append(mc)
                if i % 4 == 0 and turn == 1:  # the engine called this turn again
                    made.model_calls.append(
                        model_call(
                            run,
                            when,
                            model=mc.model,
                            ms=rnd.randrange(80, 4000),
                            cost="0.001",
                            turn=turn,
                            attempt=2,
                            status="error",
                        )
                    )
                for name in TOOLS[: 1 + (i + turn) % 3]:
                    tc = tool_call(
                        run,
                        mc,
                        when,
                        name=name,
                        ms=rnd.randrange(1, 3000),
                        status="timeout" if i % 6 == 0 else "ok",
                    )
                    made.tool_calls.append(tc)
                    if tc.status == "timeout":
                        made.tool_calls.append(
                            tool_call(
                                run,
                                mc,
                                when,
                                name=name,
                                ms=rnd.randrange(1, 900),
                                tool_use_id=tc.tool_use_id,
                                attempt=2,
                            )
                        )
            if i % 3 == 0:
                made.tickets.append(ticket(run, when, reasons[(i // 3) % len(reasons)]))
    return made


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]
