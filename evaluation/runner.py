"""Starting an evaluation: the one service function the page and ``manage.py evaluate`` call
(and the JSON API will).

Every case becomes a real run through ``orchestration.launch.start_run`` (the start path of
every run), on the version under test, marked as an evaluation run. The approval threshold is
compared with the evaluation's *whole* estimate (the sum of its cases' upper estimates): over
it, every case's run waits for a manager's approval, as any run over it does (the approval
queue's bulk approve takes them at once; four-eyes applies). Budgets apply twice: the whole
estimate against each hard budget before anything starts, then each run as it starts. A case
whose run is refused at start (the daily start limit, a budget) is recorded as not started,
with the reason, and counts as failed in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from costs import accounting, budgets
from costs.estimates import estimate_run
from evaluation import datasets
from evaluation.models import Dataset, Evaluation, EvaluationCase
from orchestration import audit
from orchestration.launch import RunRefused, measure_prompt, start_run, validate_input
from orchestration.models import WorkflowVersion
from orchestration.workflows import registry
from reviews import access


class EvaluationRefused(Exception):
    """Nothing was started; ``errors`` maps a field (or a case's name) to what was wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Plan:
    """What starting the evaluation would do: its whole estimate and the gate's verdict."""

    cases: int
    estimate_usd: Decimal
    threshold_usd: Decimal
    needs_approval: bool


def plan(version: WorkflowVersion, dataset: Dataset) -> Plan:
    """Check the cases against the workflow and estimate them (count_tokens calls: no
    transaction is open here). ``EvaluationRefused`` names every case that cannot run."""
    if version.name != dataset.workflow_name:
        raise EvaluationRefused(
            {"version": f"{version} is not a version of {dataset.workflow_name}."}
        )
    try:
        workflow = registry.get(dataset.workflow_name)
    except registry.UnknownWorkflow as exc:
        raise EvaluationRefused({"workflow": str(exc)}) from None
    cases = list(dataset.cases.order_by("name"))
    if not cases:
        raise EvaluationRefused({"dataset": f"{dataset} has no cases: add or import some first."})
    errors: dict[str, str] = {}
    total = Decimal(0)
    for case in cases:
        try:
            value = validate_input(workflow.name, case.input)
        except RunRefused as exc:
            errors[f"case {case.name}"] = str(exc)
            continue
        total += estimate_run(workflow, value, measure_prompt(workflow, version, value)).upper_usd
    if errors:
        raise EvaluationRefused(errors)
    threshold = accounting.approval_threshold(workflow)
    return Plan(len(cases), total, threshold, total > threshold)


def start_evaluation(version: WorkflowVersion, dataset: Dataset, user: Any) -> Evaluation:
    """Run ``version`` over ``dataset`` as ``user`` (see the module docstring)."""
    if not access.may_run_evaluations(user):
        raise EvaluationRefused({"user": "Only managers may run evaluations."})
    p = plan(version, dataset)
    try:
        budgets.check_start(dataset.workflow_name, user, p.estimate_usd, lock=False)
    except budgets.StartRefused as exc:
        raise EvaluationRefused(
            {"budget" if exc.code == RunRefused.BUDGET_EXCEEDED else "rate_limit": str(exc)}
        ) from None
    with transaction.atomic():
        cases = list(dataset.cases.order_by("name"))
        evaluation = Evaluation.objects.create(
            workflow_name=dataset.workflow_name,
            version=version,
            dataset=dataset,
            dataset_name=dataset.name,
            dataset_digest=datasets.digest(cases),
            requested_by=user,
            backend=settings.LLM_BACKEND,
            estimate_usd=p.estimate_usd,
            threshold_usd=p.threshold_usd,
            needs_approval=p.needs_approval,
        )
        rows = EvaluationCase.objects.bulk_create(
            [
                EvaluationCase(
                    evaluation=evaluation,
                    case=c,
                    name=c.name,
                    input=c.input,
                    expected_status=c.expected_status,
                    expected_reason=c.expected_reason,
                    expected_output=c.expected_output,
                )
                for c in cases
            ]
        )
        audit.record(
            "evaluation.started",
            actor=user,
            payload={
                "evaluation": evaluation.pk,
                "workflow": evaluation.workflow_name,
                "version": version.content_hash,
                "dataset": dataset.name,
                "dataset_digest": evaluation.dataset_digest,
                "cases": len(rows),
                "estimate_usd": str(p.estimate_usd),
                "threshold_usd": str(p.threshold_usd),
                "needs_approval": p.needs_approval,
                "backend": evaluation.backend,
            },
        )
    # Each run in its own transaction (start_run's): one refused case stops no other.
    for row in rows:
        try:
            run = start_run(
                evaluation.workflow_name,
                row.input,
                user,
                version=version,
                evaluation=evaluation.pk,
                gate_usd=p.estimate_usd,
                source="evaluation",
                idempotency_key=f"evaluation-{evaluation.pk}-{row.pk}",
            )
        except RunRefused as exc:
            row.refused = str(exc)
            row.save(update_fields=["refused"])
        else:
            row.run = run
            row.save(update_fields=["run"])
    return evaluation
