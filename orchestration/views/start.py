"""Starting a run from the browser: pick a workflow, fill in its input, see the estimate."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404
from django.shortcuts import redirect, render

from orchestration.forms import WorkflowInputForm
from orchestration.launch import RunRefused, start_run
from orchestration.models import Run
from orchestration.workflows import registry


@permission_required("orchestration.start_run", raise_exception=True)
def choose_workflow(request):
    return render(request, "orchestration/start_choose.html", {"workflows": registry.all_workflows()})


@permission_required("orchestration.start_run", raise_exception=True)
def start_form(request, workflow_name):
    try:
        workflow = registry.get(workflow_name)
    except registry.UnknownWorkflow:
        raise Http404("No such workflow.") from None
    form = WorkflowInputForm(workflow.input_schema, request.POST or None, initial_input=workflow.input_example)
    if request.method == "POST" and form.is_valid():
        try:
            run = start_run(workflow.name, form.as_input(), request.user, source="web")
        except RunRefused as refused:
            for field, message in refused.errors.items():
                form.add_error(field if field in form.fields else None, message)
        else:
            if run.status == Run.Status.AWAITING_APPROVAL:
                messages.info(request, f"Estimated at up to ${run.estimate_usd:.2f}: waiting for a manager's approval.")
            return redirect("run_detail", run_id=run.pk)
    return render(request, "orchestration/start_form.html", {"workflow": workflow, "form": form})
