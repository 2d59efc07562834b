"""Tamper evidence: each run's audit head (RunAuditHead), signed events, signed checkpoints.

Existing runs get their head from their last event; existing events are signed with the
first AUDIT_SIGNING_KEY (the same MAC ``orchestration.audit`` computes: HMAC-SHA256 of
``"event:" + hash``, the key named by its fingerprint).
"""

import hashlib
import hmac

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

_HEADS = """
    INSERT INTO orchestration_runaudithead (run_id, run_seq, hash)
    SELECT DISTINCT ON (run_id) run_id, run_seq, hash
    FROM orchestration_auditevent WHERE run_id IS NOT NULL
    ORDER BY run_id, seq DESC
"""


def backfill(apps, schema_editor):
    schema_editor.execute(_HEADS)
    AuditEvent = apps.get_model("orchestration", "AuditEvent")
    key = settings.AUDIT_SIGNING_KEY[0]
    kid = hashlib.sha256(b"countersign-audit-key-id:" + key.encode()).hexdigest()[:12]
    batch = []
    for event in AuditEvent.objects.filter(mac="").only("pk", "hash").iterator(chunk_size=2000):
        event.key_id = kid
        event.mac = hmac.new(
            key.encode(), f"event:{event.hash}".encode(), hashlib.sha256
        ).hexdigest()
        batch.append(event)
        if len(batch) == 2000:
            AuditEvent.objects.bulk_update(batch, ["key_id", "mac"])
            batch = []
    if batch:
        AuditEvent.objects.bulk_update(batch, ["key_id", "mac"])


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0007_spend_ceiling")]

    operations = [
        migrations.CreateModel(
            name="RunAuditHead",
            fields=[
                (
                    "run",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        primary_key=True,
                        related_name="audit_head",
                        serialize=False,
                        to="orchestration.run",
                    ),
                ),
                ("run_seq", models.PositiveIntegerField()),
                ("hash", models.CharField(max_length=64)),
            ],
        ),
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="mac",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.BigIntegerField()),
                ("hash", models.CharField(max_length=64)),
                ("key_id", models.CharField(max_length=16)),
                ("mac", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "ordering": ["seq", "id"],
                "indexes": [models.Index(fields=["seq"], name="auditcheckpoint_seq")],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
