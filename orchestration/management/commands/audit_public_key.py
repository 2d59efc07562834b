"""python manage.py audit_public_key: print the Ed25519 public key that signs audit exports."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from orchestration.audit_export import public_key_hex, public_key_id


class Command(BaseCommand):
    help = (
        "Print the public key (hex) that verifies this installation's audit trail exports "
        "(derived from the first AUDIT_SIGNING_KEY); give it to auditors for "
        "verify_audit_export.py --public-key."
    )

    def handle(self, *args, **options):
        self.stdout.write(public_key_hex())
        self.stderr.write(f"key id {public_key_id()}")
