"""Forking a run from a model turn: the fork action of orchestration.run_actions.

A new run that starts at a chosen model turn of a finished or paused run, on the original's
version or another that may serve runs (``servable_versions``), optionally with a reviewer's
corrected output for one tool call of that turn. The turns before it (and, with a correction,
that turn itself and its other settled tool calls) are copied into the fork as history:
``copied=True``, ``copied_from`` the original row, no cost, tokens or price of their own (the
original paid for them, so every cost total and budget leaves them out), payloads re-sealed by
the encrypted fields (orchestration.privacy), never executed again. The fork's first audit
events record its origin: ``run.forked`` (the origin, the turn, the origin's chain head at that
moment, the versions, the correction, and the copied rows as evidence); the original's chain
records ``run.derived``. The engine then picks the fork up like any run: the copied tool calls
answer the copied turns, and it goes on from the chosen turn.

``plan_fork`` checks everything and returns the plan; ``fork`` starts it. Refusals are
``run_actions.ActionRefused``, as for the other actions on a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils import timezone

from orchestration import audit, untrusted
from orchestration.launch import RunRefused, start_run
from orchestration.models import ModelCall, Run, ToolCall, WorkflowVersion
from orchestration.privacy import PayloadKeyError, require_readable
from orchestration.run_actions import ActionRefused, link_origin, origin_head, visible_run
from orchestration.workflows import registry
from orchestration.workflows.declaration import Record, RecordedCall, ToolContext, Workflow
from orchestration.workflows.versions import declaration_for
from reviews import access, resolutions
from reviews.models import EscalationTicket

S = Run.Status
TC = ToolCall.Status
ZERO = Decimal("0")
# A fork starts from a run that stopped: finished, or paused for a reviewer.
FORKABLE = (*Run.FINAL, S.AWAITING_REVIEW)


def servable_versions(workflow: Workflow) -> list[WorkflowVersion]:
    """The versions of ``workflow`` a fork may run on, newest first: the approved ones whose
    code is deployed (the engine runs the deployed declaration whose snapshot is the version,
    ``versions.declaration_for``; a pending or rejected version serves no run, a fork
    included)."""
    approved = WorkflowVersion.objects.filter(
        name=workflow.name, status=WorkflowVersion.Status.APPROVED
    ).order_by("-created_at")
    return [v for v in approved if declaration_for(v) is not None]


@dataclass(frozen=True)
class Step:
    """One model turn of a run as a fork sees it: where a fork may start, and its tool calls."""

    turn: int
    call: ModelCall
    tool_uses: list[dict[str, Any]]
    settled: dict[str, ToolCall]  # tool_use_id -> the attempt that answered it (if any)
    forkable: bool  # a fork may start at this turn without a correction


def steps_of(run: Run) -> list[Step]:
    """The run's answered model turns (its own conversation, not fan-out jobs), in order."""
    calls: dict[int, ModelCall] = {}
    for mc in run.model_calls.filter(job__isnull=True, status=ModelCall.Status.OK).order_by(
        "turn", "attempt"
    ):
        calls[mc.turn] = mc
    settled: dict[int, dict[str, ToolCall]] = {}
    for tc in (
        ToolCall.objects.filter(run=run, settled=True)
        .select_related("model_call")
        .order_by("created_at")
    ):
        settled.setdefault(tc.model_call.turn, {})[tc.tool_use_id] = tc
    steps = []
    for turn in sorted(calls):
        mc = calls[turn]
        previous = calls.get(turn - 1)
        steps.append(
            Step(
                turn=turn,
                call=mc,
                tool_uses=mc.tool_uses,
                settled=settled.get(turn, {}),
                forkable=turn == 0 or (previous is not None and previous.stop_reason == "tool_use"),
            )
        )
    return steps


def failing_point(run: Run) -> tuple[int | None, str]:
    """The turn and tool_use a fork of a paused run starts from by default: its open ticket's
    failing tool call (or failing model turn)."""
    ticket = (
        run.tickets.exclude(status=EscalationTicket.Status.RESOLVED)
        .select_related("failing_tool_call__model_call", "failing_model_call")
        .first()
    )
    if ticket is None:
        return None, ""
    if ticket.failing_tool_call is not None:
        return ticket.failing_tool_call.model_call.turn, ticket.failing_tool_call.tool_use_id
    if ticket.failing_model_call is not None:
        return ticket.failing_model_call.turn, ""
    return None, ""


