"""Prometheus metrics, served from the roll-ups (``insight``), not from the raw tables.

Counters and histograms come from the all-time roll-up rows: one row per series (kind,
workflow, model or tool or reason, role), kept by the fold (``insight.rollups``, every
``ROLLUP_FOLD_SECONDS``), so a scrape reads a few hundred rows whatever the history holds.
Every web process gives the same numbers, work of every worker counts, and restarts lose
nothing; they are as fresh as the last fold (``countersign_rollup_folded_timestamp_seconds``).
Counters only go down if roll-ups are deleted (Prometheus reads a counter reset); the
retention purge keeps them.

A few gauges describe *now* and are counted live, each over an index: runs not yet final by
status, open tickets by reason, and the queue depths in the broker.

Names follow Prometheus' rules (``promtool check metrics``): base units (``_seconds``),
``_total`` on counters, one ``countersign_`` prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from costs import budgets
from costs.models import Budget
from insight import figures, histogram, rollups
from insight.models import Rollup
from orchestration.models import Run
from reviews.models import EscalationTicket

logger = logging.getLogger(__name__)
K = Rollup.Kind
# Listed rather than excluded, so the count reads the (status, id) index, not every run.
NOT_FINAL = [s for s in Run.Status.values if s not in Run.FINAL]
_BOUNDS = [floatToGoString(b / 1000) for b in histogram.PROMETHEUS_BOUNDS_MS]
# Celery's Redis transport keeps a queue's messages of priority 0 under its name and the
# other priority steps under "<name>\x06\x16<step>".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _add_histogram(
    family: HistogramMetricFamily, labels: list[str], hist: list[int], n: int, sum_ms: int
) -> None:
    cumulative = histogram.cumulative(hist)
    buckets = list(zip(_BOUNDS, cumulative, strict=True)) + [("+Inf", n)]
    family.add_metric(labels, buckets, sum_ms / 1000)


class RollupCollector(Collector):
    """Runs, model calls, steps, tool calls, cost, retries and escalations, from roll-ups."""

    def collect(self) -> Iterator[Metric]:
        series: dict[str, list[Rollup]] = {}
        for row in figures.all_time().order_by("kind", "workflow", "name", "role"):
            series.setdefault(row.kind, []).append(row)
        yield from self._runs(series.get(K.RUN, []))
        yield from self._model_calls(series.get(K.MODEL_CALL, []))
        yield from self._steps(series.get(K.STEP, []))
        yield from self._tools(series.get(K.TOOL_CALL, []))
        yield from self._counts(series)
        yield from self._budgets()
        yield from self._live()
        yield from self._freshness()

    def _runs(self, rows: list[Rollup]) -> Iterator[Metric]:
        finished = CounterMetricFamily(
            "countersign_runs_finished",
            "Runs that reached a final status, by workflow and outcome.",
            labels=["workflow", "outcome"],
        )
        duration = _histogram(
            "countersign_run_duration_seconds",
            "Time from a run's start to its end (waits for a reviewer included), by workflow.",
            ["workflow"],
        )
        for r in rows:
            for outcome, n in sorted(r.outcomes.items()):
                finished.add_metric([r.workflow, outcome], n)
            _add_histogram(duration, [r.workflow], r.latency, r.latency_count, r.latency_sum_ms)
        yield finished
        yield duration

    def _model_calls(self, rows: list[Rollup]) -> Iterator[Metric]:
        labels = ["workflow", "model", "role"]
        calls = CounterMetricFamily(
            "countersign_model_calls",
            "Messages API calls answered or failed, by status.",
            labels=[*labels, "status"],
        )
        cost = CounterMetricFamily(
            "countersign_cost_usd",
            "Spent on model calls, in US dollars.",
            labels=["workflow", "model"],
        )
        duration = _histogram(
            "countersign_model_call_duration_seconds",
            "Latency of a Messages API call, to its last token (the SDK's retries included).",
            labels,
        )
        first_token = _histogram(
            "countersign_model_call_first_token_seconds",
            "Time from sending a Messages API call to its first streamed token.",
            labels,
        )
        spend: dict[tuple[str, str], float] = {}
        for r in rows:
            key = [r.workflow, r.name, r.role]
            for status, n in sorted(r.outcomes.items()):
                calls.add_metric([*key, status], n)
            spend[(r.workflow, r.name)] = spend.get((r.workflow, r.name), 0.0) + float(r.cost_usd)
            _add_histogram(duration, key, r.latency, r.latency_count, r.latency_sum_ms)
            if rollups.TTFT_FIELD:
                _add_histogram(first_token, key, r.ttft, r.ttft_count, r.ttft_sum_ms)
        for (workflow, model), usd in sorted(spend.items()):
            cost.add_metric([workflow, model], usd)
        yield calls
        yield cost
        yield duration
        if rollups.TTFT_FIELD:
            yield first_token

    def _steps(self, rows: list[Rollup]) -> Iterator[Metric]:
        duration = _histogram(
            "countersign_step_duration_seconds",
            "A step: the orchestrator's model call and the tool calls it asked for, by model.",
            ["workflow", "model"],
        )
        for r in rows:
            _add_histogram(
                duration, [r.workflow, r.name], r.latency, r.latency_count, r.latency_sum_ms
            )
        yield duration

    def _tools(self, rows: list[Rollup]) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "countersign_tool_calls",
            "Tool call attempts that finished, by status.",
            labels=["workflow", "tool", "status"],
        )
        duration = _histogram(
            "countersign_tool_call_duration_seconds",
            "Latency of one tool call attempt, by tool.",
            ["workflow", "tool"],
        )
        for r in rows:
            for status, n in sorted(r.outcomes.items()):
                calls.add_metric([r.workflow, r.name, status], n)
            _add_histogram(
                duration, [r.workflow, r.name], r.latency, r.latency_count, r.latency_sum_ms
            )
        yield calls
        yield duration

    def _counts(self, series: dict[str, list[Rollup]]) -> Iterator[Metric]:
        retries = CounterMetricFamily(
            "countersign_retries",
            "Retries, by reason: tool_<status> (a tool attempt after one that ended so), model_error, "
            "sdk_http (the SDK's own HTTP retries), fanout_validation.",
            labels=["workflow", "reason"],
        )
        for r in series.get(K.RETRY, []):
            retries.add_metric([r.workflow, r.name], r.count)
        escalations = CounterMetricFamily(
            "countersign_escalations",
            "Escalation tickets opened, by reason.",
            labels=["workflow", "reason"],
        )
        for r in series.get(K.ESCALATION, []):
            escalations.add_metric([r.workflow, r.name], r.count)
        yield retries
        yield escalations

    def _budgets(self) -> Iterator[Metric]:
        """Global and workflow budgets in force: the limit and what the roll-ups say was spent
        since the period began (user budgets are checked in the app: no user in the roll-ups)."""
        labels = ["scope", "workflow", "period", "hard"]
        limit = GaugeMetricFamily(
            "countersign_budget_limit_usd", "A budget's limit, in US dollars.", labels=labels
        )
        spent = GaugeMetricFamily(
            "countersign_budget_spent_usd",
            "Spent on model calls since the budget's period began (day or month), in US dollars.",
            labels=labels,
        )
        today = timezone.localdate()
        for b in (
            budgets.in_force()
            .exclude(scope=Budget.Scope.USER)
            .order_by("scope", "workflow_name", "period")
        ):
            first = budgets.period_start(b.period).date()
            period = figures.Period.ending((today - first).days + 1, today)
            used = figures.total(K.MODEL_CALL, period, b.workflow_name or None).cost_usd
            key = [b.scope, b.workflow_name, b.period, "true" if b.hard else "false"]
            limit.add_metric(key, float(b.limit_usd))
            spent.add_metric(key, float(used))
        yield limit
        yield spent

    def _live(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "countersign_runs_active",
            "Runs not in a final status now, by status.",
            labels=["status"],
        )
        for r in (
            Run.objects.filter(status__in=NOT_FINAL)
            .values("status")
            .annotate(n=Count("pk"))
            .order_by("status")
        ):
            active.add_metric([r["status"]], r["n"])
        yield active
        open_now = GaugeMetricFamily(
            "countersign_escalations_open",
            "Escalation tickets not resolved yet, by reason.",
            labels=["reason"],
        )
        for r in (
            EscalationTicket.objects.filter(~Q(status=EscalationTicket.Status.RESOLVED))
            .values("reason")
            .annotate(n=Count("pk"))
            .order_by("reason")
        ):
            open_now.add_metric([r["reason"]], r["n"])
        yield open_now
        depth = queue_depths()
        if depth is not None:
            queue = GaugeMetricFamily(
                "countersign_queue_depth",
                "Messages waiting in each Celery queue of the broker.",
                labels=["queue"],
            )
            for name, n in depth.items():
                queue.add_metric([name], n)
            yield queue

    def _freshness(self) -> Iterator[Metric]:
        folded = rollups.watermark()
        stamp = GaugeMetricFamily(
            "countersign_rollup_folded_timestamp_seconds",
            "When the roll-ups the counters and histograms come from were last folded (Unix time).",
        )
        stamp.add_metric([], folded.timestamp() if folded else 0)
        yield stamp


def queue_depths() -> dict[str, int] | None:
    """Messages waiting per queue (HEALTHZ_WORKER_QUEUES), or None when the broker does not
    answer (the gauge is then absent rather than zero)."""
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_timeout=settings.HEALTHZ_TIMEOUT_SECONDS,
        socket_connect_timeout=settings.HEALTHZ_TIMEOUT_SECONDS,
    )
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in settings.HEALTHZ_WORKER_QUEUES:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            lengths = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        logger.warning("queue depth unavailable: %s", exc)
        return None
    finally:
        client.close()
    per = len(_PRIORITY_SUFFIXES)
    return {
        q: sum(lengths[i * per : (i + 1) * per])
        for i, q in enumerate(settings.HEALTHZ_WORKER_QUEUES)
    }


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RollupCollector())
    return reg


def exposition() -> bytes:
    return generate_latest(registry())
