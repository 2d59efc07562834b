"""Sub-agents: a run hands work to a domain agent, a child run of another workflow, and waits.

A workflow declares a handoff tool (``declaration.handoff(SubAgent(...), ...)``) naming the
sub-agents it may start; ``orchestration.workflows.delegation`` checks the declaration at load
and owns the limits. When the model calls it, the engine (not a handler) settles the tool_use:

1. the input already passed the checks every tool gets (schema: ``agent`` is an enum of the
   declared names; guards; preconditions). The agent is looked up again here: a name that is
   not declared is refused (``rejected``, audit ``subagent.refused``) whatever the schema
   said, as is a child past the depth limit or the run's ``max_children``; the refusal is the
   tool result, so the model can do without, and repeated refusals escalate like any tool's;
2. the child's input is checked against the sub-agent workflow's input schema (an error is
   sent back to the model, nothing is started);
3. the child run is created, linked to the parent (``Run.parent``, ``parent_tool_use_id``) and
   queued, with ``run.requested`` on its own trail (naming the parent) and
   ``subagent.handoff`` on the parent's, all in one transaction. ``(parent, tool_use_id)`` is
   unique: a step repeated after its worker died finds the child it already started and never
   starts a second one;
4. the tool_use stays unanswered and the engine parks the parent (``park``: running ->
   awaiting_subagent, under the parent's lock, only if a child is still unfinished). The
   step ends: nothing polls. The transition that ends the parent's last unfinished child queues
   the parent again (orchestration.lifecycle);
5. the parent's next step settles the same tool_use again: the child has ended, so its
   result is the tool result (``subagent.returned``): the child's output when it succeeded, an
   error naming its status and error otherwise.

A child is a run like any other: its own prompt, tools, limits, models and tickets. Its
escalations pause it (the parent stays parked and its page says on what), its calls count
against every ancestor's ceiling (costs.accounting), and cancelling the parent cancels it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from costs import accounting
from costs.estimates import Estimate, PromptSize, estimate_run
from orchestration import audit, lifecycle
from orchestration.models import ModelCall, Run, ToolCall
from orchestration.tool_execution import ENGINE_SETTLED, Escalation, in_round, round_start
from orchestration.validation import schema_errors
from orchestration.workflows import delegation, registry
from orchestration.workflows.declaration import Handoff, ToolContext, Workflow
from orchestration.workflows.versions import snapshot
from reviews.models import EscalationTicket

R = EscalationTicket.Reason
TC = ToolCall.Status
S = Run.Status


@dataclass(frozen=True)
class Waiting:
    """The tool_use is answered by a child run that has not ended: the parent must park."""

    tool_use_id: str
    child_id: Any


def depth_of(run: Run) -> int:
    """How deep the run is in its tree (a top-level run is 0)."""
    return len(accounting.ancestors(run.parent_id))


def _refuse(
    run: Run,
    tool: Handoff,
    tool_use: dict[str, Any],
    new_attempt: Callable[..., ToolCall],
    finish: Callable[..., ToolCall],
    reason: str,
    workflow: Workflow,
) -> Escalation | None:
    tc = finish(
        new_attempt(
            status=TC.REJECTED,
            settled=True,
            tool_version=tool.version,
            error=f"Refused by the engine: {reason}. No sub-agent was started.",
        )
    )
    audit.record(
        "subagent.refused",
        run=run,
        evidence_of=[tc],
        payload={
            "tool_use_id": tool_use["id"],
            "agent": str((tool_use.get("input") or {}).get("agent"))[:100],
            "reason": reason,
        },
    )
    rejected = in_round(
        ToolCall.objects.filter(run=run, name=tool.name, status=TC.REJECTED), round_start(run)
    ).count()
    if rejected >= workflow.constraints.max_attempts_per_tool:
        return Escalation(
            R.VALIDATION_FAILED,
            f"{tool.name} was refused {rejected} times; last: {reason}",
            tc,
            {"reason": reason},
        )
    return None


def settle_handoff(
    run: Run,
    workflow: Workflow,
    model_call: ModelCall,
    tool: Handoff,
    tool_use: dict[str, Any],
    ctx: ToolContext,
    new_attempt: Callable[..., ToolCall],
    finish: Callable[..., ToolCall],
) -> Escalation | Waiting | None:
    """Start the sub-agent the tool_use names, or answer it from the child that ended."""
    tool_use_id = tool_use["id"]
    tool_input = tool_use.get("input") or {}
    child = Run.objects.filter(parent=run, parent_tool_use_id=tool_use_id).first()
    if child is None:
        started = Run.objects.filter(parent=run).count()
        if why := delegation.child_refusal(
            tool, tool_input.get("agent"), depth=depth_of(run), started=started
        ):
            return _refuse(run, tool, tool_use, new_attempt, finish, why, workflow)
        agent = tool.agent(tool_input["agent"])
        try:
            child_workflow = registry.get(agent.workflow)
        except registry.UnknownWorkflow as exc:
            return Escalation(
                R.TOOL_ERROR, f"{tool.name}: sub-agent {agent.name!r} cannot start: {exc}"
            )
        child_input = tool_input.get("input")
        if errors := schema_errors(child_input, child_workflow.input_schema):
            tc = finish(
                new_attempt(
                    status=TC.REJECTED,
                    settled=True,
                    tool_version=tool.version,
                    validation_errors=errors,
                    error=f"The input for sub-agent {agent.name!r} does not match its schema: "
                    + "; ".join(errors),
                )
            )
            audit.record(
                "tool.rejected",
                run=run,
                evidence_of=[tc],
                payload={"tool_use_id": tool_use_id, "name": tool.name, "errors": errors},
            )
            rejected = in_round(
                ToolCall.objects.filter(run=run, name=tool.name, status=TC.REJECTED),
                round_start(run),
            ).count()
            if rejected >= workflow.constraints.max_attempts_per_tool:
                return Escalation(
                    R.RETRIES_EXHAUSTED,
                    f"{tool.name} was called with invalid input {rejected} times.",
                    tc,
                )
            return None
        limit = delegation.max_children(tool)
        child = start_child(
            run, agent.name, child_workflow, child_input, tool_use_id, model_call, limit=limit
        )
        if child is None:  # another tool_use of this turn took the last place
            why = f"this run already started {limit} sub-agent run(s), its limit"
            return _refuse(run, tool, tool_use, new_attempt, finish, why, workflow)
    if not child.is_final:
        return Waiting(tool_use_id, child.pk)
    return _answer_from(run, tool, tool_use, child, new_attempt, finish, workflow, ctx)


def start_child(
    run: Run,
    agent: str,
    child_workflow: Workflow,
    child_input: dict[str, Any],
    tool_use_id: str,
    model_call: ModelCall,
    *,
    limit: int | None = None,
) -> Run | None:
    """Create and queue the child run of ``tool_use_id``, or return the one a step that died
    already created (the unique (parent, tool_use_id) constraint decides a race). Under the
    parent's row lock, so the tool_uses of one turn, settled in parallel, cannot together
    start more than ``limit`` children: None when the run already has that many."""
    version = snapshot(child_workflow)
    ceiling = accounting.subagent_ceiling(child_workflow)
    try:
        with transaction.atomic():
            Run.objects.locked().filter(pk=run.pk).values_list("pk").first()
            existing = Run.objects.filter(parent=run, parent_tool_use_id=tool_use_id).first()
            if existing is not None:
                return existing
            if limit is not None and Run.objects.filter(parent=run).count() >= limit:
                return None
            child = Run.objects.create(
                parent=run,
                parent_tool_use_id=tool_use_id,
                workflow_version=version,
                workflow_name=child_workflow.name,
                requested_by_id=run.requested_by_id,
                input=child_input,
                options={"subagent": agent},
                ceiling_usd=ceiling.usd,
                ceiling_tokens=ceiling.tokens,
                ceiling_basis=ceiling.basis,
            )
            audit.record(
                "run.requested",
                run=child,
                actor="engine",
                evidence_of=[child],
                payload={
                    "workflow": child_workflow.name,
                    "version": version.content_hash,
                    "source": "subagent",
                    "input": child_input,
                    "parent": str(run.pk),
                    "tool_use_id": tool_use_id,
                    "agent": agent,
                },
            )
            audit.record(
                "subagent.handoff",
                run=run,
                actor="engine",
                payload={
                    "agent": agent,
                    "workflow": child_workflow.name,
                    "child": str(child.pk),
                    "tool_use_id": tool_use_id,
                    "turn": model_call.turn,
                },
            )
            lifecycle.transition(
                child.pk, S.QUEUED, actor="engine", event_payload={"parent": str(run.pk)}
            )
    except IntegrityError:
        return Run.objects.get(parent=run, parent_tool_use_id=tool_use_id)
    return child


def _answer_from(
    run: Run,
    tool: Handoff,
    tool_use: dict[str, Any],
    child: Run,
    new_attempt: Callable[..., ToolCall],
    finish: Callable[..., ToolCall],
    workflow: Workflow,
    ctx: ToolContext,
) -> Escalation | None:
    """Settle the tool_use with the ended child's result (then the workflow's escalation rules
    on it, as for any accepted output), or with an error saying how the child ended."""
    agent = child.options.get("subagent") or child.workflow_name
    payload = {
        "tool_use_id": tool_use["id"],
        "agent": agent,
        "child": str(child.pk),
        "status": child.status,
        "cost_usd": str(child.tree_cost_usd),
    }
    with transaction.atomic():
        if child.status == S.SUCCEEDED:
            output = {
                "agent": agent,
                "run": str(child.pk),
                "status": child.status,
                "cost_usd": str(child.tree_cost_usd),
                "result": child.result or {},
            }
            tc = finish(
                new_attempt(
                    status=TC.OK,
                    settled=True,
                    tool_version=tool.version,
                    raw_output=output,
                    output=output,
                )
            )
        else:
            why = child.error or f"it ended {child.get_status_display()}"
            tc = finish(
                new_attempt(
                    status=TC.ERROR,
                    settled=True,
                    tool_version=tool.version,
                    error=(
                        f"Sub-agent {agent!r} (run {child.pk}) did not succeed: it is {child.status}. {why}"
                    )[:4000],
                )
            )
        audit.record(
            "subagent.returned", run=run, actor="engine", evidence_of=[tc], payload=payload
        )
    if tc.status == TC.OK:
        after = ToolContext(**{**ctx.__dict__, "outputs": {**ctx.outputs, tool.name: tc.output}})
        for rule in workflow.escalation_rules:
            if rule.tool == tool.name and rule.when(tc.output, after):
                return Escalation(rule.reason, rule.message, tc)
    return None


ENGINE_SETTLED[Handoff] = settle_handoff


def park(run_id: Any) -> bool:
    """Park the run until its unfinished children end (running -> awaiting_subagent); False,
    changing nothing, when they all ended already (the step then settles their results)."""
    with transaction.atomic():
        status = Run.objects.locked().filter(pk=run_id).values_list("status", flat=True).first()
        if status != S.RUNNING:
            return True  # stopped meanwhile (cancelled): the step just ends
        waiting_on = [
            str(pk) for pk in lifecycle.unfinished_children(run_id).values_list("pk", flat=True)
        ]
        if not waiting_on:
            return False
        lifecycle.transition(
            run_id, S.AWAITING_SUBAGENT, actor="engine", event_payload={"children": waiting_on}
        )
    return True


# --- the estimate of a tree ---------------------------------------------------------------


def with_subagents(
    workflow: Workflow, estimate: Estimate, measure: Callable[..., PromptSize]
) -> Estimate:
    """The estimate of the whole tree, so the approval gate and the ceiling cover it: each
    declared sub-agent is estimated on its workflow's example input (``measure`` counts its
    first request's tokens, as for any run), then the run is expected to hand off once to the
    costliest one and may hand off ``max_children`` times (the upper bound)."""
    lines, expected, upper = list(estimate.lines), estimate.expected_usd, estimate.upper_usd
    for tool in workflow.handoffs:
        costliest: tuple[Decimal, Decimal] = (Decimal(0), Decimal(0))
        for agent in tool.agents:
            child = registry.get(agent.workflow)
            example = child.input_example or {}
            child_estimate = with_subagents(
                child,
                estimate_run(child, example, measure(child, snapshot(child), example)),
                measure,
            )
            lines.append(
                {
                    "item": f"Sub-agent {agent.name} ({child.name}, {child.orchestrator_model})",
                    "calc": f"its own estimate on its example input: expected ${child_estimate.expected_usd:.6f}",
                    "usd": f"${child_estimate.upper_usd:.6f}",
                }
            )
            costliest = max(costliest, (child_estimate.upper_usd, child_estimate.expected_usd))
        most = delegation.max_children(tool)
        expected += costliest[1]
        upper += costliest[0] * most
        lines.append(
            {
                "item": f"Sub-agents through {tool.name}",
                "calc": f"expected: one handoff to the costliest; upper bound: up to {most} handoff(s) x ${costliest[0]:.6f}",
                "usd": f"${costliest[0] * most:.6f}",
            }
        )
    if upper == estimate.upper_usd:
        return estimate
    lines.append(
        {
            "item": "Upper bound with sub-agents",
            "calc": "the run's upper bound + its sub-agents'",
            "usd": f"${upper:.6f}",
        }
    )
    return Estimate(model=estimate.model, expected_usd=expected, upper_usd=upper, lines=lines)


# --- what the run page shows ------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A run's place in its tree: the parent it answers, its children, and the open ticket of
    a child it waits on (the reason it is not moving)."""

    parent: Run | None
    children: list[Run]
    paused_children: list[tuple[Run, EscalationTicket]]
    agent: str


def family(run: Run) -> Family | None:
    """The run's parent and children for the run page, or None when it has neither."""
    children = list(Run.objects.filter(parent=run).order_by("created_at"))
    if run.parent_id is None and not children:
        return None
    parent = Run.objects.filter(pk=run.parent_id).first() if run.parent_id else None
    paused = []
    for child in children:
        if child.status == S.AWAITING_REVIEW:
            ticket = (
                child.tickets.exclude(status=EscalationTicket.Status.RESOLVED)
                .order_by("-created_at")
                .first()
            )
            if ticket is not None:
                paused.append((child, ticket))
    return Family(
        parent=parent,
        children=children,
        paused_children=paused,
        agent=str(run.options.get("subagent") or ""),
    )
