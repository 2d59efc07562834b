"""What a run may spend: its ceiling, the reservation every model request takes before it
leaves, and the charge that settles it. The one owner of the mid-run spend rule.

The ceiling is stored on the run (``Run.ceiling_usd``, ``Run.ceiling_tokens``) when the run
is created: the approved estimate plus APPROVAL_OVERRUN_FRACTION for a run that needed a
manager's approval (the approval request carries that same estimate), the approval
threshold for one that did not, and never more than the workflow's own ``max_cost_usd``;
the token ceiling is the workflow's ``max_tokens_per_run``. Only a manager who did not
request the run raises it (``raise_ceiling``); nothing else changes it, resuming included.

Every model request, on every path (the tool-use loop, batch submission, the fan-out
orchestrator, specialists and validators, their retries, and whatever a resume, retry or
correction leads to), goes through this protocol:

1. ``reserve``: before the request leaves, its worst case (``worst_case``: an upper bound
   of its input tokens at the highest input rate it can be billed, plus ``max_tokens`` at
   the output price) is added to ``Run.reserved_usd`` / ``reserved_tokens`` by ONE
   conditional UPDATE: ``... WHERE status = 'running' AND cost_usd + reserved_usd + worst
   <= ceiling_usd AND tokens + reserved_tokens + worst_tokens <= ceiling_tokens``. Postgres
   re-checks the WHERE on the latest row version when two such UPDATEs race, so with any
   number of calls in flight the sum of what was spent and what is reserved never passes
   the ceiling. The ModelCall row is inserted holding its reservation in the same
   transaction. A request that does not fit raises ``DoesNotFit`` and is not sent; the
   caller pauses the run with a ``budget_exceeded`` ticket.
2. ``charge``: when the answer is recorded, the call's reservation (read from its row,
   under lock) is released and its real cost added, in one UPDATE.
3. ``release``: a call that failed with no usage gives its reservation back.
4. ``release_interrupted``: a call left pending by a dead worker is marked interrupted and
   its reservation given back by the next step of its run or job (or, for a run nobody
   steps again, by the reaper once no call can still be in flight:
   ``release_stale_reservations``). Cost is only ever accounted from answers received.

Sub-agent runs (orchestration.subagents) share their ancestors' ceilings: a child's
reservation is also held on every ancestor (``children_reserved_*``, by the same kind of
conditional UPDATE, child row first), its charge is added to every ancestor's
``children_cost_usd`` / ``children_tokens``, and a run's own calls must fit under its ceiling
with its children's spend counted. So the whole tree never spends past the top run's ceiling,
and a child pauses (``budget_exceeded``) when its call would pass an ancestor's.

``spend_breach`` is the spend check run on every answer before any other check
(ambiguity, validation...): it names the ceiling the run is over, which can only happen if
a real answer cost more than its worst case was bounded at.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from costs.pricing import MILLION, Usage, cost_of, price_for
from orchestration import audit
from orchestration.models import ModelCall, Run
from orchestration.untrusted import Rejected, check_text, whole_number

ZERO = Decimal("0")
# Added to every request's size bound: the hidden prompt the real API adds when tools are
# declared (a few hundred tokens) and the role markers of each message. The simulator's
# fixed overheads (simulator/tokens.py) are all covered by it.
REQUEST_ALLOWANCE_TOKENS = 1024
# Per image block: the simulator's flat price and the API's cap for one image.
IMAGE_TOKENS = 1600
# Reservations are kept to 12 decimal places (the column's), rounded up so a stored
# reservation is never less than the bound it stands for.
_PLACES = Decimal("1e-12")


@dataclass(frozen=True)
class Charge:
    """A priced call and its run's totals just after it was added."""

    cost: Decimal
    usage: Usage
    run: Run


@dataclass(frozen=True)
class WorstCase:
    """The most one request can cost: its size bound in and ``max_tokens`` out."""

    usd: Decimal
    input_tokens: int
    output_tokens: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_json(self) -> dict[str, str | int]:
        return {
            "needed_usd": str(self.usd),
            "needed_tokens": self.tokens,
            "input_tokens_bound": self.input_tokens,
            "max_tokens": self.output_tokens,
        }


