"""The escalation policy: how a run pauses for a human, and what the ticket holds.

Only the engine escalates (a running run cannot go on safely). The run moves to
awaiting_review and a ticket opens in the same transaction, carrying a snapshot of the
full context so the reviewer sees what the run saw when it stopped.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestration import audit, dispatch, lifecycle
from orchestration.models import ModelCall, Run, ToolCall
from orchestration.serialize import model_call_dict, tool_call_dict
from orchestration.untrusted import printable
from reviews.models import EscalationTicket
from reviews.sla import sla_for

R = EscalationTicket.Reason
logger = logging.getLogger(__name__)


def context_snapshot(run: Run, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "input": run.input,
        "cost_usd": str(run.cost_usd),
        "tokens": {
            "input": run.input_tokens,
            "output": run.output_tokens,
            "cache_write": run.cache_write_tokens,
            "cache_read": run.cache_read_tokens,
        },
        # A fan-out job's calls stay on its FanoutJob row: thousands of them do not belong here.
        "model_calls": [
            model_call_dict(mc)
            for mc in run.model_calls.filter(job__isnull=True).order_by("turn", "attempt")
        ],
        "tool_calls": [
            tool_call_dict(tc) for tc in run.tool_calls.order_by("created_at", "attempt")
        ],
        "details": details or {},
    }


def _notify(ticket_id: int) -> None:
    """Queue the notification; a broker outage must not break the step that escalated."""
    try:
        dispatch.send(dispatch.NOTIFY_TICKET_OPENED, (ticket_id,))
    except Exception:  # noqa: BLE001 - the ticket is in the queue whatever happens here
        logger.exception("could not queue the notification for ticket %s", ticket_id)


def escalate(
    run_id: Any,
    reason: str,
    message: str,
    *,
    tool_call: ToolCall | None = None,
    model_call: ModelCall | None = None,
    details: dict[str, Any] | None = None,
    halt: bool = False,
) -> EscalationTicket:
    """Pause a running run for review and open its ticket (one transaction).

    ``halt=True`` stops the run for good instead (running -> halted, e.g. the fan-out's
    failure-rate breaker): the ticket tells a human, who can only acknowledge it.

    An evaluation run (``Run.is_evaluation``) is never queued for a human: the escalation is
    the case's outcome. The run halts and its ticket is closed at once with the resolution
    ``evaluation`` (no assignee, no notification, no SLA), so the evaluation's report counts
    it by reason while the reviewers' queue never sees it.
    """
    # The message may quote what a model or a tool sent: NUL, surrogates, control characters
    # and bidirectional overrides as visible markers, storable and safe to show.
    message = printable(message)
    with transaction.atomic():
        evaluation = Run.objects.filter(pk=run_id, is_evaluation=True).exists()
        halt = halt or evaluation
        run = lifecycle.transition(
            run_id,
            Run.Status.HALTED if halt else Run.Status.AWAITING_REVIEW,
            actor="engine",
            event_payload={"reason": reason, "message": message},
            **({"error": message} if halt else {}),
        )
        priority, due_in = sla_for(reason)
        ticket = EscalationTicket.objects.create(
            run=run,
            reason=reason,
            message=message,
            context=context_snapshot(run, details),
            failing_tool_call=tool_call,
            failing_model_call=model_call,
            priority=priority,
            due_at=timezone.now() + due_in,
        )
        audit.record(
            "ticket.opened",
            run=run,
            actor="engine",
            evidence_of=[ticket],  # the context snapshot
            payload={"ticket": ticket.pk, "reason": reason, "message": message},
        )
        if evaluation:
            _close_as_evaluation(ticket)
        else:
            transaction.on_commit(lambda: _notify(ticket.pk))
    return ticket


def _close_as_evaluation(ticket: EscalationTicket) -> None:
    """An evaluation run's ticket: resolved when it opens, by the engine (see ``escalate``)."""
    ticket.status = EscalationTicket.Status.RESOLVED
    ticket.resolution = EscalationTicket.Resolution.EVALUATION
    ticket.resolved_at = timezone.now()
    ticket.comment = "Evaluation run: the escalation is the case's outcome; no reviewer was asked."
    ticket.save(update_fields=["status", "resolution", "resolved_at", "comment"])
    audit.record(
        "ticket.resolved",
        run=ticket.run,
        actor="engine",
        evidence_of=[ticket],
        payload={"ticket": ticket.pk, "resolution": ticket.resolution, "reason": ticket.reason},
    )


def pause_if_running(
    run_id: Any,
    reason: str,
    message: str,
    *,
    model_call: ModelCall | None = None,
    details: dict[str, Any] | None = None,
) -> EscalationTicket | None:
    """Escalate, unless the run is no longer running (another job or step paused or stopped
    it first): returns None then, and changes nothing.

    For callers that may race (fan-out jobs): the check and the move happen under the run's
    row lock, so no InvalidTransition is raised or swallowed. Whatever paused the run, no
    model call leaves until it runs again, and the spend ceiling is checked again then.
    """
    with transaction.atomic():
        status = Run.objects.locked().filter(pk=run_id).values_list("status", flat=True).first()
        if status != Run.Status.RUNNING:
            return None
        return escalate(run_id, reason, message, model_call=model_call, details=details)
