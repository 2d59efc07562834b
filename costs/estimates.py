"""Estimating a run's cost before any token is spent, shown as a calculation.

The prompt is measured with count_tokens on the exact system prompt, tools and input
the run will send; the engine measures it (orchestration.launch.measure_prompt) and hands the
counts in as a PromptSize, so Costs never calls the model API. The rest follows the workflow's declared expectation (turns, output
and tool-result sizes) and the cache rules: the system+tools prefix is written to the
cache on the first turn and read on the following ones, when it is long enough to be
cached at all. The upper bound adds a retry allowance; the approval gate uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from costs.pricing import MILLION, price_for
from orchestration.workflows.declaration import Workflow

# Extra cost allowed for tool retries, validation retries and a reviewer's resume.
RETRY_ALLOWANCE = Decimal("0.50")


def min_cacheable_tokens(model: str) -> int:
    return 1024 if "sonnet" in model else 4096


@dataclass(frozen=True)
class PromptSize:
    """count_tokens of the run's first request, measured by the engine.

    prompt: the whole first request (system prompt, tools, the input; for a fan-out run the
    orchestrator's decomposition turn). prefix: the system prompt and tools alone, the part
    the cache can hold (0 for a fan-out run, which does not use it).
    """

    prompt: int
    prefix: int = 0


@dataclass
class Estimate:
    model: str
    expected_usd: Decimal
    upper_usd: Decimal
    lines: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "expected_usd": str(self.expected_usd),
            "upper_usd": str(self.upper_usd),
            "lines": self.lines,
        }


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.000001'), rounding=ROUND_HALF_UP)}"


def estimate_run(workflow: Workflow, run_input: dict[str, Any], size: PromptSize, *,
                 batch: bool = False) -> Estimate:
    if workflow.fanout is not None:
        return estimate_fanout(workflow, run_input, size)
    model = workflow.orchestrator_model
    prompt, prefix = size.prompt, size.prefix
    exp = workflow.expected()
    price = price_for(model)
    turns = exp.turns
    growth = exp.output_tokens_per_turn + exp.tool_result_tokens
    total_input = turns * prompt + growth * turns * (turns - 1) // 2
    output = (turns - 1) * exp.output_tokens_per_turn + exp.final_output_tokens
    cacheable = prefix >= min_cacheable_tokens(model)
    cache_write = prefix if cacheable else 0
    cache_read = prefix * (turns - 1) if cacheable else 0
    uncached = total_input - cache_write - cache_read

    def cost(tokens: int, per_mtok: Decimal) -> Decimal:
        return tokens * per_mtok / MILLION

    lines = [
        {
            "item": "Prompt (system + tools + this input)",
            "calc": f"count_tokens on the rendered prompt = {prompt:,} tokens",
            "usd": "",
        },
        {
            "item": "Expected turns",
            "calc": f"{turns} turns; each adds ~{exp.output_tokens_per_turn} output + ~{exp.tool_result_tokens} tool-result tokens",
            "usd": "",
        },
        {
            "item": "Input over all turns",
            "calc": f"{turns} x {prompt:,} + {growth} x {turns}x{turns - 1}/2 = {total_input:,} tokens",
            "usd": "",
        },
    ]
    if cacheable:
        lines += [
            {
                "item": "Cache write (system + tools, turn 1)",
                "calc": f"{cache_write:,} x ${price.cache_write_5m_per_mtok}/MTok",
                "usd": _usd(cost(cache_write, price.cache_write_5m_per_mtok)),
            },
            {
                "item": "Cache reads (turns 2..)",
                "calc": f"{cache_read:,} x ${price.cache_read_per_mtok}/MTok",
                "usd": _usd(cost(cache_read, price.cache_read_per_mtok)),
            },
        ]
    else:
        lines.append(
            {
                "item": "Cache",
                "calc": f"prefix {prefix:,} tokens is under {model}'s {min_cacheable_tokens(model):,}-token minimum: not cached",
                "usd": "",
            }
        )
    lines += [
        {
            "item": "Uncached input",
            "calc": f"{uncached:,} x ${price.input_per_mtok}/MTok",
            "usd": _usd(cost(uncached, price.input_per_mtok)),
        },
        {
            "item": "Output",
            "calc": f"{turns - 1} x {exp.output_tokens_per_turn} + {exp.final_output_tokens} = {output:,} x ${price.output_per_mtok}/MTok",
            "usd": _usd(cost(output, price.output_per_mtok)),
        },
    ]
    expected = (
        cost(cache_write, price.cache_write_5m_per_mtok)
        + cost(cache_read, price.cache_read_per_mtok)
        + cost(uncached, price.input_per_mtok)
        + cost(output, price.output_per_mtok)
    )
    lines.append({"item": "Expected cost", "calc": "sum of the lines above", "usd": _usd(expected)})
    if batch:
        discounted = expected * (1 - price.batch_discount)
        lines.append(
            {
                "item": "Batch mode",
                "calc": f"{_usd(expected)} x (1 - {price.batch_discount:.0%} Message Batches discount)",
                "usd": _usd(discounted),
            }
        )
        expected = discounted
    upper = expected * (1 + RETRY_ALLOWANCE)
    lines += [
        {
            "item": "Upper bound",
            "calc": f"expected x (1 + {RETRY_ALLOWANCE:.0%} retry allowance)",
            "usd": _usd(upper),
        },
    ]
    return Estimate(model=model, expected_usd=expected, upper_usd=upper, lines=lines)


def estimate_fanout(workflow: Workflow, run_input: dict[str, Any], size: PromptSize) -> Estimate:
    """A fan-out run: decompose + N x (specialist + validator) + retry allowance + aggregate.

    The decomposition prompt is measured (by the engine) with count_tokens on the exact
    request the orchestrator will get (system prompt, input and the workflow's context data),
    and comes in as ``size.prompt``. N comes
    from the workflow (``expected_jobs``, else its max_jobs); per-call token sizes are the
    workflow's declared expectations. The retry allowance prices one retry (specialist and
    validator again) for RETRY_ALLOWANCE of the jobs.
    """
    spec = workflow.fanout
    assert spec is not None
    orchestrator = workflow.orchestrator_model
    specialist = workflow.models.get("specialist") or orchestrator
    validator = workflow.models.get("validator") or orchestrator
    n = spec.expected_jobs(run_input) if spec.expected_jobs else spec.max_jobs
    prompt = size.prompt
    po, ps, pv = price_for(orchestrator), price_for(specialist), price_for(validator)

    def cost(tokens: int, per_mtok: Decimal) -> Decimal:
        return tokens * per_mtok / MILLION

    plan_out, plan_calc = spec.plan_output_tokens(n)
    decompose = cost(prompt, po.input_per_mtok) + cost(plan_out, po.output_per_mtok)
    per_specialist = cost(spec.specialist_input_tokens, ps.input_per_mtok) + cost(
        spec.specialist_output_tokens, ps.output_per_mtok
    )
    per_validator = cost(spec.validator_input_tokens, pv.input_per_mtok) + cost(
        spec.validator_output_tokens, pv.output_per_mtok
    )
    specialists, validators = n * per_specialist, n * per_validator
    retried = int((n * RETRY_ALLOWANCE).to_integral_value())
    retries = retried * (per_specialist + per_validator)
    agg_in = prompt // 4 + n * min(spec.specialist_output_tokens, 200)
    aggregate = cost(agg_in, po.input_per_mtok) + cost(
        spec.aggregate_output_tokens, po.output_per_mtok
    )
    expected = decompose + specialists + validators + aggregate
    upper = expected + retries
    lines = [
        {
            "item": "Fan-out size",
            "calc": f"N = {n:,} jobs (at most {spec.max_jobs:,} for this workflow)",
            "usd": "",
        },
        {
            "item": f"Decompose ({orchestrator})",
            "calc": f"count_tokens on the prompt = {prompt:,} in x ${po.input_per_mtok}/MTok + {plan_calc} = {plan_out:,} out x ${po.output_per_mtok}/MTok",
            "usd": _usd(decompose),
        },
        {
            "item": f"Specialists ({specialist})",
            "calc": f"{n:,} x ({spec.specialist_input_tokens:,} in x ${ps.input_per_mtok} + {spec.specialist_output_tokens:,} out x ${ps.output_per_mtok}) /MTok = {n:,} x {_usd(per_specialist)}",
            "usd": _usd(specialists),
        },
        {
            "item": f"Validators ({validator})",
            "calc": f"{n:,} x ({spec.validator_input_tokens:,} in x ${pv.input_per_mtok} + {spec.validator_output_tokens:,} out x ${pv.output_per_mtok}) /MTok = {n:,} x {_usd(per_validator)}",
            "usd": _usd(validators),
        },
        {
            "item": f"Aggregate ({orchestrator})",
            "calc": f"~{agg_in:,} in x ${po.input_per_mtok} + {spec.aggregate_output_tokens:,} out x ${po.output_per_mtok} /MTok",
            "usd": _usd(aggregate),
        },
        {"item": "Expected cost", "calc": "sum of the lines above", "usd": _usd(expected)},
        {
            "item": "Retry allowance",
            "calc": f"one retry (specialist + validator) for {RETRY_ALLOWANCE:.0%} of jobs = {retried:,} x {_usd(per_specialist + per_validator)}",
            "usd": _usd(retries),
        },
        {"item": "Upper bound", "calc": "expected + retry allowance", "usd": _usd(upper)},
    ]
    return Estimate(model=orchestrator, expected_usd=expected, upper_usd=upper, lines=lines)
