"""The alert rules: what each measures, over which window, and when it fires.

One module owns every rule, and its first half (``Sources``) is the only code that reads
the measurements, so the rules can later read the operations roll-ups instead of these
indexed window queries over the base tables (the windows are small: a day or a week of
model calls, a few minutes of retries). ``evaluate(now)`` returns a ``Finding`` for every
subject whose numbers cross its thresholds; ``alerts.raising`` opens or updates the alerts.

Windows are rolling, ending at ``now``: "day" 0 is (now - 24h, now], day k is
(now - (k+1)*24h, now - k*24h]. The rules and how they compare (thresholds from
``AlertThresholds`` of the workflow, else the defaults' row, else the model defaults):

- cost_spike: day 0's cost >= cost_spike_ratio x day 1's (day 1 > 0), and day 0 >= cost_min_usd.
- cost_baseline: day 0's cost >= cost_baseline_ratio x the mean of days 1..cost_baseline_days
  (mean > 0), and day 0 >= cost_min_usd.
- latency: p95 of successful model-call latency on day 0 >= latency_ratio x the p95 over days
  1..cost_baseline_days, each with at least latency_min_calls calls.
- error_rate: failed + halted runs among runs that ended (succeeded, failed, halted) in the
  last error_window_hours, as a percentage, strictly over error_rate_percent (5% by default:
  5 of 100 does not fire, 6 of 100 does), with at least error_min_runs runs.
- retry_burst: retries (model-call attempts after the first, tool-call attempts after the
  first) in any sliding window of retry_window_seconds >= retry_count, per user (the
  defaults' thresholds) and per workflow. A user's burst pauses their new runs when their
  retries in workflows whose row (else the defaults') has pause_user_on_retry_burst on
  reach retry_count in such a window on their own; otherwise the alert opens, no pause.
- escalation_burst: tickets opened in any sliding window of escalation_window_seconds >=
  escalation_count, per workflow and per user ("3 in one day").
- budget: a budget in force whose committed spend (costs.budgets.usage) is >= budget_percent
  of its limit.
- breaker: a run halted by the fan-out failure-rate breaker (a failure_rate_exceeded ticket).

Every rule reads production only: runs marked ``Run.is_evaluation`` (an evaluation's cases,
which fail on purpose) and their calls and tickets are left out, as in the roll-ups.

Counting rules (retry_burst, escalation_burst, breaker) count only events after the last
time a person resolved that alert, so resolving one does not reopen it from the same events.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from alerts.models import Alert, AlertThresholds
from costs import budgets
from costs.models import Budget
from orchestration.models import ModelCall, Run, ToolCall
from reviews.models import EscalationTicket

R = Alert.Rule
DAY = dt.timedelta(days=1)
ZERO = Decimal(0)
# Sliding-window rules look back this much further than their window, so a burst that
# ended between two evaluations (ALERTS_EVALUATE_SECONDS apart) is still seen.
LOOKBACK_SLACK = dt.timedelta(seconds=120)


@dataclass(frozen=True)
class Finding:
    rule: str
    key: str
    title: str
    detail: str
    numbers: dict[str, Any]
    workflow_name: str = ""
    user_id: int | None = None
    pause_user: bool = False


@dataclass
class Thresholds:
    """Each workflow's thresholds row (or the defaults'), read once per evaluation."""

    rows: dict[str, AlertThresholds] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Thresholds:
        return cls({row.workflow_name: row for row in AlertThresholds.objects.all()})

    @property
    def defaults(self) -> AlertThresholds:
        return self.rows.get("") or AlertThresholds(workflow_name="")

    def of(self, workflow_name: str) -> AlertThresholds:
        return self.rows.get(workflow_name) or self.defaults


# --- Sources: the only code that reads measurements ------------------------------------------


def cost_by_day(now: dt.datetime, days: int) -> dict[str, dict[int, Decimal]]:
    """Per workflow: the cost of production model calls per rolling day 0..days (index: model
    calls' created_at, modelcall_created). An evaluation's spend is the costs page's business."""
    sql = """
        SELECT r.workflow_name, floor(extract(epoch FROM (%s - mc.created_at)) / 86400)::int AS day,
               sum(mc.cost_usd)
        FROM orchestration_modelcall mc JOIN orchestration_run r ON r.id = mc.run_id
        WHERE mc.created_at > %s AND mc.created_at <= %s AND NOT r.is_evaluation
        GROUP BY 1, 2
    """
    out: dict[str, dict[int, Decimal]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, now - (days + 1) * DAY, now])
        for workflow_name, day, total in cursor.fetchall():
            out[workflow_name][day] = total or ZERO
    return out


