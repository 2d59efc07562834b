"""Workflows are declared in Python and registered here, like Celery tasks.

``autodiscover`` imports every module listed in settings.WORKFLOW_MODULES when Django
starts (config/settings.py lists the demo workflows of the ``demo`` app). The core names no
workflow module itself: nothing in orchestration imports a workflow.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings

from orchestration.workflows import delegation
from orchestration.workflows.declaration import ROLES, Workflow

_REGISTRY: dict[str, Workflow] = {}
# Earlier declarations kept deployed beside the current one, so that the approved version keeps
# serving while a change is reviewed (orchestration.workflows.versions.serving).
_PREVIOUS: dict[str, list[Workflow]] = {}

DEFAULT_MODULES: tuple[str, ...] = ()


class UnknownWorkflow(LookupError):
    def __init__(self, name: str) -> None:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        super().__init__(f"Unknown workflow {name!r}. Known workflows: {known}.")
        self.name = name


def register(workflow: Workflow) -> Workflow:
    existing = _REGISTRY.get(workflow.name)
    if existing is not None and existing is not workflow:
        raise ValueError(f"Workflow {workflow.name!r} is registered twice.")
    names = [t.name for t in workflow.tools]
    if len(names) != len(set(names)):
        raise ValueError(f"Workflow {workflow.name!r} declares a tool name twice.")
    delegation.check(workflow, _REGISTRY)  # sub-agents: what can be checked before the rest loads
    if problems := model_problems(workflow):
        raise ValueError(f"Workflow {workflow.name!r}: " + "; ".join(problems) + ".")
    _REGISTRY[workflow.name] = workflow
    return workflow


def model_problems(workflow: Workflow) -> list[str]:
    """What is wrong with the workflow's models and turn roles, as declared (no database: the
    prices and end-of-life dates are checked when a run starts, costs.lineup)."""
    problems = workflow.turn_roles.problems(names_of(workflow)) if workflow.turn_roles else []
    if workflow.turn_roles is not None and workflow.fanout is not None:
        problems.append(
            "turn_roles applies to the tool-use loop; a fan-out workflow names its roles' models in models"
        )
    for role in workflow.models:
        if role not in ROLES:
            problems.append(
                f"models names the role {role!r}, which is not a role (one of: {', '.join(ROLES)})"
            )
    expected = workflow.expectation
    if expected is not None and expected.roles:
        if len(expected.roles) != expected.turns:
            problems.append(
                f"expectation.roles names {len(expected.roles)} roles for {expected.turns} turns"
            )
        if workflow.turn_roles is None:
            problems.append(
                "expectation.roles needs turn_roles (without it every turn is the orchestrator's)"
            )
        elif unknown := sorted(set(expected.roles) - set(workflow.turn_roles.roles())):
            problems.append(
                f"expectation.roles names {', '.join(unknown)}, which turn_roles never picks"
            )
    if not problems:
        for role in workflow.turn_roles.roles() if workflow.turn_roles else ():
            try:
                workflow.model_for(role)
            except KeyError as exc:
                problems.append(str(exc.args[0]))
    return problems


def names_of(workflow: Workflow) -> list[str]:
    return [t.name for t in workflow.tools]


def register_previous(workflow: Workflow) -> Workflow:
    """Keep an earlier declaration of a registered workflow deployed (its ``version`` must
    differ from the others'): runs keep starting on it while it is the approved version, and
    runs that started on it can resume. Register the current declaration first."""
    current = _REGISTRY.get(workflow.name)
    if current is None:
        raise ValueError(
            f"Register the current declaration of {workflow.name!r} before its previous ones."
        )
    kept = _PREVIOUS.setdefault(workflow.name, [])
    if any(w is workflow for w in kept):
        return workflow
    if any(w.version == workflow.version for w in (current, *kept)):
        raise ValueError(f"Workflow {workflow.name!r} v{workflow.version} is registered twice.")
    kept.append(workflow)
    return workflow


def declarations(name: str) -> list[Workflow]:
    """Every deployed declaration of the workflow: the current one first, then the kept ones."""
    return [get(name), *_PREVIOUS.get(name, ())]


def get(name: str) -> Workflow:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownWorkflow(name) from None


def all_workflows() -> list[Workflow]:
    return sorted(_REGISTRY.values(), key=lambda w: w.title)


def autodiscover() -> None:
    for module in getattr(settings, "WORKFLOW_MODULES", DEFAULT_MODULES):
        import_module(module)
    delegation.check_all(_REGISTRY)  # every sub-agent a workflow names now exists


def policy_for(name: str | None) -> Any:
    """The simulator's policy resolver: the workflow's own policy, or None (generic)."""
    if name and name in _REGISTRY:
        return _REGISTRY[name].policy
    return None
