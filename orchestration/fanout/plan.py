"""Validating the orchestrator's decomposition before a single job row exists.

The orchestrator proposes ``[{"job_id": ..., "prompt": ...}, ...]`` (or ``{"jobs": [...]}``),
one job per context item of the workflow, ``job_id`` being the item's key. The engine
accepts it only if it is a JSON list of 1..max_jobs objects of exactly that shape, with
non-empty prompts, and if it covers the workflow's items (``FanoutSpec.items``) exactly
once: an item with no job, an item with two jobs and a job for an item that is not in the
list are each refused by name. Anything else is refused with every problem listed (at most
20 per kind).

The plan does not choose the jobs' output schema: the workflow declares it in code
(``FanoutSpec.job_output_schema``) and the engine stores it on every job row. A plan that
carries a schema anyway (a ``schema`` in a job, a ``schemas`` map) is refused, not silently
ignored: a model that tries to set one has read an instruction it should not have obeyed,
and the refusal leaves that in the audit trail.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestration.validation import parse_json_answer
from orchestration.workflows.declaration import JSON, FanoutSpec

MAX_PROMPT_CHARS = 20_000
MAX_JOB_ID_CHARS = 100
MAX_PROBLEMS = 20
SCHEMA_IS_THE_WORKFLOWS = "the job output schema is set by the workflow, not by the plan"

# What the orchestrator is told to produce (also shown in its user turn).
JOB_LIST_FORMAT = {
    "description": "A JSON list of jobs: exactly one per entry of items, job_id = that item. "
    "The output schema of every job is set by the workflow, not by the plan.",
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "description": "one of items"},
            "prompt": {"type": "string"},
        },
        "required": ["job_id", "prompt"],
        "additionalProperties": False,
    },
}


@dataclass(frozen=True)
class PlannedJob:
    job_id: str
    prompt: str


class InvalidPlan(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class InvalidItems(ValueError):
    """The workflow's own item list is unusable (a bug in the workflow, not in the plan)."""


def item_keys(spec: FanoutSpec, run_input: JSON) -> list[str]:
    """The context items the plan must cover, as the workflow declares them for this input."""
    keys = [str(k) for k in spec.items(run_input)]
    if not keys:
        raise InvalidItems("the workflow lists no items for this input")
    repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
    if repeated:
        raise InvalidItems(f"the workflow lists items more than once: {', '.join(repeated[:5])}")
    too_long = [k for k in keys if len(k) > MAX_JOB_ID_CHARS or not k.strip()]
    if too_long:
        raise InvalidItems(
            f"item keys must be 1..{MAX_JOB_ID_CHARS} characters: {too_long[0][:120]!r}"
        )
    if len(keys) > spec.max_jobs:
        raise InvalidItems(
            f"the input has {len(keys):,} items; this workflow allows at most {spec.max_jobs:,} jobs"
        )
    return keys


def decompose_turn(spec: FanoutSpec, run_input: JSON, *, strict: bool = True) -> dict[str, Any]:
    """The orchestrator's decomposition request. The estimate counts its tokens with
    ``strict=False`` (unusable items are the first step's to refuse, not the launch's)."""
    try:
        items = item_keys(spec, run_input)
    except InvalidItems:
        if strict:
            raise
        items = [str(k) for k in spec.items(run_input)]
    return {
        "phase": "decompose",
        "input": run_input,
        "context": spec.context(run_input) if spec.context else None,
        "items": items,
        "max_jobs": spec.max_jobs,
        "job_format": JOB_LIST_FORMAT,
    }


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:MAX_PROBLEMS])
    more = len(keys) - MAX_PROBLEMS
    return shown + (f" and {more:,} more" if more > 0 else "")


