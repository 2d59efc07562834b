"""python manage.py reencrypt_payloads [--dry-run]: seal every stored payload with the first key.

Encrypts plaintext rows written before PAYLOAD_ENCRYPTION_KEYS was set, and re-encrypts rows
sealed with a retired key (key rotation), in every encrypted column and in the fan-out JSONL
artifacts. See orchestration/reencryption.py and docs/operations.md.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orchestration.privacy import PayloadKeyError
from orchestration.reencryption import reencrypt_all


class Command(BaseCommand):
    help = (
        "Seal every stored model/tool payload with the first key of PAYLOAD_ENCRYPTION_KEYS: "
        "encrypts legacy plaintext rows and re-encrypts rows of retired keys. Safe to re-run."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be rewritten; change nothing."
        )
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction.")

    def handle(self, *args, dry_run=False, batch_size=500, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            reports = reencrypt_all(dry_run=dry_run, batch_size=batch_size)
        except PayloadKeyError as exc:
            raise CommandError(str(exc)) from exc
        for report in reports:
            self.stdout.write(("would be: " if dry_run else "") + str(report))
        left = sum(len(r.undecryptable) for r in reports)
        if left:
            raise CommandError(
                f"{left} value(s) cannot be decrypted with PAYLOAD_ENCRYPTION_KEYS and were left "
                "as they are: add the key they were sealed with (after the current one) and run "
                "this again before retiring any key."
            )
        self.stdout.write(
            "OK: every stored payload is sealed with the current key."
            if not dry_run
            else "Dry run: nothing was changed."
        )
