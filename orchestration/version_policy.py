"""The lifecycle of a workflow version: proposed, approved under four eyes, rolled back.

A changed workflow (its code deployed) is recorded as a pending version the first time it is
seen (orchestration.workflows.versions.snapshot); it serves no run until:

1. someone proposes it and so becomes its **author** (the versions page, or
   ``manage.py propose_version NAME --author USER``): the person answering for the change;
2. a manager who is not its author approves it (``approve``): it becomes the serving version
   and the previous one stops serving new runs (runs already started stay on their version).

``approval_blockers`` is the one rule for whether a person may approve a version now; every
entry point (page, command, later the API) calls it, under the workflow's lock. Another
condition for approval (an evaluation passed, say) is one more blocker there.

``rollback`` makes an earlier approved version serve again, in one audited action. Every
decision is an audit event (``version.*``, kept by the retention purge as decisions).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from evaluation import gate
from orchestration import audit
from orchestration.models import WorkflowVersion
from orchestration.untrusted import Rejected, check_text
from orchestration.workflows.versions import declaration_for
from reviews import access

V = WorkflowVersion.Status


class VersionRefused(Exception):
    """The action was refused and nothing changed; ``reasons`` says why, one sentence each."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(" ".join(reasons))
        self.reasons = reasons


def _label(version: WorkflowVersion) -> str:
    return f"{version.name} v{version.version} ({version.short_hash})"


def _payload(version: WorkflowVersion, **extra: Any) -> dict[str, Any]:
    return {
        "workflow": version.name,
        "version": version.version,
        "content_hash": version.content_hash,
        **extra,
    }


def _note(note: str) -> str:
    try:
        return check_text(note, "note").strip()
    except Rejected as exc:
        raise VersionRefused([f"The note {msg}" for msg in exc.fields.values()]) from None


def _locked(name: str, version_id: Any) -> WorkflowVersion:
    """The version, with every version of its workflow locked: approvals, rejections and
    rollbacks of one workflow take turns, so two of them never both make a version serve."""
    versions = {v.pk: v for v in WorkflowVersion.objects.select_for_update().filter(name=name)}
    try:
        return versions[int(version_id)]
    except (KeyError, TypeError, ValueError):
        raise VersionRefused([f"Workflow {name!r} has no version {version_id!r}."]) from None


def approval_blockers(version: WorkflowVersion, user: Any) -> list[str]:
    """Why ``user`` may not approve ``version`` now (empty when they may). The one approval
    rule: who decides (reviews.access), the version's state, that someone answers for it,
    that its code is deployed (or it could serve no run), and that it passed the evaluation
    its workflow requires (evaluation.gate)."""
    blockers = []
    if why := access.version_decide_refusal(user, version):
        blockers.append(why)
    if version.status != V.PENDING:
        blockers.append(f"This version is {version.get_status_display()}, not pending approval.")
    elif version.author_id is None:
        blockers.append(
            "Nobody has proposed this version yet: its author proposes it first (the versions page, "
            "or manage.py propose_version), so that someone other than its author can approve it."
        )
    if version.status == V.PENDING and declaration_for(version) is None:
        blockers.append(
            "Its code is not deployed (no registered declaration has this snapshot), so it could serve no run."
        )
    if version.status == V.PENDING:
        # The workflow's evaluation bar (evaluation.gate): the evaluation it must pass first.
        blockers.extend(gate.blockers(version))
    return blockers


def propose(version_id: Any, name: str, user: Any, *, note: str = "") -> WorkflowVersion:
    """``user`` proposes a pending version and becomes its author."""
    note = _note(note)
    with transaction.atomic():
        version = _locked(name, version_id)
        reasons = []
        if why := access.propose_version_refusal(user):
            reasons.append(why)
        if version.status != V.PENDING:
            reasons.append(
                f"This version is {version.get_status_display()}: only a pending version is proposed."
            )
        elif version.author_id is not None:
            reasons.append(f"This version was already proposed by {version.author.get_username()}.")
        if reasons:
            raise VersionRefused(reasons)
        version.author, version.proposed_at = user, timezone.now()
        version.save(update_fields=["author", "proposed_at"])
        audit.record("version.proposed", actor=user, payload=_payload(version, note=note))
    return version


def approve(version_id: Any, name: str, user: Any, *, note: str = "") -> WorkflowVersion:
    """Approve a pending version: it serves new runs from now on, instead of the previous one."""
    note = _note(note)
    with transaction.atomic():
        version = _locked(name, version_id)
        if blockers := approval_blockers(version, user):
            raise VersionRefused(blockers)
        previous = WorkflowVersion.objects.filter(name=name, serving=True).first()
        if previous is not None:
            WorkflowVersion.objects.filter(pk=previous.pk).update(serving=False)
        version.status, version.serving = V.APPROVED, True
        version.decided_by, version.decided_at, version.decision_note = user, timezone.now(), note
        version.save(
            update_fields=["status", "serving", "decided_by", "decided_at", "decision_note"]
        )
        audit.record(
            "version.approved",
            actor=user,
            payload=_payload(
                version,
                author=version.author.get_username(),
                note=note,
                previous=previous.content_hash if previous else None,
            ),
        )
    return version


def reject(version_id: Any, name: str, user: Any, *, note: str) -> WorkflowVersion:
    """Reject a pending version (a reason is required): it never serves runs."""
    note = _note(note)
    with transaction.atomic():
        version = _locked(name, version_id)
        reasons = []
        if why := access.version_decide_refusal(user, version):
            reasons.append(why)
        if version.status != V.PENDING:
            reasons.append(f"This version is {version.get_status_display()}, not pending approval.")
        if not note:
            reasons.append("Rejecting needs a note: say what the author should change.")
        if reasons:
            raise VersionRefused(reasons)
        version.status = V.REJECTED
        version.decided_by, version.decided_at, version.decision_note = user, timezone.now(), note
        version.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
        audit.record("version.rejected", actor=user, payload=_payload(version, note=note))
    return version


def rollback_blockers(version: WorkflowVersion, user: Any) -> list[str]:
    """Why ``user`` may not make ``version`` serve again (empty when they may)."""
    blockers = []
    if why := access.version_decide_refusal(user, None):
        blockers.append(why)
    if version.status != V.APPROVED:
        blockers.append(
            f"This version is {version.get_status_display()}: only a version that was approved can serve "
            "again (a pending one is approved instead)."
        )
    elif version.serving:
        blockers.append("This version already serves new runs.")
    if declaration_for(version) is None:
        blockers.append(
            "Its code is not deployed: deploy it again (keep its declaration with "
            "registry.register_previous), then roll back."
        )
    return blockers


def rollback(version_id: Any, name: str, user: Any, *, note: str = "") -> WorkflowVersion:
    """Make an earlier approved version serve new runs again, in one audited action."""
    note = _note(note)
    with transaction.atomic():
        version = _locked(name, version_id)
        if blockers := rollback_blockers(version, user):
            raise VersionRefused(blockers)
        previous = WorkflowVersion.objects.filter(name=name, serving=True).first()
        if previous is not None:
            WorkflowVersion.objects.filter(pk=previous.pk).update(serving=False)
        WorkflowVersion.objects.filter(pk=version.pk).update(serving=True)
        version.serving = True
        audit.record(
            "version.rolled_back",
            actor=user,
            payload=_payload(
                version,
                note=note,
                previous=previous.content_hash if previous else None,
                previous_version=previous.version if previous else None,
            ),
        )
    return version
