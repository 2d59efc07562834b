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
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings

from costs.pricing import MILLION, price_for
from orchestration.workflows.declaration import Workflow

MICRO = Decimal("0.000001")
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
    # A fan-out run's shared cached prefixes (the specialists' and the validators' system
    # prompts: instructions, job schema, worked examples), each counted on its own model.
    specialist_prefix: int = 0
    validator_prefix: int = 0


@dataclass
class Estimate:
    model: str
    expected_usd: Decimal
    upper_usd: Decimal
    lines: list[dict[str, str]] = field(default_factory=list)
    # One row per model: the roles it plays, its calls (turns or jobs) and its expected cost.
    by_model: list[dict[str, Any]] = field(default_factory=list)
    # A fan-out run: N, the jobs priced (the plan must have exactly that many), and how its
    # shared prefixes are cached (ttl, tokens, whether each is over its model's minimum).
    jobs: int | None = None
    cache: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # To the micro-dollar the run and the approval store (Run.estimate_usd), rounded up: a
        # manager approves, and the ceiling is computed from, exactly the stored amount.
        self.expected_usd = self.expected_usd.quantize(MICRO, rounding=ROUND_CEILING)
        self.upper_usd = self.upper_usd.quantize(MICRO, rounding=ROUND_CEILING)

    def as_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.jobs is not None:
            extra["jobs"] = self.jobs
        if self.cache is not None:
            extra["cache"] = self.cache
        return {
            "model": self.model,
            "expected_usd": str(self.expected_usd),
            "upper_usd": str(self.upper_usd),
            "lines": self.lines,
            "by_model": self.by_model,
            **extra,
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


def estimate_run(
    workflow: Workflow, run_input: dict[str, Any], size: PromptSize, *, batch: bool = False
) -> Estimate:
    if workflow.fanout is not None:
        return estimate_fanout(workflow, run_input, size, batch=batch)
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

    roles_calc = "; ".join(
        f"{', '.join(s.roles)} on {s.model} ({_turn_list(s.turns)})" for s in shares.values()
    )
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
        usd = (
            cost(write, price.cache_write_5m_per_mtok)
            + cost(read, price.cache_read_per_mtok)
            + cost(uncached, price.input_per_mtok)
            + cost(share.output, price.output_per_mtok)
        )
        cache_calc = (
            f"{write:,} cache write x {_rate(price.cache_write_5m_per_mtok)} + {read:,} cache read x {_rate(price.cache_read_per_mtok)} + "
            if cacheable
            else f"(prefix {prefix:,} tokens is under {share.model}'s {min_cacheable_tokens(share.model):,}-token minimum: not cached) "
        )
        lines.append(
            {
                "item": f"{share.model} ({', '.join(share.roles)}, {_turn_list(share.turns)})",
                "calc": f"{cache_calc}{uncached:,} in x {_rate(price.input_per_mtok)} + {share.output:,} out x {_rate(price.output_per_mtok)} /MTok",
                "usd": _usd(usd),
            }
        )
        discounted = usd * (1 - price.batch_discount) if batch else usd
        list_price += usd
        expected += discounted
        by_model.append(
            {
                "model": share.model,
                "roles": ", ".join(share.roles),
                "turns": len(share.turns),
                "usd": _usd(discounted),
            }
        )
    lines.append(
        {"item": "Expected cost", "calc": "sum of the lines above", "usd": _usd(list_price)}
    )
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
    return Estimate(
        model=workflow.orchestrator_model,
        expected_usd=expected,
        upper_usd=upper,
        lines=lines,
        by_model=by_model,
    )


def _jobs(spec: Any, run_input: dict[str, Any]) -> tuple[int, bool]:
    """N and whether it is exact: the workflow's ``expected_jobs``, else the number of its
    items for this input (one job each); max_jobs (an upper bound) when the items are unusable
    (the run's first step refuses them)."""
    if spec.expected_jobs:
        return int(spec.expected_jobs(run_input)), True
    try:
        return len(list(spec.items(run_input))), True
    except Exception:  # noqa: BLE001 - the workflow's item list is refused at the first step
        return spec.max_jobs, False


@dataclass(frozen=True)
class _Prefix:
    """One shared cached prefix of a fan-out run, and what caching it costs and saves."""

    tokens: int
    cached: bool
    write_usd: Decimal
    reads_usd: Decimal
    lines: list[dict[str, str]]


def _prefix_lines(who: str, model: str, tokens: int, calls: int, ttl: str, price: Any) -> _Prefix:
    """The prefix is written once (the first job runs alone while the cache warms) and read
    by the other ``calls - 1`` calls; under the model's minimum it is plain input each time."""
    if tokens <= 0 or calls <= 0:
        return _Prefix(tokens, False, Decimal(0), Decimal(0), [])
    minimum = min_cacheable_tokens(model)
    if tokens < minimum:
        plain = calls * tokens * price.input_per_mtok / MILLION
        return _Prefix(
            tokens,
            False,
            Decimal(0),
            plain,
            [
                {
                    "item": f"{who} prefix, not cached",
                    "calc": f"{tokens:,} tokens is under {model}'s {minimum:,}-token minimum: "
                    f"{calls:,} x {tokens:,} in x ${price.input_per_mtok}/MTok",
                    "usd": _usd(plain),
                }
            ],
        )
    rate = price.cache_write_1h_per_mtok if ttl == "1h" else price.cache_write_5m_per_mtok
    write = tokens * rate / MILLION
    reads = (calls - 1) * tokens * price.cache_read_per_mtok / MILLION
    return _Prefix(
        tokens,
        True,
        write,
        reads,
        [
            {
                "item": f"{who} prefix: cache write ({ttl})",
                "calc": f"1 x {tokens:,} tokens x ${rate}/MTok",
                "usd": _usd(write),
            },
            {
                "item": f"{who} prefix: cache reads",
                "calc": f"{calls - 1:,} x {tokens:,} tokens x ${price.cache_read_per_mtok}/MTok",
                "usd": _usd(reads),
            },
        ],
    )


def estimate_fanout(
    workflow: Workflow, run_input: dict[str, Any], size: PromptSize, *, batch: bool = False
) -> Estimate:
    """A fan-out run: decompose + N x (specialist + validator) + reviews + aggregate.

    The decomposition prompt and the specialists' and validators' shared prefixes are
    measured (by the engine) with count_tokens, and come in as ``size``. N comes from the
    workflow (``expected_jobs``, else the number of its items); per-call sizes of the jobs' own turns
    are the workflow's declared expectations. Each shared prefix is written to the cache
    once and read by every other call (1h TTL when the run may outlive 5 minutes:
    FanoutSpec.cache_ttl). In batch mode the specialist and validator lines are discounted
    (Message Batches); the orchestrator and the reviewer answer in real time. The retry
    allowance prices one retry (specialist and validator again) for RETRY_ALLOWANCE of the
    jobs; the upper bound also prices every review the workflow allows (max_reviews).
    """
    spec = workflow.fanout
    assert spec is not None
    orchestrator = workflow.orchestrator_model
    specialist = workflow.models.get("specialist") or orchestrator
    validator = workflow.models.get("validator") or orchestrator
    # (the jobs' models: orchestration.fanout.jobs picks the same ones)
    reviewer = workflow.models.get("reviewer") or orchestrator
    n, exact = _jobs(spec, run_input)
    prompt = size.prompt
    po, ps, pv = price_for(orchestrator), price_for(specialist), price_for(validator)
    ttl = spec.cache_ttl(n, spec.concurrency(settings.FANOUT_PER_RUN_CONCURRENCY), batch=batch)

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
    s_prefix = _prefix_lines("Specialist", specialist, size.specialist_prefix, n, ttl, ps)
    v_prefix = _prefix_lines("Validator", validator, size.validator_prefix, n, ttl, pv)
    specialists, validators = n * per_specialist, n * per_validator
    jobs_total = (
        specialists
        + validators
        + s_prefix.write_usd
        + s_prefix.reads_usd
        + v_prefix.write_usd
        + v_prefix.reads_usd
    )
    # A retried call reads the prefix too (or pays it as input when it is not cached).
    read_or_input = {
        True: lambda p, price: cost(p.tokens, price.cache_read_per_mtok),
        False: lambda p, price: cost(p.tokens, price.input_per_mtok),
    }
    per_retry = (
        per_specialist
        + per_validator
        + read_or_input[s_prefix.cached](s_prefix, ps)
        + read_or_input[v_prefix.cached](v_prefix, pv)
    )
    retried = int((n * RETRY_ALLOWANCE).to_integral_value())
    retries = retried * per_retry
    discount = Decimal(0)
    if batch:
        discount = min(ps.batch_discount, pv.batch_discount)
        retries *= 1 - discount
    batch_off = jobs_total * discount
    reviews, per_review, most_reviews = 0, Decimal(0), Decimal(0)
    if spec.has_reviewer:
        pr = price_for(reviewer)
        reviews = spec.reviews_expected(n)
        per_review = cost(spec.reviewer_input_tokens, pr.input_per_mtok) + cost(
            spec.reviewer_output_tokens, pr.output_per_mtok
        )
        most_reviews = (spec.max_reviews - reviews) * per_review
    agg_in = prompt // 4 + n * min(spec.specialist_output_tokens, 200)
    aggregate = cost(agg_in, po.input_per_mtok) + cost(
        spec.aggregate_output_tokens, po.output_per_mtok
    )
    expected = decompose + jobs_total - batch_off + reviews * per_review + aggregate
    upper = expected + retries + most_reviews
    lines = [
        {
            "item": "Fan-out size",
            "calc": f"N = {n:,} jobs (at most {spec.max_jobs:,} for this workflow)"
            + (f"; the plan must have exactly {n:,}" if exact else ""),
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
        *s_prefix.lines,
        {
            "item": f"Validators ({validator})",
            "calc": f"{n:,} x ({spec.validator_input_tokens:,} in x ${pv.input_per_mtok} + {spec.validator_output_tokens:,} out x ${pv.output_per_mtok}) /MTok = {n:,} x {_usd(per_validator)}",
            "usd": _usd(validators),
        },
        *v_prefix.lines,
    ]
    if batch:
        lines.append(
            {
                "item": "Batch mode (specialists and validators)",
                "calc": f"-{discount:.0%} Message Batches discount on {_usd(jobs_total)}; the "
                "orchestrator and the reviewer answer in real time",
                "usd": f"-{_usd(batch_off)}",
            }
        )
    if spec.has_reviewer:
        lines.append(
            {
                "item": f"Escalation reviewer ({reviewer})",
                "calc": f"{reviews:,} expected review(s) ({spec.expected_review_fraction:.0%} of jobs, at most "
                f"{spec.max_reviews:,}) x ({spec.reviewer_input_tokens:,} in + {spec.reviewer_output_tokens:,} out) = "
                f"{reviews:,} x {_usd(per_review)}",
                "usd": _usd(reviews * per_review),
            }
        )
    lines += [
        {
            "item": f"Aggregate ({orchestrator})",
            "calc": f"~{agg_in:,} in x ${po.input_per_mtok} + {spec.aggregate_output_tokens:,} out x ${po.output_per_mtok} /MTok",
            "usd": _usd(aggregate),
        },
        {"item": "Expected cost", "calc": "sum of the lines above", "usd": _usd(expected)},
        {
            "item": "Retry allowance",
            "calc": f"one retry (specialist + validator) for {RETRY_ALLOWANCE:.0%} of jobs = {retried:,} x {_usd(per_retry)}"
            + (" at the batch price" if batch else ""),
            "usd": _usd(retries),
        },
    ]
    if spec.has_reviewer:
        lines.append(
            {
                "item": "Review allowance",
                "calc": f"the other {spec.max_reviews - reviews:,} review(s) the workflow allows x {_usd(per_review)}",
                "usd": _usd(most_reviews),
            }
        )
    lines.append({"item": "Upper bound", "calc": "expected + allowances", "usd": _usd(upper)})
    cache = {
        "ttl": ttl,
        "specialist_prefix_tokens": s_prefix.tokens,
        "validator_prefix_tokens": v_prefix.tokens,
        "specialist_cached": s_prefix.cached,
        "validator_cached": v_prefix.cached,
    }
    # One row per model (its roles, calls and expected cost); the rows add up to "Expected".
    shares: dict[str, dict[str, Any]] = {}
    keep = 1 - discount
    for model, role, calls, usd in (
        (orchestrator, "orchestrator", 2, decompose + aggregate),
        (
            specialist,
            "specialist",
            n,
            (specialists + s_prefix.write_usd + s_prefix.reads_usd) * keep,
        ),
        (validator, "validator", n, (validators + v_prefix.write_usd + v_prefix.reads_usd) * keep),
        *(((reviewer, "reviewer", reviews, reviews * per_review),) if spec.has_reviewer else ()),
    ):
        row = shares.setdefault(model, {"model": model, "roles": [], "calls": 0, "usd": Decimal(0)})
        row["roles"].append(role)
        row["calls"] += calls
        row["usd"] += usd
    by_model = [
        {
            "model": r["model"],
            "roles": ", ".join(r["roles"]),
            "turns": r["calls"],
            "usd": _usd(r["usd"]),
        }
        for r in shares.values()
    ]
    return Estimate(
        model=orchestrator,
        expected_usd=expected,
        upper_usd=upper,
        lines=lines,
        by_model=by_model,
        jobs=n if exact else None,
        cache=cache,
    )
