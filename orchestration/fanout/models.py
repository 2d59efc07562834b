"""Fan-out state in Postgres: one Fanout row per fan-out run, one FanoutJob row per job.

Jobs are rows of their own, not child runs: a run of 1,000 jobs would otherwise carry 1,000
Runs, each with its own lifecycle, estimate, audit trail and approval gate, none of which a
job has. A job is a unit of work of its parent run: its model calls are the run's
ModelCalls (with ``job`` set), its cost is charged to the run, and the run's status is the
only status a user acts on. See docs/architecture.md, "Fan-out".
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from orchestration.fields import EncryptedJSONField, EncryptedTextField


class Fanout(models.Model):
    """Where a fan-out run is: decomposing, dispatching jobs, aggregating, or stopped.

    Phases (each move is a conditional update, so a repeated step moves once)::

        decomposing -> dispatching -> aggregating -> done
        dispatching -> halted   (failed jobs exceeded max_failures)
    """

    class Phase(models.TextChoices):
        DECOMPOSING = "decomposing"
        DISPATCHING = "dispatching"
        AGGREGATING = "aggregating"
        DONE = "done"
        HALTED = "halted"

    run = models.OneToOneField(
        "orchestration.Run", primary_key=True, on_delete=models.CASCADE, related_name="fanout"
    )
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.DECOMPOSING)
    total = models.PositiveIntegerField(default=0)
    failure_threshold = models.DecimalField(max_digits=5, decimal_places=4)
    # floor(threshold x total): the run halts when failed jobs exceed this.
    max_failures = models.PositiveIntegerField(default=0)
    per_run_concurrency = models.PositiveIntegerField()
    # Jobs of this run sent to the escalation reviewer so far (orchestration.fanout.review):
    # taken by one conditional UPDATE, never past FanoutSpec.max_reviews.
    reviews_used = models.PositiveIntegerField(default=0)
    # The shared prefixes are cacheable (the estimate measured them over the minimum): the
    # first job runs alone, so the other jobs read the cache its calls wrote instead of all
    # writing it at once (orchestration.fanout.coordinator.job_settled).
    warm_first = models.BooleanField(default=False)
    artifact = models.CharField(
        max_length=500, blank=True, help_text="Path of the per-run JSONL artifact."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"fan-out of {self.run_id} ({self.phase}, {self.total} jobs)"


class FanoutJob(models.Model):
    """One independent specialist job of a fan-out run, and what became of it.

    Statuses::

        queued -> running            (dispatched: counted against the per-run cap)
        running -> succeeded | failed (validator PASS, or a second FAIL / calls exhausted)
        running -> queued            (the run paused for review while the job was in flight)
        queued | running -> cancelled (the run halted)

    ``attempts`` is the specialist attempt in progress (1, then 2 after a FAIL). The
    ``*_attempt`` markers say how far that attempt got, so a job re-run after a crash goes
    on from its last committed phase: output recorded, output logged to the JSONL artifact,
    verdict recorded. Every write to a running job is conditional on ``lease_owner``, so a
    job is finished by exactly one task even if two ever ran it.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class Verdict(models.TextChoices):
        NONE = "", "-"
        PASS = "PASS"  # noqa: S105 - a verdict, not a password
        FAIL = "FAIL"
        # The validator could not judge it (an edge case): the escalation reviewer decides.
        EDGE = "EDGE", "edge case"

    class Review(models.TextChoices):
        """What the escalation reviewer (orchestration.fanout.review) made of the job."""

        NONE = "", "-"
        REVIEWING = "reviewing"  # a review slot is taken; the reviewer's answer is not in yet
        ACCEPT = "accept"  # settled: one of the outputs is accepted, with a reason
        FAIL = "fail"  # settled: the job failed, with a reason
        ESCALATE = "escalate"  # not settled: a human ticket decides

    run = models.ForeignKey(
        "orchestration.Run", on_delete=models.CASCADE, related_name="fanout_jobs"
    )
    job_id = models.CharField(max_length=100)
    seq = models.PositiveIntegerField(help_text="Position in the orchestrator's list.")
    # prompt, output and output_text are encrypted at rest when PAYLOAD_ENCRYPTION_KEYS is set.
    # reason and retry_reason (the verdict's short explanation) stay searchable in clear.
    prompt = EncryptedTextField()
    schema = models.JSONField(help_text="JSON Schema the specialist's output must satisfy.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    output = EncryptedJSONField(null=True, blank=True)
    output_text = EncryptedTextField(blank=True, help_text="The specialist's answer as it arrived.")
    output_attempt = models.PositiveSmallIntegerField(default=0)
    logged_attempt = models.PositiveSmallIntegerField(default=0)
    verdict = models.CharField(max_length=4, choices=Verdict.choices, blank=True, default="")
    verdict_attempt = models.PositiveSmallIntegerField(default=0)
    reason = models.TextField(
        blank=True, help_text="Why the last verdict was FAIL, or why the job failed."
    )
    retry_reason = models.TextField(blank=True, help_text="The FAIL reason the retry was given.")
    # The escalation reviewer's decision and why (review_attempt: the attempt whose output it
    # accepted, or proposes to a human when it escalates).
    review = models.CharField(max_length=10, choices=Review.choices, blank=True, default="")
    review_reason = models.TextField(blank=True)
    review_attempt = models.PositiveSmallIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=12, default=Decimal("0"))
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [
            # The orchestrator's job ids are unique per run (validated before insert, too).
            models.UniqueConstraint(fields=["run", "job_id"], name="fanoutjob_unique_job_id"),
            # The grid's order, and the dispatch order.
            models.UniqueConstraint(fields=["run", "seq"], name="fanoutjob_unique_seq"),
        ]
        indexes = [
            # Progress counts and "next queued jobs" of one run.
            models.Index(fields=["run", "status", "seq"], name="fanoutjob_run_status"),
            # The reaper: running jobs whose lease expired.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="running"),
                name="fanoutjob_running_lease",
            ),
        ]

    # What the audit chain digests when an event records this job (orchestration.audit).
    EVIDENCE_FIELDS = ("job_id", "prompt", "schema", "output", "output_text", "verdict", "reason")

    def __str__(self) -> str:
        return f"job {self.job_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL
