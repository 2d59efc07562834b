"""Schedules: a workflow started on a cron expression in a time zone, with an input template,
as a named owner. Each schedule owns one django-celery-beat PeriodicTask (the schedule store
beat's DatabaseScheduler reads); schedules.service keeps the two in step and audits every
change. A ScheduledTick is one occurrence claimed by a tick: unique per (schedule, due time),
so a tick delivered twice, or beat catching up after being down, starts at most one run.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Schedule(models.Model):
    name = models.CharField(max_length=100, unique=True)
    workflow_name = models.CharField(max_length=100)
    cron = models.CharField(max_length=100, help_text="minute hour day-of-month month day-of-week")
    timezone = models.CharField(max_length=64, default="UTC")
    input_template = models.JSONField(default=dict)
    # Runs are started as this user: their permissions, budgets, rate limits and pauses apply.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    enabled = models.BooleanField(default=True)
    # Occurrences before this instant (creation, the last resume or change of timing) are
    # never run: a paused or re-timed schedule does not catch up on what it was not due.
    active_since = models.DateTimeField()
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="countersign_schedule",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_schedule", "Can create, change, pause and delete schedules")]

    def __str__(self) -> str:
        return self.name


class ScheduledTick(models.Model):
    class Outcome(models.TextChoices):
        CLAIMED = "claimed", "Claimed"  # the run is being started
        STARTED = "started", "Run started"
        REFUSED = "refused", "Refused"

    # SET_NULL: deleting a schedule keeps the record of what it started (and the audit trail).
    schedule = models.ForeignKey(
        Schedule, on_delete=models.SET_NULL, null=True, related_name="ticks"
    )
    schedule_name = models.CharField(max_length=100)
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.CLAIMED)
    detail = models.TextField(blank=True)
    run = models.ForeignKey(
        "orchestration.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "due_at"], name="scheduledtick_once_per_due"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schedule_name} @ {self.due_at:%Y-%m-%d %H:%M}"
