"""A readable diff between two workflow versions, section by section (the versions page).

The prompt is compared line by line; schemas, limits, models and rules as indented JSON
(sorted keys), so a changed field is one line; the code-defined rules by their digests (a
changed validator shows its name with another sha256). difflib does the work.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from orchestration.models import WorkflowVersion


@dataclass(frozen=True)
class Line:
    op: str  # "add", "del", "ctx" or "hunk"
    text: str


@dataclass(frozen=True)
class Section:
    label: str
    lines: tuple[Line, ...]

    @property
    def changed(self) -> bool:
        return any(line.op in ("add", "del") for line in self.lines)

    @property
    def counts(self) -> tuple[int, int]:
        return (
            sum(1 for x in self.lines if x.op == "add"),
            sum(1 for x in self.lines if x.op == "del"),
        )


def _behaviour(version: WorkflowVersion, key: str) -> Any:
    if not version.behaviour:
        return "(not recorded: this snapshot was taken before versions covered rules and code)"
    return version.behaviour.get(key)


# (label, how to read the part from a version, compared as text or as JSON)
PARTS: tuple[tuple[str, Any, bool], ...] = (
    ("Prompt", lambda v: v.system_prompt, True),
    ("Tool definitions (as sent to the model)", lambda v: v.tools, False),
    ("Tools: schemas, timeouts and code", lambda v: _behaviour(v, "tools"), False),
    ("Input schema", lambda v: v.input_schema, False),
    ("Output schema", lambda v: v.output_schema, False),
    ("Limits", lambda v: v.constraints, False),
    ("Models per role", lambda v: v.model_roles, False),
    ("Workflow rules", lambda v: _behaviour(v, "rules"), False),
    ("Examples", lambda v: _behaviour(v, "examples"), False),
    (
        "Required tools and approval threshold",
        lambda v: {
            "required_tools": _behaviour(v, "required_tools"),
            "approval_threshold_usd": _behaviour(v, "approval_threshold_usd"),
        },
        False,
    ),
    ("Escalation rules", lambda v: _behaviour(v, "escalation_rules"), False),
    ("Regulatory trigger", lambda v: _behaviour(v, "regulatory_trigger"), False),
    ("Fan-out code", lambda v: _behaviour(v, "fanout"), False),
)


def _lines(value: Any, as_text: bool) -> list[str]:
    if as_text:
        return str(value).splitlines()
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _diff(old: list[str], new: list[str], context: int) -> tuple[Line, ...]:
    out: list[Line] = []
    for text in list(difflib.unified_diff(old, new, lineterm="", n=context))[
        2:
    ]:  # no ---/+++ header
        if text.startswith("@@"):
            out.append(Line("hunk", text))
        elif text.startswith("+"):
            out.append(Line("add", text[1:]))
        elif text.startswith("-"):
            out.append(Line("del", text[1:]))
        else:
            out.append(Line("ctx", text[1:]))
    return tuple(out)


def diff(old: WorkflowVersion, new: WorkflowVersion, *, context: int = 3) -> list[Section]:
    """Every part of the two snapshots, with the lines that changed from ``old`` to ``new``
    (a part that did not change has no lines)."""
    return [
        Section(label, _diff(_lines(read(old), as_text), _lines(read(new), as_text), context))
        for label, read, as_text in PARTS
    ]
