"""A fan-out run's own steps, and the fan-in: decompose, dispatch, halt, maybe-finish, aggregate.

The run's steps are ordinary ``advance_run`` tasks (the engine hands a fan-out workflow's
step to ``step``), holding the run's step lease:

- **decomposing**: the orchestrator is called with the input, the workflow's context data
  and the keys of the items it must cover, and must answer with the job list; it is
  validated (orchestration.fanout.plan: shape, and every item exactly once) and the jobs
  are inserted, each with the workflow's job output schema, in the same transaction that
  moves the phase on;
- **dispatching**: ``maybe_continue`` fills the run's free slots (at most
  per_run_concurrency jobs running) with queued jobs, in order;
- **aggregating**: the orchestrator gets every passed output and every failure and answers
  with the final result, which must satisfy the output schema and state what the job
  results give (orchestration.fanout.aggregate: counts and findings, against the
  workflow's expected_aggregate) before the run succeeds.

An answer refused in code (a bad plan, an invalid result) is asked for once more with the
reasons (ANSWER_ATTEMPTS); a second refusal pauses the run with a ticket. A reviewer's
resume or retry starts a fresh round, and the next call carries the reviewer's note.

The fan-in is in Postgres, never a chord: every job that settles calls ``job_settled``,
which locks the run's Fanout row and decides, idempotently, whether to halt (failed jobs
exceed max_failures), dispatch more, or (nothing queued or running) move to aggregating
and enqueue the aggregation step. However many times it runs, the phase moves once.
"""

from __future__ import annotations

import json
import logging
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, F
from django.db.models.functions import Greatest
from django.utils import timezone

from costs import accounting
from orchestration import audit, dispatch, lifecycle, model_calls
from orchestration.fanout import aggregate, artifacts, jobs
from orchestration.fanout.models import Fanout, FanoutJob
from orchestration.fanout.plan import (
    InvalidItems,
    InvalidPlan,
    coverage_problems,
    decompose_turn,
    item_keys,
    parse_plan,
    size_check,
)
from orchestration.llm import client_for
from orchestration.models import AuditEvent, ModelCall, Run
from orchestration.privacy import require_readable
from orchestration.tool_execution import in_round, round_start
from orchestration.validation import parse_json_answer, schema_errors
from orchestration.workflows.declaration import FanoutSpec, JobResult, Workflow
from reviews.escalation import escalate, pause_if_running
from reviews.models import EscalationTicket

logger = logging.getLogger(__name__)
P = Fanout.Phase
J = FanoutJob.Status
R = EscalationTicket.Reason
DECOMPOSE_TURN, AGGREGATE_TURN = 0, 1
# An orchestrator answer (plan or aggregate) refused in code is asked for once more, with the
# reasons, before the run pauses for a reviewer: the same bound as a job's retry.
ANSWER_ATTEMPTS = 2
REFUSALS = ("fanout.plan_rejected", "final.rejected")


def step(run: Run, workflow: Workflow) -> float | None:
    """One step of a fan-out run; returns the delay before the next step, or None for none."""
    spec = workflow.fanout
    assert spec is not None
    fan = Fanout.objects.filter(run=run).first()
    if fan is None:
        fan = _start(run, spec)
    if fan.phase == P.DECOMPOSING:
        try:
            item_keys(spec, run.input)
        except InvalidItems as exc:  # the workflow's bug: no plan could be accepted
            escalate(run.pk, R.VALIDATION_FAILED, f"The workflow's items are unusable: {exc}")
            return None
        return _orchestrator_turn(run, workflow, DECOMPOSE_TURN)
    if fan.phase == P.DISPATCHING:
        reap(run_id=run.pk)
        job_settled(run.pk)
        return None
    if fan.phase == P.AGGREGATING:
        uncovered = plan_coverage_problems(job_results(run.pk), item_keys(spec, run.input))
        if uncovered:
            # Not the orchestrator's doing (job rows deleted or added after the plan was
            # accepted): a reviewer looks, and no aggregate is paid for.
            escalate(
                run.pk,
                R.VALIDATION_FAILED,
                f"The jobs no longer cover the run's items: {uncovered[0]}",
                details={"errors": uncovered},
            )
            return None
        return _orchestrator_turn(run, workflow, AGGREGATE_TURN)
    return None


