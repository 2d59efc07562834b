"""The operations page and the daily digest's preview: figures from the roll-ups only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from insight import digest, figures, rollups
from insight.models import DigestDelivery
from orchestration import untrusted
from reviews import access


class BadQuery(ValueError):
    pass


def _period(request: HttpRequest) -> figures.Period:
    days = request.GET.get("days", "7")
    try:
        number = untrusted.whole_number(days, "days", clamp=True)
    except untrusted.Rejected:
        number = None
    if number not in figures.PERIODS:
        raise BadQuery(
            f"Unknown period {days!r}: choose one of {', '.join(map(str, figures.PERIODS))} days."
        )
    until = request.GET.get("until", "")
    last_day = timezone.localdate()
    if until:
        try:
            last_day = untrusted.check_day(dt.date.fromisoformat(until), "until")
        except untrusted.Rejected as exc:
            raise BadQuery(str(exc)) from None
        except ValueError:
            raise BadQuery(f"{until!r} is not a date: use YYYY-MM-DD.") from None
    return figures.Period.ending(number, last_day)


def _workflow(request: HttpRequest, known: list[str]) -> str | None:
    name = request.GET.get("workflow", "")
    if name and name not in known:
        raise BadQuery(f"No figures for a workflow named {name!r}.")
    return name or None


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def _chart_data(report: figures.Report) -> dict[str, Any]:
    labels = [d.strftime("%b %d") for d in report.period.day_list()]

    def pct(values: list[float | None]) -> list[float | None]:
        return [None if v is None else round(v * 100, 2) for v in values]

    def latency(lines: list[figures.LatencyLine], ttft: bool = False) -> dict[str, Any]:
        pick = (
            (lambda line: (line.current_ttft, line.previous_ttft))
            if ttft
            else (lambda line: (line.current, line.previous))
        )
        shown = [line for line in lines if pick(line)[0].count or pick(line)[1].count]
        return {
            "labels": [line.name for line in shown],
            "p50": [_seconds(pick(line)[0].p50) for line in shown],
            "p95": [_seconds(pick(line)[0].p95) for line in shown],
            "prev_p50": [_seconds(pick(line)[1].p50) for line in shown],
            "prev_p95": [_seconds(pick(line)[1].p95) for line in shown],
        }

    return {
        "labels": labels,
        "success": {
            "current": pct(report.success_by_day[0]),
            "previous": pct(report.success_by_day[1]),
        },
        "outcomes": {
            "labels": list(report.outcomes),
            "current": [c.current for c in report.outcomes.values()],
            "previous": [c.previous for c in report.outcomes.values()],
        },
        "cost": {"current": report.cost_by_day[0], "previous": report.cost_by_day[1]},
        "retries": {
            "series": {rollups.retry_reason_label(n): v for n, v in report.retries_by_day.items()},
            "previous": report.retries_prev_by_day,
        },
        "escalations": {
            "series": report.escalations_by_day,
            "previous": report.escalations_prev_by_day,
        },
        "latency": {
            "runs": latency(report.runs_latency),
            "model": latency(report.model_latency),
            "ttft": latency(report.model_latency, ttft=True),
            "tools": latency(report.tool_latency),
            "steps": latency(report.step_latency),
        },
    }


@require_GET
@access.required(access.may_see_operations)
def operations(request: HttpRequest) -> HttpResponse:
    known = figures.workflows()
    try:
        period = _period(request)
        workflow = _workflow(request, known)
    except BadQuery as exc:
        return render(
            request,
            "insight/operations.html",
            {"error": str(exc), "periods": figures.PERIODS, "workflows": known},
            status=400,
        )
    report = figures.report(period, workflow)
    has_ttft = any(
        line.current_ttft.count or line.previous_ttft.count for line in report.model_latency
    )
    return render(
        request,
        "insight/operations.html",
        {
            "r": report,
            "periods": figures.PERIODS,
            "workflows": known,
            "chart": _chart_data(report),
            "has_ttft": has_ttft,
            "ttft_tracked": rollups.TTFT_FIELD is not None,
            "retry_rows": [
                (n, rollups.retry_reason_label(n), c) for n, c in report.retries.items()
            ],
            "digest_hour": settings.DAILY_DIGEST_HOUR,
            "folded": rollups.watermark(),
            "digests": DigestDelivery.objects.all()[:10],
        },
    )


@require_GET
@access.required(access.may_see_operations)
def digest_preview(request: HttpRequest) -> HttpResponse:
    """Yesterday's digest of one workflow as it is (or will be) emailed."""
    known = figures.workflows()
    day = timezone.localdate() - dt.timedelta(days=1)
    try:
        if request.GET.get("day"):
            try:
                day = dt.date.fromisoformat(request.GET["day"])
            except ValueError:
                raise BadQuery(f"{request.GET['day']!r} is not a date: use YYYY-MM-DD.") from None
        workflow = _workflow(request, known) or (known[0] if known else None)
    except BadQuery as exc:
        return render(
            request, "insight/digest.html", {"error": str(exc), "workflows": known}, status=400
        )
    subject, text = digest.build(workflow, day) if workflow else ("", "")
    return render(
        request,
        "insight/digest.html",
        {
            "workflows": known,
            "workflow": workflow,
            "day": day,
            "subject": subject,
            "text": text,
            "recipients": digest.recipients(workflow) if workflow else [],
        },
    )
