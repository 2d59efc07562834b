"""The one place a model call's cost is computed.

cost = (input x in + cache_5m x w5 + cache_1h x w1h + cache_read x r + output x out) / 1e6,
times (1 - batch_discount) for Message Batches. Decimal throughout; nothing is rounded
here (display rounds). Prices are USD per million tokens, looked up as in force at the
time of the call, so a price change never rewrites old runs.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DecimalField, ExpressionWrapper, F, Value, When
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from costs.models import ModelLifecycle, ModelPrice

MILLION = Decimal(1_000_000)

# USD per million tokens: input, 5m cache write, 1h cache write, cache read, output.
# Source: ../shared/DESIGN.md (the seeds' prices are out of date).
PRICE_TABLE: dict[str, tuple[str, str, str, str, str]] = {
    "claude-opus-4-7": ("5.00", "6.25", "10.00", "0.50", "25.00"),
    "claude-opus-4-6": ("5.00", "6.25", "10.00", "0.50", "25.00"),
    "claude-opus-4-5": ("5.00", "6.25", "10.00", "0.50", "25.00"),
    "claude-sonnet-4-6": ("3.00", "3.75", "6.00", "0.30", "15.00"),
    "claude-sonnet-4-5": ("3.00", "3.75", "6.00", "0.30", "15.00"),
    "claude-haiku-4-5": ("1.00", "1.25", "2.00", "0.10", "5.00"),
}
PRICES_EFFECTIVE_FROM = dt.datetime(2025, 11, 24, tzinfo=dt.UTC)

# The December 2026 lineup (migration 0005 adds the same rows; the table above is untouched):
# the models the anthropic SDK 2.12 names that have all five rates on an official Anthropic
# page (platform.claude.com: the pricing page and each model's overview), checked 2026-12-04.
# Not priced, so refused at start until a superuser adds a price (docs/operations.md):
# claude-haiku-5-5 (two price bands by prompt length, which this formula cannot express),
# claude-fable-5-2 and claude-mythos-5-2 (official input/output $8/$40, cache rates not
# found on an official page), claude-mythos-preview (no price found).
LINEUP_2026_12: dict[str, tuple[str, str, str, str, str]] = {
    "claude-fable-5-1": ("10.00", "12.50", "20.00", "0.25", "50.00"),
    "claude-mythos-5-1": ("10.00", "12.50", "20.00", "0.25", "50.00"),
    "claude-fable-5": ("10.00", "12.50", "20.00", "1.00", "50.00"),
    "claude-mythos-5": ("10.00", "12.50", "20.00", "1.00", "50.00"),
    "claude-opus-5-5": ("4.00", "5.00", "8.00", "0.20", "20.00"),
    "claude-opus-5": ("5.00", "6.25", "10.00", "0.50", "25.00"),
    "claude-opus-4-8": ("5.00", "6.25", "10.00", "0.50", "25.00"),
    "claude-sonnet-5-5": ("2.00", "2.50", "4.00", "0.20", "10.00"),
    "claude-sonnet-5": ("2.00", "2.50", "4.00", "0.20", "10.00"),
}
LINEUP_EFFECTIVE_FROM = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

# Deprecation and end-of-life dates known on 2026-12-04 (costs.models.ModelLifecycle; the
# admin edits them): model -> (deprecated_on, end_of_life, replacement, source).
LIFECYCLE: dict[str, tuple[dt.date | None, dt.date | None, str, str]] = {
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


class UnknownModelPrice(LookupError):
    pass


@dataclass(frozen=True)
class Usage:
    """Token counts of one call, as the API reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0

    @classmethod
    def from_api(cls, usage: dict[str, Any]) -> Usage:
        """Read the Messages API usage object (cache_creation split by TTL when present)."""
        creation = usage.get("cache_creation") or {}
        total_creation = usage.get("cache_creation_input_tokens") or 0
        w5 = creation.get("ephemeral_5m_input_tokens")
        w1h = creation.get("ephemeral_1h_input_tokens") or 0
        if w5 is None:  # older responses carry only the total, which is 5-minute writes
            w5 = total_creation - w1h
        return cls(
            input_tokens=usage.get("input_tokens") or 0,
            output_tokens=usage.get("output_tokens") or 0,
            cache_write_5m=w5,
            cache_write_1h=w1h,
            cache_read=usage.get("cache_read_input_tokens") or 0,
        )


