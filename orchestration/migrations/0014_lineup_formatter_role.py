"""ModelCall.role gains "formatter": the tool-use loop's turns may be played by several roles
(orchestration.model_routing), each with its own model."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0013_subagents_tree")]

    operations = [
        migrations.AlterField(
            model_name="modelcall",
            name="role",
            field=models.CharField(
                choices=[
                    ("orchestrator", "Orchestrator"),
                    ("specialist", "Specialist"),
                    ("validator", "Validator"),
                    ("reviewer", "Reviewer"),
                    ("classifier", "Classifier"),
                    ("formatter", "Formatter"),
                ],
                default="orchestrator",
                max_length=20,
            ),
        ),
    ]
