"""Runs in the JSON API: start one, follow one, list them.

Starting goes through ``orchestration.launch.start_run``, the path every entry point
uses, so input validation, budgets, the rate limit and the approval gate apply exactly
as on the start page. Reading goes through ``reviews.access``, so someone else's
run answers 404 here as it does on the run page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any

import anthropic
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from api import representation as rep
from api.http import ApiError, api_view, json_body, require_perm
from orchestration.launch import RunRefused, start_run
from orchestration.models import Run
from orchestration.workflows import registry
from reviews.access import get_run_for_user, may_start, visible_runs

# RunRefused.code -> HTTP status. A budget refusal is 403, not 422: the request is valid and
# retrying it will not help until the budget's period rolls over or a manager raises it.
REFUSAL_STATUS = {
    RunRefused.INVALID_INPUT: 422,
    RunRefused.BUDGET_EXCEEDED: 403,
    RunRefused.RATE_LIMITED: 429,
    RunRefused.USER_PAUSED: 403,
    # The workflow's approved version cannot serve (its change awaits a second person).
    RunRefused.VERSION_UNAVAILABLE: 409,
}
PAUSED_MESSAGE = (
    "The run was not started: your new runs are paused until a manager lifts the pause."
)
IDEMPOTENCY_KEY_MAX = 200  # Run.idempotency_key's max_length
DEFAULT_LIMIT, MAX_LIMIT = 25, 100


@api_view("GET", "POST")
def runs(request: HttpRequest) -> JsonResponse:
    return _start(request) if request.method == "POST" else _list(request)


def _idempotency_key(request: HttpRequest) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable characters, e.g. a UUID.",
        )
    return key


def _start(request: HttpRequest) -> JsonResponse:
    require_perm(request, may_start, "start runs")
    body = json_body(request)
    unknown = sorted(set(body) - {"workflow", "input"})
    fields: dict[str, str] = {k: "unknown field" for k in unknown}
    workflow_name = body.get("workflow")
    if not isinstance(workflow_name, str) or not workflow_name:
        fields["workflow"] = "required: the name of a workflow (GET /api/workflows lists them)"
    raw_input = body.get("input")
    if not isinstance(raw_input, dict):
        fields["input"] = "required: a JSON object matching the workflow's input schema"
    if fields:
        raise ApiError(
            422, "invalid_input", "The request was not valid; see fields.", fields=fields
        )
    key = _idempotency_key(request)

    if key is not None:
        existing = Run.objects.filter(requested_by=request.user, idempotency_key=key).first()
        if existing is not None:
            return _replay(request, existing, workflow_name, raw_input)
    try:
        run = start_run(workflow_name, raw_input, request.user, idempotency_key=key, source="api")
    except RunRefused as refused:
        status = REFUSAL_STATUS.get(refused.code, 422)
        headers = {}
        retry_after = getattr(refused, "retry_after", None)
        if status == 429 and retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        message = (
            PAUSED_MESSAGE
            if refused.code == RunRefused.USER_PAUSED
            else {
                422: "The run was not started: the input is not valid; see fields.",
                403: "The run was not started: it would exceed a hard budget.",
                429: "The run was not started: you have reached your limit on starting runs. Try again later.",
                409: "The run was not started: no approved version of the workflow can serve it; see fields.",
            }[status]
        )
        raise ApiError(
            status, refused.code, message, fields=refused.errors, headers=headers
        ) from None
    except anthropic.APIError as exc:
        # The estimate needs count_tokens; without it there is no approval decision to make.
        raise ApiError(
            503,
            "estimate_unavailable",
            f"The run was not started: the cost estimate could not be made ({type(exc).__name__}). "
            "Try again later.",
            headers={"Retry-After": "30"},
        ) from None
    if run.input != raw_input or run.workflow_name != workflow_name:
        # A concurrent request with the same key won the race with a different body.
        return _replay(request, run, workflow_name, raw_input)
    response = _created(request, run, 201)
    response["Location"] = reverse("api:run_detail", args=[run.pk])
    return response


def _replay(
    request: HttpRequest, run: Run, workflow_name: str, raw_input: dict[str, Any]
) -> JsonResponse:
    """A retry with a key already used: the same run, or a refusal when the body changed."""
    if run.workflow_name != workflow_name or run.input != raw_input:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"This Idempotency-Key was already used for run {run.pk} with a different workflow or "
            "input. Use a new key for a new run.",
        )
    response = _created(request, run, 200)
    response["Idempotent-Replayed"] = "true"
    return response


def _created(request: HttpRequest, run: Run, status: int) -> JsonResponse:
    body = {
        "id": str(run.pk),
        "status": run.status,
        "estimate": rep.estimate(run),
        "links": rep.links(request, run),
    }
    return JsonResponse(body, status=status)


@api_view("GET")
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> JsonResponse:
    run = get_run_for_user(request.user, run_id)
    open_ticket = run.tickets.exclude(status="resolved").select_related("assignee").first()
    return JsonResponse(rep.run_detail(request, run, open_ticket))


@api_view("GET")
def run_calls(request: HttpRequest, run_id: uuid.UUID) -> JsonResponse:
    run = get_run_for_user(request.user, run_id)
    return JsonResponse(rep.run_calls(request, run))


def _encode_cursor(run: Run) -> str:
    raw = f"{run.created_at.isoformat()}|{run.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, pk = raw.partition("|")
        when = parse_datetime(created)
        if when is None:
            raise ValueError(created)
        return when, uuid.UUID(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            400,
            "invalid_cursor",
            "This cursor is not valid; use the 'next' link of a previous page as it is.",
        ) from None


def _list(request: HttpRequest) -> JsonResponse:
    """Newest first, keyset-paginated on (created_at, id), so pages stay stable while runs start."""
    runs = visible_runs(request.user).select_related("requested_by")
    fields: dict[str, str] = {}
    status = request.GET.get("status", "")
    if status:
        statuses = [s for s in status.split(",") if s]
        bad = [s for s in statuses if s not in Run.Status.values]
        if bad:
            fields["status"] = (
                f"unknown status {', '.join(bad)}; one of {', '.join(Run.Status.values)}"
            )
        runs = runs.filter(status__in=statuses)
    if workflow := request.GET.get("workflow", ""):
        runs = runs.filter(workflow_name=workflow)
    limit_text = request.GET.get("limit", str(DEFAULT_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        fields["limit"] = f"a whole number from 1 to {MAX_LIMIT}"
    if fields:
        raise ApiError(422, "invalid_query", "The query was not valid; see fields.", fields=fields)
    limit = int(limit_text)
    if cursor := request.GET.get("cursor", ""):
        created, pk = _decode_cursor(cursor)
        runs = runs.filter(Q(created_at__lt=created) | Q(created_at=created, pk__lt=pk))
    page = list(runs.order_by("-created_at", "-pk")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    next_url = None
    if more:
        query = request.GET.copy()
        query["cursor"] = _encode_cursor(page[-1])
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return JsonResponse({"results": [rep.run_summary(request, r) for r in page], "next": next_url})


@api_view("GET")
def workflows(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"results": [rep.workflow(wf) for wf in registry.all_workflows()]})