def cost_of(usage: Usage, price: ModelPrice, *, batch: bool = False) -> Decimal:
    total = (
        usage.input_tokens * price.input_per_mtok
        + usage.cache_write_5m * price.cache_write_5m_per_mtok
        + usage.cache_write_1h * price.cache_write_1h_per_mtok
        + usage.cache_read * price.cache_read_per_mtok
        + usage.output_tokens * price.output_per_mtok
    ) / MILLION
    if batch:
        total *= Decimal(1) - price.batch_discount
    return total


def cache_saving(usage: Usage, price: ModelPrice, *, batch: bool = False) -> Decimal:
    """What prompt caching saved on one call: its cache reads priced as plain input, minus the
    premium paid for its cache writes (negative for a write that is never read back)."""
    saving = (
        usage.cache_read * (price.input_per_mtok - price.cache_read_per_mtok)
        - usage.cache_write_5m * (price.cache_write_5m_per_mtok - price.input_per_mtok)
        - usage.cache_write_1h * (price.cache_write_1h_per_mtok - price.input_per_mtok)
    ) / MILLION
    if batch:
        saving *= Decimal(1) - price.batch_discount
    return saving


def batch_saving(usage: Usage, price: ModelPrice, *, batch: bool) -> Decimal:
    """What the Message Batches discount took off one call (zero for a real-time call)."""
    return cost_of(usage, price) - cost_of(usage, price, batch=True) if batch else Decimal(0)


# The same two savings as SQL over ModelCall rows (their price FK), for the costs page's
# aggregates; tests/test_pricing.py checks they agree with the functions above.
def _money(expression: Any) -> ExpressionWrapper:
    return ExpressionWrapper(
        expression, output_field=DecimalField(max_digits=20, decimal_places=10)
    )


def cache_saving_sql() -> ExpressionWrapper:
    saving = (
        F("cache_read_tokens") * (F("price__input_per_mtok") - F("price__cache_read_per_mtok"))
        - F("cache_write_5m_tokens")
        * (F("price__cache_write_5m_per_mtok") - F("price__input_per_mtok"))
        - F("cache_write_1h_tokens")
        * (F("price__cache_write_1h_per_mtok") - F("price__input_per_mtok"))
    ) / MILLION
    factor = Case(
        When(is_batch=True, then=Value(Decimal(1)) - F("price__batch_discount")),
        default=Value(Decimal(1)),
    )
    return _money(saving * factor)


def batch_saving_sql() -> ExpressionWrapper:
    list_price = (
        F("input_tokens") * F("price__input_per_mtok")
        + F("cache_write_5m_tokens") * F("price__cache_write_5m_per_mtok")
        + F("cache_write_1h_tokens") * F("price__cache_write_1h_per_mtok")
        + F("cache_read_tokens") * F("price__cache_read_per_mtok")
        + F("output_tokens") * F("price__output_per_mtok")
    ) / MILLION
    return _money(
        Case(
            When(is_batch=True, then=list_price * F("price__batch_discount")),
            default=Value(Decimal(0)),
        )
    )


_DATED = re.compile(r"(?P<model>.+)-\d{8}")


def canonical_model(model: str) -> str:
    """The priced model name of a dated snapshot (claude-sonnet-4-5-20250929 ->
    claude-sonnet-4-5); any other name as it is. Only a date suffix is stripped, so
    claude-sonnet-5-5 never falls back to claude-sonnet-5's price."""
    dated = _DATED.fullmatch(model)
    return dated.group("model") if dated else model


