"""The evaluation pages: datasets and their cases (edit, import, export), starting an
evaluation, its report (polled while runs go on) and two evaluations side by side.

Managers act (``reviews.access.may_run_evaluations``); managers and auditors read
(``may_view_evaluations``); everyone else gets 403. Each action calls one function of
evaluation.datasets or evaluation.runner, as ``manage.py evaluate`` (and later the API) does.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from evaluation import datasets, report, runner
from evaluation.models import Case, Dataset, Evaluation, Expected
from evaluation.versions import versions_of
from orchestration.models import WorkflowVersion
from orchestration.untrusted import Rejected, json_text, parse_json, printable, whole_number
from orchestration.workflows import registry
from orchestration.workflows.versions import snapshot
from reviews import access
from reviews.models import EscalationTicket

MAX_IMPORT_BYTES = 2_000_000
RECENT = 30

view_required = access.required(access.may_view_evaluations)
run_required = access.required(access.may_run_evaluations)


@require_GET
@view_required
def index(request: HttpRequest) -> HttpResponse:
    return _index(request)


def _index(
    request: HttpRequest,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    rows = Dataset.objects.annotate(n=Count("cases")).order_by("workflow_name", "name")
    by_workflow: dict[str, list[Dataset]] = {}
    for d in rows:
        by_workflow.setdefault(d.workflow_name, []).append(d)
    workflows = [
        {
            "workflow": w,
            "datasets": by_workflow.get(w.name, []),
            "thresholds": w.evaluation_thresholds,
        }
        for w in registry.all_workflows()
    ]
    return render(
        request,
        "evaluation/index.html",
        {
            "workflows": workflows,
            "evaluations": Evaluation.objects.select_related("version", "requested_by")[:RECENT],
            "can_run": access.may_run_evaluations(request.user),
            "form": form or {},
            "errors": errors or {},
        },
        status=status,
    )


@require_POST
@run_required
def dataset_create(request: HttpRequest) -> HttpResponse:
    form = {k: request.POST.get(k, "") for k in ("workflow", "name", "description")}
    try:
        dataset = datasets.create_dataset(
            form["workflow"], form["name"], form["description"], request.user
        )
    except datasets.CaseInvalid as exc:
        return _index(request, form=form, errors=exc.errors, status=422)
    messages.success(request, f"Dataset {dataset} created: add cases, or import a JSONL file.")
    return redirect("evaluation_dataset", dataset.pk)


def _dataset(dataset_id: int) -> Dataset:
    return get_object_or_404(Dataset, pk=dataset_id)


@require_GET
@view_required
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    return _dataset_page(request, _dataset(dataset_id))


def _dataset_page(
    request: HttpRequest,
    dataset: Dataset,
    *,
    jsonl: str = "",
    import_errors: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    try:
        workflow = registry.get(dataset.workflow_name)
    except registry.UnknownWorkflow:
        workflow = None
    current = snapshot(workflow) if workflow else None
    return render(
        request,
        "evaluation/dataset.html",
        {
            "dataset": dataset,
            "workflow": workflow,
            "cases": [
                (c, json_text(c.input), json_text(c.expected_output) if c.expected_output else "")
                for c in dataset.cases.order_by("name")
            ],
            "evaluations": dataset.evaluations.select_related("version", "requested_by")[:RECENT],
            "versions": versions_of(dataset.workflow_name)[:50],
            "current": current,
            "side_effects": [t.name for t in workflow.tools if t.side_effect] if workflow else [],
            "can_run": access.may_run_evaluations(request.user),
            "jsonl": jsonl,
            "import_errors": import_errors or [],
            "backend": "simulator" if settings.LLM_BACKEND == "simulated" else "Anthropic API",
        },
        status=status,
    )


def _case_data(post: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The case form's fields in a case's JSON shape, and what could not be parsed."""
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for name, optional in (("input", False), ("expected_output", True)):
        text = post.get(name, "").strip()
        if optional and not text:
            parsed[name] = {}
            continue
        try:
            parsed[name] = parse_json(text, field=name)
        except Rejected as exc:
            errors.update(exc.fields)
    expected: dict[str, Any] = {"status": post.get("expected_status", "")}
    if post.get("expected_reason"):
        expected["reason"] = post.get("expected_reason")
    if parsed.get("expected_output"):
        expected["output"] = parsed["expected_output"]
    return {
        "name": post.get("name", ""),
        "input": parsed.get("input"),
        "expected": expected,
    }, errors


