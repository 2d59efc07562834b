"""The runs list (filters, search, keyset pages) and the run page with its live timeline."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling

from costs.models import ModelPrice
from costs.reports import run_by_model, run_savings
from orchestration.audit import verify_run_live
from orchestration.models import FanoutJob, Run, WorkflowVersion
from orchestration.run_search import (
    SORTS,
    BadCursor,
    RunFilters,
    filtered_runs,
    keyset_page,
    parse_filters,
)
from orchestration.subagents import family
from orchestration.timeline import TIMELINE_WINDOW, timeline_html, timeline_window
from orchestration.views import run_actions
from orchestration.views.fanout import progress as fanout_progress
from orchestration.workflows.versions import drift
from reviews.access import get_run_for_user, may_view_versions


def _sort_links(filters: RunFilters) -> dict[str, dict[str, str]]:
    """For each sortable column: the URL that sorts by it (flipping the direction if current)."""
    links = {}
    for key in SORTS:
        current = key == filters.sort
        direction = (
            ("asc" if filters.desc else "desc")
            if current
            else ("asc" if key == "workflow" else "desc")
        )
        links[key] = {
            "qs": filters.querystring(sort=key, dir=direction),
            "arrow": ("↓" if filters.desc else "↑") if current else "",
        }
    return links


@require_GET
def run_list(request):
    filters = parse_filters(request.GET)
    runs = filtered_runs(request.user, filters).select_related("requested_by")
    errors = list(filters.errors)
    try:
        page = keyset_page(
            runs, filters, after=request.GET.get("after", ""), before=request.GET.get("before", "")
        )
    except BadCursor as exc:
        errors.append(str(exc))
        page = keyset_page(runs, filters)
    context = {
        "page": page,
        "filters": filters,
        "errors": errors,
        "statuses": Run.Status.choices,
        "sort_links": _sort_links(filters),
        "base_qs": filters.querystring(),
        "filtered": any(v for k, v in filters.raw.items() if k not in ("sort", "dir")),
    }
    if request.htmx:
        return render(request, "orchestration/run_list.html#results", context)
    context.update(
        {
            "workflows": sorted(set(WorkflowVersion.objects.values_list("name", flat=True))),
            "models": sorted(set(ModelPrice.objects.values_list("model", flat=True))),
        }
    )
    return render(request, "orchestration/run_list.html", context)


def _model_latency(timeline) -> dict | None:
    """Time to first token and total of the latest answered call, and the median time to first
    token of the calls shown: from the timeline's rows, no query of its own."""
    calls = [
        e.obj
        for e in timeline
        if e.kind == "model" and e.obj.latency_ms is not None and not e.obj.copied
    ]
    if not calls:
        return None
    firsts = sorted(c.first_token_ms for c in calls if c.first_token_ms is not None)
    return {
        "first_token_ms": calls[-1].first_token_ms,
        "total_ms": calls[-1].latency_ms,
        "median_first_token_ms": firsts[len(firsts) // 2] if firsts else None,
        "calls": len(calls),
    }


def _run_context(run: Run, request, *, live: bool = False) -> dict:
    whole = request.GET.get("timeline") == "all"
    timeline = timeline_window(run, last=None if whole else TIMELINE_WINDOW)
    return {
        "run": run,
        "timeline": timeline,
        "timeline_rows": timeline_html(timeline),
        # A model call is streaming its answer: the live part polls faster to show it grow.
        "streaming": any(
            e.kind == "model" and e.obj.status == "pending" and not e.obj.batch_id for e in timeline
        ),
        "model_latency": _model_latency(timeline),
        "whole_timeline": whole,
        "timeline_window": TIMELINE_WINDOW,
        "open_ticket": run.tickets.exclude(status="resolved").first(),
        # The page checks the run's row versions against its signed checkpoint; the poll does not.
        "chain": verify_run_live(run.pk, check_versions=not live),
        "savings": run_savings(run),
        "by_model": run_by_model(run),
        "approval": run.approvals.select_related("decided_by").order_by("-created_at").first(),
        "fanout": fanout_progress(run),
        "family": family(run),
        "job_statuses": FanoutJob.Status.choices,
    }


@require_GET
def run_detail(request, run_id):
    run = get_run_for_user(request.user, run_id)
    context = _run_context(run, request) | run_actions.page_context(request.user, run)
    # A run is judged by the version it started on: say so when its code is not deployed.
    context["version_drift"] = drift(run.workflow_version)
    context["may_view_versions"] = may_view_versions(request.user)
    return render(request, "orchestration/run_detail.html", context)


@require_GET
def run_live(request, run_id):
    """The polled part of the run page; tells htmx to stop polling once the run is final.

    Rendered without the request's context processors: the part shows nothing of the
    navigation, whose counts (pending approvals, open alerts, the person's roles) were three
    queries of every poll."""
    run = get_run_for_user(request.user, run_id)
    html = render_to_string(
        "orchestration/run_detail.html#live", _run_context(run, request, live=True)
    )
    if run.is_final:
        return HttpResponseStopPolling(html)
    return HttpResponse(html)
