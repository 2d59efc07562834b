"""One fan-out job, start to finish, resumable from its last committed phase.

A job task (orchestration.tasks.run_fanout_job) claims the job's lease, then loops:

1. **specialist**: one call (a ModelCall row, role specialist, ``turn`` = job attempt)
   made while holding a global slot; the answer is charged and stored on the job row;
2. **persist**: the output is appended to the run's JSONL artifact, and only then
3. **validate**: the workflow's job output schema in code first (a violation is a FAIL
   without a model call; the schema is the workflow's, never the orchestrator's),
   then the validator model (role validator), whose answer must be
   ``{job_id, status: PASS|FAIL, reason}`` for this job;
4. **decide**: PASS succeeds the job; the first FAIL starts attempt 2 with the reason; the
   second FAIL fails the job.

Every transition of the job row is a conditional update on ``lease_owner``, so a job that
two tasks ever ran (a redelivered message, a reaped lease) is finished by exactly one of
them, and a phase committed before a crash is not repeated. Each model call is retried
with exponential backoff and jitter on transient errors, up to LLM_STEP_MAX_ATTEMPTS
calls (interrupted ones count), after the SDK's own retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import anthropic
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from costs import accounting
from ops import tracing
from orchestration import audit
from orchestration.fanout import artifacts, prompts, slots
from orchestration.fanout.models import FanoutJob
from orchestration.llm import client_for
from orchestration.models import ModelCall, Run
from orchestration.privacy import require_readable
from orchestration.tool_execution import backoff_seconds
from orchestration.validation import parse_json_answer, schema_errors
from orchestration.workflows import registry
from orchestration.workflows.declaration import Workflow
from reviews.escalation import pause_if_running
from reviews.models import EscalationTicket

logger = logging.getLogger(__name__)
J = FanoutJob.Status
TRANSIENT_ERRORS = (
    anthropic.APIConnectionError,
    anthropic.RateLimitError,
    anthropic.InternalServerError,
)
MAX_JOB_ATTEMPTS = 2  # the first answer and one retry with the validator's reason


class LeaseLost(Exception):
    """Another task owns the job now, or it is final: stop without writing anything."""


class RunNotRunning(Exception):
    """The run paused or stopped: hand the job back without finishing it."""


class CallFailed(Exception):
    """A model call failed for good (refused, or transient errors past the bound)."""


def _lease_until() -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.FANOUT_JOB_LEASE_SECONDS)


def enqueue(job_pk: int, countdown: float | None = None) -> None:
    """Send the job's task. A dispatched job holds a lease, so if the broker cannot be reached
    the fan-out reaper sends it again once the lease expires: log, do not fail the caller."""
    from kombu.exceptions import OperationalError as BrokerUnavailable

    from orchestration.tasks import run_fanout_job

    try:
        run_fanout_job.apply_async((job_pk,), countdown=countdown or None)
    except BrokerUnavailable as exc:
        logger.warning("broker unavailable, fan-out job %s not sent; the reaper will send it: %s", job_pk, exc)


def claim(job_pk: int, token: str) -> FanoutJob | None:
    """Take the job's lease: a freshly dispatched job (no owner) or one whose lease expired."""
    now = timezone.now()
    claimed = FanoutJob.objects.filter(
        Q(lease_owner="") | Q(lease_expires_at__lt=now), pk=job_pk, status=J.RUNNING
    ).update(
        lease_owner=token,
        lease_expires_at=_lease_until(),
        started_at=Coalesce("started_at", now),
    )
    if not claimed:
        return None
    # Calls still pending belong to a task that died (or lost its lease) mid-call: failed,
    # and their reservations given back (its own transaction: runs are locked before their
    # calls and jobs, everywhere). The lease is ours, so no call of this job is started
    # meanwhile.
    accounting.release_interrupted(ModelCall.objects.filter(job_id=job_pk))
    return FanoutJob.objects.select_related("run").get(pk=job_pk)


def _renew(job: FanoutJob, token: str) -> None:
    if not FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
        lease_expires_at=_lease_until()
    ):
        raise LeaseLost
    if not Run.objects.filter(pk=job.run_id, status=Run.Status.RUNNING).exists():
        raise RunNotRunning


def _update(job: FanoutJob, token: str, **fields: Any) -> None:
    if not FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
        **fields
    ):
        raise LeaseLost


