"""The audit trail page's filters, full-text search and keyset pagination (and its exports').

Every event of every run (and the run-less ones: price and budget changes, exports, the
purge), newest first. Who may see it at all is ``reviews.access.may_browse_trail`` (managers
and auditors, who see every run); this module only filters.

Filters arrive as GET parameters and stay in the URL, so a filtered trail can be shared and
exported as it is. Pagination is keyset on the events' ``id`` (the order they were appended
in; unlike ``seq`` it is set the moment an event is written, also under a chain format whose
sequencer places events in the global chain a moment later): a page is "the next N events
before this id", the same cost on the first page and the ten-thousandth. Each filter has an
index that serves "newest first" (AuditEvent.Meta.indexes): ``(kind, id)``,
``(actor_label, id)``, the ticket and approval a payload names, and ``created_at`` for the
time range; a run's events are few and come from ``(run, seq)``.

Search is Postgres full text (``websearch_to_tsquery('simple', q)``) over the values of the
events' payloads, which were redacted before they were recorded (orchestration.privacy), with a
GIN index on the expression; it also finds the event that recorded a tool call whose stored
input or output matches (as the runs list does, ``ToolCall.search_vector``), so a transaction
id finds the ``tool.called`` event that fetched it. A run id, or ``#<seq>``, finds that run's
events, or that event.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.contrib.postgres.search import SearchQuery
from django.db import connection
from django.db.models import BooleanField, F, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KT
from django.utils import timezone

from orchestration import untrusted
from orchestration.models import AuditEvent, JsonbTsvector

PAGE_SIZE = 50
FILTER_KEYS = ("q", "actor", "kind", "workflow", "run", "ticket", "approval", "since", "until")


@dataclass
class TrailFilters:
    q: str = ""
    actor: str = ""
    kind: str = ""
    workflow: str = ""
    run: uuid.UUID | None = None
    ticket: int | None = None
    approval: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    errors: list[str] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> dict[str, str]:
        """The filters in use, as given (what an export records and signs)."""
        return {k: v for k, v in self.raw.items() if v and k in FILTER_KEYS}

    def querystring(self, **overrides: str) -> str:
        params = {**self.active, **overrides}
        return urlencode({k: v for k, v in params.items() if v})


def _moment(value: str, label: str, errors: list[str], *, end: bool) -> dt.datetime | None:
    """YYYY-MM-DD (the whole day) or YYYY-MM-DDTHH:MM[:SS], in the site's time zone."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = untrusted.check_day(dt.date.fromisoformat(value), label)
            moment = dt.datetime.combine(day + dt.timedelta(days=1) if end else day, dt.time.min)
        else:
            moment = untrusted.check_day(dt.datetime.fromisoformat(value), label)  # type: ignore[assignment]
    except untrusted.Rejected as exc:
        errors.append(f"{label} {exc.fields[label]}.")
        return None
    except ValueError:
        errors.append(
            f"{label} '{value}' is not a date or time; use YYYY-MM-DD or YYYY-MM-DDTHH:MM."
        )
        return None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def _number(value: str, label: str, errors: list[str]) -> int | None:
    if not value:
        return None
    try:
        return untrusted.whole_number(value.lstrip("#"), label, what="a number")
    except untrusted.Rejected as exc:
        errors.append(f"{label} {exc.fields[label]}.")
        return None


def parse_filters(params: Any) -> TrailFilters:
    """Read the filters from a QueryDict; an unusable value is dropped with a message."""
    raw = {k: params.get(k, "").strip() for k in FILTER_KEYS}
    errors: list[str] = []
    f = TrailFilters(raw=raw, errors=errors)
    f.q = raw["q"][:200]
    f.actor, f.kind, f.workflow = raw["actor"][:150], raw["kind"][:60], raw["workflow"][:100]
    if raw["run"]:
        try:
            f.run = uuid.UUID(raw["run"])
        except ValueError:
            errors.append(f"Run '{raw['run']}' is not a run id.")
    f.ticket = _number(raw["ticket"], "Ticket", errors)
    f.approval = _number(raw["approval"], "Approval", errors)
    f.since = _moment(raw["since"], "From", errors, end=False)
    f.until = _moment(raw["until"], "To", errors, end=True)
    if f.since and f.until and f.since >= f.until:
        errors.append("The start of the time range is not before its end.")
    return f