def threshold_of(spec: FanoutSpec) -> Decimal:
    value = (
        spec.failure_threshold
        if spec.failure_threshold is not None
        else settings.FANOUT_FAILURE_THRESHOLD
    )
    return Decimal(str(value))


def max_failures(threshold: Decimal, total: int) -> int:
    """How many failed jobs a run may have: it halts when failures exceed threshold x N."""
    return int((threshold * total).to_integral_value(rounding=ROUND_FLOOR))


def _start(run: Run, spec: FanoutSpec) -> Fanout:
    per_run = spec.concurrency(settings.FANOUT_PER_RUN_CONCURRENCY)
    cache = (run.estimate or {}).get("cache") or {}
    fan, _ = Fanout.objects.get_or_create(
        run=run,
        defaults={
            "failure_threshold": threshold_of(spec),
            "per_run_concurrency": per_run,
            "artifact": str(artifacts.path_for(run.pk)),
            # Warming pays only when a prefix is cached at all, and a batch run's requests are
            # not answered in order anyway (its 1h entries are written by whichever comes first).
            "warm_first": bool(cache.get("specialist_cached") or cache.get("validator_cached"))
            and not (run.options or {}).get("batch"),
        },
    )
    return fan


# --- orchestrator turns -------------------------------------------------------------------


def _user_turn(run: Run, workflow: Workflow, turn: int, refused: list[str]) -> dict[str, Any]:
    spec = workflow.fanout
    assert spec is not None
    asked_again = {}
    if refused:
        asked_again["previous_answer_refused"] = refused
    if run.pending_note:
        asked_again["reviewer_note"] = run.pending_note
    if turn == DECOMPOSE_TURN:
        return {**decompose_turn(spec, run.input), **asked_again}
    done = FanoutJob.objects.filter(run=run).order_by("seq")
    succeeded = list(done.filter(status=J.SUCCEEDED))
    for j in succeeded:  # a placeholder must stop the run, not be aggregated
        require_readable(j.output, f"Job {j.job_id}'s output")
    return {
        **asked_again,
        "phase": "aggregate",
        "input": run.input,
        "counts": counts(run.pk),
        "results": [
            {"job_id": j.job_id, "output": spec.summarize(j.output) if spec.summarize else j.output}
            for j in succeeded
        ],
        "failed": [{"job_id": j.job_id, "reason": j.reason} for j in done.filter(status=J.FAILED)],
    }


