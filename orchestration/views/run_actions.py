"""Pages for the actions on a whole run: re-run, fork, cancel (each a confirm page and its
POST) and the comparison of two runs. Every check is in orchestration.run_actions; these
views only turn its answers into pages."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.db.models import Count, Sum
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from orchestration import forks, run_actions
from orchestration.launch import RunRefused, preview
from orchestration.models import ModelCall, ToolCall
from orchestration.run_actions import ActionRefused
from orchestration.workflows import registry
from reviews import access

# The status a refusal is answered with (the JSON API will use the same codes).
STATUS = {
    ActionRefused.NOT_FOUND: 404,
    ActionRefused.FORBIDDEN: 403,
    ActionRefused.CONFLICT: 409,
    ActionRefused.INVALID_INPUT: 422,
    RunRefused.BUDGET_EXCEEDED: 422,
    RunRefused.RATE_LIMITED: 429,
    RunRefused.USER_PAUSED: 403,
}


def _run(request: Any, run_id: Any) -> Any:
    try:
        return run_actions.visible_run(request.user, run_id)
    except ActionRefused:
        raise Http404("No such run.") from None


def _refused(
    request: Any, template: str, context: dict[str, Any], refused: ActionRefused
) -> HttpResponse:
    if refused.code == ActionRefused.NOT_FOUND:
        raise Http404(str(refused))
    context.update(error=str(refused), fields=refused.fields)
    return render(request, template, context, status=STATUS.get(refused.code, 409))


def _key(request: Any) -> str | None:
    """The form's one-time key: a second submit of the same form returns the first run. The
    page writes it (a UUID); a tampered one that cannot be stored (a NUL, a control
    character: a Postgres DataError) is no key."""
    key = (request.POST.get("idempotency_key") or "").strip()
    return f"page-{key}"[:200] if key and key.isprintable() else None


@access.required(access.may_rerun_runs)
@require_http_methods(["GET", "POST"])
def rerun(request, run_id):
    run = _run(request, run_id)
    context: dict[str, Any] = {"run": run, "key": uuid.uuid4().hex}
    if request.method == "POST":
        try:
            new = run_actions.rerun(request.user, run.pk, idempotency_key=_key(request))
        except ActionRefused as refused:
            return _refused(request, "orchestration/run_actions/rerun.html", context, refused)
        messages.info(request, f"Re-run of {str(run.pk)[:8]} started.")
        return redirect("run_detail", run_id=new.pk)
    if why := access.rerun_refusal(request.user, run):
        context["error"] = why
        return render(request, "orchestration/run_actions/rerun.html", context, status=403)
    try:
        context["preview"] = preview(
            run.workflow_name, run.input, request.user, batch=bool(run.options.get("batch"))
        )
    except RunRefused as refused:
        context["error"] = f"This run's input is no longer accepted: {refused}"
    return render(request, "orchestration/run_actions/rerun.html", context)


def _fork_context(request: Any, run: Any) -> dict[str, Any]:
    workflow_versions: list[Any] = []
    steps = forks.steps_of(run)
    turn, tool_use_id = forks.failing_point(run)
    try:
        workflow = registry.get(run.workflow_name)
        if workflow.fanout is None:
            workflow_versions = forks.servable_versions(workflow)
    except registry.UnknownWorkflow:
        pass
    data = request.POST if request.method == "POST" else {}
    correctable = [
        {
            "turn": s.turn,
            "id": u.get("id"),
            "name": u.get("name"),
            "attempt": s.settled.get(u.get("id")),
        }
        for s in steps
        for u in s.tool_uses
    ]
    return {
        "run": run,
        "steps": steps,
        "step_rows": [
            {
                "turn": s.turn,
                "call": s.call,
                "answers": [c for c in correctable if c["turn"] == s.turn],
            }
            for s in steps
        ],
        "versions": workflow_versions,
        "correctable": correctable,
        "may_correct": access.may_resolve(request.user),
        "chosen": {
            "turn": str(
                data.get("turn", turn if turn is not None else (steps[-1].turn if steps else ""))
            ),
            "tool_use_id": data.get(
                "tool_use_id", tool_use_id if access.may_resolve(request.user) else ""
            ),
            "version": str(data.get("version", run.workflow_version_id)),
            "corrected": data.get("corrected", ""),
        },
        "failing_turn": turn,
        "key": data.get("idempotency_key") or uuid.uuid4().hex,
    }


@access.required(access.may_fork_runs)
@require_http_methods(["GET", "POST"])
def fork(request, run_id):
    run = _run(request, run_id)
    context = _fork_context(request, run)
    template = "orchestration/run_actions/fork.html"
    if request.method == "POST":
        try:
            new = forks.fork(
                request.user,
                run.pk,
                turn=request.POST.get("turn"),
                tool_use_id=request.POST.get("tool_use_id", ""),
                corrected=request.POST.get("corrected", ""),
                version_id=request.POST.get("version") or None,
                idempotency_key=_key(request),
            )
        except ActionRefused as refused:
            return _refused(request, template, context, refused)
        messages.info(request, f"Fork of {str(run.pk)[:8]} from turn {new.fork_turn} started.")
        return redirect("run_detail", run_id=new.pk)
    return render(request, template, context)


@access.required(access.may_cancel_runs)
@require_http_methods(["GET", "POST"])
def cancel(request, run_id):
    run = _run(request, run_id)
    context: dict[str, Any] = {"run": run, "reason": request.POST.get("reason", "")}
    template = "orchestration/run_actions/cancel.html"
    if request.method == "POST":
        try:
            done = run_actions.cancel(request.user, run.pk, reason=request.POST.get("reason", ""))
        except ActionRefused as refused:
            return _refused(request, template, context, refused)
        messages.info(
            request,
            (
                f"Run cancelled. {done.released_calls} call(s) in flight abandoned, "
                f"{done.closed_tickets} ticket(s) and {done.closed_approvals} approval request(s) closed."
            ),
        )
        return redirect("run_detail", run_id=run.pk)
    if refused := run_actions.cancel_refusal(request.user, run):
        return _refused(request, template, context, refused)
    return render(request, template, context)


@require_GET
def compare(request):
    a, b = (request.GET.get("a") or "").strip(), (request.GET.get("b") or "").strip()
    context: dict[str, Any] = {"a": a, "b": b}
    template = "orchestration/run_actions/compare.html"
    if a and b:
        try:
            context["cmp"] = run_actions.compare(request.user, a, b)
        except ActionRefused as refused:
            return _refused(request, template, context, refused)
    elif a or b:
        context["error"] = "Choose two runs to compare: give both ids."
    return render(request, template, context)


def page_context(user: Any, run: Any) -> dict[str, Any]:
    """What the run page shows of these actions: which buttons, where the run came from (its
    copied history, for a fork) and what was made from it."""
    try:
        fanout = registry.get(run.workflow_name).fanout is not None
    except registry.UnknownWorkflow:
        fanout = True
    visible = access.visible_runs(user)
    derived = list(visible.filter(origin=run).order_by("-created_at")[:10])
    origin = visible.filter(pk=run.origin_id).first() if run.origin_id else None
    copied = None
    if run.origin_kind == run.Origin.FORK:
        calls = ModelCall.objects.filter(run=run, copied=True).aggregate(
            n=Count("pk"), usd=Sum("copied_from__cost_usd")
        )
        corrected = (
            ToolCall.objects.filter(
                run=run, copied=False, status=ToolCall.Status.CORRECTED, model_call__copied=True
            )
            .values_list("name", flat=True)
            .first()
        )
        copied = {
            "calls": calls["n"],
            "usd": calls["usd"] or 0,
            "corrected": corrected,
            "tools": ToolCall.objects.filter(run=run, copied=True).count(),
        }
    compare_with = origin or (derived[0] if derived else None)
    if compare_with is not None:
        compare_with.origin_label = (
            "the original"
            if compare_with == origin
            else f"its latest {compare_with.get_origin_kind_display()}"
        )
    return {
        "actions": {
            "rerun": access.rerun_refusal(user, run) is None,
            "fork": not fanout
            and run.status in forks.FORKABLE
            and access.fork_refusal(user, run, corrects=False) is None,
            "cancel": run_actions.cancel_refusal(user, run) is None,
            "origin_visible": origin is not None,
            "derived": derived,
            "copied": copied,
            "compare_with": compare_with,
        }
    }
