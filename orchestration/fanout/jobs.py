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
calls (interrupted ones count), after the SDK's own retries. Every call goes through
orchestration.model_calls (reserve, stream, record, charge, audit).
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

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from costs import accounting
from ops import tracing
from orchestration import audit, dispatch, model_calls
from orchestration.connectivity import database_went_away
from orchestration.fanout import artifacts, prompts, review, slots
from orchestration.fanout.models import Fanout, FanoutJob
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
MAX_JOB_ATTEMPTS = 2  # the first answer and one retry with the validator's reason


class LeaseLost(Exception):
    """Another task owns the job now, or it is final: stop without writing anything."""


class RunNotRunning(Exception):
    """The run paused or stopped: hand the job back without finishing it."""


class CallFailed(Exception):
    """A model call failed for good (refused, or transient errors past the bound)."""


class WaitingForBatch(Exception):
    """Batch mode: the job's call is in a Message Batch that has not ended. The job is handed
    back (no owner); beat's poll_batches sends it again once the batch has ended."""


def lease_until() -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.FANOUT_JOB_LEASE_SECONDS)


def enqueue(job_pk: int, countdown: float | None = None) -> None:
    """Send the job's task. A dispatched job holds a lease, so if the broker cannot be reached
    the fan-out reaper sends it again once the lease expires: log, do not fail the caller."""
    dispatch.send(dispatch.RUN_FANOUT_JOB, (job_pk,), countdown=countdown)


def claim(job_pk: int, token: str) -> FanoutJob | None:
    """Take the job's lease: a freshly dispatched job (no owner) or one whose lease expired."""
    now = timezone.now()
    claimed = FanoutJob.objects.filter(
        Q(lease_owner="") | Q(lease_expires_at__lt=now), pk=job_pk, status=J.RUNNING
    ).update(
        lease_owner=token,
        lease_expires_at=lease_until(),
        started_at=Coalesce("started_at", now),
    )
    if not claimed:
        return None
    job = FanoutJob.objects.select_related("run", "run__fanout").get(pk=job_pk)
    # A first claim: no task ran this job before, so it has no model call yet, and every
    # call it makes is this task's (_call skips the look-ups for earlier ones, _finish lists
    # the calls from ``calls_made``).
    job.first_claim = job.started_at == now
    job.calls_made = []
    job.unwritten = {}
    if not job.first_claim:
        # Claimed before: calls still pending belong to a task that died (or lost its lease)
        # mid-call: failed, and their reservations given back (its own transaction: runs are
        # locked before their calls and jobs, everywhere). The lease is ours, so no call of
        # this job is started meanwhile. A first claim has no call to clean up.
        # A call waiting in a Message Batch is not interrupted: its answer is collected.
        accounting.release_interrupted(ModelCall.objects.filter(job_id=job_pk, batch_id=""))
    return job


def _renew(job: FanoutJob, token: str) -> None:
    """Extend our lease, in one statement that also requires the run to be running; when it
    matches nothing, find out which of the two stopped the job."""
    if FanoutJob.objects.filter(
        pk=job.pk,
        status=J.RUNNING,
        lease_owner=token,
        run__in=Run.objects.filter(pk=job.run_id, status=Run.Status.RUNNING),
    ).update(lease_expires_at=lease_until()):
        return
    if not FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).exists():
        raise LeaseLost
    raise RunNotRunning


def _update(job: FanoutJob, token: str, **fields: Any) -> None:
    """Write ``fields`` (and what waits in ``job.unwritten``) if the job is still ours
    (LeaseLost otherwise), and on ``job`` too, so the loop goes on from what it wrote without
    reading the row again."""
    fields = {**_unwritten(job), **fields}
    if not FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
        **fields
    ):
        raise LeaseLost
    job.unwritten = {}
    for name, value in fields.items():
        setattr(job, name, value)


def _unwritten(job: FanoutJob) -> dict[str, Any]:
    """Fields set on ``job`` that go to the row with its next write (``logged_attempt``: one
    statement fewer between a job's two calls); a handback writes them too."""
    return dict(getattr(job, "unwritten", {}))


