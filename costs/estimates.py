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
MICRO = Decimal("0.000001")


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
    # One row per model: the roles it plays, its calls (turns or jobs) and its expected cost.
    by_model: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "expected_usd": str(self.expected_usd),
            "upper_usd": str(self.upper_usd),
            "lines": self.lines,
            "by_model": self.by_model,
        }


def _rate(value: Decimal) -> str:
    """A price per million tokens as written on a price list: $2.50, $0.20, $0.125."""
    cents = value.quantize(Decimal("0.01"))
    return f"${cents if cents == value else value.normalize()}"


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.000001'), rounding=ROUND_HALF_UP)}"


def turn_roles(workflow: Workflow, turns: int) -> list[str]:
    """The role expected to play each of ``turns`` turns (the estimate's assumption): the
    workflow's ``Expectation.roles`` when it declares them; otherwise the first turn's role, then the default role, and the last turn (the answer) played by the role of
    the last ``after`` rule when the workflow has one (it formats the answer after that tool).
    Recovery turns are what the retry allowance is for."""
    rule = workflow.turn_roles
    if rule is None:
        return ["orchestrator"] * turns
    if workflow.expected().roles:  # the workflow says which role typically plays each turn
        return list(workflow.expected().roles)
    roles = [rule.first] + [rule.default] * (turns - 1)
    if rule.after and turns > 1:
        roles[-1] = list(rule.after.values())[-1]
    return roles


@dataclass
class _ModelShare:
    """What one model does in the expected run: its turns, tokens and cost."""

    model: str
    roles: list[str] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    input: int = 0
    output: int = 0


def _turn_list(turns: list[int]) -> str:
    numbers = [t + 1 for t in turns]
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"turns {numbers[0]}-{numbers[-1]}"
    return ("turn " if len(numbers) == 1 else "turns ") + ", ".join(map(str, numbers))


def estimate_run(workflow: Workflow, run_input: dict[str, Any], size: PromptSize, *,
                 batch: bool = False) -> Estimate:
    if workflow.fanout is not None:
        return estimate_fanout(workflow, run_input, size)
    prompt, prefix = size.prompt, size.prefix
    exp = workflow.expected()
    turns = exp.turns
    growth = exp.output_tokens_per_turn + exp.tool_result_tokens
    total_input = turns * prompt + growth * turns * (turns - 1) // 2
    # Each expected turn, priced with the model of the role that plays it (model_routing).
    shares: dict[str, _ModelShare] = {}
    for turn, role in enumerate(turn_roles(workflow, turns)):
        share = shares.setdefault(workflow.model_for(role), _ModelShare(workflow.model_for(role)))
        if role not in share.roles:
            share.roles.append(role)
        share.turns.append(turn)
        share.input += prompt + growth * turn
        share.output += exp.final_output_tokens if turn == turns - 1 else exp.output_tokens_per_turn

    def cost(tokens: int, per_mtok: Decimal) -> Decimal:
        return tokens * per_mtok / MILLION

    roles_calc = "; ".join(f"{', '.join(s.roles)} on {s.model} ({_turn_list(s.turns)})" for s in shares.values())
    lines = [
        {
            "item": "Prompt (system + tools + this input)",
            "calc": f"count_tokens on the rendered prompt = {prompt:,} tokens",
            "usd": "",
        },
        {
            "item": "Expected turns",
            "calc": f"{turns} turns; each adds ~{exp.output_tokens_per_turn} output + ~{exp.tool_result_tokens} tool-result tokens; {roles_calc}",
            "usd": "",
        },
        {
            "item": "Input over all turns",
            "calc": f"{turns} x {prompt:,} + {growth} x {turns}x{turns - 1}/2 = {total_input:,} tokens",
            "usd": "",
        },
    ]
    expected = list_price = Decimal(0)
    by_model = []
    for share in shares.values():
        price = price_for(share.model)
        # The system + tools prefix is cached per model: its first turn writes it, its later
        # turns read it, when the prefix is long enough for that model.
        cacheable = prefix >= min_cacheable_tokens(share.model)
        write = prefix if cacheable else 0
        read = prefix * (len(share.turns) - 1) if cacheable else 0
        uncached = share.input - write - read
        usd = (cost(write, price.cache_write_5m_per_mtok) + cost(read, price.cache_read_per_mtok)
               + cost(uncached, price.input_per_mtok) + cost(share.output, price.output_per_mtok))
        cache_calc = (
            f"{write:,} cache write x {_rate(price.cache_write_5m_per_mtok)} + {read:,} cache read x {_rate(price.cache_read_per_mtok)} + "
            if cacheable else
            f"(prefix {prefix:,} tokens is under {share.model}'s {min_cacheable_tokens(share.model):,}-token minimum: not cached) "
        )
        lines.append({
            "item": f"{share.model} ({', '.join(share.roles)}, {_turn_list(share.turns)})",
            "calc": f"{cache_calc}{uncached:,} in x {_rate(price.input_per_mtok)} + {share.output:,} out x {_rate(price.output_per_mtok)} /MTok",
            "usd": _usd(usd),
        })
        discounted = usd * (1 - price.batch_discount) if batch else usd
        list_price += usd
        expected += discounted
        by_model.append({"model": share.model, "roles": ", ".join(share.roles), "turns": len(share.turns),
                         "usd": _usd(discounted)})
    lines.append({"item": "Expected cost", "calc": "sum of the lines above", "usd": _usd(list_price)})
    if batch:
        discounts = sorted({price_for(m).batch_discount for m in shares})
        rate = f"{discounts[0]:.0%}" if len(discounts) == 1 else "each model's"
        lines.append(
            {
                "item": "Batch mode",
                "calc": f"{_usd(list_price)} x (1 - {rate} Message Batches discount)",
                "usd": _usd(expected),
            }
        )
    # To the micro-dollar the run and the approval store, so the ceiling, the approval and the
    # page all rest on the same number (per-model rates such as $0.20/MTok go past it).
    expected = expected.quantize(MICRO, rounding=ROUND_HALF_UP)
    upper = (expected * (1 + RETRY_ALLOWANCE)).quantize(MICRO, rounding=ROUND_HALF_UP)
    lines += [
        {
            "item": "Upper bound",
            "calc": f"expected x (1 + {RETRY_ALLOWANCE:.0%} retry allowance)",
            "usd": _usd(upper),
        },
    ]
    return Estimate(model=workflow.orchestrator_model, expected_usd=expected, upper_usd=upper, lines=lines,
                    by_model=by_model)


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
    # (the jobs' models: orchestration.fanout.jobs picks the same ones)
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
    shares: dict[str, dict[str, Any]] = {}
    for model, role, calls, usd in ((orchestrator, "orchestrator", 2, decompose + aggregate),
                                    (specialist, "specialist", n, specialists),
                                    (validator, "validator", n, validators)):
        row = shares.setdefault(model, {"model": model, "roles": [], "calls": 0, "usd": Decimal(0)})
        row["roles"].append(role)
        row["calls"] += calls
        row["usd"] += usd
    by_model = [{"model": r["model"], "roles": ", ".join(r["roles"]), "turns": r["calls"], "usd": _usd(r["usd"])}
                for r in shares.values()]
    return Estimate(model=orchestrator, expected_usd=expected, upper_usd=upper, lines=lines, by_model=by_model)
