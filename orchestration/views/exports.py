"""Streamed exports of the filtered runs list (CSV and JSONL), and the whole-run JSON download.

The exports read the same filters as the list (``run_search``) and stream: rows come from a
server-side cursor (``.iterator(chunk_size)``) and are written one by one, so 100,000 runs
export in constant memory (bench/RESULTS.md). Every value is redacted on the way out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from orchestration import audit
from orchestration.privacy import redact
from orchestration.run_document import run_document, run_summary
from orchestration.run_search import filtered_runs, ordered, parse_filters
from orchestration.untrusted import json_text
from reviews.access import get_run_for_user
from reviews.models import EscalationTicket

CHUNK_SIZE = 2000
CSV_COLUMNS = [
    "id",
    "workflow",
    "workflow_version",
    "status",
    "requested_by",
    "parent",
    "created_at",
    "started_at",
    "finished_at",
    "estimate_usd",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "steps_taken",
    "escalated",
    "error",
    "input",
    "result",
]


class _Echo:
    """csv.writer target that hands back each line instead of buffering it."""

    def write(self, value: str) -> str:
        return value


def _rows(runs: Any) -> Iterator[dict[str, Any]]:
    runs = runs.select_related("workflow_version", "requested_by").annotate(
        escalated=Exists(EscalationTicket.objects.filter(run=OuterRef("pk")))
    )
    for run in runs.iterator(chunk_size=CHUNK_SIZE):
        row = run_summary(run)
        row["escalated"] = run.escalated
        yield redact(row)


def _csv_lines(runs: Any) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for row in _rows(runs):
        cells = []
        for column in CSV_COLUMNS:
            value = row[column]
            if isinstance(value, dict | list):
                value = json_text(value, separators=(",", ":"))
            elif value is None:
                value = ""
            cells.append(value)
        yield writer.writerow(cells)


def _jsonl_lines(runs: Any) -> Iterator[str]:
    for row in _rows(runs):
        yield json_text(row, encoder=DjangoJSONEncoder) + "\n"


@require_GET
def export_runs(request, fmt: str):
    if fmt not in ("csv", "jsonl"):
        raise Http404("Unknown export format.")
    filters = parse_filters(request.GET)
    if filters.errors:
        return HttpResponse(
            "Cannot export: " + " ".join(filters.errors) + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    runs = ordered(filtered_runs(request.user, filters), filters)
    audit.record(
        "runs.exported",
        actor=request.user,
        payload={"format": fmt, "filters": {k: v for k, v in filters.raw.items() if v}},
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if fmt == "csv":
        response = StreamingHttpResponse(_csv_lines(runs), content_type="text/csv; charset=utf-8")
    elif fmt == "jsonl":
        response = StreamingHttpResponse(
            _jsonl_lines(runs), content_type="application/x-ndjson; charset=utf-8"
        )
    response["Content-Disposition"] = f'attachment; filename="runs-{stamp}.{fmt}"'
    return response


@require_GET
def run_download(request, run_id):
    run = get_run_for_user(request.user, run_id)
    # Every payload as recorded; NUL, lone surrogates, control characters and bidirectional
    # overrides as JSON escapes (orchestration.untrusted.json_text): the same values, no 500.
    response = HttpResponse(
        json_text(run_document(run), indent=2, encoder=DjangoJSONEncoder),
        content_type="application/json",
    )
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.json"'
    return response
