"""Alerts as rows: the thresholds per workflow, each alert raised, and users paused by one.

Who may see, acknowledge and resolve alerts, and lift a pause: reviews.access. Alerts are
opened only by ``alerts.raising`` and change status only there; pauses only in
``alerts.pauses``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class AlertThresholds(models.Model):
    """The thresholds of every alert rule, for one workflow, or for all (``workflow_name``
    blank: the defaults, also used by per-user and global rules). A workflow without a row of
    its own uses the defaults' row, and without that, the values below.
    See alerts.rules for what each number means and how it is compared."""

    workflow_name = models.CharField(
        max_length=100,
        blank=True,
        unique=True,
        help_text="Blank: the defaults for every workflow and for per-user rules.",
    )
    # Cost spike: the last 24 hours against the 24 hours before, and against the daily mean
    # of the ``cost_baseline_days`` before that; only when the last 24 hours cost at least
    # ``cost_min_usd`` (cents doubling is not a spike).
    cost_spike_ratio = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("2.00"),
        validators=[MinValueValidator(Decimal("1.01"))],
    )
    cost_baseline_ratio = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("2.00"),
        validators=[MinValueValidator(Decimal("1.01"))],
    )
    cost_baseline_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(30)]
    )
    cost_min_usd = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("1.00"))
    # Latency: p95 of model-call latency in the last 24 hours against the baseline days'.
    latency_ratio = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("1.50"),
        validators=[MinValueValidator(Decimal("1.01"))],
    )
    latency_min_calls = models.PositiveIntegerField(default=20)
    # Error rate: failed or halted runs among runs that ended in the window, over the threshold.
    error_rate_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("5.00"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    error_min_runs = models.PositiveIntegerField(default=20)
    error_window_hours = models.PositiveSmallIntegerField(
        default=24, validators=[MinValueValidator(1), MaxValueValidator(168)]
    )
    # Retries (model-call and tool-call re-attempts) in any sliding window, per user and per workflow.
    retry_count = models.PositiveIntegerField(default=100, validators=[MinValueValidator(1)])
    retry_window_seconds = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(86400)]
    )
    pause_user_on_retry_burst = models.BooleanField(
        default=True,
        help_text=(
            "A user's retry burst pauses their new runs until a manager lifts it. Off on a "
            "workflow's row: that workflow's retries never pause anyone (the alert still "
            "opens). The burst itself is counted with the defaults' row's count and window."
        ),
    )
    # Escalations (tickets opened) in any sliding window, per user and per workflow.
    escalation_count = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)])
    escalation_window_seconds = models.PositiveIntegerField(
        default=86400, validators=[MinValueValidator(1), MaxValueValidator(7 * 86400)]
    )
    # Budgets: committed spend at or over this share of the limit.
    budget_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("80.00"),
        validators=[MinValueValidator(1), MaxValueValidator(100)],
    )
    # The fan-out failure-rate breaker halting a run.
    breaker_alerts = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow_name"]
        verbose_name_plural = "alert thresholds"

    def __str__(self) -> str:
        return f"Thresholds for {self.workflow_name or 'every workflow (defaults)'}"


class Alert(models.Model):
    """One alert: a rule's threshold crossed for one subject (a workflow, a user, a budget).

    open -> acknowledged -> resolved (open -> resolved too). While an alert is open or
    acknowledged, the rule crossing again for the same subject updates it (``occurrences``,
    ``last_seen_at``, the latest ``numbers``) instead of opening another, and nobody is
    notified again; after it is resolved, the next crossing opens a new alert.
    """

    class Rule(models.TextChoices):
        COST_SPIKE = "cost_spike", "cost spike (day over day)"
        COST_BASELINE = "cost_baseline", "cost spike (against the baseline)"
        LATENCY = "latency", "latency increase"
        ERROR_RATE = "error_rate", "error rate"
        RETRY_BURST = "retry_burst", "retry burst"
        ESCALATION_BURST = "escalation_burst", "escalation burst"
        BUDGET = "budget", "budget nearing its limit"
        BREAKER = "breaker", "failure-rate breaker tripped"

    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    UNRESOLVED = (Status.OPEN, Status.ACKNOWLEDGED)

    rule = models.CharField(max_length=20, choices=Rule.choices)
    # rule + subject, e.g. "retry_burst:user:7"; unique among unresolved alerts.
    key = models.CharField(max_length=200)
    workflow_name = models.CharField(max_length=100, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    title = models.CharField(max_length=300)
    detail = models.TextField(help_text="What triggered it, in words.")
    numbers = models.JSONField(
        default=dict, help_text="What triggered it: observed values and thresholds."
    )
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # Deduplication: one unresolved alert per rule and subject (alerts.raising).
            models.UniqueConstraint(
                fields=["key"], condition=~Q(status="resolved"), name="alert_one_unresolved_per_key"
            ),
        ]
        indexes = [
            # The alerts page: unresolved alerts, newest first.
            models.Index(
                fields=["-opened_at"],
                condition=~Q(status="resolved"),
                name="alert_unresolved_recent",
            ),
            # The page's "recently resolved".
            models.Index(
                fields=["-resolved_at"],
                condition=Q(status="resolved"),
                name="alert_resolved_recent",
            ),
        ]
        permissions = [
            ("handle_alert", "Can acknowledge and resolve alerts"),
            ("lift_pause", "Can let a paused user start runs again"),
        ]

    def __str__(self) -> str:
        return f"{self.get_rule_display()}: {self.title} ({self.status})"


class UserPause(models.Model):
    """A user whose new runs are refused (orchestration.launch) because an anomaly alert
    pointed at them, until a manager lifts it. Runs already started are not touched."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.PROTECT, related_name="pauses"
    )
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # At most one pause in force per user; the start check reads it.
            models.UniqueConstraint(
                fields=["user"], condition=Q(lifted_at__isnull=True), name="userpause_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} paused ({'lifted' if self.lifted_at else 'in force'})"
