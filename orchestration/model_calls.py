"""One model call, start to finish: the only code that sends a Messages API request for a run.

The tool-use loop (orchestration.engine), the fan-out orchestrator (fanout.coordinator) and the
fan-out specialists and validators (fanout.jobs) all go through here:

1. ``open_call``: the pending ModelCall row is saved holding its reservation against the run's
   spend ceiling (``costs.accounting.reserve``); a request that does not fit raises
   ``accounting.DoesNotFit`` and is never sent;
2. ``send``: the request is streamed (``client.messages.stream``), so the SDK's read timeout
   applies to silence, never to the answer's length. The answer so far is written to the
   pending row every LLM_STREAM_PERSIST_SECONDS (one UPDATE; the run page shows it), and the
   time to the first token and the total are measured;
3. ``record_answer``: the answer, its usage and cost are saved, the reservation settled
   (``accounting.charge``) and a ``model.called`` event appended to the audit trail with the
   call as evidence, in the caller's transaction;
   ``record_failure``: a failed call is saved with its error; if the API had reported usage
   before the stream broke, that usage is charged (the API bills what it generated),
   otherwise the reservation is given back; a ``model.failed`` event is appended; the caller
   asks ``retry_in`` whether to try again after a backoff.

``submit_batch`` and ``collect_batch`` are the Message Batches variant of ``send`` (batch-mode
runs). TRANSIENT_ERRORS, the errors worth another attempt after the SDK's own retries gave
up, are defined here only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from costs import accounting
from ops import tracing
from orchestration import audit, hostile_output
from orchestration.models import ModelCall, Run
from orchestration.tool_execution import backoff_seconds

# Worth another attempt (a later step, after a backoff) once the SDK's own retries gave up:
# connection trouble (timeouts included), 429, 5xx and overloaded, and a stream that broke
# part-way (StreamInterrupted).
TRANSIENT_ERRORS = (
    anthropic.APIConnectionError,
    anthropic.RateLimitError,
    anthropic.InternalServerError,
)


@dataclass
class Outcome:
    """What came back: ``message`` (the parsed answer) or ``error`` (why there is none)."""

    message: Any = None
    error: str = ""
    transient: bool = False
    request_id: str = ""
    sdk_attempts: int = 1
    latency_ms: int = 0
    first_token_ms: int | None = None
    # An interrupted stream: the usage the API had reported and the content received so far.
    usage: dict[str, Any] | None = None
    partial: list[dict[str, Any]] = field(default_factory=list)
    batch: bool = False

    @property
    def ok(self) -> bool:
        return self.message is not None


def client_kwargs(run: Run) -> dict[str, Any]:
    """What ``llm.client_for`` needs to know about a run (the simulator's policy and faults)."""
    return {
        "workflow": run.workflow_name,
        "run_id": run.pk,
        "faults": run.options.get("simulator_faults"),
    }


def open_call(mc: ModelCall, params: dict[str, Any], *, batch: bool = False) -> ModelCall:
    """Save the unsaved pending ``mc`` holding its reservation; raises DoesNotFit (nothing
    saved, nothing to send) when the request does not fit under the run's ceiling."""
    accounting.reserve(mc, params, batch=batch)
    return mc


def _blocks(message: Any) -> list[dict[str, Any]]:
    # As the model sent it, in a storable form (NaN, NUL, depth: orchestration.hostile_output).
    return hostile_output.response_content(message)


def _sdk_attempts(request: Any) -> int:
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1
    except (AttributeError, TypeError, ValueError):
        return 1


def _persist_partial(mc: ModelCall, snapshot: Any) -> None:
    """The answer so far on the pending row, for the run page (one UPDATE, committed now)."""
    ModelCall.objects.filter(pk=mc.pk, status=ModelCall.Status.PENDING).update(
        response_content=_blocks(snapshot)
    )


def send(
    mc: ModelCall,
    params: dict[str, Any],
    client: anthropic.Anthropic,
    *,
    keep_alive: Callable[[], None] | None = None,
) -> Outcome:
    """Stream the request; never raises for an API or transport error (see Outcome).
    ``keep_alive`` is called as events arrive (the caller's lease; it throttles itself)."""
    started = time.monotonic()
    first: float | None = None
    every = settings.LLM_STREAM_PERSIST_SECONDS
    flushed = started
    stream = None
    span = tracing.span(
        "countersign.model_call",
        run_id=str(mc.run_id),
        model=mc.model,
        turn=mc.turn,
        attempt=mc.attempt,
        role=mc.role,
    )
    try:
        with span, client.messages.stream(**params) as stream:
            for event in stream:
                if first is None and event.type in ("content_block_start", "content_block_delta"):
                    first = time.monotonic()
                if keep_alive is not None:
                    keep_alive()
                if every > 0 and time.monotonic() - flushed >= every:
                    _persist_partial(mc, stream.current_message_snapshot)
                    flushed = time.monotonic()
            message = stream.get_final_message()
    except anthropic.APIError as exc:
        return _failed(exc, started, first, stream)
    except httpx2.TransportError as exc:  # the connection broke part-way through the body
        return _failed(exc, started, first, stream)
    except ValueError as exc:
        # The SDK could not parse what the model streamed (e.g. a tool input holding a lone
        # UTF-16 surrogate): recorded and charged as reported, and asked again like a broken
        # stream (the model may answer differently); the retry limit still applies.
        return _failed(exc, started, first, stream)
    response = stream.response
    return Outcome(
        message=message,
        request_id=response.headers.get("request-id", ""),
        sdk_attempts=_sdk_attempts(response.request),
        latency_ms=_ms(started, time.monotonic()),
        first_token_ms=_ms(started, first) if first is not None else None,
    )


def _ms(start: float, end: float) -> int:
    return int((end - start) * 1000)


def _failed(exc: Exception, started: float, first: float | None, stream: Any) -> Outcome:
    status = getattr(exc, "status_code", None)
    outcome = Outcome(
        error=f"{type(exc).__name__}{f' {status}' if status else ''}: {getattr(exc, 'message', exc)}"[
            :2000
        ],
        transient=isinstance(exc, (*TRANSIENT_ERRORS, httpx2.TransportError, ValueError)),
        request_id=getattr(exc, "request_id", None) or "",
        sdk_attempts=_sdk_attempts(getattr(exc, "request", None)),
        latency_ms=_ms(started, time.monotonic()),
        first_token_ms=_ms(started, first) if first is not None else None,
    )
    snapshot = stream._current_snapshot_or_none() if stream is not None else None
    if snapshot is not None:
        # The stream had started: the API reported usage in message_start (and bills for what
        # it generated). Recorded and charged as reported; the answer itself is unusable.
        outcome.usage = snapshot.usage.model_dump(mode="json")
        outcome.partial = _blocks(snapshot)
        outcome.request_id = outcome.request_id or stream.response.headers.get("request-id", "")
        outcome.sdk_attempts = _sdk_attempts(stream.response.request)
        outcome.error = f"The stream broke after {snapshot.usage.output_tokens} output token(s): {outcome.error}"[
            :2000
        ]
    return outcome


# What record_answer and record_failure set on the call (saved with what the charge sets).
_ANSWER_FIELDS = ("status", "response_content", "stop_reason", "error")
_FINISH_FIELDS = ("request_id", "sdk_attempts", "latency_ms", "first_token_ms", "finished_at")


def _finish(mc: ModelCall, outcome: Outcome) -> None:
    mc.request_id = outcome.request_id
    mc.sdk_attempts = outcome.sdk_attempts
    mc.latency_ms = outcome.latency_ms
    mc.first_token_ms = outcome.first_token_ms
    mc.finished_at = mc.finished_at or timezone.now()


def record_answer(
    mc: ModelCall,
    outcome: Outcome,
    *,
    run: Run,
    audit_extra: dict[str, Any] | None = None,
    audit_apart: bool = False,
    also: Callable[[accounting.Charge], None] | None = None,
) -> accounting.Charge:
    """Save the answer, charge it (settling the reservation) and audit it, in the caller's
    transaction (or one of its own).

    ``audit_apart``: the event is appended after the charge commits, in a transaction of its
    own. For a call made in parallel with other calls of its run (fan-out jobs): the charge
    holds the run's row lock, and waiting for the audit chain's lock while holding it
    deadlocks with a chain holder whose new event references the run. ``also`` runs in the
    charge's transaction (e.g. adding the cost to a job)."""
    message = outcome.message
    usage_json = message.usage.model_dump(mode="json")
    with transaction.atomic(savepoint=False):
        mc.status = ModelCall.Status.OK
        mc.response_content = _blocks(message)
        mc.stop_reason = message.stop_reason or ""
        _finish(mc, outcome)
        charged = accounting.charge(
            mc, usage_json, batch=outcome.batch, also_save=_ANSWER_FIELDS + _FINISH_FIELDS
        )
        if also is not None:
            also(charged)
        payload = {
            "turn": mc.turn,
            "attempt": mc.attempt,
            "model": mc.model,
            "role": mc.role,
            "stop_reason": mc.stop_reason,
            "usage": usage_json,
            "cost_usd": str(charged.cost),
            "request_id": mc.request_id,
            "batch": outcome.batch,
            **(audit_extra or {}),
        }
        if not audit_apart:
            audit.record("model.called", run=run, evidence_of=[mc], payload=payload)
    if audit_apart:
        with transaction.atomic():
            audit.record("model.called", run=run, evidence_of=[mc], payload=payload)
    return charged


def record_failure(
    mc: ModelCall,
    outcome: Outcome,
    *,
    run: Run,
    audit_apart: bool = False,
    also: Callable[[accounting.Charge], None] | None = None,
) -> accounting.Charge | None:
    """Save the failed call and audit it (``audit_apart``: as in record_answer). Usage
    reported before a stream broke is charged; otherwise nothing was billed and the
    reservation is given back."""
    with transaction.atomic(savepoint=False):
        mc.status = ModelCall.Status.ERROR
        mc.error = outcome.error
        _finish(mc, outcome)
        charged = None
        payload: dict[str, Any] = {
            "turn": mc.turn,
            "attempt": mc.attempt,
            "role": mc.role,
            "error": mc.error,
        }
        if outcome.usage is not None:
            mc.response_content = outcome.partial
            charged = accounting.charge(  # saves mc, settles the reservation
                mc, outcome.usage, also_save=_ANSWER_FIELDS + _FINISH_FIELDS
            )
            payload.update(usage=outcome.usage, cost_usd=str(charged.cost))
            if also is not None:
                also(charged)
        else:
            accounting.release(mc)
            mc.save()
        if not audit_apart:
            audit.record("model.failed", run=run, evidence_of=[mc], payload=payload)
    if audit_apart:
        with transaction.atomic():
            audit.record("model.failed", run=run, evidence_of=[mc], payload=payload)
    return charged


def retry_in(outcome: Outcome, attempts: int) -> float | None:
    """Seconds before the next attempt of a failed call, or None when it must not be retried
    (refused by the API, or LLM_STEP_MAX_ATTEMPTS used; the SDK's own retries come first)."""
    if outcome.transient and attempts < settings.LLM_STEP_MAX_ATTEMPTS:
        return backoff_seconds(
            attempts, settings.LLM_BACKOFF_BASE_SECONDS, settings.LLM_BACKOFF_MAX_SECONDS
        )
    return None


# --- Message Batches ----------------------------------------------------------------------


def batch_custom_id(mc: ModelCall) -> str:
    return f"mc-{mc.pk}"


def submit_batch(
    mc: ModelCall, params: dict[str, Any], client: anthropic.Anthropic, *, run: Run
) -> Outcome | None:
    """Submit the reserved call as a one-request batch; None when submitted (the call stays
    pending until ``collect_batch``), else the failure to record."""
    started = time.monotonic()
    try:
        batch = client.messages.batches.create(
            requests=[{"custom_id": batch_custom_id(mc), "params": params}]
        )
    except anthropic.APIError as exc:
        return _failed(exc, started, None, None)
    with transaction.atomic():
        ModelCall.objects.filter(pk=mc.pk).update(batch_id=batch.id, is_batch=True)
        audit.record(
            "model.batch_submitted",
            run=run,
            evidence_of=[mc],
            payload={"turn": mc.turn, "attempt": mc.attempt, "batch_id": batch.id},
        )
    return None


def batch_ended(mc: ModelCall, client: anthropic.Anthropic) -> bool:
    return client.messages.batches.retrieve(mc.batch_id).processing_status == "ended"


class BatchNotReady(Exception):
    """The batch has not ended, or could not be read now: ask again later."""


def collect_batch(mc: ModelCall, client: anthropic.Anthropic) -> Outcome:
    """The ended batch's answer (or failure) for ``mc``; raises BatchNotReady."""
    started = time.monotonic()
    try:
        batch = client.messages.batches.retrieve(mc.batch_id)
        if batch.processing_status != "ended":
            raise BatchNotReady
        entry = next(
            (
                r
                for r in client.messages.batches.results(mc.batch_id)
                if r.custom_id == batch_custom_id(mc)
            ),
            None,
        )
    except anthropic.NotFoundError as exc:  # the batch is gone: its answer can never be collected
        return _failed(exc, started, None, None)
    except anthropic.APIError:
        raise BatchNotReady from None
    if entry is not None and entry.result.type == "succeeded":
        waited_ms = int((timezone.now() - mc.created_at).total_seconds() * 1000)
        return Outcome(
            message=entry.result.message, request_id=mc.batch_id, latency_ms=waited_ms, batch=True
        )
    if entry is None:
        why, transient = "the batch ended without a result for this request", True
    elif entry.result.type == "errored":
        error = entry.result.error.error
        why, transient = (
            f"{error.type}: {error.message}",
            error.type in ("api_error", "overloaded_error", "rate_limit_error"),
        )
    else:  # expired or canceled
        why, transient = f"the batch request {entry.result.type}", entry.result.type == "expired"
    return Outcome(
        error=f"Batch {mc.batch_id}: {why}",
        transient=transient,
        request_id=mc.batch_id,
        latency_ms=_ms(started, time.monotonic()),
    )
