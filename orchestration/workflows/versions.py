"""WorkflowVersion snapshots: the checkpoint recorded before every run, and which code serves it.

A snapshot covers everything that decides how a run behaves: the rendered prompt (role, rules,
constraints, output format, examples), the tools with their schemas and versions, the limits,
the models per role, and ``behaviour``: the rules and examples as data, each tool's schemas,
timeout and side effect, and the code-defined rules (tool handlers, validators, guards,
preconditions, escalation rules, the regulatory trigger, the fan-out callables) as a digest
of their source (``code_digest``). Any change of any of it gives a new ``content_hash``, hence
a new version.

A version row is matched to the code that can run it by recomputing the hash of every deployed
declaration of the workflow (``registry.declarations``): a run executes the declaration whose
hash is its version's (``workflow_for``), never another one under its label. When no deployed
declaration matches, the run's version is no longer deployed: ``drift`` says what differs.

Review state (pending, approved, serving) is ``orchestration.version_policy``'s; this module
only records a new snapshot (pending, or approved as the bootstrap of a workflow that has no
version yet) and finds the version that serves new runs (``serving``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from orchestration import audit
from orchestration.models import Run, WorkflowVersion
from orchestration.workflows import registry
from orchestration.workflows.declaration import Handoff, Tool, Workflow
from orchestration.workflows.prompt import render_system_prompt

FORMAT = 2
# Snapshots of format 1 (before ``behaviour``) hashed only the data fields; they are matched to
# code by that hash, and their page says their code was not covered.
LEGACY = 1
# The fields whose change the version page diffs and ``drift`` names.
SECTIONS = {
    "system_prompt": "prompt",
    "tools": "tool definitions",
    "input_schema": "input schema",
    "output_schema": "output schema",
    "model_roles": "models per role",
    "constraints": "limits",
    "behaviour": "rules and code",
}


class VersionUnavailable(Exception):
    """The version that should run (a run's own, or the one serving new runs) cannot: its code
    is not deployed, or no version is approved. The message says why and what to do."""


# --- digests of code -----------------------------------------------------------------------

_SIMPLE = (bool, int, float, str, Decimal, type(None))


def _value(value: Any, depth: int) -> str:
    """A stable text for a captured value: literals as written, containers item by item,
    callables by their own source; anything else by its type (never a repr that could hold a
    memory address, or every process would see another digest)."""
    if isinstance(value, _SIMPLE):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v, depth) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(_value(v, depth) for v in value)) + "}"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(sorted(f"{_value(k, depth)}:{_value(v, depth)}" for k, v in value.items()))
            + "}"
        )
    if callable(value) and depth < 3:
        return _material(value, depth + 1)
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _material(fn: Callable[..., Any], depth: int = 0) -> str:
    """What a callable's digest covers: its source, its default arguments and the values its
    closure captured (a validator made by a factory with another limit is another rule)."""
    if isinstance(fn, functools.partial):
        return f"partial({_material(fn.func, depth)};{_value(fn.args, depth)};{_value(fn.keywords, depth)})"
    target: Any = fn.__func__ if inspect.ismethod(fn) else fn
    if not inspect.isfunction(target):
        target = type(fn)  # an object with __call__: its class's source, and its attributes
    try:
        source = textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError):
        source = f"<source unavailable: {getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}>"
    parts = [source]
    if inspect.isfunction(target):
        parts += [_value(target.__defaults__, depth), _value(target.__kwdefaults__, depth)]
        for name, cell in zip(target.__code__.co_freevars, target.__closure__ or (), strict=False):
            try:
                captured = cell.cell_contents
            except ValueError:  # a cell not filled yet
                captured = None
            parts.append(f"{name}={_value(captured, depth)}")
    elif not isinstance(fn, type):
        parts.append(_value(getattr(fn, "__dict__", {}), depth))
    return "\n".join(parts)


def code_digest(fn: Callable[..., Any] | None) -> dict[str, str] | None:
    """``{"name", "sha256"}`` of a code-defined rule: sha256 of its source (inspect.getsource),
    defaults and captured values. Covers the callable's own text, not functions it calls: a
    change there is a change of the tool's ``version`` (docs/workflows.md)."""
    if fn is None:
        return None
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return {
        "name": f"{module}.{name}",
        "sha256": hashlib.sha256(_material(fn).encode()).hexdigest(),
    }


# --- the snapshot --------------------------------------------------------------------------


def behaviour(workflow: Workflow) -> dict[str, Any]:
    tools = []
    for tool in workflow.tools:
        tools.append(
            {
                "name": tool.name,
                "version": tool.version,
                "input_schema": tool.input_schema,  # with our x-from-tool annotations
                "output_schema": tool.output_schema,
                "timeout_seconds": tool.timeout_seconds,
                "side_effect": tool.side_effect,
                "handler": code_digest(tool.handler),
                "validators": [code_digest(v) for v in tool.validators],
                "guards": [code_digest(g) for g in tool.guards],
                "preconditions": [
                    {"name": p.name, "sign_off": p.sign_off, "check": code_digest(p.check)}
                    for p in tool.preconditions
                ],
                **_tool_extras(tool),
            }
        )
    fanout = None
    if workflow.fanout is not None:
        spec = workflow.fanout
        fanout = {
            name: code_digest(getattr(spec, name))
            for name in (
                "items",
                "expected_aggregate",
                "item_data",
                "context",
                "expected_jobs",
                "summarize",
            )
        }
    threshold = workflow.approval_threshold_usd
    return {
        "format": FORMAT,
        "rules": list(workflow.rules),
        "examples": [
            {"title": e.title, "input": e.input, "steps": list(e.steps)} for e in workflow.examples
        ],
        "required_tools": list(workflow.required_tools),
        "approval_threshold_usd": None if threshold is None else str(threshold),
        "tools": tools,
        "escalation_rules": [
            {"tool": r.tool, "reason": r.reason, "message": r.message, "when": code_digest(r.when)}
            for r in workflow.escalation_rules
        ],
        "regulatory_trigger": code_digest(workflow.regulatory_trigger),
        "fanout": fanout,
        **_workflow_extras(workflow),
    }


def _tool_extras(tool: Tool) -> dict[str, Any]:
    """What a tool declares beyond the basics (its own retry limit, a cached fallback, a
    narrower retry, the sub-agents of a handoff); only what is set, so the snapshot of a
    tool that declares none of it is what it was before these existed."""
    extras: dict[str, Any] = {}
    if tool.max_attempts is not None:
        extras["max_attempts"] = tool.max_attempts
    if tool.fallback is not None:
        fb = tool.fallback
        extras["fallback"] = {
            "max_age_seconds": fb.max_age_seconds,
            "on": list(fb.on),
            "key": code_digest(fb.key),
        }
    if tool.narrow_on_timeout is not None:
        extras["narrow_on_timeout"] = code_digest(tool.narrow_on_timeout)
    if isinstance(tool, Handoff):
        extras["handoff"] = {
            "max_children": tool.max_children,
            "agents": [
                {"name": a.name, "workflow": a.workflow, "description": a.description}
                for a in tool.agents
            ],
        }
    return extras


def _workflow_extras(workflow: Workflow) -> dict[str, Any]:
    """The workflow-level rules beyond the basics (re-validation when rules change, the start
    defaults and their time zone, the evaluation a change must pass); only what is set."""
    extras: dict[str, Any] = {}
    if workflow.reruns:
        extras["reruns"] = [
            {
                "tool": r.tool,
                "field": r.field,
                "before": list(r.before),
                "current": code_digest(r.current),
            }
            for r in workflow.reruns
        ]
    if workflow.input_defaults is not None:
        extras["input_defaults"] = code_digest(workflow.input_defaults)
        extras["time_zone"] = workflow.time_zone
    if workflow.evaluation_thresholds is not None:
        t = workflow.evaluation_thresholds
        extras["evaluation_thresholds"] = {
            k: (str(v) if isinstance(v, Decimal) else v) for k, v in dataclasses.asdict(t).items()
        }
    return extras


def _data_fields(workflow: Workflow) -> dict[str, Any]:
    constraints = workflow.constraints.as_dict()
    if workflow.fanout is not None:
        constraints["fanout"] = workflow.fanout.as_dict()
    if workflow.turn_roles is not None:  # which role plays each turn: part of what was approved
        constraints["turn_roles"] = workflow.turn_roles.as_dict()
    return {
        "name": workflow.name,
        "version": workflow.version,
        "title": workflow.title,
        "system_prompt": render_system_prompt(workflow),
        "tools": [{**t.definition(), "version": t.version} for t in workflow.tools],
        "input_schema": workflow.input_schema,
        "output_schema": workflow.output_schema,
        "model_roles": dict(workflow.models),
        "constraints": constraints,
    }


def content_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


# Declarations are frozen and code does not change inside a process: their snapshot is
# computed once (getsource reads files). Keyed by id, holding the object so the id stays its.
_computed: dict[int, tuple[Workflow, dict[str, Any], str, str]] = {}


def _computed_for(workflow: Workflow) -> tuple[dict[str, Any], str, str]:
    """(fields, content hash, legacy hash) of a declaration."""
    entry = _computed.get(id(workflow))
    if entry is None or entry[0] is not workflow:
        data = _data_fields(workflow)
        fields = {**data, "behaviour": behaviour(workflow)}
        entry = _computed[id(workflow)] = (
            workflow,
            fields,
            content_hash(fields),
            content_hash(data),
        )
    return entry[1], entry[2], entry[3]


def snapshot_fields(workflow: Workflow) -> dict[str, Any]:
    return dict(_computed_for(workflow)[0])


def hash_of(workflow: Workflow) -> str:
    return _computed_for(workflow)[1]


def snapshot(workflow: Workflow) -> WorkflowVersion:
    """The WorkflowVersion of the workflow as declared now, recorded if new.

    A new snapshot is pending: it serves no run until a person other than its author approves
    it (orchestration.version_policy). The first version of a workflow has nothing to keep
    serving, so the system approves it as the workflow's bootstrap (audited as such)."""
    fields, digest, _ = _computed_for(workflow)
    existing = WorkflowVersion.objects.filter(content_hash=digest).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            first = not WorkflowVersion.objects.filter(name=workflow.name).exists()
            status = WorkflowVersion.Status.APPROVED if first else WorkflowVersion.Status.PENDING
            version = WorkflowVersion.objects.create(
                content_hash=digest, status=status, serving=first, **fields
            )
            payload = {"workflow": version.name, "version": version.version, "content_hash": digest}
            if first:
                audit.record(
                    "version.bootstrapped",
                    actor="system",
                    payload=payload
                    | {"why": "the first version of a workflow: nothing earlier to keep serving"},
                )
            else:
                audit.record(
                    "version.recorded", actor="system", payload=payload | {"status": "pending"}
                )
            return version
    except IntegrityError:
        # Another process recorded the same snapshot first, or bootstrapped another version of
        # this workflow at the same moment (then this one is simply pending: try again).
        found = WorkflowVersion.objects.filter(content_hash=digest).first()
        return found if found is not None else snapshot(workflow)


def api_tools(version: WorkflowVersion) -> list[dict[str, Any]]:
    """Tool definitions as the API takes them (our version field stripped)."""
    return [{k: v for k, v in tool.items() if k != "version"} for tool in version.tools]


# --- which code runs a version -------------------------------------------------------------


def is_legacy(version: WorkflowVersion) -> bool:
    return not version.behaviour


def declaration_for(version: WorkflowVersion) -> Workflow | None:
    """The deployed declaration whose snapshot is this version, or None."""
    try:
        deployed = registry.declarations(version.name)
    except registry.UnknownWorkflow:
        return None
    legacy = is_legacy(version)
    for workflow in deployed:
        _, digest, legacy_digest = _computed_for(workflow)
        if version.content_hash == (legacy_digest if legacy else digest):
            return workflow
    return None


def changed_sections(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The names (``SECTIONS``) of what differs between two snapshots' fields."""
    return [label for key, label in SECTIONS.items() if old.get(key) != new.get(key)]


def version_fields(version: WorkflowVersion) -> dict[str, Any]:
    return {key: getattr(version, key) for key in ("name", "version", "title", *SECTIONS)}


def drift(version: WorkflowVersion) -> str | None:
    """Why runs of this version cannot go on with the deployed code, or None when its code is
    deployed. Names what the deployed declaration changed and the ways forward."""
    if declaration_for(version) is not None:
        return None
    label = f"{version.name} v{version.version} ({version.short_hash})"
    try:
        current = registry.get(version.name)
    except registry.UnknownWorkflow:
        return f"Version {label} cannot run: the workflow {version.name!r} is no longer deployed."
    if is_legacy(version):
        differs = "its prompt, tools or limits"
    else:
        sections = changed_sections(version_fields(version), snapshot_fields(current))
        differs = ", ".join(sections) or "its code"
    return (
        f"This run started on version {label}, whose code is no longer deployed: the deployed "
        f"v{current.version} ({hash_of(current)[:12]}) differs in {differs}. Running it would apply "
        "other rules under this version's label, so it does not go on. Fail the run and start a new "
        f"one on the approved version, or deploy v{version.version} again (keep its declaration with "
        "registry.register_previous) and then resume."
    )


def workflow_for(run: Run) -> Workflow:
    """The declaration that runs ``run``: the one whose snapshot is the run's version.
    Raises VersionUnavailable (with ``drift``'s reason) when it is not deployed."""
    version = run.workflow_version
    workflow = declaration_for(version)
    if workflow is None:
        raise VersionUnavailable(drift(version) or "")
    return workflow


def serving(name: str) -> tuple[Workflow, WorkflowVersion]:
    """The declaration and version new runs of ``name`` start on: the approved, serving version.

    Every deployed declaration is snapshotted first, so a changed workflow shows up as a
    pending version the moment anyone tries to start it. Raises VersionUnavailable when the
    serving version's code is not deployed (the change replaced it in place: it waits for its
    approval, or for the previous declaration to be deployed again)."""
    recorded = [snapshot(w) for w in registry.declarations(name)]
    version = WorkflowVersion.objects.filter(name=name, serving=True).first()
    if version is None:
        raise VersionUnavailable(
            f"No approved version of {name!r} serves runs (every version was rejected or none is "
            "approved). A manager approves a version on the workflow's versions page."
        )
    workflow = declaration_for(version)
    if workflow is None:
        pending = [v for v in recorded if v.status == WorkflowVersion.Status.PENDING]
        waiting = (
            f" The deployed code is version {pending[0].version} ({pending[0].short_hash}), pending: "
            "it serves runs once a person other than its author approves it."
            if pending
            else ""
        )
        raise VersionUnavailable(
            f"The approved version of {name!r}, v{version.version} ({version.short_hash}), is no longer "
            f"deployed, so no run can start on it.{waiting} Approve the change on the workflow's "
            "versions page, or deploy the approved code again."
        )
    return workflow, version