def latency_p95(now: dt.datetime, days: int) -> dict[str, dict[str, Any]]:
    """Per workflow: p95 and count of successful model calls' latency on day 0 and on days 1..days."""
    sql = """
        SELECT r.workflow_name,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY mc.latency_ms) FILTER (WHERE mc.created_at > %s),
               count(*) FILTER (WHERE mc.created_at > %s),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY mc.latency_ms) FILTER (WHERE mc.created_at <= %s),
               count(*) FILTER (WHERE mc.created_at <= %s)
        FROM orchestration_modelcall mc JOIN orchestration_run r ON r.id = mc.run_id
        WHERE mc.created_at > %s AND mc.created_at <= %s AND mc.status = 'ok' AND mc.latency_ms IS NOT NULL
          AND NOT r.is_evaluation
        GROUP BY 1
    """
    day0 = now - DAY
    with connection.cursor() as cursor:
        cursor.execute(sql, [day0, day0, day0, day0, now - (days + 1) * DAY, now])
        return {
            wf: {
                "current_p95_ms": cur,
                "current_calls": ncur,
                "baseline_p95_ms": base,
                "baseline_calls": nbase,
            }
            for wf, cur, ncur, base, nbase in cursor.fetchall()
        }


def run_outcomes(now: dt.datetime, hours: int) -> dict[str, dict[str, int]]:
    """Per workflow: runs that ended in the last ``hours`` by final status (index run_finished, from the ops-insight branch)."""
    rows = (
        Run.objects.filter(
            finished_at__gt=now - dt.timedelta(hours=hours),
            finished_at__lte=now,
            status__in=(Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.HALTED),
            is_evaluation=False,  # an evaluation fails cases on purpose: not production's error rate
        )
        .values_list("workflow_name", "status")
        .order_by()
    )
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for workflow_name, status in rows.iterator():
        out[workflow_name][status] += 1
    return out


def retry_events(since: dt.datetime, now: dt.datetime) -> list[tuple[dt.datetime, int, str]]:
    """(when, user id, workflow) of every retry since ``since``: model-call attempts after the
    first (index modelcall_created) and tool-call attempts after the first (toolcall_created, from the ops-insight branch)."""
    model = ModelCall.objects.filter(
        created_at__gt=since, created_at__lte=now, attempt__gt=1, run__is_evaluation=False
    ).values_list("created_at", "run__requested_by_id", "run__workflow_name")
    tool = ToolCall.objects.filter(
        created_at__gt=since, created_at__lte=now, attempt__gt=1, run__is_evaluation=False
    ).values_list("created_at", "run__requested_by_id", "run__workflow_name")
    return sorted([*model.order_by(), *tool.order_by()])


def ticket_events(
    since: dt.datetime, now: dt.datetime, reason: str | None = None
) -> list[tuple[dt.datetime, int, str, int]]:
    """(when, user id, workflow, ticket id) of every ticket opened since ``since``."""
    # An evaluation run's ticket is closed as it opens (reviews.escalation): not a spike to alert on.
    tickets = EscalationTicket.objects.filter(
        created_at__gt=since, created_at__lte=now, run__is_evaluation=False
    )
    if reason:
        tickets = tickets.filter(reason=reason)
    return sorted(
        tickets.values_list(
            "created_at", "run__requested_by_id", "run__workflow_name", "pk"
        ).order_by()
    )


def budgets_in_force(now: dt.datetime) -> list[budgets.BudgetUsage]:
    return [budgets.usage(b, now) for b in budgets.in_force(now).select_related("user")]


def last_resolved(rules: Iterable[str], since: dt.datetime) -> dict[str, dt.datetime]:
    """Per alert key: when a person last resolved it (counting rules start after that)."""
    rows = (
        Alert.objects.filter(
            rule__in=list(rules), status=Alert.Status.RESOLVED, resolved_at__gt=since
        )
        .values("key")
        .annotate(at=Max("resolved_at"))
        .order_by()
    )
    return {r["key"]: r["at"] for r in rows}


