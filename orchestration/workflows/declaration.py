"""The Python API for declaring workflows: tools, rules, constraints, examples, models.

A workflow is data plus a few callables. The engine enforces everything declared here in
code (attempts, steps, budgets, timeouts, validators, guards, escalation rules, required
tools, provenance of output values); the prompt tells the model the same rules.
See docs/workflows.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

JSON = dict[str, Any]

# The model each role plays unless a workflow says otherwise (December 2026 lineup, priced in
# costs.pricing). A model must have a price in force and not be past its end of life to be
# used (costs.lineup): declaring one here is not enough.
DEFAULT_MODELS: Mapping[str, str] = {
    "orchestrator": "claude-opus-5",
    "specialist": "claude-sonnet-5",
    "validator": "claude-sonnet-5",
    "classifier": "claude-haiku-4-5",
    "formatter": "claude-sonnet-5",
}

# The roles a model call may play (ModelCall.role). In the tool-use loop a turn plays
# orchestrator, classifier or formatter (TurnRoles); fan-out uses specialist and validator.
ROLES: tuple[str, ...] = (
    "orchestrator",
    "specialist",
    "validator",
    "reviewer",
    "classifier",
    "formatter",
)
LOOP_ROLES: tuple[str, ...] = ("orchestrator", "classifier", "formatter", "reviewer")


@dataclass(frozen=True)
class RecordedCall:
    """One accepted (``ok`` or reviewer-``corrected``) tool call of the run, as recorded."""

    name: str
    tool_use_id: str
    input: JSON
    output: JSON


@dataclass(frozen=True)
class Record:
    """The run's recorded state that preconditions and sign-off rules may rely on: every
    accepted tool call in order, and the tool_uses a reviewer signed off. Never the model's
    words: only what the engine recorded from tools and people."""

    calls: tuple[RecordedCall, ...] = ()
    # tool_use_ids whose call a reviewer approved on a sign-off ticket.
    signed_off: frozenset[str] = frozenset()

    def of(self, name: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.name == name]

    def latest(self, name: str) -> JSON | None:
        found = self.of(name)
        return found[-1].output if found else None

    def values(self, name: str, field_name: str) -> list[Any]:
        """Every value of ``field_name`` (top level) in the accepted outputs of ``name``."""
        return [c.output.get(field_name) for c in self.of(name) if isinstance(c.output, dict)]


@dataclass(frozen=True)
class ToolContext:
    """What a tool handler, validator, guard or precondition may know about the run it serves."""

    run_id: str
    tool_use_id: str
    run_input: JSON
    tool_input: JSON
    # Latest accepted output of every tool already called in this run, by tool name.
    outputs: Mapping[str, JSON]
    # Every accepted call with its input (``outputs`` keeps only the latest output per tool).
    record: Record = field(default_factory=Record)

    @property
    def idempotency_key(self) -> str:
        """Key side effects by this: a repeated attempt of one tool_use applies once."""
        return self.tool_use_id


# A semantic validator returns the problems it found (empty when the output is fine).
Validator = Callable[[JSON, ToolContext], Iterable[str]]
# A guard returns why the call must not run now, or None to allow it; a refusal escalates at
# once (for what no retry by the model can fix, e.g. an open compliance review).
Guard = Callable[[ToolContext], str | None]


@dataclass(frozen=True)
class Precondition:
    """What must hold, in the run's recorded state, before a tool's handler may run.

    ``check(proposed_input, ctx)`` returns None when the call may run, or the reason it may
    not; ``ctx.record`` holds every accepted tool call (with its input and output) and the
    sign-offs. A refusal is recorded (ToolCall ``rejected``, audit ``tool.refused``) and sent
    back to the model as an error tool_result, so it can do what is missing; the tool's
    ``max_attempts_per_tool`` refusals in a round escalate (``validation_failed``).

    ``sign_off=True``: the reason is one only a human can lift (e.g. approving a payment over
    the sign-off limit). The run escalates at once (``regulatory_trigger``) with the proposed
    call; a reviewer's "approve" signs off that very tool_use, and the engine then runs it.
    """

    name: str
    check: Callable[[JSON, ToolContext], str | None]
    sign_off: bool = False


@dataclass(frozen=True)
class CachedResult:
    """A branching fallback of a read-only tool: when every attempt of a call failed (on
    ``on``: "timeout", "error"), answer with the last accepted result of the same tool, in a
    run of the same workflow, for the same ``key(input)`` (None: the whole input), no older
    than ``max_age_seconds``. The tool_result carries a ``fallback`` marker (what, from
    when, why) and the run's final answer must list it under ``fallbacks``: the engine
    refuses an answer that hides it (orchestration.fallbacks)."""

    max_age_seconds: float = 86_400.0
    key: Callable[[JSON], Any] | None = None
    on: tuple[str, ...] = ("timeout",)


@dataclass(frozen=True)
class RerunWhenChanged:
    """A branching fallback of the workflow: "the rules changed, re-run the validation step".

    ``tool``'s accepted output records, in ``field``, the version of the rules it applied;
    ``current()`` returns the version in force now. Before any tool in ``before`` runs, and
    before the run may finish, the engine compares them: when the rules changed since the
    latest accepted call of ``tool``, the call (or the answer) is refused with the reason,
    and the model must re-run ``tool`` under the new rules (orchestration.fallbacks)."""

    tool: str
    field: str
    current: Callable[[], str]
    before: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: JSON
    output_schema: JSON
    handler: Callable[[JSON, ToolContext], JSON]
    version: str = "1"
    timeout_seconds: float = 30.0
    invoke_when: str = ""
    recovery: str = ""
    validators: tuple[Validator, ...] = ()
    guards: tuple[Guard, ...] = ()
    # The tool changes something outside the run (writes a decision, publishes a report): it
    # declares its preconditions, and a reviewer may not "correct" its output (that would
    # record an effect that never happened).
    side_effect: bool = False
    preconditions: tuple[Precondition, ...] = ()
    # Limits and fallbacks of this tool (orchestration.limits, orchestration.fallbacks):
    # its own retry limit (None: the workflow's ``max_attempts_per_tool``), what to answer
    # with when every attempt failed (``CachedResult``), and a narrower input to retry
    # with, once, after a timeout (input -> narrower input, or None when it cannot narrow).
    max_attempts: int | None = None
    fallback: CachedResult | None = None
    narrow_on_timeout: Callable[[JSON], JSON | None] | None = None

    def __post_init__(self) -> None:
        if self.side_effect and not self.preconditions:
            raise ValueError(f"tool {self.name!r} has a side effect: declare its preconditions")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"tool {self.name!r}: max_attempts must be at least 1")
        if self.fallback is not None and self.side_effect:
            raise ValueError(
                f"tool {self.name!r} has a side effect: a cached result cannot stand in for it"
            )

    def definition(self) -> JSON:
        """The tool as sent to the Messages API (structured, not prose; no x- annotations)."""
        description = self.description
        if self.invoke_when:
            description += f" Invoke when: {self.invoke_when}."
        if self.recovery:
            description += f" On failure: {self.recovery}."
        return {
            "name": self.name,
            "description": description,
            "input_schema": without_annotations(self.input_schema),
        }


@dataclass(frozen=True)
class SubAgent:
    """A domain agent a workflow may hand work to: another registered workflow (its own
    prompt, tools, limits and models), run as a child run of the one that hands off.

    ``name`` is what the model writes in the handoff (``{"agent": name, "input": {...}}``);
    ``workflow`` the registered workflow that serves it; ``input`` must match that
    workflow's input schema. See orchestration.subagents and docs/workflows.md."""

    name: str
    workflow: str
    description: str
    invoke_when: str = ""


