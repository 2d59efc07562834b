"""What needs me now."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Sum
from django.shortcuts import render
from django.views.decorators.http import require_GET

from costs.budgets import period_start
from costs.models import Budget
from orchestration.models import ModelCall, Run
from reviews import access
from reviews.models import ApprovalRequest


@require_GET
def dashboard(request):
    user = request.user
    runs = access.visible_runs(user)
    context = {
        "recent": runs.select_related("requested_by").order_by("-created_at")[:10],
        "active": runs.filter(status__in=(Run.Status.QUEUED, Run.Status.RUNNING)).count(),
        "spend_today": ModelCall.objects.filter(
            run__in=runs, created_at__gte=period_start(Budget.Period.DAY)
        ).aggregate(s=Sum("cost_usd"))["s"]
        or Decimal(0),
    }
    # The tiles show true counts (COUNT over the partial indexes of unresolved tickets and
    # pending requests); the lists below them show the first ten.
    if access.may_resolve(user):
        open_tickets = access.visible_tickets(user).exclude(status="resolved")
        context["open_ticket_count"] = open_tickets.count()
        context["open_tickets"] = open_tickets.select_related("run")[:10]
    if access.may_decide(user):
        pending = ApprovalRequest.objects.filter(status="pending")
        context["pending_approval_count"] = pending.count()
        context["pending_approvals"] = pending.select_related("run", "requested_by")[:10]
    return render(request, "orchestration/dashboard.html", context)
