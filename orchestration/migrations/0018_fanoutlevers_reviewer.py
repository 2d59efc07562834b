# The escalation reviewer of fan-out runs (orchestration.fanout.review): the run's review
# budget, the validator's "edge case" verdict and the reviewer's decision on each job; and
# warm_first (the first job warms the shared prompt cache before the others start).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0017_evaluation_run_flag"),
    ]

    operations = [
        migrations.AddField(
            model_name="fanout",
            name="reviews_used",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="fanout",
            name="warm_first",
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name="fanoutjob",
            name="verdict",
            field=models.CharField(
                blank=True,
                choices=[("", "-"), ("PASS", "Pass"), ("FAIL", "Fail"), ("EDGE", "edge case")],
                default="",
                max_length=4,
            ),
        ),
        migrations.AddField(
            model_name="fanoutjob",
            name="review",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "-"),
                    ("reviewing", "Reviewing"),
                    ("accept", "Accept"),
                    ("fail", "Fail"),
                    ("escalate", "Escalate"),
                ],
                default="",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="fanoutjob",
            name="review_reason",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="fanoutjob",
            name="review_attempt",
            field=models.PositiveSmallIntegerField(default=0),
        ),
    ]
