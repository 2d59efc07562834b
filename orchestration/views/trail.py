"""The audit trail across runs (filters, search, keyset pages), its exports with their proof,
the offline verifier as a download, and what one person did in a period.

Only managers and auditors (``reviews.access.may_browse_trail``); anyone else gets a 404."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import quote

from django.contrib.auth import get_user_model
from django.db.models import F
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.views.decorators.http import require_GET

from orchestration import (
    audit,
    audit_export,
    export_verifier,
    person_activity,
    trail_search,
    untrusted,
)
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
    rows = _rows_html(page.events)
    context = {
        "page": page,
        "rows": rows,
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


# One row of the trail's table. Built here rather than in the template: 50 rows of a dozen
# variables, filters and {% url %} tags were ~40 ms of a ~60 ms page (profiled at 1,000,000
# events, bench/audit_trail.py --profile); this is ~10 ms, most of it the payloads' JSON.
# Every value is escaped by format_html.
_ROW = (
    '<tr id="event-{pk}" class="trail-event">'
    '<td><a href="?q=%23{seq}" title="id {pk}, hash {hash}&#10;previous {prev_hash}"><code>{seq}</code></a></td>'
    '<td title="{when_iso}" class="nowrap">{when}</td>'
    "<td>{actor}</td>"
    '<td><a href="?kind={kind_q}"><code>{kind}</code></a></td>'
    '<td class="concerns">{concerns}</td>'
    '<td class="payload">{payload}</td>'
    "</tr>\n"
)


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


def _rows_html(events: list) -> list[SafeString]:
    """The table rows of a page of events (links to the run, ticket, approval and person)."""
    urls: dict[tuple[str, object], str] = {}

    def url(name: str, arg: object) -> str:
        if (name, arg) not in urls:
            urls[(name, arg)] = reverse(name, args=[arg])
        return urls[(name, arg)]

    trail_url = reverse("audit_trail")
    tz = timezone.get_current_timezone()
    rows = []
    for ev in events:
        annotate_for_display(ev)
        seq = "…" if ev.seq is None else ev.seq
        when = ev.created_at.astimezone(tz)
        if ev.actor_id:
            actor = format_html(
                '<a href="{}" title="What {} did">{}</a>',
                url("person_activity", ev.actor_label),
                ev.actor_label,
                ev.actor_label,
            )
        else:
            actor = format_html('<span class="muted">{}</span>', ev.actor_label)
        concerns = []
        if ev.run_id:
            concerns.append(
                format_html(
                    '<a class="to-run" href="{}">run {}</a> <span class="muted small">{}</span>',
                    url("run_detail", ev.run_id),
                    str(ev.run_id)[:8],
                    getattr(ev, "workflow_name", "") or "",
                )
            )
        if ev.links["ticket"]:
            concerns.append(
                format_html(
                    '<br><a class="to-ticket" href="{}">ticket #{}</a>',
                    url("ticket_detail", ev.links["ticket"]),
                    ev.links["ticket"],
                )
            )
        if ev.links["approval"]:
            concerns.append(
                format_html(
                    '<br><a class="to-approval" href="{}?approval={}">approval #{}</a>',
                    trail_url,
                    ev.links["approval"],
                    ev.links["approval"],
                )
            )
        n = ev.evidence_rows
        if ev.payload_purged_at:
            payload = format_html(
                '<span class="muted">purged {} (retention){}</span>',
                ev.payload_purged_at.astimezone(tz).strftime("%Y-%m-%d"),
                format_html("; its evidence digests of {} row{} kept", n, _plural(n)) if n else "",
            )
        else:
            payload = format_html(
                "<details><summary><code>{}</code>{}</summary><pre>{}</pre></details>",
                Truncator(ev.preview).chars(90),
                format_html(
                    ' <span class="muted small">+ evidence of {} row{}</span>', n, _plural(n)
                )
                if n
                else "",
                ev.pretty,
            )
        rows.append(
            format_html(
                _ROW,
                pk=ev.pk,
                seq=seq,
                hash=ev.hash,
                prev_hash=ev.prev_hash,
                when_iso=when.isoformat(),
                when=when.strftime("%Y-%m-%d %H:%M:%S"),
                actor=actor,
                kind_q=quote(ev.kind, safe="/"),
                kind=ev.kind,
                concerns=mark_safe("".join(concerns)),  # noqa: S308 - each part built by format_html
                payload=payload,
            )
        )
    return rows


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
        untrusted.check_day(first, "from")
        untrusted.check_day(last, "to")
    except untrusted.Rejected as exc:
        errors.append(f"{exc}; showing the last 30 days.")
        first, last = today - dt.timedelta(days=29), today
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
