"""The runs list's filters, full-text search and keyset pagination (also used by the exports).

Filters arrive as GET parameters and stay in the URL, so a filtered view can be shared and
exported as it is. Pagination is keyset over ``(sort column, id)``: a page is "the next N
rows after this (value, id)", which costs the same on page 1 and on page 4,000, where an
OFFSET would scan and discard every row before it. Each sort column has a btree index on
``(column, id)`` (see Run.Meta.indexes), scanned forwards or backwards.

Search is Postgres full text (``websearch_to_tsquery('simple', q)``) over two generated
tsvector columns with GIN indexes: ``Run.search_vector`` (input and result) and
``ToolCall.search_vector`` (tool input, output and raw output). The 'simple' configuration
does not stem, so an id like ``TX-20261120-001`` is found exactly. Encrypted tool payloads
are not searchable (the index sees only the ciphertext envelope).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from django.contrib.postgres.search import SearchQuery
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from orchestration import untrusted
from orchestration.models import ModelCall, Run, ToolCall
from reviews.access import visible_runs
from reviews.models import EscalationTicket

# sort key in the URL -> model field. Each has an index on (field, id).
SORTS = {
    "created": "created_at",
    "cost": "cost_usd",
    "workflow": "workflow_name",
    "status": "status",
}
PAGE_SIZE = 25
# The cost columns are numeric(20, 12): 8 digits before the point.
MAX_AMOUNT = Decimal(10**8)
FILTER_KEYS = (
    "q",
    "status",
    "workflow",
    "requester",
    "date_from",
    "date_to",
    "cost_min",
    "cost_max",
    "escalated",
    "model",
    "sort",
    "dir",
)


@dataclass
class RunFilters:
    q: str = ""
    status: str = ""
    workflow: str = ""
    requester: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    cost_min: Decimal | None = None
    cost_max: Decimal | None = None
    escalated: str = ""  # "", "yes", "no"
    model: str = ""
    sort: str = "created"
    desc: bool = True
    errors: list[str] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)

    def querystring(self, **overrides: str) -> str:
        """The filters as URL parameters (cursors dropped), with overrides applied."""
        params = {k: v for k, v in self.raw.items() if v and k in FILTER_KEYS}
        params.update({k: v for k, v in overrides.items()})
        return urlencode({k: v for k, v in params.items() if v})


def _date(value: str, label: str, errors: list[str]) -> dt.date | None:
    if not value:
        return None
    try:
        return untrusted.check_day(dt.date.fromisoformat(value), label)  # type: ignore[return-value]
    except untrusted.Rejected as exc:
        errors.append(f"{label} {exc.fields[label]}.")
        return None
    except ValueError:
        errors.append(f"{label} '{value}' is not a date; use YYYY-MM-DD.")
        return None


def _money(value: str, label: str, errors: list[str]) -> Decimal | None:
    if not value:
        return None
    try:
        amount = Decimal(value.strip().lstrip("$"))
    except InvalidOperation:
        errors.append(f"{label} '{value}' is not an amount; use a number such as 0.50.")
        return None
    if not amount.is_finite() or amount < 0:
        errors.append(f"{label} must be zero or more.")
        return None
    if amount >= MAX_AMOUNT:
        # Beyond what the cost columns (numeric(20, 12)) can hold: Postgres refuses to compare.
        errors.append(f"{label} must be less than {MAX_AMOUNT:,}.")
        return None
    return amount


def parse_filters(params: Any) -> RunFilters:
    """Read the filters from a QueryDict; unusable values are dropped with a message."""
    raw = {k: params.get(k, "").strip() for k in FILTER_KEYS}
    errors: list[str] = []
    f = RunFilters(raw=raw, errors=errors)
    f.q = raw["q"][:200]
    if raw["status"]:
        if raw["status"] in Run.Status.values:
            f.status = raw["status"]
        else:
            errors.append(f"Unknown status '{raw['status']}'.")
    f.workflow, f.requester, f.model = raw["workflow"], raw["requester"], raw["model"]
    f.date_from = _date(raw["date_from"], "From date", errors)
    f.date_to = _date(raw["date_to"], "To date", errors)
    if f.date_from and f.date_to and f.date_from > f.date_to:
        errors.append("The from date is after the to date.")
    f.cost_min = _money(raw["cost_min"], "Minimum cost", errors)
    f.cost_max = _money(raw["cost_max"], "Maximum cost", errors)
    if raw["escalated"] in ("yes", "no"):
        f.escalated = raw["escalated"]
    if raw["sort"]:
        if raw["sort"] in SORTS:
            f.sort = raw["sort"]
        else:
            errors.append(f"Cannot sort by '{raw['sort']}'.")
    f.desc = raw["dir"] != "asc"
    return f


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def search_condition(q: str) -> Q:
    """Runs whose input or result, or any of whose tool payloads, match ``q``."""
    query = SearchQuery(q, search_type="websearch", config="simple")
    # Two uncorrelated IN subqueries: Postgres runs each once on its GIN index and probes a
    # hash per run, instead of an EXISTS per row.
    condition = Q(pk__in=Run.objects.filter(search_vector=query).values("pk")) | Q(
        pk__in=ToolCall.objects.filter(search_vector=query).values("run_id")
    )
    with contextlib.suppress(ValueError):
        condition |= Q(pk=uuid.UUID(q))
    return condition


def filtered_runs(user: Any, f: RunFilters) -> QuerySet[Run]:
    """The runs this user may see that match the filters (unordered)."""
    runs = visible_runs(user)
    if f.status:
        runs = runs.filter(status=f.status)
    if f.workflow:
        runs = runs.filter(workflow_name=f.workflow)
    if f.requester:
        runs = runs.filter(requested_by__username=f.requester)
    if f.date_from:
        runs = runs.filter(created_at__gte=_day_start(f.date_from))
    if f.date_to:
        runs = runs.filter(created_at__lt=_day_start(f.date_to + dt.timedelta(days=1)))
    if f.cost_min is not None:
        runs = runs.filter(cost_usd__gte=f.cost_min)
    if f.cost_max is not None:
        runs = runs.filter(cost_usd__lte=f.cost_max)
    if f.escalated:
        has_ticket = Exists(EscalationTicket.objects.filter(run=OuterRef("pk")))
        runs = runs.filter(has_ticket if f.escalated == "yes" else ~has_ticket)
    if f.model:
        runs = runs.filter(Exists(ModelCall.objects.filter(run=OuterRef("pk"), model=f.model)))
    if f.q:
        runs = runs.filter(search_condition(f.q))
    return runs


def ordered(runs: QuerySet[Run], f: RunFilters) -> QuerySet[Run]:
    column = SORTS[f.sort]
    sign = "-" if f.desc else ""
    return runs.order_by(f"{sign}{column}", f"{sign}id")


# --- keyset cursors ------------------------------------------------------------------------


class BadCursor(ValueError):
    pass


def _cursor_value(run: Run, column: str) -> str:
    value = getattr(run, column)
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def encode_cursor(run: Run, f: RunFilters) -> str:
    body = json.dumps(
        [f.sort, _cursor_value(run, SORTS[f.sort]), str(run.pk)], separators=(",", ":")
    )
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(token: str, f: RunFilters) -> tuple[Any, uuid.UUID]:
    try:
        padded = token + "=" * (-len(token) % 4)
        sort, value, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if sort != f.sort:
            raise BadCursor("the sort order changed")
        column = SORTS[sort]
        # The cursor comes from the URL: a value the column cannot compare (an amount beyond
        # numeric(20, 12), NaN, a moment past the calendar) is refused here, not by Postgres.
        if column == "created_at":
            value = untrusted.check_day(dt.datetime.fromisoformat(value), "cursor")
        elif column == "cost_usd":
            value = Decimal(value)
            if not value.is_finite() or abs(value) >= MAX_AMOUNT:
                raise ValueError(f"{value} is not an amount the runs can be sorted by")
        return value, uuid.UUID(pk)
    except (ValueError, TypeError, KeyError, InvalidOperation, binascii.Error) as exc:
        raise BadCursor(f"That page link is not valid ({exc}); showing the first page.") from exc


def _after(column: str, value: Any, pk: uuid.UUID, op: str) -> RawSQL:
    # A row comparison, which Postgres answers from the (column, id) index directly. Column
    # and operator come from SORTS and this module, never from the request; values are params.
    if column not in SORTS.values() or op not in ("<", ">"):
        raise ValueError(f"not a keyset column/operator: {column} {op}")
    table = Run._meta.db_table
    sql = f'("{table}"."{column}", "{table}"."id") {op} (%s, %s)'
    return RawSQL(sql, [value, pk], output_field=BooleanField())  # noqa: S611


@dataclass
class Page:
    runs: list[Run]
    next_cursor: str = ""
    prev_cursor: str = ""


def keyset_page(
    runs: QuerySet[Run], f: RunFilters, after: str = "", before: str = "", size: int = PAGE_SIZE
) -> Page:
    """One page of ``runs`` in the filters' order, after (or before) a cursor.

    Raises BadCursor for a tampered or stale cursor.
    """
    column = SORTS[f.sort]
    forward_op = "<" if f.desc else ">"
    backward_op = ">" if f.desc else "<"
    if before:
        value, pk = decode_cursor(before, f)
        flipped = RunFilters(sort=f.sort, desc=not f.desc)
        rows = list(
            ordered(runs, flipped).filter(_after(column, value, pk, backward_op))[: size + 1]
        )
        has_more_before = len(rows) > size
        rows = rows[:size][::-1]
        return Page(
            rows,
            next_cursor=encode_cursor(rows[-1], f) if rows else "",
            prev_cursor=encode_cursor(rows[0], f) if rows and has_more_before else "",
        )
    qs = ordered(runs, f)
    if after:
        value, pk = decode_cursor(after, f)
        qs = qs.filter(_after(column, value, pk, forward_op))
    rows = list(qs[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return Page(
        rows,
        next_cursor=encode_cursor(rows[-1], f) if rows and has_more else "",
        prev_cursor=encode_cursor(rows[0], f) if rows and after else "",
    )
