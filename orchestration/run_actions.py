"""What a person may do with a whole run: re-run it, fork it from a step, cancel it, compare two.

Each action is one function holding its whole validation, so the pages call it today and the
JSON API will call the same function: a refusal is an ``ActionRefused`` whose ``code`` maps to
a status (``not_found`` 404, ``forbidden`` 403, ``conflict`` 409, ``invalid_input`` 422, and
the start gate's ``budget_exceeded``, ``rate_limited``, ``user_paused``) and nothing changes.
Who may act is asked of ``reviews.access``; a run the user cannot see is ``not_found``.

- **Re-run** (``rerun``): a new run with the original's input and options, through the same
  start path as any run (``launch.start_run``: the pause, budgets, daily limit, estimate and
  approval gate), linked to the original (``Run.origin``, ``origin_kind="rerun"``).
- **Fork**: ``orchestration.forks`` (the same refusals, the same start path).
- **Cancel** (``cancel``): a run that is not final stops for good. Under the run's row lock:
  its pending model calls give their reservations back (``accounting.release_for_cancelled_run``),
  its outstanding fan-out jobs are cancelled, its open ticket and pending approval request are
  closed as cancelled, and it moves to ``cancelled`` through the state machine. A worker in
  the middle of a step notices at its next commit point (``lifecycle.insert_if_running``, the
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
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from costs import accounting
from orchestration import audit, lifecycle
from orchestration.fanout.models import FanoutJob
from orchestration.launch import RunRefused, start_run
from orchestration.models import ModelCall, Run, RunAuditHead, ToolCall
from orchestration.untrusted import Rejected, check_text
from reviews import access, approvals, resolutions
from reviews.models import EscalationTicket

S = Run.Status
TC = ToolCall.Status
ZERO = Decimal("0")


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


def link_origin(new: Run, original: Run, kind: str, turn: int | None = None) -> None:
    new.origin, new.origin_kind, new.fork_turn = original, kind, turn
    new.save(update_fields=["origin", "origin_kind", "fork_turn", "updated_at"])


def origin_head(run: Run) -> dict[str, Any] | None:
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
        link_origin(new, original, Run.Origin.RERUN)
        audit.record(
            "run.rerun_of",
            run=new,
            actor=user,
            payload={
                "origin": str(original.pk),
                "origin_status": original.status,
                "origin_head": origin_head(original),
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