class DoesNotFit(Exception):
    """The request was not sent: it does not fit under the run's ceiling, or the run is not
    running. ``running`` says which (a running run must be paused for a manager)."""

    def __init__(self, message: str, *, worst: WorstCase, running: bool) -> None:
        super().__init__(message)
        self.worst = worst
        self.running = running

    @property
    def details(self) -> dict[str, Any]:
        return self.worst.as_json()


class CeilingError(Exception):
    """A ceiling raise was refused; the message says why. Nothing changed.

    ``code``: ``invalid_input`` (``field`` names the amount that was wrong), ``forbidden``
    (not a manager, or the requester) or ``conflict`` (the run is finished)."""

    def __init__(self, message: str, code: str = "invalid_input", field: str = "add_usd") -> None:
        super().__init__(message)
        self.code = code
        self.field = field


def approval_threshold(workflow: Any) -> Decimal:
    """The estimate above which a run of ``workflow`` needs a manager (per workflow, else settings)."""
    if workflow.approval_threshold_usd is not None:
        return Decimal(workflow.approval_threshold_usd)
    return Decimal(settings.APPROVAL_THRESHOLD_USD)


# --- the ceiling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ceiling:
    usd: Decimal
    tokens: int
    basis: str


def initial_ceiling(workflow: Any, estimate_usd: Decimal, *, needs_approval: bool) -> Ceiling:
    """The ceiling a new run gets: the lowest of its approved estimate plus the overrun (or the
    approval threshold when it needs no approval) and the workflow's own maximum."""
    maximum = Decimal(workflow.constraints.max_cost_usd)
    if needs_approval:
        overrun = Decimal(str(settings.APPROVAL_OVERRUN_FRACTION))
        usd = estimate_usd * (1 + overrun)
        basis = f"its approved estimate of ${estimate_usd:.2f} plus {overrun:.0%}"
    else:
        usd = approval_threshold(workflow)
        basis = f"the ${usd:.2f} approval threshold (it needed no approval)"
    if maximum < usd:
        usd, basis = maximum, f"the workflow's maximum of ${maximum:.2f}"
    return Ceiling(
        usd=usd.quantize(_PLACES, rounding=ROUND_CEILING),
        tokens=workflow.constraints.max_tokens_per_run,
        basis=basis,
    )


def subagent_ceiling(workflow: Any) -> Ceiling:
    """A sub-agent run's own ceiling: its workflow's maximum (its parent's ceiling applies too,
    to every call it makes)."""
    maximum = Decimal(workflow.constraints.max_cost_usd)
    return Ceiling(
        usd=maximum.quantize(_PLACES, rounding=ROUND_CEILING),
        tokens=workflow.constraints.max_tokens_per_run,
        basis=f"the sub-agent's maximum of ${maximum:.2f}; its parent run's ceiling also applies",
    )


# --- the worst case of one request ---------------------------------------------------------


def _blocks(params: dict[str, Any]) -> list[Any]:
    blocks: list[Any] = list(params.get("tools") or [])
    system = params.get("system")
    blocks += system if isinstance(system, list) else []
    for message in params.get("messages") or []:
        content = message.get("content")
        blocks += content if isinstance(content, list) else []
    return blocks


def input_token_bound(params: dict[str, Any]) -> int:
    """An upper bound of the request's input tokens, without asking the API.

    The UTF-8 size of the request's system prompt, tools and messages as compact JSON: a
    token stands for at least one byte of what the model reads, so the bytes bound the
    tokens of every text, and the JSON punctuation around each block is more than the
    simulator's per-block overheads; plus REQUEST_ALLOWANCE_TOKENS and IMAGE_TOKENS per
    image. It is about four times what the simulator (and the real API, for English and
    JSON) counts: calling count_tokens before every request would be exact but costs a
    round trip and a rate-limited call per request, and a count_tokens failure would need
    its own handling. See docs/architecture.md, "Spend ceiling".
    """
    body = {key: params.get(key) for key in ("system", "tools", "messages")}
    size = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    images = sum(1 for b in _blocks(params) if isinstance(b, dict) and b.get("type") == "image")
    return size + REQUEST_ALLOWANCE_TOKENS + images * IMAGE_TOKENS


