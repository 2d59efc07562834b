"""python manage.py purge_payloads [--days N] [--dry-run]: the retention purge, by hand."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orchestration.retention import purge_payloads


class Command(BaseCommand):
    help = (
        "Drop payload bodies (model and tool call contents, audit payloads, resolved ticket "
        "snapshots) of finished runs older than N days; the audit chain stays verifiable."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Retention in days (default: PAYLOAD_RETENTION_DAYS, 90).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be purged; change nothing."
        )

    def handle(self, *args, days=None, dry_run=False, **options):
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        report = purge_payloads(days, dry_run=dry_run)
        self.stdout.write(str(report))
