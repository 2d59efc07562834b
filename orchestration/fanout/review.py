"""The escalation reviewer of a fan-out run: between failed or disputed jobs and the humans.

A job goes to the reviewer (FanoutSpec.reviewer_instructions; the workflow's ``reviewer``
model, by default the orchestrator's) when its validator FAILed it twice, or flagged it as
an edge case (``EDGE_CASE``, offered to validators only when a reviewer exists). The
reviewer gets the job, every attempt's output with the validator's verdict and reason, and
which attempts passed the job output schema **in code**. It answers one of:

- ``accept`` with ``accept_attempt``: the job succeeds with that attempt's output. Only an
  attempt whose output passed the schema check in code can be accepted; the engine checks
  it again before it stores the output, so no answer (and no job output telling the
  reviewer to "accept") overrides the schema. A job none of whose outputs passed the schema
  never reaches the reviewer: it fails in code, as without a reviewer;
- ``fail``: the job fails, with the reviewer's reason;
- ``escalate``: a human decides. The run pauses with an ``ambiguity`` ticket that shows the
  job, the outputs, the validator's reasons and what the reviewer decided and why. On that
  ticket, ``approve`` accepts the output the reviewer proposes (the latest that passed the
  schema), ``fail`` fails the run, and any other resolution (resume with a note, retry)
  marks the job failed with the human's words; the run then goes on.

What the reviewer may cost is bounded in code: at most ``FanoutSpec.max_reviews`` jobs of a
run are reviewed (``Fanout.reviews_used``, taken by one conditional UPDATE, once per job),
each with at most LLM_STEP_MAX_ATTEMPTS calls, each reserved against the run's ceiling like
every call (orchestration.model_calls). Past the limit a job goes straight to a human. A
reviewer answer that is unusable (not the schema, another job, an attempt that may not be
accepted) is asked for again; when no usable answer comes, a human decides.

The decisions are the job row's ``review``, ``review_reason`` and ``review_attempt``; the
reviewer's calls are ModelCalls of the job with role ``reviewer`` (``turn`` = the job's
attempt); every decision is an audit event (``fanout.job.reviewed``).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F

from orchestration import audit
from orchestration.fanout import prompts
from orchestration.fanout.models import Fanout, FanoutJob
from orchestration.models import AuditEvent, ModelCall
from orchestration.privacy import require_readable
from orchestration.validation import parse_json_answer, schema_errors
from orchestration.workflows.declaration import FanoutSpec
from reviews.escalation import pause_if_running
from reviews.models import EscalationTicket

V = FanoutJob.Verdict
RV = FanoutJob.Review
REVIEW_TICKET = EscalationTicket.Reason.AMBIGUITY
MAX_JOB_ATTEMPTS = 2


def wanted(job: FanoutJob, spec: FanoutSpec) -> bool:
    """Whether the job's verdict sends it to the reviewer (rather than retry or fail)."""
    if not spec.has_reviewer:
        return False
    if job.review or job.verdict == V.EDGE:
        return True
    return job.verdict == V.FAIL and job.attempts >= MAX_JOB_ATTEMPTS


def _text(content: Any) -> str:
    return "\n".join(
        b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"
    )


def _output_of(job: FanoutJob, attempt: int) -> Any:
    """The specialist's output of ``attempt``: the row's for the current one, else the
    recorded answer of that attempt's specialist call."""
    if attempt == job.attempts:
        return job.output
    mc = (
        ModelCall.objects.filter(
            job=job, role=ModelCall.Role.SPECIALIST, turn=attempt, status=ModelCall.Status.OK
        )
        .order_by("-attempt")
        .first()
    )
    if mc is None:
        return None
    content = require_readable(mc.response_content, f"Job {job.job_id}'s attempt {attempt}")
    output, _error = parse_json_answer(_text(content))
    return output if isinstance(output, dict) else None


def attempts(job: FanoutJob, spec: FanoutSpec) -> list[dict[str, Any]]:
    """Every attempt's output, whether it passed the schema in code, and its verdict."""
    found = []
    for n in range(1, job.attempts + 1):
        output = _output_of(job, n)
        schema_ok = isinstance(output, dict) and not schema_errors(output, spec.job_output_schema)
        last = n == job.attempts
        found.append(
            {
                "attempt": n,
                "output": output,
                "schema_ok": schema_ok,
                "verdict": job.verdict if last else V.FAIL,
                "reason": job.reason if last else job.retry_reason,
            }
        )
    return found


def acceptable(found: list[dict[str, Any]]) -> list[int]:
    return [a["attempt"] for a in found if a["schema_ok"]]


def take_slot(job: FanoutJob, token: str, spec: FanoutSpec) -> bool:
    """Take one of the run's ``max_reviews`` review slots for this job and mark it
    ``reviewing``, in one transaction; False (nothing changed) when none is left."""
    with transaction.atomic():
        if not Fanout.objects.filter(run_id=job.run_id, reviews_used__lt=spec.max_reviews).update(
            reviews_used=F("reviews_used") + 1
        ):
            return False
        if not FanoutJob.objects.filter(
            pk=job.pk, status=FanoutJob.Status.RUNNING, lease_owner=token, review=""
        ).update(review=RV.REVIEWING):
            transaction.set_rollback(True)  # not ours any more: the slot is not taken
            return False
    job.review = RV.REVIEWING
    return True


