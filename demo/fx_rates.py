"""The FX rates snapshot: the seed's "if a data fetch times out, fall back to a cache".

fetch_fx_rates reads the treasury's rates feed for a business day. The feed is down for its
weekly maintenance on Sundays (its read times out). The tool declares a ``CachedResult``
fallback: when both its attempts time out, the engine answers with the last rates it fetched
in a run of this workflow (any day, within a week), marked ``fallback``, and the answer must
say so under ``fallbacks`` (orchestration.fallbacks refuses one that hides it).

Demo: start it for Friday 2026-11-20 (live rates), then for Sunday 2026-11-22 (the feed
times out: Friday's cached rates, and the answer says so). Without an earlier live fetch the
Sunday run escalates (retries exhausted): there is nothing to fall back on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any

from demo.playbook import answer, call, result
from orchestration.workflows.declaration import (
    CachedResult,
    Constraints,
    Example,
    Expectation,
    Tool,
    ToolContext,
    Workflow,
)
from orchestration.workflows.registry import register
from simulator.policy import Conversation, Turn

QUOTES = ("USD", "EUR", "NZD", "JPY")
BASE_RATES = {
    "USD": Decimal("0.6500"),
    "EUR": Decimal("0.6000"),
    "NZD": Decimal("1.1000"),
    "JPY": Decimal("97.00"),
}
MAINTENANCE_WEEKDAY = 6  # Sunday


def fetch_fx_rates(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    day = dt.date.fromisoformat(args["date"])
    if day.weekday() == MAINTENANCE_WEEKDAY:
        raise TimeoutError(
            "the rates feed did not answer within its read timeout (weekly maintenance window)"
        )
    rates = {}
    for quote in QUOTES:  # a fixed wobble per day and currency: demo data, not a market
        wobble = int(hashlib.sha256(f"{day}{quote}".encode()).hexdigest()[:4], 16) % 200 - 100
        rates[quote] = float(
            (BASE_RATES[quote] * (1 + Decimal(wobble) / 10000)).quantize(Decimal("0.0001"))
        )
    return {"base": "AUD", "as_of": day.isoformat(), "rates": rates}


RATES_SCHEMA = {
    "type": "object",
    "properties": {q: {"type": "number", "exclusiveMinimum": 0} for q in QUOTES},
    "required": list(QUOTES),
}

TOOLS = (
    Tool(
        name="fetch_fx_rates",
        description="Read the AUD exchange rates of a business day from the treasury's rates feed.",
        input_schema={
            "type": "object",
            "properties": {"date": {"type": "string", "format": "date"}},
            "required": ["date"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "base": {"const": "AUD"},
                "as_of": {"type": "string", "format": "date"},
                "rates": RATES_SCHEMA,
            },
            "required": ["base", "as_of", "rates"],
        },
        handler=fetch_fx_rates,
        timeout_seconds=10,
        invoke_when="first, for the requested date",
        recovery="if the feed times out twice, the engine answers with the last cached rates (marked)",
        max_attempts=2,
        # The seed: "If a data fetch times out, fall back to a cache", and say so.
        fallback=CachedResult(
            max_age_seconds=7 * 86_400, key=lambda tool_input: "AUD", on=("timeout",)
        ),
    ),
)

FALLBACKS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"tool": {"type": "string"}, "cached_at": {"type": "string"}},
        "required": ["tool", "cached_at"],
    },
}


def policy(conv: Conversation) -> Turn:
    """Plays the orchestrator: fetch, then answer, naming the fallback the engine used."""
    rates = result(conv, "fetch_fx_rates")
    if rates is None:
        return call(
            "fetch_fx_rates", {"date": conv.input["date"]}, "Reading the day's rates from the feed."
        )
    marker = rates.get("fallback")
    return answer(
        {
            "status": "success",
            "requested_date": conv.input["date"],
            "as_of": rates["as_of"],
            "rates": rates["rates"],
            "fallbacks": [{"tool": "fetch_fx_rates", "cached_at": marker["cached_at"]}]
            if marker
            else [],
        }
    )


WORKFLOW = register(
    Workflow(
        name="fx_rates",
        title="FX rates snapshot",
        version="1",
        domain="treasury at an Australian fintech",
        role="Read the day's AUD exchange rates from the rates feed and report them.",
        description="Falls back to the last cached rates when the feed times out, and says so in the answer.",
        input_schema={
            "type": "object",
            "properties": {
                "date": {
                    "type": "string",
                    "format": "date",
                    "description": "Business day (YYYY-MM-DD)",
                }
            },
            "required": ["date"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "status": {"const": "success"},
                "requested_date": {"type": "string", "format": "date"},
                "as_of": {
                    "type": "string",
                    "format": "date",
                    "x-from-tool": "fetch_fx_rates.as_of",
                },
                "rates": RATES_SCHEMA,
                "fallbacks": FALLBACKS_SCHEMA,
            },
            "required": ["status", "requested_date", "as_of", "rates", "fallbacks"],
            "additionalProperties": False,
        },
        tools=TOOLS,
        rules=(
            "Call fetch_fx_rates once, for the requested date.",
            "Report the rates as returned, with their as_of date.",
            "If the result carries a 'fallback' marker, list it under fallbacks (tool, cached_at); otherwise "
            "fallbacks is empty.",
        ),
        constraints=Constraints(
            max_steps=4,
            max_cost_usd=Decimal("0.50"),
            tool_timeout_seconds=10,
            run_timeout_seconds=120,
            max_output_tokens=1024,
        ),
        examples=(
            Example(
                "The feed answers",
                {"date": "2026-11-20"},
                ("fetch_fx_rates -> rates as of 2026-11-20", "answer with fallbacks: []"),
            ),
            Example(
                "The feed times out",
                {"date": "2026-11-22"},
                (
                    "fetch_fx_rates -> the engine's cached result, marked fallback (cached_at)",
                    "answer with the cached rates and fallbacks: [{tool, cached_at}]",
                ),
            ),
        ),
        expectation=Expectation(
            turns=2, output_tokens_per_turn=80, tool_result_tokens=120, final_output_tokens=150
        ),
        input_example={"date": "2026-11-22"},
        scenarios=(
            Example(
                "The feed answers",
                {"date": "2026-11-20"},
                (
                    "Live rates of Friday 2026-11-20; fallbacks is empty. Run this first: it fills the cache.",
                ),
            ),
            Example(
                "Then: the fetch times out, the last cached result",
                {"date": "2026-11-22"},
                (
                    "The feed is in its Sunday maintenance window: both attempts time out.",
                    "The engine answers with the last cached rates (marked 'fallback'), and the answer lists "
                    "them under fallbacks; an answer that hid it would be refused.",
                    "With no earlier live fetch, the run escalates (retries exhausted).",
                ),
            ),
        ),
        policy=policy,
    )
)
