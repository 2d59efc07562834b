"""Prices (with history) and budgets."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelPrice(models.Model):
    """USD per million tokens for one model from ``effective_from`` on.

    A call is priced with the row in force when it was made, so changing prices never
    rewrites the cost of old runs. The formula lives in ``costs.pricing``.
    """

    model = models.CharField(max_length=100)
    input_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    output_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    cache_write_5m_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    cache_write_1h_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    cache_read_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    batch_discount = models.DecimalField(
        max_digits=4, decimal_places=3, default=Decimal("0.5"), help_text="Fraction taken off in batch."
    )
    effective_from = models.DateTimeField()

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="modelprice_unique_from"),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class Budget(models.Model):
    """A spending limit per scope and period; hard ones refuse to start runs."""

    class Scope(models.TextChoices):
        GLOBAL = "global"
        WORKFLOW = "workflow"
        USER = "user"

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    workflow_name = models.CharField(max_length=100, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    period = models.CharField(max_length=10, choices=Period.choices)
    limit_usd = models.DecimalField(max_digits=12, decimal_places=2)
    hard = models.BooleanField(default=True, help_text="Hard: refuse to start. Soft: warn.")
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
        ]

    def __str__(self) -> str:
        target = self.workflow_name or (self.user.username if self.user_id else "all")
        return f"{self.scope}:{target} {self.period} ${self.limit_usd}"
