"""What a person may do with a whole run: re-run it, fork it from a step, cancel it, compare two.

Each action is one function holding its whole validation, so the pages call it today and the
JSON API will call the same function: a refusal is an ``ActionRefused`` whose ``code`` maps to
a status (``not_found`` 404, ``forbidden`` 403, ``conflict`` 409, ``invalid_input`` 422, and
the start gate's ``budget_exceeded``, ``rate_limited``, ``user_paused``) and nothing changes.
Who may act is asked of ``reviews.access``; a run the user cannot see is ``not_found``.

- **Re-run** (``rerun``): a new run with the original's input and options, through the same
  start path as any run (``launch.start_run``: the pause, budgets, daily limit, estimate and
  approval gate), linked to the original (``Run.origin``, ``origin_kind="rerun"``).
- **Fork** (``plan_fork`` checks, ``fork`` starts): a new run that starts at a chosen model
  turn of a finished or paused run, on the original's version or another that may serve runs
  (``servable_versions``), optionally with a reviewer's corrected output for one tool call
  of that turn. The turns before it (and, with a correction, that turn itself and its other
  settled tool calls) are copied into the fork as history: ``copied=True``, ``copied_from``
  the original row, no cost, tokens or price of their own (the original paid for them, so
  every cost total and budget leaves them out), payloads re-sealed by the encrypted fields
  (orchestration.privacy), never executed again. The fork's first audit events record its
  origin: ``run.forked`` (the origin, the turn, the origin's chain head at that moment, the
  versions, the correction, and the copied rows as evidence); the original's chain records
  ``run.derived``. The engine then picks the fork up like any run: the copied tool calls
  answer the copied turns, and it goes on from the chosen turn.
- **Cancel** (``cancel``): a run that is not final stops for good. Under the run's row lock:
  its pending model calls give their reservations back (``accounting.release_for_cancelled_run``),
  its outstanding fan-out jobs are cancelled, its open ticket and pending approval request are
  closed as cancelled, and it moves to ``cancelled`` through the state machine. A worker in
  the middle of a step notices at its next commit point (``lifecycle.still_running``, the
  lease that can no longer be renewed, the reservation refused to a run that is not running)
  and starts nothing more; an answer already on its way is recorded and charged (the API
  bills it).
- **Compare** (``compare``): two runs the user sees, side by side: input, the path of tool
  calls, outputs, cost and latency.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from costs import accounting
from orchestration import audit, lifecycle
from orchestration.fanout.models import FanoutJob
from orchestration.launch import RunRefused, start_run
from orchestration.models import ModelCall, Run, RunAuditHead, ToolCall, WorkflowVersion
from orchestration.privacy import PayloadKeyError, require_readable
from orchestration.untrusted import Rejected, check_text
from orchestration.workflows import registry
from orchestration.workflows.declaration import Record, RecordedCall, ToolContext, Workflow
from orchestration.workflows.versions import snapshot
from reviews import access, approvals, resolutions
from reviews.models import EscalationTicket

S = Run.Status
TC = ToolCall.Status
ZERO = Decimal("0")
# A fork starts from a run that stopped: finished, or paused for a reviewer.
FORKABLE = (*Run.FINAL, S.AWAITING_REVIEW)


class ActionRefused(Exception):
    """The action was refused; ``message`` says why and what to do, ``fields`` names the form
    fields that were wrong, ``code`` the kind of refusal. Nothing was changed."""

    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    INVALID_INPUT = "invalid_input"

    def __init__(
        self,
        message: str,
        code: str = CONFLICT,
        fields: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.fields = fields or {}
        self.retry_after = retry_after

    @classmethod
    def invalid(cls, name: str, why: str) -> ActionRefused:
        return cls(f"{name}: {why}", cls.INVALID_INPUT, {name: why})

    @classmethod
    def from_start(cls, refused: RunRefused) -> ActionRefused:
        """The start gate's refusal (budget, daily limit, pause, an input no longer valid)."""
        return cls(str(refused), refused.code, dict(refused.errors), refused.retry_after)


