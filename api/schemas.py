"""The JSON API's request and response bodies as typed schemas (django-ninja / pydantic).

The OpenAPI document at /api/openapi.json is generated from these classes and the routes in
api/views/; api/representation.py builds the dicts that these classes check on the way out.
Money is a decimal string ("0.089288"), never a float; timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field, WithJsonSchema

from orchestration import models
from reviews.models import ApprovalRequest, EscalationTicket

MONEY_PATTERN = r"^-?\d+(\.\d+)?$"
Money = Annotated[str, Field(pattern=MONEY_PATTERN, description="US dollars as a decimal string.")]
DateTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Uri = Annotated[str, WithJsonSchema({"type": "string", "format": "uri"})]
JsonObject = dict[str, Any]


def _choices(values: list[str]) -> Any:
    return Literal.__getitem__(tuple(values))


RunStatus = _choices(models.Run.Status.values)
TicketStatus = _choices(EscalationTicket.Status.values)
TicketReason = _choices(EscalationTicket.Reason.values)
Action = _choices(EscalationTicket.Resolution.values)
ModelCallStatus = _choices(models.ModelCall.Status.values)
ToolCallStatus = _choices(models.ToolCall.Status.values)


class Request(Schema):
    """A request body: an unknown field is refused (422, named in ``fields``)."""

    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------------------


class ErrorDetail(Schema):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable, machine-readable reason.")
    message: str = Field(description="What was wrong and what to do.")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Per-field problems (a field name, or 'input' for the whole input); "
        "absent when there are none.",
    )


class Error(Schema):
    """Every refusal: ``{"error": {"code", "message", "fields"?}}``."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


# --- shared pieces --------------------------------------------------------------------------


class Links(Schema):
    self: Uri
    web: Uri


class EstimateLine(Schema):
    item: str
    calc: str
    usd: str = Field(description="'$0.012345', or empty for a line without a cost.")


class Estimate(Schema):
    """The pre-run cost estimate. Over the approval threshold, the run waits for a manager."""

    upper_usd: Money
    expected_usd: Money | None = None
    model: str | None = None
    lines: list[EstimateLine]


class TicketLinks(Schema):
    resolve: Uri
    web: Uri


class Ticket(Schema):
    id: int
    status: TicketStatus
    reason: TicketReason
    message: str
    priority: int = Field(ge=1)
    due_at: DateTime
    assignee: str | None
    created_at: DateTime
    links: TicketLinks


# --- workflows ------------------------------------------------------------------------------


class Workflow(Schema):
    name: str
    title: str
    description: str
    version: str
    orchestrator_model: str
    input_schema: JsonObject
    input_example: JsonObject | None


class WorkflowList(Schema):
    results: list[Workflow]


# --- runs -----------------------------------------------------------------------------------


class StartRun(Request):
    workflow: str = Field(min_length=1, description="A workflow name from GET /api/workflows.")
    input: JsonObject = Field(description="Validated against the workflow's input_schema.")


class RunCreated(Schema):
    id: str
    status: RunStatus
    estimate: Estimate | None
    links: Links


class WorkflowVersionRef(Schema):
    version: str
    content_hash: str


class Tokens(Schema):
    input: int
    output: int
    cache_write: int
    cache_read: int
    total_input: int


class Run(Schema):
    id: str
    workflow: str
    workflow_version: WorkflowVersionRef
    status: RunStatus
    final: bool
    requested_by: str
    input: JsonObject
    result: Any = Field(
        description="The validated final output (a JSON object), null until the run succeeds."
    )
    error: str | None
    estimate: Estimate | None
    cost_usd: Money
    tokens: Tokens
    steps_taken: int
    latency_ms: int | None
    idempotency_key: str | None
    open_ticket: Ticket | None = Field(description="The escalation the run is paused on, if any.")
    created_at: DateTime
    updated_at: DateTime
    queued_at: DateTime | None
    started_at: DateTime | None
    finished_at: DateTime | None
    links: Links


class RunSummary(Schema):
    id: str
    workflow: str
    status: RunStatus
    requested_by: str
    estimate_usd: Money | None
    cost_usd: Money
    created_at: DateTime
    finished_at: DateTime | None
    links: Links


class RunList(Schema):
    results: list[RunSummary]
    next: Uri | None = Field(description="The next page, or null on the last one.")


class ModelCall(Schema):
    id: int
    job: int | None
    turn: int
    attempt: int
    role: str
    model: str
    status: ModelCallStatus
    stop_reason: str
    request_id: str
    request_content: Any
    response_content: Any
    usage: JsonObject | None
    input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int
    cost_usd: Money
    is_batch: bool
    sdk_attempts: int
    latency_ms: int | None
    error: str
    created_at: DateTime
    finished_at: DateTime | None
    payload_purged_at: DateTime | None


class ToolCall(Schema):
    id: int
    model_call: int
    tool_use_id: str
    name: str
    tool_version: str
    attempt: int
    status: ToolCallStatus
    settled: bool
    input: Any
    output: Any
    raw_output: Any
    validation_errors: list[Any]
    error: str
    latency_ms: int | None
    created_at: DateTime
    finished_at: DateTime | None
    payload_purged_at: DateTime | None


class RunCalls(Schema):
    id: str
    model_calls: list[ModelCall]
    tool_calls: list[ToolCall]
    links: Links


# --- spend ceiling --------------------------------------------------------------------------