# The page reads at most this many of the newest events a search matches (then filters and
# pages them): a search for a common word must not sort half the trail. Exports read them all.
SEARCH_CAP = 5000

# The events whose payload matches, and the events that recorded a tool call whose payloads
# match (same run, same tool_use_id), newest first. Each arm is driven by its own index (the
# expression GIN index on the payloads, the tool calls' GIN index and the events' (run, seq)).
# Only this module's SQL; q is a parameter.
_SEARCH_SQL = """
    (SELECT e.id FROM orchestration_auditevent e
     WHERE jsonb_to_tsvector('simple'::regconfig, COALESCE(e.payload, '{}'::jsonb),
                             '["string", "numeric"]'::jsonb)
           @@ websearch_to_tsquery('simple'::regconfig, %(q)s)
     ORDER BY e.id DESC LIMIT %(cap)s)
    UNION
    (SELECT e.id FROM orchestration_auditevent e
     WHERE (e.run_id, e.payload ->> 'tool_use_id') IN (
         -- OFFSET 0 keeps this a subquery planned on its own: joined, Postgres estimated the
         -- join and chose a parallel scan of every tool call (50 ms at 100,000) over the index.
         SELECT tc.run_id, tc.tool_use_id FROM orchestration_toolcall tc
         WHERE tc.search_vector @@ websearch_to_tsquery('simple'::regconfig, %(q)s) OFFSET 0)
     ORDER BY e.id DESC LIMIT %(cap)s)
"""


def search_ids(q: str, cap: int | None = None) -> list[int]:
    """The ids of the newest events (at most ``cap``, SEARCH_CAP by default) that the search
    matches, newest first."""
    cap = cap or SEARCH_CAP
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM ({_SEARCH_SQL}) AS hits ORDER BY id DESC LIMIT %(cap)s",  # noqa: S608
            {"q": q, "cap": cap},
        )
        return [row[0] for row in cursor.fetchall()]


def _exact(q: str) -> Q | None:
    """A run id finds the run's events, ``#123`` event 123."""
    condition = None
    with contextlib.suppress(ValueError):
        condition = Q(run_id=uuid.UUID(q))
    if q.startswith("#"):
        with contextlib.suppress(untrusted.Rejected):
            condition = Q(seq=untrusted.whole_number(q[1:], "q"))
    return condition


def search_condition(q: str, hits: list[int] | None = None) -> Q:
    """Events whose payload matches ``q``, or that recorded a tool call whose payloads match;
    a run id or ``#seq`` as well. ``hits``: the page's capped ``search_ids(q)``; without
    them, every match (the exports, as subqueries)."""
    if hits is not None:
        # One array parameter, not id IN (%s, %s, ...): 5,000 placeholders cost the page
        # ~100 ms to compile, send and plan (bench/audit_trail.py, a common word).
        condition = Q(
            RawSQL('"orchestration_auditevent"."id" = ANY(%s)', [hits], output_field=BooleanField())
        )
    else:
        query = SearchQuery(q, search_type="websearch", config="simple")
        in_payload = (
            AuditEvent.objects.annotate(doc=JsonbTsvector(F("payload")))
            .filter(doc=query)
            .values("id")
        )
        condition = Q(id__in=in_payload) | Q(
            RawSQL(
                '("orchestration_auditevent"."run_id", ("orchestration_auditevent"."payload" ->> %s)) '
                "IN (SELECT run_id, tool_use_id FROM orchestration_toolcall "
                "WHERE search_vector @@ websearch_to_tsquery('simple'::regconfig, %s))",
                ["tool_use_id", q],
                output_field=BooleanField(),
            )
        )
    exact = _exact(q)
    return condition | exact if exact is not None else condition


