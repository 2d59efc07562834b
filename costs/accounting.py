"""Charging model calls to their run, and the spend limits checked after every charge.

``charge`` is the one place a call's cost reaches the run's totals: the engine, fan-out
specialists and validators, and batch results all go through it. ``spend_breach`` is the
one mid-run spend policy: it names the limit the last charge crossed, if any, and the caller
pauses the run with a ``budget_exceeded`` ticket. Limits are checked on the crossing
(before <= limit < after), so a run a manager lets go on is not stopped again by the
same limit on its next call.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from costs.pricing import Usage, cost_of, price_for
from orchestration.models import ModelCall, Run


@dataclass(frozen=True)
class Charge:
    """A priced call and the run's totals just before and just after it was added."""

    cost: Decimal
    usage: Usage
    before: Run
    after: Run


def approval_threshold(workflow: Any) -> Decimal:
    """The estimate above which a run of ``workflow`` needs a manager (per workflow, else settings)."""
    if workflow.approval_threshold_usd is not None:
        return Decimal(workflow.approval_threshold_usd)
    return Decimal(settings.APPROVAL_THRESHOLD_USD)


def charge(mc: ModelCall, usage_json: dict[str, Any], *, batch: bool = False) -> Charge:
    """Price ``mc`` from the usage the API reported and add it to its run.

    Sets and saves the call's token, price and cost fields (the caller saves the rest of the
    response on the same object). Must run inside the caller's transaction: the run row is
    locked until it commits, so concurrent charges (parallel specialists) add up exactly.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("costs.accounting.charge must be called inside transaction.atomic()")
    usage = Usage.from_api(usage_json)
    price = price_for(mc.model, at=mc.created_at)
    cost = cost_of(usage, price, batch=batch)
    mc.usage = usage_json
    mc.input_tokens = usage.input_tokens
    mc.output_tokens = usage.output_tokens
    mc.cache_write_5m_tokens = usage.cache_write_5m
    mc.cache_write_1h_tokens = usage.cache_write_1h
    mc.cache_read_tokens = usage.cache_read
    mc.price = price
    mc.cost_usd = cost
    mc.is_batch = batch
    mc.save()
    before = Run.objects.select_for_update().get(pk=mc.run_id)
    Run.objects.filter(pk=mc.run_id).update(
        cost_usd=F("cost_usd") + cost,
        input_tokens=F("input_tokens") + usage.input_tokens,
        output_tokens=F("output_tokens") + usage.output_tokens,
        cache_write_tokens=F("cache_write_tokens") + usage.cache_write_5m + usage.cache_write_1h,
        cache_read_tokens=F("cache_read_tokens") + usage.cache_read,
    )
    after = Run.objects.get(pk=mc.run_id)
    return Charge(cost=cost, usage=usage, before=before, after=after)


def spend_limit(run: Run, workflow: Any) -> tuple[Decimal, str]:
    """The run's mid-run spend guard: the approved estimate plus the allowed overrun, or the
    approval threshold for a run that never needed approval."""
    from reviews.models import ApprovalRequest

    approved = (
        ApprovalRequest.objects.filter(run_id=run.pk, status=ApprovalRequest.Status.APPROVED)
        .values_list("estimate_usd", flat=True)
        .first()
    )
    if approved is not None:
        overrun = Decimal(str(settings.APPROVAL_OVERRUN_FRACTION))
        return approved * (1 + overrun), f"its approved estimate of ${approved:.2f} plus {overrun:.0%}"
    threshold = approval_threshold(workflow)
    return threshold, f"the ${threshold:.2f} approval threshold (it was never approved)"


def spend_breach(c: Charge, workflow: Any) -> str | None:
    """Why the run must pause after this charge, or None. The one mid-run spend policy."""
    limits = workflow.constraints
    tokens_before = c.before.total_input_tokens + c.before.output_tokens
    tokens_after = c.after.total_input_tokens + c.after.output_tokens
    if tokens_before <= limits.max_tokens_per_run < tokens_after:
        return f"The run used {tokens_after:,} tokens, over its budget of {limits.max_tokens_per_run:,}."
    if c.before.cost_usd <= limits.max_cost_usd < c.after.cost_usd:
        return f"The run cost ${c.after.cost_usd:.4f}, over its budget of ${limits.max_cost_usd}."
    guard, what = spend_limit(c.after, workflow)
    if c.before.cost_usd <= guard < c.after.cost_usd:
        return (
            f"The run has cost ${c.after.cost_usd:.4f}, past {what} (${guard:.2f}). "
            "A manager must decide whether it may go on."
        )
    return None
