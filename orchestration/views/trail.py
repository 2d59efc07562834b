"""The audit trail across runs (filters, search, keyset pages), its exports with their proof,
the offline verifier as a download, and what one person did in a period.

Only managers and auditors (``reviews.access.may_browse_trail``); anyone else gets a 404."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db.models import F
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from orchestration import audit, audit_export, export_verifier, person_activity, trail_search
from orchestration.models import WorkflowVersion
from orchestration.trail_search import (
    annotate_for_display,
    filtered_events,
    keyset_page,
    known_kinds,
    links,
    parse_filters,
    search_ids,
)
from reviews.access import trail_required

VERIFIER_SOURCE = Path(export_verifier.__file__)


@trail_required
@require_GET
def trail(request):
    filters = parse_filters(request.GET)
    # The run's workflow name only: select_related would read every run column (input, result,
    # the search vector) for each of the page's events.
    hits = search_ids(filters.q) if filters.q else None
    events = filtered_events(filters, hits).annotate(workflow_name=F("run__workflow_name"))
    page = keyset_page(
        events, after=request.GET.get("after", ""), before=request.GET.get("before", "")
    )
    for event in page.events:
        annotate_for_display(event)
    context = {
        "page": page,
        "filters": filters,
        "errors": filters.errors,
        "base_qs": filters.querystring(),
        "filtered": bool(filters.active),
        # The search read only the newest SEARCH_CAP matches: say so.
        "search_cap": trail_search.SEARCH_CAP
        if hits is not None and len(hits) >= trail_search.SEARCH_CAP
        else 0,
        "public_key": audit_export.public_key_hex(),
        "public_key_id": audit_export.public_key_id(),
    }
    if request.htmx:
        return render(request, "orchestration/trail.html#results", context)
    context.update(
        {
            "kinds": known_kinds(),
            "workflows": sorted(set(WorkflowVersion.objects.values_list("name", flat=True))),
        }
    )
    return render(request, "orchestration/trail.html", context)


@trail_required
@require_GET
def trail_export(request, fmt: str):
    if fmt not in ("csv", "jsonl"):
        raise Http404("Unknown export format.")
    filters = parse_filters(request.GET)
    if filters.errors:
        return HttpResponse(
            "Cannot export: " + " ".join(filters.errors) + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    # Recorded before the head is read: the export names itself in the chain it proves.
    audit.record(
        "trail.exported", actor=request.user, payload={"format": fmt, "filters": filters.active}
    )
    events = filtered_events(filters)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if fmt == "csv":
        response = StreamingHttpResponse(
            audit_export.csv_lines(events), content_type="text/csv; charset=utf-8"
        )
    else:
        response = StreamingHttpResponse(
            audit_export.jsonl_lines(
                events, filters=filters.active, exported_by=request.user.get_username()
            ),
            content_type="application/x-ndjson; charset=utf-8",
        )
    response["Content-Disposition"] = f'attachment; filename="audit-trail-{stamp}.{fmt}"'
    return response


@trail_required
@require_GET
def verifier_script(request):
    """The stand-alone verifier (standard library only), to check exports anywhere."""
    response = HttpResponse(
        VERIFIER_SOURCE.read_text(encoding="utf-8"), content_type="text/x-python; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="verify_audit_export.py"'
    return response


@trail_required
@require_GET
def public_key(request):
    """The export-signing public key (hex), for ``verify_audit_export.py --public-key``."""
    response = HttpResponse(
        audit_export.public_key_hex() + "\n", content_type="text/plain; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="countersign-audit-export.pub"'
    return response


def _period(request) -> tuple[dt.date, dt.date, list[str]]:
    """The period's first and last day (default: the last 30 days), and any error."""
    today = timezone.localdate()
    errors = []
    try:
        first = dt.date.fromisoformat(request.GET.get("from") or str(today - dt.timedelta(days=29)))
        last = dt.date.fromisoformat(request.GET.get("to") or str(today))
    except ValueError:
        errors.append("Dates are YYYY-MM-DD; showing the last 30 days.")
        first, last = today - dt.timedelta(days=29), today
    if first > last:
        errors.append("The period starts after it ends; showing the last 30 days.")
        first, last = today - dt.timedelta(days=29), today
    return first, last, errors


@trail_required
@require_GET
def activity(request, username: str):
    other = request.GET.get("person", "").strip()
    if other and other != username:  # the page's person field: the same period, another person
        query = request.GET.copy()
        query.pop("person")
        url = reverse("person_activity", args=[other])
        return redirect(f"{url}?{query.urlencode()}" if query else url)
    person = get_user_model().objects.filter(username=username).first()
    if person is None:
        raise Http404("No such person.")
    first, last, errors = _period(request)
    since = timezone.make_aware(dt.datetime.combine(first, dt.time.min))
    until = timezone.make_aware(dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min))
    result = person_activity.activity(person, since, until)
    for section in result.sections:
        for event in section.events:
            event.links = links(event)  # type: ignore[attr-defined]
            event.correction = person_activity.correction(event)  # type: ignore[attr-defined]
    return render(
        request,
        "orchestration/activity.html",
        {
            "person": person,
            "activity": result,
            "first": first,
            "last": last,
            "errors": errors,
            # The trail's own time-range filter for the same period.
            "period_qs": f"actor={person.get_username()}&since={first}&until={last}",
            "people": get_user_model().objects.filter(is_active=True).order_by("username"),
        },
    )
