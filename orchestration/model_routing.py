"""Which role, hence which model, plays the next turn of the tool-use loop.

A workflow declares it (``Workflow.turn_roles``, a ``TurnRoles`` rule; docs/workflows.md);
without one every turn is the orchestrator's, as before. The rule, in order:

1. recovery - the turn after something went wrong: a tool call of the last turn that failed
   or was refused (its tool_result is an error), an engine note (a rejected final answer, an
   answer cut off at max_tokens), or a reviewer resuming the run since the last answer;
2. first - the run's first turn;
3. after - the turn after a turn that called one of the named tools;
4. default.

The engine asks ``route`` once per model call and records the role and model on the
ModelCall, so the run page and the costs page show which model played what.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestration.models import ModelCall, Run, ToolCall
from orchestration.tool_execution import round_start
from orchestration.workflows.declaration import Workflow

ENGINE_NOTE = "[engine]"  # the prefix of the engine's own notes to the model (engine.py)


@dataclass(frozen=True)
class Route:
    role: str
    model: str
    why: str  # which part of the rule chose it: recovery, first, after:<tool>, default


def _went_wrong(run: Run, last: ModelCall) -> bool:
    if run.pending_note.startswith(ENGINE_NOTE) or run.pending_note.startswith("Reviewer note"):
        return True
    resumed = round_start(run)
    if resumed is not None and resumed > last.created_at:
        return True
    if last.stop_reason != "tool_use":
        return False
    settled = ToolCall.objects.filter(run=run, model_call__turn=last.turn, settled=True)
    return any(tc.is_error_result for tc in settled.only("status"))


def route(run: Run, workflow: Workflow, last: ModelCall | None) -> Route:
    """The role and model of the turn that follows ``last`` (None: the first turn)."""
    rule = workflow.turn_roles
    if rule is None:
        return Route("orchestrator", workflow.orchestrator_model, "default")
    if last is not None and _went_wrong(run, last):
        role, why = rule.recovery, "recovery"
    elif last is None:
        role, why = rule.first, "first"
    else:
        called = [tu["name"] for tu in last.tool_uses] if last.stop_reason == "tool_use" else []
        after = next((name for name in called if name in rule.after), None)
        role, why = (rule.after[after], f"after:{after}") if after else (rule.default, "default")
    return Route(role, workflow.model_for(role), why)
