"""Prometheus metrics computed from the database at scrape time.

A collector that reads aggregates from Postgres, rather than counters in process memory,
gives the same numbers whichever web process is scraped, counts the work of every worker
on every machine, and survives restarts. Each scrape runs a handful of aggregate queries.

Counters are derived from rows, so they only go down when rows are deleted (a retention
purge); Prometheus reads that as a counter reset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from orchestration.models import ModelCall, Run, ToolCall
from reviews.models import EscalationTicket

# Model call latency buckets (ms): fast tool-routing turns to long reasoning turns.
LATENCY_BUCKETS_MS = (250, 500, 1000, 2500, 5000, 10000, 20000, 30000, 60000, 120000)
# Tool call statuses that count as an error in tool_error_rate ("corrected" is a reviewer's
# output and "running" has no outcome yet; neither counts either way).
TOOL_ERROR_STATUSES = (
    ToolCall.Status.ERROR,
    ToolCall.Status.TIMEOUT,
    ToolCall.Status.INVALID_OUTPUT,
    ToolCall.Status.UNKNOWN_TOOL,
    ToolCall.Status.REJECTED,
)


class DatabaseCollector(Collector):
    """The seed's metrics (cost, latency, tool calls, tool error rate, escalations, retries)."""

    def collect(self) -> Iterator[Metric]:
        yield self._cost()
        yield self._latency()
        yield from self._model_calls()
        yield from self._tools()
        yield from self._escalations()
        yield self._runs()

    def _cost(self) -> Metric:
        cost = GaugeMetricFamily(
            "orchestration_cost_usd",
            "Total spent on model calls, in USD, by workflow and model.",
            labels=["workflow", "model"],
        )
        rows = (
            ModelCall.objects.values("run__workflow_name", "model")
            .annotate(usd=Sum("cost_usd"))
            .order_by("run__workflow_name", "model")
        )
        for r in rows:
            cost.add_metric([r["run__workflow_name"], r["model"]], float(r["usd"] or 0))
        return cost

    def _latency(self) -> Metric:
        hist = HistogramMetricFamily(
            "orchestration_latency_ms",
            "Latency of Messages API calls in milliseconds (SDK retries included).",
            labels=["model", "role"],
        )
        buckets = {f"le_{b}": Count("pk", filter=Q(latency_ms__lte=b)) for b in LATENCY_BUCKETS_MS}
        rows = (
            ModelCall.objects.filter(latency_ms__isnull=False)
            .values("model", "role")
            .annotate(n=Count("pk"), total=Sum("latency_ms"), **buckets)
            .order_by("model", "role")
        )
        for r in rows:
            cumulative = [(floatToGoString(b), r[f"le_{b}"]) for b in LATENCY_BUCKETS_MS] + [
                ("+Inf", r["n"])
            ]
            hist.add_metric([r["model"], r["role"]], cumulative, float(r["total"] or 0))
        return hist

    def _model_calls(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "model_call_count",
            "Messages API calls recorded, by role, model and status.",
            labels=["role", "model", "status"],
        )
        for r in (
            ModelCall.objects.values("role", "model", "status").annotate(n=Count("pk")).order_by()
        ):
            calls.add_metric([r["role"], r["model"], r["status"]], r["n"])
        yield calls
        # Retries per agent: a step that re-attempted a turn (attempt > 1), and the SDK's own
        # HTTP retries inside one call (sdk_attempts - 1).
        retries = CounterMetricFamily(
            "agent_retry_count",
            "Retries of model calls, by agent role and layer.",
            labels=["role", "layer"],
        )
        rows = (
            ModelCall.objects.values("role")
            .annotate(
                step=Count("pk", filter=Q(attempt__gt=1)), sdk=Sum("sdk_attempts"), n=Count("pk")
            )
            .order_by("role")
        )
        for r in rows:
            retries.add_metric([r["role"], "step"], r["step"])
            retries.add_metric([r["role"], "sdk"], (r["sdk"] or 0) - r["n"])
        yield retries

    def _tools(self) -> Iterator[Metric]:
        count = CounterMetricFamily(
            "tool_call_count", "Tool call attempts, by tool and status.", labels=["tool", "status"]
        )
        for r in (
            ToolCall.objects.values("name", "status")
            .annotate(n=Count("pk"))
            .order_by("name", "status")
        ):
            count.add_metric([r["name"], r["status"]], r["n"])
        yield count
        window = settings.METRICS_ERROR_RATE_WINDOW_SECONDS
        rate = GaugeMetricFamily(
            "tool_error_rate",
            f"Share of tool call attempts that failed (error, timeout, invalid output, unknown tool, rejected) "
            f"in the last {window} seconds, by tool. Absent for a tool with no calls in the window.",
            labels=["tool"],
        )
        since = timezone.now() - dt.timedelta(seconds=window)
        rows = (
            ToolCall.objects.filter(created_at__gte=since)
            .exclude(status__in=["running", "corrected"])
            .values("name")
            .annotate(n=Count("pk"), bad=Count("pk", filter=Q(status__in=TOOL_ERROR_STATUSES)))
            .order_by("name")
        )
        for r in rows:
            rate.add_metric([r["name"]], r["bad"] / r["n"])
        yield rate

    def _escalations(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "escalation_count", "Escalation tickets opened, by reason.", labels=["reason"]
        )
        open_now = GaugeMetricFamily(
            "escalation_open", "Escalation tickets not resolved yet, by reason.", labels=["reason"]
        )
        rows = (
            EscalationTicket.objects.values("reason")
            .annotate(n=Count("pk"), unresolved=Count("pk", filter=~Q(status="resolved")))
            .order_by("reason")
        )
        for r in rows:
            total.add_metric([r["reason"]], r["n"])
            open_now.add_metric([r["reason"]], r["unresolved"])
        yield total
        yield open_now

    def _runs(self) -> Metric:
        runs = GaugeMetricFamily(
            "orchestration_runs",
            "Runs by workflow and current status.",
            labels=["workflow", "status"],
        )
        for r in Run.objects.values("workflow_name", "status").annotate(n=Count("pk")).order_by():
            runs.add_metric([r["workflow_name"], r["status"]], r["n"])
        return runs


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DatabaseCollector())
    return reg


def exposition() -> Any:
    from prometheus_client import generate_latest

    return generate_latest(registry())