def visible_run(user: Any, run_id: Any) -> Run:
    """The run, if ``user`` may see it (reviews.access.visible_runs); else ``not_found``."""
    run = (
        access.visible_runs(user)
        .select_related("workflow_version", "requested_by")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        raise ActionRefused("No such run.", ActionRefused.NOT_FOUND)
    return run


def _reason(text: str, name: str = "reason") -> str:
    try:
        return check_text(text or "", name).strip()
    except Rejected as exc:
        raise ActionRefused.invalid(name, exc.fields[name]) from None


def _link(new: Run, original: Run, kind: str, turn: int | None = None) -> None:
    new.origin, new.origin_kind, new.fork_turn = original, kind, turn
    new.save(update_fields=["origin", "origin_kind", "fork_turn", "updated_at"])


def _origin_head(run: Run) -> dict[str, Any] | None:
    head = RunAuditHead.objects.filter(run=run).values("run_seq", "hash").first()
    return dict(head) if head else None


# --- re-run --------------------------------------------------------------------------------


def rerun(user: Any, run_id: Any, *, idempotency_key: str | None = None) -> Run:
    """A new run of the original's workflow with the same input and options, started through
    ``launch.start_run`` like any run, and linked to the original."""
    original = visible_run(user, run_id)
    if why := access.rerun_refusal(user, original):
        raise ActionRefused(why, ActionRefused.FORBIDDEN)

    def link(new: Run) -> None:
        _link(new, original, Run.Origin.RERUN)
        audit.record(
            "run.rerun_of",
            run=new,
            actor=user,
            payload={
                "origin": str(original.pk),
                "origin_status": original.status,
                "origin_head": _origin_head(original),
            },
        )
        audit.record(
            "run.derived",
            run=original,
            actor=user,
            payload={"run": str(new.pk), "kind": Run.Origin.RERUN},
        )

    try:
        return start_run(
            original.workflow_name,
            original.input,
            user,
            idempotency_key=idempotency_key,
            options=dict(original.options or {}),
            source="rerun",
            prepare=link,
        )
    except RunRefused as refused:
        raise ActionRefused.from_start(refused) from None


# --- fork ----------------------------------------------------------------------------------


def servable_versions(workflow: Workflow) -> list[WorkflowVersion]:
    """The versions of ``workflow`` a fork may run on, newest first: its recorded snapshots
    whose every tool the code still declares (the engine executes the tools the code
    declares, so a snapshot naming a tool that is gone cannot serve a run), the workflow as
    declared now always among them."""
    current = snapshot(workflow)
    declared = {t.name for t in workflow.tools}
    versions = [
        v
        for v in WorkflowVersion.objects.filter(name=workflow.name).order_by("-created_at")
        if {t.get("name") for t in v.tools} <= declared
    ]
    return versions if any(v.pk == current.pk for v in versions) else [current, *versions]


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
    if not text.lstrip("-").isdigit() or len(text) > 9:
        raise ActionRefused.invalid("turn", f"{text[:40]!r} is not a turn number")
    return int(text)


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
    _link(fork, plan.original, Run.Origin.FORK, plan.turn)
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
            "origin_head": _origin_head(plan.original),
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


# --- cancel --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    run: Run
    released_calls: int
    cancelled_jobs: int
    closed_tickets: int
    closed_approvals: int


def cancel(user: Any, run_id: Any, *, reason: str = "") -> Cancelled:
    """Cancel a run that is not final (see the module docstring); ``conflict`` for a run that
    already ended."""
    reason = _reason(reason)
    visible_run(user, run_id)
    with transaction.atomic():
        # The run first, then its calls, jobs and tickets, then the audit chain: the order a
        # worker's charge and a fan-out halt take (costs.accounting, fanout.coordinator).
        run = Run.objects.locked().select_related("requested_by").get(pk=run_id)
        if refused := cancel_refusal(user, run):
            raise refused
        why = f"Cancelled by {user.get_username()}" + (f": {reason}" if reason else ".")
        released = accounting.release_for_cancelled_run(run.pk)
        jobs = FanoutJob.objects.filter(
            run=run, status__in=(FanoutJob.Status.QUEUED, FanoutJob.Status.RUNNING)
        ).update(
            status=FanoutJob.Status.CANCELLED,
            lease_owner="",
            lease_expires_at=None,
            finished_at=timezone.now(),
            reason="Cancelled: the run was cancelled.",
        )
        tickets = resolutions.close_for_cancelled_run(run, user, why)
        requests = approvals.close_for_cancelled_run(run, user, why)
        run = lifecycle.transition(
            run.pk,
            S.CANCELLED,
            actor=user,
            error=why,
            event_payload={
                "reason": reason,
                "released_calls": released,
                "cancelled_jobs": jobs,
                "closed_tickets": [t.pk for t in tickets],
                "closed_requests": [r.pk for r in requests],
            },
        )
    return Cancelled(run, released, jobs, len(tickets), len(requests))


def cancel_refusal(user: Any, run: Run) -> ActionRefused | None:
    """The refusal ``cancel`` gives (it asks under the run's lock), or None; the run page
    offers "Cancel run" only when there is none."""
    ticket = (
        run.tickets.exclude(status=EscalationTicket.Status.RESOLVED)
        .select_related("assignee")
        .first()
    )
    if why := access.cancel_refusal(user, run, ticket):
        return ActionRefused(why, ActionRefused.FORBIDDEN)
    if run.status not in lifecycle.CANCELLABLE:
        return ActionRefused(
            f"The run already ended ({run.get_status_display()}): only a run that is queued, running, "
            "paused for review or waiting for approval can be cancelled. Nothing was changed."
        )
    return None


# --- compare -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathStep:
    name: str
    status: str
    copied: bool
    input: Any
    output: Any


@dataclass(frozen=True)
class Side:
    run: Run
    path: list[PathStep]
    own_cost: Decimal  # what this run paid (Run.cost_usd)
    copied_cost: Decimal  # what the original paid for the history a fork copied
    model_calls: int
    model_ms: int  # the run's own model calls, summed (copied calls excluded)
    tool_ms: int

    @property
    def latency_ms(self) -> int | None:
        return self.run.latency_ms


@dataclass(frozen=True)
class Row:
    index: int
    a: PathStep | None
    b: PathStep | None

    @property
    def pair(self) -> tuple[PathStep | None, PathStep | None]:
        return self.a, self.b

    @property
    def same(self) -> bool:
        return (
            self.a is not None
            and self.b is not None
            and self.a.name == self.b.name
            and self.a.status == self.b.status
            and _canonical(self.a.output) == _canonical(self.b.output)
        )


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    rows: list[Row]

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.a, self.b

    @property
    def same_input(self) -> bool:
        return _canonical(self.a.run.input) == _canonical(self.b.run.input)

    @property
    def same_result(self) -> bool:
        return _canonical(self.a.run.result) == _canonical(self.b.run.result)

    @property
    def related(self) -> str:
        a, b = self.a.run, self.b.run
        for x, y in ((a, b), (b, a)):
            if x.origin_id == y.pk:
                return f"{str(x.pk)[:8]} is a {x.get_origin_kind_display()} of {str(y.pk)[:8]}"
        return ""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _side(run: Run) -> Side:
    calls = ToolCall.objects.filter(run=run, settled=True).order_by("created_at")
    path = [PathStep(tc.name, tc.status, tc.copied, tc.input, tc.output) for tc in calls]
    own = ModelCall.objects.filter(run=run, job__isnull=True, copied=False)
    totals = own.aggregate(ms=Sum("latency_ms"))
    copied = ModelCall.objects.filter(run=run, copied=True).aggregate(
        usd=Sum("copied_from__cost_usd")
    )
    tool_ms = ToolCall.objects.filter(run=run, copied=False).aggregate(ms=Sum("latency_ms"))
    return Side(
        run=run,
        path=path,
        own_cost=run.cost_usd,
        copied_cost=copied["usd"] or ZERO,
        model_calls=own.count(),
        model_ms=totals["ms"] or 0,
        tool_ms=tool_ms["ms"] or 0,
    )


def run_by_reference(user: Any, ref: str, name: str) -> Run:
    """A run ``user`` sees, by its id or the start of it (the 8 characters pages show):
    ``invalid_input`` for something that is not an id or matches several runs, ``not_found``
    for one they do not see."""
    text = (ref or "").strip().lower()
    try:
        return visible_run(user, uuid.UUID(text))
    except ValueError:
        pass
    if not (4 <= len(text) <= 36 and all(c in "0123456789abcdef-" for c in text)):
        raise ActionRefused.invalid(
            name, "give a run id, or its first 8 characters as the pages show them"
        )
    found = list(
        access.visible_runs(user).filter(id__startswith=text).values_list("pk", flat=True)[:2]
    )
    if not found:
        raise ActionRefused("No such run.", ActionRefused.NOT_FOUND)
    if len(found) > 1:
        raise ActionRefused.invalid(
            name, f"{text!r} starts more than one run's id: give more of it"
        )
    return visible_run(user, found[0])


def compare(user: Any, a_ref: Any, b_ref: Any) -> Comparison:
    """Two runs ``user`` sees (by id or its start), side by side; ``not_found`` for either one
    they do not see."""
    a, b = run_by_reference(user, str(a_ref), "a"), run_by_reference(user, str(b_ref), "b")
    left, right = _side(a), _side(b)
    rows = [Row(i, x, y) for i, (x, y) in enumerate(itertools.zip_longest(left.path, right.path))]
    return Comparison(left, right, rows)


def related_runs(run: Run, user: Any) -> list[Run]:
    """Runs to offer for comparison with ``run``: its origin and the runs made from it, that
    ``user`` sees."""
    ids = [run.origin_id] if run.origin_id else []
    ids += list(Run.objects.filter(origin=run).values_list("pk", flat=True)[:20])
    return list(access.visible_runs(user).filter(pk__in=ids).order_by("-created_at"))