def _settled_by_the_engine(args: JSON, ctx: ToolContext) -> JSON:
    raise RuntimeError(
        "a handoff is settled by the engine (orchestration.subagents), never run as a handler"
    )


@dataclass(frozen=True)
class Handoff(Tool):
    """The engine's handoff tool: the model names one of ``agents`` and the input for it; the
    engine starts that sub-agent as a child run, parks this run until the child ends, and
    answers the tool_use with the child's result. Build it with ``handoff(...)``."""

    agents: tuple[SubAgent, ...] = ()
    # How many sub-agent runs one run may start in all (checked before each is started).
    max_children: int = 3

    def agent(self, name: Any) -> SubAgent | None:
        return next((a for a in self.agents if a.name == name), None)


HANDOFF_OUTPUT = {
    "type": "object",
    "properties": {
        "agent": {"type": "string"},
        "run": {"type": "string"},
        "status": {"type": "string"},
        "cost_usd": {"type": "string"},
        "result": {"type": "object", "additionalProperties": True},
    },
    "required": ["agent", "run", "status", "result"],
}


def handoff(
    *agents: SubAgent,
    max_children: int = 3,
    name: str = "handoff",
    description: str = "Hand the request to exactly one domain sub-agent and wait for its answer.",
    preconditions: tuple[Precondition, ...] = (),
    guards: tuple[Guard, ...] = (),
    version: str = "1",
) -> Handoff:
    """The handoff tool for a workflow's ``tools``: the sub-agents it may start (and no other).

    Its guards and preconditions run on the handoff's input like any tool's (e.g. "only the
    request's customer"); its ``agent`` is an enum of the declared names."""
    listed = "; ".join(
        f"{a.name}: {a.description}" + (f" (invoke when {a.invoke_when})" if a.invoke_when else "")
        for a in agents
    )
    return Handoff(
        name=name,
        description=f"{description} Sub-agents: {listed}.",
        input_schema={
            "type": "object",
            "properties": {
                "agent": {"enum": [a.name for a in agents]},
                "input": {
                    "type": "object",
                    "description": "The sub-agent's input (its workflow's input schema).",
                },
            },
            "required": ["agent", "input"],
            "additionalProperties": False,
        },
        output_schema=HANDOFF_OUTPUT,
        handler=_settled_by_the_engine,
        version=version,
        preconditions=preconditions,
        guards=guards,
        agents=tuple(agents),
        max_children=max_children,
    )


