"""The fold: keeps ``Rollup`` buckets up to date from runs, model calls, tool calls and tickets.

Incremental, not a scan: each fold (beat, every ``ROLLUP_FOLD_SECONDS``) finds the hours that
changed since the last one and recomputes only those hours' buckets, then the days that hold
them. Which hours changed: those of rows that *finished* (``finished_at``; tickets: opened)
since the watermark minus ``ROLLUP_LAG_SECONDS``. A row gets its ``finished_at`` in Python
and commits a little later; a row committed up to the lag late, or stamped by a clock up to
the lag behind, is still seen by the next fold. Recomputing an hour is idempotent (its
buckets are replaced), so looking at an hour twice costs a query, never a double count.
``refold(day)`` recomputes a whole local day regardless of the watermark (the daily digest
does it for the day it reports, so a digest is exact even after a longer delay).

Where each record lands (bucket key: hour, workflow, name, role):

- run: runs in a final status, by the hour they finished; outcomes by final status;
  latency from ``started_at`` to ``finished_at`` (runs that never started have none).
- model_call: calls that are not pending, by the hour they were made (as the costs page
  dates spend); name = model, role = role; outcomes ok/error; latency and time to first
  token (when ModelCall has the field, see ``TTFT_FIELD``); cost.
- step: the run's own orchestrator calls that succeeded: from the call's start to the end
  of the last tool call it asked for (or its own end, without tools), by model.
- tool_call: finished attempts by the hour they started; name = tool; outcomes by status.
- retry: name = reason: ``tool_<status>`` (an attempt after one that ended so),
  ``model_error`` (a model call re-attempted by the engine or a fan-out job),
  ``sdk_http`` (the SDK's own HTTP retries inside one call), ``fanout_validation`` (a
  fan-out job's specialist asked again after the validator's FAIL).
- escalation: tickets by the hour they opened; name = reason.

Evaluation runs (``Run.is_evaluation``, the evaluation app's cases) are left out of every
kind: they fail cases on purpose and run by the dozen, so counting them would move the success
rate, ``CountersignErrorRate`` and the cost and latency figures of production. The alert rules
(``alerts.rules``) leave them out the same way; the costs page shows their share apart.

One fold at a time: a transaction-level advisory lock; a fold that finds it taken returns.
"""

# ruff: noqa: S608 - the SQL here names tables and columns from the models; every value is a parameter
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from insight import histogram
from insight.models import FoldWatermark, Rollup
from orchestration.models import ModelCall, Run, ToolCall
from reviews.models import EscalationTicket

K = Rollup.Kind
HOUR = dt.timedelta(hours=1)
# The all-time rows' start (they have no period; a fixed value keeps the unique key simple).
ALL_TIME_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FIGURES = [
    "count",
    "outcomes",
    "latency_count",
    "latency_sum_ms",
    "latency",
    "ttft_count",
    "ttft_sum_ms",
    "ttft",
    "cost_usd",
]
# pg_try_advisory_xact_lock key: "insight" fold (any constant unique in this codebase).
_LOCK_KEY = 0x1A51_6470
FINAL_RUN_STATUSES = tuple(str(s) for s in Run.FINAL)
# The engine's time-to-first-token column on ModelCall (engine-core's first_token_ms), once
# this codebase has it: the fold and the page pick it up without a change here.
TTFT_FIELD = next(
    (f.column for f in ModelCall._meta.concrete_fields if f.name in ("first_token_ms", "ttft_ms")),
    None,
)

RETRY_REASONS = {
    "model_error": "model call failed, called again",
    "sdk_http": "HTTP retry inside the SDK (429, 5xx, timeout)",
    "fanout_validation": "fan-out job failed validation, asked again",
}


def retry_reason_label(reason: str) -> str:
    if reason.startswith("tool_"):
        return f"tool attempt {reason[5:].replace('_', ' ')}, tried again"
    return RETRY_REASONS.get(reason, reason)


def _tables() -> dict[str, str]:
    return {
        "run": Run._meta.db_table,
        "mc": ModelCall._meta.db_table,
        "tc": ToolCall._meta.db_table,
        "ticket": EscalationTicket._meta.db_table,
    }


