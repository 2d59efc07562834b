"""What one person did in a period, read from the audit trail (and their API tokens).

The trail already records every decision with its actor: ``run.requested`` (runs they
started), ``approval.decided``, ``ticket.resolved`` (with the correction they supplied, as the
payload recorded it, redacted), ``price.*`` / ``budget.*`` (cost changes), ``sla.changed``.
API tokens are not audit events; their rows say who created them and when. Each section holds
at most ``LIMIT`` rows, newest first, with the total and a link to the same events in the trail.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count

from api.models import ApiToken
from orchestration.models import AuditEvent, Run

LIMIT = 200
SECTIONS = (
    ("runs", "Runs started", ("run.requested",)),
    ("approvals", "Approvals decided", ("approval.decided",)),
    ("tickets", "Tickets resolved", ("ticket.resolved",)),
    (
        "costs",
        "Prices and budgets changed",
        ("price.added", "price.withdrawn", "budget.added", "budget.withdrawn"),
    ),
    ("sla", "SLA targets changed", ("sla.changed",)),
)


@dataclass
class Section:
    key: str
    title: str
    kinds: tuple[str, ...]
    total: int = 0
    events: list[AuditEvent] = field(default_factory=list)


@dataclass
class Activity:
    person: Any
    since: dt.datetime
    until: dt.datetime
    sections: list[Section]
    tokens: list[ApiToken]
    tokens_total: int

    @property
    def empty(self) -> bool:
        return not self.tokens_total and not any(s.total for s in self.sections)


def activity(person: Any, since: dt.datetime, until: dt.datetime) -> Activity:
    """``person``'s recorded actions with ``since <= created_at < until``.

    Events name their actor by ``actor_label`` (the username when it acted) too; each kind is
    read on its own from ``auditevent_actor_kind_id`` (actor_label, kind, id; created_at
    included), newest first, so a person with many events of other kinds, or none in the
    period, costs a few index probes, not a walk through the trail."""
    events = AuditEvent.objects.filter(
        actor=person,
        actor_label=person.get_username(),
        created_at__gte=since,
        created_at__lt=until,
    )
    every_kind = [kind for _key, _title, kinds in SECTIONS for kind in kinds]
    # Every kind's count in one query (an index-only range per kind), then every kind's newest
    # LIMIT events in one query (a UNION ALL of one index range per kind): 2 queries, not 18.
    totals = dict(
        events.filter(kind__in=every_kind)
        .values_list("kind")
        .annotate(n=Count("id"))
        .values_list("kind", "n")
    )
    # The page shows no run column but the runs section's (read below): no select_related.
    per_kind = [events.filter(kind=kind).order_by("-id")[:LIMIT] for kind in every_kind]
    newest: dict[str, list[AuditEvent]] = {}
    for event in per_kind[0].union(*per_kind[1:], all=True):
        newest.setdefault(event.kind, []).append(event)
    sections = []
    for key, title, kinds in SECTIONS:
        section = Section(key, title, kinds, total=sum(totals.get(kind, 0) for kind in kinds))
        found = [event for kind in kinds for event in newest.get(kind, [])]
        section.events = sorted(found, key=lambda e: e.pk, reverse=True)[:LIMIT]
        sections.append(section)
    runs = {
        r.pk: r
        for r in Run.objects.filter(pk__in=[e.run_id for e in sections[0].events if e.run_id]).only(
            "pk", "workflow_name", "status", "cost_usd"
        )
    }
    for event in sections[0].events:
        event.started_run = runs.get(event.run_id)  # type: ignore[attr-defined]
    tokens = ApiToken.objects.filter(user=person, created_at__gte=since, created_at__lt=until)
    return Activity(
        person,
        since,
        until,
        sections,
        list(tokens.order_by("-created_at")[:LIMIT]),
        tokens.count(),
    )


def correction(event: AuditEvent) -> dict[str, Any] | None:
    """The correction a ``ticket.resolved`` event records: what was corrected and the value."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    if not payload.get("corrected"):
        return None
    return {
        "what": payload.get("corrected"),
        "tool": payload.get("tool", ""),
        "output": payload.get("output"),
    }
