"""One ordered story of a run: model turns, tool calls and status changes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Q

from orchestration.models import AuditEvent, ModelCall, Run, ToolCall

# Audit events shown in the timeline (model and tool calls appear as their own rows).
# Per-job fan-out events (fanout.job.*) are shown in the job grid, not here.
_STORY_EVENTS = (
    "run.",
    "ticket.",
    "approval.",
    "final.rejected",
    "estimate.made",
    "fanout.decomposed",
    "fanout.plan_rejected",
    "fanout.jobs_done",
    "fanout.halted",
    "subagent.",  # handoffs to sub-agent runs, their results, refusals
)
# The run page shows the story's latest entries: a 500-step run has ~1,500 of them, and
# rendering them all on every page view and every live poll took ~200 ms (bench/RESULTS.md,
# "Dashboard pages"). The whole story is one click away (?timeline=all) and in the download.
TIMELINE_WINDOW = 100
_ORDER = {"event": 0, "model": 1, "tool": 2}


@dataclass
class Entry:
    kind: str  # "model", "tool" or "event"
    at: datetime
    obj: Any

    @property
    def template(self) -> str:
        return f"orchestration/timeline/{self.kind}.html"


@dataclass
class Timeline:
    """The entries shown (oldest first) and how many the whole story has."""

    entries: list[Entry]
    total: int

    @property
    def hidden(self) -> int:
        return self.total - len(self.entries)

    def __iter__(self):  # templates and callers iterate it like the list it used to be
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _sources(run: Run) -> dict[str, Any]:
    story = reduce(or_, (Q(kind__startswith=prefix) for prefix in _STORY_EVENTS))
    return {
        "model": ModelCall.objects.filter(run=run, job__isnull=True),
        "tool": ToolCall.objects.filter(run=run),
        "event": AuditEvent.objects.filter(story, run=run),
    }


def _sort(entries: list[Entry]) -> list[Entry]:
    entries.sort(key=lambda e: (e.at, _ORDER[e.kind]))
    return entries


def build_timeline(run: Run) -> list[Entry]:
    """The whole story, oldest first."""
    return _sort(
        [
            Entry(kind, obj.created_at, obj)
            for kind, qs in _sources(run).items()
            for obj in qs.order_by("created_at", "pk")
        ]
    )


def timeline_window(run: Run, last: int | None = TIMELINE_WINDOW) -> Timeline:
    """The story's latest `last` entries (all of them when `last` is None), oldest first.

    Three bounded queries (the latest `last` rows of each source, which must hold the
    latest `last` entries overall) and three counts, whatever the run's length.
    """
    if last is None:
        entries = build_timeline(run)
        return Timeline(entries, len(entries))
    sources = _sources(run)
    entries = _sort(
        [
            Entry(kind, obj.created_at, obj)
            for kind, qs in sources.items()
            for obj in qs.order_by("-created_at", "-pk")[:last]
        ]
    )[-last:]
    total = sum(qs.count() for qs in sources.values())
    return Timeline(entries, total)