@dataclass
class FoldResult:
    folded: bool
    hours: int = 0
    days: int = 0
    rows: int = 0


def _ms(expr: str) -> str:
    return f"(extract(epoch from ({expr})) * 1000)::bigint"


def _source_queries() -> list[tuple[str, str]]:
    """(kind, SQL) pairs; each SQL takes (start, end) and returns rows of
    (hour, workflow, name, role, status, bucket, n, latency_n, latency_sum, cost, hist)
    where hist is 'latency' or 'ttft' (which histogram the bucket counts into)."""
    t = _tables()
    wb = histogram.width_bucket_sql
    run_ms = _ms("r.finished_at - r.started_at")
    step_end = f"coalesce((SELECT max(x.finished_at) FROM {t['tc']} x WHERE x.model_call_id = mc.id), mc.finished_at)"
    step_ms = _ms(f"{step_end} - mc.created_at")
    queries = [
        (
            K.RUN,
            f"""SELECT date_trunc('hour', r.finished_at), r.workflow_name, '', '', r.status,
                       {wb(run_ms)}, count(*), count(r.started_at), coalesce(sum({run_ms}), 0), 0, 'latency'
                FROM {t["run"]} r
                WHERE r.finished_at >= %s AND r.finished_at < %s AND NOT r.is_evaluation AND r.status IN ({",".join(["%s"] * len(FINAL_RUN_STATUSES))})
                GROUP BY 1, 2, 5, 6""",
        ),
        (
            K.MODEL_CALL,
            f"""SELECT date_trunc('hour', mc.created_at), r.workflow_name, mc.model, mc.role, mc.status,
                       {wb("mc.latency_ms")}, count(*), count(mc.latency_ms), coalesce(sum(mc.latency_ms), 0),
                       coalesce(sum(mc.cost_usd), 0), 'latency'
                FROM {t["mc"]} mc JOIN {t["run"]} r ON r.id = mc.run_id
                WHERE NOT r.is_evaluation AND mc.created_at >= %s AND mc.created_at < %s AND mc.status <> 'pending'
                GROUP BY 1, 2, 3, 4, 5, 6""",
        ),
        (
            K.STEP,
            f"""SELECT date_trunc('hour', mc.created_at), r.workflow_name, mc.model, '', 'ok',
                       {wb(step_ms)}, count(*), count(*), coalesce(sum({step_ms}), 0), 0, 'latency'
                FROM {t["mc"]} mc JOIN {t["run"]} r ON r.id = mc.run_id
                WHERE NOT r.is_evaluation AND mc.created_at >= %s AND mc.created_at < %s AND mc.status = 'ok'
                  AND mc.job_id IS NULL AND mc.role = 'orchestrator'
                GROUP BY 1, 2, 3, 6""",
        ),
        (
            K.TOOL_CALL,
            f"""SELECT date_trunc('hour', tc.created_at), r.workflow_name, tc.name, '', tc.status,
                       {wb("tc.latency_ms")}, count(*), count(tc.latency_ms), coalesce(sum(tc.latency_ms), 0), 0,
                       'latency'
                FROM {t["tc"]} tc JOIN {t["run"]} r ON r.id = tc.run_id
                WHERE NOT r.is_evaluation AND tc.created_at >= %s AND tc.created_at < %s AND tc.status <> 'running'
                GROUP BY 1, 2, 3, 5, 6""",
        ),
        (
            K.RETRY,
            f"""SELECT date_trunc('hour', tc.created_at), r.workflow_name, 'tool_' || coalesce(p.status, 'error'), '', '',
                       NULL, count(*), 0, 0, 0, 'latency'
                FROM {t["tc"]} tc JOIN {t["run"]} r ON r.id = tc.run_id
                LEFT JOIN {t["tc"]} p ON p.run_id = tc.run_id AND p.tool_use_id = tc.tool_use_id AND p.attempt = tc.attempt - 1
                WHERE NOT r.is_evaluation AND tc.created_at >= %s AND tc.created_at < %s AND tc.attempt > 1
                GROUP BY 1, 2, 3""",
        ),
        (
            K.RETRY,
            f"""SELECT h, wf, reason, '', '', NULL, sum(n), 0, 0, 0, 'latency' FROM (
                  SELECT date_trunc('hour', mc.created_at) h, r.workflow_name wf,
                         unnest(ARRAY['model_error', 'sdk_http', 'fanout_validation']) reason,
                         unnest(ARRAY[(mc.attempt > 1)::int, greatest(mc.sdk_attempts - 1, 0),
                                      (mc.job_id IS NOT NULL AND mc.role = 'specialist' AND mc.turn > 1
                                       AND mc.attempt = 1)::int]) n
                  FROM {t["mc"]} mc JOIN {t["run"]} r ON r.id = mc.run_id
                  WHERE NOT r.is_evaluation AND mc.created_at >= %s AND mc.created_at < %s
                    AND (mc.attempt > 1 OR mc.sdk_attempts > 1 OR (mc.job_id IS NOT NULL AND mc.turn > 1))
                ) retries WHERE n > 0 GROUP BY 1, 2, 3""",
        ),
        (
            K.ESCALATION,
            f"""SELECT date_trunc('hour', e.created_at), r.workflow_name, e.reason, '', '',
                       NULL, count(*), 0, 0, 0, 'latency'
                FROM {t["ticket"]} e JOIN {t["run"]} r ON r.id = e.run_id
                WHERE NOT r.is_evaluation AND e.created_at >= %s AND e.created_at < %s
                GROUP BY 1, 2, 3""",
        ),
    ]
    if TTFT_FIELD:
        queries.append(
            (
                K.MODEL_CALL,
                f"""SELECT date_trunc('hour', mc.created_at), r.workflow_name, mc.model, mc.role, NULL,
                           {wb("mc." + TTFT_FIELD)}, 0, count(*), sum(mc.{TTFT_FIELD}), 0, 'ttft'
                    FROM {t["mc"]} mc JOIN {t["run"]} r ON r.id = mc.run_id
                    WHERE NOT r.is_evaluation AND mc.created_at >= %s AND mc.created_at < %s AND mc.status <> 'pending'
                      AND mc.{TTFT_FIELD} IS NOT NULL
                    GROUP BY 1, 2, 3, 4, 6""",
            )
        )
    return queries