class RaiseCeiling(Request):
    add_usd: str = Field(
        "",
        description="Dollars to add: a positive amount in cents, at most CEILING_MAX_RAISE_USD.",
    )
    add_tokens: int = Field(
        0, ge=0, description="Tokens to add (when the run stopped at its token ceiling)."
    )
    comment: str = Field("", description="Why; recorded in the audit trail.")


class Ceiling(Schema):
    id: str
    ceiling_usd: Money | None
    ceiling_tokens: int | None
    ceiling_basis: str
    cost_usd: Money
    reserved_usd: Money
    links: Links


# --- tickets --------------------------------------------------------------------------------


class Resolve(Request):
    action: Action
    comment: str = Field("", description="Recorded in the audit trail; the reason for 'fail'.")
    note: str = Field("", description="For 'resume': what the model should do next (required).")
    corrected: Any = Field(
        None,
        description="For 'correct' (required): the corrected tool output or final output, "
        "validated against its schema.",
    )


class ResolvedTicket(Ticket):
    resolution: str
    resolved_by: str
    resolved_at: DateTime | None


class RunRef(Schema):
    id: str
    status: RunStatus
    links: Links


class Resolved(Schema):
    ticket: ResolvedTicket
    run: RunRef


def errors(*statuses: int) -> dict[int, type[Error]]:
    """The error statuses an operation documents, each with the Error body."""
    return dict.fromkeys(statuses, Error)


# Every authenticated operation may answer these: no or a bad token, past the rate limit.
AUTH_ERRORS = (401, 429)
# Every operation with a body also: not JSON / empty (400), too large (413), not JSON (415),
# not the schema (422).
BODY_ERRORS = (400, 413, 415, 422)


# --- run actions: cancel, re-run, fork ---------------------------------------------------------


class CancelRun(Request):
    reason: str = Field("", description="Why; recorded in the audit trail and the run's error.")


class Cancelled(Schema):
    run: RunRef
    released_calls: int = Field(description="Model calls in flight whose reservation was released.")
    cancelled_jobs: int = Field(description="Outstanding fan-out jobs cancelled.")
    closed_tickets: int
    closed_approvals: int


class RerunRun(Request):
    pass


class ForkRun(Request):
    turn: int = Field(ge=0, description="The model turn to start from, as the run page numbers it.")
    tool_use_id: str = Field(
        "", description="With 'corrected': the tool call of that turn whose output is replaced."
    )
    corrected: Any = Field(
        None,
        description="The corrected tool output (a JSON value), validated against the tool's "
        "output schema. Correcting a four-eyes step needs a reviewer other than the requester.",
    )
    version: int | None = Field(
        None, description="Run the fork on this approved version of the workflow (its id)."
    )


class DerivedRun(Schema):
    id: str
    status: RunStatus
    origin: str = Field(description="The run this one was re-run or forked from.")
    origin_kind: str
    fork_turn: int | None
    estimate: Estimate | None
    links: Links


# --- approvals -------------------------------------------------------------------------------

ApprovalStatus = _choices(ApprovalRequest.Status.values)


class ApprovalLinks(Schema):
    decide: Uri
    web: Uri


class Approval(Schema):
    """A run estimated over the approval threshold, waiting for (or decided by) a manager."""

    id: int
    status: ApprovalStatus
    run: RunRef
    estimate_usd: Money
    threshold_usd: Money
    requested_by: str
    decided_by: str | None
    comment: str
    created_at: DateTime
    expires_at: DateTime
    decided_at: DateTime | None
    links: ApprovalLinks


class ApprovalList(Schema):
    results: list[Approval]


class Decide(Request):
    decision: Literal["approve", "reject"]
    comment: str = Field("", description="Required to reject: the requester sees it.")


class TicketList(Schema):
    results: list[Ticket]


# --- schedules -------------------------------------------------------------------------------


class ScheduleIn(Request):
    name: str = Field(description="Unique, at most 100 characters.")
    workflow: str = Field(description="A workflow name from GET /api/workflows.")
    cron: str = Field(
        description="minute hour day-of-month month day-of-week", examples=["0 6 * * *"]
    )
    timezone: str = Field("UTC", description="An IANA zone, e.g. Europe/London.")
    input_template: JsonObject = Field(
        default_factory=dict,
        description='The run\'s input; placeholders such as "{yesterday}" are filled at each tick.',
    )
    owner: str = Field(description="The username the scheduled runs are started as.")
    enabled: bool = True


class ScheduleOut(Schema):
    id: int
    name: str
    workflow: str
    cron: str
    timezone: str
    input_template: JsonObject
    owner: str
    enabled: bool
    next_at: DateTime | None = Field(description="The next tick, null when paused.")
    created_at: DateTime
    updated_at: DateTime


class ScheduleList(Schema):
    results: list[ScheduleOut]


# --- evaluations -----------------------------------------------------------------------------


class StartEvaluation(Request):
    dataset: int = Field(description="The dataset's id (on the evaluations page).")
    version: int | None = Field(
        None, description="A version of the dataset's workflow (its id); the current one if absent."
    )


class EvaluationOut(Schema):
    id: int
    workflow: str
    version: str
    dataset: str
    requested_by: str
    needs_approval: bool
    estimate_usd: Money | None
    cases: int
    finished: int
    complete: bool
    passed: int
    accuracy: float | None = Field(description="Cases whose outcome matched, over all cases.")
    escalation_rate: float | None
    escalations: dict[str, int] = Field(description="Escalated cases by reason.")
    hallucinations: int = Field(description="Provenance failures.")
    tool_error_rate: float | None
    cost_usd: Money
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    created_at: DateTime
    links: JsonObject
