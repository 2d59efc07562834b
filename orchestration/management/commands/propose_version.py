"""Propose the deployed change of a workflow for approval, naming its author:
python manage.py propose_version WORKFLOW --author NAME [--note TEXT] [--snapshot HASH_PREFIX].

The author is the person who answers for the change; a manager other than them approves it on
the workflow's versions page (orchestration.version_policy)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orchestration import version_policy
from orchestration.models import WorkflowVersion
from orchestration.workflows import registry
from orchestration.workflows.versions import snapshot


class Command(BaseCommand):
    help = (
        "Propose the pending version of WORKFLOW (by default: the deployed code's) with its author."
    )

    def add_arguments(self, parser):
        parser.add_argument("workflow")
        parser.add_argument("--author", required=True, help="The user who answers for the change.")
        parser.add_argument("--note", default="", help="What changed and why.")
        parser.add_argument(
            "--snapshot", default="", help="The pending version's snapshot hash (a prefix will do)."
        )

    def handle(self, *args, **options):
        name = options["workflow"]
        user = get_user_model().objects.filter(username=options["author"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user named {options['author']!r}.")
        try:
            deployed = [snapshot(w) for w in registry.declarations(name)]
        except registry.UnknownWorkflow as exc:
            raise CommandError(str(exc)) from None
        if prefix := options["snapshot"]:
            found = list(
                WorkflowVersion.objects.filter(name=name, content_hash__startswith=prefix)[:2]
            )
            if len(found) != 1:
                raise CommandError(
                    f"{len(found) or 'No'} version(s) of {name!r} have a snapshot starting with {prefix!r}."
                )
            version = found[0]
        else:
            version = deployed[0]  # the current declaration's
        try:
            version = version_policy.propose(version.pk, name, user, note=options["note"])
        except version_policy.VersionRefused as refused:
            raise CommandError("Not proposed: " + " ".join(refused.reasons)) from None
        self.stdout.write(
            f"Proposed {name} v{version.version} ({version.short_hash}) by {user.get_username()}: "
            "a manager other than the author approves it on the workflow's versions page."
        )