def new_row(
    grain: str, start: dt.datetime, kind: str, workflow: str, name: str, role: str
) -> Rollup:
    return Rollup(
        grain=grain,
        start=start,
        kind=kind,
        workflow=workflow,
        name=name or "",
        role=role or "",
        count=0,
        outcomes={},
        latency_count=0,
        latency_sum_ms=0,
        latency=histogram.empty(),
        ttft_count=0,
        ttft_sum_ms=0,
        ttft=histogram.empty(),
        cost_usd=Decimal(0),
    )


def _compute_hours(start: dt.datetime, end: dt.datetime) -> list[Rollup]:
    """Every hour bucket in [start, end), from the source rows."""
    rows: dict[tuple, Rollup] = {}
    with connection.cursor() as cursor:
        for kind, sql in _source_queries():
            params: list[Any] = [start, end]
            if kind == K.RUN:
                params += list(FINAL_RUN_STATUSES)
            cursor.execute(sql, params)
            for (
                hour,
                workflow,
                name,
                role,
                status,
                bucket,
                n,
                lat_n,
                lat_sum,
                cost,
                hist,
            ) in cursor.fetchall():
                key = (hour, kind, workflow, name or "", role or "")
                row = rows.get(key)
                if row is None:
                    row = rows[key] = new_row(Rollup.Grain.HOUR, hour, kind, workflow, name, role)
                if hist == "ttft":
                    row.ttft_count += lat_n
                    row.ttft_sum_ms += int(lat_sum or 0)
                    row.ttft[bucket] += lat_n
                    continue
                row.count += int(n)
                if status:
                    row.outcomes[status] = row.outcomes.get(status, 0) + int(n)
                if bucket is not None and lat_n:
                    row.latency[bucket] += lat_n
                row.latency_count += lat_n
                row.latency_sum_ms += int(lat_sum or 0)
                row.cost_usd += Decimal(cost or 0)
    return list(rows.values())


