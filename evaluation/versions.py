"""Which WorkflowVersion a person means by "version N" (the page's choice, ``--version``).

Until versions are numbered per workflow, a version is named by the workflow's declared
``version`` (the newest snapshot with that value), by a content-hash prefix of at least 8
characters, or ``current`` (the workflow as declared in the code running now, snapshotted).
"""

from __future__ import annotations

from django.db.models import QuerySet

from orchestration.models import WorkflowVersion
from orchestration.workflows import registry
from orchestration.workflows.versions import snapshot


class UnknownVersion(LookupError):
    pass


def versions_of(workflow_name: str) -> QuerySet[WorkflowVersion]:
    return WorkflowVersion.objects.filter(name=workflow_name).order_by(
        "-created_at"
    )  # wfversion_name_created


def resolve(workflow_name: str, ref: str) -> WorkflowVersion:
    ref = (ref or "").strip()
    try:
        workflow = registry.get(workflow_name)
    except registry.UnknownWorkflow as exc:
        raise UnknownVersion(str(exc)) from None
    if ref in ("", "current"):
        return snapshot(workflow)
    found = versions_of(workflow_name).filter(version=ref).first()
    if found is None and len(ref) >= 8:
        matches = list(versions_of(workflow_name).filter(content_hash__startswith=ref.lower())[:2])
        if len(matches) > 1:
            raise UnknownVersion(
                f"{ref!r} matches more than one version of {workflow_name}; give more of the hash."
            )
        found = matches[0] if matches else None
    if found is None:
        known = (
            ", ".join(dict.fromkeys(versions_of(workflow_name).values_list("version", flat=True)))
            or "none yet"
        )
        raise UnknownVersion(
            f"{workflow_name} has no version {ref!r}. Known versions: {known}; or 'current', or a content hash prefix."
        )
    return found
