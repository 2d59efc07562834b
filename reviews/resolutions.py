"""Reviewers' work on escalation tickets: claim, unclaim, assign, and the five resolutions.

Every action locks the ticket row, checks who may act, changes the run only through the
run state machine, and writes an audit event in the same transaction. A resolution that
re-queues the run enqueues its next step after commit. Two reviewers resolving one ticket
at the same moment get exactly one resolution; the other gets a clear refusal.

Resolutions:
- resume: continue with a reviewer's note, given to the model in the next turn; a tool
  call left unanswered is answered with an error naming the reviewer's decision;
- retry: run the failed step again with a fresh round of attempts;
- correct: supply the output of the failing tool call (validated against the tool's
  schema and semantic validators; never for a tool with a side effect) or the run's final output (validated against the
  workflow's output schema); invalid JSON or a violation changes nothing;
- approve: sign off a result that needed a human (regulatory trigger): the run succeeds
  with the proposed result; on a sign-off ticket for a tool call (a side effect refused until a
  human signs it off), that very call runs; otherwise the run continues;
- fail: the run fails with the reviewer's comment.

A ``budget_exceeded`` ticket is decided by a manager, and any resolution that would let the
run spend again (resume, retry, approve, a corrected tool output) is refused while the run
is still at its spend ceiling: resuming never removes or raises the ceiling. A manager who
did not request the run raises it first (costs.accounting.raise_ceiling).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from costs import accounting
from ops import tracing
from orchestration import audit, lifecycle
from orchestration.models import Run, ToolCall
from orchestration.record import accepted_outputs, recorded_state
from orchestration.untrusted import Rejected, check_text, json_text
from orchestration.untrusted import parse_json as untrusted_json
from orchestration.validation import cut_to_schema, schema_errors
from orchestration.workflows import registry
from orchestration.workflows.declaration import Tool, ToolContext
from orchestration.workflows.versions import declaration_for, drift, workflow_for
from reviews import access
from reviews.models import EscalationTicket

T = EscalationTicket.Status
Res = EscalationTicket.Resolution


class ReviewError(Exception):
    """The action was refused; the message says why and what to do. Nothing changed."""


class NotAllowed(ReviewError):
    """The user may not take this action on this ticket (their role, or the four-eyes rule)."""


class InvalidInput(ReviewError):
    """A comment or note that cannot be accepted (orchestration.untrusted); ``fields`` names it."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class InvalidCorrection(ReviewError):
    """The corrected output is not valid JSON or violates its schema."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _locked(ticket_id: int) -> EscalationTicket:
    ticket = EscalationTicket.objects.select_for_update().filter(pk=ticket_id).first()
    if ticket is None:
        raise ReviewError("No such ticket.")
    return ticket


def _check_open(ticket: EscalationTicket) -> None:
    if ticket.status == T.RESOLVED:
        who = ticket.resolved_by.get_username() if ticket.resolved_by_id else "someone"
        raise ReviewError(
            f"This ticket was already resolved ({ticket.get_resolution_display()}) by {who} at "
            f"{timezone.localtime(ticket.resolved_at):%H:%M:%S}. Nothing was changed."
        )


def _check_may_act(ticket: EscalationTicket, user: Any, *, holder: Any = None) -> None:
    """The rules of reviews.access: may ``user`` act on the ticket, and may ``holder`` (the
    user, or whom a ticket is assigned to) take it under the four-eyes rule."""
    if why := access.ticket_refusal(user, ticket):
        raise NotAllowed(why)
    if holder is not None and (why := access.four_eyes_refusal(holder, ticket, actor=user)):
        raise NotAllowed(why)


def _set_assignee(
    ticket_id: int, user: Any, assignee: Any, event: str, *, only_if_free: bool = False
) -> EscalationTicket:
    """Claim (assignee=user), unclaim (assignee=None) or assign to someone else.

    ``only_if_free`` (a claim): a ticket someone else holds is refused, even for a manager;
    one the user already holds is left as it is."""
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _check_open(ticket)
        if only_if_free and ticket.assignee_id == user.pk:
            return ticket
        if only_if_free and ticket.assignee_id:
            since = (
                f" at {timezone.localtime(ticket.claimed_at):%H:%M:%S}" if ticket.claimed_at else ""
            )
            raise ReviewError(
                f"{ticket.assignee.get_username()} claimed this ticket first{since}; nothing was changed."
                + (" To take it over, assign it to yourself." if access.may_override(user) else "")
            )
        _check_may_act(ticket, user, holder=assignee)
        ticket.assignee = assignee
        ticket.status = T.CLAIMED if assignee else T.OPEN
        ticket.claimed_at = timezone.now() if assignee else None
        ticket.save(update_fields=["status", "assignee", "claimed_at"])
        payload: dict[str, Any] = {"ticket": ticket.pk}
        if assignee is not None and assignee != user:
            payload["assignee"] = assignee.get_username()
        audit.record(event, run=ticket.run, actor=user, payload=payload)
    return ticket


def claim(ticket_id: int, user: AbstractBaseUser) -> EscalationTicket:
    """Take a ticket nobody holds. Claiming one that someone else holds is refused, even for a
    manager: the click usually comes from a queue page loaded before the other person claimed it
    (the load test caught managers silently taking tickets from reviewers mid-resolution). A
    manager takes a ticket over explicitly, with assign. Claiming your own ticket changes nothing."""
    return _set_assignee(ticket_id, user, user, "ticket.claimed", only_if_free=True)


def unclaim(ticket_id: int, user: AbstractBaseUser) -> EscalationTicket:
    return _set_assignee(ticket_id, user, None, "ticket.unclaimed")


def assign(ticket_id: int, user: AbstractBaseUser, assignee: AbstractBaseUser) -> EscalationTicket:
    if not access.may_resolve(assignee):
        raise ReviewError(f"{assignee.get_username()} is not a reviewer or manager.")
    return _set_assignee(ticket_id, user, assignee, "ticket.assigned")


def parse_json(text: str) -> Any:
    """The corrected output typed or sent by a reviewer, within the limits every entry point
    shares (orchestration.untrusted): depth, NaN/Infinity/1e400, 64-bit integers, NUL and
    lone surrogates."""
    try:
        return untrusted_json(text, field="corrected")
    except Rejected as exc:
        raise InvalidCorrection([f"{k}: {v}" for k, v in exc.fields.items()]) from None


def correction_target(ticket: EscalationTicket) -> dict[str, Any]:
    """What a correction replaces: the failing tool call's output, or the final output."""
    # The run's own version's declaration; the current one when it is gone (the page still
    # shows the ticket; resolving is refused then, see resolve).
    workflow = declaration_for(ticket.run.workflow_version) or registry.get(
        ticket.run.workflow_name
    )
    tc = ticket.failing_tool_call
    if tc is not None and workflow.tool(tc.name) is not None:
        tool = workflow.tool(tc.name)
        current = tc.output if tc.output is not None else None
        # A side effect's output cannot be typed in: the effect would be recorded, never done.
        return {
            "kind": "tool",
            "name": tc.name,
            "schema": tool.output_schema,
            "current": current,
            "correctable": not tool.side_effect,
        }
    proposed = (ticket.context.get("details") or {}).get("proposed_result")
    return {
        "kind": "final",
        "name": "final output",
        "schema": workflow.output_schema,
        "current": proposed,
        "correctable": True,
    }


