"""Workflow versions cover rules and code, and carry their review state (issue 16 §1).

Versions recorded before this were in use already: they are approved, and the newest of each
workflow serves (nobody's approval is invented: decided_by stays empty)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def approve_existing(apps, schema_editor):
    WorkflowVersion = apps.get_model("orchestration", "WorkflowVersion")
    WorkflowVersion.objects.update(status="approved")
    newest = {}
    for pk, name in WorkflowVersion.objects.order_by("name", "-created_at", "-pk").values_list(
        "pk", "name"
    ):
        newest.setdefault(name, pk)
    WorkflowVersion.objects.filter(pk__in=newest.values()).update(serving=True)


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0014_lineup_formatter_role"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="workflowversion",
            name="behaviour",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Rules, examples, tool schemas and code digests (validators, guards, escalation rules...).",
            ),
        ),
        migrations.AddField(
            model_name="workflowversion",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "pending approval"),
                    ("approved", "Approved"),
                    ("rejected", "Rejected"),
                ],
                default="pending",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="workflowversion",
            name="serving",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="workflowversion",
            name="author",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="workflowversion",
            name="proposed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="workflowversion",
            name="decided_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="workflowversion",
            name="decided_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="workflowversion",
            name="decision_note",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(approve_existing, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="workflowversion",
            constraint=models.UniqueConstraint(
                condition=models.Q(("serving", True)),
                fields=("name",),
                name="wfversion_one_serving_per_name",
            ),
        ),
        migrations.AddConstraint(
            model_name="workflowversion",
            constraint=models.CheckConstraint(
                condition=models.Q(("serving", False), ("status", "approved"), _connector="OR"),
                name="wfversion_serving_is_approved",
            ),
        ),
    ]
