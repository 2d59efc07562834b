from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0009_auditsequencer_per_run_chains"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelcall",
            name="first_token_ms",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
    ]
