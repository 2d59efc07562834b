"""Starting a run: the one path every entry point (page, command, API) goes through.

Order matters: the input is validated before anything is written, so bad input creates
no row; then the workflow is snapshotted, the cost estimated, and the run either queued
or sent to a manager for approval, all in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts import pauses
from costs import accounting, budgets, lineup
from costs.estimates import Estimate, PromptSize, estimate_run
from orchestration import audit, lifecycle, subagents
from orchestration.fanout import prompts
from orchestration.fanout.plan import decompose_turn
from orchestration.llm import client_for
from orchestration.models import Run, WorkflowVersion
from orchestration.untrusted import Rejected, check_json, parse_json
from orchestration.validation import schema_errors
from orchestration.workflows import registry
from orchestration.workflows.declaration import Workflow
from orchestration.workflows.versions import (
    VersionUnavailable,
    api_tools,
    declaration_for,
    drift,
    serving,
)
from reviews.models import ApprovalRequest


class RunRefused(Exception):
    """The run was not started; ``errors`` maps a field (or "input") to what was wrong.

    ``code`` says why, for callers that answer with a status: ``invalid_input`` (bad workflow
    or input), ``version_unavailable`` (no approved version of the workflow can serve: the
    deployed change awaits its approval, orchestration.version_policy), ``budget_exceeded``
    (a hard budget would be passed), ``rate_limited`` (the user's daily limit on starting runs
    is reached), ``user_paused`` (an anomaly alert paused the user's new runs until a manager
    lifts it: alerts.pauses), ``model_unavailable`` (a model the workflow uses has no price,
    or is past its end of life: costs.lineup).
    """

    INVALID_INPUT = "invalid_input"
    MODEL_UNAVAILABLE = "model_unavailable"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    USER_PAUSED = "user_paused"
    VERSION_UNAVAILABLE = "version_unavailable"

    def __init__(
        self, errors: dict[str, str], code: str = INVALID_INPUT, retry_after: float | None = None
    ) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
        self.code = code
        self.retry_after = retry_after  # seconds until a rate-limited start may succeed


def parse_input(raw: str | dict[str, Any]) -> dict[str, Any]:
    """The input as a JSON object within the limits of ``orchestration.untrusted`` (NUL, lone
    surrogates, depth, NaN/Infinity/1e400, 64-bit integers), whatever the entry point; the
    errors are keyed by the field's path in the input, as schema errors are."""
    try:
        if isinstance(raw, dict):
            value = check_json(raw, field="")
        else:
            value = parse_json(raw, field="input")
    except Rejected as exc:
        raise RunRefused({(k.lstrip("/") or "input"): v for k, v in exc.fields.items()}) from None
    if not isinstance(value, dict):
        raise RunRefused({"input": f"must be a JSON object, not {type(value).__name__}"})
    return value


def serving_version(workflow_name: str) -> tuple[Workflow, WorkflowVersion]:
    """The declaration and approved version new runs of the workflow start on."""
    try:
        return serving(workflow_name)
    except registry.UnknownWorkflow as exc:
        raise RunRefused({"workflow": str(exc)}) from None
    except VersionUnavailable as exc:
        raise RunRefused({"workflow": str(exc)}, code=RunRefused.VERSION_UNAVAILABLE) from None


def validate_input(
    workflow_name: str, raw: str | dict[str, Any], workflow: Workflow | None = None
) -> dict[str, Any]:
    """The input, checked against ``workflow``'s input schema (by default the declaration
    registered under the name)."""
    if workflow is None:
        try:
            workflow = registry.get(workflow_name)
        except registry.UnknownWorkflow as exc:
            raise RunRefused({"workflow": str(exc)}) from None
    value = {**start_defaults(workflow), **parse_input(raw)}
    errors = schema_errors(value, workflow.input_schema)
    if errors:
        raise RunRefused({e.split(":", 1)[0]: e.split(":", 1)[1].strip() for e in errors})
    return value


def refuse_unavailable_models(workflow: Workflow) -> list[str]:
    """Refuse a workflow whose models are unpriced or past end of life (costs.lineup), before
    anything is measured or written; return the warnings (a deprecated model)."""
    verdict = lineup.workflow_verdict(workflow)
    if verdict.refusals:
        raise RunRefused({"models": " ".join(verdict.refusals)}, code=RunRefused.MODEL_UNAVAILABLE)
    return verdict.warnings


def start_defaults(workflow: Workflow, now: dt.datetime | None = None) -> dict[str, Any]:
    """What a start fills in when its input leaves it out (``Workflow.input_defaults``, e.g. the
    previous calendar day), from the time now in the workflow's time zone."""
    if workflow.input_defaults is None:
        return {}
    zone = zoneinfo.ZoneInfo(workflow.time_zone or settings.TIME_ZONE)
    return workflow.input_defaults((now or timezone.now()).astimezone(zone))