def _needed(ticket: EscalationTicket) -> tuple[Decimal, int]:
    """What the call the run could not make needed (recorded on the ticket when it opened)."""
    details = ticket.context.get("details") or {}
    try:
        return Decimal(str(details.get("needed_usd", "0"))), int(details.get("needed_tokens", 0))
    except (InvalidOperation, TypeError, ValueError):
        return Decimal(0), 0


def _check_headroom(ticket: EscalationTicket, run: Run) -> None:
    """A run paused at its ceiling goes on only once the ceiling has room for its next call."""
    if ticket.reason != EscalationTicket.Reason.BUDGET_EXCEEDED:
        return
    blocked = accounting.blocked_until_raised(run, *_needed(ticket))
    if blocked:
        raise ReviewError(blocked)


def _unanswered_tool_uses(run: Run) -> list[dict[str, Any]]:
    last = run.model_calls.filter(status="ok").order_by("-turn").first()
    if last is None or last.stop_reason != "tool_use":
        return []
    settled = set(
        ToolCall.objects.filter(run=run, model_call=last, settled=True).values_list(
            "tool_use_id", flat=True
        )
    )
    return [{**tu, "model_call": last} for tu in last.tool_uses if tu["id"] not in settled]


def _resolution_span(ticket_id: int, user: Any, action: str, **_: Any) -> dict[str, Any]:
    """The resolution's span attributes; its run puts it in the run's trace."""
    run_id = EscalationTicket.objects.filter(pk=ticket_id).values_list("run_id", flat=True).first()
    return {"run_id": str(run_id) if run_id else None, "ticket_id": ticket_id, "action": action}


