"""The approval queue through the JSON API: list the requests, approve or reject one.

The list is ``reviews.access.visible_approvals`` behind the queue page's role check
(``may_view_approvals``); a decision calls ``reviews.approvals.decide``, the one function the
queue's buttons call, which holds the four-eyes rule (the requester never decides their own
request), the reject-needs-a-reason rule and the one-decision-ever lock. Its ``ApprovalError``
carries the status: ``forbidden`` 403, ``invalid_input`` 422, ``not_found`` 404, ``conflict``
409.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from ninja import Query, Router

from api import representation as rep
from api import schemas as s
from api.http import ApiError, BearerToken
from reviews import access, approvals
from reviews.models import ApprovalRequest

router = Router()
STATUS = {"forbidden": 403, "invalid_input": 422, "not_found": 404, "conflict": 409}
MAX_LIMIT = 100


def approval(request: HttpRequest, req: ApprovalRequest) -> dict[str, Any]:
    run = req.run
    return {
        "id": req.pk,
        "status": req.status,
        "run": {"id": str(run.pk), "status": run.status, "links": rep.links(request, run)},
        "estimate_usd": rep.money(req.estimate_usd),
        "threshold_usd": rep.money(req.threshold_usd),
        "requested_by": req.requested_by.get_username(),
        "decided_by": req.decided_by.get_username() if req.decided_by_id else None,
        "comment": req.comment,
        "created_at": rep.iso(req.created_at),
        "expires_at": rep.iso(req.expires_at),
        "decided_at": rep.iso(req.decided_at),
        "links": {
            "decide": request.build_absolute_uri(reverse("api:approval_decide", args=[req.pk])),
            "web": request.build_absolute_uri(reverse("approval_detail", args=[req.pk])),
        },
    }


@router.get(
    "approvals",
    operation_id="listApprovals",
    url_name="approvals",
    summary="Approval requests (pending first to expire, or decided, newest first)",
    auth=BearerToken(access.may_view_approvals, "Your account may not view the approval queue."),
    response={200: s.ApprovalList} | s.errors(*s.AUTH_ERRORS, 403, 422),
)
def list_approvals(
    request: HttpRequest,
    status: s.ApprovalStatus = "pending",  # type: ignore[valid-type]
    limit: int = Query(25, ge=1, le=MAX_LIMIT),
) -> dict[str, Any]:
    requests = access.visible_approvals(request.user).filter(status=status)
    order = (
        ("expires_at", "pk") if status == ApprovalRequest.Status.PENDING else ("-decided_at", "-pk")
    )
    page = requests.select_related("run", "requested_by", "decided_by").order_by(*order)[:limit]
    return {"results": [approval(request, req) for req in page]}


@router.post(
    "approvals/{int:request_id}/decide",
    operation_id="decideApproval",
    url_name="approval_decide",
    summary="Approve or reject a run waiting for approval",
    auth=BearerToken(
        access.may_decide,
        "Only a manager may approve or reject runs.",
        row=access.get_approval_for_user,
    ),
    response={200: s.Approval} | s.errors(*s.AUTH_ERRORS, *s.BODY_ERRORS, 403, 404, 409),
)
def decide(request: HttpRequest, request_id: int, payload: s.Decide) -> dict[str, Any]:
    try:
        approvals.decide(
            request_id,
            request.user,
            approve=payload.decision == "approve",
            comment=payload.comment,
        )
    except approvals.ApprovalError as exc:
        code = exc.code if exc.code in STATUS else "conflict"
        fields = {"comment": str(exc)} if code == "invalid_input" else None
        raise ApiError(STATUS[code], code, str(exc), fields=fields) from None
    return approval(request, access.get_approval_for_user(request.user, request_id))