def batch_refusal(workflow: Workflow, batch: bool) -> None:
    """Batch mode only where it applies: a workflow that declares it (Workflow.batch)."""
    if batch and not workflow.batch:
        raise RunRefused(
            {
                "mode": f"Batch mode does not apply to {workflow.name}: it answers in real "
                "time (the workflow does not declare batch=True)."
            }
        )


def measure_prompt(
    workflow: Workflow, version: WorkflowVersion, value: dict[str, Any]
) -> PromptSize:
    """count_tokens on the exact first request the run will send, for its estimate (an API
    call: callers make it outside their transaction)."""
    client = client_for(workflow=workflow.name)
    model = workflow.orchestrator_model
    system = [{"type": "text", "text": version.system_prompt}]
    if workflow.fanout is not None:
        spec = workflow.fanout
        turn = decompose_turn(spec, value, strict=False)

        def prefix(role: str, text: str) -> int:  # a shared prefix, on the model that reads it
            return client.messages.count_tokens(
                model=workflow.models.get(role) or model,
                system=[{"type": "text", "text": text}],
                messages=[{"role": "user", "content": "."}],
            ).input_tokens

        return PromptSize(
            prompt=client.messages.count_tokens(
                model=model,
                system=system,
                messages=[{"role": "user", "content": json.dumps(turn)}],
            ).input_tokens,
            specialist_prefix=prefix("specialist", prompts.specialist_system(spec)),
            validator_prefix=prefix("validator", prompts.validator_system(spec)),
        )
    tools = api_tools(version)
    prompt = client.messages.count_tokens(
        model=model,
        system=system,
        tools=tools,
        messages=[{"role": "user", "content": json.dumps(value)}],
    ).input_tokens
    prefix = client.messages.count_tokens(
        model=model,
        system=system,
        tools=tools,
        messages=[{"role": "user", "content": "."}],
    ).input_tokens
    return PromptSize(prompt=prompt, prefix=prefix)


@dataclass(frozen=True)
class Preview:
    """What starting this run would do, computed without starting it."""

    estimate: Estimate
    threshold: Decimal
    needs_approval: bool
    refused: str  # why a hard budget or the start limit would refuse it ("" if not)
    warnings: list[str]


def preview(
    workflow_name: str, raw_input: str | dict[str, Any], user: Any, *, batch: bool = False
) -> Preview:
    """The estimate and the gate's verdict for a run not yet started (the start page shows it)."""
    workflow, version = serving_version(workflow_name)
    value = validate_input(workflow_name, raw_input, workflow)
    batch_refusal(workflow, batch)
    model_warnings = refuse_unavailable_models(workflow)
    estimate = estimate_run(workflow, value, measure_prompt(workflow, version, value), batch=batch)
    estimate = subagents.with_subagents(workflow, estimate, measure_prompt)  # the whole tree
    threshold = accounting.approval_threshold(workflow)
    refused, warnings = pauses.start_refusal(user) or "", model_warnings
    try:
        warnings = model_warnings + budgets.check_start(
            workflow.name, user, estimate.upper_usd, lock=False
        )
    except budgets.StartRefused as exc:
        refused = str(exc)
    return Preview(estimate, threshold, estimate.upper_usd > threshold, refused, warnings)