# Per-process cache of each model's price rows (costs.models.ModelPrice is append-only).
# An entry read at T answers lookups for times before T + PRICE_CACHE_SECONDS and before the
# first of its rows that was not yet in force at T: a new row (costs.changes) takes effect no
# sooner than COST_CHANGE_MIN_DELAY_MINUTES after it is added, which the settings keep longer
# than PRICE_CACHE_SECONDS, and a row may only be withdrawn before it is in force. A save or
# delete in this process empties the cache at once. PRICE_CACHE_SECONDS = 0 turns it off.
_price_cache: dict[str, tuple[dt.datetime, list[ModelPrice]]] = {}


def clear_price_cache(**_: Any) -> None:
    _price_cache.clear()


def _rows_for(model: str, at: dt.datetime) -> list[ModelPrice] | None:
    """The model's rows, newest first, if the cache may answer a lookup at ``at``."""
    seconds = settings.PRICE_CACHE_SECONDS
    if seconds <= 0:
        return None
    now = timezone.now()
    entry = _price_cache.get(model)
    if entry is not None:
        read_at, rows = entry
        pending = [r.effective_from for r in rows if r.effective_from > read_at]
        valid_until = min([read_at + dt.timedelta(seconds=seconds), *pending])
        if max(at, now) < valid_until:
            return rows
    rows = list(ModelPrice.objects.filter(model=model).order_by("-effective_from"))
    _price_cache[model] = (now, rows)
    return rows if at < now + dt.timedelta(seconds=seconds) else None


def price_for(model: str, at: dt.datetime | None = None) -> ModelPrice:
    at = at or timezone.now()
    canonical = canonical_model(model)
    rows = _rows_for(canonical, at)
    if rows is not None:
        price = next((r for r in rows if r.effective_from <= at), None)
    else:
        price = (
            ModelPrice.objects.filter(model=canonical, effective_from__lte=at)
            .order_by("-effective_from")
            .first()
        )
    if price is None:
        raise UnknownModelPrice(missing_price_message(canonical, at))
    return price


def missing_price_message(model: str, at: dt.datetime) -> str:
    """What to do about a model with no price: the one wording every refusal uses."""
    return (
        f"No price for model {model!r} in force at {at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC. Add one in the admin, as a "
        f"superuser (Costs > Model prices > Add: model {model!r} and its five rates per million tokens from "
        "Anthropic's pricing page), or with `manage.py add_model_price "
        f"{model} --input X --cache-write-5m X --cache-write-1h X --cache-read X --output X --by USERNAME`."
    )


def seed_prices() -> int:
    """Insert the price tables (DESIGN.md's, then the December 2026 lineup) and the known
    lifecycle dates if absent; returns how many price rows were created."""
    created = 0
    tables = ((PRICE_TABLE, PRICES_EFFECTIVE_FROM), (LINEUP_2026_12, LINEUP_EFFECTIVE_FROM))
    with transaction.atomic():
        for model, deprecated_on, end_of_life, replacement, source in (
            (m, *v) for m, v in LIFECYCLE.items()
        ):
            ModelLifecycle.objects.get_or_create(
                model=model,
                defaults={
                    "deprecated_on": deprecated_on,
                    "end_of_life": end_of_life,
                    "replacement": replacement,
                    "source": source,
                },
            )
        for model, values, effective_from in (
            (m, v, f) for table, f in tables for m, v in table.items()
        ):
            inp, w5, w1h, read, out = (Decimal(v) for v in values)
            _, was_created = ModelPrice.objects.get_or_create(
                model=model,
                effective_from=effective_from,
                defaults={
                    "input_per_mtok": inp,
                    "cache_write_5m_per_mtok": w5,
                    "cache_write_1h_per_mtok": w1h,
                    "cache_read_per_mtok": read,
                    "output_per_mtok": out,
                },
            )
            created += was_created
    return created


post_save.connect(
    clear_price_cache, sender=ModelPrice, dispatch_uid="costs.pricing.clear_price_cache.save"
)
post_delete.connect(
    clear_price_cache, sender=ModelPrice, dispatch_uid="costs.pricing.clear_price_cache.delete"
)
