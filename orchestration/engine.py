"""The tool-use loop, one bounded step at a time.

A step is one model call and the tool calls it asked for. Each Celery task runs one step:

1. claim the run's lease (a conditional update, so a redelivered or duplicated task
   finds the run held and does nothing); a queued run becomes running here;
2. rebuild the conversation from the persisted ModelCalls and ToolCalls;
3. if the last turn's tool_uses are not all settled (a worker died mid-step), settle
   them now; otherwise check the run's limits, reserve the call's worst-case cost against
   the run's spend ceiling (costs.accounting.reserve: the call is a row holding its
   reservation before the request leaves; a call that does not fit is not sent and the run
   pauses as budget_exceeded), call the model (the row is completed with the response,
   usage and cost, which settles the reservation), check the spend first, then settle the
   tool_uses it asked for;
4. when the model ends its turn, validate the final answer (JSON, output schema,
   required tools, provenance of tool-sourced values, regulatory sign-off) and finish;
5. release the lease and, while the run is still running, enqueue the next step on commit.

Anything that cannot go on safely escalates (reviews.escalation), pausing the run.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import anthropic
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from costs import accounting
from ops import tracing
from ops.logs import bind as log_bind
from ops.logs import log_context
from orchestration import audit, hostile_output, lifecycle, storable
from orchestration.llm import client_for
from orchestration.models import AuditEvent, ModelCall, Run, ToolCall
from orchestration.privacy import PayloadKeyError, require_readable
from orchestration.tool_execution import (
    Escalation,
    backoff_seconds,
    in_round,
    recorded_state,
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
from orchestration.workflows import registry
from orchestration.workflows.declaration import Workflow
from orchestration.workflows.versions import api_tools
from reviews.escalation import escalate, pause_if_running
from reviews.models import EscalationTicket

logger = logging.getLogger(__name__)
S = Run.Status
R = EscalationTicket.Reason

# Errors worth another attempt after the SDK's own retries gave up.
TRANSIENT_ERRORS = (anthropic.APIConnectionError, anthropic.RateLimitError, anthropic.InternalServerError)


@dataclass(frozen=True)
class StepResult:
    """What the task should do next: nothing (``None``) or run another step after a delay."""

    next_in: float | None


def claim_step(run_id: Any) -> Run | None:
    """Take the run's lease for one step, or return None when it is not ours to run."""
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.locked().filter(pk=run_id).first()
        if run is None:
            return None
        if run.status == S.QUEUED:
            run = lifecycle.transition(run.pk, S.RUNNING, actor="engine")
        elif run.status != S.RUNNING:
            return None
        if run.lease_expires_at and run.lease_expires_at > now:
            return None  # another step holds it
        lease = now + dt.timedelta(seconds=settings.RUN_STEP_LEASE_SECONDS)
        Run.objects.filter(pk=run.pk).update(
            lease_expires_at=lease, steps_taken=F("steps_taken") + 1, updated_at=now
        )
        run.refresh_from_db()
    return run


def release_step(run_id: Any, next_in: float | None) -> None:
    """Give the lease back; while the run is running, enqueue its next step after commit."""
    from orchestration.tasks import enqueue_step

    with transaction.atomic():
        released = Run.objects.filter(pk=run_id, status=S.RUNNING).update(
            lease_expires_at=None, updated_at=timezone.now()
        )
        if released and next_in is not None:
            transaction.on_commit(lambda: enqueue_step(run_id, countdown=next_in))


def run_step(run_id: Any) -> None:
    """Run one step of a run (the Celery task's body)."""
    with log_context(run_id=str(run_id)), tracing.span("countersign.step", run_id=str(run_id)):
        _run_step(run_id)


