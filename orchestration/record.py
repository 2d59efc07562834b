"""What a run has accepted so far: the Record its preconditions, validators and sign-off
rules read.

Core, so that both the engine (before a tool runs) and a reviewer's correction
(reviews.resolutions) read the same record without Reviews importing the engine.
"""

from __future__ import annotations

from typing import Any

from orchestration.models import Run, ToolCall
from orchestration.workflows.declaration import Record, RecordedCall
from reviews.models import EscalationTicket

R = EscalationTicket.Reason
TC = ToolCall.Status


def accepted_outputs(run: Run) -> dict[str, Any]:
    """Latest accepted output per tool name (what guards and validators may rely on)."""
    return {c.name: c.output for c in recorded_state(run).calls}


def recorded_state(run: Run) -> Record:
    """What preconditions and sign-off rules read: every accepted call (ok or corrected by a
    reviewer) in order, and the tool_uses a reviewer approved on a sign-off ticket."""
    calls = tuple(
        RecordedCall(name, tool_use_id, tool_input or {}, output)
        for name, tool_use_id, tool_input, output in ToolCall.objects.filter(
            run=run, settled=True, status__in=(TC.OK, TC.CORRECTED)
        )
        .order_by("created_at")
        .values_list("name", "tool_use_id", "input", "output")
    )
    signed_off = frozenset(
        EscalationTicket.objects.filter(
            run=run,
            reason=R.REGULATORY_TRIGGER,
            status=EscalationTicket.Status.RESOLVED,
            resolution=EscalationTicket.Resolution.APPROVE,
            failing_tool_call__isnull=False,
        ).values_list("failing_tool_call__tool_use_id", flat=True)
    )
    return Record(calls=calls, signed_off=signed_off)
