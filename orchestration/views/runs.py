"""The runs list and the run page with its live timeline."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling

from orchestration.access import get_run_for_user, visible_runs
from orchestration.audit import verify_chain
from orchestration.models import FanoutJob, Run
from orchestration.timeline import build_timeline
from orchestration.views.fanout import progress as fanout_progress


@require_GET
def run_list(request):
    runs = visible_runs(request.user).select_related("requested_by").order_by("-created_at")
    status = request.GET.get("status", "")
    if status in Run.Status.values:
        runs = runs.filter(status=status)
    workflow = request.GET.get("workflow", "")
    if workflow:
        runs = runs.filter(workflow_name=workflow)
    page = Paginator(runs, 25).get_page(request.GET.get("page"))
    return render(request, "orchestration/run_list.html", {
        "page": page, "statuses": Run.Status.choices, "status": status, "workflow": workflow,
        "workflows": sorted(set(Run.objects.values_list("workflow_name", flat=True).distinct())),
    })


def _run_context(run: Run) -> dict:
    return {
        "run": run,
        "timeline": build_timeline(run),
        "open_ticket": run.tickets.exclude(status="resolved").first(),
        "chain": verify_chain(run.pk),
        "fanout": fanout_progress(run),
        "job_statuses": FanoutJob.Status.choices,
    }


@require_GET
def run_detail(request, run_id):
    run = get_run_for_user(request.user, run_id)
    return render(request, "orchestration/run_detail.html", _run_context(run))


@require_GET
def run_live(request, run_id):
    """The polled part of the run page; tells htmx to stop polling once the run is final."""
    run = get_run_for_user(request.user, run_id)
    response: TemplateResponse | HttpResponseStopPolling
    response = TemplateResponse(request, "orchestration/run_detail.html#live", _run_context(run))
    if run.is_final:
        response.render()
        stop = HttpResponseStopPolling(response.content)
        return stop
    return response
