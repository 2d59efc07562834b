"""The tool-use loop, one bounded step at a time, several steps per task.

A step is one model call and the tool calls it asked for. A Celery task (``advance_run``)
runs the run's steps one after another while it holds the run's lease:

1. claim the lease with one ``UPDATE ... RETURNING`` (a redelivered or duplicated task finds
   the run held and does nothing); a queued run becomes running here first;
2. on the task's first step, read the conversation from the persisted ModelCalls and
   ToolCalls (``Conversation``); later steps of the same task keep it in memory;
3. if the last turn's tool_uses are not all settled (a worker died mid-step), settle them
   now; otherwise check the run's limits and make the model call through
   ``orchestration.model_calls`` (reserve against the spend ceiling, stream, then record,
   charge and audit the answer in one transaction with the step's own writes), check the
   spend first, then settle the tool_uses it asked for;
4. when the model ends its turn, validate the final answer (JSON, output schema,
   required tools, provenance of tool-sourced values, regulatory sign-off) and finish;
5. when the run can go on at once and the task's time slice (ENGINE_TASK_SLICE_SECONDS) is
   not spent, renew the lease (the same one-statement claim) and take the next step;
   otherwise release the lease and, if the run must wait (a backoff) or the slice is spent,
   enqueue its next step on commit.

Anything that cannot go on safely escalates (reviews.escalation), pausing the run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections, transaction
from django.utils import timezone

from costs import accounting
from ops import tracing
from ops.logs import bind as log_bind
from ops.logs import log_context
from orchestration import (
    audit,
    dispatch,
    fallbacks,
    hostile_output,
    lifecycle,
    limits,
    model_calls,
    storable,
    subagents,
)
from orchestration.fanout import coordinator
from orchestration.fanout import jobs as fanout_jobs
from orchestration.llm import client_for
from orchestration.model_routing import route as route_turn
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall, WorkflowVersion
from orchestration.privacy import PayloadKeyError, require_readable
from orchestration.record import recorded_state
from orchestration.tool_execution import (
    Escalation,
    Known,
    in_round,
    round_start,
    settle_turn,
    tool_result_blocks,
)
from orchestration.validation import (
    parse_json_answer,
    schema_errors,
    states_ambiguity,
    unsourced_values,
)
from orchestration.workflows.declaration import Workflow
from orchestration.workflows.versions import VersionUnavailable, api_tools, workflow_for
from reviews.escalation import escalate, pause_if_running
from reviews.models import EscalationTicket

logger = logging.getLogger(__name__)
S = Run.Status
R = EscalationTicket.Reason


@dataclass(frozen=True)
class StepResult:
    """What the task should do next: nothing (``None``), or the next step after ``next_in``
    seconds (0: at once, in this task while its slice lasts)."""

    next_in: float | None


@dataclass
class Conversation:
    """What consecutive steps of one task keep instead of re-reading it: the run's answered
    model calls in turn order, and whether the next turn is new (no attempt of it exists)."""

    loaded: bool = False
    calls: list[ModelCall] = field(default_factory=list)
    fresh_turn: bool = False
    allowed_steps: int | None = None
    # The round's start, the accepted tool calls and the last turn's settled attempts
    # (tool_execution.Known), once a turn's tool_uses were settled in this task.
    known: Known | None = None

    def known_for(self, run: Run) -> Known:
        if self.known is None:
            # Fixed while the run is running: only a reviewer resolves tickets or corrects a
            # call, and only while the run waits for review.
            self.known = Known(since=round_start(run), record=recorded_state(run))
        self.known.settled = {}
        return self.known


# --- the lease ---------------------------------------------------------------------------

_CLAIM_SQL = """
UPDATE {table} SET lease_expires_at = %s, steps_taken = steps_taken + 1, updated_at = %s
WHERE id = %s AND status = 'running'{free}
RETURNING *
"""


def _take_lease(run_id: Any, *, renew: bool = False) -> Run | None:
    """One statement: the lease (free or expired, or ours to renew) and the run as it is now."""
    now = timezone.now()
    free = "" if renew else " AND (lease_expires_at IS NULL OR lease_expires_at <= %s)"
    sql = _CLAIM_SQL.format(table=Run._meta.db_table, free=free)
    lease = now + dt.timedelta(seconds=settings.RUN_STEP_LEASE_SECONDS)
    params = [lease, now, run_id] + ([] if renew else [now])
    return next(iter(Run.objects.raw(sql, params)), None)


def lease_keeper(run_id: Any) -> Callable[[], None]:
    """Keeps this step's lease while a long model call streams: called as the answer arrives,
    it pushes the lease out (one UPDATE, at most every third of the lease) so the reaper does
    not take a step that is still making progress for a dead one."""
    every = settings.RUN_STEP_LEASE_SECONDS / 3
    last = time.monotonic()

    def keep_alive() -> None:
        nonlocal last
        if time.monotonic() - last < every:
            return
        last = time.monotonic()
        Run.objects.filter(pk=run_id, status=S.RUNNING, lease_expires_at__isnull=False).update(
            lease_expires_at=timezone.now() + dt.timedelta(seconds=settings.RUN_STEP_LEASE_SECONDS)
        )

    return keep_alive


def claim_step(run_id: Any) -> Run | None:
    """Take the run's lease for one step, or return None when it is not ours to run."""
    run = _take_lease(run_id)
    if run is not None:
        return run
    with transaction.atomic():  # a queued run (started, resumed) becomes running first
        status = Run.objects.locked().filter(pk=run_id).values_list("status", flat=True).first()
        if status != S.QUEUED:
            return None
        lifecycle.transition(run_id, S.RUNNING, actor="engine")
    return _take_lease(run_id)