def without_annotations(schema: Any) -> Any:
    """The schema without our ``x-from-tool`` keyword, recursively."""
    if isinstance(schema, dict):
        return {k: without_annotations(v) for k, v in schema.items() if k != "x-from-tool"}
    if isinstance(schema, list):
        return [without_annotations(v) for v in schema]
    return schema


@dataclass(frozen=True)
class EscalationRule:
    """Pause the run for a human when an accepted tool output matches ``when``."""

    tool: str
    reason: str
    message: str
    when: Callable[[JSON, ToolContext], bool]


@dataclass(frozen=True)
class Constraints:
    max_attempts_per_tool: int = 3
    max_steps: int = 12
    max_tokens_per_run: int = 400_000
    max_cost_usd: Decimal = Decimal("5.00")
    tool_timeout_seconds: float = 30.0
    run_timeout_seconds: float = 900.0
    max_output_tokens: int = 4096
    # Latency limits (orchestration.limits): a step (one model call and the tools it asked
    # for) or the run's working time (its model calls and tool calls, not its waits) that
    # goes over escalates with the reason ``latency_limit``. None: no such limit.
    step_latency_seconds: float | None = None
    run_latency_seconds: float | None = None

    def as_dict(self) -> JSON:
        limits = {
            "max_attempts_per_tool": self.max_attempts_per_tool,
            "max_steps": self.max_steps,
            "max_tokens_per_run": self.max_tokens_per_run,
            "max_cost_usd": str(self.max_cost_usd),
            "tool_timeout_seconds": self.tool_timeout_seconds,
            "run_timeout_seconds": self.run_timeout_seconds,
            "max_output_tokens": self.max_output_tokens,
        }
        # Only when declared: the snapshot of a workflow without them stays as it was.
        if self.step_latency_seconds is not None:
            limits["step_latency_seconds"] = self.step_latency_seconds
        if self.run_latency_seconds is not None:
            limits["run_latency_seconds"] = self.run_latency_seconds
        return limits