def _cache_ttls(params: dict[str, Any]) -> set[str]:
    ttls = set()
    for block in _blocks(params):
        control = block.get("cache_control") if isinstance(block, dict) else None
        if control:
            ttls.add(control.get("ttl") or "5m")
    return ttls


def worst_case(params: dict[str, Any], *, batch: bool = False) -> WorstCase:
    """The most the request in ``params`` (the Messages API arguments) can be billed.

    Every input token at the highest input rate the request can incur (a cache write when it
    carries cache_control, else plain input), and ``max_tokens`` at the output price, priced
    with the price in force now (the one the call will be charged at), batch discount
    included for a Message Batches request.
    """
    price = price_for(params["model"])
    ttls = _cache_ttls(params)
    rate = price.input_per_mtok
    if ttls:
        rate = max(rate, price.cache_write_5m_per_mtok)
    if "1h" in ttls:
        rate = max(rate, price.cache_write_1h_per_mtok)
    tokens_in, tokens_out = input_token_bound(params), int(params["max_tokens"])
    usd = (tokens_in * rate + tokens_out * price.output_per_mtok) / MILLION
    if batch:
        usd *= Decimal(1) - price.batch_discount
    return WorstCase(
        usd=usd.quantize(_PLACES, rounding=ROUND_CEILING),
        input_tokens=tokens_in,
        output_tokens=tokens_out,
    )


# --- reserve, charge, release --------------------------------------------------------------


# The ceiling condition of a run whose sub-agents' spend and holds count against it, for a
# request whose worst case is (usd, tokens): plain SQL, as it runs before every model call (the
# ORM built nine F() expressions each time). A run without a ceiling fits nothing (NULL).
_TREE_FITS = """
    ceiling_usd >= cost_usd + reserved_usd + children_cost_usd + children_reserved_usd + %s
    AND ceiling_tokens >= input_tokens + cache_write_tokens + cache_read_tokens + output_tokens
        + reserved_tokens + children_tokens + children_reserved_tokens + %s
"""
_RESERVE = """
    UPDATE {table} SET reserved_usd = reserved_usd + %s, reserved_tokens = reserved_tokens + %s
    WHERE id = %s AND status = %s AND {fits}
"""
_HOLD_ON_ANCESTOR = """
    UPDATE {table} SET children_reserved_usd = children_reserved_usd + %s,
        children_reserved_tokens = children_reserved_tokens + %s
    WHERE id = %s AND {fits}
"""


def _hold(sql: str, worst: WorstCase, run_id: Any, *where: Any) -> bool:
    """Add the worst case to the run's holds if it fits (``sql``: _RESERVE or _HOLD_ON_ANCESTOR;
    concurrent holds queue on the row and each sees the others' amounts when Postgres re-checks
    the WHERE clause)."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.format(table=Run._meta.db_table, fits=_TREE_FITS),
            [worst.usd, worst.tokens, run_id, *where, worst.usd, worst.tokens],
        )
        return cursor.rowcount == 1


def ancestors(parent_id: Any) -> list[Any]:
    """The ids of a run's parent, grandparent... nearest first (none for a top-level run)."""
    chain: list[Any] = []
    while parent_id is not None and parent_id not in chain:
        chain.append(parent_id)
        parent_id = Run.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return chain


def _parent_of(mc: ModelCall) -> Any:
    run = mc._state.fields_cache.get("run")
    if run is not None:
        return run.parent_id
    return Run.objects.filter(pk=mc.run_id).values_list("parent_id", flat=True).first()


