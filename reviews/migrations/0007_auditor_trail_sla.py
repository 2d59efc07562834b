"""SLA targets per escalation reason, editable in the admin, seeded with the values in force:
``reviews.escalation.DEFAULT_SLA`` as it was (copied here, so this migration keeps meaning what
it meant) with the ``ESCALATION_SLA`` setting's overrides applied. Tickets get the SLA
reminder stamps (reminded_at, escalated_at).

Tickets already overdue before this migration were bumped by the old task and their due time
moved an hour on; they keep the due time they have.
"""

import django.core.validators
from django.conf import settings
from django.db import migrations, models

DEFAULT_SLA = {
    "regulatory_trigger": (1, 60),
    "budget_exceeded": (1, 60),
    "failure_rate_exceeded": (1, 60),
    "hallucination": (1, 120),
    "validation_failed": (2, 240),
    "retries_exhausted": (2, 240),
    "unknown_tool": (2, 240),
    "tool_error": (2, 240),
    "timeout": (2, 240),
    "ambiguity": (3, 480),
    "step_limit": (3, 480),
    "undecryptable": (1, 60),
}


def seed(apps, schema_editor):
    SlaTarget = apps.get_model("reviews", "SlaTarget")
    overrides = getattr(settings, "ESCALATION_SLA", {}) or {}
    for reason, (priority, minutes) in DEFAULT_SLA.items():
        override = overrides.get(reason, {})
        SlaTarget.objects.get_or_create(
            reason=reason,
            defaults={
                "priority": min(3, max(1, int(override.get("priority", priority)))),
                "due_minutes": max(1, int(override.get("due_minutes", minutes))),
            },
        )


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0006_access_roles"),
    ]

    operations = [
        migrations.CreateModel(
            name="SlaTarget",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "reason",
                    models.CharField(
                        choices=[
                            ("validation_failed", "validation failed"),
                            ("retries_exhausted", "retries exhausted"),
                            ("ambiguity", "Ambiguity"),
                            ("regulatory_trigger", "regulatory trigger"),
                            ("failure_rate_exceeded", "failure rate exceeded"),
                            ("budget_exceeded", "budget exceeded"),
                            ("unknown_tool", "unknown tool"),
                            ("tool_error", "tool error"),
                            ("hallucination", "Hallucination"),
                            ("step_limit", "step limit"),
                            ("timeout", "Timeout"),
                            ("undecryptable", "payload cannot be decrypted"),
                        ],
                        max_length=30,
                        unique=True,
                    ),
                ),
                (
                    "priority",
                    models.PositiveSmallIntegerField(
                        help_text="1 = most urgent, 3 = least.",
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(3),
                        ],
                    ),
                ),
                (
                    "due_minutes",
                    models.PositiveIntegerField(
                        help_text="Minutes from the ticket opening until it is due.",
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(43200),
                        ],
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "SLA target",
                "ordering": ["priority", "reason"],
            },
        ),
        migrations.AddField(
            model_name="escalationticket",
            name="escalated_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="escalationticket",
            name="reminded_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