# Hours closer than this are recomputed as one range (the hours between come along):
# a query per range costs more than the rows of a few extra hours.
RANGE_GAP = dt.timedelta(hours=24)


def _ranges(hours: Iterable[dt.datetime]) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) ranges covering the given hour starts, merging those less than
    RANGE_GAP apart (recomputing an hour that did not change rewrites the same rows)."""
    out: list[list[dt.datetime]] = []
    for h in sorted(set(hours)):
        if out and h - out[-1][1] <= RANGE_GAP:
            out[-1][1] = h + HOUR
        else:
            out.append([h, h + HOUR])
    return [(a, b) for a, b in out]


def _touched_hours(since: dt.datetime | None) -> set[dt.datetime]:
    """Hours holding a row that finished (a ticket: opened) at or after ``since``; every
    hour with data when ``since`` is None (the first fold)."""
    t = _tables()
    final = ",".join(["%s"] * len(FINAL_RUN_STATUSES))
    if since is None:
        sql = f"""
            SELECT date_trunc('hour', finished_at) FROM {t["run"]} WHERE finished_at IS NOT NULL AND status IN ({final})
            UNION SELECT date_trunc('hour', created_at) FROM {t["mc"]} WHERE finished_at IS NOT NULL
            UNION SELECT date_trunc('hour', created_at) FROM {t["tc"]} WHERE finished_at IS NOT NULL
            UNION SELECT date_trunc('hour', created_at) FROM {t["ticket"]}"""
        params: list[Any] = list(FINAL_RUN_STATUSES)
    else:
        sql = f"""
            SELECT date_trunc('hour', finished_at) FROM {t["run"]} WHERE finished_at >= %s AND status IN ({final})
            UNION SELECT date_trunc('hour', created_at) FROM {t["mc"]} WHERE finished_at >= %s
            UNION SELECT date_trunc('hour', created_at) FROM {t["tc"]} WHERE finished_at >= %s
            UNION SELECT date_trunc('hour', created_at) FROM {t["ticket"]} WHERE created_at >= %s"""
        params = [since, *FINAL_RUN_STATUSES, since, since, since]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {r[0] for r in cursor.fetchall()}


def local_day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _recompute(hours: set[dt.datetime]) -> FoldResult:
    written = 0
    for start, end in _ranges(hours):
        Rollup.objects.filter(grain=Rollup.Grain.HOUR, start__gte=start, start__lt=end).delete()
        fresh = _compute_hours(start, end)
        Rollup.objects.bulk_create(fresh, batch_size=1000)
        written += len(fresh)
    days = {timezone.localtime(h).date() for h in hours}
    changes: dict[tuple, Rollup] = {}
    for day in sorted(days):
        written += _recompute_day(day, changes)
    _update_all_time(changes)
    return FoldResult(folded=True, hours=len(hours), days=len(days), rows=written)


def _recompute_day(day: dt.date, changes: dict[tuple, Rollup]) -> int:
    """Day rows of one local day: the sum of its hour rows. What changed (new minus old) is
    added to ``changes``, for the all-time rows (``/metrics`` reads those: one row per
    series, however long the history)."""
    start = local_day_start(day)
    end = local_day_start(day + dt.timedelta(days=1))
    old_rows = list(Rollup.objects.filter(grain=Rollup.Grain.DAY, start=start))
    Rollup.objects.filter(grain=Rollup.Grain.DAY, start=start).delete()
    merged: dict[tuple, Rollup] = {}
    for h in Rollup.objects.filter(
        grain=Rollup.Grain.HOUR, start__gte=start, start__lt=end
    ).iterator():
        key = _key(h)
        row = merged.get(key)
        if row is None:
            row = merged[key] = new_row(Rollup.Grain.DAY, start, *key)
        add(row, h)
    Rollup.objects.bulk_create(merged.values(), batch_size=1000)
    for rows, sign in ((merged.values(), 1), (old_rows, -1)):
        for r in rows:
            key = _key(r)
            delta = changes.get(key)
            if delta is None:
                delta = changes[key] = new_row(Rollup.Grain.ALL, ALL_TIME_START, *key)
            add(delta, r, sign)
    return len(merged)


def _key(r: Rollup) -> tuple[str, str, str, str]:
    return (r.kind, r.workflow, r.name, r.role)


def _update_all_time(changes: dict[tuple, Rollup]) -> None:
    """all-time row += the days' changes: new series are inserted, the others updated."""
    changes = {
        k: d
        for k, d in changes.items()
        if d.count
        or d.outcomes
        or d.latency_count
        or d.ttft_count
        or d.cost_usd
        or any(d.latency)
        or any(d.ttft)
    }
    if not changes:
        return
    existing = {
        _key(r): r
        for r in Rollup.objects.filter(
            grain=Rollup.Grain.ALL, start=ALL_TIME_START, kind__in={k[0] for k in changes}
        )
    }
    created = []
    for key, delta in changes.items():
        row = existing.get(key)
        if row is None:
            created.append(delta)
        else:
            add(row, delta)
            row.save(update_fields=FIGURES)
    Rollup.objects.bulk_create(created, batch_size=1000)


