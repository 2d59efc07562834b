"""Raising a run's spend ceiling through the JSON API.

The same rule as the ticket page: ``costs.accounting.raise_ceiling`` decides (a manager who
did not request the run, a positive bounded amount), under the run's row lock, and records
an audit event. A run the user cannot see is 404, as on the run page.
"""

from __future__ import annotations

import uuid

from django.http import HttpRequest
from ninja import Router

from api import representation as rep
from api import schemas as s
from api.http import ApiError, BearerToken
from costs import accounting
from orchestration.models import Run
from reviews import access
from reviews.access import get_run_for_user

router = Router()

STATUS = {"forbidden": 403, "conflict": 409, "not_found": 404, "invalid_input": 422}


def ceiling(request: HttpRequest, run: Run) -> dict[str, object]:
    return {
        "id": str(run.pk),
        "ceiling_usd": rep.money(run.ceiling_usd),
        "ceiling_tokens": run.ceiling_tokens,
        "ceiling_basis": run.ceiling_basis,
        "cost_usd": rep.money(run.cost_usd),
        "reserved_usd": rep.money(run.reserved_usd),
        "links": rep.links(request, run),
    }


@router.post(
    "runs/{uuid:run_id}/ceiling",
    operation_id="raiseCeiling",
    url_name="run_ceiling",
    summary="Raise a run's spend ceiling",
    # The role first (403), then the row (404).
    auth=BearerToken(
        access.may_decide,
        "Only a manager may raise a run's spend ceiling.",
        row=get_run_for_user,
    ),
    response={200: s.Ceiling} | s.errors(*s.AUTH_ERRORS, *s.BODY_ERRORS, 403, 404, 409),
)
def raise_ceiling(
    request: HttpRequest, run_id: uuid.UUID, payload: s.RaiseCeiling
) -> dict[str, object]:
    run = get_run_for_user(request.user, run_id)
    if not access.may_raise_ceiling(request.user, run):
        raise ApiError(
            403, "forbidden", "Only a manager who did not request this run may raise its ceiling."
        )
    tokens = payload.add_tokens
    try:
        run = accounting.raise_ceiling(
            run.pk,
            request.user,
            refusal=access.ceiling_refusal,
            usd=payload.add_usd,
            tokens=str(tokens) if tokens else "",
            comment=payload.comment,
        )
    except accounting.CeilingError as exc:
        status = STATUS.get(exc.code, 422)
        fields = {exc.field: str(exc)} if exc.code == "invalid_input" else None
        raise ApiError(status, exc.code, str(exc), fields=fields) from None
    return ceiling(request, run)
