"""Starting a run from the browser: pick a workflow, fill in its input, see the estimate."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from costs.lineup import workflow_verdict
from orchestration import untrusted
from orchestration.forms import WorkflowInputForm
from orchestration.launch import RunRefused, preview, start_defaults, start_run
from orchestration.models import Run
from orchestration.workflows import registry
from reviews import access


@access.required(access.may_start)
@require_GET
def choose_workflow(request):
    return render(
        request, "orchestration/start_choose.html", {"workflows": registry.all_workflows()}
    )


@access.required(access.may_start)
@require_http_methods(["GET", "POST"])
def start_form(request, workflow_name):
    try:
        workflow = registry.get(workflow_name)
    except registry.UnknownWorkflow:
        raise Http404("No such workflow.") from None
    # The form opens on the demo scenario picked, else the workflow's defaults (e.g.
    # yesterday), else its example input.
    initial = {**(workflow.input_example or {}), **start_defaults(workflow)}
    if scenario := request.GET.get("scenario", ""):
        try:
            picked = untrusted.whole_number(scenario, "scenario", what="a scenario number")
            why = "" if picked < len(workflow.scenarios) else f"there is no scenario {picked}"
        except untrusted.Rejected as exc:
            why = exc.fields["scenario"]
        if why:
            messages.error(request, f"Scenario: {why}; the form shows the defaults.")
        else:
            initial = dict(workflow.scenarios[picked].input)
    form = WorkflowInputForm(workflow.input_schema, request.POST or None, initial_input=initial)
    batch = request.POST.get("mode") == "batch"
    if request.method == "POST" and form.is_valid():
        try:
            run = start_run(
                workflow.name,
                form.as_input(),
                request.user,
                source="web",
                options={"batch": True} if batch else None,
            )
        except RunRefused as refused:
            _add_errors(form, refused)
        else:
            if run.status == Run.Status.AWAITING_APPROVAL:
                messages.info(
                    request,
                    f"Estimated at up to ${run.estimate_usd:.2f}: waiting for a manager's approval.",
                )
            for warning in (run.estimate or {}).get("budget_warnings", []):
                messages.warning(request, warning)
            for warning in (run.estimate or {}).get("model_warnings", []):
                messages.warning(request, warning)
            return redirect("run_detail", run_id=run.pk)
    return render(
        request,
        "orchestration/start_form.html",
        {
            "workflow": workflow,
            "form": form,
            "batch": batch,
            "lineup": workflow_verdict(workflow),
            "models_in_use": workflow.models_in_use(),
        },
    )


def _add_errors(form: WorkflowInputForm, refused: RunRefused) -> None:
    for field, message in refused.errors.items():
        form.add_error(field if field in form.fields else None, message)


@access.required(access.may_start)
@require_POST
def estimate(request, workflow_name):
    """The estimate and the approval/budget verdict for the form as filled in (HTMX partial)."""
    try:
        workflow = registry.get(workflow_name)
    except registry.UnknownWorkflow:
        raise Http404("No such workflow.") from None
    form = WorkflowInputForm(workflow.input_schema, request.POST)
    result, error = None, ""
    if form.is_valid():
        try:
            result = preview(
                workflow.name,
                form.as_input(),
                request.user,
                batch=request.POST.get("mode") == "batch",
            )
        except RunRefused as refused:
            error = "; ".join(refused.errors.values())
    else:
        error = "Fix the input first: " + "; ".join(
            f"{name}: {' '.join(errs)}" for name, errs in form.errors.items()
        )
    return render(
        request,
        "orchestration/start_form.html#estimate",
        {"preview": result, "estimate_error": error},
    )