def add(into: Rollup, other: Rollup, sign: int = 1, *, histograms: bool = True) -> None:
    """Add ``other``'s figures into ``into`` (same kind); ``sign=-1`` takes them away;
    ``histograms=False`` leaves the latency histograms out (counts and cost only)."""
    into.count += sign * other.count
    for status, n in (other.outcomes or {}).items():
        into.outcomes[status] = into.outcomes.get(status, 0) + sign * n
        if not into.outcomes[status]:
            del into.outcomes[status]
    into.latency_count += sign * other.latency_count
    into.latency_sum_ms += sign * other.latency_sum_ms
    into.ttft_count += sign * other.ttft_count
    into.ttft_sum_ms += sign * other.ttft_sum_ms
    if histograms:
        _add_counts(into.latency, other.latency, sign)
        _add_counts(into.ttft, other.ttft, sign)
    into.cost_usd += sign * other.cost_usd


def _add_counts(into: list[int], other: list[int] | None, sign: int) -> None:
    """In place: a page merges thousands of rows, and new lists per merge were its cost."""
    if not other or not any(other):
        return
    if len(into) < len(other):
        into.extend([0] * (len(other) - len(into)))
    for i, n in enumerate(other):
        if n:
            into[i] += sign * n


def _locked() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def fold(now: dt.datetime | None = None) -> FoldResult:
    """Fold what changed since the last fold into the roll-ups (see the module docstring)."""
    now = now or timezone.now()
    with transaction.atomic():
        if not _locked():
            return FoldResult(folded=False)
        mark, _ = FoldWatermark.objects.select_for_update().get_or_create(pk=1)
        since = None
        if mark.folded_until is not None:
            since = mark.folded_until - dt.timedelta(seconds=settings.ROLLUP_LAG_SECONDS)
        result = _recompute(_touched_hours(since))
        mark.folded_until = now
        mark.folds += 1
        mark.save(update_fields=["folded_until", "folds", "updated_at"])
        return result


def refold(day: dt.date) -> FoldResult:
    """Recompute every hour of one local day from the source rows, whatever the watermark."""
    start = local_day_start(day)
    end = local_day_start(day + dt.timedelta(days=1))
    hours, h = set(), start
    while h < end:
        hours.add(h)
        h += HOUR
    with transaction.atomic():
        if not _locked():
            return FoldResult(folded=False)
        return _recompute(hours)


def group_rows(rows: Iterable[Rollup], key: Any) -> dict[Any, Rollup]:
    """Merge rows by ``key(row)`` into one Rollup each (grain and start of the first)."""
    out: dict[Any, Rollup] = {}
    for r in rows:
        k = key(r)
        row = out.get(k)
        if row is None:
            row = out[k] = new_row(r.grain, r.start, r.kind, r.workflow, r.name, r.role)
        add(row, r)
    return out


def watermark() -> dt.datetime | None:
    """When the last fold ran (the figures' freshness), or None before the first."""
    return FoldWatermark.objects.filter(pk=1).values_list("folded_until", flat=True).first()