def coverage_problems(job_ids: Sequence[str], items: Sequence[str]) -> list[str]:
    """Each item once: the items with no job, with several, and the jobs for no item."""
    wanted = set(items)
    seen = Counter(job_ids)
    missing = [k for k in items if k not in seen]
    repeated = [k for k in seen if seen[k] > 1]
    unknown = [k for k in seen if k not in wanted]
    problems = []
    if missing:
        problems.append(f"{len(missing):,} item(s) have no job: {_listed(missing)}")
    if repeated:
        problems.append(f"{len(repeated):,} item(s) have more than one job: {_listed(repeated)}")
    if unknown:
        problems.append(f"{len(unknown):,} job(s) are for no item of this run: {_listed(unknown)}")
    return problems


def parse_plan(text: str, items: Sequence[str]) -> list[PlannedJob]:
    """The validated job list covering ``items`` exactly once, or InvalidPlan saying why."""
    try:  # the whole answer first: job prompts may themselves contain ``` fences
        value, error = json.loads(text), None
    except json.JSONDecodeError:
        value, error = parse_json_answer(text)
    if error:
        raise InvalidPlan([error.replace("final answer", "decomposition")])
    problems: list[str] = []
    if isinstance(value, dict) and isinstance(value.get("jobs"), list):
        extra = sorted(set(value) - {"jobs"})
        if extra:
            problems.append(
                f"the decomposition has {', '.join(extra)} besides jobs"
                + ("; " + SCHEMA_IS_THE_WORKFLOWS if "schemas" in extra else "")
            )
        value = value["jobs"]
    if not isinstance(value, list):
        raise InvalidPlan(
            [f"the decomposition must be a JSON list of jobs, not {type(value).__name__}"]
        )
    if not value:
        raise InvalidPlan(["the decomposition has no jobs"])
    if len(value) > 2 * len(items) + MAX_PROBLEMS:  # not worth reading job by job
        raise InvalidPlan(
            [
                f"the decomposition has {len(value):,} jobs for {len(items):,} items (one job per item)"
            ]
        )
    jobs: list[PlannedJob] = []
    with_schema = 0
    for i, item in enumerate(value):
        if len(problems) >= MAX_PROBLEMS:
            problems.append("... (further problems not listed)")
            raise InvalidPlan(problems)
        if not isinstance(item, dict):
            problems.append(f"job #{i}: must be an object with job_id and prompt")
            continue
        if "schema" in item:  # refused once for the whole plan (below), not once per job
            with_schema += 1
        extra = sorted(set(item) - {"job_id", "prompt", "schema"})
        missing = [k for k in ("job_id", "prompt") if k not in item]
        if missing or extra:
            problems.append(
                f"job #{i}: "
                + "; ".join(
                    ([f"missing {', '.join(missing)}"] if missing else [])
                    + ([f"unexpected {', '.join(extra)}"] if extra else [])
                )
            )
            continue
        raw_id, prompt = item["job_id"], item["prompt"]
        if (
            isinstance(raw_id, bool)
            or not isinstance(raw_id, (str, int))
            or not str(raw_id).strip()
        ):
            problems.append(f"job #{i}: job_id must be a non-empty string or an integer")
            continue
        job_id = str(raw_id).strip()
        if len(job_id) > MAX_JOB_ID_CHARS:
            problems.append(f"job #{i}: job_id is longer than {MAX_JOB_ID_CHARS} characters")
            continue
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append(f"job {job_id}: prompt must be a non-empty string")
        elif len(prompt) > MAX_PROMPT_CHARS:
            problems.append(f"job {job_id}: prompt is longer than {MAX_PROMPT_CHARS:,} characters")
        jobs.append(PlannedJob(job_id=job_id, prompt=prompt if isinstance(prompt, str) else ""))
    if with_schema:
        problems.insert(0, f"{with_schema:,} job(s) give a schema: {SCHEMA_IS_THE_WORKFLOWS}")
    problems += coverage_problems([j.job_id for j in jobs], items)
    if problems:
        raise InvalidPlan(problems)
    return jobs
