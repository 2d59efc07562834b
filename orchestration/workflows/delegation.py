"""The rules of sub-agent declarations: what a workflow may hand work to, and how deep.

The one owner of the sub-agent limits. ``check`` runs when a workflow registers (and
``check_all`` once every workflow module is imported): a handoff names only registered,
tool-loop workflows, each name once, within ``max_children`` and the depth limit, with no
cycle. The engine (orchestration.subagents) asks ``child_refusal`` again before it starts
each child run, so a limit holds even for a model that ignores its tool's schema.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings

from orchestration.workflows.declaration import Handoff, Workflow


class DelegationError(ValueError):
    """A workflow's sub-agent declaration is refused at load; the message says what to fix."""


def max_depth() -> int:
    return int(settings.SUBAGENT_MAX_DEPTH)


def max_children(tool: Handoff) -> int:
    """The children one run may start through ``tool``: its own limit, never more than the
    deployment's SUBAGENT_MAX_CHILDREN."""
    return min(tool.max_children, int(settings.SUBAGENT_MAX_CHILDREN))


def _shape(workflow: Workflow, tool: Handoff) -> list[str]:
    problems = []
    names = [a.name for a in tool.agents]
    if not names:
        problems.append(f"handoff tool {tool.name!r} declares no sub-agent")
    if len(names) != len(set(names)):
        problems.append(f"handoff tool {tool.name!r} declares a sub-agent name twice")
    if not 1 <= tool.max_children <= int(settings.SUBAGENT_MAX_CHILDREN):
        problems.append(
            f"handoff tool {tool.name!r}: max_children must be between 1 and SUBAGENT_MAX_CHILDREN "
            f"({settings.SUBAGENT_MAX_CHILDREN}), not {tool.max_children}"
        )
    if workflow.fanout is not None:
        problems.append("a fan-out workflow cannot hand off to sub-agents")
    return problems


def _depth_below(
    name: str, registry: Mapping[str, Workflow], path: tuple[str, ...], strict: bool
) -> int:
    """How many levels of sub-agents hang below ``name`` (0: it hands off to none)."""
    if name in path:
        raise DelegationError(f"sub-agents form a cycle: {' -> '.join((*path, name))}")
    workflow = registry.get(name)
    if workflow is None:
        if strict:
            raise DelegationError(
                f"{path[-1]!r} hands off to {name!r}, which is not a registered workflow"
            )
        return 0
    deepest = 0
    for tool in workflow.handoffs:
        for agent in tool.agents:
            child = registry.get(agent.workflow)
            if child is not None and child.fanout is not None:
                raise DelegationError(
                    f"{name!r} hands off to {agent.workflow!r}, a fan-out workflow: sub-agents run the tool-use loop"
                )
            deepest = max(
                deepest, 1 + _depth_below(agent.workflow, registry, (*path, name), strict)
            )
    return deepest


def check(workflow: Workflow, registry: Mapping[str, Workflow], *, strict: bool = False) -> None:
    """Refuse a bad sub-agent declaration of ``workflow`` (DelegationError). ``strict``: every
    named sub-agent workflow must already be registered (after autodiscovery)."""
    problems = [p for tool in workflow.handoffs for p in _shape(workflow, tool)]
    if problems:
        raise DelegationError(f"Workflow {workflow.name!r}: " + "; ".join(problems) + ".")
    known = {**registry, workflow.name: workflow}
    depth = _depth_below(workflow.name, known, (), strict)
    if depth > max_depth():
        raise DelegationError(
            f"Workflow {workflow.name!r}: its sub-agents nest {depth} levels deep; SUBAGENT_MAX_DEPTH is {max_depth()}."
        )


def check_all(registry: Mapping[str, Workflow]) -> None:
    for workflow in registry.values():
        if workflow.handoffs:
            check(workflow, registry, strict=True)


def child_refusal(tool: Handoff, agent_name: object, *, depth: int, started: int) -> str | None:
    """Why a run at ``depth`` that already started ``started`` children may not start one for
    ``agent_name`` now, or None."""
    agent = tool.agent(agent_name)
    if agent is None:
        declared = ", ".join(a.name for a in tool.agents)
        return f"{str(agent_name)[:100]!r} is not a sub-agent this workflow declares (declared: {declared})"
    if depth + 1 > max_depth():
        return f"this run is already {depth} level(s) deep; sub-agents may nest at most {max_depth()} levels"
    if started >= max_children(tool):
        return f"this run already started {started} sub-agent run(s), its limit"
    return None