def run_job(job_pk: int) -> None:
    """The task body: run one job to a final state (or hand it back), then let the run go on."""
    from orchestration.fanout import coordinator

    token = uuid.uuid4().hex
    job = claim(job_pk, token)
    if job is None:
        return
    workflow = registry.get(job.run.workflow_name)
    try:
        with tracing.span("countersign.fanout_job", run_id=str(job.run_id), job=job.job_id, seq=job.seq):
            _work(job, token, workflow)
    except LeaseLost:
        return
    except RunNotRunning:
        # Paused for review (or stopped): the job goes back to the queue with what it has
        # done so far, and is dispatched again when the run resumes.
        FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
            status=J.QUEUED, lease_owner="", lease_expires_at=None
        )
        return
    except slots.NoSlot:
        # Every global slot is taken (other runs): give the thread back and try again soon.
        with transaction.atomic():
            if FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
                lease_owner="", lease_expires_at=_lease_until()
            ):
                transaction.on_commit(lambda: enqueue(job.pk, countdown=random.uniform(0.5, 2.0)))  # noqa: S311
        return
    except Exception as exc:  # noqa: BLE001 - a bug must fail the job visibly, not spin
        logger.exception("fan-out job failed", extra={"job": job.pk, "run_id": str(job.run_id)})
        try:
            _finish(
                job, token, J.FAILED, f"The engine failed on this job: {type(exc).__name__}: {exc}"
            )
        except LeaseLost:
            return
    coordinator.job_settled(job.run_id)


def _work(job: FanoutJob, token: str, workflow: Workflow) -> None:
    spec = workflow.fanout
    assert spec is not None
    while True:
        job.refresh_from_db()
        if job.status != J.RUNNING or job.lease_owner != token:
            raise LeaseLost
        for what in ("prompt", "output", "output_text"):  # fails the job with the reason
            require_readable(getattr(job, what), f"Job {job.job_id}'s {what}")
        k = job.attempts
        if job.output_attempt < k:
            _renew(job, token)
            try:
                mc, message = _call(
                    job,
                    token,
                    workflow,
                    ModelCall.Role.SPECIALIST,
                    prompts.specialist_system(spec),
                    prompts.specialist_turn(job, spec),
                    spec.specialist_max_tokens,
                )
            except CallFailed as exc:
                _finish(job, token, J.FAILED, f"The specialist call failed: {exc}")
                return
            text = _text(message)
            output, _error = parse_json_answer(text)
            _update(
                job,
                token,
                output=output if isinstance(output, dict) else None,
                output_text=text,
                output_attempt=k,
            )
        elif job.logged_attempt < k:
            # Persist before use: the output is a row (above) and a JSONL line before the
            # validator, or anything else, reads it.
            artifacts.append(
                job.run_id,
                {
                    "job_id": job.job_id,
                    "attempt": k,
                    "output": job.output,
                    "output_text": job.output_text,
                },
            )
            _update(job, token, logged_attempt=k)
        elif job.verdict_attempt < k:
            try:
                verdict, reason = _validate(job, token, workflow)
            except CallFailed as exc:
                # No verdict is not a FAIL of the specialist's work: the job fails on its own terms.
                _finish(job, token, J.FAILED, f"No verdict: the validator call failed: {exc}")
                return
            _update(job, token, verdict=verdict, reason=reason, verdict_attempt=k)
        elif job.verdict == FanoutJob.Verdict.PASS:
            _finish(job, token, J.SUCCEEDED, "")
            return
        elif k < MAX_JOB_ATTEMPTS:
            with transaction.atomic():
                _update(job, token, attempts=k + 1, retry_reason=job.reason)
                audit.record(
                    "fanout.job.retried",
                    run=job.run,
                    payload={"job_id": job.job_id, "attempt": k + 1, "reason": job.reason},
                )
        else:
            _finish(job, token, J.FAILED, f"Failed validation twice. Last reason: {job.reason}")
            return