def run_job(job_pk: int) -> Any:
    """The task body: run one job to a final state (or hand it back). Returns the run's id
    when the job settled, so the task lets the run go on (coordinator.job_settled); None when
    the job was handed back or is not ours."""
    token = uuid.uuid4().hex
    job = claim(job_pk, token)
    if job is None:
        return None
    workflow = registry.get(job.run.workflow_name)
    try:
        try:
            with tracing.span(
                "countersign.fanout_job", run_id=str(job.run_id), job=job.job_id, seq=job.seq
            ):
                _work(job, token, workflow)
        except (OperationalError, InterfaceError):
            if not database_went_away():
                raise  # a deadlock, a cancelled statement: the job's own failure (below)
            _database_away(job, token)
            return None
    except LeaseLost:
        return None
    except RunNotRunning:
        # Paused for review (or stopped): the job goes back to the queue with what it has
        # done so far, and is dispatched again when the run resumes.
        FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
            status=J.QUEUED, lease_owner="", lease_expires_at=None, **_unwritten(job)
        )
        return None
    except WaitingForBatch:
        # Nothing to hold a thread for: the batch id is on the pending call (persisted before
        # any poll), and the next task collects that batch instead of creating another. The
        # lease runs as usual, so the reaper also sends the job again if beat is away.
        FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
            lease_owner="", lease_expires_at=lease_until(), **_unwritten(job)
        )
        return None
    except slots.NoSlot:
        # Every global slot is taken (other runs): give the thread back and try again soon.
        with transaction.atomic():
            if FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
                lease_owner="", lease_expires_at=lease_until(), **_unwritten(job)
            ):
                transaction.on_commit(lambda: enqueue(job.pk, countdown=random.uniform(0.5, 2.0)))  # noqa: S311
        return None
    except Exception as exc:  # noqa: BLE001 - a bug must fail the job visibly, not spin
        logger.exception("fan-out job failed", extra={"job": job.pk, "run_id": str(job.run_id)})
        try:
            _finish(
                job, token, J.FAILED, f"The engine failed on this job: {type(exc).__name__}: {exc}"
            )
        except LeaseLost:
            return None
    return job.run_id


# After the database went away mid-job, the job is sent again this long after it is back.
DATABASE_RETRY_SECONDS = 2.0


def _database_away(job: FanoutJob, token: str) -> None:
    """Postgres went away mid-job (a restart, a failover): not the job's fault. What it
    committed stands; the job is handed back and sent again, and goes on from its last
    committed phase (a call answered but not recorded is marked interrupted and asked again).
    If the database is still away, the lease runs out and the reaper sends it."""
    logger.warning(
        "fan-out job interrupted: the database went away; resuming it later",
        extra={"job": job.pk, "run_id": str(job.run_id)},
    )
    connection.close()
    try:
        with transaction.atomic():
            if FanoutJob.objects.filter(pk=job.pk, status=J.RUNNING, lease_owner=token).update(
                lease_owner="", lease_expires_at=lease_until(), **_unwritten(job)
            ):
                transaction.on_commit(lambda: enqueue(job.pk, countdown=DATABASE_RETRY_SECONDS))
    except DatabaseError:
        connection.close()


def _work(job: FanoutJob, token: str, workflow: Workflow) -> None:
    spec = workflow.fanout
    assert spec is not None
    # ``job`` is the row as claimed; every write below is conditional on our lease and kept on
    # ``job`` (_update), so the loop never reads the row again.
    while True:
        if job.status != J.RUNNING or job.lease_owner != token:
            raise LeaseLost
        for what in ("prompt", "output", "output_text"):  # fails the job with the reason
            require_readable(getattr(job, what), f"Job {job.job_id}'s {what}")
        k = job.attempts
        if job.output_attempt < k:
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
            # validator, or anything else, reads it. That the line is written goes to the row
            # with the job's next write (its verdict, or a handback): a job that stops before
            # then appends the line again when it resumes, and read_lines keeps the first.
            artifacts.append(
                job.run_id,
                {
                    "job_id": job.job_id,
                    "attempt": k,
                    "output": job.output,
                    "output_text": job.output_text,
                },
            )
            job.logged_attempt = k
            job.unwritten = {**_unwritten(job), "logged_attempt": k}
        elif job.verdict_attempt < k:
            try:
                verdict, reason = _validate(job, token, workflow)
            except CallFailed as exc:
                # No verdict is not a FAIL of the specialist's work: the job fails on its own terms.
                _finish(job, token, J.FAILED, f"No verdict: the validator call failed: {exc}")
                return
            if verdict == FanoutJob.Verdict.PASS:
                # The verdict and the settled job in one write.
                _finish(
                    job, token, J.SUCCEEDED, "", verdict=verdict, reason=reason, verdict_attempt=k
                )
                return
            _update(job, token, verdict=verdict, reason=reason, verdict_attempt=k)
        elif job.verdict == FanoutJob.Verdict.PASS:
            _finish(job, token, J.SUCCEEDED, "")
            return
        elif review.wanted(job, spec):
            _review(job, token, workflow)
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
        errors = schema_errors(answer, prompts.verdict_schema(spec))
        if errors:
            return f"unusable verdict: {errors[0]}"
        if str(answer["job_id"]) != job.job_id:
            return f"unusable verdict: it is about job {answer['job_id']!r}, not {job.job_id!r}"
        return None

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
    if answer["status"] == "PASS":
        return FanoutJob.Verdict.PASS, reason
    if answer["status"] == prompts.EDGE_CASE:  # offered only when the workflow has a reviewer
        return FanoutJob.Verdict.EDGE, reason or "edge case"
    return FanoutJob.Verdict.FAIL, reason or "FAIL"


