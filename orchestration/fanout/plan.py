"""Validating the orchestrator's decomposition before a single job row exists.

The orchestrator answers in one of two forms, both covering the workflow's items
(``FanoutSpec.items``), one job per item, ``job_id`` being the item's key:

- **one job each**: ``[{"job_id": ..., "prompt": ...}, ...]`` (or ``{"jobs": [...]}``);
- **job kinds** (``FanoutSpec.expand_items``: the items are known, so the orchestrator need
  not write 200 or 1,000 prompts): ``{"job_kinds": [{"kind": ..., "prompt": ..., "items":
  [...] | "*"}, ...]}``. Each kind's prompt is written once and the engine expands it over
  the items the kind covers (``{item}`` in the prompt becomes the item's key): the kind's
  ``items`` are item keys and glob patterns (``src/billing/*``), or ``"*"`` for every item
  no other kind (and no entry of ``jobs``) covers. ``jobs`` may sit next to ``job_kinds``
  for a few one-off prompts. A pattern that matches no item counts as a job for no item.

Either way the engine accepts the plan only if every entry has exactly that shape, with
non-empty prompts, and the expanded jobs cover the items exactly once: an item with no job,
an item with two jobs (two kinds, or a kind and a job, that both name it) and a job for an
item that is not in the list are each refused by name. Anything else is refused with every
problem listed (at most 20 per kind). The expanded jobs are in the workflow's item order.

The plan does not choose the jobs' output schema: the workflow declares it in code
(``FanoutSpec.job_output_schema``) and the engine stores it on every job row. A plan that
carries a schema anyway (a ``schema`` in a job, a ``schemas`` map) is refused, not silently
ignored: a model that tries to set one has read an instruction it should not have obeyed,
and the refusal leaves that in the audit trail.
"""

from __future__ import annotations

import fnmatch
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