@tracing.traced("countersign.resolution", _resolution_span)
def resolve(
    ticket_id: int,
    user: Any,
    action: str,
    *,
    comment: str = "",
    note: str = "",
    corrected: str | None = None,
) -> EscalationTicket:
    """Resolve a ticket; raises ReviewError (nothing changed) when the action is refused."""
    if action not in Res.values:
        raise ReviewError(f"Unknown resolution {action!r}.")
    problems: dict[str, str] = {}
    for name, text in (("comment", comment), ("note", note)):
        try:
            check_text(text, name)
        except Rejected as exc:
            problems.update(exc.fields)
    if problems:
        raise InvalidInput(problems)
    with transaction.atomic():
        ticket = _locked(ticket_id)
        _check_open(ticket)
        _check_may_act(ticket, user, holder=user)
        run = Run.objects.locked().get(pk=ticket.run_id)
        # A halted run (the fan-out breaker) is final: its ticket can only be acknowledged.
        acknowledging = run.status == Run.Status.HALTED and action == Res.FAIL
        if run.status != Run.Status.AWAITING_REVIEW and not acknowledging:
            if run.status == Run.Status.HALTED:
                raise ReviewError(
                    "The run halted and cannot go on; only 'fail' (acknowledge) closes this ticket."
                )
            raise ReviewError(f"The run is {run.status}, not awaiting review; nothing was changed.")
        # A run goes on only under the code of the version it started on (judged by its version).
        if action != Res.FAIL and (changed := drift(run.workflow_version)):
            raise ReviewError(changed)
        payload: dict[str, Any] = {"ticket": ticket.pk, "resolution": action, "comment": comment}
        if action != Res.FAIL and not (
            action == Res.CORRECT and correction_target(ticket)["kind"] == "final"
        ):
            _check_headroom(ticket, run)  # every resolution that lets the run call the model again
        answered: list[ToolCall] = []  # tool calls the reviewer's decision wrote

        if action == Res.RESUME:
            text = note.strip() or comment.strip()
            if not text:
                raise ReviewError(
                    "Resuming needs a note for the model: say what it should do next."
                )
            for tu in _unanswered_tool_uses(run):
                answered.append(
                    _settle_by_reviewer(
                        run,
                        tu,
                        status=ToolCall.Status.REJECTED,
                        error=f"Not executed: a reviewer resumed the run instead. Reviewer note: {text}",
                    )
                )
            payload["note"] = text
            lifecycle.transition(
                run.pk,
                Run.Status.QUEUED,
                actor=user,
                pending_note=f"Reviewer note: {text}",
                event_payload=payload,
            )
        elif action == Res.RETRY:
            tc = ticket.failing_tool_call
            note_for_model = ""
            if tc is not None and tc.settled:
                # The tool ran but its result stopped the run: run it again.
                ToolCall.objects.filter(pk=tc.pk).update(settled=False)
            elif (
                tc is None
                and ticket.failing_model_call
                and ticket.failing_model_call.status == "ok"
            ):
                # The model's answer was refused: ask it again rather than re-judge the same words.
                note_for_model = "Reviewer note: please redo your last step. " + comment
            lifecycle.transition(
                run.pk,
                Run.Status.QUEUED,
                actor=user,
                event_payload=payload,
                pending_note=note_for_model.strip(),
            )
        elif action == Res.CORRECT:
            answered.extend(_apply_correction(ticket, run, user, corrected, payload))
        elif action == Res.APPROVE:
            details = ticket.context.get("details") or {}
            proposed = details.get("proposed_result")
            tc = ticket.failing_tool_call
            if proposed is not None:
                lifecycle.transition(
                    run.pk, Run.Status.SUCCEEDED, actor=user, result=proposed, event_payload=payload
                )
            elif details.get("sign_off") and tc is not None:
                # The reviewer signs off the refused call itself (that tool_use, that input): the
                # engine settles it again and its sign-off precondition now holds
                # (orchestration.record.recorded_state reads this resolution).
                ToolCall.objects.filter(pk=tc.pk).update(settled=False)
                payload["signed_off"] = {
                    "tool": tc.name,
                    "tool_use_id": tc.tool_use_id,
                    "input": tc.input,
                }
                lifecycle.transition(run.pk, Run.Status.QUEUED, actor=user, event_payload=payload)
            else:
                lifecycle.transition(
                    run.pk,
                    Run.Status.QUEUED,
                    actor=user,
                    event_payload=payload,
                    pending_note=f"Reviewer approved continuing. {comment}".strip(),
                )
        elif action == Res.FAIL and acknowledging:
            payload["acknowledged_halt"] = True
        elif action == Res.FAIL:
            lifecycle.transition(
                run.pk,
                Run.Status.FAILED,
                actor=user,
                event_payload=payload,
                error=f"Failed by reviewer {user.get_username()}: {comment or 'no comment'}",
            )

        ticket.status, ticket.resolution = T.RESOLVED, action
        ticket.resolved_by, ticket.resolved_at, ticket.comment = user, timezone.now(), comment
        if ticket.assignee_id is None:
            ticket.assignee = user
        ticket.save()
        # The decision (the ticket's resolution, comment and resolver), the run's result and
        # any output the reviewer supplied, as stored.
        audit.record(
            "ticket.resolved",
            run=run,
            actor=user,
            payload=payload,
            evidence_of=[ticket, run, *answered],
        )
    return ticket