def _orchestrator_turn(run: Run, workflow: Workflow, turn: int) -> float | None:
    # A call left pending by a dead worker: failed, and its reservation given back.
    accounting.release_interrupted(ModelCall.objects.filter(run=run, job__isnull=True))
    calls = ModelCall.objects.filter(run=run, job__isnull=True, turn=turn)
    done = calls.filter(status=ModelCall.Status.OK).order_by("-attempt").first()
    refusals = _refusals(run, turn)
    if done is not None and done.pk not in refusals:
        # Answered before a crash (or a budget pause): judge that answer, do not pay twice.
        return _after_answer(run, workflow, turn, done)
    attempt = calls.count() + 1
    refused = refusals[done.pk] if done is not None else []
    user = json.dumps(_user_turn(run, workflow, turn, refused), ensure_ascii=False)
    model = workflow.orchestrator_model
    params = {
        "model": model,
        "max_tokens": workflow.constraints.max_output_tokens,
        "system": [
            {
                "type": "text",
                "text": run.workflow_version.system_prompt,
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "messages": [{"role": "user", "content": user}],
    }
    mc = ModelCall(
        run=run,
        turn=turn,
        attempt=attempt,
        role=ModelCall.Role.ORCHESTRATOR,
        model=model,
        request_content=[{"type": "text", "text": user}],
    )
    try:
        model_calls.open_call(mc, params)  # saves mc holding its reservation, or sends nothing
    except accounting.DoesNotFit as refused:
        if refused.running:
            pause_if_running(run.pk, R.BUDGET_EXCEEDED, str(refused), details=refused.details)
        return None
    outcome = model_calls.send(mc, params, client_for(**model_calls.client_kwargs(run)))
    if not outcome.ok:
        model_calls.record_failure(mc, outcome, run=run)
        tries = in_round(calls, round_start(run)).count()
        wait = model_calls.retry_in(outcome, tries)
        if wait is not None:
            return wait
        why = "failed" if outcome.transient else "was refused"
        escalate(
            run.pk,
            R.RETRIES_EXHAUSTED,
            f"The orchestrator call {why} ({tries} attempts): {mc.error}",
            model_call=mc,
        )
        return None
    with transaction.atomic():
        charged = model_calls.record_answer(mc, outcome, run=run)
        if run.pending_note:  # the reviewer's note went into this call
            Run.objects.filter(pk=run.pk).update(pending_note="")
            run.pending_note = ""
    # The spend check first, before the answer is judged at all.
    crossed = accounting.spend_breach(charged.run)
    if crossed:
        # Paid for and recorded; a manager decides whether the run may go on. On resume the
        # step judges this same answer (see above) instead of asking again.
        pause_if_running(run.pk, R.BUDGET_EXCEEDED, crossed, model_call=mc)
        return None
    return _after_answer(run, workflow, turn, mc)


def _after_answer(run: Run, workflow: Workflow, turn: int, mc: ModelCall) -> float | None:
    if mc.stop_reason == "max_tokens":
        escalate(
            run.pk,
            R.VALIDATION_FAILED,
            f"The orchestrator's answer was cut off at {workflow.constraints.max_output_tokens} tokens.",
            model_call=mc,
        )
        return None
    if turn == DECOMPOSE_TURN:
        return _accept_plan(run, workflow, mc)
    return _accept_result(run, workflow, mc)


def _accept_plan(run: Run, workflow: Workflow, mc: ModelCall) -> float | None:
    spec = workflow.fanout
    assert spec is not None
    items = item_keys(spec, run.input)
    try:
        planned = parse_plan(mc.text, items)
        size_check(len(planned), (run.estimate or {}).get("jobs"))
    except InvalidPlan as exc:
        return _refuse(
            run, mc, "fanout.plan_rejected", exc.problems, "The decomposition was refused"
        )
    with transaction.atomic():
        fan = Fanout.objects.select_for_update().get(run=run)
        if fan.phase != P.DECOMPOSING:
            return None  # a duplicate step got here first
        FanoutJob.objects.bulk_create(
            [
                FanoutJob(
                    run=run,
                    job_id=p.job_id,
                    seq=i,
                    prompt=p.prompt,
                    schema=spec.job_output_schema,
                )
                for i, p in enumerate(planned)
            ],
            batch_size=500,
        )
        fan.phase, fan.total = P.DISPATCHING, len(planned)
        fan.max_failures = max_failures(fan.failure_threshold, len(planned))
        fan.save()
        audit.record(
            "fanout.decomposed",
            run=run,
            payload={
                "jobs": len(planned),
                "items": len(items),
                "per_run_concurrency": fan.per_run_concurrency,
                "failure_threshold": str(fan.failure_threshold),
                "max_failures": fan.max_failures,
            },
        )
    job_settled(run.pk)
    return None


def _accept_result(run: Run, workflow: Workflow, mc: ModelCall) -> float | None:
    spec = workflow.fanout
    assert spec is not None
    output, error = parse_json_answer(mc.text)
    problems = [error] if error else schema_errors(output, workflow.output_schema)
    tally = counts(run.pk)
    if not problems:
        problems = aggregate.problems(output, spec.expected_aggregate(job_results(run.pk)))
    if problems:
        return _refuse(
            run,
            mc,
            "final.rejected",
            problems,
            "The aggregated result is invalid",
            proposed_result=output if not error else None,
        )
    with transaction.atomic():
        if not Fanout.objects.filter(run=run, phase=P.AGGREGATING).update(phase=P.DONE):
            return None
        lifecycle.transition(
            run.pk,
            Run.Status.SUCCEEDED,
            actor="engine",
            result=output,
            event_payload={"cost_usd": str(Run.objects.get(pk=run.pk).cost_usd), "jobs": tally},
        )
    return None


def _refusals(run: Run, turn: int) -> dict[int, list[str]]:
    """The orchestrator answers of this turn refused in code: model call id -> problems."""
    events = AuditEvent.objects.filter(run=run, kind__in=REFUSALS, payload__turn=turn)
    return {
        e.payload["model_call"]: e.payload["problems"] for e in events if "model_call" in e.payload
    }


def _refuse(
    run: Run, mc: ModelCall, kind: str, problems: list[str], what: str, **details: Any
) -> float | None:
    """Record the refusal; ask once more with the reasons, or pause the run for a reviewer."""
    audit.record(
        kind, run=run, payload={"turn": mc.turn, "model_call": mc.pk, "problems": problems}
    )
    answers = in_round(
        ModelCall.objects.filter(
            run=run, job__isnull=True, turn=mc.turn, status=ModelCall.Status.OK
        ),
        round_start(run),
    ).count()
    if answers < ANSWER_ATTEMPTS:
        return 0.0  # the next step asks again, with the problems in its user turn
    escalate(
        run.pk,
        R.VALIDATION_FAILED,
        f"{what} ({answers} answers): {problems[0]}",
        model_call=mc,
        details={"errors": problems, **details},
    )
    return None


# --- the fan-in ---------------------------------------------------------------------------


def counts(run_id: Any) -> dict[str, int]:
    tally = {s: 0 for s in J.values}
    for status, n in (
        FanoutJob.objects.filter(run_id=run_id).values_list("status").annotate(n=Count("pk"))
    ):
        tally[status] = n
    tally["total"] = sum(tally[s] for s in J.values)
    return tally


def job_results(run_id: Any) -> list[JobResult]:
    """The settled jobs as the workflow's expected_aggregate sees them, in plan order."""
    return [
        JobResult(
            item=job_id,
            status=status,
            output=output if status == J.SUCCEEDED else None,
            reason=reason if status != J.SUCCEEDED else "",
        )
        for job_id, status, output, reason in FanoutJob.objects.filter(run_id=run_id)
        .order_by("seq")
        .values_list("job_id", "status", "output", "reason")
    ]


def plan_coverage_problems(results: list[JobResult], items: list[str]) -> list[str]:
    problems = coverage_problems([r.item for r in results], items)
    unsettled = [r.item for r in results if r.status not in (J.SUCCEEDED, J.FAILED)]
    if unsettled:
        problems.append(f"{len(unsettled):,} job(s) did not settle: {', '.join(unsettled[:10])}")
    return problems


def job_settled(run_id: Any, *, take_one: bool = False) -> int | None:
    """Idempotent "maybe finish": halt, dispatch more, or move on to aggregation.

    Locks the run's Fanout row, so concurrent callers (every job that settles) decide one
    at a time, and each decision is made from the committed job rows. Dispatched jobs are
    sent as tasks once this commits; with ``take_one`` (a job task that just settled its job
    and may go on), the first of them is not sent but returned, for the caller to run in
    the same thread, which saves a trip through the broker per job. It is dispatched like
    the others (running, no owner, a lease): if the caller dies before claiming it, the
    reaper sends it when the lease runs out.
    """
    dispatched: list[int] = []
    with transaction.atomic():
        fan = (
            Fanout.objects.select_for_update(of=("self",))
            .select_related("run")
            .only(
                "phase",
                "total",
                "failure_threshold",
                "max_failures",
                "per_run_concurrency",
                "warm_first",
                "run__status",
            )
            .filter(run_id=run_id)
            .first()
        )
        if fan is None or fan.phase != P.DISPATCHING:
            return None
        if fan.run.status != Run.Status.RUNNING:
            return None  # paused for review: resuming the run dispatches again
        tally = counts(run_id)
        if tally[J.FAILED] > fan.max_failures:
            _halt(fan, tally)
            return None
        free = fan.per_run_concurrency - tally[J.RUNNING]
        if fan.warm_first and not (tally[J.SUCCEEDED] or tally[J.FAILED]):
            # No job has settled yet: one runs alone and writes the shared prefixes to the
            # cache; the others start when it settles and read them.
            free = min(free, 1 - tally[J.RUNNING])
        if free > 0 and tally[J.QUEUED]:
            dispatched = list(
                FanoutJob.objects.filter(run_id=run_id, status=J.QUEUED)
                .order_by("seq")
                .values_list("pk", flat=True)[:free]
            )
            FanoutJob.objects.filter(pk__in=dispatched, status=J.QUEUED).update(
                status=J.RUNNING,
                attempts=Greatest(F("attempts"), 1),
                lease_owner="",
                lease_expires_at=jobs.lease_until(),
            )
            sent = dispatched[1:] if take_one else dispatched
            transaction.on_commit(lambda: [jobs.enqueue(pk) for pk in sent])
            return dispatched[0] if take_one else None
        elif not tally[J.RUNNING] and not tally[J.QUEUED]:
            fan.phase = P.AGGREGATING
            fan.save(update_fields=["phase", "updated_at"])
            audit.record(
                "fanout.jobs_done",
                run=Run.objects.get(pk=run_id),
                payload={
                    "succeeded": tally[J.SUCCEEDED],
                    "failed": tally[J.FAILED],
                    "total": tally["total"],
                },
            )
            transaction.on_commit(lambda: dispatch.enqueue_step(run_id))
    return None


def _halt(fan: Fanout, tally: dict[str, int]) -> None:
    """Stop the run: no more dispatching, outstanding jobs cancelled, a ticket for the operator."""
    now = timezone.now()
    # The run first, then its jobs, then the audit trail: the order of a job recording an
    # answer (the run's row for the charge, then the job's cost) and of a job settling (its
    # row, then the audit lock). Cancelling the jobs before locking the run deadlocked with a
    # charge in flight: it held the run and wanted a job row the halt held, the halt held
    # that job row and wanted the run (to move it to halted).
    list(Run.objects.locked().filter(pk=fan.run_id).values_list("pk"))
    cancelled = FanoutJob.objects.filter(
        run_id=fan.run_id, status__in=(J.QUEUED, J.RUNNING)
    ).update(
        status=J.CANCELLED,
        lease_owner="",
        lease_expires_at=None,
        finished_at=now,
        reason="Cancelled: the run halted at its failure threshold.",
    )
    fan.phase = P.HALTED
    fan.save(update_fields=["phase", "updated_at"])
    failed = tally[J.FAILED]
    message = (
        f"{failed} of {fan.total} jobs failed, more than the {fan.failure_threshold:.0%} failure threshold "
        f"allows ({fan.max_failures}). Dispatching stopped and {cancelled} outstanding job(s) were cancelled."
    )
    examples = list(
        FanoutJob.objects.filter(run_id=fan.run_id, status=J.FAILED)
        .order_by("finished_at")
        .values("job_id", "reason")[:20]
    )
    run = Run.objects.get(pk=fan.run_id)
    audit.record(
        "fanout.halted",
        run=run,
        payload={
            "failed": failed,
            "total": fan.total,
            "max_failures": fan.max_failures,
            "cancelled": cancelled,
        },
    )
    escalate(
        fan.run_id,
        R.FAILURE_RATE_EXCEEDED,
        message,
        halt=True,
        details={
            "counts": {**tally, J.CANCELLED: tally[J.CANCELLED] + cancelled},
            "failed_jobs": examples,
        },
    )
    transaction.on_commit(lambda: notify_operator(fan.run_id, message))


def notify_operator(run_id: Any, message: str) -> None:
    """Email the operator who started the run (reviewers get the ticket notification)."""
    run = Run.objects.select_related("requested_by").get(pk=run_id)
    email = run.requested_by.email
    if not email:
        return
    try:
        send_mail(
            f"[Countersign] Run {str(run.pk)[:8]} halted: failure rate exceeded",
            f"{message}\n\n{settings.PUBLIC_BASE_URL.rstrip('/')}/runs/{run.pk}/",
            settings.DEFAULT_FROM_EMAIL,
            [email],
        )
    except Exception:  # noqa: BLE001 - the ticket is open whatever the mail server does
        logger.exception("could not email the operator of run %s", run_id)


def reap(run_id: Any = None) -> int:
    """Re-enqueue running jobs whose lease expired (their worker died or the message was lost)."""
    now = timezone.now()
    expired = FanoutJob.objects.filter(
        status=J.RUNNING, lease_expires_at__lt=now, run__status=Run.Status.RUNNING
    )
    if run_id is not None:
        expired = expired.filter(run_id=run_id)
    count = 0
    for pk in list(expired.values_list("pk", flat=True)[:5000]):
        if FanoutJob.objects.filter(pk=pk, status=J.RUNNING, lease_expires_at__lt=now).update(
            lease_owner="", lease_expires_at=jobs.lease_until()
        ):
            logger.warning("re-queueing fan-out job %s: its lease expired", pk)
            jobs.enqueue(pk)
            count += 1
    return count
