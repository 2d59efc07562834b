"""The December 2026 model lineup (issue 14 section 1): model lifecycle dates, and new price rows.

- ModelLifecycle: deprecation and end-of-life dates per model, edited in the admin.
- New ModelPrice rows for the models the anthropic SDK 2.12 names that have all five rates on
  an official Anthropic page (checked 2026-12-04). Old rows are never edited: these are new
  rows, in force from 2026-12-01. Models with no price found stay unpriced and are refused at
  start (costs.lineup): claude-haiku-5-5, claude-fable-5-2, claude-mythos-5-2,
  claude-mythos-preview.

The values are copied here, not imported, so this migration keeps meaning what it meant when
later prices are added as new rows.
"""

import datetime as dt
from decimal import Decimal

from django.db import migrations, models

EFFECTIVE_FROM = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
# input, 5m cache write, 1h cache write, cache read, output (USD per million tokens)
FABLE_5_1 = ("10.00", "12.50", "20.00", "0.25", "50.00")
FABLE_5 = ("10.00", "12.50", "20.00", "1.00", "50.00")
OPUS_5 = ("5.00", "6.25", "10.00", "0.50", "25.00")
SONNET_5 = ("2.00", "2.50", "4.00", "0.20", "10.00")
TABLE = {
    "claude-fable-5-1": FABLE_5_1,
    "claude-mythos-5-1": FABLE_5_1,
    "claude-fable-5": FABLE_5,
    "claude-mythos-5": FABLE_5,
    "claude-opus-5-5": ("4.00", "5.00", "8.00", "0.20", "20.00"),
    "claude-opus-5": OPUS_5,
    "claude-opus-4-8": OPUS_5,
    "claude-sonnet-5-5": SONNET_5,
    "claude-sonnet-5": SONNET_5,
}
LIFECYCLE = {
    "claude-sonnet-4-5": (
        None,
        dt.date(2026, 11, 30),
        "claude-sonnet-5",
        "Reached end of life on 2026-11-30 (issue 14).",
    ),
    "claude-opus-4-5": (
        dt.date(2026, 11, 23),
        dt.date(2027, 1, 22),
        "claude-opus-5-5",
        "Deprecated 2026-11-23, tentative retirement 2027-01-22, as reported from "
        "Anthropic's model deprecations page; check that page.",
    ),
}


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("costs", "ModelPrice")
    ModelLifecycle = apps.get_model("costs", "ModelLifecycle")
    for model, values in TABLE.items():
        inp, w5, w1h, read, out = (Decimal(v) for v in values)
        ModelPrice.objects.get_or_create(
            model=model,
            effective_from=EFFECTIVE_FROM,
            defaults={
                "input_per_mtok": inp,
                "cache_write_5m_per_mtok": w5,
                "cache_write_1h_per_mtok": w1h,
                "cache_read_per_mtok": read,
                "output_per_mtok": out,
            },
        )
    for model, (deprecated_on, end_of_life, replacement, source) in LIFECYCLE.items():
        ModelLifecycle.objects.get_or_create(
            model=model,
            defaults={
                "deprecated_on": deprecated_on,
                "end_of_life": end_of_life,
                "replacement": replacement,
                "source": source,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("costs", "0004_auditsequencer_requester_daily_spend")]

    operations = [
        migrations.CreateModel(
            name="ModelLifecycle",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model", models.CharField(max_length=100, unique=True)),
                (
                    "deprecated_on",
                    models.DateField(
                        blank=True,
                        help_text="From this day the start page warns that the model is deprecated.",
                        null=True,
                    ),
                ),
                (
                    "end_of_life",
                    models.DateField(
                        blank=True,
                        help_text="From this day no run that uses the model may start (the API retires it).",
                        null=True,
                    ),
                ),
                (
                    "replacement",
                    models.CharField(blank=True, help_text="The model to move to.", max_length=100),
                ),
                (
                    "source",
                    models.CharField(
                        blank=True, help_text="Where the dates come from.", max_length=300
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "model lifecycle",
                "ordering": ["model"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("deprecated_on__isnull", True),
                            ("end_of_life__isnull", True),
                            ("deprecated_on__lte", models.F("end_of_life")),
                            _connector="OR",
                        ),
                        name="modellifecycle_deprecated_before_end",
                        violation_error_message="A model is deprecated on or before its end of life.",
                    )
                ],
            },
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
