"""Executing the tools a model turn asked for, with every rule enforced in code.

For each tool_use of the turn (the uses of one turn run in parallel):

1. an unknown name is recorded as ``unknown_tool`` and answered with is_error; a second
   unknown name in the same run escalates;
2. the input is validated against the tool's input schema; malformed input is
   ``rejected`` and answered with the error so the model can fix it, until the tool's
   attempts are used up;
3. the tool's guards run (e.g. "no payments action during an open compliance review"); a
   refusal escalates;
4. the input's ``x-from-tool`` fields and the tool's preconditions are checked against the
   run's recorded state (e.g. "a passing validator verdict for this payment id"); a refusal is
   ``rejected`` and its reason sent back to the model, until the tool's attempts are used up;
   a precondition only a human can lift (``sign_off``) escalates at once for sign-off;
5. the handler runs in its own thread with the tool's timeout, retried with exponential
   backoff and jitter up to the tool's max attempts; its output is cut to the schema,
   validated, then checked by the semantic validators; an invalid output is retried
   once, then escalates;
6. an accepted output is checked against the workflow's escalation rules.

Every attempt is a ToolCall row written before the handler runs, so an attempt cut short
by a dead worker is visible and repeated with the same idempotency key.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Max
from django.utils import timezone

from ops import tracing
from orchestration import audit, fallbacks, lifecycle, limits
from orchestration.hostile_output import tool_input_problems, tool_output_problems
from orchestration.models import ModelCall, Run, ToolCall
from orchestration.privacy import require_readable
from orchestration.record import recorded_state
from orchestration.storable import bounded
from orchestration.untrusted import printable
from orchestration.validation import cut_to_schema, schema_errors, stripped_paths, unsourced_values
from orchestration.workflows.declaration import Record, RecordedCall, Tool, ToolContext, Workflow
from reviews.models import EscalationTicket

logger = logging.getLogger(__name__)
R = EscalationTicket.Reason
TC = ToolCall.Status

# A tool's own output is allowed one re-try when it fails validation, then it escalates.
INVALID_OUTPUT_TRIES = 2

# Tools the engine settles itself instead of running a handler, by the tool's class, once its
# input passed the checks every tool gets (schema, guards, preconditions): orchestration.subagents
# registers the handoff. A settler is called as settler(run, workflow, model_call, tool,
# tool_use, ctx, new_attempt, finish) and returns what _settle returns, or a value the engine
# knows (subagents.Waiting).
ENGINE_SETTLED: dict[type, Callable[..., Any]] = {}


@dataclass
class Escalation:
    reason: str
    message: str
    tool_call: ToolCall | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Known:
    """What the engine already knows when it settles the tool_uses of an answer it recorded in
    this same task, so settling them reads nothing it has: no attempt of them exists yet, when
    the round of attempts began (``round_start``), and the accepted calls (``recorded_state``;
    kept up to date as calls are accepted). ``settled`` collects the settled attempts, which
    answer the model's next turn (``tool_result_blocks``)."""

    since: Any
    record: Record
    settled: dict[str, ToolCall] = field(default_factory=dict)


class ToolTimeout(Exception):
    pass


def refusal(
    tool: Tool, tool_input: dict[str, Any], ctx: ToolContext
) -> tuple[str, str, bool] | None:
    """The first reason the call may not run now: (precondition name, reason, needs sign-off),
    or None. Provenance of the input first, then the preconditions in declared order; a
    sign-off precondition is lifted by a reviewer's approval of this very tool_use."""
    if unsourced := unsourced_values(tool_input, tool.input_schema, ctx.record):
        return "x-from-tool", "; ".join(str(u) for u in unsourced), False
    for pre in tool.preconditions:
        if pre.sign_off and ctx.tool_use_id in ctx.record.signed_off:
            continue
        if reason := pre.check(tool_input, ctx):
            return pre.name, reason, pre.sign_off
    return None


def round_start(run: Run) -> Any:
    """When the current round of attempts began: a reviewer's resolution starts a fresh one."""
    return run.tickets.filter(status=EscalationTicket.Status.RESOLVED).aggregate(
        t=Max("resolved_at")
    )["t"]


