import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("costs", "0003_defaults_cost_changes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="RequesterDailySpend",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                ("runs", models.PositiveIntegerField()),
                ("cost_usd", models.DecimalField(decimal_places=12, max_digits=20)),
                (
                    "covered_through",
                    models.DateField(help_text="The last complete day the rebuild covered."),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("requested_by", "day"), name="requester_daily_spend_unique"
                    )
                ],
                "indexes": [
                    models.Index(fields=["covered_through"], name="requester_spend_covered")
                ],
            },
        ),
    ]
