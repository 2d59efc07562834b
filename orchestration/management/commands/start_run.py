"""Start a run from the command line: python manage.py start_run WORKFLOW --input JSON [--user NAME]."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orchestration.launch import RunRefused, start_run
from reviews.access import may_start


class Command(BaseCommand):
    help = "Start a run of WORKFLOW with a JSON input; prints the run id."

    def add_arguments(self, parser):
        parser.add_argument("workflow")
        parser.add_argument("--input", required=True, help="The workflow input as a JSON object.")
        parser.add_argument(
            "--user", default="operator", help="Who requests the run (default: operator)."
        )
        parser.add_argument("--idempotency-key", default=None)
        parser.add_argument(
            "--batch",
            action="store_true",
            help="Half price through the Message Batches API; each model turn may take minutes.",
        )

    def handle(self, *args, **options):
        User = get_user_model()
        user = User.objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(
                f"No user named {options['user']!r}. Run `python manage.py seed_demo` first?"
            )
        if not may_start(user):
            raise CommandError(f"User {user.username!r} may not start runs.")
        try:
            run = start_run(
                options["workflow"],
                options["input"],
                user,
                idempotency_key=options["idempotency_key"],
                source="command",
                options={"batch": True} if options["batch"] else None,
            )
        except RunRefused as refused:
            raise CommandError(
                "Run refused: " + "; ".join(f"{k}: {v}" for k, v in refused.errors.items())
            ) from None
        for warning in (run.estimate or {}).get("budget_warnings", []):
            self.stderr.write(f"Warning: {warning}")
        if run.status == run.Status.AWAITING_APPROVAL:
            self.stderr.write(
                f"Estimated at up to ${run.estimate_usd:.2f}: waiting for a manager's approval."
            )
        self.stdout.write(str(run.pk))
