"""Per-run audit chains anchored by a sequencer (issue 13, part 4).

Existing events become chain format 1 (their ``hash`` already covers the global link, so
their ``chain_hash`` is their ``hash``); new events are format 2 and get their global link
(``seq``, ``prev_hash``, ``chain_hash``) from ``orchestration.audit.anchor``, so ``seq`` is
nullable. Existing run heads are signed with the first AUDIT_SIGNING_KEY (the MAC
``orchestration.audit`` computes: HMAC-SHA256 of ``"head:<run>:<run_seq>:<hash>"``).
"""

import hashlib
import hmac

from django.conf import settings
from django.db import migrations, models


def backfill(apps, schema_editor):
    schema_editor.execute(
        "UPDATE orchestration_auditevent SET chain_hash = hash WHERE chain_hash = '' AND format = 1"
    )
    RunAuditHead = apps.get_model("orchestration", "RunAuditHead")
    key = settings.AUDIT_SIGNING_KEY[0]
    kid = hashlib.sha256(b"countersign-audit-key-id:" + key.encode()).hexdigest()[:12]
    batch = []
    for head in RunAuditHead.objects.filter(mac="").iterator(chunk_size=2000):
        head.key_id = kid
        message = f"head:{head.run_id}:{head.run_seq}:{head.hash}"
        head.mac = hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
        batch.append(head)
        if len(batch) == 2000:
            RunAuditHead.objects.bulk_update(batch, ["key_id", "mac"])
            batch = []
    if batch:
        RunAuditHead.objects.bulk_update(batch, ["key_id", "mac"])


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0008_tamper_evidence")]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(blank=True, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="chain_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="format",
            field=models.PositiveSmallIntegerField(
                default=1, help_text="Chain format: 1 legacy, 2 per-run chains."
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="format",
            field=models.PositiveSmallIntegerField(
                default=2, help_text="Chain format: 1 legacy, 2 per-run chains."
            ),
        ),
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["seq", "id"]}),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                condition=models.Q(("seq__isnull", True)),
                fields=["id"],
                name="auditevent_unanchored",
            ),
        ),
        migrations.AddField(
            model_name="runaudithead",
            name="key_id",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="runaudithead",
            name="mac",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
