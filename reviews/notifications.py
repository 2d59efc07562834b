"""Telling people what concerns them, by role: reviewers about tickets, managers about
approval requests, requesters about their decisions and their runs' ends.

Channels (email, signed webhooks) and the workflows' own recipients are notifications.*; this
module decides who is told what, and words it. Everything runs after the commit that caused it
(Celery tasks queued on commit, see reviews.tasks), so a slow mail server or a dead webhook
never slows or breaks an engine step; a failed delivery is logged and the ticket, request or
run is unchanged either way. Texts are redacted by the channels. Every webhook goes through
the signed channel (``notifications.channels``: endpoints, HMAC, retries, a delivery row);
the old unsigned ``ESCALATION_WEBHOOK_URL`` is gone.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.urls import reverse

from notifications import channels, recipients
from notifications.models import WebhookEndpoint
from orchestration.models import Run
from reviews import access
from reviews.models import ApprovalRequest, EscalationTicket

logger = logging.getLogger(__name__)


def _recipients() -> list[str]:
    configured = list(getattr(settings, "ESCALATION_EMAILS", []))
    if configured:
        return configured
    return list(
        access.users_who_may_resolve().exclude(email="").order_by().values_list("email", flat=True)
    )


def _url(name: str, *args: Any) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{reverse(name, args=args)}"


def ticket_link(ticket: EscalationTicket) -> str:
    return _url("ticket_detail", ticket.pk)


def ticket_opened(ticket_id: int) -> None:
    """Reviewers get every new ticket, most urgent first in the subject ("P1 ..."); signed
    webhooks get it when it is as urgent as they asked (``max_ticket_priority``); the
    workflow's recipients subscribed to ``ticket.opened`` get it too."""
    ticket = EscalationTicket.objects.select_related("run").filter(pk=ticket_id).first()
    if ticket is None:
        return
    run = ticket.run
    subject = f"[Countersign] P{ticket.priority} {ticket.get_reason_display()}: {run.workflow_name}"
    text = f"{ticket.message}\n\nRun {ticket.run_id}, due {ticket.due_at:%Y-%m-%d %H:%M %Z}.\n{ticket_link(ticket)}"
    channels.send_email(_recipients(), subject, text)
    channels.send_email(recipients.for_workflow(run.workflow_name, "ticket.opened"), subject, text)
    channels.queue_webhooks(
        "ticket.opened",
        channels.slack_payload(
            "ticket.opened",
            subject.removeprefix("[Countersign] "),
            ticket.message,
            link=ticket_link(ticket),
            fields={
                "priority": ticket.priority,
                "reason": ticket.reason,
                "workflow": run.workflow_name,
                "run": str(run.pk),
                "due_at": ticket.due_at.isoformat(),
            },
        ),
        workflow_name=run.workflow_name,
        priority=ticket.priority,
    )


# --- approvals and runs ------------------------------------------------------------------------


def _money(value: Any) -> str:
    try:
        return f"${Decimal(str(value)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


def calculation_text(req: ApprovalRequest) -> str:
    """The estimate as the approval page shows it: each line, then the bound and the threshold."""
    calc = req.calculation or {}
    lines = [
        f"- {line.get('item', '')}: {line.get('calc', '')} = {line.get('usd', '')}"
        for line in calc.get("lines", [])
        if isinstance(line, dict)
    ]
    lines.append(
        f"Upper bound {_money(req.estimate_usd)} (approval threshold {_money(req.threshold_usd)}; "
        f"expected {_money(calc.get('expected_usd', '?'))}, model {calc.get('model', '?')})."
    )
    lines += [f"Budget warning: {w}" for w in calc.get("budget_warnings", [])]
    return "\n".join(lines)


