"""python manage.py verify_audit [--run ID]: verify the audit trail; non-zero exit if broken."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from orchestration.audit import anchor, describe, sign_checkpoint, verify_chain
from orchestration.models import Run


class Command(BaseCommand):
    help = (
        "Recompute the audit trail's hash chain (or one run's chain), its signatures and signed "
        "checkpoints, every run's head, and the evidence rows (model calls, tool calls, results, "
        "tickets, approvals, fan-out jobs) against the digests the chain recorded; report the "
        "first broken link. Exits 1 when anything does not verify. Anchors the events not yet "
        "in the global chain first; a whole-trail check that passes signs a new checkpoint of "
        "the head."
    )

    def add_arguments(self, parser):
        parser.add_argument("--run", dest="run_id", help="Verify only this run's chain (a run id).")

    def handle(self, *args, run_id=None, **options):
        if run_id is not None:
            try:
                run_id = uuid.UUID(run_id)
            except ValueError as exc:
                raise CommandError(f"--run {run_id!r} is not a run id (a UUID).") from exc
            if not Run.objects.filter(pk=run_id).exists():
                raise CommandError(f"No run {run_id}.")
        # What the sequencer has not linked yet is linked first, so the report covers it all.
        anchor()
        report = verify_chain(run_id)
        scope = f"run {run_id}" if run_id else "the whole audit trail"
        if report.ok:
            self.stdout.write(f"OK: {scope}: {report.checked} events verified.")
            self.stdout.write(f"Verified: {describe(report)}.")
            if run_id is None and (checkpoint := sign_checkpoint()) is not None:
                self.stdout.write(f"Signed checkpoint #{checkpoint.pk} at event #{checkpoint.seq}.")
            return
        where = f" (run {report.run_id})" if report.run_id and not run_id else ""
        at = f" at event #{report.broken_at}" if report.broken_at is not None else ""
        # CommandError exits with status 1 and prints to stderr.
        raise CommandError(
            f"BROKEN: {scope}: first broken link{at}{where}: {report.problem}. "
            f"{report.checked} events verified before it."
        )
