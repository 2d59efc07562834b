"""The declared limits of the tool loop the seed names: retries per tool, latency per step and
per run. The one owner of these rules; the engine and the tool executor call it.

- **Retries per tool.** ``Tool.max_attempts`` bounds the attempts of one tool (its handler's
  failures, and the invalid inputs or refusals of that tool in a round); a tool that declares
  none has the workflow's ``Constraints.max_attempts_per_tool``.
- **Latency per step.** ``Constraints.step_latency_seconds``: the seed's "if any step takes
  > 30 seconds, timeout and escalate". A step is one model call and the tool calls it asked
  for. Its tools' timeouts are cut to what is left of the step's budget, and a tool stopped by
  that budget is not retried; a step that ends over its budget (a slow model answer, say)
  escalates as soon as it ends. The model's answer, already paid for, is kept: a reviewer who
  resumes the run goes on from it.
- **Latency per run.** ``Constraints.run_latency_seconds``: the run's working time (its model
  calls and tool calls as recorded, not the time it waited for a backoff, a batch or a person)
  may not exceed it. A reviewer who resumes a run stopped by this limit grants it another
  allowance (as for the step limit). The run's wall-clock ``run_timeout_seconds`` stays what
  it was (reason ``timeout``).

Both latency limits escalate with their own reason, ``latency_limit`` (priority and due time in
reviews.sla).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Sum

from orchestration.models import ModelCall, Run, ToolCall
from orchestration.workflows.declaration import Constraints, Tool
from reviews.escalation import escalate
from reviews.models import EscalationTicket

R = EscalationTicket.Reason

# The message of a run-level latency ticket starts so: a resumed run's allowance counts them.
RUN_LIMIT_MESSAGE = "The run has worked"


def attempts_for(tool: Tool, constraints: Constraints) -> int:
    """How many attempts (and invalid inputs, and refusals) of ``tool`` a round allows."""
    return tool.max_attempts if tool.max_attempts is not None else constraints.max_attempts_per_tool


# --- the step clock ----------------------------------------------------------------------


@dataclass
class StepClock:
    limit: float | None
    started: float

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float | None:
        return None if self.limit is None else self.limit - self.elapsed()


# The step being run in this thread (and, copied, in its tool threads): its latency budget.
_step: contextvars.ContextVar[StepClock | None] = contextvars.ContextVar(
    "countersign_step_clock", default=None
)


@contextlib.contextmanager
def step_clock(constraints: Constraints) -> Iterator[StepClock]:
    """Time one step; its tools read the budget left (``tool_timeout``)."""
    clock = StepClock(limit=constraints.step_latency_seconds, started=time.monotonic())
    token = _step.set(clock)
    try:
        yield clock
    finally:
        _step.reset(token)


@dataclass(frozen=True)
class ToolBudget:
    seconds: float
    # True when the step's latency budget, not the tool's own timeout, set ``seconds``: a
    # timeout then escalates (``latency_limit``) instead of being retried.
    by_step: bool


def tool_timeout(tool: Tool, constraints: Constraints) -> ToolBudget:
    """The timeout of the tool's next attempt: its own, the workflow's, and what is left of the step."""
    own = min(tool.timeout_seconds, constraints.tool_timeout_seconds)
    clock = _step.get()
    left = clock.remaining() if clock is not None else None
    if left is not None and left < own:
        return ToolBudget(
            seconds=round(max(left, 0.0), 1), by_step=True
        )  # "within 7.1s", not 7.09533s
    return ToolBudget(seconds=own, by_step=False)


def step_limit_message(tool_name: str, budget: ToolBudget) -> str:
    clock = _step.get()
    limit = clock.limit if clock is not None else budget.seconds
    return (
        f"The step went over its {limit:g}s latency limit: {tool_name} was stopped after the "
        f"{budget.seconds:.1f}s the step had left."
    )


# --- after a step ------------------------------------------------------------------------


def run_work_seconds(run: Run) -> float:
    """The run's working time so far: its orchestrator's model calls and its tool calls, as
    recorded (their ``latency_ms``). A call answered through Message Batches is left out: its
    latency is the batch's queueing, which batch mode accepts by choice (half price, up to
    24 h), not work a latency limit is about."""
    model = (
        ModelCall.objects.filter(run=run, job__isnull=True, batch_id="").aggregate(
            ms=Sum("latency_ms")
        )["ms"]
        or 0
    )
    tools = ToolCall.objects.filter(run=run).aggregate(ms=Sum("latency_ms"))["ms"] or 0
    return (model + tools) / 1000


def _run_allowance(run: Run, limit: float) -> float:
    resumed = run.tickets.filter(
        reason=R.LATENCY_LIMIT,
        status=EscalationTicket.Status.RESOLVED,
        message__startswith=RUN_LIMIT_MESSAGE,
    ).count()
    return limit * (1 + resumed)


def after_step(run: Run, constraints: Constraints, clock: StepClock) -> bool:
    """Escalate (``latency_limit``) a run still running whose step or working time went over
    its declared limit. Returns whether it escalated."""
    step_limit, run_limit = constraints.step_latency_seconds, constraints.run_latency_seconds
    if step_limit is None and run_limit is None:
        return False
    elapsed = clock.elapsed()
    message, details = "", {}
    if step_limit is not None and elapsed > step_limit:
        message = f"Step {run.steps_taken} took {elapsed:.1f}s; the workflow's step latency limit is {step_limit:g}s."
        details = {
            "limit": "step",
            "limit_seconds": step_limit,
            "elapsed_seconds": round(elapsed, 3),
        }
    elif run_limit is not None:
        worked = run_work_seconds(run)
        allowed = _run_allowance(run, run_limit)
        if worked > allowed:
            message = (
                f"{RUN_LIMIT_MESSAGE} {worked:.1f}s (model and tool calls); its latency limit is "
                f"{run_limit:g}s"
                + (
                    f" ({allowed:g}s with the allowances reviewers granted)."
                    if allowed != run_limit
                    else "."
                )
            )
            details = {
                "limit": "run",
                "limit_seconds": run_limit,
                "allowed_seconds": allowed,
                "worked_seconds": round(worked, 3),
            }
    if not message or not Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).exists():
        return False
    escalate(run.pk, R.LATENCY_LIMIT, message, details=details)
    return True
