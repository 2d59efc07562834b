"""Budgets and the per-user limit on starting runs: the one place they are decided.

``launch.start_run`` (the path the page, the command and the API all take) calls
``check_start`` inside its transaction, under one advisory lock, so two starts at the same
moment cannot both squeeze under the same budget or the same daily limit.

What a budget counts (its "committed spend" for the current period):
- the actual cost of every model call made in the period (``ModelCall.created_at``),
  within the budget's scope (every run, one workflow's runs, or one user's runs), plus
- what unfinished runs in that scope may still spend: their estimate's upper bound minus
  what they have cost so far, and never less than what their calls in flight have reserved
  against their ceilings (costs.accounting.reserve): reserved money is committed. So
  starting twenty runs at once cannot slip past a budget before any of them has spent
  anything, and a run spending past its estimate counts what it holds.
A run may start when committed spend + its own upper estimate stays within every hard
budget; a soft budget it would pass is recorded as a warning on the run.
Periods follow settings.TIME_ZONE: a day starts at local midnight, a month on the 1st.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import DecimalField, ExpressionWrapper, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from costs.models import Budget
from orchestration.models import ModelCall, Run

ZERO = Decimal("0")
# pg_advisory_xact_lock key for "a run is being started" (any stable 64-bit number).
START_LOCK_KEY = 0x5354_4152_5452_554E  # "STARTRUN"
UNFINISHED = (
    Run.Status.REQUESTED,
    Run.Status.AWAITING_APPROVAL,
    Run.Status.APPROVED,
    Run.Status.QUEUED,
    Run.Status.RUNNING,
    Run.Status.AWAITING_REVIEW,
    Run.Status.AWAITING_SUBAGENT,
)


class StartRefused(Exception):
    """A hard budget or the daily start limit refuses the run; ``code`` is RunRefused's code."""

    def __init__(self, message: str, code: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True)
class BudgetUsage:
    budget: Budget
    since: dt.datetime
    spent: Decimal  # actual cost of calls in the period
    outstanding: Decimal  # what unfinished runs in scope may still spend

    @property
    def committed(self) -> Decimal:
        return self.spent + self.outstanding

    @property
    def percent(self) -> int:
        if not self.budget.limit_usd:
            return 100
        return int(self.committed * 100 / self.budget.limit_usd)

    @property
    def label(self) -> str:
        return describe(self.budget)


def describe(budget: Budget) -> str:
    kind = "hard" if budget.hard else "soft"
    period = "daily" if budget.period == Budget.Period.DAY else "monthly"
    if budget.scope == Budget.Scope.WORKFLOW:
        target = f"workflow {budget.workflow_name}"
    elif budget.scope == Budget.Scope.USER:
        target = f"user {budget.user.get_username()}"
    else:
        target = "global"
    return f"the {kind} {period} {target} budget (${budget.limit_usd:,.2f})"


def period_start(period: str, now: dt.datetime | None = None) -> dt.datetime:
    local = timezone.localtime(now or timezone.now())
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Budget.Period.MONTH:
        start = start.replace(day=1)
    return start


def _scope_filter(budget: Budget, prefix: str = "") -> Q:
    if budget.scope == Budget.Scope.WORKFLOW:
        return Q(**{f"{prefix}workflow_name": budget.workflow_name})
    if budget.scope == Budget.Scope.USER:
        return Q(**{f"{prefix}requested_by_id": budget.user_id})
    return Q()


def usage(budget: Budget, now: dt.datetime | None = None) -> BudgetUsage:
    since = period_start(budget.period, now)
    money = DecimalField(max_digits=14, decimal_places=6)
    spent = ModelCall.objects.filter(
        _scope_filter(budget, "run__"), created_at__gte=since
    ).aggregate(total=Coalesce(Sum("cost_usd"), Value(ZERO, output_field=money)))["total"]
    remaining = ExpressionWrapper(
        Greatest(
            Coalesce(F("estimate_usd"), Value(ZERO, output_field=money)) - F("cost_usd"),
            F("reserved_usd"),
            Value(ZERO, output_field=money),
        ),
        output_field=money,
    )
    outstanding = Run.objects.filter(_scope_filter(budget), status__in=UNFINISHED).aggregate(
        total=Coalesce(Sum(remaining), Value(ZERO, output_field=money))
    )["total"]
    return BudgetUsage(budget=budget, since=since, spent=spent, outstanding=outstanding)


# A budget's identity: a later row with the same key replaces the earlier one once in force.
BUDGET_KEY = ("scope", "workflow_name", "user_id", "period", "hard")


def in_force(now: dt.datetime | None = None) -> QuerySet[Budget]:
    """The budgets that apply now: per key, the row with the latest effective_from not in the
    future (rows are history, see costs.changes)."""
    return (
        Budget.objects.filter(effective_from__lte=now or timezone.now())
        .order_by(*BUDGET_KEY, "-effective_from", "-pk")
        .distinct(*BUDGET_KEY)
    )


def applicable(workflow_name: str, user: Any) -> list[Budget]:
    return list(
        in_force()
        .filter(
            Q(scope=Budget.Scope.GLOBAL)
            | Q(scope=Budget.Scope.WORKFLOW, workflow_name=workflow_name)
            | Q(scope=Budget.Scope.USER, user_id=user.pk)
        )
        .select_related("user")
    )


def check_rate_limit(user: Any, now: dt.datetime | None = None) -> None:
    now = now or timezone.now()
    limit = settings.RUNS_PER_USER_PER_DAY
    window = now - dt.timedelta(hours=24)
    recent = Run.objects.filter(requested_by_id=user.pk, created_at__gt=window)
    count = recent.count()
    if count >= limit:
        oldest = recent.order_by("created_at").values_list("created_at", flat=True)[count - limit]
        free_at = timezone.localtime(oldest + dt.timedelta(hours=24))
        raise StartRefused(
            f"You have started {count} runs in the last 24 hours; the limit is {limit} a day. "
            f"The next one can start at {free_at:%Y-%m-%d %H:%M} {free_at.tzname()}.",
            code="rate_limited",
            retry_after=max(1.0, (oldest + dt.timedelta(hours=24) - now).total_seconds()),
        )


def check_start(
    workflow_name: str, user: Any, estimate_usd: Decimal, *, lock: bool = True
) -> list[str]:
    """Refuse (StartRefused) or allow a run of this estimate; returns soft-budget warnings.

    Call inside the transaction that creates the run: it takes the start lock (``lock=False``
    only for a preview that writes nothing).
    """
    if lock:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [START_LOCK_KEY])
    check_rate_limit(user)
    warnings = []
    for budget in applicable(workflow_name, user):
        use = usage(budget)
        after = use.committed + estimate_usd
        if after <= budget.limit_usd:
            continue
        over = after - budget.limit_usd
        message = (
            f"This run (estimated up to ${estimate_usd:,.2f}) would pass {describe(budget)} by "
            f"${over:,.2f}: ${use.spent:,.2f} spent this {_period_word(budget)}"
            + (
                f" + ${use.outstanding:,.2f} still estimated for unfinished runs"
                if use.outstanding
                else ""
            )
            + "."
        )
        if budget.hard:
            raise StartRefused(message, code="budget_exceeded")
        warnings.append(message)
    return warnings


def _period_word(budget: Budget) -> str:
    return "day" if budget.period == Budget.Period.DAY else "month"
