"""Evaluations through the JSON API: start one, read its report.

Starting calls ``evaluation.runner.start_evaluation`` (the evaluations page's function: the
real engine, the spend gate and budgets on the whole evaluation, ``EvaluationRefused`` with
its fields); the report is ``evaluation.report.report``, the numbers the page shows. Behind
the page's role checks (``may_run_evaluations`` to start, ``may_view_evaluations`` to read).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Router, Status

from api import representation as rep
from api import schemas as s
from api.http import ApiError, BearerToken
from evaluation import report, runner
from evaluation.models import Dataset, Evaluation
from orchestration.models import WorkflowVersion
from orchestration.workflows import registry
from orchestration.workflows.versions import snapshot
from reviews import access

router = Router()


def evaluation_out(request: HttpRequest, evaluation: Evaluation) -> dict[str, Any]:
    r = report.report(evaluation)
    return {
        "id": evaluation.pk,
        "workflow": evaluation.workflow_name,
        "version": str(evaluation.version.version),
        "dataset": evaluation.dataset_name,
        "requested_by": evaluation.requested_by.get_username(),
        "needs_approval": evaluation.needs_approval,
        "estimate_usd": rep.money(evaluation.estimate_usd),
        "cases": r.cases,
        "finished": r.finished,
        "complete": r.complete,
        "passed": r.passed,
        "accuracy": r.accuracy,
        "escalation_rate": r.escalation_rate,
        "escalations": dict(r.escalations),
        "hallucinations": r.hallucinations,
        "tool_error_rate": r.tool_error_rate,
        "cost_usd": rep.money(r.cost_usd),
        "latency_p50_ms": r.latency_p50_ms,
        "latency_p95_ms": r.latency_p95_ms,
        "created_at": rep.iso(evaluation.created_at),
        "links": {
            "self": request.build_absolute_uri(
                reverse("api:evaluation_detail", args=[evaluation.pk])
            ),
            "web": request.build_absolute_uri(reverse("evaluation_detail", args=[evaluation.pk])),
        },
    }


@router.post(
    "evaluations",
    operation_id="startEvaluation",
    url_name="evaluations",
    summary="Evaluate a version of a workflow over a dataset",
    auth=BearerToken(access.may_run_evaluations, "Only a manager may start evaluations."),
    response={201: s.EvaluationOut} | s.errors(*s.AUTH_ERRORS, *s.BODY_ERRORS, 403, 404),
)
def start(
    request: HttpRequest, response: HttpResponse, payload: s.StartEvaluation
) -> Status[dict[str, Any]]:
    dataset = Dataset.objects.filter(pk=payload.dataset).first()
    if dataset is None:
        raise Http404("No such dataset.")
    try:
        if payload.version is None:
            version = snapshot(registry.get(dataset.workflow_name))
        else:
            version = WorkflowVersion.objects.get(pk=payload.version, name=dataset.workflow_name)
        evaluation = runner.start_evaluation(version, dataset, request.user)
    except (WorkflowVersion.DoesNotExist, registry.UnknownWorkflow):
        raise ApiError(
            422,
            "invalid_input",
            "Choose a version of this dataset's workflow.",
            fields={"version": "not a version of the dataset's workflow"},
        ) from None
    except runner.EvaluationRefused as exc:
        raise ApiError(
            422, "invalid_input", f"The evaluation was not started: {exc}", fields=exc.errors
        ) from None
    response["Location"] = reverse("api:evaluation_detail", args=[evaluation.pk])
    return Status(201, evaluation_out(request, evaluation))


@router.get(
    "evaluations/{int:evaluation_id}",
    operation_id="getEvaluation",
    url_name="evaluation_detail",
    summary="An evaluation's report",
    auth=BearerToken(access.may_view_evaluations, "Your account may not view evaluations."),
    response={200: s.EvaluationOut} | s.errors(*s.AUTH_ERRORS, 403, 404),
)
def detail(request: HttpRequest, evaluation_id: int) -> dict[str, Any]:
    evaluation = (
        Evaluation.objects.select_related("version", "requested_by")
        .filter(pk=evaluation_id)
        .first()
    )
    if evaluation is None:
        raise Http404("No such evaluation.")
    return evaluation_out(request, evaluation)