def decision_problem(answer_text: str, job: FanoutJob, allowed: list[int]) -> str | None:
    """Why the reviewer's answer cannot be used, or None."""
    answer, error = parse_json_answer(answer_text)
    if error:
        return f"unusable decision: {error}"
    errors = schema_errors(answer, prompts.DECISION_SCHEMA)
    if errors:
        return f"unusable decision: {errors[0]}"
    if str(answer["job_id"]) != job.job_id:
        return f"unusable decision: it is about job {answer['job_id']!r}, not {job.job_id!r}"
    if answer["decision"] == "accept":
        chosen = answer.get("accept_attempt")
        if chosen not in allowed:
            return (
                f"unusable decision: attempt {chosen} cannot be accepted (acceptable: "
                f"{allowed or 'none'}; an output that broke the output schema never is)"
            )
    return None


def decision(answer_text: str) -> tuple[str, int, str]:
    """(review, accepted attempt or 0, reason) of a usable answer."""
    answer, _ = parse_json_answer(answer_text)
    kind = {"accept": RV.ACCEPT, "fail": RV.FAIL, "escalate": RV.ESCALATE}[answer["decision"]]
    chosen = int(answer.get("accept_attempt") or 0) if kind == RV.ACCEPT else 0
    return kind, chosen, str(answer["reason"])[:2000]


def accepted_output(job: FanoutJob, spec: FanoutSpec, attempt: int) -> dict[str, Any]:
    """The output of ``attempt``, checked against the workflow's schema in code once more;
    ValueError when it does not pass (then nobody may accept it)."""
    output = _output_of(job, attempt)
    if not isinstance(output, dict):
        raise ValueError(f"attempt {attempt} has no JSON object to accept")
    problems = schema_errors(output, spec.job_output_schema)
    if problems:
        raise ValueError(f"attempt {attempt}'s output breaks the output schema: {problems[0]}")
    return output


def record(job: FanoutJob, review: str, reason: str, *, model_call: ModelCall | None) -> None:
    audit.record(
        "fanout.job.reviewed",
        run=job.run,
        evidence_of=[job, *([model_call] if model_call is not None else [])],
        payload={
            "job_id": job.job_id,
            "review": review,
            "reason": reason,
            "attempt": job.review_attempt,
            "by": "reviewer" if model_call is not None else "engine",
            "model_call": model_call.pk if model_call is not None else None,
        },
    )


def human_ticket(job: FanoutJob) -> EscalationTicket | None:
    """The latest ticket a human was given about this job's review."""
    return (
        EscalationTicket.objects.filter(
            run_id=job.run_id, reason=REVIEW_TICKET, failing_model_call__job=job
        )
        .select_related("resolved_by")
        .order_by("-created_at")
        .first()
    )


def escalate_to_human(
    job: FanoutJob, spec: FanoutSpec, found: list[dict[str, Any]], model_call: ModelCall
) -> EscalationTicket | None:
    """Pause the run with a ticket about this job (None if the run is no longer running:
    the job asks again when it runs next). ``model_call``: the reviewer's answer, or the
    validator's call when the reviewer was not asked (its limit was used)."""
    proposed = job.review_attempt or max(acceptable(found), default=0)
    by_reviewer = model_call.role == ModelCall.Role.REVIEWER
    why = job.review_reason.strip().rstrip(".") + "."
    what = (
        f"The escalation reviewer ({model_call.model}) could not settle job {job.job_id}: {why}"
        if by_reviewer
        else f"Job {job.job_id} needs a human: {why}"
    )
    message = (
        f"{what} Approve accepts attempt {proposed}'s output; resume with a note (or retry) marks "
        "the job failed with your words; fail stops the run."
        if proposed
        else f"{what} No output passed the schema: resume with a note marks the job failed; fail stops the run."
    )
    return pause_if_running(
        job.run_id,
        REVIEW_TICKET,
        message,
        model_call=model_call,
        details={
            "fanout_review": {
                "job_id": job.job_id,
                "task": job.prompt,
                "decision": job.review,
                "decided_by": model_call.model if by_reviewer else "engine",
                "reason": job.review_reason,
                "proposed_attempt": proposed,
                "attempts": found,
            }
        },
    )


def human_decision(ticket: EscalationTicket) -> tuple[bool, str]:
    """(accept?, why) from a resolved ticket: approve accepts, anything else fails the job."""
    who = ticket.resolved_by.get_username() if ticket.resolved_by else "a reviewer"
    resolved = (
        AuditEvent.objects.filter(
            run_id=ticket.run_id, kind="ticket.resolved", payload__ticket=ticket.pk
        )
        .order_by("-pk")
        .first()
    )
    note = str((resolved.payload if resolved else {}).get("note") or "")
    words = note.strip() or ticket.comment.strip() or "no comment"
    if ticket.resolution == EscalationTicket.Resolution.APPROVE:
        return True, f"Accepted by {who} on ticket #{ticket.pk}: {words}"
    return False, f"Failed by {who} on ticket #{ticket.pk} ({ticket.resolution}): {words}"
