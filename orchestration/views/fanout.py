"""The fan-out parts of the run page: progress (in the live partial), the job grid, a job."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling

from orchestration.fanout.coordinator import counts
from orchestration.fanout.models import Fanout, FanoutJob
from orchestration.models import Run
from reviews.access import get_job_for_user, get_run_for_user

J = FanoutJob.Status
PAGE_SIZE = 100


def progress(run: Run) -> dict[str, Any] | None:
    """Counts and bar widths for the run page, or None for a run that is not a fan-out."""
    fan = Fanout.objects.filter(run=run).first()
    if fan is None:
        return None
    tally = counts(run.pk)
    total = fan.total or tally["total"]

    def pct(n: int) -> float:
        return round(100 * n / total, 2) if total else 0

    return {
        "fan": fan,
        "total": total,
        "counts": tally,
        "threshold": f"{fan.failure_threshold:.0%}",
        "bars": [
            (status, tally[status], pct(tally[status]))
            for status in (J.SUCCEEDED, J.FAILED, J.RUNNING, J.CANCELLED)
        ],
        "done": tally[J.SUCCEEDED] + tally[J.FAILED] + tally[J.CANCELLED],
    }


@require_GET
def job_grid(request: Any, run_id: Any) -> Any:
    """The filterable grid (an HTMX partial, polled while the run is not final)."""
    run = get_run_for_user(request.user, run_id)
    jobs = FanoutJob.objects.filter(run=run).order_by("seq")
    status = request.GET.get("status", "")
    if status in J.values:
        jobs = jobs.filter(status=status)
    verdict = request.GET.get("verdict", "")
    if verdict in ("PASS", "FAIL"):
        jobs = jobs.filter(verdict=verdict)
    if request.GET.get("retried"):
        jobs = jobs.filter(attempts__gt=1)
    q = request.GET.get("q", "").strip()
    if q:
        jobs = jobs.filter(Q(job_id__icontains=q) | Q(reason__icontains=q))
    page = Paginator(jobs.defer("prompt", "schema", "output", "output_text"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    response = TemplateResponse(
        request,
        "orchestration/fanout_jobs.html",
        {
            "run": run,
            "page": page,
            "status": status,
            "verdict": verdict,
            "q": q,
            "retried": bool(request.GET.get("retried")),
        },
    )
    if run.is_final and request.headers.get("HX-Request"):
        response.render()
        return HttpResponseStopPolling(response.content)
    return response


@require_GET
def job_detail(request: Any, run_id: Any, job_pk: int) -> Any:
    job = get_job_for_user(request.user, run_id, job_pk)
    run = job.run
    calls = job.model_calls.order_by("turn", "role", "attempt")
    return render(
        request, "orchestration/fanout_job.html", {"run": run, "job": job, "calls": calls}
    )
