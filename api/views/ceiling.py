"""Raising a run's spend ceiling through the JSON API.

The same rule as the ticket page: ``costs.accounting.raise_ceiling`` decides (a manager who
did not request the run, a positive bounded amount), under the run's row lock, and records
an audit event. A run the user cannot see is 404, as on the run page.
"""

from __future__ import annotations

import uuid

from django.http import HttpRequest, JsonResponse

from api import representation as rep
from api.http import ApiError, api_view, json_body
from costs import accounting
from orchestration.models import Run
from reviews import access
from reviews.access import get_run_for_user

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


@api_view("POST")
def raise_ceiling(request: HttpRequest, run_id: uuid.UUID) -> JsonResponse:
    if not access.may_decide(request.user):  # the role first (403), then the row (404)
        raise ApiError(403, "forbidden", "Only a manager may raise a run's spend ceiling.")
    run = get_run_for_user(request.user, run_id)
    if not access.may_raise_ceiling(request.user, run):
        raise ApiError(
            403, "forbidden", "Only a manager who did not request this run may raise its ceiling."
        )
    body = json_body(request)
    fields = {k: "unknown field" for k in sorted(set(body) - {"add_usd", "add_tokens", "comment"})}
    for name in ("add_usd", "comment"):
        if not isinstance(body.get(name, ""), str):
            fields[name] = 'must be a string (a decimal amount for add_usd, e.g. "5.00")'
    tokens = body.get("add_tokens", 0)
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        fields["add_tokens"] = "must be a whole number"
    if fields:
        raise ApiError(
            422, "invalid_input", "The request was not valid; see fields.", fields=fields
        )
    try:
        run = accounting.raise_ceiling(
            run.pk,
            request.user,
            refusal=access.ceiling_refusal,
            usd=body.get("add_usd", ""),
            tokens=str(tokens) if tokens else "",
            comment=body.get("comment", ""),
        )
    except accounting.CeilingError as exc:
        status = STATUS.get(exc.code, 422)
        fields = {exc.field: str(exc)} if exc.code == "invalid_input" else None
        raise ApiError(status, exc.code, str(exc), fields=fields) from None
    return JsonResponse(ceiling(request, run))