def approval_requested(request_id: int) -> int:
    """Every manager who could decide it (never the requester: four-eyes) gets the request
    with its calculation and a link to the decision page, where they still sign in and where
    the four-eyes rule is checked again. Returns how many were emailed."""
    req = (
        ApprovalRequest.objects.select_related("run", "requested_by").filter(pk=request_id).first()
    )
    if req is None or req.status != ApprovalRequest.Status.PENDING:
        return 0
    run, link = req.run, _url("approval_detail", req.pk)
    managers = access.users_who_may_decide().exclude(pk=req.requested_by_id).exclude(email="")
    subject = (
        f"[Countersign] Approval needed: {run.workflow_name} run estimated at up to "
        f"{_money(req.estimate_usd)} by {req.requested_by.get_username()}"
    )
    text = (
        f"{req.requested_by.get_username()} started a {run.workflow_name} run estimated over the approval "
        f"threshold. Nothing is spent until a manager approves it.\n\nThe calculation:\n"
        f"{calculation_text(req)}\n\nThe request expires at {req.expires_at:%Y-%m-%d %H:%M %Z}.\n"
        f"Decide (sign in first): {link}"
    )
    sent = channels.send_email(managers.values_list("email", flat=True), subject, text)
    channels.queue_webhooks(
        "approval.requested",
        channels.slack_payload(
            "approval.requested",
            subject.removeprefix("[Countersign] "),
            f"Run {run.pk}",
            link=link,
            fields={
                "workflow": run.workflow_name,
                "run": str(run.pk),
                "requested_by": req.requested_by.get_username(),
                "estimate_usd": str(req.estimate_usd),
                "threshold_usd": str(req.threshold_usd),
            },
        ),
        workflow_name=run.workflow_name,
    )
    return sent


def approval_decided(run_id: Any) -> int:
    """The requester learns the decision on their request (approved, rejected with the
    reason, or expired)."""
    req = (
        ApprovalRequest.objects.select_related("run", "requested_by", "decided_by")
        .filter(run_id=run_id)
        .exclude(status=ApprovalRequest.Status.PENDING)
        .order_by("-decided_at")
        .first()
    )
    if req is None:
        return 0
    run, link = req.run, _url("run_detail", run_id)
    who = req.decided_by.get_username() if req.decided_by_id else "the expiry check"
    subject = f"[Countersign] Your {run.workflow_name} run was {req.status} by {who}"
    text = (
        f"Your {run.workflow_name} run (estimated at up to {_money(req.estimate_usd)}) was {req.status} by {who}"
        + (f": {req.comment}" if req.comment else ".")
        + (
            "\nIt is queued and will start shortly."
            if req.status == ApprovalRequest.Status.APPROVED
            else ""
        )
        + f"\n{link}"
    )
    sent = channels.send_email([req.requested_by.email], subject, text)
    channels.queue_webhooks(
        "approval.decided",
        channels.slack_payload(
            "approval.decided",
            subject.removeprefix("[Countersign] "),
            req.comment,
            link=link,
            fields={
                "workflow": run.workflow_name,
                "run": str(run.pk),
                "decision": req.status,
                "decided_by": who,
            },
        ),
        workflow_name=run.workflow_name,
    )
    return sent


def run_ended(run_id: Any) -> int:
    """The requester (and the workflow's recipients subscribed to ``run.ended``) learn how
    their run ended, what it cost, and why it stopped if it did not succeed."""
    run = Run.objects.select_related("requested_by").filter(pk=run_id).first()
    # An evaluation's runs end by the dozen: the evaluation page reports them, not email.
    if run is None or not run.is_final or run.is_evaluation:
        return 0
    link = _url("run_detail", run.pk)
    status = run.status.replace("_", " ")
    subject = f"[Countersign] {run.workflow_name} run {str(run.pk)[:8]} {status}"
    text = (
        f"Your {run.workflow_name} run ended: {status}. It cost {_money(run.cost_usd)}."
        + (f"\nWhy: {run.error}" if run.error else "")
        + f"\n{link}"
    )
    sent = channels.send_email([run.requested_by.email], subject, text)
    sent += channels.send_email(
        recipients.for_workflow(run.workflow_name, "run.ended"), subject, text
    )
    channels.queue_webhooks(
        "run.ended",
        channels.slack_payload(
            "run.ended",
            subject.removeprefix("[Countersign] "),
            run.error,
            link=link,
            fields={
                "workflow": run.workflow_name,
                "run": str(run.pk),
                "status": run.status,
                "cost_usd": str(run.cost_usd),
                "requested_by": run.requested_by.get_username(),
            },
        ),
        workflow_name=run.workflow_name,
    )
    return sent