ALL_OTHER_ITEMS = "*"
ITEM_PLACEHOLDER = "{item}"
GLOB_CHARS = frozenset("*?[")
# The same without the expanded list: what the orchestrator is asked for when the workflow
# expands job kinds over its items (FanoutSpec.expand_items).
JOB_KINDS_FORMAT = {
    "description": "Write the instructions once per kind of job; the engine expands each kind "
    "over the items it covers, one job per item (job_id = the item). A kind's items are item "
    'keys or glob patterns (e.g. src/billing/*), or "*" for every item no other kind covers. '
    "Every item must be covered exactly once. {item} in a prompt is replaced by the item's key. "
    "The output schema of every job is set by the workflow, not by the plan.",
    "type": "object",
    "properties": {
        "job_kinds": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "description": "a short name for the reader"},
                    "prompt": {"type": "string", "description": "the job's instructions"},
                    "items": {
                        "anyOf": [
                            {"const": ALL_OTHER_ITEMS},
                            {"type": "array", "items": {"type": "string"}},
                        ]
                    },
                },
                "required": ["prompt", "items"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["job_kinds"],
    "additionalProperties": False,
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
        "job_format": JOB_KINDS_FORMAT if spec.expand_items else JOB_LIST_FORMAT,
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


def _read_job(i: int, item: Any, problems: list[str]) -> PlannedJob | None:
    """One ``{job_id, prompt}`` entry, or None with its problem appended."""
    if not isinstance(item, dict):
        problems.append(f"job #{i}: must be an object with job_id and prompt")
        return None
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
        return None
    raw_id, prompt = item["job_id"], item["prompt"]
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
        problems.append(f"job #{i}: job_id must be a non-empty string or an integer")
        return None
    job_id = str(raw_id).strip()
    if len(job_id) > MAX_JOB_ID_CHARS:
        problems.append(f"job #{i}: job_id is longer than {MAX_JOB_ID_CHARS} characters")
        return None
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(f"job {job_id}: prompt must be a non-empty string")
    elif len(prompt) > MAX_PROMPT_CHARS:
        problems.append(f"job {job_id}: prompt is longer than {MAX_PROMPT_CHARS:,} characters")
    return PlannedJob(job_id=job_id, prompt=prompt if isinstance(prompt, str) else "")


def _kind_name(i: int, kind: dict[str, Any]) -> str:
    name = kind.get("kind")
    return f"job kind #{i}" + (f" ({str(name)[:60]!r})" if isinstance(name, str) and name else "")


def _expand_kinds(
    kinds: list[Any], items: Sequence[str], jobs: list[PlannedJob], problems: list[str]
) -> tuple[list[PlannedJob], list[str]]:
    """The jobs the kinds expand to, and the job ids the coverage check counts for them: one
    per item a kind names (even a kind whose prompt is refused, so its items are not also
    reported as missing) and one per entry that names no item (refused by name)."""
    wanted = set(items)
    listed: list[tuple[int, str]] = []  # (kind, item) for every item a kind names
    unknown: list[str] = []
    rest_kind: int | None = None
    prompts: dict[int, str] = {}
    for i, kind in enumerate(kinds):
        if len(problems) >= MAX_PROBLEMS:
            break
        if not isinstance(kind, dict):
            problems.append(f"job kind #{i}: must be an object with prompt and items")
            continue
        name = _kind_name(i, kind)
        extra = sorted(set(kind) - {"kind", "prompt", "items", "schema"})
        missing = [k for k in ("prompt", "items") if k not in kind]
        if missing or extra:
            problems.append(
                f"{name}: "
                + "; ".join(
                    ([f"missing {', '.join(missing)}"] if missing else [])
                    + ([f"unexpected {', '.join(extra)}"] if extra else [])
                )
            )
            continue
        prompt, covers = kind["prompt"], kind["items"]
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append(f"{name}: prompt must be a non-empty string")
        elif len(prompt) + prompt.count(ITEM_PLACEHOLDER) * MAX_JOB_ID_CHARS > MAX_PROMPT_CHARS:
            problems.append(f"{name}: prompt is longer than {MAX_PROMPT_CHARS:,} characters")
        else:
            prompts[i] = prompt
        if covers == ALL_OTHER_ITEMS:
            if rest_kind is None:
                rest_kind = i
            else:
                problems.append(
                    f"{name}: only one kind may cover the other items ({ALL_OTHER_ITEMS!r}); "
                    f"{_kind_name(rest_kind, kinds[rest_kind])} does already"
                )
            continue
        if not isinstance(covers, list) or not covers:
            problems.append(
                f"{name}: items must be a non-empty list of item keys and patterns, "
                f"or {ALL_OTHER_ITEMS!r} for every other item"
            )
            continue
        for entry in covers:
            if (
                isinstance(entry, bool)
                or not isinstance(entry, (str, int))
                or not str(entry).strip()
            ):
                problems.append(f"{name}: items must be item keys or patterns (strings)")
                break
            key = str(entry).strip()
            if key in wanted:
                listed.append((i, key))
            elif GLOB_CHARS & set(key):
                matched = [k for k in items if fnmatch.fnmatchcase(k, key)]
                listed += [(i, k) for k in matched]
                if not matched:
                    unknown.append(key[:MAX_JOB_ID_CHARS])
            else:
                unknown.append(key[:MAX_JOB_ID_CHARS])
    if rest_kind is not None:
        covered = {key for _, key in listed} | {j.job_id for j in jobs}
        listed += [(rest_kind, k) for k in items if k not in covered]
    expanded = [
        PlannedJob(job_id=key, prompt=prompts[i].replace(ITEM_PLACEHOLDER, key))
        for i, key in listed
        if i in prompts
    ]
    return expanded, [key for _, key in listed] + unknown


def parse_plan(text: str, items: Sequence[str]) -> list[PlannedJob]:
    """The validated job list covering ``items`` exactly once, or InvalidPlan saying why.

    Job kinds are expanded here, so what comes back is one job per item whatever the form
    (in the workflow's item order for a plan with kinds, in the plan's order otherwise)."""
    try:  # the whole answer first: job prompts may themselves contain ``` fences
        value, error = json.loads(text), None
    except json.JSONDecodeError:
        value, error = parse_json_answer(text)
    if error:
        raise InvalidPlan([error.replace("final answer", "decomposition")])
    problems: list[str] = []
    kinds: list[Any] | None = None
    if isinstance(value, dict) and (
        isinstance(value.get("jobs"), list) or isinstance(value.get("job_kinds"), list)
    ):
        extra = sorted(set(value) - {"jobs", "job_kinds"})
        if extra:
            problems.append(
                f"the decomposition has {', '.join(extra)} besides jobs"
                + ("; " + SCHEMA_IS_THE_WORKFLOWS if "schemas" in extra else "")
            )
        kinds = value.get("job_kinds")
        if kinds is not None and not isinstance(kinds, list):
            raise InvalidPlan(["job_kinds must be a JSON list"])
        value = value.get("jobs", [])
    if not isinstance(value, list):
        raise InvalidPlan(
            [f"the decomposition must be a JSON list of jobs, not {type(value).__name__}"]
        )
    if not value and not kinds:
        raise InvalidPlan(["the decomposition has no jobs"])
    entries = len(value) + len(kinds or [])
    if entries > 2 * len(items) + MAX_PROBLEMS:  # not worth reading entry by entry
        raise InvalidPlan(
            [
                f"the decomposition has {entries:,} entries for {len(items):,} items (one job per item)"
            ]
        )
    jobs: list[PlannedJob] = []
    for i, item in enumerate(value):
        if len(problems) >= MAX_PROBLEMS:
            problems.append("... (further problems not listed)")
            raise InvalidPlan(problems)
        job = _read_job(i, item, problems)
        if job is not None:
            jobs.append(job)
    covered = [j.job_id for j in jobs]
    if kinds is not None:
        expanded, by_kinds = _expand_kinds(kinds, items, jobs, problems)
        if len(problems) >= MAX_PROBLEMS:
            problems.append("... (further problems not listed)")
            raise InvalidPlan(problems)
        order = {key: n for n, key in enumerate(items)}
        jobs = sorted([*jobs, *expanded], key=lambda j: order.get(j.job_id, len(order)))
        covered += by_kinds
    entries_with_schema = [e for e in [*value, *(kinds or [])] if isinstance(e, dict)]
    with_schema = sum("schema" in e for e in entries_with_schema)
    if with_schema:  # refused once for the whole plan, not once per job
        problems.insert(0, f"{with_schema:,} job(s) give a schema: {SCHEMA_IS_THE_WORKFLOWS}")
    problems += coverage_problems(covered, items)
    if problems:
        raise InvalidPlan(problems)
    return jobs


def size_check(planned: int, priced: int | None) -> None:
    """The seed's "decompose into exactly N jobs": the plan's size must be the N its estimate
    priced (``Estimate.jobs``, stored on the run); InvalidPlan otherwise. A run whose
    estimate priced no N (started before the check existed) is not held to one."""
    if priced is None or planned == priced:
        return
    raise InvalidPlan(
        [
            f"the plan has {planned:,} job(s) but the estimate priced exactly {priced:,}: a run "
            f"is held to the size it was priced (and approved) at"
        ]
    )