def release_step(run_id: Any, next_in: float | None) -> None:
    """Give the lease back; while the run is running, enqueue its next step after commit."""
    with transaction.atomic():
        released = Run.objects.filter(pk=run_id, status=S.RUNNING).update(
            lease_expires_at=None, updated_at=timezone.now()
        )
        if released and next_in is not None:
            transaction.on_commit(lambda: dispatch.enqueue_step(run_id, countdown=next_in))


# --- per-process caches ------------------------------------------------------------------

# Workflow versions are immutable snapshots (a change is a new row with a new id), so a
# version read once is good for the life of the process.
_versions: dict[int, WorkflowVersion] = {}


def _version(run: Run) -> WorkflowVersion:
    version = _versions.get(run.workflow_version_id)
    if version is None:
        version = _versions[run.workflow_version_id] = WorkflowVersion.objects.get(
            pk=run.workflow_version_id
        )
    run.workflow_version = version  # the FK's cache: no query when the run's code reads it
    return version


# --- the task ----------------------------------------------------------------------------


def run_step(run_id: Any) -> None:
    """Run the run's steps while they can go on at once (the Celery task's body)."""
    with log_context(run_id=str(run_id)):
        run = claim_step(run_id)
        if run is None:
            return
        slice_ends = time.monotonic() + settings.ENGINE_TASK_SLICE_SECONDS
        conversation_so_far: Conversation | None = None
        result = StepResult(next_in=None)
        try:
            while True:
                with tracing.span("countersign.step", run_id=str(run_id)):
                    result, conversation_so_far = _one_step(run, conversation_so_far)
                if result.next_in != 0 or time.monotonic() >= slice_ends:
                    break
                run = _take_lease(run_id, renew=True)
                if run is None:  # paused or stopped meanwhile (by this step or a person)
                    return
        finally:
            release_step(run_id, result.next_in)