def _settle_by_reviewer(run: Run, tu: dict[str, Any], **fields: Any) -> ToolCall:
    ToolCall.objects.filter(run=run, tool_use_id=tu["id"], settled=True).update(settled=False)
    attempts = ToolCall.objects.filter(run=run, tool_use_id=tu["id"]).count()
    return ToolCall.objects.create(
        run=run,
        model_call=tu["model_call"],
        tool_use_id=tu["id"],
        name=tu["name"],
        attempt=attempts + 1,
        input=tu.get("input") or {},
        settled=True,
        finished_at=timezone.now(),
        latency_ms=0,
        **fields,
    )


def checked_tool_output(tool: Tool, value: Any, ctx: ToolContext) -> Any:
    """A tool output typed by a reviewer (a ticket's correction, or a fork's:
    orchestration.run_actions), cut to the tool's output schema and checked by the schema and
    the tool's semantic validators; raises InvalidCorrection. Never for a tool with a side
    effect: the run would record an effect that never happened."""
    if tool.side_effect:
        raise InvalidCorrection(
            [
                f"{tool.name} has a side effect: its output cannot be supplied by hand, or the run would record "
                "an effect that never happened. Retry it, approve it (a sign-off), resume with a note, or fail the run."
            ]
        )
    errors = schema_errors(value, tool.output_schema)
    value = cut_to_schema(value, tool.output_schema)
    if not errors:
        errors = [p for v in tool.validators for p in v(value, ctx)]
    if errors:
        raise InvalidCorrection(errors)
    return value


def close_for_cancelled_run(run: Run, user: Any, reason: str) -> list[EscalationTicket]:
    """Close the run's unresolved tickets as ``cancelled`` (the run was cancelled by ``user``),
    each with an audit event, in the caller's transaction (orchestration.run_actions.cancel,
    which holds the run's row lock)."""
    closed = []
    for ticket in (
        EscalationTicket.objects.select_for_update().filter(run=run).exclude(status=T.RESOLVED)
    ):
        ticket.status, ticket.resolution = T.RESOLVED, Res.CANCELLED
        ticket.resolved_by, ticket.resolved_at, ticket.comment = user, timezone.now(), reason
        ticket.save(update_fields=["status", "resolution", "resolved_by", "resolved_at", "comment"])
        audit.record(
            "ticket.closed",
            run=run,
            actor=user,
            evidence_of=[ticket],
            payload={"ticket": ticket.pk, "resolution": Res.CANCELLED, "comment": reason},
        )
        closed.append(ticket)
    return closed


def _apply_correction(
    ticket: EscalationTicket, run: Run, user: Any, corrected: str | None, payload: dict[str, Any]
) -> list[ToolCall]:
    """Apply the correction; returns the tool call it wrote (none for a final output)."""
    if corrected is None or not corrected.strip():
        raise InvalidCorrection(["paste the corrected JSON"])
    value = parse_json(corrected)
    target = correction_target(ticket)
    workflow = workflow_for(run)
    errors = schema_errors(value, target["schema"])
    if target["kind"] == "tool":
        tool = workflow.tool(target["name"])
        tc = ticket.failing_tool_call
        ctx = ToolContext(
            run_id=str(run.pk),
            tool_use_id=tc.tool_use_id,
            run_input=run.input,
            tool_input=tc.input,
            outputs=accepted_outputs(run),
        )
        value = checked_tool_output(tool, value, ctx)
        tu = {"id": tc.tool_use_id, "name": tc.name, "input": tc.input, "model_call": tc.model_call}
        corrected_call = _settle_by_reviewer(
            run, tu, status=ToolCall.Status.CORRECTED, output=value, error="", raw_output=value
        )
        payload.update(
            {"corrected": "tool", "tool": tc.name, "tool_call": corrected_call.pk, "output": value}
        )
        # The other tool_uses of that turn still need answers; the next step runs them.
        lifecycle.transition(run.pk, Run.Status.QUEUED, actor=user, event_payload=payload)
        return [corrected_call]
    else:
        if errors:
            raise InvalidCorrection(errors)
        # A final output that needs a sign-off, supplied by a reviewer, is a sign-off.
        if workflow.regulatory_trigger:
            needs_sign_off = workflow.regulatory_trigger(run.input, value, recorded_state(run))
        else:
            needs_sign_off = None
        if needs_sign_off and (why := access.sign_off_refusal(user, run)):
            raise NotAllowed(why)
        payload.update({"corrected": "final", "output": value})
        lifecycle.transition(
            run.pk, Run.Status.SUCCEEDED, actor=user, result=value, event_payload=payload
        )
        return []


def pretty(value: Any) -> str:
    return "" if value is None else json_text(value, indent=2)
