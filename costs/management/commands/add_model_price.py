"""Add a price row for a model (a new row: prices are history), as a superuser, audited.

    manage.py add_model_price claude-haiku-5-5 --input 0.50 --cache-write-5m 0.625 \
        --cache-write-1h 1.00 --cache-read 0.05 --output 2.50 --by admin [--effective-from ISO]

The five rates are USD per million tokens, as on Anthropic's pricing page; the batch discount
defaults to the model's usual 50%. The row goes through costs.changes.add_price: only a
superuser may, it takes effect no sooner than COST_CHANGE_MIN_DELAY_MINUTES from now (the
default), and it is an audit event.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from costs import changes
from costs.models import ModelPrice

RATES = (
    ("input", "input_per_mtok"),
    ("cache_write_5m", "cache_write_5m_per_mtok"),
    ("cache_write_1h", "cache_write_1h_per_mtok"),
    ("cache_read", "cache_read_per_mtok"),
    ("output", "output_per_mtok"),
)


def _money(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise CommandError(f"{value!r} is not a number (USD per million tokens)") from None


class Command(BaseCommand):
    help = "Add a model price row (USD per million tokens), as a superuser; audited."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        for flag, _ in RATES:
            parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, required=True)
        parser.add_argument("--batch-discount", default="0.5")
        parser.add_argument(
            "--effective-from", default="", help="ISO datetime (default: the earliest allowed)"
        )
        parser.add_argument("--by", required=True, help="the superuser who makes the change")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = get_user_model().objects.filter(username=options["by"]).first()
        if actor is None:
            raise CommandError(f"No user {options['by']!r}.")
        if options["effective_from"]:
            effective = parse_datetime(options["effective_from"])
            if effective is None or effective.tzinfo is None:
                raise CommandError(
                    "--effective-from must be an ISO datetime with its time zone, e.g. 2026-12-05T00:00:00+00:00"
                )
        else:
            effective = changes.earliest_effective() + dt.timedelta(minutes=1)
        row = ModelPrice(
            model=options["model"],
            effective_from=effective,
            batch_discount=_money(options["batch_discount"]),
            **{field: _money(options[flag]) for flag, field in RATES},
        )
        try:
            changes.add_price(row, actor)
        except PermissionDenied as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        self.stdout.write(f"Added {row} (in force from {row.effective_from.isoformat()}).")
