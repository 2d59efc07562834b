"""Where the money went: spend by day, workflow, user and model, savings, top runs, budgets.

Spend is the sum of ``ModelCall.cost_usd`` (each call priced once, from its usage, when it
was answered), dated by when the call was made. Everything is aggregated in Postgres.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from costs import budgets
from costs.pricing import batch_saving_sql, cache_saving_sql
from orchestration.models import ModelCall, Run

ZERO = Decimal(0)
PERIODS = (7, 30, 90)
_MONEY = DecimalField(max_digits=20, decimal_places=10)


def _sum(expression: Any, **options: Any) -> Coalesce:
    return Coalesce(
        Sum(expression, **options), Value(ZERO, output_field=_MONEY), output_field=_MONEY
    )


@dataclass
class SpendReport:
    since: dt.datetime
    days: int
    total: Decimal
    calls: int
    cache_saving: Decimal
    batch_saving: Decimal
    by_day: list[dict[str, Any]]
    by_workflow: list[dict[str, Any]]
    by_user: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    top_runs: list[Run]
    budgets: list[budgets.BudgetUsage]
    # Of ``total``: what evaluation runs (Run.is_evaluation) spent, shown apart from production.
    evaluation: Decimal = ZERO
    evaluation_calls: int = 0


def calls_since(since: dt.datetime):
    return ModelCall.objects.filter(created_at__gte=since, status=ModelCall.Status.OK)


def _grouped(qs, field: str, *, roles: bool = False) -> list[dict[str, Any]]:
    """Calls, tokens, cache saving and cost per value of ``field``; with ``roles``, also the
    roles (ModelCall.role) those calls played, e.g. a model that classifies and formats."""
    extra = {"roles": ArrayAgg("role", distinct=True, order_by="role")} if roles else {}
    rows = (
        qs.values(field)
        .annotate(
            calls=Count("pk"),
            cost=_sum("cost_usd"),
            cache_saving=_sum(cache_saving_sql()),
            batch_saving=_sum(batch_saving_sql()),
            tokens=Sum("input_tokens")
            + Sum("output_tokens")
            + Sum("cache_read_tokens")
            + Sum("cache_write_5m_tokens")
            + Sum("cache_write_1h_tokens"),
            **extra,
        )
        .order_by("-cost")
    )
    return [
        {
            "name": r[field] or "-",
            "calls": r["calls"],
            "cost": r["cost"],
            "cache_saving": r["cache_saving"],
            "batch_saving": r["batch_saving"],
            "tokens": r["tokens"] or 0,
            "roles": r.get("roles") or [],
        }
        for r in rows
    ]


def period_since(days: int, now: dt.datetime | None = None) -> dt.datetime:
    """Local midnight at the start of the last ``days`` days (today included)."""
    first_day = (timezone.localtime(now or timezone.now()) - dt.timedelta(days=days - 1)).date()
    return timezone.make_aware(dt.datetime.combine(first_day, dt.time.min))


def spend_report(days: int = 30, now: dt.datetime | None = None) -> SpendReport:
    since = period_since(days, now)
    first_day = timezone.localtime(since).date()
    calls = calls_since(since)
    totals = calls.aggregate(
        total=_sum("cost_usd"),
        n=Count("pk"),
        cache=_sum(cache_saving_sql()),
        batch=_sum(batch_saving_sql()),
        evaluation=_sum("cost_usd", filter=Q(run__is_evaluation=True)),
        evaluation_calls=Count("pk", filter=Q(run__is_evaluation=True)),
    )
    per_day = {
        r["day"]: r["cost"]
        for r in calls.annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(cost=_sum("cost_usd"))
    }
    by_day = [
        {
            "day": first_day + dt.timedelta(days=i),
            "cost": per_day.get(first_day + dt.timedelta(days=i), ZERO),
        }
        for i in range(days)
    ]
    top_runs = list(
        Run.objects.filter(created_at__gte=since, cost_usd__gt=0)
        .select_related("requested_by")
        .order_by("-cost_usd")[:10]
    )
    return SpendReport(
        since=since,
        days=days,
        total=totals["total"],
        calls=totals["n"],
        cache_saving=totals["cache"],
        batch_saving=totals["batch"],
        by_day=by_day,
        by_workflow=_grouped(calls, "run__workflow_name"),
        by_user=_grouped(calls, "run__requested_by__username"),
        by_model=_grouped(calls, "model", roles=True),
        top_runs=top_runs,
        budgets=[budgets.usage(b) for b in budgets.in_force().select_related("user")],
        evaluation=totals["evaluation"],
        evaluation_calls=totals["evaluation_calls"],
    )


CSV_HEADER = [
    "date",
    "workflow",
    "user",
    "model",
    "calls",
    "input_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "output_tokens",
    "cost_usd",
    "cache_saving_usd",
    "batch_saving_usd",
]


def csv_rows(since: dt.datetime) -> Iterator[list[Any]]:
    """One row per day, workflow, user and model: what the costs page shows, for a spreadsheet."""
    yield CSV_HEADER
    rows = (
        calls_since(since)
        .annotate(day=TruncDate("created_at", tzinfo=timezone.get_current_timezone()))
        .values("day", "run__workflow_name", "run__requested_by__username", "model")
        .annotate(
            calls=Count("pk"),
            inp=Sum("input_tokens"),
            w5=Sum("cache_write_5m_tokens"),
            w1h=Sum("cache_write_1h_tokens"),
            read=Sum("cache_read_tokens"),
            out=Sum("output_tokens"),
            cost=_sum("cost_usd"),
            cache=_sum(cache_saving_sql()),
            batch=_sum(batch_saving_sql()),
        )
        .order_by("day", "run__workflow_name", "run__requested_by__username", "model")
    )
    for r in rows.iterator(chunk_size=2000):
        yield [
            r["day"].isoformat(),
            r["run__workflow_name"],
            r["run__requested_by__username"],
            r["model"],
            r["calls"],
            r["inp"],
            r["w5"],
            r["w1h"],
            r["read"],
            r["out"],
            _fixed(r["cost"]),
            _fixed(r["cache"]),
            _fixed(r["batch"]),
        ]


def _fixed(value: Decimal) -> str:
    """Exact, as stored (12 places): rows rounded one by one would not add up to the total
    once a day has several rows (one per model) whose costs have sub-micro-dollar parts."""
    return f"{value.quantize(Decimal('0.000000000001'))}"


def run_by_model(run: Run) -> list[dict[str, Any]]:
    """The run's answered calls per model: the roles it played, calls, tokens, cost (the run
    page's line per model)."""
    return _grouped(run.model_calls.filter(status=ModelCall.Status.OK), "model", roles=True)


def run_savings(run: Run) -> dict[str, Decimal]:
    """What prompt caching and batch pricing saved on one run (the run page shows it)."""
    totals = run.model_calls.filter(status=ModelCall.Status.OK, price__isnull=False).aggregate(
        cache=_sum(cache_saving_sql()), batch=_sum(batch_saving_sql())
    )
    return {"cache": totals["cache"], "batch": totals["batch"]}
