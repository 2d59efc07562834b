"""One ordered story of a run: model turns, tool calls and status changes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestration.models import AuditEvent, ModelCall, Run, ToolCall

# Audit events shown in the timeline (model and tool calls appear as their own rows).
# Per-job fan-out events (fanout.job.*) are shown in the job grid, not here.
_STORY_EVENTS = ("run.", "ticket.", "approval.", "final.rejected", "estimate.made", "fanout.decomposed",
                 "fanout.plan_rejected", "fanout.jobs_done", "fanout.halted")


@dataclass
class Entry:
    kind: str  # "model", "tool" or "event"
    at: datetime
    obj: Any

    @property
    def template(self) -> str:
        return f"orchestration/timeline/{self.kind}.html"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def build_timeline(run: Run) -> list[Entry]:
    entries = [Entry("model", mc.created_at, mc) for mc in ModelCall.objects.filter(run=run, job__isnull=True)]
    entries += [Entry("tool", tc.created_at, tc) for tc in ToolCall.objects.filter(run=run)]
    entries += [
        Entry("event", ev.created_at, ev)
        for ev in AuditEvent.objects.filter(run=run).order_by("seq")
        if ev.kind.startswith(_STORY_EVENTS)
    ]
    entries.sort(key=lambda e: (e.at, {"event": 0, "model": 1, "tool": 2}[e.kind]))
    return entries