# --- The rules ---------------------------------------------------------------------------------


def _usd(value: Decimal) -> str:
    return f"${value:,.2f}"


def cost_findings(now: dt.datetime, th: Thresholds) -> list[Finding]:
    days_needed = max(
        [th.of(w).cost_baseline_days for w in th.rows] + [th.defaults.cost_baseline_days]
    )
    found = []
    for wf, by_day in cost_by_day(now, days_needed).items():
        t = th.of(wf)
        current, previous = by_day.get(0, ZERO), by_day.get(1, ZERO)
        if current < t.cost_min_usd:
            continue
        if previous > 0 and current >= t.cost_spike_ratio * previous:
            ratio = current / previous
            found.append(
                Finding(
                    R.COST_SPIKE,
                    f"cost_spike:workflow:{wf}",
                    f"{wf}: cost {ratio:.1f}x the day before",
                    f"{wf} cost {_usd(current)} in the last 24 hours against {_usd(previous)} in the 24 hours before "
                    f"({ratio:.2f}x; the threshold is {t.cost_spike_ratio}x).",
                    {
                        "last_24h_usd": str(current),
                        "previous_24h_usd": str(previous),
                        "ratio": f"{ratio:.4f}",
                        "threshold_ratio": str(t.cost_spike_ratio),
                        "min_usd": str(t.cost_min_usd),
                    },
                    workflow_name=wf,
                )
            )
        days = t.cost_baseline_days
        mean = sum((by_day.get(d, ZERO) for d in range(1, days + 1)), ZERO) / days
        if mean > 0 and current >= t.cost_baseline_ratio * mean:
            ratio = current / mean
            found.append(
                Finding(
                    R.COST_BASELINE,
                    f"cost_baseline:workflow:{wf}",
                    f"{wf}: cost {ratio:.1f}x its {days}-day baseline",
                    f"{wf} cost {_usd(current)} in the last 24 hours against a daily mean of {_usd(mean)} over the "
                    f"{days} days before ({ratio:.2f}x; the threshold is {t.cost_baseline_ratio}x).",
                    {
                        "last_24h_usd": str(current),
                        "baseline_daily_usd": str(mean.quantize(Decimal("0.000001"))),
                        "baseline_days": days,
                        "ratio": f"{ratio:.4f}",
                        "threshold_ratio": str(t.cost_baseline_ratio),
                    },
                    workflow_name=wf,
                )
            )
    return found


def latency_findings(now: dt.datetime, th: Thresholds) -> list[Finding]:
    found = []
    days_values = {th.of(w).cost_baseline_days for w in th.rows} | {th.defaults.cost_baseline_days}
    for days in sorted(days_values):
        for wf, m in latency_p95(now, days).items():
            t = th.of(wf)
            if t.cost_baseline_days != days:
                continue
            cur, base = m["current_p95_ms"], m["baseline_p95_ms"]
            if (
                m["current_calls"] < t.latency_min_calls
                or m["baseline_calls"] < t.latency_min_calls
                or not base
                or Decimal(str(cur)) < t.latency_ratio * Decimal(str(base))
            ):
                continue
            ratio = cur / base
            found.append(
                Finding(
                    R.LATENCY,
                    f"latency:workflow:{wf}",
                    f"{wf}: model-call p95 latency {ratio:.1f}x its baseline",
                    f"{wf}'s model calls took {cur / 1000:.2f} s at p95 in the last 24 hours ({m['current_calls']} calls) "
                    f"against {base / 1000:.2f} s over the {days} days before ({m['baseline_calls']} calls): "
                    f"{ratio:.2f}x; the threshold is {t.latency_ratio}x.",
                    {
                        **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in m.items()},
                        "ratio": f"{ratio:.4f}",
                        "threshold_ratio": str(t.latency_ratio),
                        "baseline_days": days,
                    },
                    workflow_name=wf,
                )
            )
    return found