@dataclass(frozen=True)
class ForkPlan:
    """What ``fork`` will do, checked: the turn it starts at, the version, the rows it copies
    and the correction it applies."""

    original: Run
    workflow: Workflow
    turn: int
    version: WorkflowVersion
    calls: list[ModelCall]  # copied, in turn order
    tools: list[ToolCall]  # copied: the settled attempts of those turns, minus the corrected one
    correction: dict[str, Any] | None = None  # {"tool_use": {...}, "tool": Tool, "output": ...}
    paid_by_origin: Decimal = ZERO
    steps: list[Step] = field(default_factory=list)


def _parse_turn(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip()
    if not text:
        raise ActionRefused.invalid("turn", "choose the model turn the fork starts from")
    try:
        return untrusted.whole_number(text, "turn", maximum=10**9, what="a turn number")
    except untrusted.Rejected as exc:
        raise ActionRefused.invalid("turn", exc.fields["turn"]) from None


def _readable(rows: list[ModelCall] | list[ToolCall], fields: tuple[str, ...], what: str) -> None:
    for row in rows:
        if row.payload_purged_at is not None:
            raise ActionRefused(
                f"The {what} of turn(s) to copy were purged by the retention policy "
                f"({row.payload_purged_at:%Y-%m-%d}): the fork cannot replay them. Re-run the run instead."
            )
        for name in fields:
            try:
                require_readable(getattr(row, name), f"The {name.replace('_', ' ')} of {row}")
            except PayloadKeyError as exc:
                raise ActionRefused(
                    f"{exc} The fork would copy it and could not replay it."
                ) from None


def plan_fork(
    user: Any,
    run_id: Any,
    *,
    turn: Any,
    tool_use_id: str = "",
    corrected: str = "",
    version_id: Any = None,
) -> ForkPlan:
    """Check a fork of ``run_id`` at ``turn`` (the model turn numbers the run page shows);
    with ``corrected`` (JSON text), the output of tool call ``tool_use_id`` of that turn.
    Raises ActionRefused; returns the plan ``fork`` carries out."""
    original = visible_run(user, run_id)
    corrected = corrected or ""
    corrects = bool(corrected.strip())
    four_eyes = (
        original.tickets.filter(reason__in=access.FOUR_EYES_REASONS).order_by("-created_at").first()
        if corrects
        else None
    )
    if why := access.fork_refusal(user, original, corrects=corrects, four_eyes_ticket=four_eyes):
        raise ActionRefused(why, ActionRefused.FORBIDDEN)
    if original.status not in FORKABLE:
        raise ActionRefused(
            f"The run is {original.get_status_display()}: a fork starts from a run that finished or paused "
            "for review. Wait for it, or cancel it first. Nothing was changed."
        )
    try:
        workflow = registry.get(original.workflow_name)
    except registry.UnknownWorkflow:
        raise ActionRefused(
            f"The workflow {original.workflow_name!r} is no longer declared: its runs cannot be forked."
        ) from None
    if workflow.fanout is not None:
        raise ActionRefused(
            "A fan-out run is not a sequence of turns (its jobs run in parallel): re-run it instead."
        )
    if tool_use_id and not corrects:
        raise ActionRefused.invalid(
            "corrected",
            "paste the corrected output of the tool call you chose, or choose no tool call",
        )
    if corrects and not tool_use_id:
        raise ActionRefused.invalid(
            "tool_use_id", "choose the tool call whose output you corrected"
        )

    steps = steps_of(original)
    t = _parse_turn(turn)
    if not steps:
        raise ActionRefused.invalid(
            "turn", "this run has no answered model turn to fork from: re-run it instead"
        )
    if not 0 <= t <= steps[-1].turn or t not in {s.turn for s in steps}:
        raise ActionRefused.invalid(
            "turn", f"turn {t} is out of range: this run's turns are 0 to {steps[-1].turn}"
        )
    step = next(s for s in steps if s.turn == t)

    correction = None
    if corrects:
        tu = next((u for u in step.tool_uses if u.get("id") == tool_use_id), None)
        if tu is None:
            owner = next(
                (s.turn for s in steps for u in s.tool_uses if u.get("id") == tool_use_id), None
            )
            where = (
                f"it belongs to turn {owner}"
                if owner is not None
                else "the run has no such tool call"
            )
            raise ActionRefused.invalid("tool_use_id", f"not a tool call of turn {t}: {where}")
        tool = workflow.tool(tu["name"])
        if tool is None:
            raise ActionRefused.invalid(
                "tool_use_id", f"{tu['name']!r} is not a tool this workflow declares"
            )
        copied_calls = [s.call for s in steps if s.turn <= t]
    else:
        if not step.forkable:
            raise ActionRefused.invalid(
                "turn",
                (
                    f"turn {t} follows a final answer, not a tool result: fork from a turn that follows tool "
                    "calls (or turn 0)"
                ),
            )
        copied_calls = [s.call for s in steps if s.turn < t]
    copied_turns = {mc.turn for mc in copied_calls}
    tools = sorted(
        (
            tc
            for s in steps
            if s.turn in copied_turns
            for tc in s.settled.values()
            if not (corrects and s.turn == t and tc.tool_use_id == tool_use_id)
        ),
        key=lambda tc: tc.created_at,
    )

    servable = servable_versions(workflow)
    if version_id not in (None, ""):
        version = next((v for v in servable if str(v.pk) == str(version_id)), None)
        if version is None:
            raise ActionRefused.invalid(
                "version", f"not a version of {workflow.name} that may serve runs"
            )
    else:
        version = next((v for v in servable if v.pk == original.workflow_version_id), None)
        if version is None:
            raise ActionRefused.invalid(
                "version",
                (
                    f"the run's own version ({original.workflow_version.content_hash[:12]}) may no longer serve "
                    "runs: choose another"
                ),
            )
    offered = {t_["name"] for t_ in version.tools}
    missing = sorted({u.get("name") for mc in copied_calls for u in mc.tool_uses} - offered)
    if missing:
        raise ActionRefused.invalid(
            "version",
            (
                f"version {version.content_hash[:12]} does not declare {', '.join(map(str, missing))}, which the "
                "copied turns call"
            ),
        )

    _readable(copied_calls, ("request_content", "response_content"), "model calls")
    _readable(tools, ("input", "output"), "tool calls")

    if corrects:
        value = _corrected_output(original, tool, tu, corrected, tools)
        correction = {"tool_use": tu, "tool": tool, "output": value, "model_call": step.call}
    paid = sum((mc.cost_usd for mc in copied_calls), ZERO)
    return ForkPlan(original, workflow, t, version, copied_calls, tools, correction, paid, steps)


def _corrected_output(
    original: Run, tool: Any, tu: dict[str, Any], text: str, tools: list[ToolCall]
) -> Any:
    """The reviewer's output, checked like a ticket's correction (reviews.resolutions)."""
    accepted = [tc for tc in tools if tc.status in (TC.OK, TC.CORRECTED)]
    record = Record(
        calls=tuple(
            RecordedCall(tc.name, tc.tool_use_id, tc.input or {}, tc.output) for tc in accepted
        )
    )
    ctx = ToolContext(
        run_id=str(original.pk),
        tool_use_id=tu["id"],
        run_input=original.input,
        tool_input=tu.get("input") or {},
        outputs={c.name: c.output for c in record.calls},
        record=record,
    )
    try:
        return resolutions.checked_tool_output(tool, resolutions.parse_json(text), ctx)
    except resolutions.InvalidCorrection as exc:
        raise ActionRefused(
            f"The corrected output of {tool.name} was not accepted: {exc}. Nothing was changed.",
            ActionRefused.INVALID_INPUT,
            {"corrected": str(exc)},
        ) from None


def _copy_history(plan: ForkPlan, fork: Run, user: Any) -> None:
    """Copy the plan's history into ``fork`` (in its start transaction, before it is queued)
    and record the fork's origin in both chains."""
    link_origin(fork, plan.original, Run.Origin.FORK, plan.turn)
    tools_by_call: dict[int, list[ToolCall]] = {}
    for tc in plan.tools:
        tools_by_call.setdefault(tc.model_call_id, []).append(tc)
    written: list[ModelCall | ToolCall] = []
    copies: dict[int, ModelCall] = {}
    for mc in plan.calls:  # in conversation order: the timeline and the record follow created_at
        copy = ModelCall.objects.create(
            run=fork,
            turn=mc.turn,
            attempt=1,
            role=mc.role,
            model=mc.model,
            status=ModelCall.Status.OK,
            request_content=mc.request_content,
            response_content=mc.response_content,
            stop_reason=mc.stop_reason,
            sdk_attempts=mc.sdk_attempts,
            latency_ms=mc.latency_ms,
            first_token_ms=mc.first_token_ms,
            request_id=mc.request_id,
            finished_at=mc.finished_at,
            copied=True,
            copied_from=mc,
        )
        copies[mc.pk] = copy
        written.append(copy)
        for tc in tools_by_call.get(mc.pk, []):
            written.append(
                ToolCall.objects.create(
                    run=fork,
                    model_call=copy,
                    tool_use_id=tc.tool_use_id,
                    name=tc.name,
                    tool_version=tc.tool_version,
                    attempt=1,
                    status=tc.status,
                    settled=True,
                    input=tc.input,
                    output=tc.output,
                    raw_output=tc.raw_output,
                    validation_errors=tc.validation_errors,
                    error=tc.error,
                    latency_ms=tc.latency_ms,
                    finished_at=tc.finished_at,
                    copied=True,
                    copied_from=tc,
                )
            )
    corrected_payload = None
    if plan.correction is not None:
        tu, tool, value = (
            plan.correction["tool_use"],
            plan.correction["tool"],
            plan.correction["output"],
        )
        written.append(
            ToolCall.objects.create(
                run=fork,
                model_call=copies[plan.correction["model_call"].pk],
                tool_use_id=tu["id"],
                name=tu["name"],
                tool_version=tool.version,
                attempt=1,
                status=TC.CORRECTED,
                settled=True,
                input=tu.get("input") or {},
                output=value,
                raw_output=value,
                finished_at=timezone.now(),
                latency_ms=0,
            )
        )
        corrected_payload = {"tool": tu["name"], "tool_use_id": tu["id"], "output": value}
    n_calls = sum(1 for w in written if isinstance(w, ModelCall))
    audit.record(
        "run.forked",
        run=fork,
        actor=user,
        evidence_of=written,
        payload={
            "origin": str(plan.original.pk),
            "origin_status": plan.original.status,
            "origin_head": origin_head(plan.original),
            "turn": plan.turn,
            "version": plan.version.content_hash,
            "origin_version": plan.original.workflow_version.content_hash,
            "copied": {
                "model_calls": n_calls,
                "tool_calls": len(plan.tools),
                "paid_by_origin_usd": str(plan.paid_by_origin),
            },
            "corrected": corrected_payload,
        },
    )
    audit.record(
        "run.derived",
        run=plan.original,
        actor=user,
        payload={"run": str(fork.pk), "kind": Run.Origin.FORK, "turn": plan.turn},
    )


def fork(
    user: Any,
    run_id: Any,
    *,
    turn: Any,
    tool_use_id: str = "",
    corrected: str = "",
    version_id: Any = None,
    idempotency_key: str | None = None,
) -> Run:
    """Check the fork (``plan_fork``) and start it through ``launch.start_run`` with its
    history copied; returns the new run (queued, or waiting for approval)."""
    plan = plan_fork(
        user, run_id, turn=turn, tool_use_id=tool_use_id, corrected=corrected, version_id=version_id
    )
    try:
        return start_run(
            plan.original.workflow_name,
            plan.original.input,
            user,
            idempotency_key=idempotency_key,
            options=dict(plan.original.options or {}),
            source="fork",
            version=plan.version,
            prepare=lambda new: _copy_history(plan, new, user),
        )
    except RunRefused as refused:
        raise ActionRefused.from_start(refused) from None
