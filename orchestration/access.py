"""Who may see and do what with runs: one helper per object type, used by every view.

- superusers, managers and auditors (``view_all_runs``): every run;
- reviewers (``resolve_ticket``): their own runs, plus the runs behind *their* tickets: a
  ticket still open in the shared queue (any reviewer may claim it), one claimed by or
  assigned to them, or one they resolved. A run whose ticket another reviewer holds or
  resolved is not theirs;
- everyone else (operators): the runs they requested.

Every page, partial, export and download goes through ``visible_runs`` or
``get_run_for_user``. Someone else's run answers 404, not 403, so ids do not leak.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from orchestration.models import Run


def sees_every_run(user: Any) -> bool:
    return bool(user.is_superuser or user.has_perm("orchestration.view_all_runs"))


def visible_runs(user: Any) -> QuerySet[Run]:
    runs = Run.objects.all()
    if not user.is_authenticated:
        return runs.none()
    if sees_every_run(user):
        return runs
    conditions = Q(requested_by=user)
    if user.has_perm("reviews.resolve_ticket"):
        from reviews.models import EscalationTicket

        # EXISTS rather than a join, so the list needs no DISTINCT and keeps its keyset order.
        theirs = EscalationTicket.objects.filter(run=OuterRef("pk")).filter(
            Q(status=EscalationTicket.Status.OPEN) | Q(assignee=user) | Q(resolved_by=user)
        )
        conditions |= Q(Exists(theirs))
    return runs.filter(conditions)


def get_run_for_user(user: Any, run_id: Any) -> Run:
    run = (
        visible_runs(user)
        .select_related("workflow_version", "requested_by")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise Http404("No such run.")
    return run
