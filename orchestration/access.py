"""Who may see and do what with runs: one helper per object type, used by every view.

Operators see their own runs; reviewers the runs behind tickets; managers and auditors
every run. Someone else's run answers 404, not 403, so ids do not leak.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from orchestration.models import Run


def visible_runs(user: Any) -> QuerySet[Run]:
    runs = Run.objects.all()
    if user.is_superuser or user.has_perm("orchestration.view_all_runs"):
        return runs
    conditions = Q(requested_by=user)
    if user.has_perm("reviews.resolve_ticket"):
        conditions |= Q(tickets__isnull=False)
    return runs.filter(conditions).distinct()


def get_run_for_user(user: Any, run_id: Any) -> Run:
    run = visible_runs(user).select_related("workflow_version", "requested_by").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run
