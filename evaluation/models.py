"""Datasets of cases with expected outcomes, and evaluations that run a workflow version over
one through the real engine.

A case's expectation is a final outcome (``succeeded``, ``escalated`` with an optional reason,
or ``failed``) and, optionally, fields the result must hold. An evaluation copies its cases
(so editing or deleting the dataset later leaves the report as it ran) and links one real run
to each; its report is computed from those runs (evaluation.report), never stored.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    """Cases for one workflow, edited on the evaluation pages and imported/exported as JSONL."""

    workflow_name = models.CharField(max_length=100)
    name = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow_name", "name"]
        constraints = [
            # A workflow's thresholds name their dataset (EvaluationThresholds.dataset).
            models.UniqueConstraint(
                fields=["workflow_name", "name"], name="dataset_unique_name_per_workflow"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_name}/{self.name}"


class Expected(models.TextChoices):
    """The final outcome a case expects (an evaluation run that escalates ends there)."""

    SUCCEEDED = "succeeded"
    ESCALATED = "escalated"
    FAILED = "failed"


class Case(models.Model):
    """One input and the outcome it should have."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="cases")
    name = models.CharField(max_length=100)
    input = models.JSONField()
    expected_status = models.CharField(max_length=20, choices=Expected.choices)
    # For an expected escalation: the reason it must have ("" = any reason).
    expected_reason = models.CharField(max_length=30, blank=True)
    # Fields the result must hold, by path ("decision", "totals.net"): {} = any result.
    expected_output = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["dataset", "name"]
        constraints = [
            # An import replaces the case of the same name (evaluation.datasets.import_jsonl).
            models.UniqueConstraint(
                fields=["dataset", "name"], name="case_unique_name_per_dataset"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Evaluation(models.Model):
    """A version run over a dataset: one real run per case, marked ``Run.is_evaluation``."""

    workflow_name = models.CharField(max_length=100)
    version = models.ForeignKey(
        "orchestration.WorkflowVersion", on_delete=models.PROTECT, related_name="+"
    )
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="evaluations"
    )
    dataset_name = models.CharField(max_length=100)
    # evaluation.datasets.digest() of the cases it ran: a later edit of the dataset makes the
    # evaluation stale for the approval gate (evaluation.gate).
    dataset_digest = models.CharField(max_length=64)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    backend = models.CharField(max_length=20, help_text="settings.LLM_BACKEND when it started.")
    estimate_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    threshold_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    needs_approval = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The gate: the latest evaluation of a version on a dataset.
            models.Index(
                fields=["version", "dataset_name", "-created_at"], name="evaluation_version_latest"
            ),
            # The evaluations page: a workflow's evaluations, newest first.
            models.Index(
                fields=["workflow_name", "-created_at"], name="evaluation_workflow_recent"
            ),
        ]
        permissions = [("run_evaluation", "Can edit datasets and run evaluations")]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} of {self.workflow_name} v{self.version.version} on {self.dataset_name}"


class EvaluationCase(models.Model):
    """A case as the evaluation ran it (copied), and its run (None when the start was refused)."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="cases")
    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=100)
    input = models.JSONField()
    expected_status = models.CharField(max_length=20, choices=Expected.choices)
    expected_reason = models.CharField(max_length=30, blank=True)
    expected_output = models.JSONField(default=dict, blank=True)
    run = models.OneToOneField(
        "orchestration.Run",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="evaluation_case",
    )
    refused = models.TextField(blank=True, help_text="Why the case's run was not started.")

    class Meta:
        ordering = ["evaluation", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["evaluation", "name"], name="evaluationcase_unique_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name
