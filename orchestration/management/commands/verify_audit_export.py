"""python manage.py verify_audit_export FILE.jsonl [--public-key HEX|FILE]: check an audit trail
export offline (orchestration/export_verifier.py, the same code as the stand-alone script)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orchestration.audit_export import public_key_hex
from orchestration.export_verifier import read_public_key, verify_file


class Command(BaseCommand):
    help = (
        "Verify an audit trail export (JSONL): every event's hash, the links between "
        "consecutive events of the chain and of each run, the order, no line missing, added "
        "or cut, and the proof's Ed25519 signature, by default against this installation's "
        "public key. Names the first broken or missing link; exits 1 when anything fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("export", help="the .jsonl file")
        parser.add_argument(
            "--public-key",
            help="the signer's public key (hex, or a file holding it); default: this installation's",
        )

    def handle(self, *args, export, public_key=None, **options):
        try:
            key = read_public_key(public_key) or public_key_hex()
            result = verify_file(export, key)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {export}: {exc}") from exc
        if not result.ok:
            self.stderr.write(result.summary())
            raise SystemExit(1)
        self.stdout.write(result.summary())