def _validate(job: FanoutJob, token: str, workflow: Workflow) -> tuple[str, str]:
    """(verdict, reason): the schema in code first, then the validator model."""
    spec = workflow.fanout
    assert spec is not None
    if job.output is None:
        return FanoutJob.Verdict.FAIL, "The answer is not one JSON object."
    # The workflow's schema from code, not the row's copy (which is what the job page shows).
    problems = schema_errors(job.output, spec.job_output_schema)
    if problems:
        return FanoutJob.Verdict.FAIL, "Schema: " + "; ".join(problems[:5])

    def usable(message: Any) -> str | None:
        answer, error = parse_json_answer(_text(message))
        if error:
            return f"unusable verdict: {error}"
        errors = schema_errors(answer, prompts.VERDICT_SCHEMA)
        if errors:
            return f"unusable verdict: {errors[0]}"
        if str(answer["job_id"]) != job.job_id:
            return f"unusable verdict: it is about job {answer['job_id']!r}, not {job.job_id!r}"
        return None

    _renew(job, token)
    _mc, message = _call(
        job,
        token,
        workflow,
        ModelCall.Role.VALIDATOR,
        prompts.validator_system(spec),
        prompts.validator_turn(job, spec),
        spec.validator_max_tokens,
        check=usable,
    )
    answer, _ = parse_json_answer(_text(message))
    reason = str(answer.get("reason", ""))[:2000]
    return (
        (FanoutJob.Verdict.PASS, reason)
        if answer["status"] == "PASS"
        else (FanoutJob.Verdict.FAIL, reason or "FAIL")
    )


def _stored_message(mc: ModelCall) -> Any:
    """A recorded answer in the shape _text() and the checks read (its content blocks)."""
    content = require_readable(mc.response_content, f"The recorded answer of model call {mc.pk}")
    return SimpleNamespace(content=[SimpleNamespace(**block) for block in content or []])


def _text(message: Any) -> str:
    return "\n".join(b.text for b in message.content if getattr(b, "type", "") == "text")


def _call(
    job: FanoutJob,
    token: str,
    workflow: Workflow,
    role: str,
    system: str,
    user: str,
    max_tokens: int,
    check: Callable[[Any], str | None] | None = None,
) -> tuple[ModelCall, Any]:
    """One model call for the job, retried on transient errors with backoff and jitter."""
    run = job.run
    model = workflow.models.get(role) or workflow.orchestrator_model
    limit = settings.LLM_STEP_MAX_ATTEMPTS
    client = client_for(
        workflow=workflow.name, run_id=run.pk, faults=run.options.get("simulator_faults")
    )
    wait = min(settings.FANOUT_SLOT_WAIT_SECONDS, settings.FANOUT_JOB_LEASE_SECONDS / 3)
    turn = job.attempts
    last_error = ""
    recorded = (
        ModelCall.objects.filter(job=job, role=role, turn=turn, status=ModelCall.Status.OK, error="")
        .order_by("-attempt")
        .first()
    )
    if recorded is not None:
        # Answered before a crash cut the job short: use that answer, never ask (and pay) twice.
        stored = _stored_message(recorded)
        problem = check(stored) if check else None
        if problem is None:
            return recorded, stored
        ModelCall.objects.filter(pk=recorded.pk).update(error=problem[:2000])
        last_error = problem
    while True:
        attempt = ModelCall.objects.filter(job=job, role=role, turn=turn).count() + 1
        if attempt > limit:
            raise CallFailed(
                f"{limit} attempts, each after the SDK's own retries. Last error: {last_error or 'interrupted'}"
            )
        params = {
            "model": model,
            "max_tokens": max_tokens,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": user}],
        }
        with slots.slot(f"{job.pk}:{role}:{turn}:{attempt}", wait):
            _renew(job, token)  # waiting for the slot must not outlive the lease
            mc = ModelCall(
                run=run,
                job=job,
                role=role,
                turn=turn,
                attempt=attempt,
                model=model,
                request_content=[{"type": "text", "text": user}],
            )
            try:
                # Held against the run's ceiling before the request leaves (saves mc). The
                # reservation also requires the run to be running: once it pauses, for any
                # reason, no job sends anything until it is resumed.
                accounting.reserve(mc, params)
            except accounting.DoesNotFit as refused:
                if refused.running:
                    pause_if_running(
                        run.pk, EscalationTicket.Reason.BUDGET_EXCEEDED, str(refused), details=refused.details
                    )
                raise RunNotRunning from None  # the job goes back to the queue, unanswered
            started = time.monotonic()
            try:
                raw = client.messages.with_raw_response.create(**params)
                message = raw.parse()
                error: anthropic.APIError | None = None
            except anthropic.APIError as exc:
                error = exc
            # Stamped while the slot is held: [created_at, finished_at] of every job call lies
            # inside its slot, which is what the cap tests measure.
            mc.finished_at = timezone.now()
        if error is None:
            charged = _record(job, mc, raw, message, started)
            _check_spend(charged, mc)  # before any check of the answer
            problem = check(message) if check else None
            if problem is None:
                return mc, message
            ModelCall.objects.filter(pk=mc.pk).update(error=problem[:2000])
            last_error = problem
        else:
            _record_error(mc, error, started)
            last_error = mc.error
            if not isinstance(error, TRANSIENT_ERRORS):
                raise CallFailed(f"the Messages API refused the request: {mc.error}")
        if attempt < limit:
            time.sleep(
                backoff_seconds(
                    attempt, settings.LLM_BACKOFF_BASE_SECONDS, settings.LLM_BACKOFF_MAX_SECONDS
                )
            )