def _review(job: FanoutJob, token: str, workflow: Workflow) -> None:
    """The escalation reviewer settles the job, or a human does (orchestration.fanout.review)."""
    spec = workflow.fanout
    assert spec is not None
    found = review.attempts(job, spec)
    allowed = review.acceptable(found)
    if not job.review:
        if not allowed:  # nothing anyone may accept: it fails in code, as without a reviewer
            why = (
                "Failed validation twice" if job.verdict == FanoutJob.Verdict.FAIL else "Edge case"
            )
            _finish(
                job,
                token,
                J.FAILED,
                f"{why}; no output passed the schema. Last reason: {job.reason}",
            )
            return
        if not review.take_slot(job, token, spec):
            _update(
                job,
                token,
                review=FanoutJob.Review.ESCALATE,
                review_attempt=max(allowed),
                review_reason=f"the run's {spec.max_reviews} escalation review(s) are used. "
                f"Validator: {job.reason}",
            )
            review.record(job, job.review, job.review_reason, model_call=None)
    if job.review == FanoutJob.Review.REVIEWING:
        try:
            mc, message = _call(
                job,
                token,
                workflow,
                ModelCall.Role.REVIEWER,
                prompts.reviewer_system(spec),
                prompts.reviewer_turn(job, spec, found),
                spec.reviewer_max_tokens,
                check=lambda m: review.decision_problem(_text(m), job, allowed),
            )
        except CallFailed as exc:
            with transaction.atomic():
                _update(
                    job,
                    token,
                    review=FanoutJob.Review.ESCALATE,
                    review_attempt=max(allowed),
                    review_reason=f"no usable answer from the reviewer: {exc}"[:2000],
                )
                review.record(job, job.review, job.review_reason, model_call=None)
        else:
            kind, chosen, reason = review.decision(_text(message))
            with transaction.atomic():
                _update(
                    job,
                    token,
                    review=kind,
                    review_attempt=chosen or max(allowed),
                    review_reason=reason,
                )
                review.record(job, kind, reason, model_call=mc)
    if job.review == FanoutJob.Review.ACCEPT:
        _accept(job, token, spec, f"Accepted by the escalation reviewer: {job.review_reason}")
    elif job.review == FanoutJob.Review.FAIL:
        _finish(job, token, J.FAILED, f"Failed by the escalation reviewer: {job.review_reason}")
    else:
        _ask_a_human(job, token, spec, found)


def _accept(job: FanoutJob, token: str, spec: Any, why: str) -> None:
    try:
        output = review.accepted_output(job, spec, job.review_attempt)
    except ValueError as exc:  # never stored: the schema is not the reviewer's to override
        _finish(job, token, J.FAILED, f"Not accepted: {exc}")
        return
    _update(job, token, output=output, review_reason=why[:2000])
    _finish(job, token, J.SUCCEEDED, "")


