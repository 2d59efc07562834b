"""Cancel, re-run and fork a run through the JSON API.

Each endpoint calls the one service function the run page calls (``orchestration.run_actions``,
``orchestration.forks``), which holds the whole rule; an ``ActionRefused`` becomes the error
with its status (``not_found`` 404, ``forbidden`` 403, ``conflict`` 409, ``invalid_input`` 422,
and the start gate's refusals as on ``POST /api/runs``). The role check is the page's
(``reviews.access.may_*_runs``); a run the user cannot see is 404, before the body is read.
"""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Header, Router, Status

from api import representation as rep
from api import schemas as s
from api.http import ApiError, BearerToken
from api.views.runs import REFUSAL_STATUS, idempotency_key_from
from orchestration import forks, run_actions
from orchestration.models import Run
from orchestration.run_actions import ActionRefused
from orchestration.storable import dumps
from reviews import access

router = Router()

STATUS = {
    ActionRefused.NOT_FOUND: 404,
    ActionRefused.FORBIDDEN: 403,
    ActionRefused.CONFLICT: 409,
    ActionRefused.INVALID_INPUT: 422,
    **REFUSAL_STATUS,
}
KEY_DESCRIPTION = (
    "Up to 200 printable characters: a retry with the same key returns the run the first "
    "request started."
)


ESTIMATE_UNAVAILABLE = ApiError(
    503,
    "estimate_unavailable",
    "The run was not started: the cost estimate could not be made. Try again later.",
    headers={"Retry-After": "30"},
)


def refusal(refused: ActionRefused) -> ApiError:
    status = STATUS.get(refused.code, 409)
    headers = {}
    if status == 429 and refused.retry_after is not None:
        headers["Retry-After"] = str(int(refused.retry_after))
    return ApiError(
        status, refused.code, str(refused), fields=refused.fields or None, headers=headers
    )


def _derived(request: HttpRequest, response: HttpResponse, run: Run) -> Status[dict[str, Any]]:
    response["Location"] = reverse("api:run_detail", args=[run.pk])
    return Status(
        201,
        {
            "id": str(run.pk),
            "status": run.status,
            "origin": str(run.origin_id),
            "origin_kind": run.origin_kind,
            "fork_turn": run.fork_turn,
            "estimate": rep.estimate(run),
            "links": rep.links(request, run),
        },
    )


ACTION_ERRORS = s.errors(*s.AUTH_ERRORS, *s.BODY_ERRORS, 403, 404, 409)


@router.post(
    "runs/{uuid:run_id}/cancel",
    operation_id="cancelRun",
    url_name="run_cancel",
    summary="Cancel a run that has not ended",
    auth=BearerToken(
        access.may_cancel_runs, "Your account may not cancel runs.", row=access.get_run_for_user
    ),
    response={200: s.Cancelled} | ACTION_ERRORS,
)
def cancel(request: HttpRequest, run_id: uuid.UUID, payload: s.CancelRun) -> dict[str, Any]:
    """Calls ``orchestration.run_actions.cancel``: reservations of calls in flight released,
    fan-out jobs cancelled, the open ticket and approval request closed; 409 for a run that
    already ended."""
    try:
        done = run_actions.cancel(request.user, run_id, reason=payload.reason)
    except ActionRefused as refused:
        raise refusal(refused) from None
    run = done.run
    return {
        "run": {"id": str(run.pk), "status": run.status, "links": rep.links(request, run)},
        "released_calls": done.released_calls,
        "cancelled_jobs": done.cancelled_jobs,
        "closed_tickets": done.closed_tickets,
        "closed_approvals": done.closed_approvals,
    }


@router.post(
    "runs/{uuid:run_id}/rerun",
    operation_id="rerunRun",
    url_name="run_rerun",
    summary="Start a new run with the same input",
    auth=BearerToken(
        access.may_rerun_runs, "Your account may not re-run runs.", row=access.get_run_for_user
    ),
    response={201: s.DerivedRun} | ACTION_ERRORS | s.errors(503),
)
def rerun(
    request: HttpRequest,
    response: HttpResponse,
    run_id: uuid.UUID,
    payload: s.RerunRun,
    idempotency_key: str | None = Header(
        None, alias="Idempotency-Key", description=KEY_DESCRIPTION
    ),
) -> Status[dict[str, Any]]:
    """Calls ``orchestration.run_actions.rerun``: the start path of any run (pause, budgets,
    daily limit, estimate, approval gate), linked to the original."""
    try:
        new = run_actions.rerun(
            request.user, run_id, idempotency_key=idempotency_key_from(idempotency_key)
        )
    except ActionRefused as refused:
        raise refusal(refused) from None
    except anthropic.APIError:
        raise ESTIMATE_UNAVAILABLE from None
    return _derived(request, response, new)


@router.post(
    "runs/{uuid:run_id}/fork",
    operation_id="forkRun",
    url_name="run_fork",
    summary="Start a new run from a step of a finished or paused run",
    auth=BearerToken(
        access.may_fork_runs, "Your account may not fork runs.", row=access.get_run_for_user
    ),
    response={201: s.DerivedRun} | ACTION_ERRORS | s.errors(503),
)
def fork(
    request: HttpRequest,
    response: HttpResponse,
    run_id: uuid.UUID,
    payload: s.ForkRun,
    idempotency_key: str | None = Header(
        None, alias="Idempotency-Key", description=KEY_DESCRIPTION
    ),
) -> Status[dict[str, Any]]:
    """Calls ``orchestration.forks.fork``: everything before the turn is copied as history,
    with the corrected tool output (four eyes on a regulated step) or on another version."""
    corrected = dumps(payload.corrected) if "corrected" in payload.model_fields_set else ""
    try:
        new = forks.fork(
            request.user,
            run_id,
            turn=payload.turn,
            tool_use_id=payload.tool_use_id,
            corrected=corrected,
            version_id=payload.version,
            idempotency_key=idempotency_key_from(idempotency_key),
        )
    except ActionRefused as refused:
        raise refusal(refused) from None
    except anthropic.APIError:
        raise ESTIMATE_UNAVAILABLE from None
    return _derived(request, response, new)