def _run_step(run_id: Any) -> None:
    run = claim_step(run_id)
    if run is None:
        return
    log_bind(step=run.steps_taken)
    logger.info("step started", extra={"workflow": run.workflow_name})
    result = StepResult(next_in=None)
    try:
        try:
            result = _step(run)
        except (OperationalError, InterfaceError) as exc:
            if not _database_went_away():
                raise  # a deadlock, a cancelled statement: a failure like any other (below)
            # A restart or failover of Postgres is not the run's fault: no reviewer is needed.
            # Everything the step committed stands and the next step resumes from there (as
            # after a worker crash); if the database is still away, the release below fails
            # too and the reaper re-queues the run once its lease expires.
            logger.warning("step interrupted: the database went away (%s); resuming it later", exc)
            connections.close_all()
            result = StepResult(next_in=DATABASE_RETRY_SECONDS)
    except PayloadKeyError as exc:
        # A payload the run needs cannot be decrypted (a key missing from
        # PAYLOAD_ENCRYPTION_KEYS, or a corrupted row): no step can succeed until that is
        # fixed, so the run pauses with the reason instead of being retried forever.
        logger.warning("step stopped: %s", exc, extra={"run_id": str(run_id)})
        run.refresh_from_db()
        if run.status == S.RUNNING:
            escalate(run.pk, R.UNDECRYPTABLE, f"The run cannot go on: {exc} Restore the key to "
                     "PAYLOAD_ENCRYPTION_KEYS (see docs/operations.md), then retry this step.")
    except Exception as exc:
        # A bug or an unexpected failure must not leave the run spinning: record it and
        # put it in front of a human with the context.
        logger.exception("step failed", extra={"run_id": str(run_id)})
        run.refresh_from_db()
        if run.status == S.RUNNING:
            escalate(run.pk, R.TOOL_ERROR, f"The engine failed on this step: {type(exc).__name__}: {exc}")
    finally:
        release_step(run_id, result.next_in)


# After the database went away mid-step, the next step waits this long.
DATABASE_RETRY_SECONDS = 2.0


def _database_went_away() -> bool:
    """Whether this thread's connection is gone (server restarted, network cut)."""
    try:
        return connection.connection is None or not connection.is_usable()
    except Exception:  # noqa: BLE001 - any failure to even ask means it is gone
        return True


def _step(run: Run) -> StepResult:
    workflow = registry.get(run.workflow_name)
    if _timed_out(run, workflow):
        escalate(run.pk, R.TIMEOUT, f"The run exceeded its {_timeout_seconds(run, workflow):g}s timeout.")
        return StepResult(None)
    if workflow.fanout is not None:
        # Enterprise mode has its own steps (decompose, dispatch, aggregate); its job calls
        # run in parallel on other workers, so the cleanup below must not touch them.
        from orchestration.fanout import coordinator

        return StepResult(coordinator.step(run, workflow))
    waiting = run.model_calls.filter(status=ModelCall.Status.PENDING).exclude(batch_id="").first()
    if waiting is not None:
        return _collect_batch(run, workflow, waiting)
    # A call left pending by a dead worker: failed, and its reservation given back.
    accounting.release_interrupted(ModelCall.objects.filter(run=run, batch_id=""))
    calls = list(run.model_calls.filter(status=ModelCall.Status.OK).order_by("turn"))
    for mc in calls:  # replayed to the model: a placeholder must stop the run, not be sent
        require_readable(mc.request_content, f"The request of model turn {mc.turn}")
        require_readable(mc.response_content, f"The response of model turn {mc.turn}")
    last = calls[-1] if calls else None

    if last is not None and last.stop_reason == "tool_use":
        settled = set(
            ToolCall.objects.filter(run=run, model_call__turn=last.turn, settled=True).values_list("tool_use_id", flat=True)
        )
        pending = [tu for tu in last.tool_uses if tu["id"] not in settled]
        if pending:
            return _after_tools(run, settle_turn(run, workflow, last, pending))
    elif last is not None and not run.pending_note and last.stop_reason in ("end_turn", "stop_sequence"):
        return _finalize(run, workflow, last)

    return _model_turn(run, workflow, calls)


def _timeout_seconds(run: Run, workflow: Workflow) -> float:
    if run.options.get("batch"):  # each turn may wait for its batch (the API allows up to 24 h)
        return max(workflow.constraints.run_timeout_seconds, settings.BATCH_RUN_TIMEOUT_SECONDS)
    return workflow.constraints.run_timeout_seconds