def _one_step(run: Run, state: Conversation | None) -> tuple[StepResult, Conversation | None]:
    log_bind(step=run.steps_taken)
    logger.info("step started", extra={"workflow": run.workflow_name})
    result = StepResult(next_in=None)
    try:
        try:
            # The code whose snapshot is the run's version, never other code under its label
            # (the version row from this process's cache: a lease hands back a fresh Run).
            _version(run)
            workflow = workflow_for(run)
            if workflow.fanout is not None:
                # Enterprise mode has its own steps (decompose, dispatch, aggregate); its job
                # calls run in parallel on other workers, so the cleanup of _first_step must
                # not touch them.
                return StepResult(coordinator.step(run, workflow)), None
            if state is None:
                state = Conversation()
            with limits.step_clock(workflow.constraints) as clock:  # the declared latency limits
                result = _step(run, workflow, state)
            if limits.after_step(run, workflow.constraints, clock):
                result = StepResult(None)
        except (OperationalError, InterfaceError) as exc:
            if not _database_went_away():
                raise  # a deadlock, a cancelled statement: a failure like any other (below)
            # A restart or failover of Postgres is not the run's fault: no reviewer is needed.
            # Everything the step committed stands and the next step resumes from there (as
            # after a worker crash); if the database is still away, the release fails too
            # and the reaper re-queues the run once its lease expires.
            logger.warning("step interrupted: the database went away (%s); resuming it later", exc)
            connections.close_all()
            return StepResult(next_in=DATABASE_RETRY_SECONDS), None
    except VersionUnavailable as exc:
        # Deployed code changed under a run (a deploy while it waited or ran): it pauses with
        # the reason instead of going on under its old label (orchestration.workflows.versions).
        logger.warning("step stopped: %s", exc, extra={"run_id": str(run.pk)})
        run.refresh_from_db()
        if run.status == S.RUNNING:
            escalate(run.pk, R.VERSION_UNAVAILABLE, str(exc))
        return StepResult(None), None
    except PayloadKeyError as exc:
        # A payload the run needs cannot be decrypted (a key missing from
        # PAYLOAD_ENCRYPTION_KEYS, or a corrupted row): no step can succeed until that is
        # fixed, so the run pauses with the reason instead of being retried forever.
        logger.warning("step stopped: %s", exc, extra={"run_id": str(run.pk)})
        run.refresh_from_db()
        if run.status == S.RUNNING:
            escalate(
                run.pk,
                R.UNDECRYPTABLE,
                f"The run cannot go on: {exc} Restore the key to "
                "PAYLOAD_ENCRYPTION_KEYS (see docs/operations.md), then retry this step.",
            )
        return StepResult(None), None
    except Exception as exc:
        # A bug or an unexpected failure must not leave the run spinning: record it and
        # put it in front of a human with the context.
        logger.exception("step failed", extra={"run_id": str(run.pk)})
        run.refresh_from_db()
        if run.status == S.RUNNING:
            escalate(
                run.pk, R.TOOL_ERROR, f"The engine failed on this step: {type(exc).__name__}: {exc}"
            )
        return StepResult(None), None
    return result, state


# After the database went away mid-step, the next step waits this long.
DATABASE_RETRY_SECONDS = 2.0


def _database_went_away() -> bool:
    """Whether this thread's connection is gone (server restarted, network cut)."""
    try:
        return connection.connection is None or not connection.is_usable()
    except Exception:  # noqa: BLE001 - any failure to even ask means it is gone
        return True


def _first_step(run: Run, workflow: Workflow, state: Conversation) -> StepResult:
    """The task's first step: pick up wherever the run is (a batch, a dead worker's turn)."""
    if _timed_out(run, workflow):
        escalate(
            run.pk, R.TIMEOUT, f"The run exceeded its {_timeout_seconds(run, workflow):g}s timeout."
        )
        return StepResult(None)
    waiting = run.model_calls.filter(status=ModelCall.Status.PENDING).exclude(batch_id="").first()
    if waiting is not None:
        return _collect_batch(run, workflow, waiting, state)
    # A call left pending by a dead worker: failed, and its reservation given back.
    accounting.release_interrupted(ModelCall.objects.filter(run=run, batch_id=""))
    calls = list(run.model_calls.filter(status=ModelCall.Status.OK).order_by("turn"))
    for mc in calls:  # replayed to the model: a placeholder must stop the run, not be sent
        require_readable(mc.request_content, f"The request of model turn {mc.turn}")
        require_readable(mc.response_content, f"The response of model turn {mc.turn}")
    state.calls = calls
    last = calls[-1] if calls else None

    if last is not None and last.stop_reason == "tool_use":
        settled = set(
            ToolCall.objects.filter(run=run, model_call__turn=last.turn, settled=True).values_list(
                "tool_use_id", flat=True
            )
        )
        pending = [tu for tu in last.tool_uses if tu["id"] not in settled]
        if pending:
            return _after_tools(run, settle_turn(run, workflow, last, pending), state)
    elif (
        last is not None
        and not run.pending_note
        and last.stop_reason in ("end_turn", "stop_sequence")
    ):
        return _finalize(run, workflow, last)

    return _model_turn(run, workflow, state)


