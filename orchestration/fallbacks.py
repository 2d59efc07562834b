"""Branching fallbacks declared on a workflow, enforced in code. The one owner of these rules;
the tool executor and the engine call it.

The seed's examples, each a declaration (orchestration.workflows.declaration):

- ``Tool.fallback = CachedResult(...)``: "the fetch times out, fall back to the last cached
  result and say so in the output". When every attempt of a read-only tool's call failed
  the way ``on`` names, the call is answered with the last accepted result of the same tool
  (same workflow, same ``key(input)``, no older than ``max_age_seconds``), as a settled ``ok``
  attempt whose output carries a ``fallback`` marker (kind, source call, when it was cached,
  why the live call failed), with an audit event ``tool.fallback``. The run's final answer
  must list every such fallback under ``fallbacks`` (tool and ``cached_at``), and may list no
  other: an answer that hides it, or claims one that did not happen, is refused (nudged once,
  then escalated), so a stale figure never leaves unmarked. With no cached result to give,
  the call escalates as before (``retries_exhausted``).
- ``Tool.narrow_on_timeout``: a call that timed out is retried once with the narrower input
  the tool declares (e.g. half the date range); the answer says what it covered, and the
  model fetches the rest.
- ``Workflow.reruns = (RerunWhenChanged(...),)``: "the rules changed, re-run the validation
  step". Before a tool named in ``before`` runs, and before the run may finish, the rules
  version the latest validation recorded must be the version in force; otherwise the call
  (or answer) is refused with the reason and the model re-runs the validation, whose new
  result goes through the workflow's escalation rules like any other.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from orchestration import audit
from orchestration.models import Run, ToolCall
from orchestration.privacy import PayloadKeyError, require_readable
from orchestration.workflows.declaration import JSON, Record, Tool, Workflow

logger = logging.getLogger(__name__)
TC = ToolCall.Status

MARKER = "fallback"
CACHED = "last_cached_result"
# How many recent results of the tool are looked at for one with the same key.
CANDIDATES = 50


# --- the last cached result --------------------------------------------------------------


def _key(tool: Tool, tool_input: JSON) -> Any:
    assert tool.fallback is not None
    return tool.fallback.key(tool_input) if tool.fallback.key else tool_input


def is_fallback(output: Any) -> bool:
    return (
        isinstance(output, dict)
        and isinstance(output.get(MARKER), dict)
        and output[MARKER].get("kind") == CACHED
    )


def cached_result(
    run: Run, workflow: Workflow, tool: Tool, tool_input: JSON, failed: ToolCall
) -> JSON | None:
    """The output to answer with when every attempt failed: the last live result of the tool
    for the same key, marked; or None (no fallback declared for this failure, or no result)."""
    spec = tool.fallback
    kind = "timeout" if failed.status == TC.TIMEOUT else "error"
    if spec is None or kind not in spec.on:
        return None
    since = timezone.now() - dt.timedelta(seconds=spec.max_age_seconds)
    want = _key(tool, tool_input)
    recent = (
        ToolCall.objects.filter(
            name=tool.name,
            status=TC.OK,
            settled=True,
            run__workflow_name=workflow.name,
            finished_at__gte=since,
        )
        .order_by("-finished_at")
        .only("pk", "run_id", "input", "output", "finished_at")[:CANDIDATES]
    )
    for tc in recent:
        try:
            output = require_readable(tc.output, "a cached result")
            earlier_input = require_readable(tc.input, "a cached result's input")
        except PayloadKeyError:
            continue  # purged, or under a key no longer held: not a result to give
        if (
            not isinstance(output, dict)
            or is_fallback(output)
            or _key(tool, earlier_input or {}) != want
        ):
            continue
        return {
            **output,
            MARKER: {
                "kind": CACHED,
                "tool": tool.name,
                "cached_at": tc.finished_at.isoformat(),
                "source_run": str(tc.run_id),
                "source_tool_call": tc.pk,
                "reason": f"the live call failed ({failed.status}): {failed.error}"[:300],
            },
        }
    return None


def record_fallback(run: Run, tc: ToolCall, output: JSON) -> None:
    audit.record(
        "tool.fallback",
        run=run,
        evidence_of=[tc],
        payload={
            "tool_use_id": tc.tool_use_id,
            "name": tc.name,
            "attempt": tc.attempt,
            "cached_at": output[MARKER]["cached_at"],
            "source_tool_call": output[MARKER]["source_tool_call"],
        },
    )


# --- a narrower retry after a timeout ----------------------------------------------------


def narrower_input(tool: Tool, tool_input: JSON) -> JSON | None:
    """The input to retry with after a timeout (None: the tool declares none, or cannot narrow)."""
    if tool.narrow_on_timeout is None:
        return None
    narrower = tool.narrow_on_timeout(tool_input)
    return narrower if narrower and narrower != tool_input else None


def narrowed_so_far(run: Run, tool_use_id: str, tool_input: JSON) -> JSON | None:
    """After a worker died mid-call: the narrower input an earlier attempt already used."""
    latest = (
        ToolCall.objects.filter(run=run, tool_use_id=tool_use_id)
        .order_by("-attempt")
        .only("input")
        .first()
    )
    if latest is None or latest.input in (None, tool_input):
        return None
    return latest.input


@transaction.atomic
def record_narrowing(run: Run, tc: ToolCall, narrower: JSON) -> None:
    audit.record(
        "tool.narrowed",
        run=run,
        evidence_of=[tc],
        payload={
            "tool_use_id": tc.tool_use_id,
            "name": tc.name,
            "after_attempt": tc.attempt,
            "retry_input": narrower,
        },
    )


# --- rules that changed ------------------------------------------------------------------


def _stale(workflow: Workflow, record: Record, applies: Any) -> str | None:
    for rerun in workflow.reruns:
        if not applies(rerun):
            continue
        latest = record.latest(rerun.tool)
        if latest is None:
            continue  # never ran: the tool's own preconditions say what is missing
        ran, now = str(latest.get(rerun.field)), str(rerun.current())
        if ran != now:
            return (
                f"the rules changed since {rerun.tool} ran (version {ran}, now {now}): "
                f"re-run {rerun.tool} under the rules in force"
            )
    return None


def rerun_refusal(
    workflow: Workflow, tool_name: str, record: Record
) -> tuple[str, str, bool] | None:
    """Why ``tool_name`` may not run now because a validation it relies on is out of date:
    (precondition name, reason, needs sign-off) as tool_execution.refusal returns, or None."""
    reason = _stale(workflow, record, lambda rerun: tool_name in rerun.before)
    return ("rules_changed", reason, False) if reason else None


def final_output_problems(workflow: Workflow, output: Any, record: Record) -> list[str]:
    """What the final answer must still do: list every fallback used (and only those), and
    rest on validations made under the rules in force."""
    problems = []
    if stale := _stale(workflow, record, lambda rerun: True):
        problems.append(stale)
    used = [(c.name, c.output[MARKER]["cached_at"]) for c in record.calls if is_fallback(c.output)]
    listed_raw = output.get("fallbacks") if isinstance(output, dict) else None
    listed = [(f.get("tool"), f.get("cached_at")) for f in listed_raw or [] if isinstance(f, dict)]
    for tool, cached_at in used:
        if (tool, cached_at) not in listed:
            problems.append(
                f"{tool} was answered with its last cached result (cached at {cached_at}): "
                f"say so in the answer, under fallbacks, with that tool and cached_at"
            )
    for tool, cached_at in listed:
        if (tool, cached_at) not in used:
            problems.append(
                f"fallbacks lists {tool} cached at {cached_at}, but no such fallback was used"
            )
    return problems
