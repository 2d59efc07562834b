"""The workflows and their versions: what serves, what waits for approval, and the diff of any
two versions. Who may see and do what is reviews.access's; the rules are version_policy's."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from orchestration import untrusted, version_policy
from orchestration.models import AuditEvent, WorkflowVersion
from orchestration.version_diff import diff
from orchestration.workflows import registry
from orchestration.workflows.versions import declaration_for, is_legacy, snapshot
from reviews import access

V = WorkflowVersion.Status
HISTORY_KINDS = (
    "version.bootstrapped",
    "version.recorded",
    "version.proposed",
    "version.approved",
    "version.rejected",
    "version.rolled_back",
)
ACTIONS = {
    "propose": version_policy.propose,
    "approve": version_policy.approve,
    "reject": version_policy.reject,
    "rollback": version_policy.rollback,
}
DONE = {
    "propose": "Proposed: you are its author; another manager approves it.",
    "approve": "Approved: this version serves new runs from now on.",
    "reject": "Rejected: it will not serve runs.",
    "rollback": "Rolled back: this version serves new runs again.",
}


def _record_deployed() -> None:
    """Snapshot what is deployed, so a changed workflow shows up as pending on these pages even
    before anyone starts a run of it."""
    for workflow in registry.all_workflows():
        for declaration in registry.declarations(workflow.name):
            snapshot(declaration)


def _versions_of(name: str) -> list[WorkflowVersion]:
    versions = list(
        WorkflowVersion.objects.filter(name=name)
        .select_related("author", "decided_by")
        .annotate(run_count=Count("runs"))
        .order_by("-created_at")
    )
    if not versions:
        raise Http404("No such workflow.")
    return versions


@require_GET
@access.versions_required
def workflow_list(request):
    _record_deployed()
    rows = (
        WorkflowVersion.objects.values("name")
        .annotate(
            versions=Count("id"),
            pending=Count("id", filter=Q(status=V.PENDING)),
        )
        .order_by("name")
    )
    serving = {v.name: v for v in WorkflowVersion.objects.filter(serving=True)}
    deployed = {w.name for w in registry.all_workflows()}
    workflows = [
        {**row, "serving": serving.get(row["name"]), "deployed": row["name"] in deployed}
        for row in rows
    ]
    return render(request, "orchestration/workflows.html", {"workflows": workflows})


@require_GET
@access.versions_required
def version_list(request, workflow_name: str):
    _record_deployed()
    versions = _versions_of(workflow_name)
    # The compare form: two versions picked, shown on the "to" version's page.
    if (to := _pick(versions, request.GET.get("to"))) is not None:
        against = _pick(versions, request.GET.get("against"))
        url = reverse("version_detail", args=[workflow_name, to.pk])
        return redirect(f"{url}?against={against.pk}" if against else url)
    return render(
        request,
        "orchestration/versions.html",
        {
            "name": workflow_name,
            "versions": versions,
            "serving": next((v for v in versions if v.serving), None),
        },
    )


def _pick(versions: list[WorkflowVersion], raw: str | None) -> WorkflowVersion | None:
    try:
        wanted = untrusted.whole_number(raw, "version") if raw else None
    except untrusted.Rejected:
        return None
    return next((v for v in versions if v.pk == wanted), None)


@require_GET
@access.versions_required
def version_detail(request, workflow_name: str, version_id: int):
    versions = _versions_of(workflow_name)
    version = _pick(versions, str(version_id))
    if version is None:
        raise Http404("No such version.")
    errors = []
    against = _pick(versions, request.GET.get("against"))
    if request.GET.get("against") and against is None:
        errors.append(
            f"{workflow_name} has no version {request.GET['against']!r}: compared with the default instead."
        )
    if against is None:
        # By default: what would change if this version replaced the serving one, or, for the
        # serving one, what it changed from the version before it.
        serving = next((v for v in versions if v.serving), None)
        older = [v for v in versions if v.created_at < version.created_at]
        others = [v for v in versions if v != version]
        if serving is not None and serving != version:
            against = serving
        else:
            against = older[0] if older else (others[0] if others else None)
    user = request.user
    return render(
        request,
        "orchestration/version.html",
        {
            "name": workflow_name,
            "version": version,
            "versions": versions,
            "against": against,
            "sections": diff(against, version)
            if against is not None and against != version
            else [],
            "errors": errors,
            "deployed": declaration_for(version) is not None,
            "legacy": is_legacy(version),
            "approval_blockers": version_policy.approval_blockers(version, user)
            if version.status == V.PENDING
            else [],
            "propose_refusal": access.propose_version_refusal(user),
            "rollback_blockers": (
                version_policy.rollback_blockers(version, user)
                if version.status == V.APPROVED and not version.serving
                else []
            ),
            "may_decide": access.version_decide_refusal(user, None) is None,
            # Who proposed, approved, rejected it or made it serve again, from the audit trail.
            "history": AuditEvent.objects.filter(
                kind__in=HISTORY_KINDS, payload__content_hash=version.content_hash
            ).order_by("created_at", "pk"),
            "runs": version.runs.select_related("requested_by").order_by("-created_at")[:10]
            if access.sees_every_run(user)
            else [],
        },
    )


@require_POST
@access.versions_required
@access.required(access.may_act_on_versions)
def version_action(request, workflow_name: str, version_id: int):
    """Propose, approve, reject or roll back: each refused with the reasons, nothing changed."""
    action = request.POST.get("action", "")
    known = WorkflowVersion.objects.filter(name=workflow_name, pk=version_id).exists()
    target = (
        reverse("version_detail", args=[workflow_name, version_id])
        if known
        else reverse("version_list", args=[workflow_name])
    )
    if action not in ACTIONS:
        messages.error(request, f"Unknown action {action!r}: propose, approve, reject or rollback.")
        return redirect(target)
    try:
        ACTIONS[action](version_id, workflow_name, request.user, note=request.POST.get("note", ""))
    except version_policy.VersionRefused as refused:
        for reason in refused.reasons:
            messages.error(request, reason)
    else:
        messages.success(request, DONE[action])
    return redirect(target)
