"""Service levels of escalation tickets: the target per reason, lateness, overdue reminders and
the escalation of late P1 tickets to the managers. The one owner of these rules.

- **Targets.** A new ticket's priority (1 = most urgent) and due time come from its reason's
  ``SlaTarget`` row, edited in the admin; a reason without a row uses ``DEFAULT_SLA`` (the
  values this module held before the targets moved to the admin; migration
  ``reviews/0007_auditor_trail_sla`` seeded the rows from them and from ``ESCALATION_SLA``).
- **Overdue.** A ticket is overdue once ``now > due_at``: at its due time exactly it is due,
  not late. ``due_at`` is never moved: it is the deadline that lateness is measured from.
- **Reminders.** Every unresolved overdue ticket, whatever its priority, gets an overdue
  notice, then another every ``SLA_REMINDER_MINUTES`` while it stays overdue. One notice lists
  them P1 first (then the latest first), each with how late it is.
- **Escalation.** A P1 ticket still unresolved more than ``SLA_P1_GRACE_MINUTES`` after its
  due time is escalated to the managers once (``escalated_at``), with an audit event
  ``ticket.sla_escalated`` on its run. At exactly the grace it is not yet escalated.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from orchestration import audit
from reviews import notifications
from reviews.models import EscalationTicket, SlaTarget

R = EscalationTicket.Reason
PRIORITIES = (1, 2, 3)

# (priority, minutes until due) per reason, used where the admin has no row for a reason.
DEFAULT_SLA: dict[str, tuple[int, int]] = {
    R.REGULATORY_TRIGGER: (1, 60),
    R.BUDGET_EXCEEDED: (1, 60),
    R.FAILURE_RATE_EXCEEDED: (1, 60),
    R.HALLUCINATION: (1, 120),
    R.VALIDATION_FAILED: (2, 240),
    R.RETRIES_EXHAUSTED: (2, 240),
    R.UNKNOWN_TOOL: (2, 240),
    R.TOOL_ERROR: (2, 240),
    R.TIMEOUT: (2, 240),
    R.AMBIGUITY: (3, 480),
    R.STEP_LIMIT: (3, 480),
    R.UNDECRYPTABLE: (1, 60),
    # A step or a run slower than its declared latency limit (the seed: "if any step takes
    # > 30 seconds, timeout and escalate"): a stuck dependency, looked at within the hour.
    R.LATENCY_LIMIT: (2, 60),
}


def sla_for(reason: str) -> tuple[int, dt.timedelta]:
    """(priority, time until due) for a new ticket of this reason."""
    row = SlaTarget.objects.filter(reason=reason).values_list("priority", "due_minutes").first()
    priority, minutes = row or DEFAULT_SLA.get(reason, (2, 240))
    return int(priority), dt.timedelta(minutes=int(minutes))


def lateness(due_at: dt.datetime, now: dt.datetime) -> str:
    """How late a ticket due at ``due_at`` is at ``now``, in words: "1 h 05 min late"."""
    seconds = int((now - due_at).total_seconds())
    if seconds <= 0:
        return "not late"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days} d {hours} h"
    elif hours:
        text = f"{hours} h {minutes:02d} min"
    elif minutes:
        text = f"{minutes} min"
    else:
        text = f"{secs} s"
    return f"{text} late"


def overdue(now: dt.datetime) -> QuerySet[EscalationTicket]:
    """Unresolved tickets past their due time (strictly)."""
    return EscalationTicket.objects.exclude(status=EscalationTicket.Status.RESOLVED).filter(
        due_at__lt=now
    )


def breaches_by_priority(tickets: QuerySet[EscalationTicket], now: dt.datetime) -> dict[int, int]:
    """Overdue tickets among ``tickets`` per priority, every priority listed (0 when none)."""
    rows = (
        tickets.exclude(status=EscalationTicket.Status.RESOLVED)
        .filter(due_at__lt=now)
        .values("priority")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = dict.fromkeys(PRIORITIES, 0)
    for row in rows:
        counts[row["priority"]] = row["n"]
    return counts


def send_reminders(now: dt.datetime | None = None) -> tuple[int, int]:
    """Send the overdue notices that are due and escalate late P1 tickets to the managers.

    Returns (tickets reminded, tickets escalated). Each ticket is claimed with its row lock
    (skip_locked: a second beat or a slow run does not double the notices) and stamped in the
    same transaction; the messages go out after it commits."""
    now = now or timezone.now()
    every = dt.timedelta(minutes=settings.SLA_REMINDER_MINUTES)
    grace = dt.timedelta(minutes=settings.SLA_P1_GRACE_MINUTES)
    with transaction.atomic():
        remind = list(
            overdue(now)
            .filter(Q(reminded_at__isnull=True) | Q(reminded_at__lte=now - every))
            .select_for_update(skip_locked=True)
            .order_by("priority", "due_at", "pk")
            .values_list("pk", flat=True)
        )
        EscalationTicket.objects.filter(pk__in=remind).update(reminded_at=now)
        escalate = list(
            overdue(now - grace)
            .filter(priority=1, escalated_at__isnull=True)
            .select_for_update(skip_locked=True)
            .select_related("run")
            .order_by("due_at", "pk")
        )
        for ticket in escalate:
            EscalationTicket.objects.filter(pk=ticket.pk).update(escalated_at=now)
            audit.record(
                "ticket.sla_escalated",
                run=ticket.run,
                actor="system",
                payload={
                    "ticket": ticket.pk,
                    "priority": ticket.priority,
                    "due_at": ticket.due_at.isoformat(),
                    "late_seconds": int((now - ticket.due_at).total_seconds()),
                    "grace_minutes": settings.SLA_P1_GRACE_MINUTES,
                },
            )
        if remind:
            transaction.on_commit(lambda: _notify_overdue(remind, now))
        if escalate:
            ids = [t.pk for t in escalate]
            transaction.on_commit(lambda: _notify_escalated(ids, now, grace))
    return len(remind), len(escalate)


def _line(ticket: EscalationTicket, now: dt.datetime) -> str:
    due = timezone.localtime(ticket.due_at).strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"P{ticket.priority} {ticket.get_reason_display()} on {ticket.run.workflow_name}: "
        f"{lateness(ticket.due_at, now)} (due {due}) {notifications.ticket_link(ticket)}"
    )


def _ordered(ids: list[int]) -> list[EscalationTicket]:
    """The tickets P1 first, then the latest first: the order of every notice."""
    return list(
        EscalationTicket.objects.filter(pk__in=ids)
        .select_related("run")
        .order_by("priority", "due_at", "pk")
    )


def _notify_overdue(ids: list[int], now: dt.datetime) -> None:
    tickets = _ordered(ids)
    if tickets:
        notifications.tickets_overdue([(t, _line(t, now)) for t in tickets])


def _notify_escalated(ids: list[int], now: dt.datetime, grace: dt.timedelta) -> None:
    tickets = _ordered(ids)
    if tickets:
        minutes = int(grace.total_seconds() // 60)
        notifications.tickets_escalated(
            [(t, _line(t, now)) for t in tickets],
            f"Still unresolved {minutes} min after their due time: these P1 tickets need a manager.",
        )