def reserve(mc: ModelCall, params: dict[str, Any], *, batch: bool = False) -> WorstCase:
    """Hold the request's worst case against its run's ceiling, then save ``mc`` (unsaved,
    still pending) with its reservation; raises DoesNotFit, saving nothing, when it does not
    fit or the run is not running. The request must not be sent otherwise."""
    worst = worst_case(params, batch=batch)
    with transaction.atomic():
        # One conditional UPDATE: concurrent reservations queue on the row and each sees
        # the others' amounts when Postgres re-checks the WHERE clause.
        if not _hold(_RESERVE, worst, mc.run_id, Run.Status.RUNNING):
            run = Run.objects.get(pk=mc.run_id)
            raise DoesNotFit(
                _refusal(run, worst), worst=worst, running=run.status == Run.Status.RUNNING
            )
        # A sub-agent's call is held on every ancestor too (raising rolls back the holds above).
        for ancestor in ancestors(_parent_of(mc)):
            if not _hold(_HOLD_ON_ANCESTOR, worst, ancestor):
                raise DoesNotFit(
                    _ancestor_refusal(Run.objects.get(pk=ancestor), worst),
                    worst=worst,
                    running=True,
                )
        mc.reserved_usd, mc.reserved_tokens = worst.usd, worst.tokens
        mc.save()
    return worst


def _refusal(run: Run, worst: WorstCase) -> str:
    if run.status != Run.Status.RUNNING:
        return f"The run is {run.status}: no model call may leave until it runs again."
    if run.ceiling_usd is None or run.ceiling_tokens is None:
        return "The run has no spend ceiling, so it may not spend anything. A manager must set one."
    tokens = run.total_input_tokens + run.output_tokens + run.children_tokens
    if (
        tokens + run.reserved_tokens + run.children_reserved_tokens + worst.tokens
        > run.ceiling_tokens
    ):
        return (
            f"The next model call could use up to {worst.tokens:,} tokens; the run has used {tokens:,} "
            f"and calls in flight hold {run.reserved_tokens + run.children_reserved_tokens:,}, so it would pass its ceiling of "
            f"{run.ceiling_tokens:,} tokens. A manager who did not start the run must raise the ceiling "
            "before it can go on."
        )
    children = (
        f" (its sub-agents ${run.children_cost_usd:.4f} of it)" if run.children_cost_usd else ""
    )
    return (
        f"The next model call could cost up to ${worst.usd:.4f}; the run has spent "
        f"${run.tree_cost_usd:.4f}{children} and calls in flight hold "
        f"${run.reserved_usd + run.children_reserved_usd:.4f}, so it would pass its ceiling of "
        f"${run.ceiling_usd:.2f} ({run.ceiling_basis}). The call was not sent. A manager who did not "
        "start the run must raise the ceiling before it can go on."
    )


def _ancestor_refusal(ancestor: Run, worst: WorstCase) -> str:
    return (
        f"The next model call could cost up to ${worst.usd:.4f} ({worst.tokens:,} tokens), which would pass "
        f"the ceiling of parent run {ancestor.pk} (${ancestor.ceiling_usd or ZERO:.2f}, "
        f"{ancestor.ceiling_tokens or 0:,} tokens; it and its sub-agents have spent ${ancestor.tree_cost_usd:.4f}). "
        "A sub-agent never spends past its parent's ceiling: the call was not sent. A manager who did not "
        "start the parent run must raise the parent's ceiling before this run can go on."
    )


def _give_back(run_id: Any, usd: Decimal, tokens: int) -> None:
    if usd or tokens:
        Run.objects.filter(pk=run_id).update(
            reserved_usd=F("reserved_usd") - usd, reserved_tokens=F("reserved_tokens") - tokens
        )
        _settle_ancestors(run_id, held_usd=usd, held_tokens=tokens)


def _settle_ancestors(
    run_id: Any, *, held_usd: Decimal, held_tokens: int, cost: Decimal = ZERO, tokens: int = 0
) -> None:
    """A sub-agent's call settled: its hold comes off every ancestor and its cost goes on."""
    parent = Run.objects.filter(pk=run_id).values_list("parent_id", flat=True).first()
    for ancestor in ancestors(parent):
        Run.objects.filter(pk=ancestor).update(
            children_reserved_usd=F("children_reserved_usd") - held_usd,
            children_reserved_tokens=F("children_reserved_tokens") - held_tokens,
            children_cost_usd=F("children_cost_usd") + cost,
            children_tokens=F("children_tokens") + tokens,
        )