def _record(
    job: FanoutJob, mc: ModelCall, raw: Any, message: Any, started: float
) -> accounting.Charge:
    usage_json = message.usage.model_dump(mode="json")
    with transaction.atomic():
        mc.status = ModelCall.Status.OK
        mc.response_content = [
            b.model_dump(mode="json", exclude_none=True) for b in message.content
        ]
        mc.stop_reason = message.stop_reason or ""
        mc.request_id = raw.headers.get("request-id", "")
        mc.sdk_attempts = raw.retries_taken + 1
        mc.latency_ms = int((time.monotonic() - started) * 1000)
        mc.finished_at = mc.finished_at or timezone.now()
        charged = accounting.charge(mc, usage_json)  # saves mc, adds to the run under its row lock
        # The call was billed whoever owns the job now: its cost always counts.
        FanoutJob.objects.filter(pk=job.pk).update(cost_usd=F("cost_usd") + charged.cost)
    return charged


def _record_error(mc: ModelCall, exc: anthropic.APIError, started: float) -> None:
    accounting.release(mc)  # no usage: nothing was billed
    status = getattr(exc, "status_code", None)
    request = getattr(exc, "request", None)
    mc.status = ModelCall.Status.ERROR
    mc.error = (
        f"{type(exc).__name__}{f' {status}' if status else ''}: {getattr(exc, 'message', exc)}"[
            :2000
        ]
    )
    mc.request_id = getattr(exc, "request_id", None) or ""
    try:
        mc.sdk_attempts = (
            int(request.headers.get("x-stainless-retry-count", "0")) + 1
            if request is not None
            else 1
        )
    except (TypeError, ValueError):
        mc.sdk_attempts = 1
    mc.latency_ms = int((time.monotonic() - started) * 1000)
    mc.finished_at = mc.finished_at or timezone.now()
    mc.save()


def _check_spend(charged: accounting.Charge, mc: ModelCall) -> None:
    """Pause the run if this answer took it over its ceiling, and hand the job back: the
    answer is recorded, and a resumed job uses it instead of asking again."""
    crossed = accounting.spend_breach(charged.run)
    if not crossed:
        return
    # If another job or the breaker paused or stopped the run first, it stays so; either way
    # no further call of this run can reserve until it runs again.
    pause_if_running(
        charged.run.pk, EscalationTicket.Reason.BUDGET_EXCEEDED, crossed, model_call=mc
    )
    raise RunNotRunning


def _finish(job: FanoutJob, token: str, status: str, reason: str) -> None:
    """Settle the job once (conditional on our lease) and record it in the audit trail."""
    with transaction.atomic():
        fields: dict[str, Any] = {
            "status": status,
            "lease_owner": "",
            "lease_expires_at": None,
            "finished_at": timezone.now(),
        }
        if status == J.FAILED:
            fields["reason"] = reason[:4000]
        _update(job, token, **fields)
        job.refresh_from_db()
        audit.record(
            f"fanout.job.{'passed' if status == J.SUCCEEDED else 'failed'}",
            run=job.run,
            # The job's prompt and output, and every model call it made.
            evidence_of=[job, *ModelCall.objects.filter(job=job).only("pk")],
            payload={
                "job_id": job.job_id,
                "attempts": job.attempts,
                "verdict": job.verdict,
                "reason": job.reason,
                "cost_usd": str(job.cost_usd),
            },
        )
