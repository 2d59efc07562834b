"""Seed ModelPrice with the price table from DESIGN.md (USD per million tokens).

The values are copied here, not imported, so this migration keeps meaning what it meant
when later prices are added as new rows with a later effective_from.
"""

import datetime as dt
from decimal import Decimal

from django.db import migrations

EFFECTIVE_FROM = dt.datetime(2025, 11, 24, tzinfo=dt.UTC)
OPUS = ("5.00", "6.25", "10.00", "0.50", "25.00")
SONNET = ("3.00", "3.75", "6.00", "0.30", "15.00")
HAIKU = ("1.00", "1.25", "2.00", "0.10", "5.00")
TABLE = {
    "claude-opus-4-7": OPUS, "claude-opus-4-6": OPUS, "claude-opus-4-5": OPUS,
    "claude-sonnet-4-6": SONNET, "claude-sonnet-4-5": SONNET, "claude-haiku-4-5": HAIKU,
}


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("costs", "ModelPrice")
    for model, values in TABLE.items():
        inp, w5, w1h, read, out = (Decimal(v) for v in values)
        ModelPrice.objects.get_or_create(model=model, effective_from=EFFECTIVE_FROM, defaults={
            "input_per_mtok": inp, "cache_write_5m_per_mtok": w5, "cache_write_1h_per_mtok": w1h,
            "cache_read_per_mtok": read, "output_per_mtok": out})


class Migration(migrations.Migration):
    dependencies = [("costs", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