# The runs' row locks (FOR NO KEY UPDATE: Run.objects.locked()) and a call's reservation
# under its row lock, as plain SQL: they run on every model call.
_LOCK_RUNS = "SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"
_HELD = "SELECT reserved_usd, reserved_tokens FROM {table} WHERE id = %s FOR UPDATE"


def _lock_runs(run_ids: list[Any]) -> None:
    """Lock runs before their calls, in one order everywhere (reserve, charge, release), so
    a late answer and the step that gives up on it cannot deadlock."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_RUNS.format(table=Run._meta.db_table), [list(run_ids)])


def _take_reservation(mc: ModelCall, *, save: bool = True) -> tuple[Decimal, int]:
    """Zero the call's reservation (row locked) and return what it held; a reservation
    already given back (an interrupted call answered late) is not given back twice.
    ``save=False``: the caller saves ``mc`` (its zeroed reservation) in this transaction."""
    _lock_runs([mc.run_id])
    with connection.cursor() as cursor:
        # The call's row only (the model's default ordering would join the run, and FOR UPDATE
        # then lock the run's row too, in the mode that blocks rows referencing it).
        cursor.execute(_HELD.format(table=ModelCall._meta.db_table), [mc.pk])
        held = cursor.fetchone() or (ZERO, 0)
    if save:
        ModelCall.objects.filter(pk=mc.pk).update(reserved_usd=ZERO, reserved_tokens=0)
    mc.reserved_usd, mc.reserved_tokens = ZERO, 0
    return held


# What charge() sets on the call (and saves, with the fields its caller names).
CHARGED_FIELDS = (
    "usage",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_tokens",
    "price",
    "cost_usd",
    "is_batch",
    "reserved_usd",
    "reserved_tokens",
)


def charge(
    mc: ModelCall,
    usage_json: dict[str, Any],
    *,
    batch: bool = False,
    also_save: tuple[str, ...] | None = None,
) -> Charge:
    """Price ``mc`` from the usage the API reported, add it to its run and settle the call's
    reservation, in one UPDATE of the run.

    Sets and saves the call's token, price and cost fields, with the fields ``also_save``
    names (the rest of the response the caller set on the same object; None: every field).
    Must run inside the caller's transaction: the run row is locked until it commits, so
    concurrent charges (parallel specialists) add up exactly.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("costs.accounting.charge must be called inside transaction.atomic()")
    usage = Usage.from_api(usage_json)
    price = price_for(mc.model, at=mc.created_at)
    cost = cost_of(usage, price, batch=batch)
    held_usd, held_tokens = _take_reservation(mc, save=False)  # zeroed by mc.save() below
    mc.usage = usage_json
    mc.input_tokens = usage.input_tokens
    mc.output_tokens = usage.output_tokens
    mc.cache_write_5m_tokens = usage.cache_write_5m
    mc.cache_write_1h_tokens = usage.cache_write_1h
    mc.cache_read_tokens = usage.cache_read
    mc.price = price
    mc.cost_usd = cost
    mc.is_batch = batch
    mc.save(update_fields=None if also_save is None else (*CHARGED_FIELDS, *also_save))
    # One UPDATE ... RETURNING: the run's new totals come back with it.
    run = next(
        iter(
            Run.objects.raw(
                _CHARGE_SQL.format(table=Run._meta.db_table),
                [
                    cost,
                    held_usd,
                    held_tokens,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_write_5m + usage.cache_write_1h,
                    usage.cache_read,
                    mc.run_id,
                ],
            )
        )
    )
    if run.parent_id is not None:
        _settle_ancestors(
            run.pk,
            held_usd=held_usd,
            held_tokens=held_tokens,
            cost=cost,
            tokens=(
                usage.input_tokens
                + usage.output_tokens
                + usage.cache_write_5m
                + usage.cache_write_1h
                + usage.cache_read
            ),
        )
    return Charge(cost=cost, usage=usage, run=run)


