"""Check every registered workflow's models against the lineup (costs.lineup): a price in force,
not past end of life. Prints each refusal and warning; exits non-zero when a workflow could
not start. Run it after a deploy or a price change."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from costs.lineup import workflow_verdict
from orchestration.workflows import registry


class Command(BaseCommand):
    help = "Check that every workflow's models are priced and not past end of life."

    def handle(self, *args: Any, **options: Any) -> None:
        refused = 0
        for workflow in registry.all_workflows():
            result = workflow_verdict(workflow)
            models = ", ".join(
                f"{role}={model}" for role, model in workflow.models_in_use().items()
            )
            self.stdout.write(f"{workflow.name}: {'ok' if result.ok else 'REFUSED'} ({models})")
            for line in result.refusals:
                self.stdout.write(f"  refused: {line}")
            for line in result.warnings:
                self.stdout.write(f"  warning: {line}")
            refused += not result.ok
        if refused:
            raise CommandError(f"{refused} workflow(s) cannot start: see above.")