def run_status_changed(run_id: Any, previous: str, target: str) -> int:
    """What a run's move means for people (called by reviews.tasks.notify_run_status)."""
    S = Run.Status
    if target == S.AWAITING_APPROVAL:
        req = ApprovalRequest.objects.filter(
            run_id=run_id, status=ApprovalRequest.Status.PENDING
        ).first()
        return approval_requested(req.pk) if req else 0
    sent = 0
    if previous == S.AWAITING_APPROVAL and target in (S.APPROVED, S.REJECTED, S.CANCELLED):
        sent += approval_decided(run_id)
    if target in Run.FINAL and target != S.REJECTED:  # a rejection's email already says it all
        sent += run_ended(run_id)
    return sent


# The moves someone is told about (reviews.tasks.on_run_status_changed queues only these).
RELEVANT = frozenset({Run.Status.AWAITING_APPROVAL, Run.Status.APPROVED, *Run.FINAL})


def _ticket_notice_webhooks(
    event: str, title: str, why: str, notes: list[tuple[EscalationTicket, str]]
) -> list[int]:
    """A notice about several tickets to the signed webhooks subscribed to ``event``: each
    endpoint gets one delivery listing the tickets it wants (its workflow, if it names one,
    and tickets as urgent as its *max ticket priority*), nothing if it wants none."""

    def payload_for(endpoint: WebhookEndpoint) -> dict[str, Any] | None:
        mine = [
            (t, line)
            for t, line in notes
            if endpoint.wants(event, workflow_name=t.run.workflow_name, priority=t.priority)
        ]
        if not mine:
            return None
        lines = "\n".join(line for _, line in mine)
        payload = channels.slack_payload(
            event,
            title.format(count=len(mine)),
            f"{why}\n\n{lines}" if why else lines,
            link=_url("ticket_queue"),
            fields={
                "count": len(mine),
                "most_urgent": f"P{min(t.priority for t, _ in mine)}",
                "workflows": ", ".join(sorted({t.run.workflow_name for t, _ in mine})),
            },
        )
        payload["countersign"]["tickets"] = [
            {
                "ticket": t.pk,
                "priority": t.priority,
                "reason": t.reason,
                "workflow": t.run.workflow_name,
                "run": str(t.run_id),
                "due_at": t.due_at.isoformat(),
                "link": ticket_link(t),
            }
            for t, _ in mine
        ]
        return payload

    return channels.queue_each(event, payload_for)


def tickets_overdue(notes: list[tuple[EscalationTicket, str]]) -> None:
    """One overdue notice: ``notes`` (ticket, line) in order (reviews.sla puts P1 first and
    says how late), emailed to the reviewers and sent to the ``ticket.overdue`` webhooks."""
    lines = [line for _, line in notes]
    channels.send_email(
        _recipients(), f"[Countersign] {len(lines)} escalation(s) overdue", "\n".join(lines)
    )
    _ticket_notice_webhooks("ticket.overdue", "{count} escalation(s) overdue", "", notes)


def tickets_escalated(notes: list[tuple[EscalationTicket, str]], why: str) -> None:
    """Late P1 tickets, emailed to the managers and sent to the ``ticket.escalated`` webhooks
    (reviews.sla, after the grace period)."""
    lines = [line for _, line in notes]
    managers = (
        access.users_who_manage().exclude(email="").order_by().values_list("email", flat=True)
    )
    channels.send_email(
        managers,
        f"[Countersign] {len(lines)} P1 escalation(s) overdue: escalated to managers",
        why + "\n\n" + "\n".join(lines),
    )
    _ticket_notice_webhooks(
        "ticket.escalated", "{count} P1 escalation(s) overdue: escalated to managers", why, notes
    )