_CHARGE_SQL = """
UPDATE {table} SET cost_usd = cost_usd + %s, reserved_usd = reserved_usd - %s,
    reserved_tokens = reserved_tokens - %s, input_tokens = input_tokens + %s,
    output_tokens = output_tokens + %s, cache_write_tokens = cache_write_tokens + %s,
    cache_read_tokens = cache_read_tokens + %s
WHERE id = %s RETURNING *
"""


def release(mc: ModelCall) -> None:
    """Give back the reservation of a call that failed with no usage (nothing was billed)."""
    with transaction.atomic():
        usd, tokens = _take_reservation(mc)
        _give_back(mc.run_id, usd, tokens)


INTERRUPTED = "interrupted: the worker stopped before the response was recorded"


def release_interrupted(calls: QuerySet[ModelCall], error: str = INTERRUPTED) -> int:
    """Mark the pending calls in ``calls`` as failed and give their reservations back.

    Called by the step (or job) that takes over from a dead worker, before it calls again.
    Without an answer there is no usage to account; see the module docstring."""
    now = timezone.now()
    with transaction.atomic():
        _lock_runs(
            list(
                calls.filter(status=ModelCall.Status.PENDING)
                .values_list("run_id", flat=True)
                .distinct()
            )
        )
        rows = list(
            calls.filter(status=ModelCall.Status.PENDING)
            .select_for_update()
            .values_list("pk", "run_id", "reserved_usd", "reserved_tokens")
        )
        if not rows:
            return 0
        ModelCall.objects.filter(pk__in=[pk for pk, *_ in rows]).update(
            status=ModelCall.Status.ERROR,
            error=error,
            finished_at=now,
            reserved_usd=ZERO,
            reserved_tokens=0,
        )
        per_run: dict[Any, tuple[Decimal, int]] = {}
        for _pk, run_id, usd, tokens in sorted(rows, key=lambda r: str(r[1])):
            total_usd, total_tokens = per_run.get(run_id, (ZERO, 0))
            per_run[run_id] = (total_usd + usd, total_tokens + tokens)
        for run_id, (usd, tokens) in per_run.items():
            _give_back(run_id, usd, tokens)
    return len(rows)


def max_call_seconds() -> float:
    """The longest a request can stay in flight: the SDK's timeout for each of its attempts,
    plus a margin for its backoff between them."""
    return settings.LLM_TIMEOUT_SECONDS * (settings.LLM_SDK_MAX_RETRIES + 1) + 60


def release_stale_reservations(now: dt.datetime | None = None) -> int:
    """The reaper's sweep: pending real-time calls older than any call can last hold nothing
    any more (their worker died and no step took over, e.g. the run was cancelled)."""
    cutoff = (now or timezone.now()) - dt.timedelta(seconds=max_call_seconds())
    stale = ModelCall.objects.filter(
        status=ModelCall.Status.PENDING, batch_id="", created_at__lt=cutoff
    )
    return release_interrupted(stale)


# --- the checks ----------------------------------------------------------------------------


