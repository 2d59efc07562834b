from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "nav": {
            "can_start": user.has_perm("orchestration.start_run"),
            "can_resolve": user.has_perm("reviews.resolve_ticket"),
            "is_staff": user.is_staff,
            "roles": sorted(user.groups.values_list("name", flat=True)),
        }
    }
