"""Reading the roll-ups: the query API behind the operations page, the daily digest, /metrics
and the alert rules. Nothing here reads runs, model calls or tool calls; everything merges
``Rollup`` rows (day rows for whole local days, hour rows for windows inside a day).

    period = figures.Period.ending(days=7)             # the last 7 local days, today included
    runs = figures.total(Rollup.Kind.RUN, period)      # a Rollup: count, outcomes, latency...
    figures.success_rate(runs.outcomes)                # 0.0 .. 1.0, or None
    figures.by_name(Rollup.Kind.TOOL_CALL, period)     # {tool: Rollup}
    figures.per_day(Rollup.Kind.MODEL_CALL, period)    # {date: Rollup}, every day present
    figures.window(Rollup.Kind.RETRY, since, until)    # hour rows: figures inside a day

Figures are as fresh as the last fold (beat folds every ROLLUP_FOLD_SECONDS); call
``insight.rollups.fold()`` first when a reader needs the last minute too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from insight import histogram
from insight.models import Rollup
from insight.rollups import add, local_day_start, new_row

K = Rollup.Kind
# Outcomes that count in the success rate: runs that ran and ended. A rejected run never
# started (a manager said no), so it is neither a success nor a failure of the workflow.
RATED_OUTCOMES = ("succeeded", "failed", "halted", "cancelled")
PERIODS = (1, 7, 30, 90)


@dataclass(frozen=True)
class Period:
    """``days`` whole local days ending with ``last_day`` (inclusive)."""

    last_day: dt.date
    days: int

    @classmethod
    def ending(cls, days: int, last_day: dt.date | None = None) -> Period:
        return cls(last_day=last_day or timezone.localdate(), days=days)

    @property
    def first_day(self) -> dt.date:
        return self.last_day - dt.timedelta(days=self.days - 1)

    @property
    def start(self) -> dt.datetime:
        return local_day_start(self.first_day)

    @property
    def end(self) -> dt.datetime:
        return local_day_start(self.last_day + dt.timedelta(days=1))

    def previous(self) -> Period:
        return Period(last_day=self.first_day - dt.timedelta(days=1), days=self.days)

    def day_list(self) -> list[dt.date]:
        return [self.first_day + dt.timedelta(days=i) for i in range(self.days)]


_cache: ContextVar[dict[tuple, list[Rollup]] | None] = ContextVar(
    "insight_figures_cache", default=None
)


def rows(kind: str, period: Period, workflow: str | None = None) -> Any:
    """The day rows of one kind in a period (inside ``report()``, read once and reused)."""
    cache = _cache.get()
    key = (kind, period, workflow)
    if cache is not None and key in cache:
        return cache[key]
    found = _rows(kind, period, workflow)
    if cache is not None:
        cache[key] = found = list(found)
    return found


def _rows(kind: str, period: Period, workflow: str | None = None) -> QuerySet[Rollup]:
    qs = Rollup.objects.filter(
        grain=Rollup.Grain.DAY, kind=kind, start__gte=period.start, start__lt=period.end
    )
    return qs.filter(workflow=workflow) if workflow else qs


def _merge(
    rs: Any, kind: str, key: Callable[[Rollup], Any], histograms: bool = True
) -> dict[Any, Rollup]:
    out: dict[Any, Rollup] = {}
    for r in rs:
        k = key(r)
        row = out.get(k)
        if row is None:
            row = out[k] = new_row(r.grain, r.start, kind, "", "", "")
        add(row, r, histograms=histograms)
    return out


def empty(kind: str) -> Rollup:
    return new_row(Rollup.Grain.DAY, local_day_start(timezone.localdate()), kind, "", "", "")


def total(
    kind: str, period: Period, workflow: str | None = None, *, histograms: bool = True
) -> Rollup:
    """Every bucket of the period merged into one (``histograms=False``: counts and cost only)."""
    merged = _merge(rows(kind, period, workflow), kind, lambda r: None, histograms)
    return merged.get(None) or empty(kind)


def by_name(kind: str, period: Period, workflow: str | None = None) -> dict[str, Rollup]:
    """Merged per name (model, tool, reason), largest count first."""
    merged = _merge(rows(kind, period, workflow), kind, lambda r: r.name)
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1].count, kv[0])))


def by_workflow(kind: str, period: Period, workflow: str | None = None) -> dict[str, Rollup]:
    merged = _merge(rows(kind, period, workflow), kind, lambda r: r.workflow)
    return dict(sorted(merged.items()))


def per_day(
    kind: str, period: Period, workflow: str | None = None, *, histograms: bool = True
) -> dict[dt.date, Rollup]:
    """One merged Rollup per day of the period (empty ones included), in order.

    The days without data share one empty row (read it, do not change it): building a
    model instance for each was a third of the 90-day operations page (bench/dashboard.py
    --profile)."""
    merged = _merge(
        rows(kind, period, workflow), kind, lambda r: timezone.localtime(r.start).date(), histograms
    )
    blank = empty(kind)
    return {d: merged.get(d) or blank for d in period.day_list()}


def per_day_by_name(
    kind: str, period: Period, workflow: str | None = None
) -> dict[str, dict[dt.date, int]]:
    """{name: {day: count}} with every day of the period (retries, escalations by reason)."""
    out: dict[str, dict[dt.date, int]] = {}
    for r in rows(kind, period, workflow):
        days = out.setdefault(r.name, dict.fromkeys(period.day_list(), 0))
        days[timezone.localtime(r.start).date()] += r.count
    return dict(sorted(out.items()))


def window(
    kind: str, since: dt.datetime, until: dt.datetime, workflow: str | None = None
) -> Rollup:
    """Hour buckets starting in [since, until) merged (for windows shorter than a day)."""
    qs = Rollup.objects.filter(
        grain=Rollup.Grain.HOUR, kind=kind, start__gte=since, start__lt=until
    )
    if workflow:
        qs = qs.filter(workflow=workflow)
    return _merge(qs, kind, lambda r: None).get(None) or empty(kind)


def workflows() -> list[str]:
    """Every workflow with a figure (from the all-time rows)."""
    return list(
        Rollup.objects.filter(grain=Rollup.Grain.ALL)
        .values_list("workflow", flat=True)
        .distinct()
        .order_by("workflow")
    )


def success_rate(outcomes: dict[str, int]) -> float | None:
    """succeeded / runs that ended (succeeded, failed, halted, cancelled); None without any."""
    ended = sum(outcomes.get(s, 0) for s in RATED_OUTCOMES)
    return outcomes.get("succeeded", 0) / ended if ended else None


def error_rate(outcomes: dict[str, int]) -> float | None:
    rate = success_rate(outcomes)
    return None if rate is None else 1 - rate


@dataclass
class Latency:
    """p50/p95 (ms) of a histogram, with its count and mean."""

    count: int
    p50: float | None
    p95: float | None
    mean: float | None

    @classmethod
    def of(cls, hist: list[int], n: int, total_ms: int) -> Latency:
        return cls(
            count=n,
            p50=histogram.quantile(hist, 0.5),
            p95=histogram.quantile(hist, 0.95),
            mean=total_ms / n if n else None,
        )


def latency(row: Rollup) -> Latency:
    return Latency.of(row.latency, row.latency_count, row.latency_sum_ms)


def ttft(row: Rollup) -> Latency:
    return Latency.of(row.ttft, row.ttft_count, row.ttft_sum_ms)


@dataclass
class Comparison:
    """One figure for this period and the previous one."""

    current: Any
    previous: Any

    @property
    def change(self) -> float | None:
        """Relative change (0.25 = 25% up); None when either side is missing or zero."""
        try:
            if self.current is None or not self.previous:
                return None
            return float(self.current) / float(self.previous) - 1
        except (TypeError, ValueError):
            return None


@dataclass
class LatencyLine:
    name: str
    current: Latency
    previous: Latency
    current_ttft: Latency | None = None
    previous_ttft: Latency | None = None


@dataclass
class Report:
    """Everything the operations page and the daily digest show for one period."""

    period: Period
    previous: Period
    workflow: str | None
    runs: Comparison
    outcomes: dict[str, Comparison]
    success_rate: Comparison
    success_by_day: tuple[list[float | None], list[float | None]]
    cost: Comparison
    cost_by_day: tuple[list[float], list[float]]
    runs_latency: list[LatencyLine]
    model_latency: list[LatencyLine]
    step_latency: list[LatencyLine]
    tool_latency: list[LatencyLine]
    tool_calls: Comparison
    model_calls: Comparison
    retries: dict[str, Comparison]
    retries_by_day: dict[str, list[int]]
    retries_prev_by_day: list[int]
    escalations: dict[str, Comparison]
    escalations_by_day: dict[str, list[int]]
    escalations_prev_by_day: list[int]
    extra: dict[str, Any] = field(default_factory=dict)


def _latency_lines(
    kind: str,
    now: Period,
    before: Period,
    workflow: str | None,
    *,
    by: str = "name",
    with_ttft: bool = False,
) -> list[LatencyLine]:
    group = by_workflow if by == "workflow" else by_name
    cur, prev = group(kind, now, workflow), group(kind, before, workflow)
    lines = []
    for name in list(cur) + [n for n in prev if n not in cur]:
        c, p = cur.get(name) or empty(kind), prev.get(name) or empty(kind)
        line = LatencyLine(name=name, current=latency(c), previous=latency(p))
        if with_ttft:
            line.current_ttft, line.previous_ttft = ttft(c), ttft(p)
        lines.append(line)
    return lines


def _by_reason(
    kind: str, now: Period, before: Period, workflow: str | None
) -> dict[str, Comparison]:
    cur, prev = by_name(kind, now, workflow), by_name(kind, before, workflow)
    names = sorted(set(cur) | set(prev))
    return {
        n: Comparison((cur.get(n) or empty(kind)).count, (prev.get(n) or empty(kind)).count)
        for n in names
    }


def _day_totals(kind: str, period: Period, workflow: str | None) -> list[int]:
    return [r.count for r in per_day(kind, period, workflow, histograms=False).values()]


def _both_periods(period: Period, workflow: str | None) -> dict[tuple, list[Rollup]]:
    """The day rows of every kind in the period and the one before it, in one query, filed
    as ``rows()`` files them (one query instead of one per kind and period: 22 -> 11 on the
    operations page)."""
    before = period.previous()
    found: dict[tuple, list[Rollup]] = {
        (kind, p, workflow): [] for kind in K.values for p in (period, before)
    }
    qs = Rollup.objects.filter(
        grain=Rollup.Grain.DAY, start__gte=before.start, start__lt=period.end
    )
    for r in qs.filter(workflow=workflow) if workflow else qs:
        key = (r.kind, period if r.start >= period.start else before, workflow)
        found.setdefault(key, []).append(r)
    return found


def report(period: Period, workflow: str | None = None) -> Report:
    """Everything the page shows: the day rows of both periods are read once, in one query."""
    token = _cache.set(_both_periods(period, workflow))
    try:
        return _report(period, workflow)
    finally:
        _cache.reset(token)


def _report(period: Period, workflow: str | None) -> Report:
    before = period.previous()
    runs_now = total(K.RUN, period, workflow, histograms=False)
    runs_before = total(K.RUN, before, workflow, histograms=False)
    statuses = sorted(set(runs_now.outcomes) | set(runs_before.outcomes))
    mc_now, mc_before = (
        per_day(K.MODEL_CALL, period, workflow, histograms=False),
        per_day(K.MODEL_CALL, before, workflow, histograms=False),
    )
    run_days_now, run_days_before = (
        per_day(K.RUN, period, workflow, histograms=False),
        per_day(K.RUN, before, workflow, histograms=False),
    )
    retries_now = per_day_by_name(K.RETRY, period, workflow)
    esc_now = per_day_by_name(K.ESCALATION, period, workflow)
    return Report(
        period=period,
        previous=before,
        workflow=workflow,
        runs=Comparison(runs_now.count, runs_before.count),
        outcomes={
            s: Comparison(runs_now.outcomes.get(s, 0), runs_before.outcomes.get(s, 0))
            for s in statuses
        },
        success_rate=Comparison(
            success_rate(runs_now.outcomes), success_rate(runs_before.outcomes)
        ),
        success_by_day=(
            [success_rate(r.outcomes) for r in run_days_now.values()],
            [success_rate(r.outcomes) for r in run_days_before.values()],
        ),
        cost=Comparison(
            sum(r.cost_usd for r in mc_now.values()), sum(r.cost_usd for r in mc_before.values())
        ),
        cost_by_day=(
            [float(r.cost_usd) for r in mc_now.values()],
            [float(r.cost_usd) for r in mc_before.values()],
        ),
        runs_latency=_latency_lines(K.RUN, period, before, workflow, by="workflow"),
        model_latency=_latency_lines(K.MODEL_CALL, period, before, workflow, with_ttft=True),
        step_latency=_latency_lines(K.STEP, period, before, workflow),
        tool_latency=_latency_lines(K.TOOL_CALL, period, before, workflow),
        tool_calls=Comparison(
            total(K.TOOL_CALL, period, workflow, histograms=False).count,
            total(K.TOOL_CALL, before, workflow, histograms=False).count,
        ),
        model_calls=Comparison(
            sum(r.count for r in mc_now.values()), sum(r.count for r in mc_before.values())
        ),
        retries=_by_reason(K.RETRY, period, before, workflow),
        retries_by_day={n: list(d.values()) for n, d in retries_now.items()},
        retries_prev_by_day=_day_totals(K.RETRY, before, workflow),
        escalations=_by_reason(K.ESCALATION, period, before, workflow),
        escalations_by_day={n: list(d.values()) for n, d in esc_now.items()},
        escalations_prev_by_day=_day_totals(K.ESCALATION, before, workflow),
    )


def all_time(kind: str | None = None) -> QuerySet[Rollup]:
    """One row per series (kind, workflow, name, role) since the first fold: /metrics reads these."""
    qs = Rollup.objects.filter(grain=Rollup.Grain.ALL)
    return qs.filter(kind=kind) if kind else qs
