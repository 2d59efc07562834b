"""The roll-ups now leave evaluation runs out (insight.rollups): forget the watermark, so the
next fold recomputes every hour with data (as a first fold does) and the day and all-time rows
lose what evaluations had added."""

from django.db import migrations


def forget_watermark(apps, schema_editor):
    apps.get_model("insight", "FoldWatermark").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("insight", "0001_ops_insight_rollups")]

    operations = [migrations.RunPython(forget_watermark, migrations.RunPython.noop)]