def _timed_out(run: Run, workflow: Workflow) -> bool:
    since = run.queued_at or run.started_at
    limit = dt.timedelta(seconds=_timeout_seconds(run, workflow))
    return since is not None and timezone.now() - since > limit


def _after_tools(run: Run, escalation: Escalation | None) -> StepResult:
    if escalation is not None:
        _escalate(run, escalation)
        return StepResult(None)
    return StepResult(0)


def _escalate(run: Run, e: Escalation, model_call: ModelCall | None = None) -> None:
    escalate(run.pk, e.reason, e.message, tool_call=e.tool_call, model_call=model_call, details=e.details)


# --- model turns ------------------------------------------------------------------------


def _next_user_turn(run: Run, last: ModelCall | None) -> list[dict[str, Any]]:
    import json

    if last is None:
        # The request is data: validated JSON in the user turn, never in the instructions.
        content: list[dict[str, Any]] = [{"type": "text", "text": json.dumps(run.input)}]
    elif last.stop_reason == "tool_use":
        content = tool_result_blocks(run, last.tool_uses)
    else:
        content = []
    if run.pending_note:
        content.append({"type": "text", "text": run.pending_note})
    return content


def conversation(calls: list[ModelCall], next_turn: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rebuild the exact message list from the persisted turns, plus the new user turn."""
    messages: list[dict[str, Any]] = []
    for mc in calls:
        messages.append({"role": "user", "content": mc.request_content})
        # NaN or a lone surrogate a model sent cannot be sent back as they are (the SDK refuses
        # to serialize them): replayed in a sendable form (orchestration.storable.sendable).
        messages.append({"role": "assistant", "content": storable.sendable(mc.response_content)})
    # Cache the conversation so far: the next turn reads it instead of paying full price.
    cached = [dict(b) for b in next_turn]
    if cached:
        cached[-1]["cache_control"] = {"type": "ephemeral"}
    messages.append({"role": "user", "content": cached})
    return messages


def _allowed_steps(run: Run, workflow: Workflow) -> int:
    # A reviewer who resumes a run stopped at its step limit grants it another allowance.
    resumed = run.tickets.filter(reason=R.STEP_LIMIT, status=EscalationTicket.Status.RESOLVED).count()
    return workflow.constraints.max_steps * (1 + resumed)


def _model_turn(run: Run, workflow: Workflow, calls: list[ModelCall]) -> StepResult:
    if len(calls) >= _allowed_steps(run, workflow):
        escalate(run.pk, R.STEP_LIMIT, f"The run used its {workflow.constraints.max_steps} model turns without finishing.")
        return StepResult(None)
    last = calls[-1] if calls else None
    version = run.workflow_version
    turn = len(calls)
    new_turn = _next_user_turn(run, last)
    attempt = ModelCall.objects.filter(run=run, turn=turn).count() + 1
    model = workflow.orchestrator_model
    params = {
        "model": model,
        "max_tokens": workflow.constraints.max_output_tokens,
        "system": [{"type": "text", "text": version.system_prompt, "cache_control": {"type": "ephemeral"}}],
        "tools": api_tools(version),
        "messages": conversation(calls, new_turn),
    }
    batch = bool(run.options.get("batch"))
    mc = ModelCall(run=run, turn=turn, attempt=attempt, model=model, request_content=new_turn,
                   role=ModelCall.Role.ORCHESTRATOR)
    try:
        accounting.reserve(mc, params, batch=batch)  # saves mc, or sends nothing
    except accounting.DoesNotFit as refused:
        return _refused(run, refused)
    client = client_for(workflow=workflow.name, run_id=run.pk, faults=run.options.get("simulator_faults"))
    if batch:
        return _submit_batch(run, mc, client, params)
    started = time.monotonic()
    try:
        with tracing.span("countersign.model_call", run_id=str(run.pk), model=model, turn=turn, attempt=attempt):
            raw = client.messages.with_raw_response.create(**params)
            message = raw.parse()
    except anthropic.APIError as exc:
        return _model_error(run, mc, exc, started)
    return _record_response(run, workflow, mc, message, request_id=raw.headers.get("request-id", ""),
                            sdk_attempts=raw.retries_taken + 1, latency_ms=int((time.monotonic() - started) * 1000))


def _refused(run: Run, refused: accounting.DoesNotFit) -> StepResult:
    """The call did not fit under the run's ceiling (or the run stopped running): nothing was
    sent. A running run pauses for a manager; the ticket records what the call needed."""
    if refused.running:
        pause_if_running(run.pk, R.BUDGET_EXCEEDED, str(refused), details=refused.details)
    return StepResult(None)


# --- batch mode: each model turn goes through the Message Batches API at the batch price ---


def _batch_custom_id(mc: ModelCall) -> str:
    return f"mc-{mc.pk}"


def _submit_batch(run: Run, mc: ModelCall, client: Any, params: dict[str, Any]) -> StepResult:
    started = time.monotonic()
    try:
        batch = client.messages.batches.create(requests=[{"custom_id": _batch_custom_id(mc), "params": params}])
    except anthropic.APIError as exc:
        return _model_error(run, mc, exc, started)
    ModelCall.objects.filter(pk=mc.pk).update(batch_id=batch.id, is_batch=True)
    audit.record("model.batch_submitted", run=run, evidence_of=[mc],
                 payload={"turn": mc.turn, "attempt": mc.attempt, "batch_id": batch.id})
    return StepResult(None)  # beat's poll_batches enqueues the next step when the batch ends


def batch_ended(mc: ModelCall) -> bool:
    """Whether the batch holding ``mc`` has ended (beat asks before enqueueing a step)."""
    run = mc.run
    client = client_for(workflow=run.workflow_name, run_id=run.pk, faults=run.options.get("simulator_faults"))
    return client.messages.batches.retrieve(mc.batch_id).processing_status == "ended"


def _collect_batch(run: Run, workflow: Workflow, mc: ModelCall) -> StepResult:
    client = client_for(workflow=workflow.name, run_id=run.pk, faults=run.options.get("simulator_faults"))
    started = time.monotonic()
    try:
        batch = client.messages.batches.retrieve(mc.batch_id)
        if batch.processing_status != "ended":
            return StepResult(None)
        entry = next((r for r in client.messages.batches.results(mc.batch_id)
                      if r.custom_id == _batch_custom_id(mc)), None)
    except anthropic.NotFoundError as exc:  # the batch is gone: its answer can never be collected
        return _model_error(run, mc, exc, started)
    except anthropic.APIError:
        logger.warning("could not read batch; beat will poll again", extra={"run_id": str(run.pk), "batch_id": mc.batch_id})
        return StepResult(None)
    if entry is not None and entry.result.type == "succeeded":
        waited_ms = int((timezone.now() - mc.created_at).total_seconds() * 1000)
        return _record_response(run, workflow, mc, entry.result.message, request_id=mc.batch_id,
                                sdk_attempts=1, latency_ms=waited_ms, batch=True)
    if entry is None:
        why, transient = "the batch ended without a result for this request", True
    elif entry.result.type == "errored":
        error = entry.result.error.error
        why, transient = f"{error.type}: {error.message}", error.type in ("api_error", "overloaded_error", "rate_limit_error")
    else:  # expired or canceled
        why, transient = f"the batch request {entry.result.type}", entry.result.type == "expired"
    return _call_failed(run, mc, f"Batch {mc.batch_id}: {why}", transient=transient, attempts=1,
                        latency_ms=int((time.monotonic() - started) * 1000))


def _sdk_attempts(request_headers: Any) -> int:
    try:
        return int(request_headers.get("x-stainless-retry-count", "0")) + 1
    except (TypeError, ValueError):
        return 1


def _model_error(run: Run, mc: ModelCall, exc: anthropic.APIError, started: float) -> StepResult:
    status = getattr(exc, "status_code", None)
    request = getattr(exc, "request", None)
    mc.request_id = getattr(exc, "request_id", None) or ""
    return _call_failed(
        run, mc, f"{type(exc).__name__}{f' {status}' if status else ''}: {getattr(exc, 'message', exc)}",
        transient=isinstance(exc, TRANSIENT_ERRORS),
        attempts=_sdk_attempts(request.headers) if request is not None else 1,
        latency_ms=int((time.monotonic() - started) * 1000),
    )


def _call_failed(run: Run, mc: ModelCall, error: str, *, transient: bool, attempts: int, latency_ms: int) -> StepResult:
    """Record a failed model call; try the turn again after a backoff, or escalate."""
    accounting.release(mc)  # no usage: nothing was billed
    mc.status = ModelCall.Status.ERROR
    mc.error = error
    mc.sdk_attempts = attempts
    mc.latency_ms = latency_ms
    mc.finished_at = timezone.now()
    mc.save()
    audit.record("model.failed", run=run, evidence_of=[mc],
                 payload={"turn": mc.turn, "attempt": mc.attempt, "error": mc.error})
    round_attempts = in_round(ModelCall.objects.filter(run=run, turn=mc.turn), round_start(run)).count()
    if transient and round_attempts < settings.LLM_STEP_MAX_ATTEMPTS:
        return StepResult(
            backoff_seconds(round_attempts, settings.LLM_BACKOFF_BASE_SECONDS, settings.LLM_BACKOFF_MAX_SECONDS)
        )
    if transient:
        message = f"The model call failed {round_attempts} times (each after the SDK's own retries): {mc.error}"
    else:
        message = f"The Messages API refused the request: {mc.error}"
    escalate(run.pk, R.RETRIES_EXHAUSTED, message, model_call=mc)
    return StepResult(None)


def _record_response(run: Run, workflow: Workflow, mc: ModelCall, message: Any, *, request_id: str,
                     sdk_attempts: int, latency_ms: int, batch: bool = False) -> StepResult:
    usage_json = message.usage.model_dump(mode="json")
    with transaction.atomic():
        mc.status = ModelCall.Status.OK
        mc.response_content = hostile_output.response_content(message)  # as sent, storable
        mc.stop_reason = message.stop_reason or ""
        mc.request_id = request_id
        mc.sdk_attempts = sdk_attempts
        mc.latency_ms = latency_ms
        mc.finished_at = timezone.now()
        # The note went out with this call; it is cleared in the same transaction that
        # records the answer, so a crash before this point re-sends it.
        Run.objects.filter(pk=run.pk).update(pending_note="")
        charged = accounting.charge(mc, usage_json, batch=batch)  # saves mc, settles its reservation
        run = charged.run
        audit.record("model.called", run=run, evidence_of=[mc], payload={
            "turn": mc.turn, "attempt": mc.attempt, "model": mc.model, "stop_reason": mc.stop_reason,
            "usage": usage_json, "cost_usd": str(charged.cost), "request_id": mc.request_id, "batch": batch,
        })
    return _after_response(run, workflow, mc)


def _after_response(run: Run, workflow: Workflow, mc: ModelCall) -> StepResult:
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
        escalate(run.pk, R.AMBIGUITY, f"The model stated ambiguity: {mc.text[:500]}", model_call=mc,
                 details={"model_words": mc.text})
        return StepResult(None)

    if mc.stop_reason == "tool_use":
        return _after_tools(run, settle_turn(run, workflow, mc, mc.tool_uses))
    if mc.stop_reason == "max_tokens":
        Run.objects.filter(pk=run.pk).update(pending_note=(
            f"[engine] Your answer was cut off at the {limits.max_output_tokens}-token limit. "
            "Answer again, more concisely."))
        return StepResult(0)
    if mc.stop_reason == "refusal":
        escalate(run.pk, R.VALIDATION_FAILED, "The model refused to continue.", model_call=mc)
        return StepResult(None)
    if mc.stop_reason == "pause_turn":
        Run.objects.filter(pk=run.pk).update(pending_note="Continue.")
        return StepResult(0)
    return _finalize(run, workflow, mc)


# --- finishing --------------------------------------------------------------------------


def _finalize(run: Run, workflow: Workflow, mc: ModelCall) -> StepResult:
    """Accept the model's final answer only if every rule holds; otherwise nudge once, then escalate."""
    record = recorded_state(run)
    for call in record.calls:
        require_readable(call.output, f"The accepted output of {call.name}")
    output, parse_error = parse_json_answer(mc.text)
    # An invented value is the worst finding: checked before anything that could be nudged.
    if isinstance(output, dict) and (unsourced := unsourced_values(output, workflow.output_schema, record)):
        first = unsourced[0]
        escalate(run.pk, R.HALLUCINATION,
                 f"The answer's {first.path} = {first.value!r} does not come from any recorded {first.tool} call.",
                 model_call=mc, details={"field": first.path, "value": first.value,
                                         "recorded": [str(r) for r in first.recorded]})
        return StepResult(None)

    problems = [parse_error] if parse_error else schema_errors(output, workflow.output_schema)
    missing = [name for name in workflow.required_tools if not record.of(name)]
    if missing:
        problems.append(f"required tool(s) not called successfully: {', '.join(missing)}")
    if problems:
        nudged = AuditEvent.objects.filter(run=run, kind="final.rejected").exists()
        audit.record("final.rejected", run=run, payload={"turn": mc.turn, "problems": problems})
        if nudged:
            escalate(run.pk, R.VALIDATION_FAILED, f"The final answer is still invalid: {problems[0]}",
                     model_call=mc, details={"errors": problems})
            return StepResult(None)
        Run.objects.filter(pk=run.pk).update(pending_note=(
            "[engine] Your final answer was not accepted: " + "; ".join(problems)
            + ". Do what is missing, then answer with one JSON object matching the output schema."))
        return StepResult(0)

    # Sign-off rules read the recorded tool outputs (``record``); ``output`` is only the model's
    # words, checked above for provenance.
    if workflow.regulatory_trigger and (why := workflow.regulatory_trigger(run.input, output, record)):
        escalate(run.pk, R.REGULATORY_TRIGGER, f"Sign-off required: {why}", model_call=mc,
                 details={"proposed_result": output})
        return StepResult(None)

    lifecycle.transition(run.pk, S.SUCCEEDED, actor="engine", result=output,
                         event_payload={"cost_usd": str(run.cost_usd)})
    return StepResult(None)


def reap_stalled_runs() -> int:
    """Re-enqueue runs whose step went silent: an expired lease, or a lost step message."""
    from orchestration.tasks import enqueue_step

    now = timezone.now()
    # Reservations of calls whose worker died with no step to take over (e.g. the run was
    # cancelled meanwhile) are given back once no call can still be in flight.
    accounting.release_stale_reservations(now)
    silent_since = now - dt.timedelta(seconds=settings.RUN_STEP_LEASE_SECONDS)
    stalled = list(
        Run.objects.filter(status=S.RUNNING, lease_expires_at__lt=now).values_list("pk", flat=True)
    ) + list(
        Run.objects.filter(status__in=(S.RUNNING, S.QUEUED), lease_expires_at__isnull=True,
                           updated_at__lt=silent_since)
        .exclude(pk__in=_waiting_for_batch().values("run_id"))
        .values_list("pk", flat=True)
    )
    sent = 0
    for run_id in stalled:
        logger.warning("re-queueing stalled run", extra={"run_id": str(run_id)})
        if enqueue_step(run_id) is not False:
            # Only a step really sent restarts the silence clock; an unsent one is tried again
            # on the next round.
            Run.objects.filter(pk=run_id).update(updated_at=now)
            sent += 1
    return sent


def _waiting_for_batch():
    return ModelCall.objects.filter(status=ModelCall.Status.PENDING).exclude(batch_id="")


def poll_batches() -> int:
    """Enqueue a step for every run whose pending batch has ended; returns how many."""
    from orchestration.tasks import enqueue_step

    ended = 0
    for mc in _waiting_for_batch().filter(run__status=S.RUNNING, run__lease_expires_at__isnull=True).select_related("run"):
        try:
            done = batch_ended(mc)
        except anthropic.APIError:
            logger.warning("could not poll batch", extra={"run_id": str(mc.run_id), "batch_id": mc.batch_id})
            continue
        if done:
            enqueue_step(mc.run_id)
            ended += 1
    return ended
