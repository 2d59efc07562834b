"""Each requester's recent runs and spend, for the approval queue (and budgets to come).

The figure is "runs the requester started in the last RECENT_SPEND_DAYS UTC days, today
included, and what they cost so far". Complete days come from the roll-up
(``costs.models.RequesterDailySpend``), rebuilt by beat every REQUESTER_SPEND_REFRESH_SECONDS;
the days after the last rebuild (normally just today) are read live from the runs (index
``run_requester_created``, cost included). So a page reads at most a day or two of runs per
requester, not 30 (bench/RESULTS.md, "Dashboard pages"). What a rebuild has not seen yet: a
charge since the last rebuild to a run started on an earlier day (a run that ran past
midnight, or resumed after a review), at most REQUESTER_SPEND_REFRESH_SECONDS old.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone

from costs.models import RequesterDailySpend
from orchestration.models import Run

RECENT_SPEND_DAYS = 30


@dataclass(frozen=True)
class RecentSpend:
    runs: int
    cost_usd: Decimal
    days: int = RECENT_SPEND_DAYS


def _today() -> dt.date:
    return timezone.now().astimezone(dt.UTC).date()


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def window_start(today: dt.date | None = None) -> dt.date:
    """The first day counted: RECENT_SPEND_DAYS days, today included."""
    return (today or _today()) - dt.timedelta(days=RECENT_SPEND_DAYS - 1)


def recent_spend(user_ids: set[int]) -> dict[int, RecentSpend]:
    """Each requester's runs and spend over the window (three small queries for the queue)."""
    if not user_ids:
        return {}
    today = _today()
    start = window_start(today)
    covered = RequesterDailySpend.objects.aggregate(m=Max("covered_through"))["m"]
    live_from = start if covered is None or covered < start else covered + dt.timedelta(days=1)
    totals = {uid: [0, Decimal(0)] for uid in user_ids}
    # Read even when the range is empty, so the page's query count does not depend on it.
    rolled = (
        RequesterDailySpend.objects.filter(
            requested_by_id__in=user_ids, day__gte=start, day__lt=live_from
        )
        .values("requested_by_id")
        .annotate(runs=Sum("runs"), cost=Sum("cost_usd"))
    )
    for r in rolled:
        totals[r["requested_by_id"]][0] += r["runs"]
        totals[r["requested_by_id"]][1] += r["cost"] or Decimal(0)
    live = (
        Run.objects.filter(requested_by_id__in=user_ids, created_at__gte=_midnight(live_from))
        .values("requested_by_id")
        .annotate(runs=Count("*"), cost=Sum("cost_usd"))  # index-only: run_requester_created
    )
    for r in live:
        totals[r["requested_by_id"]][0] += r["runs"]
        totals[r["requested_by_id"]][1] += r["cost"] or Decimal(0)
    return {uid: RecentSpend(runs, cost) for uid, (runs, cost) in totals.items()}


_REBUILD = """
    INSERT INTO costs_requesterdailyspend (requested_by_id, day, runs, cost_usd, covered_through)
    SELECT requested_by_id, (created_at AT TIME ZONE 'UTC')::date, count(*), sum(cost_usd), %s
    FROM orchestration_run
    WHERE created_at >= %s AND created_at < %s AND requested_by_id IS NOT NULL
    GROUP BY 1, 2
"""


def refresh(today: dt.date | None = None) -> int:
    """Rebuild the roll-up for the window's complete days (every day before today); rows of
    older days stay as history. One transaction: readers see the old rows or the new ones.
    Returns the rows written."""
    today = today or _today()
    start, through = window_start(today), today - dt.timedelta(days=1)
    with transaction.atomic():
        RequesterDailySpend.objects.filter(day__gte=start).delete()
        with connection.cursor() as cursor:
            cursor.execute(_REBUILD, [through, _midnight(start), _midnight(today)])
            # No run in those days writes nothing: recent_spend then reads the window live,
            # which is cheap for the same reason.
            return cursor.rowcount
