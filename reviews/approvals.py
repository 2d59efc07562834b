"""Managers' decisions on runs estimated over the approval threshold.

One decision per request, ever: the request row is locked, its status checked, and the run
moved through ``orchestration.lifecycle`` in the same transaction, so two managers clicking
at the same moment produce one decision and the run is queued once (on commit). The
requester can never decide their own request, whatever their role (four-eyes): every path
(the queue's buttons, its bulk approve, any other caller) goes through ``decide``, which asks
``reviews.access.decide_refusal``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestration import audit, lifecycle
from orchestration.models import Run
from orchestration.untrusted import Rejected, check_text
from reviews import access
from reviews.models import ApprovalRequest

A = ApprovalRequest.Status


class ApprovalError(Exception):
    """The decision was refused; nothing was changed. ``code`` is the kind of refusal (the JSON
    API's status): ``forbidden`` (not a manager, or the requester: four eyes), ``invalid_input``
    (the comment), ``not_found``, ``conflict`` (already decided, or expired)."""

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message)
        self.code = code


def decide(request_id: int, user: Any, *, approve: bool, comment: str = "") -> ApprovalRequest:
    try:
        comment = check_text(comment, "comment").strip()
    except Rejected as exc:
        raise ApprovalError(
            f"Your comment was not accepted: it {exc.fields['comment']}.", "invalid_input"
        ) from None
    if not access.may_decide(user):
        raise ApprovalError(access.decide_refusal(user, None), "forbidden")
    if not approve and not comment:
        raise ApprovalError(
            "Say why you reject the run: the requester will see your reason.", "invalid_input"
        )
    with transaction.atomic():
        req = ApprovalRequest.objects.select_for_update().filter(pk=request_id).first()
        if req is None:
            raise ApprovalError("No such approval request.", "not_found")
        if why := access.decide_refusal(user, req):
            raise ApprovalError(why, "forbidden")
        if req.status != A.PENDING:
            who = req.decided_by.get_username() if req.decided_by_id else "the expiry check"
            when = timezone.localtime(req.decided_at) if req.decided_at else None
            raise ApprovalError(
                f"This request was already {req.status} by {who}"
                + (f" at {when:%H:%M:%S}" if when else "")
                + ". Nothing was changed."
            )
        now = timezone.now()
        if req.expires_at <= now:
            _expire(req, now)  # committed: the raise below comes after the transaction
        else:
            _record_decision(req, user, approve, comment, now)
    if req.status == A.EXPIRED:
        raise ApprovalError("This request expired before it was decided; the run was cancelled.")
    return req


def _record_decision(
    req: ApprovalRequest, user: Any, approve: bool, comment: str, now: dt.datetime
) -> None:
    req.status = A.APPROVED if approve else A.REJECTED
    req.decided_by, req.decided_at, req.comment = user, now, comment
    req.save(update_fields=["status", "decided_by", "decided_at", "comment"])
    payload = {
        "request": req.pk,
        "decision": req.status,
        "comment": comment,
        "estimate_usd": str(req.estimate_usd),
    }
    audit.record("approval.decided", run=req.run, actor=user, payload=payload, evidence_of=[req])
    if approve:
        lifecycle.transition(
            req.run_id,
            Run.Status.APPROVED,
            actor=user,
            event_payload=payload,
            expected=(Run.Status.AWAITING_APPROVAL,),
        )
        lifecycle.transition(req.run_id, Run.Status.QUEUED, actor=user)  # enqueued on commit
    else:
        lifecycle.transition(
            req.run_id,
            Run.Status.REJECTED,
            actor=user,
            event_payload=payload,
            expected=(Run.Status.AWAITING_APPROVAL,),
            error=f"Rejected by {user.get_username()}: {comment}",
        )


@dataclass(frozen=True)
class BulkOutcome:
    approved: list[ApprovalRequest]
    refused: dict[int, str]  # request id -> why


def approve_many(request_ids: list[int], user: Any, comment: str = "") -> BulkOutcome:
    """Approve each request on its own: one refused (four-eyes, already decided) stops no other."""
    approved, refused = [], {}
    for request_id in request_ids:
        try:
            approved.append(decide(request_id, user, approve=True, comment=comment))
        except ApprovalError as exc:
            refused[request_id] = str(exc)
    return BulkOutcome(approved, refused)


def _expire(req: ApprovalRequest, now: dt.datetime) -> None:
    req.status, req.decided_at = A.EXPIRED, now
    req.save(update_fields=["status", "decided_at"])
    audit.record(
        "approval.expired",
        run=req.run,
        actor="engine",
        payload={"request": req.pk},
        evidence_of=[req],
    )
    lifecycle.transition(
        req.run_id,
        Run.Status.CANCELLED,
        actor="engine",
        expected=(Run.Status.AWAITING_APPROVAL,),
        error=f"The approval request expired at {timezone.localtime(req.expires_at):%Y-%m-%d %H:%M} "
        "without a manager's decision.",
        event_payload={"request": req.pk, "decision": "expired"},
    )


def expire_overdue(now: dt.datetime | None = None) -> int:
    """Expire pending requests past their deadline (their runs are cancelled); returns how many."""
    now = now or timezone.now()
    expired = 0
    for pk in ApprovalRequest.objects.filter(status=A.PENDING, expires_at__lte=now).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            req = (
                ApprovalRequest.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, status=A.PENDING)
                .first()
            )
            if req is not None:
                _expire(req, now)
                expired += 1
    return expired


def close_for_cancelled_run(run: Run, user: Any, reason: str) -> list[ApprovalRequest]:
    """Close the run's pending approval requests as ``cancelled`` (the run was cancelled by
    ``user`` before a manager decided), each with an audit event, in the caller's transaction
    (orchestration.run_actions.cancel, which holds the run's row lock)."""
    closed = []
    for req in ApprovalRequest.objects.select_for_update().filter(run=run, status=A.PENDING):
        req.status, req.decided_at, req.comment = A.CANCELLED, timezone.now(), reason
        req.save(update_fields=["status", "decided_at", "comment"])
        audit.record(
            "approval.cancelled",
            run=run,
            actor=user,
            evidence_of=[req],
            payload={"request": req.pk, "decision": A.CANCELLED, "comment": reason},
        )
        closed.append(req)
    return closed
