"""Prices (with history) and budgets (with history).

Both are append-only: a change is a new row with a later ``effective_from``, never an edit.
A row is refused an update (``save`` here, and a database trigger, migration 0003) and, once in
force, a delete. Who may add one, how far ahead and within which bounds: ``costs.changes``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

# Sanity bounds, also enforced by CheckConstraints: a price is USD per million tokens, so a
# value past this is a unit mistake (per token, per thousand), and a zero or negative price
# would make every run free and never trip an approval or a guard.
MAX_PRICE_PER_MTOK = Decimal("1000")
# Message Batches take half off today; a discount of 1 would make every batch call free.
MAX_BATCH_DISCOUNT = Decimal("0.9")
PRICE_FIELDS = (
    "input_per_mtok",
    "output_per_mtok",
    "cache_write_5m_per_mtok",
    "cache_write_1h_per_mtok",
    "cache_read_per_mtok",
)


def validate_price(value: Decimal) -> None:
    if value is not None and not Decimal(0) < value <= MAX_PRICE_PER_MTOK:
        raise ValidationError(
            f"A price must be more than $0 and at most ${MAX_PRICE_PER_MTOK} per million tokens "
            f"(got ${value}). Prices are USD per million tokens.",
            code="price_out_of_bounds",
        )


def validate_batch_discount(value: Decimal) -> None:
    if value is not None and not Decimal(0) <= value <= MAX_BATCH_DISCOUNT:
        raise ValidationError(
            f"The batch discount is a fraction between 0 and {MAX_BATCH_DISCOUNT} (got {value}).",
            code="discount_out_of_bounds",
        )


def validate_limit(value: Decimal) -> None:
    if value is not None and value < 0:
        raise ValidationError("A budget limit cannot be negative.", code="negative_limit")


class ImmutableRow(Exception):
    """An in-place edit of a price or budget row, or a delete of one in force."""


class _AppendOnly(models.Model):
    """Rows that are history: never updated; deleted only before they come into force."""

    effective_from: models.DateTimeField

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not self._state.adding:
            raise ImmutableRow(
                f"{self._meta.verbose_name} rows are never edited: add a new row with a later "
                "effective_from instead."
            )
        return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        stored = (
            type(self).objects.filter(pk=self.pk).values_list("effective_from", flat=True).first()
        )
        if stored is not None and stored <= timezone.now():
            raise ImmutableRow(
                f"This {self._meta.verbose_name} is in force since {stored:%Y-%m-%d %H:%M %Z}: it "
                "cannot be deleted. Add a new row with a later effective_from to replace it."
            )
        return super().delete(*args, **kwargs)

    @property
    def in_force(self) -> bool:
        return self.effective_from <= timezone.now()


def _price_bounds() -> list[models.CheckConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(**{f"{name}__gt": 0, f"{name}__lte": MAX_PRICE_PER_MTOK}),
            name=f"modelprice_{name}_bounded",
            violation_error_message=(
                f"{name.replace('_', ' ')} must be more than $0 and at most "
                f"${MAX_PRICE_PER_MTOK} per million tokens."
            ),
        )
        for name in PRICE_FIELDS
    ]


class ModelPrice(_AppendOnly):
    """USD per million tokens for one model from ``effective_from`` on.

    A call is priced with the row in force when it was made, so changing prices never
    rewrites the cost of old runs. The formula lives in ``costs.pricing``.
    """

    model = models.CharField(max_length=100)
    input_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, validators=[validate_price]
    )
    output_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, validators=[validate_price]
    )
    cache_write_5m_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, validators=[validate_price]
    )
    cache_write_1h_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, validators=[validate_price]
    )
    cache_read_per_mtok = models.DecimalField(
        max_digits=10, decimal_places=4, validators=[validate_price]
    )
    batch_discount = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.5"),
        validators=[validate_batch_discount],
        help_text="Fraction taken off in batch.",
    )
    effective_from = models.DateTimeField()

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "effective_from"], name="modelprice_unique_from"
            ),
            *_price_bounds(),
            models.CheckConstraint(
                condition=Q(batch_discount__gte=0, batch_discount__lte=MAX_BATCH_DISCOUNT),
                name="modelprice_batch_discount_bounded",
                violation_error_message=f"The batch discount must be between 0 and {MAX_BATCH_DISCOUNT}.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class Budget(_AppendOnly):
    """A spending limit per scope and period; hard ones refuse to start runs.

    History like prices: the row in force for a (scope, target, period, hard) is the one with
    the latest ``effective_from`` not in the future (``costs.budgets.applicable``), so raising
    or lowering a limit is a new row, and the old one stays as the record of what applied.
    """

    class Scope(models.TextChoices):
        GLOBAL = "global"
        WORKFLOW = "workflow"
        USER = "user"

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    workflow_name = models.CharField(max_length=100, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    period = models.CharField(max_length=10, choices=Period.choices)
    limit_usd = models.DecimalField(max_digits=12, decimal_places=2, validators=[validate_limit])
    hard = models.BooleanField(default=True, help_text="Hard: refuse to start. Soft: warn.")
    effective_from = models.DateTimeField(
        default=timezone.now,
        help_text="When this limit replaces the one in force for the same scope, period and kind.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scope", "period"]
        constraints = [
            models.CheckConstraint(
                condition=Q(scope="global", workflow_name="", user__isnull=True)
                | Q(scope="workflow", user__isnull=True) & ~Q(workflow_name="")
                | Q(scope="user", workflow_name="", user__isnull=False),
                name="budget_scope_matches_target",
            ),
            # Zero is allowed: a hard $0 budget is the freeze switch (it only ever refuses more).
            models.CheckConstraint(
                condition=Q(limit_usd__gte=0),
                name="budget_limit_not_negative",
                violation_error_message="A budget limit cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        target = self.workflow_name or (self.user.username if self.user_id else "all")
        return f"{self.scope}:{target} {self.period} ${self.limit_usd}"


class RequesterDailySpend(models.Model):
    """Roll-up: per requester and UTC day of the runs' creation, how many runs they started and
    what those runs cost so far. The approval queue's "N runs, $X in 30 days" per requester
    reads it (``costs.requester_spend``) instead of aggregating every run in the window.

    Rebuilt for the last RECENT_SPEND_DAYS complete days by beat (``refresh``, every
    REQUESTER_SPEND_REFRESH_SECONDS); ``covered_through`` is the last complete day that
    rebuild covered, and anything newer is read live from the runs. Not written on the step
    path: a counter bumped by every charge would be one row every run of a requester waits on.
    """

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    day = models.DateField()
    runs = models.PositiveIntegerField()
    cost_usd = models.DecimalField(max_digits=20, decimal_places=12)
    covered_through = models.DateField(help_text="The last complete day the rebuild covered.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "day"], name="requester_daily_spend_unique"
            )
        ]
        indexes = [models.Index(fields=["covered_through"], name="requester_spend_covered")]

    def __str__(self) -> str:
        return f"{self.requested_by_id} on {self.day}: {self.runs} runs, ${self.cost_usd}"


class ModelLifecycle(models.Model):
    """When a model is deprecated and when it reaches its end of life (the API retires it).

    Data, edited in the admin as Anthropic announces dates (costs.admin, audited): a run whose
    models include one past ``end_of_life`` is refused at start; one deprecated shows a warning
    on the start page (costs.lineup). A model with no row is active. Unlike prices, these
    dates are not history: an announced date may move, and only the current one matters.
    """

    model = models.CharField(max_length=100, unique=True)
    deprecated_on = models.DateField(
        null=True,
        blank=True,
        help_text="From this day the start page warns that the model is deprecated.",
    )
    end_of_life = models.DateField(
        null=True,
        blank=True,
        help_text="From this day no run that uses the model may start (the API retires it).",
    )
    replacement = models.CharField(max_length=100, blank=True, help_text="The model to move to.")
    source = models.CharField(max_length=300, blank=True, help_text="Where the dates come from.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]
        verbose_name = "model lifecycle"
        constraints = [
            models.CheckConstraint(
                condition=Q(deprecated_on__isnull=True)
                | Q(end_of_life__isnull=True)
                | Q(deprecated_on__lte=models.F("end_of_life")),
                name="modellifecycle_deprecated_before_end",
                violation_error_message="A model is deprecated on or before its end of life.",
            ),
        ]

    def __str__(self) -> str:
        return self.model