def error_rate_findings(now: dt.datetime, th: Thresholds) -> list[Finding]:
    found = []
    windows = {th.of(w).error_window_hours for w in th.rows} | {th.defaults.error_window_hours}
    for hours in sorted(windows):
        for wf, counts in run_outcomes(now, hours).items():
            t = th.of(wf)
            if t.error_window_hours != hours:
                continue
            total = sum(counts.values())
            failed = counts[Run.Status.FAILED] + counts[Run.Status.HALTED]
            if total < t.error_min_runs or failed * 100 <= t.error_rate_percent * total:
                continue
            rate = Decimal(failed * 100) / total
            found.append(
                Finding(
                    R.ERROR_RATE,
                    f"error_rate:workflow:{wf}",
                    f"{wf}: {rate:.1f}% of runs failed",
                    f"{failed} of {total} {wf} runs that ended in the last {hours} hours failed or halted "
                    f"({rate:.2f}%; the threshold is {t.error_rate_percent}%).",
                    {
                        "failed": counts[Run.Status.FAILED],
                        "halted": counts[Run.Status.HALTED],
                        "ended": total,
                        "rate_percent": f"{rate:.4f}",
                        "threshold_percent": str(t.error_rate_percent),
                        "window_hours": hours,
                    },
                    workflow_name=wf,
                )
            )
    return found


def max_in_window(times: list[dt.datetime], window: dt.timedelta) -> tuple[int, dt.datetime | None]:
    """The most events in any window of length ``window`` (both ends included), and when that
    window ended. ``times`` sorted."""
    best, best_end = 0, None
    for i, end in enumerate(times):
        count = i - bisect_left(times, end - window) + 1
        if count > best:
            best, best_end = count, end
    return best, best_end


def _bursts(
    rule: str,
    noun: str,
    events: list[tuple[Any, ...]],
    th: Thresholds,
    now: dt.datetime,
    resolved: dict[str, dt.datetime],
    count_of: str,
    window_of: str,
    pause: bool = False,
) -> list[Finding]:
    by_subject: dict[tuple[str, Any], list[dt.datetime]] = defaultdict(list)
    # A user's events of workflows whose thresholds leave pausing on (the pause counts those).
    pausable: dict[Any, list[dt.datetime]] = defaultdict(list)
    for when, user_id, wf, *_ in events:
        by_subject[("user", user_id)].append(when)
        by_subject[("workflow", wf)].append(when)
        if pause and th.of(wf).pause_user_on_retry_burst:
            pausable[user_id].append(when)
    names = dict(
        get_user_model()
        .objects.filter(pk__in=[s for kind, s in by_subject if kind == "user"])
        .values_list("pk", "username")
    )
    found = []
    for (kind, subject), times in by_subject.items():
        t = th.defaults if kind == "user" else th.of(subject)
        key = f"{rule}:{kind}:{subject}"
        window = dt.timedelta(seconds=getattr(t, window_of))
        after = max(
            now - window - LOOKBACK_SLACK - dt.timedelta(seconds=settings.ALERTS_EVALUATE_SECONDS),
            resolved.get(key, now - 3650 * DAY),
        )
        times = [w for w in times if w > after]
        count, ended = max_in_window(times, window)
        threshold = getattr(t, count_of)
        if count < threshold:
            continue
        # The user is paused only if their retries in workflows that allow pausing reach the
        # threshold on their own (a workflow's row may turn pausing off; the alert opens anyway).
        pausing = (
            pause
            and kind == "user"
            and max_in_window([w for w in pausable[subject] if w > after], window)[0] >= threshold
        )
        who = f"user {names.get(subject, subject)}" if kind == "user" else f"workflow {subject}"
        found.append(
            Finding(
                rule,
                key,
                f"{who}: {count} {noun} within {_duration(window)}",
                f"{count} {noun} by {who} within {_duration(window)} (the most in any such window, ending "
                f"{timezone.localtime(ended):%Y-%m-%d %H:%M:%S}); the threshold is {threshold}.",
                {
                    "count": count,
                    "threshold": threshold,
                    "window_seconds": int(window.total_seconds()),
                    "window_ended_at": ended.isoformat() if ended else None,
                },
                workflow_name=subject if kind == "workflow" else "",
                user_id=subject if kind == "user" else None,
                pause_user=pausing,
            )
        )
    return found


