"""The run state machine: the one place a run's status changes.

Views, tasks, the engine and the admin call ``transition``; nothing else assigns
``Run.status``. Each transition locks the row (select_for_update), checks the move is
allowed, writes the audit event in the same transaction, and enqueues the next step only
after commit, so two managers clicking "approve" at once enqueue the run once.

Sub-agents (orchestration.subagents): a run that handed work to sub-agent runs parks in
``awaiting_subagent``. The transition that ends its last unfinished child queues it again,
in the child's own transaction (so no wake-up can be lost between them), and a cancelled
parent cancels its unfinished children after it commits. Rows are always locked child
first, then parent.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from orchestration import audit, dispatch
from orchestration.models import Run
from orchestration.signals import send_run_status_changed

S = Run.Status

ALLOWED: dict[str, frozenset[str]] = {
    S.REQUESTED: frozenset({S.AWAITING_APPROVAL, S.QUEUED, S.CANCELLED}),
    S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED}),
    S.APPROVED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset(
        {S.SUCCEEDED, S.FAILED, S.AWAITING_REVIEW, S.AWAITING_SUBAGENT, S.HALTED, S.CANCELLED}
    ),
    S.AWAITING_REVIEW: frozenset({S.QUEUED, S.SUCCEEDED, S.FAILED, S.CANCELLED}),
    # Parked while its sub-agent runs work; queued again when the last of them ends.
    S.AWAITING_SUBAGENT: frozenset({S.QUEUED, S.FAILED, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.HALTED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Where a person may cancel a run from (orchestration.run_actions.cancel): every state that
# is not final. A cancelled run is final; a step still holding its lease notices at its next
# commit point (``insert_if_running``, ``still_running``) and records no further side effect.
CANCELLABLE: tuple[str, ...] = tuple(s for s, targets in ALLOWED.items() if S.CANCELLED in targets)

# Fields a transition may set alongside the status.
_SETTABLE = frozenset({"result", "error", "pending_note", "estimate", "estimate_usd"})


class InvalidTransition(Exception):
    """The run is not in a state that allows the requested move; nothing was changed."""

    def __init__(self, run: Run, target: str) -> None:
        allowed = ", ".join(sorted(ALLOWED[run.status])) or "nothing (it is final)"
        super().__init__(
            f"Run {run.pk} is {run.status} and cannot become {target}; from {run.status} it can "
            f"become: {allowed}."
        )
        self.run = run
        self.target = target


def can_transition(run: Run, target: str) -> bool:
    return target in ALLOWED[run.status]


def still_running(run_id: Any) -> bool:
    """Whether the run is still running: asked by a step at its commit points (before a tool
    attempt starts), so a run cancelled meanwhile starts no further side effect. One indexed
    read; the answer holds until the next commit point, which asks again."""
    with connection.cursor() as cursor:  # plain SQL: asked before every tool attempt
        cursor.execute(_STILL_RUNNING.format(table=Run._meta.db_table), [run_id, S.RUNNING])
        return cursor.fetchone() is not None


_STILL_RUNNING = "SELECT 1 FROM {table} WHERE id = %s AND status = %s"


def insert_if_running(obj: models.Model, run_id: Any) -> bool:
    """Insert ``obj`` (unsaved) only if its run is still running, in one statement: the
    commit point of ``still_running`` and the insert together (a tool attempt's row, before
    its handler runs). False, with nothing saved, when the run is not running."""
    meta = obj._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key and not f.generated]
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    sql = _INSERT_IF_RUNNING.format(
        table=meta.db_table,
        columns=", ".join(connection.ops.quote_name(f.column) for f in fields),
        values=", ".join(["%s"] * len(fields)),
        runs=Run._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, run_id, S.RUNNING])
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding, obj._state.db = False, connection.alias
    return True


_INSERT_IF_RUNNING = """
INSERT INTO {table} ({columns}) SELECT {values}
WHERE EXISTS (SELECT 1 FROM {runs} WHERE id = %s AND status = %s) RETURNING id
"""


def transition(
    run_id: Any,
    target: str,
    *,
    actor: Any = None,
    event_payload: dict[str, Any] | None = None,
    expected: tuple[str, ...] | None = None,
    **fields: Any,
) -> Run:
    """Move a run to ``target`` under a row lock and record it; returns the updated run.

    ``expected`` narrows the allowed source states for callers that only act from some
    (e.g. a resolution only applies to a run awaiting review). Raises InvalidTransition
    without changing anything when the move is not allowed.
    """
    unknown = set(fields) - _SETTABLE
    if unknown:
        raise TypeError(f"transition() cannot set {sorted(unknown)}")
    with transaction.atomic():
        run = Run.objects.locked().get(pk=run_id)
        if not can_transition(run, target) or (expected and run.status not in expected):
            raise InvalidTransition(run, target)
        previous = run.status
        run.status = target
        now = timezone.now()
        for name, value in fields.items():
            setattr(run, name, value)
        if target == S.QUEUED:
            run.queued_at = now
        if target == S.RUNNING and run.started_at is None:
            run.started_at = now
        if target in Run.FINAL:
            run.finished_at = now
            run.lease_expires_at = None
        if target in (S.AWAITING_REVIEW, S.AWAITING_SUBAGENT):
            run.lease_expires_at = None
        run.save()
        audit.record(
            f"run.{target}",
            run=run,
            actor=actor,
            payload={"from": previous, "to": target, **(event_payload or {})},
            evidence_of=[run],  # the run's input and result as they are now
        )
        # Notifications (approval requests, decisions, run ends) hang off this, after commit:
        # nothing a receiver does can slow or break the transition.
        transaction.on_commit(lambda: send_run_status_changed(run.pk, previous, target))
        if target == S.QUEUED:
            transaction.on_commit(lambda: dispatch.enqueue_step(run.pk))
        if target in Run.FINAL and run.parent_id is not None:
            _wake_parent(run)
        if target == S.CANCELLED:
            transaction.on_commit(lambda: _cancel_children(run.pk, actor))
    return run


def unfinished_children(run_id: Any) -> Any:
    """The run's sub-agent runs that have not ended."""
    return Run.objects.filter(parent_id=run_id).exclude(status__in=Run.FINAL)


def _wake_parent(child: Run) -> None:
    """The child just ended (in this transaction): queue its parked parent if no other child
    of it is still unfinished. The parent's lock is taken after the child's, and the check
    reads the siblings under it, so of two children ending at once the second sees the first."""
    parent = (
        Run.objects.locked().filter(pk=child.parent_id).values_list("status", flat=True).first()
    )
    if (
        parent != S.AWAITING_SUBAGENT
        or unfinished_children(child.parent_id).exclude(pk=child.pk).exists()
    ):
        return
    transition(
        child.parent_id,
        S.QUEUED,
        actor="engine",
        event_payload={
            "sub_agent_run": str(child.pk),
            "sub_agent_status": child.status,
        },
    )


def _cancel_children(run_id: Any, actor: Any) -> None:
    """A cancelled run's unfinished sub-agent runs are cancelled too (each in its own
    transaction, after the parent's committed: locks stay child before parent)."""
    for child_id in unfinished_children(run_id).values_list("pk", flat=True):
        with contextlib.suppress(InvalidTransition):  # it ended meanwhile
            transition(
                child_id, S.CANCELLED, actor=actor, event_payload={"parent_cancelled": str(run_id)}
            )