def _ask_a_human(job: FanoutJob, token: str, spec: Any, found: list[dict[str, Any]]) -> None:
    """Apply a human's decision on this job's ticket; without one, open the ticket (the run
    pauses) and hand the job back until the ticket is resolved."""
    ticket = review.human_ticket(job)
    if ticket is not None and ticket.status == EscalationTicket.Status.RESOLVED:
        accept, why = review.human_decision(ticket)
        if accept:
            _accept(job, token, spec, why)
        else:
            _update(job, token, review_reason=why[:2000])
            _finish(job, token, J.FAILED, why)
        return
    if ticket is None:
        asked = (
            ModelCall.objects.filter(
                job=job, role=ModelCall.Role.REVIEWER, status=ModelCall.Status.OK
            )
            .order_by("-turn", "-attempt")
            .first()
            or ModelCall.objects.filter(job=job, role=ModelCall.Role.VALIDATOR)
            .order_by("-turn", "-attempt")
            .first()
        )
        assert asked is not None  # a reviewed job has its validator's call at least
        review.escalate_to_human(job, spec, found, asked)
    raise RunNotRunning


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
    client = client_for(**model_calls.client_kwargs(run))
    wait = min(settings.FANOUT_SLOT_WAIT_SECONDS, settings.FANOUT_JOB_LEASE_SECONDS / 3)
    turn = job.attempts
    last_error = ""
    # A job claimed for the first time has no earlier call to reuse, collect or count: this
    # task's own attempts are counted here. Otherwise the run must be running before a
    # recorded answer is used (a call checks it under its slot, below).
    first_claim = getattr(job, "first_claim", False)
    made = 0
    recorded = None
    if not first_claim:
        _renew(job, token)
        recorded = (
            ModelCall.objects.filter(
                job=job, role=role, turn=turn, status=ModelCall.Status.OK, error=""
            )
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
    batch = batch_mode(run) and role in BATCH_ROLES
    ttl = cache_ttl(job, workflow)
    while True:
        waiting = (
            ModelCall.objects.filter(job=job, role=role, turn=turn, status=ModelCall.Status.PENDING)
            .exclude(batch_id="")
            .first()
            if batch and not first_claim
            else None
        )
        if waiting is not None:
            # Submitted before (by this job's earlier task, maybe one that was killed): collect
            # that batch, never create a second one.
            try:
                outcome = model_calls.collect_batch(waiting, client)
            except model_calls.BatchNotReady:
                raise WaitingForBatch from None
            mc = waiting
            mc.finished_at = timezone.now()
            attempt = mc.attempt
        else:
            made += 1
            attempt = (
                made
                if first_claim
                else ModelCall.objects.filter(job=job, role=role, turn=turn).count() + 1
            )
            if attempt > limit:
                raise CallFailed(
                    f"{limit} attempts, each after the SDK's own retries. Last error: {last_error or 'interrupted'}"
                )
            params = {
                "model": model,
                "max_tokens": max_tokens,
                "system": prompts.system_blocks(system, ttl),
                "messages": [{"role": "user", "content": user}],
            }
            mc = ModelCall(
                run=run,
                job=job,
                role=role,
                turn=turn,
                attempt=attempt,
                model=model,
                request_content=[{"type": "text", "text": user}],
            )
            if batch:
                # No slot: a batch request is not a real-time call. The batch id is saved on the
                # call (submit_batch) before anything polls it.
                _renew(job, token)
                _open(job, mc, params, run, batch=True)
                failed = model_calls.submit_batch(mc, params, client, run=run)
                if failed is None:
                    raise WaitingForBatch
                outcome = failed
            else:
                with slots.slot(f"{job.pk}:{role}:{turn}:{attempt}", wait):
                    _renew(job, token)  # waiting for the slot must not outlive the lease
                    _open(job, mc, params, run)
                    outcome = model_calls.send(mc, params, client)
                    # Stamped while the slot is held: [created_at, finished_at] of every job call
                    # lies inside its slot, which is what the cap tests measure.
                    mc.finished_at = timezone.now()
        charged = _record(job, mc, outcome)
        if outcome.ok:
            _check_spend(charged, mc)  # before any check of the answer
            problem = check(outcome.message) if check else None
            if problem is None:
                return mc, outcome.message
            ModelCall.objects.filter(pk=mc.pk).update(error=problem[:2000])
            last_error = problem
        else:
            last_error = mc.error
            if not outcome.transient:
                raise CallFailed(f"the Messages API refused the request: {mc.error}")
        if attempt < limit:
            time.sleep(
                backoff_seconds(
                    attempt, settings.LLM_BACKOFF_BASE_SECONDS, settings.LLM_BACKOFF_MAX_SECONDS
                )
            )


def _open(
    job: FanoutJob, mc: ModelCall, params: dict[str, Any], run: Run, *, batch: bool = False
) -> None:
    """Hold the call against the run's ceiling before the request leaves (saves mc). The
    reservation also requires the run to be running: once it pauses, for any reason, no job
    sends anything until it is resumed."""
    try:
        model_calls.open_call(mc, params, batch=batch)
        if hasattr(job, "calls_made"):
            job.calls_made.append(mc.pk)
    except accounting.DoesNotFit as refused:
        if refused.running:
            pause_if_running(
                run.pk,
                EscalationTicket.Reason.BUDGET_EXCEEDED,
                str(refused),
                details=refused.details,
            )
        raise RunNotRunning from None  # the job goes back to the queue, unanswered


# The calls of a batch-mode run that go through Message Batches (the reviewer answers now).
BATCH_ROLES = (ModelCall.Role.SPECIALIST, ModelCall.Role.VALIDATOR)


def batch_mode(run: Run) -> bool:
    return bool((run.options or {}).get("batch"))


def cache_ttl(job: FanoutJob, workflow: Workflow) -> str:
    """The TTL of the run's shared prefixes (FanoutSpec.cache_ttl: 1h when the run may
    outlive a 5-minute entry)."""
    spec = workflow.fanout
    assert spec is not None
    known = getattr(job, "prefix_ttl", None)  # read once per task: the plan's size is fixed
    if known is None:
        try:
            fan = job.run.fanout  # read with the job when it was claimed
            total, concurrency = fan.total, fan.per_run_concurrency
        except Fanout.DoesNotExist:
            total, concurrency = 1, 1
        known = job.prefix_ttl = spec.cache_ttl(total, concurrency, batch=batch_mode(job.run))
    return known


def _record(
    job: FanoutJob, mc: ModelCall, outcome: model_calls.Outcome
) -> accounting.Charge | None:
    """Record the answer or the failure (orchestration.model_calls); whatever was billed
    (an answer, or the usage of a stream that broke) counts in the job's cost, whoever owns
    the job now."""

    def add_to_job(charged: accounting.Charge) -> None:
        FanoutJob.objects.filter(pk=job.pk).update(cost_usd=F("cost_usd") + charged.cost)

    # The audit event after the charge commits: the job's siblings charge the same run.
    if outcome.ok:
        return model_calls.record_answer(
            mc,
            outcome,
            run=job.run,
            audit_extra={"job_id": job.job_id},
            audit_apart=True,
            also=add_to_job,
        )
    return model_calls.record_failure(mc, outcome, run=job.run, audit_apart=True, also=add_to_job)


def _check_spend(charged: accounting.Charge | None, mc: ModelCall) -> None:
    """Pause the run if this answer took it over its ceiling, and hand the job back: the
    answer is recorded, and a resumed job uses it instead of asking again."""
    crossed = accounting.spend_breach(charged.run) if charged is not None else None
    if not crossed:
        return
    # If another job or the breaker paused or stopped the run first, it stays so; either way
    # no further call of this run can reserve until it runs again.
    pause_if_running(
        charged.run.pk, EscalationTicket.Reason.BUDGET_EXCEEDED, crossed, model_call=mc
    )
    raise RunNotRunning


def _finish(job: FanoutJob, token: str, status: str, failure: str, **also: Any) -> None:
    """Settle the job once (conditional on our lease) and record it in the audit trail;
    ``failure``: why it failed (stored as its reason); ``also``: more fields for the same
    write (the verdict that settles it)."""
    with transaction.atomic():
        fields: dict[str, Any] = {
            **also,
            "status": status,
            "lease_owner": "",
            "lease_expires_at": None,
            "finished_at": timezone.now(),
        }
        if status == J.FAILED:
            fields["reason"] = failure[:4000]
        _update(job, token, **fields)
        # What the event states, as stored (the cost adds up every task's calls); the run
        # stays cached on the job (a full refresh would read it again).
        job.refresh_from_db(fields=["attempts", "verdict", "reason", "cost_usd"])
        calls = (
            job.calls_made
            if getattr(job, "first_claim", False)
            else ModelCall.objects.filter(job=job).values_list("pk", flat=True)
        )
        audit.record(
            f"fanout.job.{'passed' if status == J.SUCCEEDED else 'failed'}",
            run=job.run,
            # The job's prompt and output, and every model call it made (audit.evidence reads
            # each row's evidence fields back by id).
            evidence_of=[job, *(ModelCall(pk=pk) for pk in calls)],
            payload={
                "job_id": job.job_id,
                "attempts": job.attempts,
                "verdict": job.verdict,
                "reason": job.reason,
                "cost_usd": str(job.cost_usd),
            },
        )
