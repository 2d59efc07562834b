"""Enterprise fan-out demo: ad variants for 1,000 SKUs, one specialist per SKU.

The catalog is generated in code, deterministically (``catalog()``). With 1,000 SKUs the
estimate is over $20, so the run waits for a manager before a token is spent. The simulated
models:

- the orchestrator writes the copywriting brief once (one job kind for every SKU, with the
  tone) and the engine expands it over the SKUs, one job per SKU (``expand_items``: the
  workflow declares the SKUs as its items and the ad schema as the job output schema: a
  headline of at most 40 characters and a body of at most 125 per channel; the plan chooses
  neither);
- a specialist writes two ads per channel (search, social, display, email). Its first headline for every 25th SKU (from the
  8th) is too long, which the schema check catches in code; its first body for SKUs 4, 13,
  22, ... (every 9th) claims "the best in the world", which the validator FAILs as an
  unverifiable superlative; both are fixed on the retry. For SKUs 13, 110, 207, ... (every
  97th) it insists on the superlative: those jobs fail twice (~1%);
- the orchestrator aggregates the ads per SKU and lists the SKUs without ads; the engine
  checks its counts and its list against the job rows (``expected_aggregate``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from demo.playbook import fanout_roles
from orchestration.workflows.declaration import (
    Constraints,
    FanoutSpec,
    JobResult,
    Workflow,
)
from orchestration.workflows.registry import register

SKUS = 1000
CHANNELS = ("search", "social", "display", "email")
VARIANTS = 2  # ads per channel
ADJECTIVES = (
    "Alpine",
    "Urban",
    "Coastal",
    "Nordic",
    "Desert",
    "Summit",
    "Harbor",
    "Meadow",
    "Canyon",
    "Aurora",
)
PRODUCTS = (
    "Backpack",
    "Water Bottle",
    "Trail Shoe",
    "Rain Jacket",
    "Headlamp",
    "Camp Chair",
    "Thermal Mug",
    "Daypack",
    "Sleeping Bag",
    "Trekking Pole",
)
FEATURES = (
    "recycled fabric",
    "lifetime warranty",
    "ultralight",
    "waterproof",
    "packs flat",
    "BPA-free",
    "reflective trim",
    "machine washable",
)
SUPERLATIVE = "the best in the world"
BANNED = ("best in the world", "number one", "#1", "guaranteed")

AD_SCHEMA = {
    "type": "object",
    "properties": {
        "sku": {"type": "string"},
        "ads": {
            "type": "array",
            "minItems": len(CHANNELS) * VARIANTS,
            "maxItems": len(CHANNELS) * VARIANTS,
            "items": {
                "type": "object",
                "properties": {
                    "channel": {"enum": list(CHANNELS)},
                    "variant": {"type": "integer", "minimum": 1, "maximum": VARIANTS},
                    "headline": {"type": "string", "minLength": 5, "maxLength": 40},
                    "body": {"type": "string", "minLength": 10, "maxLength": 125},
                },
                "required": ["channel", "variant", "headline", "body"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["sku", "ads"],
    "additionalProperties": False,
}


@functools.cache
def catalog() -> tuple[dict[str, Any], ...]:
    """The demo catalog: 1,000 SKUs with a name, a price and two features."""
    rows = []
    for i in range(SKUS):
        name = f"{ADJECTIVES[i % 10]} {PRODUCTS[(i // 10) % 10]}"
        rows.append(
            {
                "sku": f"SKU-{i + 1:04d}",
                "name": name,
                "price": f"{19 + (i * 7) % 180}.00",
                "features": [FEATURES[i % 8], FEATURES[(i * 3 + 1) % 8]],
            }
        )
    return tuple(rows)


def _index(sku: str) -> int:
    return int(sku.removeprefix("SKU-")) - 1


def context(run_input: Mapping[str, Any]) -> dict[str, Any]:
    return {"catalog": list(catalog()[: run_input.get("skus", SKUS)]), "channels": list(CHANNELS)}


def items(run_input: Mapping[str, Any]) -> list[str]:
    """The SKUs the plan must cover, one job each (job_id = the SKU)."""
    return [row["sku"] for row in context(run_input)["catalog"]]


def item_data(run_input: Mapping[str, Any], sku: str) -> dict[str, Any]:
    """The product a job writes for, from the catalog (given to its specialist and validator
    by the engine, whatever the orchestrator's prompt says about it)."""
    return catalog()[_index(sku)]


def decompose(data: dict[str, Any]) -> dict[str, Any]:
    """One job kind, written once: the brief; the engine gives each job its product's facts."""
    tone = data["input"].get("tone", "friendly")
    return {
        "job_kinds": [
            {
                "kind": "product ads",
                "items": "*",
                "prompt": (
                    f"Write {VARIANTS} ads per channel ({', '.join(CHANNELS)}) for {{item}}, using only "
                    f"the product facts in item (name, price, features). Tone: {tone}. Headline at most "
                    "40 characters, body at most 125. No unverifiable claims."
                ),
            }
        ]
    }


def specialist(data: dict[str, Any]) -> dict[str, Any]:
    row = data["item"]
    sku = row["sku"]
    i = _index(sku)
    retry = bool(data.get("retry_reason"))
    ads = []
    for channel in CHANNELS:
        for variant in range(1, VARIANTS + 1):
            feature = row["features"][variant - 1]
            headline = f"{row['name']}: {feature}"
            if i % 25 == 7 and not retry:
                headline = (
                    f"Meet the all-new {row['name']}, {row['features'][0]} and {row['features'][1]}"
                )
            claim = (
                SUPERLATIVE
                if (i % 9 == 3 and not retry) or i % 97 == 12
                else row["features"][-variant]
            )
            call = {
                "search": "Order today",
                "social": "Tap to shop",
                "display": "See it now",
                "email": "Read more",
            }
            body = f"{row['name']} for ${row['price']}: {claim}. {call[channel]}."
            ads.append(
                {
                    "channel": channel,
                    "variant": variant,
                    "headline": headline[:60],
                    "body": body[:125],
                }
            )
    return {"sku": sku, "ads": ads}


def validator(data: dict[str, Any]) -> dict[str, Any]:
    for ad in (data.get("output") or {}).get("ads", []):
        text = f"{ad['headline']} {ad['body']}".lower()
        banned = next((b for b in BANNED if b in text), None)
        if banned:
            return {
                "job_id": data["job_id"],
                "status": "FAIL",
                "reason": f"The {ad['channel']} ad makes an unverifiable claim ({banned!r}); use a product fact.",
            }
    return {
        "job_id": data["job_id"],
        "status": "PASS",
        "reason": "On brief, within limits, no unverifiable claims.",
    }


def summarize(output: dict[str, Any]) -> dict[str, Any]:
    """What the orchestrator sees of one SKU's ads when aggregating (the ads stay in the job rows
    and the JSONL artifact: 1,000 SKUs x 8 ads would not fit one prompt)."""
    return {
        "ads": len(output.get("ads", [])),
        "channels": sorted({a["channel"] for a in output.get("ads", [])}),
    }


def aggregate(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "skus_total": data["counts"]["total"],
        "skus_with_ads": len(data["results"]),
        "ads_written": sum(r["output"]["ads"] for r in data["results"]),
        "skus_without_ads": [{"sku": f["job_id"], "reason": f["reason"]} for f in data["failed"]],
    }


def expected_aggregate(results: list[JobResult]) -> dict[str, Any]:
    """What the summary must say, from the job rows: the counts, the ads the passing jobs
    wrote, and every SKU that failed (its reason is the aggregator's to word)."""
    passed = [r for r in results if r.passed]
    return {
        "skus_total": len(results),
        "skus_with_ads": len(passed),
        "ads_written": sum(len((r.output or {}).get("ads", [])) for r in passed),
        "skus_without_ads": [{"sku": r.item} for r in results if not r.passed],
    }


WORKFLOW = register(
    Workflow(
        name="ad_variants",
        title="Ad variants for 1,000 SKUs (fan-out)",
        version="2",
        domain="an outdoor-gear retailer's marketing team",
        role="Split the catalog into one independent copywriting job per SKU, then collect the validated ads.",
        description="Enterprise fan-out: one Sonnet specialist per SKU; estimated over $20, so a manager approves first.",
        input_schema={
            "type": "object",
            "properties": {
                "catalog": {
                    "const": "demo",
                    "description": "The bundled demo catalog of 1,000 SKUs.",
                },
                "skus": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": SKUS,
                    "default": SKUS,
                    "description": "Write ads for the first N SKUs.",
                },
                "tone": {"type": "string", "maxLength": 40, "default": "friendly"},
            },
            "required": ["catalog"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "skus_total": {"type": "integer"},
                "skus_with_ads": {"type": "integer"},
                "skus_without_ads": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"sku": {"type": "string"}, "reason": {"type": "string"}},
                        "required": ["sku", "reason"],
                    },
                },
                "ads_written": {"type": "integer"},
            },
            "required": ["skus_total", "skus_with_ads", "skus_without_ads", "ads_written"],
            "additionalProperties": False,
        },
        tools=(),
        rules=(
            "Decompose by writing the copywriting brief once per kind of product (job_kinds): the engine "
            'expands each kind over the SKUs it covers, one job per SKU; "*" covers every SKU no other '
            "kind names. Every SKU must be covered exactly once.",
            "A brief gives the channels and the tone ({item} is the SKU); the engine gives each job its "
            "product's facts, and the output schema is set by the workflow.",
            "Never promise what the catalog does not say.",
        ),
        constraints=Constraints(
            max_steps=4,
            max_cost_usd=Decimal("60.00"),
            max_tokens_per_run=12_000_000,
            run_timeout_seconds=7200,
            max_output_tokens=16_000,
        ),
        input_example={"catalog": "demo", "skus": SKUS, "tone": "friendly"},
        fanout=FanoutSpec(
            specialist_instructions="You are a retail copywriter. You write one short ad per channel for one product, "
            "using only the facts given.",
            validator_instructions="You check one product's ads: on brief, within the length limits, and no claim "
            "the product facts do not support.",
            job_output_schema=AD_SCHEMA,
            items=items,
            item_data=item_data,
            expected_aggregate=expected_aggregate,
            max_jobs=SKUS,
            context=context,
            expected_jobs=lambda run_input: int(run_input.get("skus", SKUS)),
            expand_items=True,
            decompose_output_tokens=120,  # one brief: the engine expands it over the SKUs
            specialist_input_tokens=700,
            specialist_output_tokens=600,
            validator_input_tokens=1_200,
            validator_output_tokens=60,
            aggregate_output_tokens=2_000,
            summarize=summarize,
        ),
        policy=fanout_roles(
            decompose=decompose, specialist=specialist, validator=validator, aggregate=aggregate
        ),
    )
)
