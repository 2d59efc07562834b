"""The managers' approval queue: approve or reject in place, in bulk, with the calculation."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from costs.requester_spend import recent_spend
from orchestration import untrusted
from reviews import access, approvals
from reviews.models import ApprovalRequest

A = ApprovalRequest.Status
RECENTLY_DECIDED = 20
PAGE_SIZE = 25


def _with_spend(requests: list[ApprovalRequest]) -> list[ApprovalRequest]:
    spend = recent_spend({r.requested_by_id for r in requests})
    for r in requests:
        r.recent = spend[r.requested_by_id]
    return requests


@require_GET
@access.required(access.may_view_approvals)
def queue(request):
    # One page at a time: listing every pending request made the page grow with the queue
    # (bench/RESULTS.md, "Dashboard pages"). Index approval_pending_by_expiry serves the order.
    pending = ApprovalRequest.objects.filter(status=A.PENDING).select_related("run", "requested_by")
    page = Paginator(pending.order_by("expires_at", "pk"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "reviews/approvals.html",
        {
            "pending": _with_spend(list(page.object_list)),
            "page": page,
            "pending_count": page.paginator.count,
            "decided": ApprovalRequest.objects.exclude(status=A.PENDING)
            .select_related("run", "requested_by", "decided_by")
            .order_by("-decided_at")[:RECENTLY_DECIDED],
            "can_decide": access.may_decide(request.user),
            "now": timezone.now(),
        },
    )


@require_GET
@access.required(access.may_view_approvals)
def detail(request, request_id: int):
    """One request with its calculation and the decision form: the link in the managers' email."""
    req = access.get_approval_for_user(request.user, request_id)
    return render(
        request,
        "reviews/approval.html",
        {
            "r": _with_spend([req])[0],
            "can_decide": access.may_decide(request.user),
            "now": timezone.now(),
            "refusal": access.decide_refusal(request.user, req)
            if req.status == A.PENDING
            else None,
        },
    )


@require_POST
@access.required(access.may_decide)
def decide(request, request_id: int):
    approve = request.POST.get("decision") == "approve"
    comment = request.POST.get("comment", "")
    error = ""
    try:
        approvals.decide(request_id, request.user, approve=approve, comment=comment)
    except approvals.ApprovalError as exc:
        error = str(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.success(
                request,
                "Approved: the run is queued."
                if approve
                else "Rejected: the requester sees your reason.",
            )
        # From the request's own page (the email's link), back to it; from the queue, the queue.
        if request.POST.get("next") == "detail":
            return redirect(reverse("approval_detail", args=[request_id]))
        return redirect(reverse("approval_queue"))
    req = access.get_approval_for_user(request.user, request_id)
    return render(
        request,
        "reviews/approvals.html#row_swap",
        {
            "r": _with_spend([req])[0],
            "error": error,
            "comment": comment if error else "",
            "pending_count": ApprovalRequest.objects.filter(status=A.PENDING).count(),
            "can_decide": True,
            "now": timezone.now(),
        },
    )


@require_POST
@access.required(access.may_decide)
def bulk_approve(request):
    try:
        ids = [untrusted.whole_number(v, "request") for v in request.POST.getlist("request")]
    except untrusted.Rejected as exc:
        messages.error(request, f"Request {exc.fields['request']}: tick requests in the list.")
        return redirect(reverse("approval_queue"))
    if not ids:
        messages.error(request, "Tick the requests to approve first.")
        return redirect(reverse("approval_queue"))
    outcome = approvals.approve_many(ids, request.user, comment=request.POST.get("comment", ""))
    if outcome.approved:
        messages.success(request, f"Approved {len(outcome.approved)} run(s); they are queued.")
    for request_id, why in outcome.refused.items():
        messages.error(request, f"Request #{request_id} not approved: {why}")
    return redirect(reverse("approval_queue"))
