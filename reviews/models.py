"""Humans in the loop: managers' approvals of expensive runs and reviewers' escalation tickets."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from orchestration.fields import EncryptedJSONField


class ApprovalRequest(models.Model):
    """A run estimated over the approval threshold waits here for a manager.

    pending -> approved | rejected | expired | cancelled (the run was cancelled). Decided once (row lock); the requester can
    never decide their own request.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"
        CANCELLED = "cancelled"  # the run was cancelled before a manager decided

    run = models.ForeignKey("orchestration.Run", on_delete=models.CASCADE, related_name="approvals")
    estimate_usd = models.DecimalField(max_digits=14, decimal_places=6)
    threshold_usd = models.DecimalField(max_digits=14, decimal_places=2)
    calculation = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_requests"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="approval_decisions",
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The managers' queue: pending requests, oldest first.
            models.Index(
                fields=["created_at"], condition=Q(status="pending"), name="approval_pending_queue"
            ),
            # The approval page: pending requests, soonest to expire first, a page at a time.
            models.Index(
                fields=["expires_at", "id"],
                condition=Q(status="pending"),
                name="approval_pending_by_expiry",
            ),
            # The approval page's "Recently decided": the latest decisions first.
            models.Index(
                fields=["-decided_at"],
                condition=~Q(status="pending"),
                name="approval_recent_decisions",
            ),
        ]
        permissions = [("decide_approval", "Can approve or reject expensive runs")]

    # What the audit chain digests when an event records this request (orchestration.audit).
    EVIDENCE_FIELDS = (
        "estimate_usd",
        "threshold_usd",
        "status",
        "requested_by",
        "decided_by",
        "comment",
    )

    def __str__(self) -> str:
        return f"Approval for {self.run_id} ({self.status})"


class EscalationTicket(models.Model):
    """A paused run waiting for a reviewer, with the full context at the time it paused.

    open -> claimed -> resolved (claimed -> open when unclaimed). The resolution drives the
    run through the run state machine.
    """

    class Reason(models.TextChoices):
        VALIDATION_FAILED = "validation_failed", "validation failed"
        RETRIES_EXHAUSTED = "retries_exhausted", "retries exhausted"
        AMBIGUITY = "ambiguity"
        REGULATORY_TRIGGER = "regulatory_trigger", "regulatory trigger"
        FAILURE_RATE_EXCEEDED = "failure_rate_exceeded", "failure rate exceeded"
        BUDGET_EXCEEDED = "budget_exceeded", "budget exceeded"
        UNKNOWN_TOOL = "unknown_tool", "unknown tool"
        TOOL_ERROR = "tool_error", "tool error"
        HALLUCINATION = "hallucination"
        STEP_LIMIT = "step_limit", "step limit"
        TIMEOUT = "timeout"
        UNDECRYPTABLE = "undecryptable", "payload cannot be decrypted"
        VERSION_UNAVAILABLE = "version_unavailable", "version's code not deployed"
        LATENCY_LIMIT = "latency_limit", "latency limit exceeded"

    class Status(models.TextChoices):
        OPEN = "open"
        CLAIMED = "claimed"
        RESOLVED = "resolved"

    class Resolution(models.TextChoices):
        RESUME = "resume", "resumed with a note"
        RETRY = "retry", "retried the failed step"
        CORRECT = "correct", "supplied a corrected output"
        APPROVE = "approve", "approved the result"
        FAIL = "fail", "failed the run"
        CANCELLED = "cancelled", "closed: the run was cancelled"
        # An evaluation run's escalation, closed by the engine (reviews.escalation.escalate).
        EVALUATION = "evaluation", "closed as an evaluation outcome"

    run = models.ForeignKey("orchestration.Run", on_delete=models.CASCADE, related_name="tickets")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    message = models.TextField(help_text="What went wrong, in words a reviewer can act on.")
    # Encrypted at rest when PAYLOAD_ENCRYPTION_KEYS is set: it copies the run's payloads.
    context = EncryptedJSONField(help_text="Snapshot: input, every call so far, the failing check.")
    failing_tool_call = models.ForeignKey(
        "orchestration.ToolCall", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    failing_model_call = models.ForeignKey(
        "orchestration.ModelCall",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    priority = models.PositiveSmallIntegerField(default=2, help_text="1 = highest.")
    due_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # SLA reminders (reviews.sla): the last overdue notice, and when an overdue P1 ticket was
    # escalated to the managers (once).
    reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["priority", "due_at"]
        indexes = [
            # The reviewers' queue: unresolved tickets by priority then due time.
            models.Index(
                fields=["priority", "due_at"],
                condition=~Q(status="resolved"),
                name="ticket_unresolved_queue",
            ),
            # The queue's counters (unresolved tickets per reason, and how many are overdue):
            # an index-only scan instead of reading every open ticket's row.
            models.Index(
                fields=["reason", "due_at"],
                condition=~Q(status="resolved"),
                name="ticket_unresolved_reason",
            ),
            # The roll-up fold (insight.rollups): tickets opened since the last fold / in an hour.
            models.Index(fields=["created_at"], name="ticket_created"),
        ]
        constraints = [
            # A run pauses on one ticket at a time.
            models.UniqueConstraint(
                fields=["run"], condition=~Q(status="resolved"), name="ticket_one_open_per_run"
            ),
        ]
        permissions = [
            ("resolve_ticket", "Can claim and resolve escalation tickets"),
            ("override_ticket", "Can act on tickets claimed by someone else"),
        ]

    # What the audit chain digests when an event records this ticket (orchestration.audit):
    # the snapshot when it opens, the decision when it is resolved. The retention purge may
    # replace the context with {"purged_at": ...} (a payload.purged event says when).
    EVIDENCE_FIELDS = ("reason", "message", "context", "resolution", "resolved_by", "comment")
    PURGEABLE_FIELDS = ("context",)

    def __str__(self) -> str:
        return f"{self.get_reason_display()} on {self.run_id} ({self.status})"


class SlaTarget(models.Model):
    """The service level of one escalation reason: the priority a new ticket gets and the
    minutes until it is due. Edited in the admin (superusers; managers and auditors view);
    the migration seeds the values ``reviews.escalation.DEFAULT_SLA`` held, and a reason
    without a row falls back to them. A change applies to tickets opened after it; every
    change is an audit event (``sla.changed``)."""

    reason = models.CharField(max_length=30, choices=EscalationTicket.Reason.choices, unique=True)
    priority = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(3)],
        help_text="1 = most urgent, 3 = least.",
    )
    due_minutes = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(60 * 24 * 30)],
        help_text="Minutes from the ticket opening until it is due.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "reason"]
        verbose_name = "SLA target"

    def __str__(self) -> str:
        return f"{self.get_reason_display()}: P{self.priority}, due in {self.due_minutes} min"
