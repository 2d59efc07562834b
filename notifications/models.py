"""Where notifications go: signed webhooks (and their delivery log) and per-workflow recipients.

Email needs no row: it goes through Django's mail backend to people found by role
(reviews.notifications) or named here (``WorkflowRecipient``) or on the workflow
(``Workflow.recipients``).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

# What a webhook or a workflow recipient may subscribe to.
EVENTS = (
    ("approval.requested", "a run waits for a manager's approval"),
    ("approval.decided", "an approval request was approved, rejected or expired"),
    ("run.ended", "a run ended (succeeded, failed, halted, cancelled, rejected)"),
    ("ticket.opened", "an escalation ticket opened"),
    ("ticket.overdue", "escalation tickets past their due time (a notice per reminder interval)"),
    ("ticket.escalated", "late P1 tickets escalated to the managers"),
    ("alert.opened", "an alert opened"),
    ("digest", "the daily digest"),
)
EVENT_NAMES = frozenset(name for name, _ in EVENTS)


def validate_events(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(
            'Give a list of event names, e.g. ["alert.opened"], or [] for every event.'
        )
    unknown = sorted(set(value) - EVENT_NAMES)
    if unknown:
        raise ValidationError(
            f"Unknown event(s) {', '.join(unknown)}; the events are: {', '.join(sorted(EVENT_NAMES))}."
        )


class WebhookEndpoint(models.Model):
    """A URL that gets a Slack-compatible JSON payload for each subscribed event, signed with
    HMAC-SHA256 under ``secret`` (see notifications.channels.sign and docs/operations.md)."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    secret = models.CharField(
        max_length=200, help_text="Shared secret for the X-Countersign-Signature HMAC."
    )
    events = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_events],
        help_text="Event names to send; empty: every event.",
    )
    max_ticket_priority = models.PositiveSmallIntegerField(
        default=3,
        help_text=(
            "ticket.opened, ticket.overdue, ticket.escalated: only tickets of this priority or "
            "more urgent (1 = most urgent)."
        ),
    )
    workflow_name = models.CharField(
        max_length=100, blank=True, help_text="Only this workflow's events (blank: all)."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def wants(self, event: str, *, workflow_name: str = "", priority: int | None = None) -> bool:
        if not self.active or (self.events and event not in self.events):
            return False
        if self.workflow_name and workflow_name and self.workflow_name != workflow_name:
            return False
        return not (priority is not None and priority > self.max_ticket_priority)


class WebhookDelivery(models.Model):
    """One event sent to one endpoint: the exact body signed, and every attempt's outcome.

    pending -> delivered | retrying -> ... -> delivered | failed. Retried with exponential
    backoff (notifications.tasks.deliver_webhook) on connection errors, 408, 429 and 5xx;
    another 4xx fails at once (the receiver refused it; sending it again changes nothing).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RETRYING = "retrying"
        DELIVERED = "delivered"
        FAILED = "failed"

    FINAL = (Status.DELIVERED, Status.FAILED)

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=40)
    body = models.TextField(help_text="The JSON body exactly as signed and sent (redacted).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the next attempt is due (or, while one is in flight, until when it holds the claim).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sweeper's query: deliveries still to send whose attempt is due.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "retrying"]),
                name="webhookdelivery_due",
            ),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint_id} ({self.status})"


class WorkflowRecipient(models.Model):
    """Someone a workflow's notifications go to, besides the people found by role: its alerts,
    the daily digest, and (if subscribed) every run end or ticket of the workflow. Workflows
    may also declare recipients in code (``Workflow.recipients``); both are read through
    ``notifications.recipients.for_workflow``."""

    workflow_name = models.CharField(max_length=100)
    email = models.EmailField()
    events = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_events],
        help_text="Event names; empty: alert.opened and digest.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow_name", "email"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow_name", "email"], name="workflowrecipient_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} for {self.workflow_name}"