@dataclass(frozen=True)
class TurnRoles:
    """Which role plays each model turn of the tool-use loop; the engine calls that role's
    model (``Workflow.models``). The first rule that applies to a turn wins:

    1. ``recovery``: the turn after something went wrong - a tool call that failed or was
       refused, a final answer the engine rejected, an answer cut off at max_tokens, or a
       reviewer resuming the run after an escalation;
    2. ``first``: the first turn (the request as it came in);
    3. ``after``: the turn right after a turn whose tool calls include one of these tools,
       e.g. ``{"record_decision": "formatter"}``: once the decision is recorded, a cheaper
       model writes the final answer;
    4. ``default``: every other turn.

    Each role must be one of ``LOOP_ROLES`` and each tool a tool of the workflow (checked when
    the workflow is registered). The whole rule is part of the version snapshot.
    """

    first: str = "orchestrator"
    default: str = "orchestrator"
    recovery: str = "orchestrator"
    after: Mapping[str, str] = field(default_factory=dict)

    def roles(self) -> tuple[str, ...]:
        """Every role the rule may pick, without repeats, in rule order."""
        named = (self.recovery, self.first, *self.after.values(), self.default)
        return tuple(dict.fromkeys(named))

    def problems(self, tool_names: Iterable[str]) -> list[str]:
        """What is wrong with the rule for a workflow with these tools (empty when fine)."""
        found = []
        for where, role in (
            ("first", self.first),
            ("default", self.default),
            ("recovery", self.recovery),
            *((f"after[{tool!r}]", r) for tool, r in self.after.items()),
        ):
            if role not in LOOP_ROLES:
                found.append(
                    f"turn_roles.{where} = {role!r} is not a role of the tool-use loop "
                    f"(one of: {', '.join(LOOP_ROLES)})"
                )
        known = set(tool_names)
        for tool in self.after:
            if tool not in known:
                found.append(
                    f"turn_roles.after names {tool!r}, which is not a tool of this workflow"
                )
        return found

    def as_dict(self) -> JSON:
        return {
            "first": self.first,
            "default": self.default,
            "recovery": self.recovery,
            "after": dict(sorted(self.after.items())),
        }


@dataclass(frozen=True)
class Example:
    title: str
    input: JSON
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Expectation:
    """What a typical run looks like, for the estimator: turns and token sizes."""

    turns: int
    output_tokens_per_turn: int = 300
    tool_result_tokens: int = 400
    final_output_tokens: int = 400
    # The role that typically plays each turn (with turn_roles), e.g. ("classifier",
    # "classifier", "orchestrator", "orchestrator", "formatter"): the estimate prices each turn
    # with that role's model. Empty: inferred from turn_roles (costs.estimates.turn_roles).
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobResult:
    """What one settled fan-out job produced, as the workflow's ``expected_aggregate`` sees it.

    ``item`` is the context item the job covered (its job id); ``status`` is "succeeded"
    (the validator passed it) or "failed"; ``output`` is the specialist's validated output
    (None for a failed job); ``reason`` is why a failed job failed.
    """

    item: str
    status: str
    output: JSON | None
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class WorkedExample:
    """One worked example of a fan-out job, shown in the specialists' and the validator's
    cached prefix (orchestration.fanout.prompts): an item, the output a specialist should
    give for it, and what the validator makes of that output."""

    title: str
    item: JSON
    output: JSON
    verdict: str = "PASS"
    reason: str = ""

    def as_dict(self) -> JSON:
        return {
            "title": self.title,
            "item": self.item,
            "output": self.output,
            "verdict": self.verdict,
            "reason": self.reason,
        }


# A cache entry lives 5 minutes after its last read unless written with ttl "1h".
CACHE_5M_SECONDS = 300