def start_run(
    workflow_name: str,
    raw_input: str | dict[str, Any],
    user: Any,
    *,
    idempotency_key: str | None = None,
    options: dict[str, Any] | None = None,
    source: str = "web",
    version: WorkflowVersion | None = None,
    prepare: Callable[[Run], None] | None = None,
    evaluation: int | None = None,
    gate_usd: Decimal | None = None,
) -> Run:
    """Start a run: validate, gate (pause, budgets, start limit), estimate, then queue it or
    send it for approval.

    ``version``: a snapshot to run instead of the approved, serving one: a fork on another
    version (orchestration.forks checks it may serve runs) or the version under evaluation
    (pending ones included: that is what an evaluation is for); its code must be deployed.
    ``prepare``: called with the new run in the same transaction, after its request is
    audited and before it is queued (a re-run or fork links it and copies its history).
    ``evaluation`` (the evaluation app): its id (the run is marked ``is_evaluation``), and
    ``gate_usd``, the evaluation's whole estimate: the approval threshold is compared with
    that rather than with this one run's estimate, so an evaluation over the threshold needs a
    manager like any run over it. Budgets and the start limit apply to each run as always.
    """
    value = validate_input(workflow_name, raw_input)
    if idempotency_key:
        existing = Run.objects.filter(requested_by=user, idempotency_key=idempotency_key).first()
        if existing:
            return existing
    # A paused user (an anomaly alert) starts nothing, and costs no estimate call either.
    if paused := pauses.start_refusal(user):
        raise RunRefused({"user": paused}, code=RunRefused.USER_PAUSED)
    if version is None:
        # The approved version serves, whatever is deployed beside it (a pending change waits).
        workflow, version = serving_version(workflow_name)
    else:
        # A fork's or an evaluation's version: the deployed declaration whose snapshot it is.
        if version.name != workflow_name:
            raise RunRefused(
                {"version": f"{version} is a version of {version.name}, not of {workflow_name}."}
            )
        workflow = declaration_for(version)
        if workflow is None:
            raise RunRefused(
                {"version": drift(version) or "This version's code is not deployed."},
                code=RunRefused.VERSION_UNAVAILABLE,
            )
    batch_refusal(workflow, bool((options or {}).get("batch")))
    model_warnings = refuse_unavailable_models(
        workflow
    )  # unpriced or retired: nothing measured or written
    value = validate_input(workflow_name, raw_input, workflow)
    size = measure_prompt(workflow, version, value)  # an API call: outside the transaction
    estimate = estimate_run(workflow, value, size, batch=bool((options or {}).get("batch")))
    estimate = subagents.with_subagents(workflow, estimate, measure_prompt)  # the whole tree
    threshold = accounting.approval_threshold(workflow)
    try:
        with transaction.atomic():
            try:
                warnings = budgets.check_start(workflow.name, user, estimate.upper_usd)
            except budgets.StartRefused as refused:
                key = "budget" if refused.code == RunRefused.BUDGET_EXCEEDED else "rate_limit"
                raise RunRefused(
                    {key: str(refused)}, code=refused.code, retry_after=refused.retry_after
                ) from None
            calculation = estimate.as_json() | ({"budget_warnings": warnings} if warnings else {})
            if model_warnings:  # a deprecated model: shown on the run page, the run still starts
                calculation["model_warnings"] = model_warnings
            needs_approval = (estimate.upper_usd if gate_usd is None else gate_usd) > threshold
            # The ceiling is set once, here: a manager approves this same estimate, unchanged. (A
            # run that waits only because its evaluation's total is over the threshold gets the
            # ceiling of a run of its own estimate.)
            ceiling = accounting.initial_ceiling(
                workflow, estimate.upper_usd, needs_approval=estimate.upper_usd > threshold
            )
            run = Run.objects.create(
                workflow_version=version,
                workflow_name=workflow.name,
                requested_by=user,
                input=value,
                options=options or {},
                idempotency_key=idempotency_key,
                is_evaluation=evaluation is not None,
                estimate_usd=estimate.upper_usd,
                estimate=calculation,
                ceiling_usd=ceiling.usd,
                ceiling_tokens=ceiling.tokens,
                ceiling_basis=ceiling.basis,
            )
            audit.record(
                "run.requested",
                run=run,
                actor=user,
                evidence_of=[run],
                payload={
                    "workflow": workflow.name,
                    "version": version.content_hash,
                    "source": source,
                    "input": value,
                    **({"evaluation": evaluation} if evaluation is not None else {}),
                },
            )
            audit.record(
                "estimate.made",
                run=run,
                actor="engine",
                payload={
                    "expected_usd": str(estimate.expected_usd),
                    "upper_usd": str(estimate.upper_usd),
                    "threshold_usd": str(threshold),
                    "ceiling_usd": str(ceiling.usd),
                    "ceiling_tokens": ceiling.tokens,
                    "ceiling_basis": ceiling.basis,
                },
            )
            for warning in warnings:
                audit.record(
                    "budget.warning", run=run, actor="engine", payload={"warning": warning}
                )
            if prepare is not None:
                prepare(run)
            if needs_approval:
                ApprovalRequest.objects.create(
                    run=run,
                    estimate_usd=estimate.upper_usd,
                    threshold_usd=threshold,
                    calculation=calculation,
                    requested_by=user,
                    expires_at=timezone.now() + dt.timedelta(hours=settings.APPROVAL_EXPIRY_HOURS),
                )
                run = lifecycle.transition(
                    run.pk,
                    Run.Status.AWAITING_APPROVAL,
                    actor=user,
                    event_payload={"estimate_usd": str(estimate.upper_usd)},
                )
            else:
                run = lifecycle.transition(run.pk, Run.Status.QUEUED, actor=user)
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won the race
            return Run.objects.get(requested_by=user, idempotency_key=idempotency_key)
        raise
    return run