def _step(run: Run, workflow: Workflow, state: Conversation) -> StepResult:
    """One step: the task's first picks up wherever the run is; a later step of the same task
    has the conversation in ``state``."""
    if not state.loaded:
        state.loaded = True
        return _first_step(run, workflow, state)
    if _timed_out(run, workflow):
        escalate(
            run.pk, R.TIMEOUT, f"The run exceeded its {_timeout_seconds(run, workflow):g}s timeout."
        )
        return StepResult(None)
    return _model_turn(run, workflow, state)


def _timeout_seconds(run: Run, workflow: Workflow) -> float:
    if run.options.get("batch"):  # each turn may wait for its batch (the API allows up to 24 h)
        return max(workflow.constraints.run_timeout_seconds, settings.BATCH_RUN_TIMEOUT_SECONDS)
    return workflow.constraints.run_timeout_seconds


def _timed_out(run: Run, workflow: Workflow) -> bool:
    since = run.queued_at or run.started_at
    limit = dt.timedelta(seconds=_timeout_seconds(run, workflow))
    return since is not None and timezone.now() - since > limit


def _after_tools(
    run: Run, escalation: Escalation | subagents.Waiting | None, state: Conversation
) -> StepResult:
    if isinstance(escalation, subagents.Waiting):  # a sub-agent's run answers a tool_use
        if subagents.park(run.pk):
            return StepResult(None)  # its end queues this run again (orchestration.lifecycle)
        state.loaded, state.known = False, None  # it ended already: settle its result afresh
        return StepResult(0)
    if escalation is not None:
        _escalate(run, escalation)
        return StepResult(None)
    return StepResult(0)


def _escalate(run: Run, e: Escalation, model_call: ModelCall | None = None) -> None:
    escalate(
        run.pk, e.reason, e.message, tool_call=e.tool_call, model_call=model_call, details=e.details
    )


# --- model turns ------------------------------------------------------------------------


def _next_user_turn(run: Run, last: ModelCall | None, known: Known | None) -> list[dict[str, Any]]:
    if last is None:
        # The request is data: validated JSON in the user turn, never in the instructions.
        content: list[dict[str, Any]] = [{"type": "text", "text": json.dumps(run.input)}]
    elif last.stop_reason == "tool_use":
        content = tool_result_blocks(run, last.tool_uses, known)
    else:
        content = []
    if run.pending_note:
        content.append({"type": "text", "text": run.pending_note})
    return content


def _replayed(mc: ModelCall) -> Any:
    """An answered turn as it is sent back. NaN or a lone surrogate a model sent cannot be sent
    as they are (the SDK refuses to serialize them): replayed in a sendable form
    (orchestration.storable.sendable). Kept on the row's instance, which a task holds between
    its steps: a recorded answer never changes, and re-walking every earlier answer on every
    step made a step's cost grow with the run's length."""
    replayed = getattr(mc, "_replayed", None)
    if replayed is None:
        replayed = mc._replayed = storable.sendable(mc.response_content)  # type: ignore[attr-defined]
    return replayed