@require_http_methods(["GET", "POST"])
@run_required
def case_edit(request: HttpRequest, dataset_id: int, case_id: int | None = None) -> HttpResponse:
    dataset = _dataset(dataset_id)
    case = get_object_or_404(Case, pk=case_id, dataset=dataset) if case_id else None
    if request.method == "GET":
        form = {
            "name": "",
            "input": "{}",
            "expected_status": Expected.SUCCEEDED,
            "expected_reason": "",
            "expected_output": "",
        }
        if case is not None:
            form = {
                "name": case.name,
                "input": json_text(case.input, indent=2),
                "expected_status": case.expected_status,
                "expected_reason": case.expected_reason,
                "expected_output": json_text(case.expected_output, indent=2)
                if case.expected_output
                else "",
            }
        elif (workflow := _workflow_or_none(dataset)) and workflow.input_example:
            form["input"] = json_text(workflow.input_example, indent=2)
        return _case_form(request, dataset, case, form, {})
    data, errors = _case_data(request.POST)
    if not errors:
        try:
            saved = datasets.save_case(dataset, data, request.user, case=case)
        except datasets.CaseInvalid as exc:
            errors = exc.errors
        else:
            messages.success(request, f"Case {printable(saved.name)} saved.")
            return redirect(f"{reverse('evaluation_dataset', args=[dataset.pk])}#case-{saved.pk}")
    form = {
        k: request.POST.get(k, "")
        for k in ("name", "input", "expected_status", "expected_reason", "expected_output")
    }
    return _case_form(request, dataset, case, form, errors, status=422)


def _workflow_or_none(dataset: Dataset) -> Any:
    try:
        return registry.get(dataset.workflow_name)
    except registry.UnknownWorkflow:
        return None


