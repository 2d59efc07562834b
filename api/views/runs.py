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
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from ninja import Header, Query, Router, Status

from api import representation as rep
from api import schemas as s
from api.http import ApiError, BearerToken
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

router = Router()


def idempotency_key_from(key: str | None) -> str | None:
    """The Idempotency-Key header, checked; ApiError(400) when it cannot be one."""
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


@router.post(
    "runs",
    operation_id="startRun",
    url_name="runs",
    summary="Start a run",
    auth=BearerToken(may_start, "Your account may not start runs."),
    response={200: s.RunCreated, 201: s.RunCreated}
    | s.errors(*s.AUTH_ERRORS, *s.BODY_ERRORS, 403, 409, 503),
)
def start(
    request: HttpRequest,
    response: HttpResponse,
    payload: s.StartRun,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        description="Up to 200 printable characters, unique per request you mean (a UUID is "
        "ideal). A retry with the same key and body answers 200 with the same run.",
    ),
) -> Status[dict[str, Any]]:
    """Goes through the start page's path: input validation, budgets, the rate limit on starting
    runs and the approval gate apply."""
    workflow_name, raw_input = payload.workflow, payload.input
    key = idempotency_key_from(idempotency_key)

    if key is not None:
        existing = Run.objects.filter(requested_by=request.user, idempotency_key=key).first()
        if existing is not None:
            return _replay(request, response, existing, workflow_name, raw_input)
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
        return _replay(request, response, run, workflow_name, raw_input)
    response["Location"] = reverse("api:run_detail", args=[run.pk])
    return Status(201, _created(request, run))


def _replay(
    request: HttpRequest,
    response: HttpResponse,
    run: Run,
    workflow_name: str,
    raw_input: dict[str, Any],
) -> Status[dict[str, Any]]:
    """A retry with a key already used: the same run, or a refusal when the body changed."""
    if run.workflow_name != workflow_name or run.input != raw_input:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"This Idempotency-Key was already used for run {run.pk} with a different workflow or "
            "input. Use a new key for a new run.",
        )
    response["Idempotent-Replayed"] = "true"
    return Status(200, _created(request, run))


def _created(request: HttpRequest, run: Run) -> dict[str, Any]:
    return {
        "id": str(run.pk),
        "status": run.status,
        "estimate": rep.estimate(run),
        "links": rep.links(request, run),
    }


@router.get(
    "runs/{uuid:run_id}",
    operation_id="getRun",
    url_name="run_detail",
    summary="One run",
    response={200: s.Run} | s.errors(*s.AUTH_ERRORS, 404),
)
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> dict[str, Any]:
    """A run the token's user may not see is 404, as on the run page."""
    run = get_run_for_user(request.user, run_id)
    open_ticket = run.tickets.exclude(status="resolved").select_related("assignee").first()
    return rep.run_detail(request, run, open_ticket)


@router.get(
    "runs/{uuid:run_id}/calls",
    operation_id="getRunCalls",
    url_name="run_calls",
    summary="A run's model and tool calls",
    response={200: s.RunCalls} | s.errors(*s.AUTH_ERRORS, 404),
)
def run_calls(request: HttpRequest, run_id: uuid.UUID) -> dict[str, Any]:
    run = get_run_for_user(request.user, run_id)
    return rep.run_calls(request, run)


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


@router.get(
    "runs",
    operation_id="listRuns",
    url_name="run_list",
    summary="Runs the token's user may see",
    response={200: s.RunList} | s.errors(*s.AUTH_ERRORS, 400, 422),
)
def list_runs(
    request: HttpRequest,
    status: str = Query("", description="One status, or several separated by commas."),
    workflow: str = Query(""),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str = Query("", description="From a previous page's `next` link."),
) -> dict[str, Any]:
    """Newest first, keyset-paginated on (created_at, id), so pages stay stable while runs start."""
    runs = visible_runs(request.user).select_related("requested_by")
    fields: dict[str, str] = {}
    if status:
        statuses = [s for s in status.split(",") if s]
        bad = [s for s in statuses if s not in Run.Status.values]
        if bad:
            fields["status"] = (
                f"unknown status {', '.join(bad)}; one of {', '.join(Run.Status.values)}"
            )
        runs = runs.filter(status__in=statuses)
    if workflow:
        runs = runs.filter(workflow_name=workflow)
    if fields:
        raise ApiError(422, "invalid_query", "The query was not valid; see fields.", fields=fields)
    if cursor:
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
    return {"results": [rep.run_summary(request, r) for r in page], "next": next_url}


@router.get(
    "workflows",
    operation_id="listWorkflows",
    url_name="workflows",
    summary="The workflows and their input schemas",
    response={200: s.WorkflowList} | s.errors(*s.AUTH_ERRORS),
)
def workflows(request: HttpRequest) -> dict[str, Any]:
    return {"results": [rep.workflow(wf) for wf in registry.all_workflows()]}