def spend_breach(run: Run) -> str | None:
    """Why the run must pause now that an answer was charged, or None. Run before any other
    check on the answer. Reservations keep a run under its ceiling, so this fires only when a
    real answer cost more than its worst case was bounded at. A sub-agent's answer is also
    checked against every ancestor's ceiling (the tree's spend)."""
    for ancestor in Run.objects.filter(pk__in=ancestors(run.parent_id)) if run.parent_id else ():
        if (
            ancestor.ceiling_usd is None
            or ancestor.tree_cost_usd > ancestor.ceiling_usd
            or (
                ancestor.ceiling_tokens is not None
                and ancestor.total_input_tokens + ancestor.output_tokens + ancestor.children_tokens
                > ancestor.ceiling_tokens
            )
        ):
            return (
                f"Parent run {ancestor.pk} and its sub-agents have spent ${ancestor.tree_cost_usd:.4f}, over "
                f"its ceiling of ${ancestor.ceiling_usd or ZERO:.2f}. A manager must decide whether it may go on."
            )
    used = run.total_input_tokens + run.output_tokens + run.children_tokens
    if run.ceiling_tokens is not None and used > run.ceiling_tokens:
        return (
            f"The run used {used:,} tokens, over its ceiling of "
            f"{run.ceiling_tokens:,}. A manager must decide whether it may go on."
        )
    if run.ceiling_usd is None or run.tree_cost_usd > run.ceiling_usd:
        ceiling = (
            f"${run.ceiling_usd:.2f} ({run.ceiling_basis})"
            if run.ceiling_usd is not None
            else "none"
        )
        return (
            f"The run has cost ${run.tree_cost_usd:.4f}, over its ceiling of {ceiling}. "
            "A manager must decide whether it may go on."
        )
    return None


def blocked_until_raised(
    run: Run, needed_usd: Decimal = ZERO, needed_tokens: int = 0
) -> str | None:
    """Why a run paused at its ceiling may not be resumed yet, or None: the call it could not
    make (``needed_*``, from its ticket) must fit under the ceiling first."""
    if run.ceiling_usd is None or run.ceiling_tokens is None:
        return "The run has no spend ceiling. A manager must set one (raise the ceiling) before it can go on."
    for ancestor in Run.objects.filter(pk__in=ancestors(run.parent_id)):
        blocked = blocked_until_raised(_as_top_level(ancestor), needed_usd, needed_tokens)
        if blocked:
            return f"Its parent run {ancestor.pk} (whose ceiling covers its sub-agents) has no room: {blocked}"
    tokens = (
        run.total_input_tokens
        + run.output_tokens
        + run.reserved_tokens
        + run.children_tokens
        + run.children_reserved_tokens
    )
    spent = run.tree_cost_usd + run.reserved_usd + run.children_reserved_usd
    if spent + needed_usd > run.ceiling_usd or (
        needed_usd == 0 and run.tree_cost_usd >= run.ceiling_usd
    ):
        return (
            f"The run is still at its spend ceiling: ${run.tree_cost_usd:.4f} spent and "
            f"${run.reserved_usd + run.children_reserved_usd:.4f} held "
            f"of ${run.ceiling_usd:.2f}, and its next call needs up to ${needed_usd:.4f}. A manager who did "
            "not start the run must raise the ceiling first; resuming never raises it. Nothing was changed."
        )
    if tokens + needed_tokens > run.ceiling_tokens:
        return (
            f"The run is still at its token ceiling: {tokens:,} of {run.ceiling_tokens:,} tokens, and its "
            f"next call needs up to {needed_tokens:,}. A manager who did not start the run must raise the "
            "ceiling first; resuming never raises it. Nothing was changed."
        )
    return None


def _as_top_level(run: Run) -> Run:
    run.parent_id = None  # its own ancestors are checked by the loop that found it
    return run


# --- raising the ceiling -------------------------------------------------------------------


