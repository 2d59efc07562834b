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
- the validator flags as an edge case (``EDGE_CASE``) the ads of a product under $40 that
  promise a "lifetime warranty" (31 of 1,000 SKUs: a legal claim it cannot judge alone);
- the escalation reviewer (Opus) settles what the validator could not: it accepts the
  warranty ads (the warranty is one of the product's catalog facts), fails the SKUs that
  insisted on the superlative, and escalates to a human the two of those that are over $150
  (SKU-0304 and SKU-0692: the marketing lead decides). A human sees only those two;
- the specialists and the validators share one cached prefix each (the brief, the ad schema
  and worked examples of finished ads), over Sonnet's 1,024-token minimum, so every job after
  the first reads it at a tenth of the input price; a 1,000-SKU run outlives 5 minutes, so
  the prefix is cached for an hour;
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
    DEFAULT_MODELS,
    Constraints,
    FanoutSpec,
    JobResult,
    WorkedExample,
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
WARRANTY = "lifetime warranty"
WARRANTY_EDGE_BELOW = 40  # a lifetime warranty on a product cheaper than this: an edge case
ESCALATE_ABOVE = 150  # a SKU over this price that fails twice goes to the marketing lead
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
    ads = (data.get("output") or {}).get("ads", [])
    for ad in ads:
        text = f"{ad['headline']} {ad['body']}".lower()
        banned = next((b for b in BANNED if b in text), None)
        if banned:
            return {
                "job_id": data["job_id"],
                "status": "FAIL",
                "reason": f"The {ad['channel']} ad makes an unverifiable claim ({banned!r}); use a product fact.",
            }
    price = float(data["item"]["price"])
    if price < WARRANTY_EDGE_BELOW and any(WARRANTY in ad["body"].lower() for ad in ads):
        return {
            "job_id": data["job_id"],
            "status": "EDGE_CASE",
            "reason": f"The ads promise a {WARRANTY} on a ${price:.2f} product: a legal claim I cannot judge.",
        }
    return {
        "job_id": data["job_id"],
        "status": "PASS",
        "reason": "On brief, within limits, no unverifiable claims.",
    }


def reviewer(data: dict[str, Any]) -> dict[str, Any]:
    """The escalation reviewer: settles the warranty edge cases and the superlatives, and
    hands the expensive products' superlatives to a human."""
    row, job_id = data["item"], data["job_id"]
    last = data["attempts"][-1]
    if last["verdict"] == "EDGE" and WARRANTY in row["features"]:
        return {
            "job_id": job_id,
            "decision": "accept",
            "accept_attempt": max(data["acceptable_attempts"]),
            "reason": f"The {WARRANTY} is one of this product's catalog features, so the claim is supported "
            "whatever the price.",
        }
    if float(row["price"]) > ESCALATE_ABOVE:
        return {
            "job_id": job_id,
            "decision": "escalate",
            "reason": f"A ${row['price']} product whose copy keeps claiming {SUPERLATIVE!r}: the marketing lead "
            "decides whether to publish it without ads or rewrite the brief.",
        }
    return {
        "job_id": job_id,
        "decision": "fail",
        "reason": f"Both attempts claim {SUPERLATIVE!r}, which the catalog does not support: no ads for this SKU.",
    }


def _example_row(i: int) -> dict[str, Any]:
    """A product outside the demo catalog, made the same way (for the worked examples)."""
    return {
        "sku": f"SKU-{i + 1:04d}",
        "name": f"{ADJECTIVES[i % 10]} {PRODUCTS[(i // 10) % 10]}",
        "price": f"{19 + (i * 7) % 180}.00",
        "features": [FEATURES[i % 8], FEATURES[(i * 3 + 1) % 8]],
    }


def _worked_examples() -> tuple[WorkedExample, ...]:
    """Finished jobs for products outside the catalog: what a good answer looks like, and one
    the validator fails (a superlative)."""
    examples = []
    for i in (1002, 1015, 1026, 1043):
        row = _example_row(i)
        examples.append(
            WorkedExample(
                title=f"Ads for {row['name']}",
                item=row,
                output=specialist({"item": row, "retry_reason": "worked example"}),
                reason="Every ad uses only the product facts, within the length limits.",
            )
        )
    row = _example_row(1051)
    bad = specialist({"item": row, "retry_reason": "worked example"})
    bad["ads"][2]["body"] = f"{row['name']} for ${row['price']}: {SUPERLATIVE}. See it now."
    examples.append(
        WorkedExample(
            title=f"Ads for {row['name']}, one unverifiable claim",
            item=row,
            output=bad,
            verdict="FAIL",
            reason=f"The display ad makes an unverifiable claim ({SUPERLATIVE!r}); use a product fact.",
        )
    )
    return tuple(examples)


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
        models={**DEFAULT_MODELS, "reviewer": DEFAULT_MODELS["orchestrator"]},
        batch=True,
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
            worked_examples=_worked_examples(),
            expected_job_seconds=20.0,
            reviewer_instructions="You are the marketing team's senior copy reviewer. You settle the ads a "
            "validator failed twice or could not judge: accept an attempt whose claims the product facts "
            "support, fail a SKU whose copy cannot be fixed by a retry, and escalate what needs the "
            "marketing lead (a high-value product).",
            max_reviews=50,
            expected_review_fraction=0.05,
        ),
        policy=fanout_roles(
            decompose=decompose,
            specialist=specialist,
            validator=validator,
            aggregate=aggregate,
            reviewer=reviewer,
        ),
    )
)
