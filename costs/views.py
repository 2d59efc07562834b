"""The costs page: spend by day, workflow, user and model; savings; top runs; budgets; CSV."""

from __future__ import annotations

import csv

from django.contrib import messages
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from costs import reports
from orchestration import untrusted
from reviews import access


class _Echo:
    """A file-like object whose write() returns the line, for csv.writer into a stream."""

    def write(self, value: str) -> str:
        return value


def _days(request) -> int:
    value = request.GET.get("days", "30")
    try:
        days = untrusted.whole_number(value, "days")
    except untrusted.Rejected as exc:
        messages.error(request, f"Period: {exc.fields['days']}; showing the last 30 days.")
        return 30
    return days if days in reports.PERIODS else 30


@require_GET
@access.required(access.may_see_costs)
def costs(request):
    report = reports.spend_report(_days(request))
    chart = {
        "labels": [d["day"].strftime("%b %d") for d in report.by_day],
        "values": [float(d["cost"]) for d in report.by_day],
    }
    return render(
        request,
        "costs/costs.html",
        {
            "report": report,
            "periods": reports.PERIODS,
            "chart": chart,
        },
    )


@require_GET
@access.required(access.may_see_costs)
def costs_csv(request):
    days = _days(request)
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in reports.csv_rows(reports.period_since(days))),
        content_type="text/csv",
    )
    stamp = timezone.localdate().isoformat()
    response["Content-Disposition"] = (
        f'attachment; filename="countersign-costs-{days}d-{stamp}.csv"'
    )
    return response