@dataclass(frozen=True)
class FanoutSpec:
    """Enterprise mode: the orchestrator decomposes the request into independent jobs that
    specialists run in parallel, a validator passes or fails each, and the orchestrator
    aggregates what passed. See orchestration/fanout/ and docs/workflows.md.

    What the model cannot choose is declared here, in code, and checked by the engine:

    - ``items(input)``: the keys of the context items the plan must cover, one job per item
      with ``job_id`` = the key (e.g. the file paths, the SKUs). A plan that misses an item,
      repeats one or names one that is not in the list is refused.
    - ``job_output_schema``: the JSON Schema every job's output must satisfy, checked in code
      before the validator model sees the output. A plan that carries a schema is refused.
    - ``expected_aggregate(results)``: the facts the final result must state, computed from
      the job results (``JobResult``, one per job, in plan order): counts, and lists such as
      every finding of every passing job. Each key of the returned object must be in the
      aggregate with the same value; lists are compared as multisets, each aggregate item on
      the keys of the expected items (orchestration.fanout.aggregate).

    ``expand_items=True``: the items are known, so the orchestrator writes the job
    instructions once per kind of job (``{"job_kinds": [{"kind", "prompt", "items": [keys or
    patterns] | "*"}]}``) and the engine expands each kind over the items it covers, with the
    same coverage check (orchestration.fanout.plan). The decomposition is then a few hundred
    tokens (``decompose_output_tokens``, for the estimate) instead of a prompt per item.

    ``item_data(input, item)`` is one item's data (e.g. the file's path and source), given
    by the engine to that item's specialist and validator as ``item`` in their user turn, so
    what a job works on never depends on what the orchestrator wrote in its prompt.

    ``context(input)`` is the data the orchestrator decomposes (e.g. the files to scan); it
    goes in the user turn as JSON next to the input and the item keys.
    ``expected_jobs(input)`` is N for the estimate, and the plan must have exactly that many
    jobs (orchestration.fanout.plan.size_problem). Token sizes are per call, for the
    estimate only; ``specialist_input_tokens`` and ``validator_input_tokens`` are the job's
    own user turn: the shared prefix (instructions, the job output schema and
    ``worked_examples``) is measured with count_tokens and priced as a cache write and reads.

    **Escalation reviewer** (``reviewer_instructions`` set; orchestration.fanout.review): a
    job that fails validation twice, or that the validator flags as an edge case
    (``EDGE_CASE``), goes to the ``reviewer`` model (default: the orchestrator's) with the
    job, its outputs and the validator's reasons. It accepts one output that passed the
    schema check in code, fails the job, or escalates it to a human ticket. At most
    ``max_reviews`` jobs per run are reviewed (past that, the job goes to a human).

    ``expected_job_seconds``: how long one job takes, for the cache TTL (``cache_ttl``).
    """

    specialist_instructions: str
    validator_instructions: str
    job_output_schema: JSON
    items: Callable[[JSON], Sequence[str]]
    expected_aggregate: Callable[[Sequence[JobResult]], JSON]
    max_jobs: int = 1000
    failure_threshold: float | None = None  # None: settings.FANOUT_FAILURE_THRESHOLD
    per_run_concurrency: int | None = None  # None (or more): settings.FANOUT_PER_RUN_CONCURRENCY
    item_data: Callable[[JSON, str], JSON] | None = None
    context: Callable[[JSON], JSON] | None = None
    expected_jobs: Callable[[JSON], int] | None = None
    expand_items: bool = False
    decompose_output_tokens_per_job: int = 120  # the estimate, one job each
    decompose_output_tokens: int = 400  # the estimate, with expand_items (job kinds)
    specialist_input_tokens: int = 600
    specialist_output_tokens: int = 400
    validator_input_tokens: int = 900
    validator_output_tokens: int = 60
    aggregate_output_tokens: int = 800
    specialist_max_tokens: int = 2048
    validator_max_tokens: int = 512
    # What the aggregating orchestrator sees of each passed output (default: all of it).
    summarize: Callable[[JSON], JSON] | None = None
    worked_examples: tuple[WorkedExample, ...] = ()
    expected_job_seconds: float = 20.0
    reviewer_instructions: str = ""
    max_reviews: int = 0
    reviewer_input_tokens: int = 2_500
    reviewer_output_tokens: int = 200
    reviewer_max_tokens: int = 1024
    expected_review_fraction: float = 0.02  # the estimate: share of jobs reviewed

    def __post_init__(self) -> None:
        if self.reviewer_instructions and self.max_reviews < 1:
            raise ValueError("a fan-out with an escalation reviewer must declare max_reviews >= 1")
        if self.max_reviews and not self.reviewer_instructions:
            raise ValueError("max_reviews is declared but no reviewer_instructions")

    @property
    def has_reviewer(self) -> bool:
        return bool(self.reviewer_instructions)

    def concurrency(self, cap: int) -> int:
        """Jobs of one run in flight at once: the workflow's own cap, never over ``cap``
        (settings.FANOUT_PER_RUN_CONCURRENCY)."""
        return min(self.per_run_concurrency or cap, cap)

    def cache_ttl(self, jobs: int, concurrency: int, *, batch: bool) -> str:
        """The TTL of the specialists' and validator's cached prefix: "1h" when the run may
        outlive a 5-minute entry (a batch run: its requests are answered minutes apart; or
        more waves of jobs than fit in 5 minutes at ``expected_job_seconds`` each), else "5m"
        (a write costs 1.25x input instead of 2x)."""
        waves = -(-max(jobs, 1) // max(concurrency, 1))
        return "1h" if batch or waves * self.expected_job_seconds > CACHE_5M_SECONDS else "5m"

    def reviews_expected(self, jobs: int) -> int:
        """Jobs the estimate expects the reviewer to see (at most max_reviews)."""
        if not self.has_reviewer:
            return 0
        return min(self.max_reviews, math.ceil(jobs * self.expected_review_fraction))

    def plan_output_tokens(self, jobs: int) -> tuple[int, str]:
        """The decomposition's expected output tokens for the estimate, and how they add up: a
        fixed size when the engine expands job kinds, else a prompt per job."""
        if self.expand_items:
            return self.decompose_output_tokens, "job kinds, written once"
        per_job = self.decompose_output_tokens_per_job
        return jobs * per_job, f"{jobs:,} x {per_job}"

    def as_dict(self) -> JSON:
        """What the WorkflowVersion snapshot records (the prompts, the job schema, the limits)."""
        return {
            "specialist_instructions": self.specialist_instructions,
            "validator_instructions": self.validator_instructions,
            "job_output_schema": self.job_output_schema,
            "max_jobs": self.max_jobs,
            "expand_items": self.expand_items,
            "failure_threshold": self.failure_threshold,
            "per_run_concurrency": self.per_run_concurrency,
            "worked_examples": [e.as_dict() for e in self.worked_examples],
            "reviewer_instructions": self.reviewer_instructions,
            "max_reviews": self.max_reviews,
        }


@dataclass(frozen=True)
class EvaluationThresholds:
    """What a version of the workflow must reach on ``dataset`` (the evaluation app) before
    anyone may approve it (evaluation.gate.blockers). A bound left at None is not checked;
    rates are fractions of the dataset's cases (0.9 = 90%)."""

    dataset: str
    min_accuracy: float = 1.0
    max_hallucinations: int = 0
    max_escalation_rate: float | None = None
    max_tool_error_rate: float | None = None
    max_cost_usd: Decimal | None = None
    max_case_latency_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_accuracy", "max_escalation_rate", "max_tool_error_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(
                    f"EvaluationThresholds.{name} is a fraction between 0 and 1, not {value!r}"
                )


@dataclass(frozen=True)
class Workflow:
    name: str
    title: str
    version: str
    domain: str
    role: str
    input_schema: JSON
    output_schema: JSON
    tools: tuple[Tool, ...]
    rules: tuple[str, ...]
    constraints: Constraints = field(default_factory=Constraints)
    examples: tuple[Example, ...] = ()
    models: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    escalation_rules: tuple[EscalationRule, ...] = ()
    # Tools that must have succeeded before the run may finish ("always log").
    required_tools: tuple[str, ...] = ()
    # (input, output, record) -> a reason when the result needs a human's sign-off before the
    # run succeeds. Compare amounts from ``record`` (the tools' accepted outputs), never from
    # ``output`` (the model's words).
    regulatory_trigger: Callable[[JSON, JSON, Record], str | None] | None = None
    expectation: Expectation | None = None
    approval_threshold_usd: Decimal | None = None
    input_example: JSON | None = None
    # Plays the model in the simulator (simulator.policy.Policy).
    policy: Callable[..., Any] | None = None
    description: str = ""
    # Enterprise fan-out mode (orchestration.fanout); None for the tool-use loop.
    fanout: FanoutSpec | None = None
    # Email addresses told about this workflow: its alerts and the daily digest (more events
    # per address in the admin, notifications.WorkflowRecipient); read them through
    # notifications.recipients.for_workflow.
    recipients: tuple[str, ...] = ()
    # Which role (hence which model) plays each turn of the tool-use loop; None: every turn
    # is the orchestrator's. See TurnRoles and docs/workflows.md.
    turn_roles: TurnRoles | None = None
    # Events (notifications.models.EVENTS) the ``recipients`` get besides alerts and the
    # digest, e.g. ("ticket.opened", "run.ended") for a team that must hear of every failure.
    recipient_events: tuple[str, ...] = ()
    # Declared branching fallbacks of the workflow (orchestration.fallbacks).
    reruns: tuple[RerunWhenChanged, ...] = ()
    # The workflow's own time zone ("" : settings.TIME_ZONE) and the input a manual start
    # defaults to, given the local time now (e.g. the previous calendar day): it fills what
    # the form or the request left out (orchestration.launch).
    time_zone: str = ""
    input_defaults: Callable[[dt.datetime], JSON] | None = None
    # Demo scenarios the start page offers (title, input, what happens), e.g. one per declared
    # limit or fallback; unlike ``examples`` they are not part of the prompt.
    scenarios: tuple[Example, ...] = ()

    # What a pending version must reach on an evaluation before it may be approved (None:
    # nothing required).
    evaluation_thresholds: EvaluationThresholds | None = None

    # Reference text for the model, rendered after the examples at the end of the system prompt
    # (orchestration.workflows.prompt): manuals, rule tables, worked runs. The prompt is one
    # cached prefix with the tools (the engine sends it with cache_control): a reference that
    # takes it over the model's minimum cacheable length is read from the cache on every turn
    # after the first.
    reference: tuple[str, ...] = ()
    # The start page offers batch mode (Message Batches at half price; each call may take
    # minutes, up to 24 h) only for a workflow that declares it: work nobody waits on.
    batch: bool = False

    def __post_init__(self) -> None:
        # A fallback must be visible in the answer (orchestration.fallbacks): the output schema
        # must have room for it.
        fallback_tools = [t.name for t in self.tools if t.fallback is not None]
        if fallback_tools and "fallbacks" not in (self.output_schema.get("properties") or {}):
            raise ValueError(
                f"workflow {self.name!r}: {', '.join(fallback_tools)} may answer with a cached "
                "result; the output schema must declare 'fallbacks' to say so"
            )
        for rerun in self.reruns:
            unknown = [n for n in (rerun.tool, *rerun.before) if self.tool(n) is None]
            if unknown:
                raise ValueError(
                    f"workflow {self.name!r}: a rerun names unknown tool(s) {', '.join(unknown)}"
                )

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    @property
    def handoffs(self) -> tuple[Handoff, ...]:
        """The workflow's handoff tools (sub-agents it may start)."""
        return tuple(t for t in self.tools if isinstance(t, Handoff))

    @property
    def orchestrator_model(self) -> str:
        return self.model_for("orchestrator")

    def model_for(self, role: str) -> str:
        """The model that plays ``role``: the workflow's own choice, else the default."""
        model = self.models.get(role) or DEFAULT_MODELS.get(role)
        if not model:
            raise KeyError(f"workflow {self.name!r} names no model for the role {role!r}")
        return model

    def models_in_use(self) -> dict[str, str]:
        """Role -> model for every role this workflow's calls play: the orchestrator, and the
        roles of its turn rule (tool-use loop) or specialist and validator (fan-out). These
        are the models that must be priced and alive for a run to start (costs.lineup)."""
        roles = ["orchestrator"]
        if self.fanout is not None:
            roles += ["specialist", "validator"]
        elif self.turn_roles is not None:
            roles += list(self.turn_roles.roles())
        return {role: self.model_for(role) for role in dict.fromkeys(roles)}

    def expected(self) -> Expectation:
        return self.expectation or Expectation(turns=len(self.tools) + 1)