def parse_raise(usd: str, tokens: str = "") -> tuple[Decimal, int]:
    """The amounts a manager typed: dollars (a positive amount in cents, at most
    CEILING_MAX_RAISE_USD at a time) and optionally tokens (a positive whole number, at most
    CEILING_MAX_RAISE_TOKENS). Raises CeilingError with what to type instead."""
    limit_usd = Decimal(str(settings.CEILING_MAX_RAISE_USD))
    limit_tokens = int(settings.CEILING_MAX_RAISE_TOKENS)
    usd, tokens = (
        (usd or "").strip().removeprefix("$").replace(",", ""),
        (tokens or "").strip().replace(",", ""),
    )
    if not usd and not tokens:
        raise CeilingError(
            "Type how much to add to the ceiling, in dollars (e.g. 5.00), or in tokens."
        )
    amount = ZERO
    if usd:
        try:
            amount = Decimal(usd)
        except InvalidOperation:
            raise CeilingError(f"{usd!r} is not an amount in dollars; type e.g. 5.00.") from None
        if not amount.is_finite() or amount <= 0:
            raise CeilingError("The amount to add must be more than $0.00.")
        if amount > limit_usd:  # first: quantizing 1e400 raises InvalidOperation
            raise CeilingError(
                f"At most ${limit_usd:,.2f} may be added at a time; this was {usd[:40]}."
            )
        if amount != amount.quantize(Decimal("0.01")):
            raise CeilingError(
                "Type the amount in dollars and cents (at most two decimals), e.g. 5.25."
            )
        if amount > limit_usd:
            raise CeilingError(
                f"At most ${limit_usd:,.2f} may be added at a time; this was ${amount:,.2f}."
            )
    count = 0
    if tokens:
        try:
            count = whole_number(tokens, "add_tokens", minimum=1, clamp=True)
        except Rejected:
            raise CeilingError(
                "The tokens to add must be a whole number above zero, e.g. 100000 "
                "(the digits 0-9).",
                field="add_tokens",
            ) from None
        if count > limit_tokens:
            raise CeilingError(
                f"At most {limit_tokens:,} tokens may be added at a time; this was {count:,}.",
                field="add_tokens",
            )
    return amount, count


def raise_ceiling(
    run_id: Any,
    user: Any,
    *,
    refusal: Callable[[Any, Run], str | None],
    usd: str,
    tokens: str = "",
    comment: str = "",
) -> Run:
    """Raise the run's ceiling by what a manager typed, under the run's row lock, and record
    it in the audit trail. Raises CeilingError (nothing changed) when refused.

    Who may raise it is an access rule (``reviews.access.ceiling_refusal``), which Costs does
    not import: every caller passes it as ``refusal``, and it is asked under the lock."""
    amount, count = parse_raise(usd, tokens)
    try:
        check_text(comment, "comment")
    except Rejected as exc:
        raise CeilingError(f"The comment {exc.fields['comment']}.", field="comment") from None
    with transaction.atomic():
        run = Run.objects.locked().filter(pk=run_id).first()
        if run is None:
            raise CeilingError("No such run.", code="not_found")
        if why := refusal(user, run):
            raise CeilingError(why, code="forbidden")
        if run.is_final:
            raise CeilingError(
                f"The run is {run.status}; its ceiling can no longer change.", code="conflict"
            )
        before_usd, before_tokens = run.ceiling_usd or ZERO, run.ceiling_tokens or 0
        run.ceiling_usd, run.ceiling_tokens = before_usd + amount, before_tokens + count
        run.ceiling_basis = (
            f"raised to ${run.ceiling_usd:.2f} by {user.get_username()} at {timezone.localtime():%Y-%m-%d %H:%M}"
        )[:300]
        run.save(update_fields=["ceiling_usd", "ceiling_tokens", "ceiling_basis", "updated_at"])
        audit.record(
            "ceiling.raised",
            run=run,
            actor=user,
            evidence_of=[run],
            payload={
                "from_usd": str(before_usd),
                "to_usd": str(run.ceiling_usd),
                "by_usd": str(amount),
                "from_tokens": before_tokens,
                "to_tokens": run.ceiling_tokens,
                "by_tokens": count,
                "comment": comment.strip(),
            },
        )
    return run


ABANDONED = (
    "abandoned: the run was cancelled while this call was in flight (an answer that still "
    "arrives is recorded and charged: the API bills it)"
)


def release_for_cancelled_run(run_id: Any) -> int:
    """Give back every reservation a run being cancelled holds: its pending calls (streaming
    or waiting in a batch) are marked failed and their reservations released
    (``release_interrupted``), so nothing it reserved stays committed against its ceiling or
    a budget. A worker still streaming one of them records and charges the answer if it
    arrives (``charge`` finds nothing left to release), and starts nothing after it."""
    return release_interrupted(ModelCall.objects.filter(run_id=run_id), error=ABANDONED)