def in_round(qs: Any, since: Any) -> Any:
    return qs.filter(created_at__gt=since) if since else qs


def backoff_seconds(attempt: int, base: float, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter: never retry immediately, never in lockstep."""
    return random.uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))


def _call_with_timeout(tool: Tool, tool_input: dict, ctx: ToolContext, timeout: float) -> Any:
    """Run the handler in a daemon thread; give up waiting after ``timeout`` seconds.

    A timed-out handler cannot be killed; it may still finish later, which is why side
    effects are keyed by the tool_use_id (ctx.idempotency_key) and applied once.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = tool.handler(tool_input, ctx)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            box["error"] = exc
        finally:
            connections.close_all()  # this thread's connections only

    # The context copy carries the run and step ids (and the trace) into the handler's log lines.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(target,), name=f"tool-{tool.name}", daemon=True
    )
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ToolTimeout(f"{tool.name} did not answer within {timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _finish(known: Known | None, tc: ToolCall, **fields: Any) -> ToolCall:
    for name, value in fields.items():
        setattr(tc, name, value)
    tc.finished_at = timezone.now()
    tc.latency_ms = int((tc.finished_at - tc.created_at).total_seconds() * 1000)
    # Only what changed: the attempt's other fields were saved when it was created, and its
    # input (encrypted) need not be serialised and encrypted again.
    tc.save(update_fields=[*fields, "finished_at", "latency_ms"])
    if known is not None and tc.settled:
        known.settled[tc.tool_use_id] = tc
    return tc


def _settle_attempt(
    run: Run,
    known: Known | None,
    tc: ToolCall,
    kind: str,
    payload: dict[str, Any],
    **fields: Any,
) -> ToolCall:
    """Finish the attempt (inserting it first when nothing was executed: a refusal, a
    rejection) and append its audit event, in one transaction: a crash between the two would
    leave an attempt the audit trail does not show."""
    with transaction.atomic():
        if tc.pk is None:
            tc.save(force_insert=True)
        _finish(known, tc, **fields)
        audit.record(
            kind,
            run=run,
            evidence_of=[tc],
            payload={"tool_use_id": tc.tool_use_id, "name": tc.name, **payload},
        )
    return tc


def settle_tool_use(
    run: Run,
    workflow: Workflow,
    model_call: ModelCall,
    tool_use: dict[str, Any],
    known: Known | None = None,
) -> Escalation | None:
    """Execute one tool_use until it is settled (the model has its answer) or escalates."""
    try:
        return _settle(run, workflow, model_call, tool_use, known)
    finally:
        if threading.current_thread() is not threading.main_thread():
            connections.close_all()


def _settle(
    run: Run,
    workflow: Workflow,
    model_call: ModelCall,
    tool_use: dict[str, Any],
    known: Known | None,
) -> Escalation | None:
    tool_use_id, name = tool_use["id"], tool_use["name"]
    tool_input = tool_use.get("input") or {}
    constraints = workflow.constraints
    if known is not None:  # a tool_use of an answer recorded in this task: no attempt yet
        attempts = round_attempts = 0
        since = known.since
    else:
        # Any attempt still marked running was cut short by a dead worker: this step holds
        # the run's lease, so nothing else is executing it.
        ToolCall.objects.filter(run=run, tool_use_id=tool_use_id, status=TC.RUNNING).update(
            status=TC.ERROR,
            error="interrupted: the worker stopped before the attempt finished",
            finished_at=timezone.now(),
        )
        attempts = ToolCall.objects.filter(run=run, tool_use_id=tool_use_id).count()
        since = round_start(run)
        round_attempts = in_round(
            ToolCall.objects.filter(run=run, tool_use_id=tool_use_id), since
        ).count()

    def attempt_row(**fields: Any) -> ToolCall:
        return ToolCall(
            run=run,
            model_call=model_call,
            tool_use_id=tool_use_id,
            name=name,
            attempt=attempts + 1,
            input=tool_input,
            **fields,
        )

    def new_attempt(**fields: Any) -> ToolCall:
        tc = attempt_row(**fields)
        tc.save(force_insert=True)
        return tc

    tool = workflow.tool(name)
    if tool is None:
        available = ", ".join(t.name for t in workflow.tools)
        tc = _settle_attempt(
            run,
            known,
            attempt_row(
                status=TC.UNKNOWN_TOOL,
                settled=True,
                error=f"Unknown tool {name!r}. Available tools: {available}.",
            ),
            "tool.unknown",
            {},
        )
        earlier = ToolCall.objects.filter(run=run, status=TC.UNKNOWN_TOOL).exclude(pk=tc.pk).count()
        if earlier:
            return Escalation(
                R.UNKNOWN_TOOL, f"The model called unknown tools twice (latest: {name!r}).", tc
            )
        return None

    # NUL, surrogates, depth, NaN/1e400, 64-bit integers first (orchestration.hostile_output):
    # the schema check could not even describe some of them.
    if tool_input_errors := tool_input_problems(tool_input) or schema_errors(
        tool_input, tool.input_schema
    ):
        tc = _settle_attempt(
            run,
            known,
            attempt_row(
                status=TC.REJECTED,
                settled=True,
                tool_version=tool.version,
                validation_errors=tool_input_errors,
                error="The tool input does not match its schema: " + "; ".join(tool_input_errors),
            ),
            "tool.rejected",
            {"errors": tool_input_errors},
        )
        rejected = in_round(
            ToolCall.objects.filter(run=run, name=name, status=TC.REJECTED), since
        ).count()
        if rejected >= limits.attempts_for(tool, constraints):
            return Escalation(
                R.RETRIES_EXHAUSTED, f"{name} was called with invalid input {rejected} times.", tc
            )
        return None

    record = known.record if known is not None else recorded_state(run)
    ctx = ToolContext(
        run_id=str(run.pk),
        tool_use_id=tool_use_id,
        run_input=run.input,
        tool_input=tool_input,
        outputs={c.name: c.output for c in record.calls},
        record=record,
    )
    for earlier_name, earlier_output in ctx.outputs.items():  # what guards and validators read
        require_readable(earlier_output, f"The accepted output of {earlier_name}")
    for guard in tool.guards:
        if refused := guard(ctx):
            tc = _settle_attempt(
                run,
                known,
                attempt_row(
                    status=TC.REJECTED,
                    settled=True,
                    tool_version=tool.version,
                    error=f"Refused by the engine: {refused}",
                ),
                "tool.refused",
                {"reason": refused},
            )
            return Escalation(R.VALIDATION_FAILED, f"{name} refused: {refused}", tc)

    refused_by = fallbacks.rerun_refusal(workflow, name, ctx.record) or refusal(
        tool, tool_input, ctx
    )
    if refused_by is not None:
        precondition, reason, sign_off = refused_by
        tc = _settle_attempt(
            run,
            known,
            attempt_row(
                status=TC.REJECTED,
                settled=True,
                tool_version=tool.version,
                error=f"Refused by the engine ({precondition}): {reason.rstrip('.')}."
                + (
                    " A reviewer must sign this call off." if sign_off else " Nothing was executed."
                ),
            ),
            "tool.refused",
            {
                "attempt": attempts + 1,
                "precondition": precondition,
                "reason": reason,
                "sign_off": sign_off,
            },
        )
        if sign_off:
            return Escalation(
                R.REGULATORY_TRIGGER,
                f"Sign-off required before {name} runs: {reason}",
                tc,
                {
                    "sign_off": True,
                    "precondition": precondition,
                    "proposed_call": {"tool": name, "input": tool_input},
                },
            )
        rejected = in_round(
            ToolCall.objects.filter(run=run, name=name, status=TC.REJECTED), since
        ).count()
        if rejected >= limits.attempts_for(tool, constraints):
            return Escalation(
                R.VALIDATION_FAILED,
                f"{name} was refused {rejected} times; last ({precondition}): {reason}",
                tc,
                {"precondition": precondition, "reason": reason},
            )
        return None

    if (settler := ENGINE_SETTLED.get(type(tool))) is not None:
        return settler(
            run,
            workflow,
            model_call,
            tool,
            tool_use,
            ctx,
            new_attempt,
            lambda tc, **f: _finish(known, tc, **f),
        )

    invalid = 0
    last: ToolCall | None = None
    # A timed-out call is retried once with the narrower input the tool declares (fallbacks).
    narrowed = fallbacks.narrowed_so_far(run, tool_use_id, tool_input) if attempts else None
    if narrowed is not None:
        tool_input, ctx = narrowed, ToolContext(**{**ctx.__dict__, "tool_input": narrowed})
    while round_attempts < limits.attempts_for(tool, constraints):
        if last is not None:
            time.sleep(backoff_seconds(round_attempts, settings.TOOL_BACKOFF_BASE_SECONDS))
        budget = limits.tool_timeout(tool, constraints)  # the step's latency budget may cut it
        if budget.by_step and budget.seconds <= 0:
            if not lifecycle.still_running(run.pk):
                return None
            return Escalation(R.LATENCY_LIMIT, limits.step_limit_message(name, budget), last)
        # The attempt's row, committed before its handler runs, only while the run is still
        # running: a run cancelled meanwhile starts no side effect (run_actions.cancel).
        tc = attempt_row(status=TC.RUNNING, tool_version=tool.version)
        if not lifecycle.insert_if_running(tc, run.pk):
            return None
        attempts += 1
        round_attempts += 1
        last = tc
        try:
            with tracing.span(
                "countersign.tool_call",
                run_id=str(run.pk),
                tool=name,
                attempt=tc.attempt,
                tool_use_id=tool_use_id,
            ):
                raw = _call_with_timeout(tool, tool_input, ctx, budget.seconds)
        except (
            ToolTimeout,
            TimeoutError,
        ) as exc:  # our wait, or the tool's own (a statement timeout)
            _settle_attempt(
                run,
                known,
                tc,
                "tool.failed",
                {"attempt": tc.attempt, "error": str(exc)},
                status=TC.TIMEOUT,
                error=printable(exc),
            )
            if budget.by_step and isinstance(exc, ToolTimeout):
                return Escalation(R.LATENCY_LIMIT, limits.step_limit_message(name, budget), tc)
            if (
                narrowed is None
                and (narrower := fallbacks.narrower_input(tool, tool_input)) is not None
            ):
                fallbacks.record_narrowing(run, tc, narrower)
                narrowed = tool_input = narrower
                ctx = ToolContext(**{**ctx.__dict__, "tool_input": narrower})
            continue
        except Exception as exc:  # noqa: BLE001 - any tool failure is recorded and retried
            _settle_attempt(
                run,
                known,
                tc,
                "tool.failed",
                {"attempt": tc.attempt, "error": str(exc)},
                status=TC.ERROR,
                error=f"{type(exc).__name__}: {printable(exc)}",
            )
            continue

        hostile = tool_output_problems(raw)  # on the value as returned, then recorded exactly:
        raw = bounded(raw)  # a part nested too deep kept as its JSON text, a huge int as hex
        output = cut_to_schema(raw, tool.output_schema)
        problems = hostile or schema_errors(output, tool.output_schema)
        if not problems:
            problems = [p for v in tool.validators for p in v(output, ctx)]
        if problems:
            invalid += 1
            _settle_attempt(
                run,
                known,
                tc,
                "tool.invalid_output",
                {"attempt": tc.attempt, "errors": problems},
                status=TC.INVALID_OUTPUT,
                raw_output=raw,
                output=output,
                validation_errors=problems,
                error="The tool output failed validation.",
            )
            if invalid >= INVALID_OUTPUT_TRIES:
                return Escalation(
                    R.VALIDATION_FAILED,
                    f"{name} output failed validation after a retry: {problems[0]}",
                    tc,
                    {"errors": problems},
                )
            continue

        _settle_attempt(
            run,
            known,
            tc,
            "tool.called",
            {
                "version": tool.version,
                "attempt": tc.attempt,
                "stripped": stripped_paths(raw, tool.output_schema),
            },
            status=TC.OK,
            settled=True,
            raw_output=raw,
            output=output,
        )
        return _accepted(workflow, known, ctx, tc, output)

    if last is None:  # the round's attempts were used before a worker crash
        last = (
            ToolCall.objects.filter(run=run, tool_use_id=tool_use_id).order_by("-attempt").first()
        )
    if (
        last is not None
        and (cached := fallbacks.cached_result(run, workflow, tool, tool_input, last)) is not None
    ):
        # The declared fallback: the last cached result, marked, instead of an escalation.
        with transaction.atomic():
            tc = _finish(
                known,
                new_attempt(status=TC.OK, settled=True, tool_version=tool.version, output=cached),
            )
            fallbacks.record_fallback(run, tc, cached)
        return _accepted(workflow, known, ctx, tc, cached)
    return Escalation(
        R.RETRIES_EXHAUSTED,
        f"{name} failed {round_attempts} times (last: {last.error or last.status}).",
        last,
    )


def _accepted(
    workflow: Workflow, known: Known | None, ctx: ToolContext, tc: ToolCall, output: dict[str, Any]
) -> Escalation | None:
    """An accepted output joins the record; the workflow's escalation rules read it."""
    if known is not None:
        known.record = Record(
            calls=(*known.record.calls, RecordedCall(tc.name, tc.tool_use_id, tc.input, output)),
            signed_off=known.record.signed_off,
        )
    ctx_after = ToolContext(**{**ctx.__dict__, "outputs": {**ctx.outputs, tc.name: output}})
    for rule in workflow.escalation_rules:
        if rule.tool == tc.name and rule.when(output, ctx_after):
            return Escalation(rule.reason, rule.message, tc)
    return None


def settle_turn(
    run: Run,
    workflow: Workflow,
    model_call: ModelCall,
    tool_uses: list[dict],
    known: Known | None = None,
) -> Escalation | None:
    """Run the turn's tool_uses in parallel; return the first escalation in turn order."""
    if len(tool_uses) == 1:
        return settle_tool_use(run, workflow, model_call, tool_uses[0], known)
    with ThreadPoolExecutor(
        max_workers=min(8, len(tool_uses)), thread_name_prefix="tool-use"
    ) as pool:
        contexts = [
            contextvars.copy_context() for _ in tool_uses
        ]  # one each: a context runs in one thread at a time
        outcomes = list(
            pool.map(
                lambda tu, ctx: ctx.run(settle_tool_use, run, workflow, model_call, tu, known),
                tool_uses,
                contexts,
            )
        )
    if known is not None:  # accepted in parallel: their order is the database's (created_at)
        known.record = recorded_state(run)
    # An escalation first: a use still waiting (a sub-agent's run) must not hide it.
    return next((o for o in outcomes if isinstance(o, Escalation)), None) or next(
        (o for o in outcomes if o is not None), None
    )


def tool_result_blocks(
    run: Run, tool_uses: list[dict], known: Known | None = None
) -> list[dict[str, Any]]:
    """The tool_result blocks answering a turn, from the settled attempts, in order."""
    ids = [t["id"] for t in tool_uses]
    if known is not None and all(i in known.settled for i in ids):
        settled = {i: known.settled[i] for i in ids}
    else:
        settled = {
            tc.tool_use_id: tc
            for tc in ToolCall.objects.filter(run=run, settled=True, tool_use_id__in=ids)
        }
    blocks = []
    for tu in tool_uses:
        tc = settled[tu["id"]]
        if tc.is_error_result:
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": tu["id"],
                    "is_error": True,
                    "content": tc.error,
                }
            )
        else:
            output = require_readable(tc.output, f"The output of {tc.name} ({tu['id']})")
            blocks.append(
                {"type": "tool_result", "tool_use_id": tu["id"], "content": json.dumps(output)}
            )
    return blocks