def conversation(calls: list[ModelCall], next_turn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rebuild the exact message list from the persisted turns, plus the new user turn."""
    messages: list[dict[str, Any]] = []
    for mc in calls:
        messages.append({"role": "user", "content": mc.request_content})
        messages.append({"role": "assistant", "content": _replayed(mc)})
    # Cache the conversation so far: the next turn reads it instead of paying full price.
    cached = [dict(b) for b in next_turn]
    if cached:
        cached[-1]["cache_control"] = {"type": "ephemeral"}
    messages.append({"role": "user", "content": cached})
    return messages


def _allowed_steps(run: Run, workflow: Workflow, state: Conversation) -> int:
    # A reviewer who resumes a run stopped at its step limit grants it another allowance
    # (tickets are resolved only while the run is not running: fixed for the task's life).
    if state.allowed_steps is None:
        resumed = run.tickets.filter(
            reason=R.STEP_LIMIT, status=EscalationTicket.Status.RESOLVED
        ).count()
        state.allowed_steps = workflow.constraints.max_steps * (1 + resumed)
    return state.allowed_steps


def _model_turn(run: Run, workflow: Workflow, state: Conversation) -> StepResult:
    calls = state.calls
    if len(calls) >= _allowed_steps(run, workflow, state):
        escalate(
            run.pk,
            R.STEP_LIMIT,
            f"The run used its {workflow.constraints.max_steps} model turns without finishing.",
        )
        return StepResult(None)
    last = calls[-1] if calls else None
    version = _version(run)
    turn = len(calls)
    new_turn = _next_user_turn(run, last, state.known)
    # A turn first asked in this task has no earlier attempt; otherwise count them.
    attempt = 1 if state.fresh_turn else ModelCall.objects.filter(run=run, turn=turn).count() + 1
    turn_route = route_turn(run, workflow, last)  # which role (and model) plays this turn
    model = turn_route.model
    params = {
        "model": model,
        "max_tokens": workflow.constraints.max_output_tokens,
        "system": [
            {"type": "text", "text": version.system_prompt, "cache_control": {"type": "ephemeral"}}
        ],
        "tools": api_tools(version),
        "messages": conversation(calls, new_turn),
    }
    batch = bool(run.options.get("batch"))
    mc = ModelCall(
        run=run,
        turn=turn,
        attempt=attempt,
        model=model,
        request_content=new_turn,
        role=turn_route.role,
    )
    try:
        model_calls.open_call(
            mc, params, batch=batch
        )  # saves mc holding its reservation, or sends nothing
    except accounting.DoesNotFit as refused:
        return _refused(run, refused)
    client = client_for(**model_calls.client_kwargs(run))
    if batch:
        failed = model_calls.submit_batch(mc, params, client, run=run)
        # Beat's poll_batches enqueues the next step when the batch ends.
        return StepResult(None) if failed is None else _call_failed(run, mc, failed)
    outcome = model_calls.send(mc, params, client, keep_alive=lease_keeper(run.pk))
    if not outcome.ok:
        return _call_failed(run, mc, outcome)
    return _record_response(run, workflow, mc, outcome, state)


def _refused(run: Run, refused: accounting.DoesNotFit) -> StepResult:
    """The call did not fit under the run's ceiling (or the run stopped running): nothing was
    sent. A running run pauses for a manager; the ticket records what the call needed."""
    if refused.running:
        pause_if_running(run.pk, R.BUDGET_EXCEEDED, str(refused), details=refused.details)
    return StepResult(None)


# --- batch mode: each model turn goes through the Message Batches API at the batch price ---


def batch_ended(mc: ModelCall) -> bool:
    """Whether the batch holding ``mc`` has ended (beat asks before enqueueing a step)."""
    return model_calls.batch_ended(mc, client_for(**model_calls.client_kwargs(mc.run)))


def _collect_batch(run: Run, workflow: Workflow, mc: ModelCall, state: Conversation) -> StepResult:
    try:
        outcome = model_calls.collect_batch(mc, client_for(**model_calls.client_kwargs(run)))
    except model_calls.BatchNotReady:
        return StepResult(None)  # beat polls again
    if not outcome.ok:
        return _call_failed(run, mc, outcome)
    state.calls = list(run.model_calls.filter(status=ModelCall.Status.OK).order_by("turn"))
    return _record_response(run, workflow, mc, outcome, state)


def _call_failed(run: Run, mc: ModelCall, outcome: model_calls.Outcome) -> StepResult:
    """Record a failed model call; try the turn again after a backoff, or escalate."""
    model_calls.record_failure(mc, outcome, run=run)
    round_attempts = in_round(
        ModelCall.objects.filter(run=run, turn=mc.turn), round_start(run)
    ).count()
    wait = model_calls.retry_in(outcome, round_attempts)
    if wait is not None:
        return StepResult(wait)
    if outcome.transient:
        message = f"The model call failed {round_attempts} times (each after the SDK's own retries): {mc.error}"
    else:
        message = f"The Messages API refused the request: {mc.error}"
    escalate(run.pk, R.RETRIES_EXHAUSTED, message, model_call=mc)
    return StepResult(None)


def _record_response(
    run: Run, workflow: Workflow, mc: ModelCall, outcome: model_calls.Outcome, state: Conversation
) -> StepResult:
    with transaction.atomic():
        # The note went out with this call; it is cleared in the same transaction that
        # records the answer, so a crash before this point re-sends it.
        if run.pending_note:
            Run.objects.filter(pk=run.pk).update(pending_note="")
        charged = model_calls.record_answer(mc, outcome, run=run)
    state.calls.append(mc)
    state.fresh_turn = True
    return _after_response(charged.run, workflow, mc, state)


def _after_response(run: Run, workflow: Workflow, mc: ModelCall, state: Conversation) -> StepResult:
    if (
        run.status != S.RUNNING
    ):  # cancelled while the call streamed: recorded and charged, nothing more
        return StepResult(None)
    limits = workflow.constraints
    # The spend check comes before every other check on the answer: a pause for any other
    # reason must not hide it from the manager who has to decide.
    crossed = accounting.spend_breach(run)
    if crossed:
        escalate(run.pk, R.BUDGET_EXCEEDED, crossed, model_call=mc)
        return StepResult(None)
    if problems := hostile_output.response_problems(mc.tool_uses):
        hostile_output.refuse_response(run, mc, problems)
        return StepResult(None)
    if states_ambiguity(mc.text):
        escalate(
            run.pk,
            R.AMBIGUITY,
            f"The model stated ambiguity: {mc.text[:500]}",
            model_call=mc,
            details={"model_words": mc.text},
        )
        return StepResult(None)

    if mc.stop_reason == "tool_use":
        return _after_tools(
            run, settle_turn(run, workflow, mc, mc.tool_uses, state.known_for(run)), state
        )
    if mc.stop_reason == "max_tokens":
        Run.objects.filter(pk=run.pk).update(
            pending_note=(
                f"[engine] Your answer was cut off at the {limits.max_output_tokens}-token limit. "
                "Answer again, more concisely."
            )
        )
        return StepResult(0)
    if mc.stop_reason == "refusal":
        escalate(run.pk, R.VALIDATION_FAILED, "The model refused to continue.", model_call=mc)
        return StepResult(None)
    if mc.stop_reason == "pause_turn":
        Run.objects.filter(pk=run.pk).update(pending_note="Continue.")
        return StepResult(0)
    return _finalize(run, workflow, mc, state.known)


# --- finishing --------------------------------------------------------------------------


def _finalize(
    run: Run, workflow: Workflow, mc: ModelCall, known: Known | None = None
) -> StepResult:
    """Accept the model's final answer only if every rule holds; otherwise nudge once, then escalate."""
    record = known.record if known is not None else recorded_state(run)
    for call in record.calls:
        require_readable(call.output, f"The accepted output of {call.name}")
    output, parse_error = parse_json_answer(mc.text)
    # An invented value is the worst finding: checked before anything that could be nudged.
    if isinstance(output, dict) and (
        unsourced := unsourced_values(output, workflow.output_schema, record)
    ):
        first = unsourced[0]
        escalate(
            run.pk,
            R.HALLUCINATION,
            f"The answer's {first.path} = {first.value!r} does not come from any recorded {first.tool} call.",
            model_call=mc,
            details={
                "field": first.path,
                "value": first.value,
                "recorded": [str(r) for r in first.recorded],
            },
        )
        return StepResult(None)

    problems = [parse_error] if parse_error else schema_errors(output, workflow.output_schema)
    missing = [name for name in workflow.required_tools if not record.of(name)]
    if missing:
        problems.append(f"required tool(s) not called successfully: {', '.join(missing)}")
    problems += fallbacks.final_output_problems(
        workflow, output, record
    )  # marked fallbacks, current rules
    if problems:
        nudged = AuditEvent.objects.filter(run=run, kind="final.rejected").exists()
        audit.record("final.rejected", run=run, payload={"turn": mc.turn, "problems": problems})
        if nudged:
            escalate(
                run.pk,
                R.VALIDATION_FAILED,
                f"The final answer is still invalid: {problems[0]}",
                model_call=mc,
                details={"errors": problems},
            )
            return StepResult(None)
        Run.objects.filter(pk=run.pk).update(
            pending_note=(
                "[engine] Your final answer was not accepted: "
                + "; ".join(problems)
                + ". Do what is missing, then answer with one JSON object matching the output schema."
            )
        )
        return StepResult(0)

    # Sign-off rules read the recorded tool outputs (``record``); ``output`` is only the model's
    # words, checked above for provenance.
    if workflow.regulatory_trigger and (
        why := workflow.regulatory_trigger(run.input, output, record)
    ):
        escalate(
            run.pk,
            R.REGULATORY_TRIGGER,
            f"Sign-off required: {why}",
            model_call=mc,
            details={"proposed_result": output},
        )
        return StepResult(None)

    lifecycle.transition(
        run.pk,
        S.SUCCEEDED,
        actor="engine",
        result=output,
        event_payload={"cost_usd": str(run.cost_usd)},
    )
    return StepResult(None)


def reap_stalled_runs() -> int:
    """Re-enqueue runs whose step went silent: an expired lease, or a lost step message."""

    now = timezone.now()
    # Reservations of calls whose worker died with no step to take over (e.g. the run was
    # cancelled meanwhile) are given back once no call can still be in flight.
    accounting.release_stale_reservations(now)
    silent_since = now - dt.timedelta(seconds=settings.RUN_STEP_LEASE_SECONDS)
    stalled = list(
        Run.objects.filter(status=S.RUNNING, lease_expires_at__lt=now).values_list("pk", flat=True)
    ) + list(
        Run.objects.filter(
            status__in=(S.RUNNING, S.QUEUED),
            lease_expires_at__isnull=True,
            updated_at__lt=silent_since,
        )
        .exclude(pk__in=_waiting_for_batch().values("run_id"))
        .values_list("pk", flat=True)
    )
    sent = 0
    for run_id in stalled:
        logger.warning("re-queueing stalled run", extra={"run_id": str(run_id)})
        if dispatch.enqueue_step(run_id) is not False:
            # Only a step really sent restarts the silence clock; an unsent one is tried again
            # on the next round.
            Run.objects.filter(pk=run_id).update(updated_at=now)
            sent += 1
    return sent


def _waiting_for_batch():
    return ModelCall.objects.filter(status=ModelCall.Status.PENDING).exclude(batch_id="")


def poll_batches() -> int:
    """Enqueue a step for every run whose pending batch has ended; returns how many."""

    ended = 0
    for mc in (
        _waiting_for_batch()
        .filter(run__status=S.RUNNING, run__lease_expires_at__isnull=True)
        .select_related("run")
    ):
        try:
            done = batch_ended(mc)
        except anthropic.APIError:
            logger.warning(
                "could not poll batch", extra={"run_id": str(mc.run_id), "batch_id": mc.batch_id}
            )
            continue
        if done:
            if mc.job_id is not None:  # a fan-out job waiting for its batch (fanout.jobs)
                fanout_jobs.enqueue(mc.job_id)
            else:
                dispatch.enqueue_step(mc.run_id)
            ended += 1
    return ended
