from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from alerts.models import Alert
from reviews import access
from reviews.models import ApprovalRequest


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    can_approve = access.may_decide(user)
    return {
        "nav": {
            "can_start": access.may_start(user),
            "can_resolve": access.may_resolve(user),
            "can_approve": can_approve,
            "pending_approvals": (
                ApprovalRequest.objects.filter(status=ApprovalRequest.Status.PENDING).count()
                if can_approve
                else 0
            ),
            "can_see_costs": access.may_see_costs(user),
            "can_view_versions": access.may_view_versions(user),
            "can_browse_trail": access.may_browse_trail(user),
            "can_view_evaluations": access.may_view_evaluations(user),
            "can_see_operations": access.may_see_operations(user),
            "can_see_alerts": (can_see_alerts := access.may_view_alerts(user)),
            "open_alerts": Alert.objects.filter(status=Alert.Status.OPEN).count()
            if can_see_alerts
            else 0,
            "can_manage_schedules": access.may_manage_schedules(user),
            "is_staff": user.is_staff,
            "roles": sorted(user.groups.values_list("name", flat=True)),
        }
    }