def _duration(window: dt.timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day{'s' if seconds > 86400 else ''}"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour{'s' if seconds > 3600 else ''}"
    return f"{seconds} seconds"


def burst_findings(now: dt.datetime, th: Thresholds) -> list[Finding]:
    slack = LOOKBACK_SLACK + dt.timedelta(seconds=settings.ALERTS_EVALUATE_SECONDS)
    retry_window = max(
        [r.retry_window_seconds for r in th.rows.values()] + [th.defaults.retry_window_seconds]
    )
    ticket_window = max(
        [r.escalation_window_seconds for r in th.rows.values()]
        + [th.defaults.escalation_window_seconds]
    )
    resolved = last_resolved((R.RETRY_BURST, R.ESCALATION_BURST), now - 8 * DAY)
    return [
        *_bursts(
            R.RETRY_BURST,
            "retries",
            retry_events(now - dt.timedelta(seconds=retry_window) - slack, now),
            th,
            now,
            resolved,
            "retry_count",
            "retry_window_seconds",
            pause=True,
        ),
        *_bursts(
            R.ESCALATION_BURST,
            "escalations",
            ticket_events(now - dt.timedelta(seconds=ticket_window) - slack, now),
            th,
            now,
            resolved,
            "escalation_count",
            "escalation_window_seconds",
        ),
    ]


def budget_findings(now: dt.datetime, th: Thresholds) -> list[Finding]:
    found = []
    for use in budgets_in_force(now):
        b = use.budget
        if not b.limit_usd:
            continue
        t = th.of(b.workflow_name) if b.scope == Budget.Scope.WORKFLOW else th.defaults
        percent = use.committed * 100 / b.limit_usd
        if percent < t.budget_percent:
            continue
        found.append(
            Finding(
                R.BUDGET,
                f"budget:{b.pk}",
                f"{budgets.describe(b)} at {percent:.0f}%",
                f"{budgets.describe(b)} has {_usd(use.committed)} committed ({_usd(use.spent)} spent since "
                f"{timezone.localtime(use.since):%Y-%m-%d %H:%M} + {_usd(use.outstanding)} still estimated for "
                f"unfinished runs): {percent:.1f}% of its limit; the threshold is {t.budget_percent}%.",
                {
                    "committed_usd": str(use.committed),
                    "spent_usd": str(use.spent),
                    "outstanding_usd": str(use.outstanding),
                    "limit_usd": str(b.limit_usd),
                    "percent": f"{percent:.4f}",
                    "threshold_percent": str(t.budget_percent),
                    "hard": b.hard,
                    "period": b.period,
                },
                workflow_name=b.workflow_name,
                user_id=b.user_id,
            )
        )
    return found


def breaker_findings(now: dt.datetime, th: Thresholds) -> list[Finding]:
    window = DAY
    resolved = last_resolved((R.BREAKER,), now - 8 * DAY)
    by_workflow: dict[str, list[tuple[dt.datetime, int]]] = defaultdict(list)
    for when, _user, wf, ticket_id in ticket_events(
        now - window, now, EscalationTicket.Reason.FAILURE_RATE_EXCEEDED
    ):
        if when > resolved.get(f"breaker:workflow:{wf}", now - 3650 * DAY):
            by_workflow[wf].append((when, ticket_id))
    found = []
    for wf, hits in by_workflow.items():
        if not th.of(wf).breaker_alerts:
            continue
        latest = EscalationTicket.objects.select_related("run").get(pk=hits[-1][1])
        found.append(
            Finding(
                R.BREAKER,
                f"breaker:workflow:{wf}",
                f"{wf}: the failure-rate breaker halted {len(hits)} run(s)",
                f"The fan-out failure-rate breaker halted {len(hits)} {wf} run(s) in the last 24 hours. "
                f"Latest: run {latest.run_id}: {latest.message}",
                {
                    "halted_runs": len(hits),
                    "latest_run": str(latest.run_id),
                    "latest_ticket": latest.pk,
                    "window_hours": 24,
                },
                workflow_name=wf,
            )
        )
    return found


def evaluate(now: dt.datetime | None = None) -> list[Finding]:
    """Every rule once, at ``now``; the findings whose numbers cross their thresholds."""
    now = now or timezone.now()
    th = Thresholds.load()
    return [
        *cost_findings(now, th),
        *latency_findings(now, th),
        *error_rate_findings(now, th),
        *burst_findings(now, th),
        *budget_findings(now, th),
        *breaker_findings(now, th),
    ]