def _case_form(
    request: HttpRequest,
    dataset: Dataset,
    case: Case | None,
    form: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> HttpResponse:
    workflow = _workflow_or_none(dataset)
    return render(
        request,
        "evaluation/case_form.html",
        {
            "dataset": dataset,
            "case": case,
            "form": form,
            "errors": errors,
            "statuses": Expected.choices,
            "reasons": EscalationTicket.Reason.choices,
            "input_schema": json_text(workflow.input_schema, indent=2) if workflow else "",
        },
        status=status,
    )


@require_POST
@run_required
def case_delete(request: HttpRequest, dataset_id: int, case_id: int) -> HttpResponse:
    dataset = _dataset(dataset_id)
    case = get_object_or_404(Case, pk=case_id, dataset=dataset)
    datasets.delete_case(case, request.user)
    messages.success(request, f"Case {printable(case.name)} deleted.")
    return redirect("evaluation_dataset", dataset.pk)


@require_POST
@run_required
def dataset_import(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _dataset(dataset_id)
    text = request.POST.get("jsonl", "")
    upload = request.FILES.get("file")
    if upload is not None:
        if upload.size > MAX_IMPORT_BYTES:
            return _dataset_page(
                request,
                dataset,
                jsonl=text,
                status=422,
                import_errors=[f"the file is {upload.size:,} bytes; at most {MAX_IMPORT_BYTES:,}"],
            )
        raw = upload.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _dataset_page(
                request,
                dataset,
                jsonl=text,
                status=422,
                import_errors=[f"the file is not UTF-8 text (byte {exc.start})"],
            )
    result = datasets.import_jsonl(dataset, text, request.user)
    if result.errors:
        return _dataset_page(request, dataset, jsonl=text, import_errors=result.errors, status=422)
    messages.success(
        request, f"Imported: {len(result.created)} case(s) added, {len(result.updated)} replaced."
    )
    return redirect("evaluation_dataset", dataset.pk)


@require_GET
@view_required
def dataset_export(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _dataset(dataset_id)
    response = HttpResponse(
        datasets.export_jsonl(dataset), content_type="application/jsonl; charset=utf-8"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="{dataset.workflow_name}-{dataset.name}.jsonl"'
    )
    return response


@require_POST
@run_required
def dataset_delete(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _dataset(dataset_id)
    datasets.delete_dataset(dataset, request.user)
    messages.success(
        request, f"Dataset {dataset} deleted; its evaluations keep their copies of the cases."
    )
    return redirect("evaluation_index")


@require_POST
@run_required
def evaluation_start(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _dataset(dataset_id)
    choice = request.POST.get("version", "current")
    try:
        if choice == "current":
            workflow = registry.get(dataset.workflow_name)
            version = snapshot(workflow)
        else:
            version = WorkflowVersion.objects.get(pk=int(choice), name=dataset.workflow_name)
        evaluation = runner.start_evaluation(version, dataset, request.user)
    except (ValueError, WorkflowVersion.DoesNotExist, registry.UnknownWorkflow):
        messages.error(request, "Choose a version of this workflow to evaluate.")
        return redirect("evaluation_dataset", dataset.pk)
    except runner.EvaluationRefused as exc:
        messages.error(
            request,
            "The evaluation was not started: "
            + "; ".join(f"{k}: {v}" for k, v in exc.errors.items()),
        )
        return redirect("evaluation_dataset", dataset.pk)
    if evaluation.needs_approval:
        messages.warning(
            request,
            f"Estimated at up to ${evaluation.estimate_usd:.2f}, over the "
            f"${evaluation.threshold_usd:.2f} approval threshold: its runs wait for another "
            "manager's approval.",
        )
    return redirect("evaluation_detail", evaluation.pk)


def _evaluation(evaluation_id: int) -> Evaluation:
    return get_object_or_404(
        Evaluation.objects.select_related("version", "requested_by", "dataset"), pk=evaluation_id
    )


@require_GET
@view_required
def evaluation_detail(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = _evaluation(evaluation_id)
    r = report.report(evaluation)
    context = {
        "evaluation": evaluation,
        "r": r,
        "others": Evaluation.objects.filter(
            dataset_name=evaluation.dataset_name,
            workflow_name=evaluation.workflow_name,
        )
        .exclude(pk=evaluation.pk)
        .select_related("version")[:RECENT],
    }
    if request.htmx:
        response = TemplateResponse(request, "evaluation/evaluation.html#report", context)
        if r.complete:
            response.render()
            return HttpResponseStopPolling(response.content)
        return response
    return render(request, "evaluation/evaluation.html", context)


@require_GET
@view_required
def compare(request: HttpRequest) -> HttpResponse:
    try:
        a = _evaluation(whole_number(request.GET.get("a", ""), "a"))
        b = _evaluation(whole_number(request.GET.get("b", ""), "b"))
    except Rejected:
        raise Http404("Choose two evaluations to compare.") from None
    if (a.workflow_name, a.dataset_name) != (b.workflow_name, b.dataset_name):
        messages.error(
            request,
            f"Evaluations {a.pk} and {b.pk} ran different datasets "
            f"({a.workflow_name}/{a.dataset_name}, {b.workflow_name}/{b.dataset_name}): "
            "compare two evaluations of one dataset.",
        )
        return redirect("evaluation_detail", a.pk)
    return render(request, "evaluation/compare.html", {"c": report.compare(a, b)})