def filtered_events(f: TrailFilters, search_hits: list[int] | None = None) -> QuerySet[AuditEvent]:
    """The events that match the filters (unordered). ``search_hits``: the page's search
    (``search_ids``, the newest SEARCH_CAP matches); the exports take every match."""
    events = AuditEvent.objects.all()
    if f.actor:
        events = events.filter(actor_label=f.actor)
    if f.kind:
        if f.kind.endswith("*"):
            events = events.filter(kind__startswith=f.kind[:-1])
        else:
            events = events.filter(kind=f.kind)
    if f.workflow:
        events = events.filter(run__workflow_name=f.workflow)
    if f.run:
        events = events.filter(run_id=f.run)
    if f.ticket is not None:
        # has_key as well: the index on the ticket a payload names is partial on it.
        events = events.annotate(ticket_ref=KT("payload__ticket")).filter(
            payload__has_key="ticket", ticket_ref=str(f.ticket)
        )
    if f.approval is not None:
        events = events.annotate(request_ref=KT("payload__request")).filter(
            payload__has_key="request", request_ref=str(f.approval)
        )
    if f.since:
        events = events.filter(created_at__gte=f.since)
    if f.until:
        events = events.filter(created_at__lt=f.until)
    if f.q:
        events = events.filter(search_condition(f.q, search_hits))
    return events


@dataclass
class Page:
    events: list[AuditEvent]
    next_cursor: int | None = None  # the page after: events older than this id
    prev_cursor: int | None = None  # the page before: events newer than this id


def _cursor(value: str) -> int | None:
    """An event id from a page link; anything else is no cursor (the first page)."""
    try:
        return untrusted.whole_number(value, "cursor")
    except untrusted.Rejected:
        return None


def keyset_page(
    events: QuerySet[AuditEvent], after: str = "", before: str = "", size: int = PAGE_SIZE
) -> Page:
    """One page, newest first: the events older than ``after`` (an id), or newer than
    ``before``; the first page without either. A cursor that is not a number is ignored."""
    after_id, before_id = _cursor(after), _cursor(before)
    if before_id is not None:
        rows = list(events.filter(id__gt=before_id).order_by("id")[: size + 1])
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        return Page(
            rows,
            next_cursor=rows[-1].pk if rows else None,
            prev_cursor=rows[0].pk if rows and more_newer else None,
        )
    qs = events.order_by("-id")
    if after_id is not None:
        qs = qs.filter(id__lt=after_id)
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(
        rows,
        next_cursor=rows[-1].pk if rows and more else None,
        prev_cursor=rows[0].pk if rows and after_id is not None else None,
    )


def known_kinds() -> list[str]:
    """Every event kind in the trail, for the filter's suggestions: a loose index scan of
    ```(kind, id)`` (one probe per distinct kind, not a scan of every event)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE kinds(kind) AS (
                (SELECT kind FROM orchestration_auditevent ORDER BY kind LIMIT 1)
                UNION ALL
                SELECT (SELECT e.kind FROM orchestration_auditevent e
                        WHERE e.kind > kinds.kind ORDER BY e.kind LIMIT 1)
                FROM kinds WHERE kinds.kind IS NOT NULL
            )
            SELECT kind FROM kinds WHERE kind IS NOT NULL
            """
        )
        return [row[0] for row in cursor.fetchall()]


def annotate_for_display(event: AuditEvent) -> None:
    """What the page shows of an event: its links, its payload without the evidence digests
    (one line, and indented JSON), and how many rows' evidence it records."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    shown = {k: v for k, v in payload.items() if k != "evidence"}
    event.links = links(event)  # type: ignore[attr-defined]
    # json_text: control and bidirectional characters as \uXXXX escapes (the same JSON value).
    event.preview = untrusted.json_text(shown, separators=(", ", ": "))  # type: ignore[attr-defined]
    event.pretty = untrusted.json_text(payload, indent=2)  # type: ignore[attr-defined]
    event.evidence_rows = len(payload.get("evidence") or ())  # type: ignore[attr-defined]


def links(event: AuditEvent) -> dict[str, Any]:
    """What the event concerns, for its links: the run, the ticket, the approval request."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    ticket = payload.get("ticket")
    request = payload.get("request")
    return {
        "run": event.run_id,
        "ticket": ticket if isinstance(ticket, int) else None,
        "approval": request if isinstance(request, int) else None,
    }
