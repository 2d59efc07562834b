"""Validating the orchestrator's decomposition before a single job row exists.

The orchestrator proposes ``[{"job_id": ..., "prompt": ..., "schema": {...}}, ...]``; the
engine accepts it only if it is a JSON list of 1..max_jobs objects of exactly that shape,
with unique job ids, non-empty prompts and schemas that are valid JSON Schemas (Draft
2020-12). Anything else is refused with every problem listed (at most 20).

Thousands of jobs usually share one schema; repeating it in every job would multiply the
orchestrator's output (and its cost) for nothing. So the list may also come wrapped as
``{"schemas": {"name": {...}}, "jobs": [..., {"schema": "name"}]}``: a job's schema given
as a string names one of the shared schemas. Each job row stores the resolved schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from orchestration.validation import parse_json_answer

MAX_PROMPT_CHARS = 20_000
MAX_JOB_ID_CHARS = 100
MAX_PROBLEMS = 20

# What the orchestrator is told to produce (also shown in its user turn).
JOB_LIST_FORMAT = {
    "description": 'A JSON list of jobs, or {"schemas": {name: schema}, "jobs": [...]} with shared schemas',
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "job_id": {"type": ["string", "integer"]},
            "prompt": {"type": "string"},
            "schema": {
                "type": ["object", "string"],
                "description": "a JSON Schema, or the name of one in schemas",
            },
        },
        "required": ["job_id", "prompt", "schema"],
        "additionalProperties": False,
    },
}


@dataclass(frozen=True)
class PlannedJob:
    job_id: str
    prompt: str
    schema: dict[str, Any]


class InvalidPlan(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_plan(text: str, max_jobs: int) -> list[PlannedJob]:
    """The validated job list, or InvalidPlan listing what is wrong."""
    try:  # the whole answer first: job prompts may themselves contain ``` fences
        value, error = json.loads(text), None
    except json.JSONDecodeError:
        value, error = parse_json_answer(text)
    if error:
        raise InvalidPlan([error.replace("final answer", "decomposition")])
    shared: dict[str, Any] = {}
    if isinstance(value, dict) and isinstance(value.get("jobs"), list):
        shared = value.get("schemas") or {}
        if not isinstance(shared, dict):
            raise InvalidPlan(["schemas must be an object mapping a name to a JSON Schema"])
        value = value["jobs"]
    if not isinstance(value, list):
        raise InvalidPlan(
            [f"the decomposition must be a JSON list of jobs, not {type(value).__name__}"]
        )
    if not value:
        raise InvalidPlan(["the decomposition has no jobs"])
    if len(value) > max_jobs:
        raise InvalidPlan(
            [
                f"the decomposition has {len(value):,} jobs; this workflow allows at most {max_jobs:,}"
            ]
        )
    problems: list[str] = []
    jobs: list[PlannedJob] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        if len(problems) >= MAX_PROBLEMS:
            problems.append("... (further problems not listed)")
            break
        if not isinstance(item, dict):
            problems.append(f"job #{i}: must be an object with job_id, prompt and schema")
            continue
        extra = sorted(set(item) - {"job_id", "prompt", "schema"})
        missing = [k for k in ("job_id", "prompt", "schema") if k not in item]
        if missing or extra:
            problems.append(
                f"job #{i}: "
                + "; ".join(
                    ([f"missing {', '.join(missing)}"] if missing else [])
                    + ([f"unexpected {', '.join(extra)}"] if extra else [])
                )
            )
            continue
        raw_id, prompt, schema = item["job_id"], item["prompt"], item["schema"]
        if isinstance(schema, str):
            if schema not in shared:
                problems.append(
                    f"job #{i}: schema {schema!r} is not one of the shared schemas "
                    f"({', '.join(sorted(shared)) or 'none given'})"
                )
                continue
            schema = shared[schema]
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
        if job_id in seen:
            problems.append(f"job #{i}: job_id {job_id!r} repeats job #{seen[job_id]}")
        seen.setdefault(job_id, i)
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append(f"job {job_id}: prompt must be a non-empty string")
        elif len(prompt) > MAX_PROMPT_CHARS:
            problems.append(f"job {job_id}: prompt is longer than {MAX_PROMPT_CHARS:,} characters")
        if not isinstance(schema, dict):
            problems.append(f"job {job_id}: schema must be a JSON Schema object")
        else:
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                problems.append(f"job {job_id}: schema is not a valid JSON Schema: {exc.message}")
        jobs.append(
            PlannedJob(
                job_id=job_id, prompt=prompt if isinstance(prompt, str) else "", schema=schema
            )
        )
    if problems:
        raise InvalidPlan(problems)
    return jobs
