"""For tests that change a workflow's declaration in place (a tighter limit, another rule):
the change is a pending version, and serves runs only once two people have proposed and
approved it (orchestration.version_policy). ``approve_deployed`` does that, as the demo
``operator`` (author) and ``manager`` (approver)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from orchestration import version_policy
from orchestration.models import WorkflowVersion
from orchestration.workflows import registry
from orchestration.workflows.versions import snapshot


def approve_deployed(name: str) -> WorkflowVersion:
    """The deployed declaration of ``name``, recorded and made to serve new runs."""
    version = snapshot(registry.get(name))
    if version.status == WorkflowVersion.Status.PENDING:
        users = get_user_model().objects
        version_policy.propose(version.pk, name, users.get(username="operator"), note="test change")
        version = version_policy.approve(version.pk, name, users.get(username="manager"))
    return version
